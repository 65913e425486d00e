"""FCN segmentation head as BasicIRSTD's ACM / ALCNet use it (keys ``block.0/1/4``)."""

from __future__ import annotations

from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.layers.asym_bi_cha_fuse import REFERENCE_BN_MOMENTUM


class FCNHead(nn.Module):
    """FCN head: 3x3 conv-BN-ReLU to ``in_ch // 4`` channels, dropout 0.1, 1x1 conv (with bias).

    Shapes: ``B x in_ch x H x W -> B x out_ch x H x W`` (logits). Keys ``block.0/1/4`` as the reference.
    """

    def __init__(self, in_ch: int, out_ch: int = 1, bn_momentum: float = REFERENCE_BN_MOMENTUM) -> None:
        super().__init__()
        mid = in_ch // 4
        if mid < 1:
            raise ModelError(f"FCNHead needs at least 4 input channels, got {in_ch}; widen the 'channels' option")
        self.block = nn.Sequential(
            nn.Conv2d(in_ch, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(mid, out_ch, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)
