"""Convolution -> BatchNorm -> activation, the most repeated block in IRSTD networks."""

from __future__ import annotations

from torch import nn


class ConvBNAct(nn.Sequential):
    """``Conv2d(k, stride, padding=k//2 * dilation, bias=False) -> BatchNorm2d -> act``.

    Shapes: ``B x in_ch x H x W -> B x out_ch x H/stride x W/stride``.
    Submodule names are ``conv``, ``bn``, ``act`` (``act`` absent when ``act=None``).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2 * dilation, dilation=dilation, bias=False
        )
        self.bn = nn.BatchNorm2d(out_ch)
        if act is not None:
            self.act = act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.SiLU) else act()
