"""MLCL-Net, the multiscale local contrast learning network (Yu et al., Infrared Phys. Technol. 2022).

Paper: C. Yu, Y. Liu, S. Wu, Z. Hu, X. Xia, D. Lan, X. Liu, "Infrared small target detection based on
multiscale local contrast learning networks", Infrared Physics & Technology 123, 104107, 2022.

Reference code followed here: ``models/mlclnet.py`` of the semantic-prior KD paper
(https://github.com/yuanhang-yao/semantic-prior, commit c0dda27, MIT); the authors' own code is at
https://github.com/YuChuang1205/MLCL-Net. Submodule names and ``nn.Sequential`` indices are the
reference's, so a student checkpoint saved by the semantic-prior code (``{"state_dict":
student.state_dict()}``, no wrapper prefix) loads strictly through
:func:`irfoundry.models.checkpoint.import_reference_checkpoint` with no key filter. The reference builds
the student with ``in_channels=3`` (grey image read as RGB), so import its checkpoints with ``in_chans=3``.

Architecture (``B x C_in x H x W``, H and W multiples of 32):

* encoder (``stage``): the residual encoder of ALCL-Net
  (:class:`irfoundry.models.alclnet.ResidualEncoder`) cut after its third group: stem + three groups of
  three residual blocks at widths 16, 32, 64, strides 1, 2, 4. These three group outputs are exactly the
  features the semantic-prior teacher modulates with SCAM (``stage_channels = [16, 32, 64]``); the last
  (stride 4) is the bottleneck.
* decoder: one :class:`MLCLBlock` per stage (three parallel branches conv1x1 / conv3x3 / conv5x5, each
  followed by a 3x3 convolution of dilation 1 / 3 / 5, concatenated and fused by conv1x1), then
  conv1x1-ReLU projections to 64 channels, bilinear x2 up-sampling (align_corners=True) and addition from
  deep to shallow, and a conv1x1-ReLU-conv1x1 head giving ``B x 1 x H x W`` logits. No deep supervision.

Size: 656,961 trainable parameters with ``in_chans=1`` (657,249 with the reference's ``in_chans=3``),
counted by running the semantic-prior code's ``MLCLNet`` (``published_params`` records this number; it was
not checked against a table of the paper); ours is identical. The semantic-prior paper uses
SCAM strength ``s = 0.55`` for this host.

Deviations from the reference: none in the architecture or the initialisation (as in the reference, the
encoder and the MLCL blocks are Kaiming-initialised, the projections and the head keep PyTorch's default
initialisation). The reference's parameter-free ``up3`` / ``up2`` modules
(``nn.UpsamplingBilinear2d(scale_factor=2)``) are written as ``F.interpolate(size=<shallower stage>,
mode="bilinear", align_corners=True)``, which gives the same result for inputs whose sides are multiples
of 32 and holds no state-dict entries.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.models._registry import register_model
from irfoundry.layers.residual_encoder import ResidualEncoder, init_kaiming
from irfoundry.models.base import HostNet

#: channel widths of the three encoder groups
MLCL_WIDTHS = (16, 32, 64)


def _branch(in_ch: int, out_ch: int, kernel_size: int, dilation: int) -> nn.Sequential:
    """conv(k x k)-ReLU-conv3x3(dilation d)-ReLU, padding keeping the size."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=kernel_size, padding=kernel_size // 2),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=dilation, dilation=dilation),
        nn.ReLU(inplace=True),
    )


class MLCLBlock(nn.Module):
    """Multiscale local contrast learning block.

    Branches ``layer1`` (conv1x1, conv3x3 d=1), ``layer2`` (conv3x3, conv3x3 d=3), ``layer3`` (conv5x5,
    conv3x3 d=5), each with ReLUs; their concatenation is fused by the conv1x1 ``conv`` (no activation).
    Shapes: ``B x C_in x H x W -> B x C_out x H x W``.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.layer1 = _branch(in_ch, out_ch, kernel_size=1, dilation=1)
        self.layer2 = _branch(in_ch, out_ch, kernel_size=3, dilation=3)
        self.layer3 = _branch(in_ch, out_ch, kernel_size=5, dilation=5)
        self.conv = nn.Conv2d(3 * out_ch, out_ch, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(torch.cat((self.layer1(x), self.layer2(x), self.layer3(x)), dim=1))


def _proj(in_ch: int, out_ch: int) -> nn.Sequential:
    """conv1x1-ReLU (reference ``conv1`` / ``conv2`` / ``conv3``)."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size=1), nn.ReLU(inplace=True))


def _up_to(x: Tensor, ref: Tensor) -> Tensor:
    """Bilinear up-sampling of ``x`` to ``ref``'s size, align_corners=True (= the reference's x2)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=True)


class MLCLNet(HostNet):
    """MLCL-Net. ``B x in_chans x H x W -> B x 1 x H x W`` logits (H, W divisible by 32).

    ``encode`` returns the three residual-group outputs (``stage_channels = (16, 32, 64)``,
    ``stage_strides = (1, 2, 4)``); ``decode`` depends on nothing but the feature list.
    """

    logit_layers = ("layer.2",)

    def __init__(self, *, in_chans: int = 1) -> None:
        super().__init__()
        if in_chans < 1:
            raise ModelError(f"mlclnet: in_chans must be >= 1, got {in_chans}")
        self.stage_channels = MLCL_WIDTHS
        self.stage_strides = (1, 2, 4)
        self.stage = ResidualEncoder(in_chans, MLCL_WIDTHS)
        self.mlcl3 = MLCLBlock(64, 64)
        self.mlcl2 = MLCLBlock(32, 32)
        self.mlcl1 = MLCLBlock(16, 16)
        # Kaiming init on the encoder and the MLCL blocks only, as in the reference
        for module in (self.stage, self.mlcl3, self.mlcl2, self.mlcl1):
            module.apply(init_kaiming)
        self.conv3 = _proj(64, 64)
        self.conv2 = _proj(32, 64)
        self.conv1 = _proj(16, 64)
        self.layer = nn.Sequential(
            nn.Conv2d(64, 64, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 1, kernel_size=1),
        )

    def encode(self, x: Tensor) -> list[Tensor]:
        """``B x in_chans x H x W`` -> three maps ``B x (16, 32, 64) x H/(1, 2, 4) x W/(1, 2, 4)``."""
        return self.stage(x)

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor:
        """Three stage maps (as :meth:`encode` returns them) -> logits ``B x 1 x H x W``.

        ``input_size`` is unused: the shallowest stage is already at full resolution.
        """
        self.check_stage_features(features)
        f1, f2, f3 = features
        x2 = self.conv2(self.mlcl2(f2))
        x = _up_to(self.conv3(self.mlcl3(f3)), x2) + x2
        x1 = self.conv1(self.mlcl1(f1))
        x = _up_to(x, x1) + x1
        return self.layer(x)


@register_model(
    "mlclnet",
    published_params=656_961,
    paper="Yu et al., Infrared small target detection based on multiscale local contrast learning "
    "networks, Infrared Physics & Technology 2022",
    reference="https://github.com/yuanhang-yao/semantic-prior (models/mlclnet.py; original: "
    "https://github.com/YuChuang1205/MLCL-Net)",
)
def mlclnet(*, in_chans: int = 1) -> MLCLNet:
    """MLCL-Net as in the semantic-prior code; 0.66 M parameters. Untrained (no weights are downloaded).

    Reference checkpoints were trained on 3-channel input: import them with ``in_chans=3``.
    """
    return MLCLNet(in_chans=in_chans)
