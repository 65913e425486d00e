"""SCAM: the semantic-conditioned affine modulator of semantic-prior KD (arXiv 2605.14346; code
yuanhang-yao/semantic-prior, ``models/teacher.py`` ``Modulator`` / ``DINOCNNTeacher``, MIT).

From the released code (``[code]``; every constant is a constructor argument with the released value):

* soft fusion of the foundation's layers: ``F = sum_k softmax(pi)_k F_k`` with one learnable logit per
  layer, ``pi`` initialised to 0 (equal weights); one layer: ``F = F_0``, no logits;
* attention pooling: a 1x1 conv ``C_f -> 1`` scores every position, softmax over positions at temperature
  ``attn_temperature`` (1), ``g = sum_p softmax(score)_p F_p`` in ``R^{C_f}``;
* an MLP ``C_f -> hidden (128) -> ReLU -> 2 x sum(stage widths)`` gives per stage ``gamma_raw`` and
  ``beta`` (``B x C_s`` each, in that order per stage); ``gamma = 1 + tanh(gamma_raw * gate)`` with a
  learnable per-channel ``gate`` initialised to 1 (``residual_gamma=False``: ``gamma = gamma_raw * gate``);
* the host's feature of stage ``s`` becomes ``f' = (1 + m (gamma - 1)) f + m beta`` with the host's
  modulation scale ``m`` (0.12 ALCL-Net, 0.55 MLCL-Net in the reference); ``m <= 1e-6`` leaves ``f`` as is.

The reference fuses 13 equal maps of a ViT (DINOv3 ViT-S+/16: the embedding output and every block, the
last one post-norm; ``C_f = 384``), which gives about 178k parameters for ALCL-Net's stages 16/32/64/128/256
and 79k for MLCL-Net's 16/32/64 (checked by a test). ``[recon]`` For foundations whose layers differ in
width or grid (a CNN such as the bundled EfficientNet-Lite0), each layer is first projected to
``fuse_channels`` (default: the widest layer) by a 1x1 conv and area-resized to the coarsest layer's grid,
then fused as above; layers that already agree are fused untouched, as in the reference.

``zero_init=True`` (not the reference's default) zero-initialises the MLP's last layer: then ``gamma = 1``,
``beta = 0`` and the host's features pass unchanged until SCAM learns.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError

__all__ = ["SCAM", "modulate"]


def modulate(features: Sequence[Tensor], gammas: Sequence[Tensor], betas: Sequence[Tensor],
             scale: float) -> list[Tensor]:
    """``f' = (1 + scale (gamma - 1)) f + scale beta`` per stage (``gamma``, ``beta``: ``B x C x 1 x 1``);
    stages beyond ``len(gammas)`` pass unchanged, and so does everything when ``scale <= 1e-6``."""
    if scale <= 1e-6:
        return list(features)
    out = [(1.0 + scale * (g - 1.0)) * f + scale * b for f, g, b in zip(features, gammas, betas)]
    return out + list(features[len(out):])


class SCAM(nn.Module):
    """Foundation maps -> per-stage ``(gamma, beta)`` of a host's encoder.

    Args:
        feature_channels: channels of each foundation layer, ``[C_1, ..., C_K]``.
        stage_channels: widths of the host's modulated encoder stages, ``[C_s1, ...]``.
        hidden: MLP hidden width (128).
        attn_temperature: softmax temperature of the attention pooling (1).
        residual_gamma: ``gamma = 1 + tanh(gamma_raw * gate)`` (True) or ``gamma_raw * gate``.
        fuse_channels: common width for layers of different widths (default: the widest) [recon].
        zero_init: zero the MLP's output layer (host features unchanged at the start) [not the reference].
    """

    def __init__(self, feature_channels: Sequence[int], stage_channels: Sequence[int], *, hidden: int = 128,
                 attn_temperature: float = 1.0, residual_gamma: bool = True, fuse_channels: int | None = None,
                 zero_init: bool = False) -> None:
        super().__init__()
        self.feature_channels = [int(c) for c in feature_channels]
        self.stage_channels = [int(c) for c in stage_channels]
        if not self.feature_channels or not self.stage_channels or min(self.feature_channels + self.stage_channels) < 1:
            raise ModelError(f"SCAM needs foundation layer widths and host stage widths, got {feature_channels} / "
                             f"{stage_channels}")
        if attn_temperature <= 0:
            raise ModelError(f"SCAM attn_temperature must be positive, got {attn_temperature}")
        self.attn_temperature, self.residual_gamma = float(attn_temperature), bool(residual_gamma)
        same = len(set(self.feature_channels)) == 1 and fuse_channels in (None, self.feature_channels[0])
        self.fuse_channels = self.feature_channels[0] if same else int(fuse_channels or max(self.feature_channels))
        self.project = None if same else nn.ModuleList(
            nn.Conv2d(c, self.fuse_channels, 1) for c in self.feature_channels)
        k = len(self.feature_channels)
        self.layer_logits = nn.Parameter(torch.zeros(k)) if k > 1 else None
        self.attn_score = nn.Conv2d(self.fuse_channels, 1, 1)
        self.mlp = nn.Sequential(nn.Linear(self.fuse_channels, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 2 * sum(self.stage_channels)))
        self.gate = nn.Parameter(torch.ones(sum(self.stage_channels)))
        if zero_init:
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def fuse(self, maps: Sequence[Tensor]) -> Tensor:
        """``K`` maps ``B x C_k x h_k x w_k`` -> the fused ``B x C_f x h x w``."""
        if len(maps) != len(self.feature_channels):
            raise ModelError(f"SCAM was built for {len(self.feature_channels)} foundation layers, got {len(maps)}")
        for m, c in zip(maps, self.feature_channels):
            if m.dim() != 4 or m.shape[1] != c:
                raise ModelError(f"SCAM expects foundation maps B x {self.feature_channels} x h x w, got "
                                 f"{[tuple(x.shape) for x in maps]}")
        if self.project is not None:
            h = min(m.shape[-2] for m in maps)
            w = min(m.shape[-1] for m in maps)
            # pool, then project: the same numbers as projecting first (a 1x1 conv is affine per position and
            # area pooling averages positions), without the projections at the finest grids
            maps = [p(F.adaptive_avg_pool2d(m, (h, w))) for p, m in zip(self.project, maps)]
        elif len({tuple(m.shape[-2:]) for m in maps}) > 1:
            raise ModelError(f"SCAM: foundation maps of one width must share a grid, got {[tuple(m.shape) for m in maps]}")
        if self.layer_logits is None:
            return maps[0]
        weights = torch.softmax(self.layer_logits, dim=0)
        return sum(wk * m for wk, m in zip(weights, maps))

    def pool(self, fused: Tensor) -> Tensor:
        """Attention pooling ``B x C_f x h x w -> B x C_f``."""
        attn = torch.softmax(self.attn_score(fused).flatten(2) / self.attn_temperature, dim=-1)  # B x 1 x hw
        return (fused.flatten(2) * attn).sum(dim=-1)

    def forward(self, maps: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Foundation maps -> ``(gammas, betas)``, one ``B x C_s x 1 x 1`` pair per host stage."""
        vec = self.mlp(self.pool(self.fuse(maps)))
        b = vec.shape[0]
        gammas, betas = [], []
        offset = gate_offset = 0
        for c in self.stage_channels:
            raw, beta = vec[:, offset : offset + c], vec[:, offset + c : offset + 2 * c]
            offset += 2 * c
            raw = raw * self.gate[gate_offset : gate_offset + c]
            gate_offset += c
            gammas.append((1.0 + torch.tanh(raw) if self.residual_gamma else raw).view(b, c, 1, 1))
            betas.append(beta.reshape(b, c, 1, 1))
        return gammas, betas

    def gate_l1(self) -> Tensor:
        """``mean |gate|``: the reference's sparsity term on the gates (weight 0.005 in its inner loss)."""
        return self.gate.abs().mean()
