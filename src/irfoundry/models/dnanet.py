"""DNANet: Dense Nested Attention Network.

Li, Xiao, Wang, Wang, Lin, Li, Luo, An, "Dense Nested Attention Network for Infrared Small Target
Detection", IEEE TIP 2022 (vol. 32, 2023; arXiv 2106.00487).
Reference code: YeRen123455/Infrared-Small-Target-Detection
(``model/model_DNANet.py``) and its copy in XinyiYing/BasicIRSTD (``model/DNANet/model_DNANet.py``).

Architecture (default ``channels=(16, 32, 64, 128, 256)``, ``num_blocks=(2, 2, 2, 2)``, deep supervision on,
which is BasicIRSTD's default and the "three / resnet_18" setting of the original repository):

* encoder: five stages ``x{i}_0`` of residual CBAM blocks (:class:`ResCBAMBlock`) separated by 2x2 max pooling,
  channels ``channels[i]`` at stride ``2**i`` (1, 2, 4, 8, 16); stage 0 holds one block, stage ``i >= 1``
  holds ``num_blocks[i - 1]``;
* dense nested decoder (UNet++-like grid ``x{i}_{j}``): node ``x{i}_{j}`` concatenates every earlier node
  of its row, the 2x bilinear up-sampled node below-left and (rows 1-3) the 0.5x bilinear down-sampled node
  above-left, then applies residual CBAM blocks (the "dense nested interactive module");
* feature pyramid fusion: ``x4_0, x3_1, x2_2, x1_3`` are projected to ``channels[0]`` by 1x1 convs,
  up-sampled to full resolution and concatenated with ``x0_4`` into ``conv0_4_final``;
* heads: 1x1 convs ``final1..final3`` on ``x0_1, x0_2, x0_3`` (side outputs) and ``final4`` on the fused
  map (main output); ``final`` alone when deep supervision is off.

All interpolation is bilinear with ``align_corners=True``, as in the reference.

Submodule names equal the reference's, so checkpoints of both reference codes load with no key filter:
BasicIRSTD saves ``{"state_dict": Net.state_dict(), ...}`` with keys ``model.<ref key>`` (its ``Net``
wrapper); the original repository saves ``{"epoch", "state_dict", "loss", "mean_IOU"}`` with the bare keys
(single-GPU, no ``DataParallel``), and a ``module.`` prefix appears only if the user wrapped the model in
``DataParallel``. :func:`irfoundry.models.checkpoint.import_reference_checkpoint` strips both prefixes.

Deviations from the reference (none change the weights):

* ``forward`` returns logits; BasicIRSTD's copy applies ``sigmoid`` inside ``forward`` (the original
  repository does not). Apply ``sigmoid`` (or threshold logits at 0) where BasicIRSTD thresholds at 0.5.
* Output order in training mode: ``[main, side1, side2, side3]`` = ``[final4, final1, final2, final3]``;
  the reference returns ``[final1, final2, final3, final4]`` (main LAST). The reference losses average
  over all outputs, which is order independent.
* Deep-supervision outputs are chosen by ``self.training``; BasicIRSTD uses a ``mode='train'`` flag.
* Up / down sampling uses explicit target sizes instead of scale factors (identical values for inputs whose
  sides are multiples of 32; with ``align_corners=True`` PyTorch derives the grid from the sizes either way).
* The encoder stages ``x{i}_0`` are computed first (in :meth:`DNANet.encode`), the nested nodes afterwards
  (in :meth:`DNANet.decode`); the reference interleaves them, but ``x{i}_0`` depends on ``x{i-1}_0`` only,
  so the results are identical.
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

__all__ = ["DNANet", "dnanet"]


class DNANet(HostNet):
    """Dense Nested Attention Network. ``B x in_chans x H x W -> B x 1 x H x W`` logits (H, W divisible by 32).

    Encoder stages (:meth:`encode`): ``x0_0 .. x4_0`` with ``stage_channels = channels`` and
    ``stage_strides = (1, 2, 4, 8, 16)``; the last (``x4_0``, ``B x channels[4] x H/16 x W/16``) is the
    bottleneck. :meth:`decode` runs the dense nested grid, the pyramid fusion and the heads.

    Outputs: eval mode ``B x 1 x H x W`` (the fused ``final4`` head, or ``final`` without deep supervision);
    training mode with deep supervision ``[final4, final1, final2, final3]``, all ``B x 1 x H x W``, main first.
    """

    def __init__(
        self,
        *,
        in_chans: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        num_blocks: Sequence[int] = (2, 2, 2, 2),
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        channels, num_blocks = tuple(int(c) for c in channels), tuple(int(n) for n in num_blocks)
        if len(channels) != 5 or len(num_blocks) != 4:
            raise ModelError(
                f"DNANet needs 5 stage widths and 4 block counts, got channels={channels}, num_blocks={num_blocks}"
            )
        if in_chans < 1:
            raise ModelError(f"in_chans must be >= 1, got {in_chans}")
        c = channels
        self.stage_channels = channels
        self.stage_strides = (1, 2, 4, 8, 16)
        self.deep_supervision = bool(deep_supervision)

        # backbone column x{i}_0
        self.conv0_0 = make_layer(in_chans, c[0])
        self.conv1_0 = make_layer(c[0], c[1], num_blocks[0])
        self.conv2_0 = make_layer(c[1], c[2], num_blocks[1])
        self.conv3_0 = make_layer(c[2], c[3], num_blocks[2])
        self.conv4_0 = make_layer(c[3], c[4], num_blocks[3])
        # dense nested nodes x{i}_{j}: j earlier row nodes + node below (+ node above for rows >= 1)
        self.conv0_1 = make_layer(c[0] + c[1], c[0])
        self.conv1_1 = make_layer(c[1] + c[2] + c[0], c[1], num_blocks[0])
        self.conv2_1 = make_layer(c[2] + c[3] + c[1], c[2], num_blocks[1])
        self.conv3_1 = make_layer(c[3] + c[4] + c[2], c[3], num_blocks[2])
        self.conv0_2 = make_layer(c[0] * 2 + c[1], c[0])
        self.conv1_2 = make_layer(c[1] * 2 + c[2] + c[0], c[1], num_blocks[0])
        self.conv2_2 = make_layer(c[2] * 2 + c[3] + c[1], c[2], num_blocks[1])
        self.conv0_3 = make_layer(c[0] * 3 + c[1], c[0])
        self.conv1_3 = make_layer(c[1] * 3 + c[2] + c[0], c[1], num_blocks[0])
        self.conv0_4 = make_layer(c[0] * 4 + c[1], c[0])
        # feature pyramid fusion
        self.conv0_4_final = make_layer(c[0] * 5, c[0])
        self.conv0_4_1x1 = nn.Conv2d(c[4], c[0], 1)
        self.conv0_3_1x1 = nn.Conv2d(c[3], c[0], 1)
        self.conv0_2_1x1 = nn.Conv2d(c[2], c[0], 1)
        self.conv0_1_1x1 = nn.Conv2d(c[1], c[0], 1)
        # heads
        if self.deep_supervision:
            self.final1 = nn.Conv2d(c[0], 1, 1)
            self.final2 = nn.Conv2d(c[0], 1, 1)
            self.final3 = nn.Conv2d(c[0], 1, 1)
            self.final4 = nn.Conv2d(c[0], 1, 1)
            self.logit_layers = ("final1", "final2", "final3", "final4")
        else:
            self.final = nn.Conv2d(c[0], 1, 1)
            self.logit_layers = ("final",)

    def encode(self, x: Tensor) -> list[Tensor]:
        """``B x in_chans x H x W`` -> ``[x0_0, x1_0, x2_0, x3_0, x4_0]``, ``B x channels[i] x H/2^i x W/2^i``."""
        x0_0 = self.conv0_0(x)
        x1_0 = self.conv1_0(F.max_pool2d(x0_0, 2))
        x2_0 = self.conv2_0(F.max_pool2d(x1_0, 2))
        x3_0 = self.conv3_0(F.max_pool2d(x2_0, 2))
        x4_0 = self.conv4_0(F.max_pool2d(x3_0, 2))
        return [x0_0, x1_0, x2_0, x3_0, x4_0]

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor | list[Tensor]:
        """Encoder stages -> logits ``B x 1 x H x W`` (training with deep supervision: 4 of them, main first)."""
        self.check_stage_features(features)
        x0_0, x1_0, x2_0, x3_0, x4_0 = features
        s0, s1, s2, s3 = (f.shape[-2:] for f in (x0_0, x1_0, x2_0, x3_0))

        # every node: earlier nodes of its row, the node below up-sampled x2 and (rows 1-3) the node above
        # down-sampled x0.5
        x0_1 = self.conv0_1(torch.cat([x0_0, _resize(x1_0, s0)], 1))
        x1_1 = self.conv1_1(torch.cat([x1_0, _resize(x2_0, s1), _resize(x0_1, s1)], 1))
        x0_2 = self.conv0_2(torch.cat([x0_0, x0_1, _resize(x1_1, s0)], 1))

        x2_1 = self.conv2_1(torch.cat([x2_0, _resize(x3_0, s2), _resize(x1_1, s2)], 1))
        x1_2 = self.conv1_2(torch.cat([x1_0, x1_1, _resize(x2_1, s1), _resize(x0_2, s1)], 1))
        x0_3 = self.conv0_3(torch.cat([x0_0, x0_1, x0_2, _resize(x1_2, s0)], 1))

        x3_1 = self.conv3_1(torch.cat([x3_0, _resize(x4_0, s3), _resize(x2_1, s3)], 1))
        x2_2 = self.conv2_2(torch.cat([x2_0, x2_1, _resize(x3_1, s2), _resize(x1_2, s2)], 1))
        x1_3 = self.conv1_3(torch.cat([x1_0, x1_1, x1_2, _resize(x2_2, s1), _resize(x0_3, s1)], 1))
        x0_4 = self.conv0_4(torch.cat([x0_0, x0_1, x0_2, x0_3, _resize(x1_3, s0)], 1))

        fused = self.conv0_4_final(
            torch.cat(
                [
                    _resize(self.conv0_4_1x1(x4_0), s0),
                    _resize(self.conv0_3_1x1(x3_1), s0),
                    _resize(self.conv0_2_1x1(x2_2), s0),
                    _resize(self.conv0_1_1x1(x1_3), s0),
                    x0_4,
                ],
                1,
            )
        )
        if not self.deep_supervision:
            return self.final(fused)
        main = self.final4(fused)
        if not self.training:
            return main
        return [main, self.final1(x0_1), self.final2(x0_2), self.final3(x0_3)]


@register_model(
    "dnanet",
    published_params=4_700_000,
    published_macs=14.3e9,
    paper="Li et al., Dense Nested Attention Network for Infrared Small Target Detection, IEEE TIP 2022",
    reference="https://github.com/YeRen123455/Infrared-Small-Target-Detection (also XinyiYing/BasicIRSTD model/DNANet)",
)
def dnanet(
    *,
    in_chans: int = 1,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    num_blocks: Sequence[int] = (2, 2, 2, 2),
    deep_supervision: bool = True,
) -> DNANet:
    """DNANet, BasicIRSTD default configuration (widths 16-256, ResNet-18-like blocks 2-2-2-2, deep
    supervision on): 4,696,568 parameters at ``in_chans=1`` (published 4.70M by BasicIRSTD at 1 channel;
    the original repository trains with ``in_chans=3``, 4,696,888). Untrained (no weights are downloaded);
    load reference checkpoints with :func:`irfoundry.models.checkpoint.import_reference_checkpoint`.

    ``channels`` / ``num_blocks``: the original repository's ``--channel_size`` / ``--backbone`` options
    (e.g. ``num_blocks=(1, 1, 1, 1)`` for ``resnet_10``, ``(3, 4, 6, 3)`` for ``resnet_34``; widths must be
    >= 16 because of the channel attention's fixed reduction). ``deep_supervision=False`` builds the single
    ``final`` head (checkpoints trained that way have ``final.*`` instead of ``final1..4.*``).
    """
    return DNANet(in_chans=in_chans, channels=channels, num_blocks=num_blocks, deep_supervision=deep_supervision)
