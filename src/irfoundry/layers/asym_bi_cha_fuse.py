"""ACM's asymmetric bi-directional channel fusion (Dai et al., WACV 2021; BasicIRSTD ``model/ACM/fusion.py``),
shared by ACM and ALCNet."""

from __future__ import annotations

from torch import Tensor, nn

from irfoundry.errors import ModelError

#: BatchNorm momentum the reference passes to its stem, down-sample, fusion and head norms (see module doc)
REFERENCE_BN_MOMENTUM = 0.9


class AsymBiChaFuse(nn.Module):
    """Asymmetric bi-directional channel fusion (ACM's "AsymBi" module).

    ``out = post(2 * xl * topdown(xh) + 2 * xh * bottomup(xl))`` where ``topdown`` is a global
    (average-pooled) channel attention computed from the deep feature ``xh`` and ``bottomup`` a
    point-wise (per-pixel) channel attention computed from the shallow feature ``xl``.

    Shapes: ``xh``, ``xl``: ``B x C x H x W`` -> ``B x C x H x W``.
    Submodule indices follow BasicIRSTD ``model/ACM/fusion.py`` (``topdown.1`` is the first conv, etc.).
    """

    def __init__(self, channels: int, r: int = 4, bn_momentum: float = REFERENCE_BN_MOMENTUM) -> None:
        super().__init__()
        mid = channels // r
        if mid < 1:
            raise ModelError(f"AsymBiChaFuse needs channels >= r ({channels} < {r}); widen the 'channels' option")
        self.topdown = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, mid, 1),
            nn.BatchNorm2d(mid, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1),
            nn.BatchNorm2d(channels, momentum=bn_momentum),
            nn.Sigmoid(),
        )
        self.bottomup = nn.Sequential(
            nn.Conv2d(channels, mid, 1),
            nn.BatchNorm2d(mid, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1),
            nn.BatchNorm2d(channels, momentum=bn_momentum),
            nn.Sigmoid(),
        )
        self.post = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels, momentum=bn_momentum),
            nn.ReLU(inplace=True),
        )

    def forward(self, xh: Tensor, xl: Tensor) -> Tensor:
        return self.post(2 * xl * self.topdown(xh) + 2 * xh * self.bottomup(xl))
