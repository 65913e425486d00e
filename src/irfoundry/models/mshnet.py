"""MSHNet: a plain U-Net with multi-scale heads, trained with a scale- and location-sensitive loss.

Liu, Li, Jia, Liu, Zhou, Deng, "Infrared Small Target Detection with Scale and Location Sensitivity",
CVPR 2024 (arXiv 2403.19366). Reference code: Lliu666/MSHNet (``model/MSHNet.py``, ``main.py``).

Architecture (the reference hard-codes widths ``(16, 32, 64, 128, 256)`` and blocks ``(2, 2, 2, 2)``):

* ``conv_init``: 1x1 conv ``in_chans -> 16`` (bias, no norm / activation);
* encoder ``encoder_0 .. encoder_3`` and ``middle_layer``: residual CBAM blocks (the same block as DNANet,
  :class:`irfoundry.models.dnanet.ResCBAMBlock`, called ``ResNet`` in the reference) separated by 2x2 max
  pooling, widths 16 / 32 / 64 / 128 / 256 at strides 1 / 2 / 4 / 8 / 16;
* decoder ``decoder_3 .. decoder_0``: bilinear x2 up-sampling (``align_corners=True``), concatenation with
  the encoder stage of the same stride, residual CBAM blocks;
* multi-scale head: 1x1 convs ``output_0 .. output_3`` give one logit map per decoder level (strides
  1, 2, 4, 8); they are up-sampled to full resolution and fused by a 3x3 conv ``final`` (4 -> 1 channels).

Submodule names are the reference's, so its checkpoints load with no key filter: the released weights
(``{"state_dict": ...}``), ``weight.pkl`` (a bare state dict) and ``checkpoint.pkl`` (``{"net": ...}``), with
a ``module.`` prefix when trained with ``--multi-gpus`` (``DataParallel``).

Mapping of the reference's ``forward(x, warm_flag) -> (masks, pred)`` onto our interface
(we take no flag; ``self.training`` alone decides what is returned):

* reference, ``warm_flag=True`` (every epoch after the warm-up, and always at test time, where ``main.py``
  sets ``warm_epoch=-1``): ``masks = [m0, m1, m2, m3]`` at strides 1, 2, 4, 8 and
  ``pred = final(cat(m0, up2(m1), up4(m2), up8(m3)))``.
  Ours: eval mode returns ``pred``; training mode returns ``[pred, m0, up2(m1), up4(m2), up8(m3)]``, all
  ``B x 1 x H x W`` (the up-sampled side maps are exactly the tensors ``final`` fuses).
* reference, ``warm_flag=False`` (warm-up: epochs ``0 .. warm_epoch`` inclusive, ``warm_epoch=5`` by
  default, i.e. the first 6 epochs): ``masks = []`` and ``pred = output_0(x_d0)`` = ``m0``, trained alone
  with plain soft-IoU; ``output_1..3`` and ``final`` get no gradient.
  Ours: the same tensor is ``outputs[MSHNet.WARMUP_OUTPUT]`` (index 1) of the training-mode list. Training
  code reproduces the warm-up by computing its loss on that output only while
  ``epoch <= model.warm_epochs`` (0-based epochs, as in the reference), and on all five afterwards; the
  scheduling lives in training code, the model only records ``warm_epochs``.
* the reference loss compares the side maps at their native resolution with max-pooled ground truth
  (``nn.MaxPool2d(2, 2)`` applied once per level). For that exact loss use :meth:`MSHNet.multiscale_logits`,
  which returns ``(pred, [m0, m1, m2, m3])`` at native resolution; the generic full-resolution list above is
  what engine code written for every host consumes.

Other deviations (none change the weights): logits out (the reference does too); up-sampling uses explicit
target sizes instead of scale factors (identical values for inputs whose sides are multiples of 32). The
reference's unused ``up_16`` module (really a x4 up-sampler) has no parameters and is omitted.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.models._registry import register_model
from irfoundry.layers.res_cbam import make_layer
from irfoundry.layers.resize import resize_aligned as _resize
from irfoundry.models.base import HostNet

__all__ = ["MSHNet", "mshnet"]

#: the reference's ``--warm-epoch`` default (``main.py``)
REFERENCE_WARM_EPOCHS = 5


class MSHNet(HostNet):
    """MSHNet. ``B x in_chans x H x W -> B x 1 x H x W`` logits (H, W divisible by 32).

    Encoder stages (:meth:`encode`): ``[x_e0, x_e1, x_e2, x_e3, x_m]`` with ``stage_channels = channels``
    (default 16, 32, 64, 128, 256) at ``stage_strides = (1, 2, 4, 8, 16)``; ``x_m`` (the reference's
    ``middle_layer`` output) is the bottleneck.

    Outputs: eval mode the fused map ``B x 1 x H x W``; training mode
    ``[fused, m0, m1_up, m2_up, m3_up]``, five ``B x 1 x H x W`` logit maps, main first.

    Attributes:
        warm_epochs: number of the last warm-up epoch (0-based, inclusive) during which the reference trains
            only ``outputs[WARMUP_OUTPUT]``; a hint for training code, never read by ``forward``.
    """

    logit_layers = ("output_0", "output_1", "output_2", "output_3")
    logit_fusion_layers = ("final",)

    #: index, in the training-mode output list, of the map the reference trains alone during warm-up
    WARMUP_OUTPUT = 1

    def __init__(
        self,
        *,
        in_chans: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        num_blocks: Sequence[int] = (2, 2, 2, 2),
        warm_epochs: int = REFERENCE_WARM_EPOCHS,
    ) -> None:
        super().__init__()
        channels, num_blocks = tuple(int(c) for c in channels), tuple(int(n) for n in num_blocks)
        if len(channels) != 5 or len(num_blocks) != 4:
            raise ModelError(
                f"MSHNet needs 5 stage widths and 4 block counts, got channels={channels}, num_blocks={num_blocks}"
            )
        if in_chans < 1:
            raise ModelError(f"in_chans must be >= 1, got {in_chans}")
        if warm_epochs < -1:
            raise ModelError(f"warm_epochs must be >= -1 (-1: no warm-up), got {warm_epochs}")
        c = channels
        self.stage_channels = channels
        self.stage_strides = (1, 2, 4, 8, 16)
        self.warm_epochs = int(warm_epochs)

        self.conv_init = nn.Conv2d(in_chans, c[0], 1)
        self.encoder_0 = make_layer(c[0], c[0])
        self.encoder_1 = make_layer(c[0], c[1], num_blocks[0])
        self.encoder_2 = make_layer(c[1], c[2], num_blocks[1])
        self.encoder_3 = make_layer(c[2], c[3], num_blocks[2])
        self.middle_layer = make_layer(c[3], c[4], num_blocks[3])

        self.decoder_3 = make_layer(c[3] + c[4], c[3], num_blocks[2])
        self.decoder_2 = make_layer(c[2] + c[3], c[2], num_blocks[1])
        self.decoder_1 = make_layer(c[1] + c[2], c[1], num_blocks[0])
        self.decoder_0 = make_layer(c[0] + c[1], c[0])

        self.output_0 = nn.Conv2d(c[0], 1, 1)
        self.output_1 = nn.Conv2d(c[1], 1, 1)
        self.output_2 = nn.Conv2d(c[2], 1, 1)
        self.output_3 = nn.Conv2d(c[3], 1, 1)
        self.final = nn.Conv2d(4, 1, 3, padding=1)

    def encode(self, x: Tensor) -> list[Tensor]:
        """``B x in_chans x H x W`` -> ``[x_e0, x_e1, x_e2, x_e3, x_m]``, ``B x channels[i] x H/2^i x W/2^i``."""
        x_e0 = self.encoder_0(self.conv_init(x))
        x_e1 = self.encoder_1(F.max_pool2d(x_e0, 2))
        x_e2 = self.encoder_2(F.max_pool2d(x_e1, 2))
        x_e3 = self.encoder_3(F.max_pool2d(x_e2, 2))
        x_m = self.middle_layer(F.max_pool2d(x_e3, 2))
        return [x_e0, x_e1, x_e2, x_e3, x_m]

    def multiscale_logits(self, features: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Stage features -> ``(fused, [m0, m1, m2, m3])``, the reference's ``(pred, masks)`` with
        ``warm_flag=True``: ``fused`` is ``B x 1 x H x W``, ``m_k`` is ``B x 1 x H/2^k x W/2^k`` (native
        resolution, for the reference's loss against max-pooled ground truth)."""
        self.check_stage_features(features)
        x_e0, x_e1, x_e2, x_e3, x_m = features
        x_d3 = self.decoder_3(torch.cat([x_e3, _resize(x_m, x_e3.shape[-2:])], 1))
        x_d2 = self.decoder_2(torch.cat([x_e2, _resize(x_d3, x_e2.shape[-2:])], 1))
        x_d1 = self.decoder_1(torch.cat([x_e1, _resize(x_d2, x_e1.shape[-2:])], 1))
        x_d0 = self.decoder_0(torch.cat([x_e0, _resize(x_d1, x_e0.shape[-2:])], 1))
        masks = [self.output_0(x_d0), self.output_1(x_d1), self.output_2(x_d2), self.output_3(x_d3)]
        fused = self.final(torch.cat(self._upsampled(masks), 1))
        return fused, masks

    @staticmethod
    def _upsampled(masks: Sequence[Tensor]) -> list[Tensor]:
        size = masks[0].shape[-2:]
        return [masks[0], *(_resize(m, size) for m in masks[1:])]

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor | list[Tensor]:
        """Stage features -> fused logits ``B x 1 x H x W``; in training mode
        ``[fused, m0, m1_up, m2_up, m3_up]`` (all ``B x 1 x H x W``, main first)."""
        fused, masks = self.multiscale_logits(features)
        if not self.training:
            return fused
        return [fused, *self._upsampled(masks)]


@register_model(
    "mshnet",
    published_params=4_070_000,
    published_macs=6.0e9,
    paper="Liu et al., Infrared Small Target Detection with Scale and Location Sensitivity, CVPR 2024",
    reference="https://github.com/Lliu666/MSHNet",
)
def mshnet(
    *,
    in_chans: int = 1,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    num_blocks: Sequence[int] = (2, 2, 2, 2),
    warm_epochs: int = REFERENCE_WARM_EPOCHS,
) -> MSHNet:
    """MSHNet, reference configuration: 4,065,481 parameters at ``in_chans=1`` (published 4.07M; the
    reference's ``main.py`` builds ``MSHNet(3)``, 4,065,513 parameters, the difference is ``conv_init``
    only). Untrained; load reference checkpoints with
    :func:`irfoundry.models.checkpoint.import_reference_checkpoint`.

    ``warm_epochs``: the reference's ``--warm-epoch`` (default 5), recorded for training code (see the
    module docstring); it does not change the architecture or ``forward``.
    ``channels`` / ``num_blocks``: fixed in the reference, exposed for ablations (widths >= 16).
    """
    return MSHNet(in_chans=in_chans, channels=channels, num_blocks=num_blocks, warm_epochs=warm_epochs)
