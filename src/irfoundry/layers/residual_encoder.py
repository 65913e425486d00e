"""The residual encoder of ALCL-Net and MLCL-Net (semantic-prior code ``models/``; reference ``Stage``,
``Resnet1``, ``Resnet2``) and their Kaiming initialisation."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn


def init_kaiming(module: nn.Module) -> None:
    """The reference initialisation: Kaiming-normal (fan_out, ReLU) convolutions with zero bias,
    BatchNorm weight 1 and bias 0, Xavier-uniform linear layers. Use with ``module.apply``."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    # the reference keeps the bias in every convolution, BatchNorm or not
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1)


class ResidualBlock(nn.Module):
    """Basic residual block (reference ``Resnet1``): ``relu(x + BN(conv(relu(BN(conv(x))))))``.

    Shapes: ``B x C x H x W -> B x C x H x W``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            _conv3x3(channels, channels),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            _conv3x3(channels, channels),
            nn.BatchNorm2d(channels),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.layer(x) + x)


class DownResidualBlock(nn.Module):
    """Down-sampling residual block (reference ``Resnet2``).

    Main path ``layer1``: conv3x3-BN-ReLU, max-pool 2, conv3x3-BN. Shortcut ``layer2``: conv3x3 with
    stride 2, BN, ReLU. Output ``relu(main + shortcut)``.
    Shapes: ``B x C_in x H x W -> B x C_out x H/2 x W/2``.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(
            _conv3x3(in_ch, out_ch),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            _conv3x3(out_ch, out_ch),
            nn.BatchNorm2d(out_ch),
        )
        self.layer2 = nn.Sequential(
            _conv3x3(in_ch, out_ch, stride=2),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.layer1(x) + self.layer2(x))


class ResidualEncoder(nn.Module):
    """The residual encoder shared by ALCL-Net and MLCL-Net (reference ``Stage``).

    ``layer1`` is the stem (two conv3x3-BN-ReLU at ``widths[0]`` channels); group ``i`` (1-based) holds
    ``resnet{i}_1 .. resnet{i}_{blocks}``, whose first block is a :class:`DownResidualBlock` for ``i > 1``.

    Shapes: ``B x in_chans x H x W`` -> list of ``B x widths[i] x H/2^i x W/2^i``, one per group.
    """

    def __init__(self, in_chans: int, widths: Sequence[int], blocks: int = 3) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.layer1 = nn.Sequential(
            _conv3x3(in_chans, widths[0]),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            _conv3x3(widths[0], widths[0]),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.groups: list[list[str]] = []
        prev = widths[0]
        for i, width in enumerate(widths, start=1):
            names = []
            for j in range(1, blocks + 1):
                block = DownResidualBlock(prev, width) if (i > 1 and j == 1) else ResidualBlock(width)
                name = f"resnet{i}_{j}"
                self.add_module(name, block)
                names.append(name)
                prev = width
            self.groups.append(names)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = self.layer1(x)
        feats = []
        for names in self.groups:
            for name in names:
                out = getattr(self, name)(out)
            feats.append(out)
        return feats
