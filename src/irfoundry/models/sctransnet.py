"""SCTransNet: a U-Net whose four skip connections pass through spatial-channel cross transformer blocks.

Yuan, Qin, Yan, Akhtar, Mian, "SCTransNet: Spatial-channel Cross Transformer Network for Infrared Small Target
Detection", IEEE Transactions on Geoscience and Remote Sensing 62, 2024 (arXiv 2401.15583).
Reference code: xdFai/SCTransNet (``model/SCTransNet.py``, config ``get_CTranS_config`` / ``model/Config.py``,
``train.py``, ``test.py``); PAL (YuChuang1205/PAL ``model/SCTransNet/SCTransNet_no_sigmoid.py``) carries the same
network without the final sigmoids and with ``n_channels=3``.

Architecture (reference configuration: ``base_channel=32``, ``patch_sizes=(16, 8, 4, 2)``, 4 transformer layers):

* encoder: residual blocks ``inc``, ``down_encoder1..4`` (two 3x3 conv-BN, LeakyReLU 0.01, 1x1 conv-BN projection
  shortcut where the width changes) separated by 2x2 max pooling: ``x1..x4`` with 32, 64, 128, 256 channels at
  strides 1, 2, 4, 8 and the bottleneck ``d5`` (256 channels, stride 16);
* ``mtc``: the channel transformer (:class:`irfoundry.layers.sctrans_blocks.ChannelTransformer`) over ``x1..x4``:
  every level is cut into the same ``H/16 x W/16`` token grid, four SCTBs (SSCA channel-cross attention across
  all levels + CFN feed-forward) mix them, and each level is up-sampled back and added to its input;
* skips: ``s_i = mtc(x1..x4)_i + x_i`` (the reference adds the encoder feature a second time, so
  ``s_i = reconstruct_i(..) + 2 x_i``);
* decoder ``up_decoder4..1``: nearest x2 up-sampling, channel cross attention (``coatt``, CCA) gating the skip with
  the up-sampled feature, concatenation, two 3x3 conv-BN-ReLU; ``outc`` (1x1 conv) gives the main logits;
* deep supervision (``deep_supervision=True``, the reference's ``deepsuper``): 1x1 convs ``gt_conv5..2`` on
  ``d5, d4, d3, d2`` up-sampled to full size (bilinear, ``align_corners=True``), and ``outconv`` (1x1, 5 -> 1)
  fusing them with the main logits.

Mapping of the reference's ``mode`` / ``deepsuper`` flags onto ``self.training`` (we take no flag):

* reference ``mode='test'`` (``test.py``, and the evaluation inside ``train.py`` takes ``pred[-1]``): the main
  output ``out``, never the fusion ``d0``. Ours in eval mode: ``out`` (``B x 1 x H x W``).
* reference ``mode='train'``: the tuple ``(gt5, gt4, gt3, gt2, d0, out)``, trained with the unweighted sum of the
  six BCE losses. Ours in training mode: the reversed list ``[out, d0, gt2, gt3, gt4, gt5]``, main first, all
  ``B x 1 x H x W`` (the sum of the losses does not depend on the order).
* ``deep_supervision=False``: no ``gt_conv*`` / ``outconv``; ``out`` in both modes.

Encoder / decoder split (for fusion modules): :meth:`SCTransNet.encode` returns the CNN encoder's stages
``[x1, x2, x3, x4, d5]``; :meth:`SCTransNet.decode` runs ``mtc``, the decoder and the heads. The paper places the
SCTBs "on the skip connections", so they belong to the decoding side: a bottleneck fusion (FDEP's SAMF) modulates
``d5``, which the transformer never sees; a per-stage fusion (SCAM) modulates ``x1..x4`` *before* the cross-level
attention, so each modulated stage reaches the decoder both directly (twice, through the two residuals) and
through the transformer of every level. The features the decoder blocks consume are the transformed skips
``s_i`` (:meth:`SCTransNet.skip_features`), not the raw stages.

Submodule and parameter names and their order are the reference's, so its checkpoints load strictly with no key
filter: the authors' ``train.py`` saves ``{"epoch", "state_dict": Net.state_dict(), "total_loss"}`` where
``Net`` holds the model as ``.model`` (keys ``model.<ref key>``; the released ``SCTransNet_NUAA_NUDT_IRSTD1K.pth.tar``
is read by ``test.py`` that way), PAL saves ``{"epoch", "state_dict": <bare keys>, "optimizer", ...}`` with
``in_chans=3``. :func:`irfoundry.models.checkpoint.import_reference_checkpoint` strips the prefixes.

Deviations from the reference (none change the weights or the outputs):

* logits out (the reference applies ``sigmoid`` in ``forward``);
* tensors the reference registers but never reads (``mtc.embeddings_*.position_embeddings`` and the scalars
  ``q{i}_attn{j}`` of every attention, 122,944 values) are kept with ``requires_grad=False``, see
  :mod:`irfoundry.layers.sctrans_blocks`: the reference's optimiser never updates them either (no gradient), and
  this way they are no "unused parameters" for DDP and hold no ``None`` gradients;
* in eval mode the side heads are not evaluated (the reference computes and discards them);
* the reference's ``train.py`` re-initialises convs / linears (Kaiming normal, fan-in) and BN weights
  (``N(1, 0.02)``); the builder keeps PyTorch's default initialisation, as for every host here.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.layers.resize import resize_aligned as _resize
from irfoundry.layers.sctrans_blocks import ChannelTransformer
from irfoundry.models._registry import register_model
from irfoundry.models.base import HostNet

__all__ = ["SCTransNet", "sctransnet"]

#: reference ``get_CTranS_config().patch_sizes``
REFERENCE_PATCH_SIZES = (16, 8, 4, 2)


class ResBlock(nn.Module):
    """The reference's ``Res_block``: ``conv1``-``bn1``-LeakyReLU(0.01)-``conv2``-``bn2`` (3x3 convs with bias) plus
    the input (through ``shortcut``, a 1x1 conv-BN, when the width changes), LeakyReLU.
    ``B x in_ch x H x W -> B x out_ch x H x W``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.LeakyReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = None
        if in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + residual)


class CBN(nn.Module):
    """3x3 conv (bias), BN, ReLU (the reference's ``CBN``)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm = nn.BatchNorm2d(out_ch)
        self.activation = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.norm(self.conv(x)))


class CCA(nn.Module):
    """Channel cross attention of the decoder (the reference's ``CCA``): the skip ``x`` (``B x C x H x W``) is
    gated per channel by ``sigmoid((mlp_x(mean x) + mlp_g(mean g)) / 2)`` from itself and the up-sampled decoder
    feature ``g`` (``B x C_g x H x W``), then ReLU."""

    def __init__(self, f_g: int, f_x: int) -> None:
        super().__init__()
        self.mlp_x = nn.Sequential(nn.Flatten(), nn.Linear(f_x, f_x))
        self.mlp_g = nn.Sequential(nn.Flatten(), nn.Linear(f_g, f_x))

    def forward(self, g: Tensor, x: Tensor) -> Tensor:
        att = (self.mlp_x(F.adaptive_avg_pool2d(x, 1)) + self.mlp_g(F.adaptive_avg_pool2d(g, 1))) / 2.0
        return F.relu(x * torch.sigmoid(att)[:, :, None, None])


class UpBlockAttention(nn.Module):
    """Decoder block (the reference's ``UpBlock_attention``): nearest x2 up-sampling of ``x``, :class:`CCA` on the
    skip, ``cat([gated skip, up])`` (``in_ch`` channels, half each), two :class:`CBN` (``nConvs``) to ``out_ch``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.coatt = CCA(f_g=in_ch // 2, f_x=in_ch // 2)
        self.nConvs = nn.Sequential(CBN(in_ch, out_ch), CBN(out_ch, out_ch))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.nConvs(torch.cat([self.coatt(g=up, x=skip), up], dim=1))


class SCTransNet(HostNet):
    """SCTransNet (module docstring). ``B x in_chans x H x W -> B x 1 x H x W`` logits, H and W multiples of
    :attr:`input_multiple` (16 in the reference configuration: four poolings, and a 16 x 16 patch grid).

    Encoder stages (:meth:`encode`): ``[x1, x2, x3, x4, d5]``, ``stage_channels = base_channels * (1, 2, 4, 8, 8)``
    (32, 64, 128, 256, 256) at ``stage_strides = (1, 2, 4, 8, 16)``; ``d5`` is the bottleneck. :meth:`decode`
    runs the channel transformer on ``x1..x4``, the CCA decoder and the heads.

    Outputs: eval mode ``out`` ``B x 1 x H x W``; training mode with deep supervision
    ``[out, d0, gt2, gt3, gt4, gt5]``, six ``B x 1 x H x W`` logit maps, main first.
    """

    def __init__(
        self,
        *,
        in_chans: int = 1,
        base_channels: int = 32,
        num_layers: int = 4,
        patch_sizes: Sequence[int] = REFERENCE_PATCH_SIZES,
        img_size: int = 256,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        patch_sizes = tuple(int(p) for p in patch_sizes)
        if in_chans < 1:
            raise ModelError(f"in_chans must be >= 1, got {in_chans}")
        if base_channels < 2 or base_channels % 2:
            raise ModelError(f"base_channels must be even and >= 2 (grouped query convs), got {base_channels}")
        if num_layers < 0:
            raise ModelError(f"num_layers must be >= 0, got {num_layers}")
        if len(patch_sizes) != 4 or min(patch_sizes) < 1 or any(
            p * 2**i != patch_sizes[0] for i, p in enumerate(patch_sizes)
        ):
            raise ModelError(
                "patch_sizes must be 4 sizes that halve from level to level (all levels then share one token "
                f"grid, e.g. (16, 8, 4, 2)), got {patch_sizes}"
            )
        if img_size < patch_sizes[0]:
            raise ModelError(f"img_size must be >= patch_sizes[0] = {patch_sizes[0]}, got {img_size}")
        c = base_channels
        self.stage_channels = (c, 2 * c, 4 * c, 8 * c, 8 * c)
        self.stage_strides = (1, 2, 4, 8, 16)
        self.input_multiple = math.lcm(16, patch_sizes[0])
        self.deep_supervision = bool(deep_supervision)
        self.patch_sizes = patch_sizes

        self.inc = nn.Sequential(ResBlock(in_chans, c))
        self.down_encoder1 = nn.Sequential(ResBlock(c, 2 * c))
        self.down_encoder2 = nn.Sequential(ResBlock(2 * c, 4 * c))
        self.down_encoder3 = nn.Sequential(ResBlock(4 * c, 8 * c))
        self.down_encoder4 = nn.Sequential(ResBlock(8 * c, 8 * c))
        self.mtc = ChannelTransformer(self.stage_channels[:4], patch_sizes, num_layers, img_size)
        self.up_decoder4 = UpBlockAttention(16 * c, 4 * c)
        self.up_decoder3 = UpBlockAttention(8 * c, 2 * c)
        self.up_decoder2 = UpBlockAttention(4 * c, c)
        self.up_decoder1 = UpBlockAttention(2 * c, c)
        self.outc = nn.Conv2d(c, 1, 1)
        if self.deep_supervision:
            self.gt_conv5 = nn.Sequential(nn.Conv2d(8 * c, 1, 1))
            self.gt_conv4 = nn.Sequential(nn.Conv2d(4 * c, 1, 1))
            self.gt_conv3 = nn.Sequential(nn.Conv2d(2 * c, 1, 1))
            self.gt_conv2 = nn.Sequential(nn.Conv2d(c, 1, 1))
            self.outconv = nn.Conv2d(5, 1, 1)
            self.logit_layers = ("outc", "gt_conv5.0", "gt_conv4.0", "gt_conv3.0", "gt_conv2.0")
            self.logit_fusion_layers = ("outconv",)
        else:
            self.logit_layers = ("outc",)

    def encode(self, x: Tensor) -> list[Tensor]:
        """``B x in_chans x H x W`` -> ``[x1, x2, x3, x4, d5]``, ``B x stage_channels[i] x H/2^i x W/2^i``."""
        x1 = self.inc(x)
        x2 = self.down_encoder1(F.max_pool2d(x1, 2))
        x3 = self.down_encoder2(F.max_pool2d(x2, 2))
        x4 = self.down_encoder3(F.max_pool2d(x3, 2))
        d5 = self.down_encoder4(F.max_pool2d(x4, 2))
        return [x1, x2, x3, x4, d5]

    def skip_features(self, stages: Sequence[Tensor]) -> list[Tensor]:
        """``[x1, x2, x3, x4]`` -> the skips the decoder consumes, ``s_i = mtc(x1..x4)_i + x_i`` (same shapes;
        the reference's second residual around ``mtc``)."""
        return [t + f for t, f in zip(self.mtc(stages), stages)]

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor | list[Tensor]:
        """``[x1, x2, x3, x4, d5]`` -> logits ``B x 1 x H x W`` (eval); in training mode with deep supervision
        ``[out, d0, gt2, gt3, gt4, gt5]``, all ``B x 1 x H x W``."""
        self.check_stage_features(features)
        s1, s2, s3, s4 = self.skip_features(features[:4])
        d5 = features[4]
        d4 = self.up_decoder4(d5, s4)
        d3 = self.up_decoder3(d4, s3)
        d2 = self.up_decoder2(d3, s2)
        out = self.outc(self.up_decoder1(d2, s1))
        if not (self.deep_supervision and self.training):
            return out
        size = tuple(input_size)
        gt5 = _resize(self.gt_conv5(d5), size)
        gt4 = _resize(self.gt_conv4(d4), size)
        gt3 = _resize(self.gt_conv3(d3), size)
        gt2 = _resize(self.gt_conv2(d2), size)
        d0 = self.outconv(torch.cat([gt2, gt3, gt4, gt5, out], dim=1))
        return [out, d0, gt2, gt3, gt4, gt5]


@register_model(
    "sctransnet",
    published_params=11_300_000,
    published_macs=10.5e9,
    paper="Yuan et al., SCTransNet: Spatial-channel Cross Transformer Network for Infrared Small Target Detection, "
    "IEEE TGRS 2024",
    reference="https://github.com/xdFai/SCTransNet (model/SCTransNet.py)",
)
def sctransnet(
    *,
    in_chans: int = 1,
    base_channels: int = 32,
    num_layers: int = 4,
    patch_sizes: Sequence[int] = REFERENCE_PATCH_SIZES,
    img_size: int = 256,
    deep_supervision: bool = True,
) -> SCTransNet:
    """SCTransNet, reference configuration: 11,202,995 trainable parameters at ``in_chans=1`` plus 122,944 frozen
    never-read ones, 11,325,939 in all (= the reference's count; published 11.3M); at ``in_chans=3`` (PAL's
    ``n_channels=3``) 11,203,635 trainable, 11,326,579 in all. Untrained; load reference checkpoints with
    :func:`irfoundry.models.checkpoint.import_reference_checkpoint`.

    Options (the reference's config fields): ``base_channels`` (``base_channel``, even), ``num_layers``
    (``transformer.num_layers``, number of SCTBs), ``patch_sizes`` (halving from level to level; the input multiple
    is ``lcm(16, patch_sizes[0])``), ``deep_supervision`` (``deepsuper``; ``False`` builds no side heads, as do
    checkpoints trained that way). ``img_size`` only sets the shape of the never-read position embeddings
    (the reference always builds 256, also when training on other crop sizes); match it to the checkpoint.
    The reference's ``KV_size`` is ``15 * base_channels`` here (480 in its config) and its ``num_heads`` is unused.
    """
    return SCTransNet(
        in_chans=in_chans,
        base_channels=base_channels,
        num_layers=num_layers,
        patch_sizes=patch_sizes,
        img_size=img_size,
        deep_supervision=deep_supervision,
    )
