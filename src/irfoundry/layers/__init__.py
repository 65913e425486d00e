"""Shared building blocks (one block per file), used by several host networks and fusion modules."""

from irfoundry.layers.conv_bn_act import ConvBNAct

__all__ = ["ConvBNAct"]
