"""The model contracts: a segmentation model, and the encoder-decoder capability of host networks.

**Segmentation model** (:class:`SegmentationModel`, every registered model): ``forward(x)`` maps
``B x in_chans x H x W`` with ``H, W`` multiples of ``model.input_multiple`` to logits, never probabilities
(``Sam.mask_threshold``-style, explicit):

* eval mode: a tensor ``B x 1 x H x W``;
* training mode with deep supervision: a list ``[main, aux_1, ...]`` of ``B x 1 x H x W`` logits,
  the main output first. Models without deep supervision return a tensor in both modes.

Deep supervision is decided by ``self.training``, never by a ``mode`` flag. ``input_multiple`` is what
the inference path pads to, what the data config's crop size is checked against, and what the generic
model tests feed; ``in_chans`` is the number of input channels the model was built for.

**Encoder-decoder capability** (:class:`HostNet`, the IRSTD hosts): the network splits into

* ``encode(x) -> list[Tensor]``: the encoder stage features the decoder consumes, shallow to deep.
  Stage ``i`` has ``stage_channels[i]`` channels at stride ``stage_strides[i]``
  (shape ``B x C_i x H / s_i x W / s_i``). The last entry is the bottleneck.
* ``decode(features, input_size) -> Tensor | list[Tensor]``: everything after the encoder.

``forward(x) = decode(encode(x), x.shape[-2:])``. A fusion module can therefore change the bottleneck
(FDEP's SAMF) or every stage (SCAM) between the two calls without editing the host; methods that need it
check :func:`is_encoder_decoder`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from irfoundry.errors import ModelError

#: the input multiple of the IRSTD hosts (five stride-2 stages); a model may declare another
DEFAULT_INPUT_MULTIPLE = 32


class SegmentationModel(nn.Module):
    """Base class of every registered model (see the module docstring for the contract)."""

    #: height and width of every input must be multiples of this
    input_multiple: int = DEFAULT_INPUT_MULTIPLE
    #: submodules (qualified names, e.g. ``uplayer1`` or ``mask_head.prompt_encoder.point_embeddings``) the
    #: reference builds but never calls (kept so reference checkpoints load strictly); they get no gradient,
    #: so DDP needs ``find_unused_parameters=True`` for such models
    unused_modules: tuple[str, ...] = ()
    #: convolutions that map features to output logits (main and deep-supervision heads);
    #: :func:`init_output_probability` sets them
    logit_layers: tuple[str, ...] = ()
    #: convolutions whose *inputs* are logits (a fusion of side outputs, e.g. MSHNet ``final``)
    logit_fusion_layers: tuple[str, ...] = ()
    #: why an ONNX export of this model is refused (``None``: it exports; :func:`irfoundry.deploy.onnx.export_onnx`)
    onnx_refusal: str | None = None
    #: filled in by :func:`irfoundry.models.create_model`
    model_name: str = ""
    model_kwargs: dict = {}

    @property
    def in_chans(self) -> int:
        """Input channels the model was built for (``create_model(name, in_chans=...)``)."""
        return int(self.model_kwargs.get("in_chans", 1))


class HostNet(SegmentationModel):
    """An encoder-decoder host network. Subclasses set ``stage_channels`` / ``stage_strides``
    in ``__init__`` and implement :meth:`encode` and :meth:`decode`."""

    stage_channels: tuple[int, ...] = ()
    stage_strides: tuple[int, ...] = ()

    @property
    def feature_info(self) -> list[dict]:
        """timm-style description of the encoder stages: ``num_chs``, ``reduction``, ``index``."""
        return [
            {"num_chs": c, "reduction": s, "index": i}
            for i, (c, s) in enumerate(zip(self.stage_channels, self.stage_strides))
        ]

    def encode(self, x: Tensor) -> list[Tensor]:  # pragma: no cover - abstract
        """``B x in_chans x H x W`` -> encoder stage features, shallow to deep."""
        raise NotImplementedError

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor | list[Tensor]:
        """Stage features -> logits ``B x 1 x H x W`` (a list, main first, in training with deep supervision)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def check_stage_features(self, features: Sequence[Tensor]) -> None:
        """Raise :class:`ModelError` unless ``features`` holds one map per declared stage, as :meth:`encode`
        returns them (what a :meth:`decode` checks before unpacking)."""
        if len(features) != len(self.stage_channels):
            raise ModelError(f"{type(self).__name__}.decode expects the {len(self.stage_channels)} stage features "
                             f"of encode(), got {len(features)}")

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        check_input_size(x, self.input_multiple)
        return self.decode(self.encode(x), (x.shape[-2], x.shape[-1]))


def is_encoder_decoder(model: nn.Module) -> bool:
    """Whether ``model`` offers the encoder-decoder capability (``encode`` / ``decode`` and declared stages)."""
    return isinstance(model, HostNet) and len(model.stage_channels) > 0


def input_multiple(model: nn.Module) -> int:
    """The input multiple a model declares (:data:`DEFAULT_INPUT_MULTIPLE` for plain ``nn.Module`` s)."""
    return int(getattr(model, "input_multiple", DEFAULT_INPUT_MULTIPLE))


def check_input_size(x: Tensor, multiple: int = DEFAULT_INPUT_MULTIPLE) -> None:
    """Raise :class:`ModelError` unless ``x`` is ``B x C x H x W`` with H, W multiples of ``multiple``."""
    if x.dim() != 4:
        raise ModelError(f"expected a B x C x H x W tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ModelError(
            f"input size {h}x{w} is not a multiple of {multiple}; pad it first "
            "(irfoundry.engine.inference.Predictor does this and crops the output back)"
        )


def main_output(out: Tensor | Sequence[Tensor]) -> Tensor:
    """The main prediction of a host's output (the tensor itself, or the first of a list)."""
    return out if isinstance(out, torch.Tensor) else out[0]


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def init_output_probability(model: SegmentationModel, prob: float, weight_std: float | None = 0.01) -> float:
    """Start every output of ``model`` at probability ``prob`` (RetinaNet's output initialisation).

    Sets the bias of each :attr:`SegmentationModel.logit_layers` convolution to ``b = log(p / (1 - p))`` and redraws
    its weights from ``N(0, weight_std^2)``, as RetinaNet does for its classification head (Lin et al.,
    section 4.1; torchvision's ``RetinaNetClassificationHead``: ``normal_(std=0.01)``, prior bias), so every
    pixel starts at about ``p``. For a :attr:`SegmentationModel.logit_fusion_layers` convolution (whose inputs are
    those logits) the weights are kept and the bias is ``b * (1 - sum(weight))``, so that side outputs all
    equal to ``b`` fuse to ``b``. ``weight_std=None`` keeps the host's own logit weights (bias only; the
    behaviour before 2026-11-29, kept to reproduce ``docs/results/fdep_gain_*_biasinit.json``). Returns ``b``.

    Why it exists (a training choice, not part of any host's published recipe, so off by default): a
    freshly initialised host predicts ``p ~ 0.5`` everywhere, and with Adam the background logits can
    only fall by about ``lr`` per step, so under SoftIoU a host spends its first thousands of steps
    pushing the background down before any target is found (BasicIRSTD's ACM / ALCNet: ~100 epochs
    of NUAA-SIRST, XinyiYing/BasicIRSTD#19). Starting at ``p = 0.01`` removes that phase; see
    docs/results/fdep.md.

    Why the weights too: the bias alone leaves a trap. ACM's and ALCNet's head ends in a 1x1 conv over
    2 ReLU channels; where both of its host-initialised weights are negative (about one seed in four),
    every logit is ``<= b`` and only a sign flip of a weight can lift a target, which the
    weak gradients at ``p = 0.01`` do not achieve in a short budget: ALCNet seeds 1 and 2 never predicted
    a target in 20 epochs (``fdep_gain_sirst_biasinit.json``). Weights of size ``weight_std`` change sign
    within a few Adam steps.

    Raises :class:`ModelError` for ``prob`` outside (0, 1), a negative ``weight_std`` or a host that
    names no logit layer.
    """
    if not 0.0 < prob < 1.0:
        raise ModelError(f"prob must be in (0, 1), got {prob!r}")
    if weight_std is not None and not weight_std >= 0.0:
        raise ModelError(f"weight_std must be null or >= 0, got {weight_std!r}")
    if not model.logit_layers:
        raise ModelError(f"{type(model).__name__} names no logit_layers; its outputs cannot be initialised")
    bias = math.log(prob / (1.0 - prob))
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in (*model.logit_layers, *model.logit_fusion_layers):
            conv = modules.get(name)
            if not isinstance(conv, nn.Conv2d) or conv.bias is None or conv.out_channels != 1:
                raise ModelError(f"{type(model).__name__}.{name} is not a 1-channel convolution with a bias")
            if name in model.logit_fusion_layers:
                conv.bias.fill_(bias * (1.0 - float(conv.weight.sum())))
            else:
                if weight_std is not None:
                    conv.weight.normal_(0.0, weight_std)
                conv.bias.fill_(bias)
    return bias
