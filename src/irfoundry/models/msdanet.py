"""MSDA-Net: the multi-scale direction-aware network.

Jinmiao Zhao, Zelin Shi, Chuang Yu, Yunpeng Liu et al., "Multi-Scale Direction-Aware Network for Infrared Small
Target Detection", IEEE Transactions on Geoscience and Remote Sensing 2025 (arXiv 2406.02037).
Reference code ported from: ``model/MSDA/MSDA_no_sigmoid.py`` of YuChuang1205/PAL (``MSDA_No_Sigmoid``, the host
PAL trains, returning logits) @ e89262f; the authors' YuChuang1205/MSDA-Net ``model/MSDA_Net/MSDA.py``
(``MSDANet``, same state dict, ends in a sigmoid) @ decafae.

Architecture (reference names; paper names in brackets), ``B x C_in x H x W`` with H, W multiples of 16:

* encoder ``stage``: stem ``layer1`` (two conv3x3-BN-ReLU, 16 ch); five levels ``i = 1..5``, each a residual
  block ``resnet{i}_1`` (stride 1 for ``i = 1``, :class:`~irfoundry.layers.residual_encoder.DownResidualBlock`
  with stride 2 otherwise) and two MSDA blocks ``resnet{i}_2``, ``resnet{i}_3`` [MSDA module: four branches
  (conv1x1; conv3x3; conv3x3 dilation 3; conv3x3 dilation 5) = multi-scale local relation learning, then MDFA
  (:class:`~irfoundry.layers.haar_direction.MultiDirectionalAttention`) and SE channel attention]. Widths
  16 / 32 / 64 / 64 / 64 at strides 1 / 2 / 4 / 8 / 16.
* ``stage.hfrequency`` [HFDI, no parameters]: after ``resnet2_1``, the three high-frequency Haar sub-bands
  of the *input image* (stride 2, ``3 * C_in`` channels) are concatenated to the features, so that
  ``resnet2_1`` has ``32 - 3 * C_in`` channels (23 in the reference, which reads images as RGB) and level 2
  has 32.
* ``stage.layer{1..4}_4`` and ``layer5_4`` [FA, feature aggregation]: levels 1-4 max-pooled to stride 16,
  conv1x1-ReLU to 16 channels each, concatenated with level 5 (128 ch), conv1x1-ReLU-conv1x1-ReLU to 64.
* decoder: ``mlcl{1..5}`` (three dilated branches, conv3x3 fusion; the reference's ``RFB_modified_LCL``) on
  each level; ``sbam4 .. sbam1`` [FAF / FCF, feature alignment (calibration) fusion] fuse deep into shallow
  with bilinear x2 up-sampling (``align_corners=True``); head ``layer`` (conv1x1-ReLU-conv1x1) -> logits.

Outputs: one ``B x 1 x H x W`` logit map in both modes; the reference has no deep supervision (PAL's and the
authors' training code put the loss on that single output), so training mode returns a tensor too.

Deviations from the reference (none changes the weights or the forward values):

* logits out (PAL's copy drops the sigmoid of the authors' ``MSDANet`` too);
* the Haar filters are computed in closed form (no pywt) and convolved with plain ``F.conv2d``; the reference's
  custom autograd backward casts them to float16 and only runs under CUDA autocast
  (see :mod:`irfoundry.layers.haar_direction`);
* ``Sbam.hl_up`` (``nn.UpsamplingBilinear2d(scale_factor=2)``, no state) is written as a bilinear resize to the
  shallower map's size with ``align_corners=True``, identical for inputs whose sides are multiples of 16;
* ``in_chans``: the reference is hard-coded for 3 channels (grey images read as RGB). With ``in_chans = c``
  the stem takes ``c`` channels and ``resnet2_1`` has ``32 - 3c`` channels (29 at ``c = 1``), so every later
  width is the paper's. Reference checkpoints therefore import with ``in_chans=3`` only.

Parameters built but never called (as in the reference; kept so checkpoints load strictly, listed in
``MSDANet.unused_modules``): ``mlcl{1..5}.conv_res``, 14,048 parameters, included in the counts below.

Initialisation as the reference: Kaiming-normal (fan_out) with zero bias on the stem, residual blocks, FA,
FAF, MDFA and head convolutions; PyTorch's defaults on the MSDA / decoder branch convolutions and SE layers.

Size: 4,809,391 trainable parameters at ``in_chans=1``, 4,805,089 at ``in_chans=3`` (= the reference code's
count; neither the authors' README nor PAL's publishes a count, so ``published_params`` is ``None``). MACs
(``count_macs``, FlopCounterMode / 2 at 1x1x256x256): 21.07G; at 1x3x256x256 20.976G, 196,608 below the
reference's FlopCounterMode count, because the reference's ``DWT_Function`` also convolves the image with the
LL filter and discards the result (we skip that convolution; same output). No MACs are published either.

Checkpoints: ``train_MSDA_Net.py`` (authors) and ``train_model.py`` (PAL) save
``{"epoch", "state_dict": model.state_dict(), "optimizer", ...}`` to ``*.pth.tar``, without wrapper prefix.
The authors' released weights (Baidu Netdisk links in their README; not tested here) are read by their
``test_MSDA_Net.py`` the same way (``checkpoint["state_dict"]``); they were trained on 3-channel input.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.layers.conv_bn_act import ConvBNAct
from irfoundry.layers.haar_direction import HaarDWT, MultiDirectionalAttention
from irfoundry.layers.residual_encoder import DownResidualBlock, ResidualBlock, init_kaiming
from irfoundry.layers.resize import resize_aligned
from irfoundry.models._registry import register_model
from irfoundry.models.base import HostNet

__all__ = ["MSDANet", "msdanet"]

#: channel widths of the five encoder levels (fixed in the reference)
MSDA_WIDTHS = (16, 32, 64, 64, 64)
#: channels each FA projection gives the bottleneck concatenation
FA_CHANNELS = 16


class SqueezeExcitation(nn.Module):
    """SE channel attention as the reference imports it (External-Attention-pytorch ``SEAttention``): global
    average pooling, ``fc`` = Linear(C, C/r, no bias)-ReLU-Linear(C/r, C, no bias)-Sigmoid, ``x * gate``.
    The reference uses ``r = 4`` and leaves the linear layers at PyTorch's default initialisation.
    Shapes: ``B x C x H x W -> B x C x H x W``."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        gate = self.fc(x.mean(dim=(2, 3)))
        return x * gate[:, :, None, None]


class MSDABlock(nn.Module):
    """MSDA module (the reference's ``RFB_modified``). Shapes: ``B x C_in x H x W -> B x C_out x H x W``.

    Branches ``branch0`` (conv1x1), ``branch1`` (conv1x1, conv3x3), ``branch2`` (conv3x3, conv3x3 dilation 3),
    ``branch3`` (conv5x5, conv3x3 dilation 5), every conv with BN and ReLU and no bias; ``conv_cat``
    (conv3x3-BN-ReLU) over their concatenation; ``FrequencyAttention`` (MDFA) and ``SEAttention``;
    output ``relu(x + conv_res(.))`` with ``conv_res`` a conv3x3-BN-ReLU (the residual needs
    ``C_in == C_out``, which the reference always has).
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.branch0 = nn.Sequential(ConvBNAct(in_ch, out_ch, 1))
        self.branch1 = nn.Sequential(ConvBNAct(in_ch, out_ch, 1), ConvBNAct(out_ch, out_ch, 3))
        self.branch2 = nn.Sequential(ConvBNAct(in_ch, out_ch, 3), ConvBNAct(out_ch, out_ch, 3, dilation=3))
        self.branch3 = nn.Sequential(ConvBNAct(in_ch, out_ch, 5), ConvBNAct(out_ch, out_ch, 3, dilation=5))
        self.conv_cat = ConvBNAct(4 * out_ch, out_ch, 3)
        self.conv_res = ConvBNAct(in_ch, out_ch, 3)
        self.FrequencyAttention = MultiDirectionalAttention(out_ch)
        self.SEAttention = SqueezeExcitation(out_ch, reduction=4)

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)]
        y = self.SEAttention(self.FrequencyAttention(self.conv_cat(torch.cat(branches, 1))))
        return self.relu(x + self.conv_res(y))


class LocalRelationBlock(nn.Module):
    """Decoder block (the reference's ``RFB_modified_LCL``). Shapes: ``B x C_in x H x W -> B x C_out x H x W``.

    Branches ``branch0`` (conv1x1), ``branch1`` (conv3x3, conv3x3 dilation 3), ``branch2`` (conv5x5, conv3x3
    dilation 5), all conv-BN-ReLU without bias, fused by ``conv_cat`` (conv3x3-BN-ReLU), then ReLU.
    ``conv_res`` (conv1x1-BN-ReLU) is built but never called, as in the reference.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.branch0 = nn.Sequential(ConvBNAct(in_ch, out_ch, 1))
        self.branch1 = nn.Sequential(ConvBNAct(in_ch, out_ch, 3), ConvBNAct(out_ch, out_ch, 3, dilation=3))
        self.branch2 = nn.Sequential(ConvBNAct(in_ch, out_ch, 5), ConvBNAct(out_ch, out_ch, 3, dilation=5))
        self.conv_cat = ConvBNAct(3 * out_ch, out_ch, 3)
        self.conv_res = ConvBNAct(in_ch, out_ch, 1)  # unused by the reference's forward

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv_cat(torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)))


class FeatureAlignmentFusion(nn.Module):
    """FAF / FCF (the reference's ``Sbam``): fuse a deep map ``hl`` (``C_deep`` ch, stride 2s) into a shallow map
    ``ll`` (``C_out`` ch, stride s).

    ``hl = up2(hl)``; ``hl = hl + concat_layer(cat(hl, ll))`` (conv1x1-BN-ReLU to ``C_deep``, conv3x3-BN-ReLU);
    output ``ll + hl_layer(hl)`` (conv1x1-BN-ReLU to ``C_out``). Shapes: ``B x C_out x H_ll x W_ll``.
    """

    def __init__(self, deep_ch: int, out_ch: int) -> None:
        super().__init__()
        self.hl_layer = nn.Sequential(nn.Conv2d(deep_ch, out_ch, 1), nn.BatchNorm2d(out_ch), nn.ReLU())
        self.concat_layer = nn.Sequential(
            nn.Conv2d(deep_ch + out_ch, deep_ch, 1),
            nn.BatchNorm2d(deep_ch),
            nn.ReLU(),
            nn.Conv2d(deep_ch, deep_ch, 3, padding=1),
            nn.BatchNorm2d(deep_ch),
            nn.ReLU(),
        )
        self.hl_layer.apply(init_kaiming)
        self.concat_layer.apply(init_kaiming)

    def forward(self, hl: Tensor, ll: Tensor) -> Tensor:
        hl = resize_aligned(hl, ll.shape[-2:])
        hl = hl + self.concat_layer(torch.cat([hl, ll], 1))
        return ll + self.hl_layer(hl)


class HighFrequencyInjection(nn.Module):
    """HFDI (the reference's ``Hfrequency``): ``(image, feat) -> cat(HaarDWT(image), feat)``, no parameters.
    Shapes: ``B x C_img x H x W``, ``B x C x H/2 x W/2 -> B x (3 C_img + C) x H/2 x W/2``. The container
    ``Hfrequencyfeature`` keeps the reference's buffer names (``Hfrequencyfeature.DWT_2D.w_ll`` ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.Hfrequencyfeature = nn.ModuleDict({"DWT_2D": HaarDWT()})

    def forward(self, image: Tensor, feat: Tensor) -> Tensor:
        return torch.cat([self.Hfrequencyfeature["DWT_2D"](image), feat], dim=1)


def _pool_project(num_pools: int, in_ch: int) -> nn.Sequential:
    """FA projection of one level: ``num_pools`` 2x2 max-pools, conv1x1 to 16 channels, ReLU."""
    return nn.Sequential(*(nn.MaxPool2d(2, 2) for _ in range(num_pools)), nn.Conv2d(in_ch, FA_CHANNELS, 1), nn.ReLU())


class MSDAEncoder(nn.Module):
    """The encoder (the reference's ``Stage``): ``B x C_in x H x W`` -> five maps
    ``B x (16, 32, 64, 64, 64) x H/(1, 2, 4, 8, 16) x W/...``; the last is the FA bottleneck."""

    def __init__(self, in_chans: int) -> None:
        super().__init__()
        w = MSDA_WIDTHS
        self.layer1 = nn.Sequential(
            nn.Conv2d(in_chans, w[0], 3, padding=1), nn.BatchNorm2d(w[0]), nn.ReLU(),
            nn.Conv2d(w[0], w[0], 3, padding=1), nn.BatchNorm2d(w[0]), nn.ReLU(),
        )
        for i in range(1, 6):  # registration order = the reference's state-dict order
            if i == 1:
                first = ResidualBlock(w[0])
            else:  # level 2 leaves room for the 3 * in_chans Haar sub-bands of the image
                first = DownResidualBlock(w[i - 2], w[1] - 3 * in_chans if i == 2 else w[i - 1])
            self.add_module(f"resnet{i}_1", first)
            if i == 2:
                self.hfrequency = HighFrequencyInjection()
            self.add_module(f"resnet{i}_2", MSDABlock(w[i - 1], w[i - 1]))
            self.add_module(f"resnet{i}_3", MSDABlock(w[i - 1], w[i - 1]))
            if i < 5:
                self.add_module(f"layer{i}_4", _pool_project(5 - i, w[i - 1]))
        self.layer5_4 = nn.Sequential(
            nn.Conv2d(w[4] + 4 * FA_CHANNELS, 128, 1), nn.ReLU(), nn.Conv2d(128, w[4], 1), nn.ReLU()
        )
        for name in ("layer1", "layer1_4", "layer2_4", "layer3_4", "layer4_4", "layer5_4"):
            getattr(self, name).apply(init_kaiming)
        for i in range(1, 6):  # the reference's Resnet1 / Resnet2 initialise themselves
            getattr(self, f"resnet{i}_1").apply(init_kaiming)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = self.layer1(x)
        feats, aggregated = [], []
        for i in range(1, 6):
            out = getattr(self, f"resnet{i}_1")(out)
            if i == 2:
                out = self.hfrequency(x, out)
            out = getattr(self, f"resnet{i}_3")(getattr(self, f"resnet{i}_2")(out))
            if i < 5:
                aggregated.append(getattr(self, f"layer{i}_4")(out))
                feats.append(out)
        feats.append(self.layer5_4(torch.cat([out, *reversed(aggregated)], dim=1)))
        return feats


class MSDANet(HostNet):
    """MSDA-Net. ``B x in_chans x H x W -> B x 1 x H x W`` logits (H, W divisible by 16), in both modes.

    Encoder-decoder split: :meth:`encode` is the reference's own ``Stage`` (HFDI included, it reads the input
    image inside the encoder) and returns its five outputs ``[f1, f2, f3, f4, f5]`` with
    ``stage_channels = (16, 32, 64, 64, 64)`` at ``stage_strides = (1, 2, 4, 8, 16)``. The bottleneck ``f5`` is
    the FA output (level 5 concatenated with the pooled projections of levels 1-4, then fused to 64
    channels): it is what the decoder's deepest block ``mlcl5`` reads, so a fusion on the bottleneck (FDEP's
    SAMF) sits between the last encoder stage and the first decoder stage, as in FDEP's figure, and a per-stage
    modulation (SCAM) acts on exactly the five maps the decoder's ``mlcl`` blocks read. :meth:`decode` is
    ``mlcl*`` + ``sbam*`` + ``layer``.

    ``input_multiple`` is 16 (four stride-2 levels; the reference's PAL pipeline pads to 32, which also works).
    """

    input_multiple = 16
    logit_layers = ("layer.2",)
    unused_modules = tuple(f"mlcl{i}.conv_res" for i in range(1, 6))

    def __init__(self, *, in_chans: int = 1) -> None:
        super().__init__()
        if not isinstance(in_chans, int) or not 1 <= in_chans <= 10:
            raise ModelError(
                f"msdanet: in_chans must be an integer in 1..10 (level 2 holds 3 Haar sub-bands per input channel "
                f"within its 32 channels), got {in_chans!r}"
            )
        self.stage_channels = MSDA_WIDTHS
        self.stage_strides = (1, 2, 4, 8, 16)
        w = MSDA_WIDTHS
        self.stage = MSDAEncoder(in_chans)
        for i in (5, 4, 3, 2, 1):
            self.add_module(f"mlcl{i}", LocalRelationBlock(w[i - 1], w[i - 1]))
        for i in (4, 3, 2, 1):
            self.add_module(f"sbam{i}", FeatureAlignmentFusion(w[i], w[i - 1]))
        self.layer = nn.Sequential(nn.Conv2d(w[0], w[0], 1), nn.ReLU(), nn.Conv2d(w[0], 1, 1))
        self.layer.apply(init_kaiming)

    def encode(self, x: Tensor) -> list[Tensor]:
        """``B x in_chans x H x W`` -> ``[f1 .. f5]``, ``B x stage_channels[i] x H/stride_i x W/stride_i``."""
        return self.stage(x)

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor:
        """The five stage features -> logits ``B x 1 x H x W`` (``H x W`` is ``f1``'s size = ``input_size``)."""
        self.check_stage_features(features)
        local = [getattr(self, f"mlcl{i}")(f) for i, f in enumerate(features, start=1)]
        out = local[4]
        for i in (4, 3, 2, 1):
            out = getattr(self, f"sbam{i}")(out, local[i - 1])
        return self.layer(out)


@register_model(
    "msdanet",
    published_params=None,
    published_macs=None,
    paper="Zhao, Shi, Yu, Liu et al., Multi-Scale Direction-Aware Network for Infrared Small Target Detection, "
    "IEEE TGRS 2025 (arXiv 2406.02037)",
    reference="https://github.com/YuChuang1205/MSDA-Net",
)
def msdanet(*, in_chans: int = 1) -> MSDANet:
    """MSDA-Net, reference configuration: 4,809,391 parameters at ``in_chans=1``, 4,805,089 at the reference's
    ``in_chans=3`` (= the reference code's count; neither the authors' README nor PAL's publishes one).
    Untrained; load reference checkpoints (``in_chans=3``) with
    :func:`irfoundry.models.checkpoint.import_reference_checkpoint`. The reference takes no other option."""
    return MSDANet(in_chans=in_chans)
