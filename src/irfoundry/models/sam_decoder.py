"""SAM's prompt encoder and mask decoder (Kirillov et al., *Segment Anything*, ICCV 2023; architecture of
facebookresearch/segment-anything ``modeling/prompt_encoder.py`` / ``mask_decoder.py``, Apache-2.0,
re-written here), the decoder half of SimIR's SAM-family teacher (issue 20).

* :class:`PromptEncoder`: random-Fourier positional encoding, point / box embeddings, and the dense mask
  prompt (two stride-2 convs with LayerNorm2d and GELU, then 1x1 to the width; a mask input is 4x the
  embedding's grid) or the learned no-mask embedding.
* :class:`MaskDecoder`: IoU token + ``num_multimask_outputs + 1`` mask tokens, the two-way transformer
  (:mod:`irfoundry.layers.two_way_transformer`), x4 transposed-conv upscaling, one hypernetwork MLP per mask
  token, the IoU head.
* :class:`SAMMaskHead`: both together on an image embedding ``B x C x h x w`` -> mask logits
  ``B x 1 x 4h x 4w`` (single-mask output, as SAM with one prompt), optionally given a dense mask prompt.

Parameter names are SAM's: the official checkpoint's ``prompt_encoder.*`` / ``mask_decoder.*`` keys load
strictly (:func:`sam_head_state`); the encoder half (``image_encoder.*``) is the foundation module's
(:mod:`irfoundry.foundation.weights`).

Shapes: ``B`` batch, ``C`` the transformer width (256 for SAM), embedding grid ``h x w``.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence, Type

import torch
from timm.layers import LayerNorm2d
from torch import Tensor, nn

from irfoundry.errors import CheckpointError, ModelError
from irfoundry.layers.mlp import MLP
from irfoundry.layers.two_way_transformer import TwoWayTransformer

__all__ = ["MaskDecoder", "PositionEmbeddingRandom", "PromptEncoder", "SAMMaskHead", "sam_head_state"]


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding by random spatial frequencies: ``[sin, cos](2 pi (2 p - 1) G)``, ``G`` a fixed
    ``2 x F`` Gaussian matrix (a buffer: SAM's checkpoint holds it)."""

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _pe_encoding(self, coords: Tensor) -> Tensor:
        """``... x 2`` coordinates in [0, 1] (x, y) -> ``... x 2F``."""
        coords = 2 * math.pi * ((2 * coords - 1) @ self.positional_encoding_gaussian_matrix)
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: Sequence[int]) -> Tensor:
        """The grid's encoding ``2F x h x w`` (pixel centres)."""
        h, w = int(size[0]), int(size[1])
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack([x[None, :].expand(h, w), y[:, None].expand(h, w)], dim=-1)
        return self._pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: Tensor, image_size: Sequence[int]) -> Tensor:
        """Pixel coordinates ``B x N x 2`` (x, y) in an image of ``(H, W)`` -> ``B x N x 2F``."""
        scale = torch.tensor([1.0 / image_size[1], 1.0 / image_size[0]], device=coords.device)
        return self._pe_encoding(coords.float() * scale)


class PromptEncoder(nn.Module):
    """SAM's prompt encoder (points, boxes, a dense mask).

    Args:
        embed_dim: the width (256).
        image_embedding_size: the embedding grid ``(h, w)`` (64 x 64 for SAM's 1024 input).
        input_image_size: the encoder's input ``(H, W)`` (for point / box coordinates).
        mask_in_chans: hidden channels of the mask downscaling (16).
        activation: of the mask downscaling (GELU).
    """

    def __init__(self, embed_dim: int, image_embedding_size: Sequence[int], input_image_size: Sequence[int],
                 mask_in_chans: int = 16, activation: Type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = tuple(input_image_size)
        self.image_embedding_size = tuple(image_embedding_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings = 4  # negative / positive point, two box corners
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans // 4), activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans),
            activation(), nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1))
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self, size: Sequence[int] | None = None) -> Tensor:
        """``1 x C x h x w`` positional encoding of the embedding grid (default: ``image_embedding_size``)."""
        return self.pe_layer(size or self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: Tensor, labels: Tensor, pad: bool) -> Tensor:
        points = points + 0.5  # pixel centres
        if pad:
            points = torch.cat([points, torch.zeros((points.shape[0], 1, 2), device=points.device)], dim=1)
            labels = torch.cat([labels, -torch.ones((labels.shape[0], 1), device=labels.device)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        emb = torch.where((labels == -1)[..., None], self.not_a_point_embed.weight, emb)
        emb = emb + (labels == 0)[..., None] * self.point_embeddings[0].weight
        return emb + (labels == 1)[..., None] * self.point_embeddings[1].weight

    def _embed_boxes(self, boxes: Tensor) -> Tensor:
        corners = self.pe_layer.forward_with_coords((boxes + 0.5).reshape(-1, 2, 2), self.input_image_size)
        return corners + torch.stack([self.point_embeddings[2].weight[0], self.point_embeddings[3].weight[0]])

    def forward(self, points: tuple[Tensor, Tensor] | None = None, boxes: Tensor | None = None,
                masks: Tensor | None = None, batch: int | None = None,
                size: Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
        """Sparse ``B x N x C`` and dense ``B x C x h x w`` embeddings. ``points``: coordinates ``B x N x 2``
        and labels ``B x N`` (1 positive, 0 negative, -1 padding); ``boxes``: ``B x 4``; ``masks``:
        ``B x 1 x 4h x 4w`` logits; ``batch`` / ``size``: without a mask, the batch and grid of the no-mask
        embedding (default: the prompts' batch, ``image_embedding_size``)."""
        bs = (points[0].shape[0] if points is not None else boxes.shape[0] if boxes is not None
              else masks.shape[0] if masks is not None else batch or 1)
        sparse = torch.empty((bs, 0, self.embed_dim), device=self.no_mask_embed.weight.device)
        if points is not None:
            sparse = torch.cat([sparse, self._embed_points(points[0], points[1], pad=boxes is None)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = size or self.image_embedding_size
            # a copy, not SAM's bare expand: a view of a parameter made under no_grad claims requires_grad without
            # a grad_fn, which torch's FLOP counter (count_macs) refuses
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w).contiguous()
        return sparse, dense


class MaskDecoder(nn.Module):
    """SAM's mask decoder.

    Args:
        transformer_dim: the width ``C`` (256).
        transformer: the :class:`~irfoundry.layers.two_way_transformer.TwoWayTransformer`.
        num_multimask_outputs: the ambiguity masks (3; a fourth token gives the single mask).
        activation: of the upscaling (GELU).
        iou_head_depth, iou_head_hidden_dim: the IoU head (3, 256).
    """

    def __init__(self, *, transformer_dim: int, transformer: nn.Module, num_multimask_outputs: int = 3,
                 activation: Type[nn.Module] = nn.GELU, iou_head_depth: int = 3, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.transformer_dim, self.transformer = transformer_dim, transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4), activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2), activation())
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def predict_masks(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                      dense_prompt_embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """All masks ``B x T x 4h x 4w`` and IoU predictions ``B x T`` (``T`` mask tokens), one prompt set per
        image (SAM repeats images per prompt set; here the batches align)."""
        b = sparse_prompt_embeddings.shape[0]
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0).unsqueeze(0).expand(b, -1, -1)
        tokens = torch.cat((tokens, sparse_prompt_embeddings), dim=1)
        src = image_embeddings + dense_prompt_embeddings
        pos = image_pe.expand(b, -1, -1, -1) if image_pe.shape[0] == 1 else image_pe
        _, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack([mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                            dim=1)
        _, c2, h2, w2 = upscaled.shape
        masks = (hyper @ upscaled.reshape(b, c2, h2 * w2)).reshape(b, -1, h2, w2)
        return masks, self.iou_prediction_head(hs[:, 0, :])

    def forward(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                dense_prompt_embeddings: Tensor, multimask_output: bool) -> tuple[Tensor, Tensor]:
        """SAM's selection: the three ambiguity masks, or the single-mask token's."""
        masks, iou = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings)
        pick = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, pick], iou[:, pick]


class SAMMaskHead(nn.Module):
    """Prompt encoder + mask decoder on an image embedding, SAM's sizes by default (``prompt_encoder`` /
    ``mask_decoder`` submodules, as SAM names them).

    Args:
        embed_dim: width of the embedding and the transformer (256).
        embedding_size: the embedding grid the prompt encoder is built for (64 x 64); other grids work (the
            positional encoding is computed per grid).
        stride: input pixels per embedding cell (16: points / boxes in input pixels).
        depth, num_heads, mlp_dim, mask_in_chans, iou_head_hidden_dim: SAM's 2, 8, 2048, 16, 256.
    """

    def __init__(self, embed_dim: int = 256, embedding_size: Sequence[int] = (64, 64), stride: int = 16, *,
                 depth: int = 2, num_heads: int = 8, mlp_dim: int = 2048, mask_in_chans: int = 16,
                 iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        if embed_dim % 8:
            raise ModelError(f"SAMMaskHead: embed_dim must be a multiple of 8, got {embed_dim}")
        size = tuple(int(s) for s in embedding_size)
        self.stride = int(stride)
        self.prompt_encoder = PromptEncoder(embed_dim, size, (size[0] * stride, size[1] * stride), mask_in_chans)
        self.mask_decoder = MaskDecoder(
            transformer_dim=embed_dim,
            transformer=TwoWayTransformer(depth=depth, embedding_dim=embed_dim, num_heads=num_heads, mlp_dim=mlp_dim),
            iou_head_hidden_dim=iou_head_hidden_dim)

    def forward(self, embedding: Tensor, mask_prompt: Tensor | None = None) -> Tensor:
        """``B x C x h x w`` embedding (+ optional ``B x 1 x 4h x 4w`` mask prompt logits) -> single-mask logits
        ``B x 1 x 4h x 4w``."""
        b, _, h, w = embedding.shape
        sparse, dense = self.prompt_encoder(masks=mask_prompt, batch=b, size=(h, w))
        masks, _ = self.mask_decoder(embedding, self.prompt_encoder.get_dense_pe((h, w)), sparse, dense,
                                     multimask_output=False)
        return masks


def sam_head_state(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The ``prompt_encoder.*`` and ``mask_decoder.*`` entries of an official SAM state dict (``sam_vit_*.pth``),
    for :class:`SAMMaskHead` (the names are the same). Raises :class:`CheckpointError` when there are none."""
    head = {k: v for k, v in official.items() if k.startswith(("prompt_encoder.", "mask_decoder."))}
    if not head:
        raise CheckpointError("the state dict holds no prompt_encoder.* / mask_decoder.* keys: not an official SAM "
                              "checkpoint (sam_vit_b_01ec64.pth and its siblings hold both halves)")
    return head
