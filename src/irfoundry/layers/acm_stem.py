"""The stem of BasicIRSTD's ACM / ALCNet: input BN, three 3x3 conv-BN-ReLU, a 3x3/2 max-pool."""

from __future__ import annotations

from torch import nn


def make_stem(in_chans: int, width: int, bn_momentum: float) -> nn.Sequential:
    """Input BN, three 3x3 conv-BN-ReLU (the first strided) and a 3x3/2 max-pool.

    Shapes: ``B x in_chans x H x W -> B x 2*width x H/4 x W/4``. Indices as the reference
    (``stem.0`` input BN, ``stem.1`` first conv, ... ``stem.10`` max-pool).
    """
    return nn.Sequential(
        nn.BatchNorm2d(in_chans, momentum=bn_momentum),
        nn.Conv2d(in_chans, width, 3, 2, padding=1, bias=False),
        nn.BatchNorm2d(width, momentum=bn_momentum),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, 1, padding=1, bias=False),
        nn.BatchNorm2d(width, momentum=bn_momentum),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width * 2, 3, 1, padding=1, bias=False),
        nn.BatchNorm2d(width * 2, momentum=bn_momentum),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1),
    )
