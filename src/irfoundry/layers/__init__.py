"""Shared building blocks (one block per file), used by several host networks and fusion modules.

Moving a block here keeps its parameter names, so state-dict keys (and the strict imports of reference
checkpoints, checked against golden key lists in tests/models/golden) are unchanged.
"""

from irfoundry.layers.acm_stem import make_stem
from irfoundry.layers.asym_bi_cha_fuse import REFERENCE_BN_MOMENTUM, AsymBiChaFuse
from irfoundry.layers.conv_bn_act import ConvBNAct
from irfoundry.layers.fcn_head import FCNHead
from irfoundry.layers.res_basic_block import ResBasicBlock, make_res_layer
from irfoundry.layers.res_cbam import ChannelAttention, ResCBAMBlock, SpatialAttention, make_layer
from irfoundry.layers.residual_encoder import DownResidualBlock, ResidualBlock, ResidualEncoder, init_kaiming
from irfoundry.layers.resize import resize_aligned

__all__ = [
    "REFERENCE_BN_MOMENTUM",
    "AsymBiChaFuse",
    "ChannelAttention",
    "ConvBNAct",
    "DownResidualBlock",
    "FCNHead",
    "ResBasicBlock",
    "ResCBAMBlock",
    "ResidualBlock",
    "ResidualEncoder",
    "SpatialAttention",
    "init_kaiming",
    "make_layer",
    "make_res_layer",
    "make_stem",
    "resize_aligned",
]
