"""ACM: Asymmetric Contextual Modulation (ASKCResUNet), as implemented in BasicIRSTD.

Paper: Y. Dai, Y. Wu, F. Zhou, K. Barnard, "Asymmetric Contextual Modulation for Infrared Small Target
Detection", WACV 2021 (original MXNet code: YimianDai/open-acm).
Reference code whose checkpoints we import: XinyiYing/BasicIRSTD ``model/ACM/model_ACM.py`` and
``model/ACM/fusion.py`` (class ``ASKCResUNet``, built by BasicIRSTD's ``Net`` as ``ACM()``); LESPS
(XinyiYing/LESPS) uses the same PyTorch port. Submodule names follow that code, so a BasicIRSTD
checkpoint (``.pth.tar``, keys ``model.<name>``) loads strictly with no key filter.

Architecture (default ``layers=(3, 3, 3)``, ``channels=(8, 16, 32, 64)``), input ``B x C x H x W``:

* ``stem``: BN(C) -> conv3x3/2 (8) -> conv3x3 (8) -> conv3x3 (16) -> maxpool3x3/2: ``16 x H/4 x W/4``;
* ``layer1`` / ``layer2`` / ``layer3``: ResNet basic-block stages -> ``c1`` 16 @ H/4, ``c2`` 32 @ H/8,
  ``c3`` 64 @ H/16 (the encoder stages, :attr:`stage_channels` / :attr:`stage_strides`);
* decoder: ``deconv2`` (transposed conv 4x4/2) -> ``fuse2`` (asymmetric bi-directional channel
  modulation with ``c2``) -> ``uplayer2`` -> ``deconv1`` -> ``fuse1`` (with ``c1``) -> ``uplayer1`` ->
  ``head`` (FCN head, 16 -> 4 -> 1) at H/4 -> bilinear up-sampling to ``H x W``.

No deep supervision: a ``B x 1 x H x W`` logit tensor in both training and eval mode.

Deviations from the reference, all without effect on the weights:

* ``forward`` returns logits; the reference applies ``sigmoid`` inside ``forward``.
* The final up-sampling targets the input size (the reference uses ``scale_factor=4``; identical for
  H, W divisible by 32, the only sizes a host accepts).

Kept on purpose (it changes training, not the architecture): the reference passes ``momentum=0.9`` to
the stem, down-sample, fusion and head BatchNorms, a literal port of MXNet's momentum 0.9, which in
PyTorch weights the *current* batch by 0.9 (MXNet's 0.9 is PyTorch's 0.1). The residual blocks use
PyTorch's default 0.1. ``bn_momentum`` selects the value of the former group (default 0.9, as trained).

Blocks shared with :mod:`irfoundry.models.alcnet` (the reference keeps both in one folder) live in
:mod:`irfoundry.layers`: :class:`~irfoundry.layers.AsymBiChaFuse`, :class:`~irfoundry.layers.ResBasicBlock`
/ :func:`~irfoundry.layers.make_res_layer`, :class:`~irfoundry.layers.FCNHead`, :func:`~irfoundry.layers.make_stem`.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.models._registry import register_model
from irfoundry.layers.acm_stem import make_stem
from irfoundry.layers.asym_bi_cha_fuse import REFERENCE_BN_MOMENTUM, AsymBiChaFuse
from irfoundry.layers.fcn_head import FCNHead
from irfoundry.layers.res_basic_block import make_res_layer
from irfoundry.models.base import HostNet


def check_widths(
    name: str, layers: Sequence[int], channels: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Validate the ``layers`` (3 block counts) and ``channels`` (4 widths) options of ACM / ALCNet."""
    layers, channels = tuple(int(n) for n in layers), tuple(int(c) for c in channels)
    if len(layers) != 3 or min(layers) < 1:
        raise ModelError(f"{name}: 'layers' must be 3 positive block counts, got {layers}")
    if len(channels) != 4 or min(channels) < 4:
        raise ModelError(f"{name}: 'channels' must be 4 widths >= 4 (stem, stage 1..3), got {channels}")
    return layers, channels


class ACM(HostNet):
    """ACM host (BasicIRSTD ``ASKCResUNet``). ``B x in_chans x H x W -> B x 1 x H x W`` logits.

    Encoder stages (:meth:`encode`): ``c1`` ``B x 16 x H/4 x W/4``, ``c2`` ``B x 32 x H/8 x W/8``,
    ``c3`` ``B x 64 x H/16 x W/16`` (bottleneck) for the default widths. H and W must be divisible by 32.
    """

    logit_layers = ("head.block.4",)

    def __init__(
        self,
        *,
        in_chans: int = 1,
        layers: Sequence[int] = (3, 3, 3),
        channels: Sequence[int] = (8, 16, 32, 64),
        bn_momentum: float = REFERENCE_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        layers, channels = check_widths("acm", layers, channels)
        m = bn_momentum
        self.stage_channels = channels[1:]
        self.stage_strides = (4, 8, 16)
        self.stem = make_stem(in_chans, channels[0], m)
        self.layer1 = make_res_layer(channels[0] * 2, channels[1], layers[0], 1, m)
        self.layer2 = make_res_layer(channels[1], channels[2], layers[1], 2, m)
        self.layer3 = make_res_layer(channels[2], channels[3], layers[2], 2, m)
        self.deconv2 = nn.ConvTranspose2d(channels[3], channels[2], 4, stride=2, padding=1)
        self.uplayer2 = make_res_layer(channels[2], channels[2], layers[1], 1, m)
        self.fuse2 = AsymBiChaFuse(channels[2], bn_momentum=m)
        self.deconv1 = nn.ConvTranspose2d(channels[2], channels[1], 4, stride=2, padding=1)
        self.uplayer1 = make_res_layer(channels[1], channels[1], layers[0], 1, m)
        self.fuse1 = AsymBiChaFuse(channels[1], bn_momentum=m)
        self.head = FCNHead(channels[1], 1, m)

    def encode(self, x: Tensor) -> list[Tensor]:
        """``B x in_chans x H x W`` -> ``[c1, c2, c3]`` at strides 4, 8, 16."""
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return [c1, c2, c3]

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor:
        """``[c1, c2, c3]`` -> logits ``B x 1 x H x W`` (``input_size = (H, W)``)."""
        self.check_stage_features(features)
        c1, c2, c3 = features
        x = self.uplayer2(self.fuse2(self.deconv2(c3), c2))
        x = self.uplayer1(self.fuse1(self.deconv1(x), c1))
        pred = self.head(x)
        return F.interpolate(pred, size=tuple(input_size), mode="bilinear", align_corners=False)


@register_model(
    "acm",
    published_params=398_000,  # BasicIRSTD table: 0.398M (ours: 397,823)
    published_macs=0.402e9,
    paper="Dai et al., Asymmetric Contextual Modulation for Infrared Small Target Detection, WACV 2021",
    reference="https://github.com/XinyiYing/BasicIRSTD (model/ACM/model_ACM.py, ASKCResUNet)",
)
def acm(
    *,
    in_chans: int = 1,
    layers: Sequence[int] = (3, 3, 3),
    channels: Sequence[int] = (8, 16, 32, 64),
    bn_momentum: float = REFERENCE_BN_MOMENTUM,
) -> ACM:
    """ACM (ASKCResUNet) with BasicIRSTD's defaults: 397,823 parameters for 1-channel input (published
    0.398M; BasicIRSTD builds it with ``in_channels=1`` on grey images). BasicIRSTD publishes 0.402 G
    "FLOPs" (thop MACs) at 1x1x256x256; :func:`irfoundry.models.complexity.complexity` measures 0.343 G
    MACs. The gap is thop's counting rules: a transposed convolution is charged ``C_in * k^2`` per
    *output* element (4x its true MACs at stride 2: 0.067 G instead of 0.017 G here) and every
    BatchNorm 4 operations per element (0.009 G); applied to this model they give 0.402 G exactly.
    No pretrained weights are downloaded; import a BasicIRSTD / LESPS checkpoint with
    :func:`irfoundry.models.checkpoint.import_reference_checkpoint`."""
    return ACM(in_chans=in_chans, layers=layers, channels=channels, bn_momentum=bn_momentum)


__all__ = ["ACM", "acm", "check_widths"]
