"""ResNet basic block and stage as BasicIRSTD's ACM / ALCNet build them (torchvision parameter names)."""

from __future__ import annotations

from torch import Tensor, nn


class ResBasicBlock(nn.Module):
    """ResNet basic block (two 3x3 conv-BN, identity or 1x1 projection shortcut).

    Same parameter names as ``torchvision.models.resnet.BasicBlock`` (``conv1``, ``bn1``, ``conv2``,
    ``bn2``, ``downsample.0/1``), which the reference uses; its BatchNorms keep PyTorch's momentum 0.1.
    Shapes: ``B x in_ch x H x W -> B x out_ch x H/stride x W/stride``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def make_res_layer(in_ch: int, out_ch: int, blocks: int, stride: int, bn_momentum: float) -> nn.Sequential:
    """``blocks`` basic blocks; the first one strides and projects (1x1 conv + BN with ``bn_momentum``,
    as the reference's ``_make_layer``) when the shape changes."""
    downsample = None
    if stride != 1 or in_ch != out_ch:
        downsample = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
            nn.BatchNorm2d(out_ch, momentum=bn_momentum),
        )
    layers = [ResBasicBlock(in_ch, out_ch, stride, downsample)]
    layers += [ResBasicBlock(out_ch, out_ch) for _ in range(1, blocks)]
    return nn.Sequential(*layers)
