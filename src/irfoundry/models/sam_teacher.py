"""SimIR's SAM-family teacher: a foundation image encoder + SAM's prompt encoder and mask decoder, fine-tuned
for IRSTD with ``method: supervised`` and then distilled into the small student (issue 20).

SimIR (Zhang et al., arXiv 2409.04714, ACM MM 2024; code O937-blip/SimIR) fine-tunes SAM / Semantic-SAM-family
models on IRSTD and distils them; the teacher's code is unreleased, so this network is **our
reconstruction** (``../shared/guides/methods.md`` section 3, [recon]):

* ``image_encoder``: a foundation backbone made trainable (:class:`irfoundry.foundation.trainable.FoundationEncoder`):
  SAM ViT-B/L/H as published (its 256-channel ``neck`` is the image embedding, so the official weights apply end
  to end), any registered foundation or ``timm:NAME``, or the bundled ImageNet EfficientNet-Lite0 (offline,
  pretrained). ``finetune``: ``frozen``, ``full``, ``last:N`` or ``lora:R``.
* ``neck`` (only for encoders without SAM's neck): SAM's neck design, conv1x1 -> LayerNorm2d -> conv3x3 ->
  LayerNorm2d to ``embed_dim`` channels, on the encoder's stride-16 map (ViT: the last block; CNN: the
  stride-16 stage, since a stride-32 embedding would put the 4x-upscaled masks at stride 8, too coarse for
  targets of a few pixels).
* ``mask_head``: :class:`irfoundry.models.sam_decoder.SAMMaskHead` (prompt encoder with its dense mask prompt,
  two-way transformer, hypernetwork head; SAM's names, so the official ``prompt_encoder.*`` /
  ``mask_decoder.*`` keys load). ``mask_prompt="none"``: one promptless pass (SAM's no-mask embedding);
  ``"self"``: a second pass with the first pass's low-resolution logits as the dense mask prompt (SAM's
  iterative refinement); in training the first pass is returned as deep supervision.

Inputs are the data module's normalised images; :meth:`SAMTeacher.set_input_norm` (called by the engine
with the run's statistics, stored as buffers so saved teachers keep them) undoes that before the encoder's own
mean/std. Masks (stride ``s / 4`` for an embedding at stride ``s``) are up-sampled bilinearly to the input
size, as SAM's ``postprocess_masks`` does. Logits out.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.models._registry import register_model
from irfoundry.models.base import SegmentationModel, check_input_size

__all__ = ["SAMTeacher", "sam_teacher"]


def _sam_neck(in_chans: int, embed_dim: int) -> nn.Sequential:
    from timm.layers import LayerNorm2d

    return nn.Sequential(nn.Conv2d(in_chans, embed_dim, 1, bias=False), LayerNorm2d(embed_dim),
                         nn.Conv2d(embed_dim, embed_dim, 3, padding=1, bias=False), LayerNorm2d(embed_dim))


class SAMTeacher(SegmentationModel):
    """Foundation encoder + SAM mask head (see the module docstring). Built by :func:`sam_teacher`.

    Args:
        image_encoder: a :class:`FoundationEncoder` with exactly one selected layer.
        mask_head: a :class:`SAMMaskHead` of width ``embed_dim``.
        neck: maps the encoder's map to ``embed_dim`` channels (``None``: it already has them, SAM's neck).
        mask_prompt: ``"none"`` or ``"self"``.

    ``forward``: ``B x in_chans x H x W`` normalised images (H, W multiples of ``input_multiple``) -> eval:
    logits ``B x 1 x H x W``; training with ``mask_prompt="self"``: ``[refined, first]``.
    """

    logit_layers: tuple[str, ...] = ()  # the masks are dot products of hypernetwork weights and features
    onnx_refusal = ("a training-time teacher (the student ships); the foundation adapter sizes its maps with Python "
                    "arithmetic on the input size, which an ONNX trace freezes (parity 5e-2 at other sizes)")

    def __init__(self, image_encoder: nn.Module, mask_head: nn.Module, neck: nn.Module | None = None, *,
                 mask_prompt: str = "none") -> None:
        super().__init__()
        if len(image_encoder.feature_info) != 1:
            raise ModelError(f"SAMTeacher needs an encoder with one selected layer, got {image_encoder.feature_info}")
        if mask_prompt not in ("none", "self"):
            raise ModelError(f"mask_prompt must be 'none' or 'self', got {mask_prompt!r}")
        self.image_encoder = image_encoder
        self.neck = neck if neck is not None else nn.Identity()
        self.mask_head = mask_head
        self.mask_prompt = mask_prompt
        self.embed_stride = int(image_encoder.feature_info[0]["stride"])
        self.input_multiple = max(int(image_encoder.pad_multiple), self.embed_stride)
        # SAM's point / box embeddings and IoU head are loaded (official keys) but unused without point prompts
        unused = ["mask_head.prompt_encoder.point_embeddings", "mask_head.prompt_encoder.not_a_point_embed",
                  "mask_head.mask_decoder.iou_prediction_head"]
        if mask_prompt == "none":
            unused.append("mask_head.prompt_encoder.mask_downscaling")
        self.unused_modules = tuple(unused)
        self.register_buffer("input_mean", torch.zeros(1))
        self.register_buffer("input_std", torch.ones(1))

    def set_input_norm(self, norm: Mapping[str, float] | None) -> None:
        """The run's ``{"mean", "std"}`` (in [0, 1] units) the inputs are normalised with; ``None``: inputs are
        already in [0, 1]."""
        mean, std = (0.0, 1.0) if norm is None else (float(norm["mean"]), float(norm["std"]))
        if not std > 0:
            raise ModelError(f"input norm std must be > 0, got {std}")
        self.input_mean.fill_(mean)
        self.input_std.fill_(std)

    def embed(self, x: Tensor) -> Tensor:
        """Normalised ``B x C x H x W`` -> image embedding ``B x embed_dim x H/s x W/s``."""
        unit = (x * self.input_std + self.input_mean).clamp(0.0, 1.0)
        return self.neck(self.image_encoder(unit)[0])

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        check_input_size(x, self.input_multiple)
        emb = self.embed(x)
        low = self.mask_head(emb)  # B x 1 x 4h x 4w
        outs = [low]
        if self.mask_prompt == "self":
            outs.insert(0, self.mask_head(emb, low))
        full = [F.interpolate(o, size=x.shape[-2:], mode="bilinear", align_corners=False) for o in outs]
        return full if self.training and len(full) > 1 else full[0]


def _encoder_layer(fm_kind: str, family: str, feature_info: Sequence[dict], layer) -> list:
    if layer is not None:
        return [layer]
    if family == "sam":
        return ["neck"]
    if fm_kind == "vit":
        return [-1]
    strides = [i["reduction"] for i in feature_info]
    if 16 not in strides:
        raise ModelError(f"no stride-16 stage to embed (strides {strides}); pass layer=INDEX")
    return [strides.index(16)]


@register_model(
    "sam_teacher",
    paper="Kirillov et al., Segment Anything, ICCV 2023; SimIR (Zhang et al., ACM MM 2024) fine-tunes it",
    reference="https://github.com/facebookresearch/segment-anything (decoder); teacher: our reconstruction",
)
def sam_teacher(*, in_chans: int = 1, foundation: str = "efficientnet_lite0", weights: str | None = None,
                layer: int | str | None = None, finetune: str = "last:2", embed_dim: int = 256,
                mask_prompt: str = "none", sam_checkpoint: str | None = None, decoder_depth: int = 2,
                decoder_mlp_dim: int = 2048, decoder_heads: int = 8) -> SAMTeacher:
    """The SAM-family teacher.

    Args:
        in_chans: 1 (grey, expanded to RGB) or 3.
        foundation: a registered foundation (``sam_vit_b`` as published, ``efficientnet_lite0`` offline,
            ``dinov2_vits14``, ``timm:NAME``...).
        weights: the foundation's weights (``None``: its default pretrained file; ``random``; a path). An
            official SAM file (``sam_vit_b_01ec64.pth``) also fills the mask head unless ``sam_checkpoint``
            says otherwise.
        layer: the encoder layer to embed (default: SAM's neck, a ViT's last block, a CNN's stride-16 stage).
        finetune: ``frozen``, ``full``, ``last:N`` (default ``last:2``) or ``lora:R``.
        embed_dim, decoder_depth, decoder_mlp_dim, decoder_heads: SAM's 256, 2, 2048, 8.
        mask_prompt: ``none`` or ``self`` (see the module docstring).
        sam_checkpoint: an official SAM state dict whose ``prompt_encoder.*`` / ``mask_decoder.*`` keys load
            strictly into the mask head.

    Reloading a saved teacher (``load_weights(file, weights="random")``) skips reading the pretrained file
    again: the saved state holds every encoder weight.
    """
    from irfoundry.foundation import create_foundation
    from irfoundry.foundation.trainable import FoundationEncoder
    from irfoundry.models.sam_decoder import SAMMaskHead, sam_head_state

    if in_chans not in (1, 3):
        raise ModelError(f"sam_teacher takes 1 or 3 input channels, got {in_chans}")
    probe = create_foundation(foundation, weights="random", device="meta", layers=None)
    layers = _encoder_layer(probe.kind, probe.family, probe.backbone.feature_info if probe.kind == "cnn" else [],
                            layer)
    fm = create_foundation(foundation, weights=weights, layers=layers)
    encoder = FoundationEncoder(fm, finetune)
    channels, stride = encoder.feature_info[0]["channels"], encoder.feature_info[0]["stride"]
    if stride < 4:
        raise ModelError(f"the embedding stride must be >= 4 (masks are at stride / 4), got {stride}")
    neck = None if (layers == ["neck"] and channels == embed_dim) else _sam_neck(channels, embed_dim)
    head = SAMMaskHead(embed_dim, (1024 // stride, 1024 // stride), stride, depth=decoder_depth,
                       num_heads=decoder_heads, mlp_dim=decoder_mlp_dim)
    official = sam_checkpoint or (weights if probe.family == "sam" and weights not in (None, "hub", "random") else None)
    if official is not None:
        from irfoundry.foundation.weights import read_state
        from irfoundry.models.checkpoint import load_state_dict_strict

        state = read_state(official)
        load_state_dict_strict(head, sam_head_state(state), f"SAM mask head of {official}")
    return SAMTeacher(encoder, head, neck, mask_prompt=mask_prompt)
