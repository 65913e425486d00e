"""ALCNet as implemented in BasicIRSTD (``ASKCResNetFPN``).

Paper: Y. Dai, Y. Wu, F. Zhou, K. Barnard, "Attentional Local Contrast Networks for Infrared Small
Target Detection", IEEE TGRS 2021 (original MXNet code: YimianDai/open-alcnet).
Reference code whose checkpoints we import: XinyiYing/BasicIRSTD ``model/ACM/model_ALCnet.py`` (class
``ASKCResNetFPN``, built by BasicIRSTD's ``Net`` as ``ALCNet()``); LESPS (XinyiYing/LESPS,
``model/ACM/model_ALCNet.py``) has the same code. Submodule names follow it, so a BasicIRSTD / LESPS
checkpoint (``.pth.tar``, keys ``model.<name>``) loads strictly with no key filter.

This is the network the field trains and benchmarks as "ALCNet" through those toolboxes, and its
checkpoints are what we must load. It is *not* the paper's network: the PyTorch port replaces the
paper's multi-scale local-contrast (cyclic shift) module and bottom-up attentional modulation with
ACM's asymmetric bi-directional fusion (:class:`~irfoundry.models.acm.AsymBiChaFuse`) and a
transposed-convolution FPN decoder.

Architecture (default ``layers=(4, 4, 4)``, ``channels=(8, 16, 32, 64)``), input ``B x C x H x W``:

* ``stem`` as ACM -> ``16 x H/4 x W/4``; ``layer1`` / ``layer2`` / ``layer3``: ResNet basic-block
  stages -> ``c1`` 16 @ H/4, ``c2`` 32 @ H/8, ``c3`` 64 @ H/16 (the encoder stages);
* decoder: ``deconv2`` -> ``fuse23`` (with ``c2``) -> ``deconv1`` -> ``fuse12`` (with ``c1``) ->
  ``deconv0`` (16 -> 8 channels, H/2) -> ``head`` (8 -> 2 -> 1) -> bilinear up-sampling to ``H x W``.

No deep supervision: a ``B x 1 x H x W`` logit tensor in both training and eval mode.

Reference quirks kept for checkpoint compatibility:

* ``uplayer1`` and ``uplayer2`` (4 basic blocks each, 92,928 parameters) are built but never used in
  ``forward``. They are in every trained checkpoint and in its count of 519,889 trainable parameters
  (BasicIRSTD's table prints 0.427M = 426,961, the parameters actually used). They receive no
  gradient: distributed training needs ``find_unused_parameters=True`` unless they are dropped with
  ``keep_unused_layers=False`` (the checkpoint then no longer loads strictly). Their names are listed
  in :attr:`ALCNet.unused_modules`.
* BatchNorm momentum 0.9 in the stem, down-sample, fusion and head norms (see :mod:`irfoundry.models.acm`).

Deviations from the reference, without effect on the weights:

* ``forward`` returns logits; the reference applies ``sigmoid``.
* The reference resizes the bottleneck to H/16 and the first fused map to H/8 with
  ``torchvision.transforms.Resize`` before each transposed convolution; for H, W divisible by 32 both
  are identities and are omitted. The final ``Resize([H, W])`` (an up-sampling, where torchvision's
  anti-aliasing has no effect) is ``F.interpolate(..., mode="bilinear", align_corners=False)``.
* The reference's 4-stage variant (``len(layers) == 4``, never used by BasicIRSTD) and ``tinyFlag``
  mode are not implemented.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.models._registry import register_model
from irfoundry.layers.acm_stem import make_stem
from irfoundry.layers.asym_bi_cha_fuse import REFERENCE_BN_MOMENTUM, AsymBiChaFuse
from irfoundry.layers.fcn_head import FCNHead
from irfoundry.layers.res_basic_block import make_res_layer
from irfoundry.models.acm import check_widths
from irfoundry.models.base import HostNet


class ALCNet(HostNet):
    """ALCNet host (BasicIRSTD ``ASKCResNetFPN``). ``B x in_chans x H x W -> B x 1 x H x W`` logits.

    Encoder stages (:meth:`encode`): ``c1`` ``B x 16 x H/4 x W/4``, ``c2`` ``B x 32 x H/8 x W/8``,
    ``c3`` ``B x 64 x H/16 x W/16`` (bottleneck) for the default widths. H and W must be divisible by 32.
    """

    logit_layers = ("head.block.4",)

    #: submodules the reference builds but never calls (present only so its checkpoints load)
    unused_modules: tuple[str, ...] = ("uplayer1", "uplayer2")

    def __init__(
        self,
        *,
        in_chans: int = 1,
        layers: Sequence[int] = (4, 4, 4),
        channels: Sequence[int] = (8, 16, 32, 64),
        bn_momentum: float = REFERENCE_BN_MOMENTUM,
        keep_unused_layers: bool = True,
    ) -> None:
        super().__init__()
        layers, channels = check_widths("alcnet", layers, channels)
        m = bn_momentum
        self.stage_channels = channels[1:]
        self.stage_strides = (4, 8, 16)
        self.stem = make_stem(in_chans, channels[0], m)
        self.head = FCNHead(channels[0], 1, m)
        self.layer1 = make_res_layer(channels[0] * 2, channels[1], layers[0], 1, m)
        self.layer2 = make_res_layer(channels[1], channels[2], layers[1], 2, m)
        self.layer3 = make_res_layer(channels[2], channels[3], layers[2], 2, m)
        self.deconv2 = nn.ConvTranspose2d(channels[3], channels[2], 4, stride=2, padding=1)
        self.deconv1 = nn.ConvTranspose2d(channels[2], channels[1], 4, stride=2, padding=1)
        self.deconv0 = nn.ConvTranspose2d(channels[1], channels[0], 4, stride=2, padding=1)
        if keep_unused_layers:
            self.uplayer2 = make_res_layer(channels[2], channels[2], layers[1], 1, m)
            self.uplayer1 = make_res_layer(channels[1], channels[1], layers[0], 1, m)
        else:
            self.unused_modules = ()
        self.fuse23 = AsymBiChaFuse(channels[2], bn_momentum=m)
        self.fuse12 = AsymBiChaFuse(channels[1], bn_momentum=m)

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
        x = self.fuse23(self.deconv2(c3), c2)
        x = self.fuse12(self.deconv1(x), c1)
        pred = self.head(self.deconv0(x))
        return F.interpolate(pred, size=tuple(input_size), mode="bilinear", align_corners=False)


@register_model(
    "alcnet",
    published_params=519_889,
    published_macs=0.378e9,
    paper="Dai et al., Attentional Local Contrast Networks for Infrared Small Target Detection, IEEE TGRS 2021",
    reference="https://github.com/XinyiYing/BasicIRSTD (model/ACM/model_ALCnet.py, ASKCResNetFPN)",
)
def alcnet(
    *,
    in_chans: int = 1,
    layers: Sequence[int] = (4, 4, 4),
    channels: Sequence[int] = (8, 16, 32, 64),
    bn_momentum: float = REFERENCE_BN_MOMENTUM,
    keep_unused_layers: bool = True,
) -> ALCNet:
    """ALCNet (BasicIRSTD ``ASKCResNetFPN``) with BasicIRSTD's defaults: 519,889 trainable parameters
    for 1-channel input, as in the trained BasicIRSTD / LESPS checkpoints (426,961 of them used;
    ``keep_unused_layers=False`` drops the other 92,928). BasicIRSTD publishes 0.378 G "FLOPs" (thop
    MACs) at 1x1x256x256; :func:`irfoundry.models.complexity.complexity` measures 0.295 G MACs, the gap
    being thop's 4x count of the three transposed convolutions (0.101 G instead of 0.025 G) plus 4
    operations per BatchNorm element (0.007 G), which together give 0.378 G exactly (see
    :func:`irfoundry.models.acm.acm`); thop also skips the unused layers. No pretrained weights are
    downloaded; import a reference checkpoint with
    :func:`irfoundry.models.checkpoint.import_reference_checkpoint`."""
    return ALCNet(
        in_chans=in_chans, layers=layers, channels=channels, bn_momentum=bn_momentum,
        keep_unused_layers=keep_unused_layers,
    )


__all__ = ["ALCNet", "alcnet"]
