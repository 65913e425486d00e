"""SAMF: the fusion module of FDEP (Foundation-Driven Efficient Paradigm, arXiv 2512.05511).

What the paper gives (figure and text; no code was released) and what is reconstructed here
(``[recon]``, every choice is a constructor argument):

* One SAMF takes a host feature ``X`` (``B x C x h x w``) and a foundation feature ``D``
  (``B x C_d x h_d x w_d``), resized to ``X``'s size. ``X`` is split by channels into ``X1``
  (``C1 = C // 2`` channels) and ``X2`` (``C - C1``)::

      A  = conv_a(D)              # -> C1 channels     [recon: 1x1 conv]
      B  = conv_b(D)              # -> C - C1 channels [recon: 1x1 conv]
      Y1 = conv_1(X1 * A)         # multiplicative semantic modulation  [recon: 3x3 conv-BN-ReLU]
      Y2 = conv_2(X2 + B)         # additive semantic injection          [recon: 3x3 conv-BN-ReLU]
      out = conv_o(cat(Y1, Y2) + X)                                      [recon: 3x3 conv-BN-ReLU]

  The output has ``X``'s shape, so the module drops in between a host's encoder and decoder.
* FDEP puts four SAMFs in series between the host's last encoder stage and its first decoder stage,
  each fed by one ViT layer (:class:`SAMFStack`). [recon] the ViT layers are four evenly spaced blocks
  (chosen by the foundation adapter), ``D`` is resized with bilinear interpolation.
* [recon] odd ``C``: ``C1 = C // 2``; the resize of ``D`` is ``align_corners=False`` bilinear.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.layers.conv_bn_act import ConvBNAct

__all__ = ["SAMF", "SAMFStack"]


class SAMF(nn.Module):
    """One semantic-aware fusion module: ``(X: B x C x h x w, D: B x C_d x h_d x w_d) -> B x C x h x w``.

    Args:
        channels: ``C``, the host feature's channels.
        feature_channels: ``C_d``, the foundation feature's channels.
        feature_kernel: kernel size of ``conv_a`` / ``conv_b`` on the foundation feature [recon: 1].
        kernel: kernel size of ``conv_1``, ``conv_2`` and ``conv_o`` [recon: 3].
    """

    def __init__(self, channels: int, feature_channels: int, *, feature_kernel: int = 1, kernel: int = 3) -> None:
        super().__init__()
        if channels < 2:
            raise ModelError(f"SAMF needs a host feature with at least 2 channels to split, got {channels}")
        self.channels, self.feature_channels = channels, feature_channels
        c1 = channels // 2
        c2 = channels - c1
        self.split = (c1, c2)
        self.conv_a = nn.Conv2d(feature_channels, c1, feature_kernel, padding=feature_kernel // 2)
        self.conv_b = nn.Conv2d(feature_channels, c2, feature_kernel, padding=feature_kernel // 2)
        self.conv_1 = ConvBNAct(c1, c1, kernel)
        self.conv_2 = ConvBNAct(c2, c2, kernel)
        self.conv_o = ConvBNAct(channels, channels, kernel)

    def forward(self, x: Tensor, feature: Tensor) -> Tensor:
        if x.shape[1] != self.channels or feature.shape[1] != self.feature_channels:
            raise ModelError(
                f"SAMF built for host {self.channels} / foundation {self.feature_channels} channels got "
                f"x {tuple(x.shape)} and feature {tuple(feature.shape)}"
            )
        if feature.shape[-2:] != x.shape[-2:]:
            feature = F.interpolate(feature, size=x.shape[-2:], mode="bilinear", align_corners=False)
        feature = feature.to(x.dtype)
        x1, x2 = torch.split(x, self.split, dim=1)
        y1 = self.conv_1(x1 * self.conv_a(feature))
        y2 = self.conv_2(x2 + self.conv_b(feature))
        return self.conv_o(torch.cat([y1, y2], dim=1) + x)


class SAMFStack(nn.Module):
    """SAMFs in series on one host feature, module ``i`` fed by foundation feature ``sources[i]``.

    Args:
        channels: host feature channels ``C``.
        feature_channels: channels of every available foundation map (the foundation's ``feature_info``).
        num_modules: how many SAMFs in series (paper: 4).
        sources: index into the foundation maps for each module; default: module ``i`` takes map
            ``i * len(feature_channels) // num_modules`` (one map each when there are as many maps
            as modules, as in the paper).
        feature_kernel, kernel: as in :class:`SAMF`.

    ``forward(x: B x C x h x w, features: list of B x C_d_j x h_j x w_j) -> B x C x h x w``.
    """

    def __init__(
        self,
        channels: int,
        feature_channels: Sequence[int],
        *,
        num_modules: int = 4,
        sources: Sequence[int] | None = None,
        feature_kernel: int = 1,
        kernel: int = 3,
    ) -> None:
        super().__init__()
        n_maps = len(feature_channels)
        if n_maps == 0 or num_modules < 1:
            raise ModelError(f"SAMFStack needs >= 1 foundation map and >= 1 module, got {n_maps} maps, {num_modules} modules")
        if sources is None:
            sources = [i * n_maps // num_modules for i in range(num_modules)]
        sources = [int(s) for s in sources]
        if len(sources) != num_modules or any(not 0 <= s < n_maps for s in sources):
            raise ModelError(
                f"SAMF sources {sources} must list {num_modules} indices into the {n_maps} foundation layers"
            )
        self.sources = tuple(sources)
        self.blocks = nn.ModuleList(
            SAMF(channels, feature_channels[s], feature_kernel=feature_kernel, kernel=kernel) for s in self.sources
        )

    def forward(self, x: Tensor, features: Sequence[Tensor]) -> Tensor:
        for src, block in zip(self.sources, self.blocks):
            x = block(x, features[src])
        return x
