"""ALCL-Net, the attention local contrast learning network (Yu et al., GRSL 2022).

Paper: C. Yu, Y. Liu, S. Wu, X. Xia, Z. Hu, D. Lan, X. Liu, "Pay Attention to Local Contrast Learning
Networks for Infrared Small Target Detection", IEEE Geoscience and Remote Sensing Letters 19, 2022.

Reference code followed here: ``models/alclnet.py`` of the semantic-prior KD paper
(https://github.com/yuanhang-yao/semantic-prior, commit c0dda27, MIT), which is the authors' original
network (https://github.com/YuChuang1205/ALCL-Net, ``model_ALCL-Net.py``) with the final sigmoid removed
and a configurable number of input channels. Submodule names and ``nn.Sequential`` indices are the
reference's, so a student checkpoint saved by that code (``{"state_dict": student.state_dict()}``, no
wrapper prefix) loads strictly through :func:`irfoundry.models.checkpoint.import_reference_checkpoint`
with no key filter. The reference builds the student with ``in_channels=3`` (grey image read as RGB), so
import its checkpoints with ``in_chans=3``.

Architecture (``B x C_in x H x W``, H and W multiples of 32):

* encoder (``stage``): a stem of two conv3x3-BN-ReLU at 16 channels, then five groups of three residual
  blocks at widths 16, 32, 64, 128, 256; the first block of groups 2..5 halves the resolution
  (:class:`DownResidualBlock`). The five group outputs are the stage features, strides 1, 2, 4, 8, 16.
  These are exactly the features the semantic-prior teacher modulates with SCAM
  (``ALCLNet.forward_backbone`` -> ``stage_channels = [16, 32, 64, 128, 256]``).
* decoder: one local contrast learning block (:class:`LCL`, conv1x1-ReLU-conv3x3-ReLU) per stage, then
  four :class:`SBAM` fusions from deep to shallow (bilinear x2 up-sampling of the deep map, conv1x1-BN-ReLU,
  gated by conv1x1-BN-sigmoid of the shallow map, added to the shallow map), and a conv1x1-ReLU-conv1x1
  head giving ``B x 1 x H x W`` logits. No deep supervision: a tensor in train and eval mode.

Size: 5,667,857 trainable parameters with ``in_chans=1`` (5,668,145 with the reference's ``in_chans=3``),
counted by running the semantic-prior code's ``ALCLNet`` (``published_params`` records this number; it was
not checked against a table of the paper); ours is identical. The semantic-prior paper uses SCAM strength ``s = 0.12`` for this host.

Deviations from the reference: none in the architecture or the initialisation. The bilinear up-sampling
is ``nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)``, the same operation as the
reference's ``nn.UpsamplingBilinear2d(scale_factor=2)``.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.models._registry import register_model
from irfoundry.layers.residual_encoder import ResidualEncoder, init_kaiming
from irfoundry.models.base import HostNet

#: channel widths of the five encoder groups
ALCL_WIDTHS = (16, 32, 64, 128, 256)


class LCL(nn.Module):
    """Local contrast learning block: conv1x1-ReLU-conv3x3-ReLU (with biases, no BN).

    Shapes: ``B x C_in x H x W -> B x C_out x H x W``.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layer1(x)


class SBAM(nn.Module):
    """Bilinear-up-sampling attention fusion of ALCL-Net (reference ``Sbam``).

    ``hl_layer``: bilinear x2 (align_corners=True), conv1x1 ``C_deep -> C``, BN, ReLU.
    ``ll_layer``: conv1x1 ``C -> C``, BN, sigmoid. Output ``ll + hl_layer(hl) * ll_layer(ll)``.
    Shapes: ``hl`` ``B x C_deep x H/2 x W/2``, ``ll`` ``B x C x H x W`` -> ``B x C x H x W``.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.hl_layer = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(in_ch, out_ch, kernel_size=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )
        self.ll_layer = nn.Sequential(
            nn.Conv2d(out_ch, out_ch, kernel_size=1),
            nn.BatchNorm2d(out_ch),
            nn.Sigmoid(),
        )

    def forward(self, hl: Tensor, ll: Tensor) -> Tensor:
        return ll + self.hl_layer(hl) * self.ll_layer(ll)


class ALCLNet(HostNet):
    """ALCL-Net. ``B x in_chans x H x W -> B x 1 x H x W`` logits (H, W divisible by 32).

    ``encode`` returns the five residual-group outputs (``stage_channels = (16, 32, 64, 128, 256)``,
    ``stage_strides = (1, 2, 4, 8, 16)``); ``decode`` applies the LCL blocks, the SBAM fusions and the head
    and depends on nothing but the feature list.
    """

    logit_layers = ("layer.2",)

    def __init__(self, *, in_chans: int = 1) -> None:
        super().__init__()
        if in_chans < 1:
            raise ModelError(f"alclnet: in_chans must be >= 1, got {in_chans}")
        self.stage_channels = ALCL_WIDTHS
        self.stage_strides = (1, 2, 4, 8, 16)
        self.stage = ResidualEncoder(in_chans, ALCL_WIDTHS)
        self.lcl5 = LCL(256, 256)
        self.lcl4 = LCL(128, 128)
        self.lcl3 = LCL(64, 64)
        self.lcl2 = LCL(32, 32)
        self.lcl1 = LCL(16, 16)
        self.sbam4 = SBAM(256, 128)
        self.sbam3 = SBAM(128, 64)
        self.sbam2 = SBAM(64, 32)
        self.sbam1 = SBAM(32, 16)
        self.layer = nn.Sequential(
            nn.Conv2d(16, 16, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 1, kernel_size=1),
        )
        self.apply(init_kaiming)  # the reference initialises every submodule this way

    def encode(self, x: Tensor) -> list[Tensor]:
        """``B x in_chans x H x W`` -> five maps ``B x (16, 32, 64, 128, 256) x H/(1, 2, 4, 8, 16) x W/...``."""
        return self.stage(x)

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor:
        """Five stage maps (as :meth:`encode` returns them) -> logits ``B x 1 x H x W``.

        ``input_size`` is unused: the shallowest stage is already at full resolution.
        """
        self.check_stage_features(features)
        f1, f2, f3, f4, f5 = features
        x = self.sbam4(self.lcl5(f5), self.lcl4(f4))
        x = self.sbam3(x, self.lcl3(f3))
        x = self.sbam2(x, self.lcl2(f2))
        x = self.sbam1(x, self.lcl1(f1))
        return self.layer(x)


@register_model(
    "alclnet",
    published_params=5_667_857,
    paper="Yu et al., Pay Attention to Local Contrast Learning Networks for Infrared Small Target "
    "Detection, IEEE GRSL 2022",
    reference="https://github.com/yuanhang-yao/semantic-prior (models/alclnet.py; original: "
    "https://github.com/YuChuang1205/ALCL-Net)",
)
def alclnet(*, in_chans: int = 1) -> ALCLNet:
    """ALCL-Net as in the semantic-prior code; 5.67 M parameters. Untrained (no weights are downloaded).

    Reference checkpoints were trained on 3-channel input: import them with ``in_chans=3``.
    """
    return ALCLNet(in_chans=in_chans)
