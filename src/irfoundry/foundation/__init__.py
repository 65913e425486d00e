"""Frozen vision foundation backbones behind one small interface.

Usage::

    from irfoundry.foundation import create_foundation, to_unit_range
    fm = create_foundation("dinov2_vits14", weights="dinov2_vits14_pretrain.pth", layers=None, input_size=None)
    maps = fm(x)                # x: N x 1 x H x W float in [0, 1]  ->  list of N x C_i x h_i x w_i
    fm.feature_info             # [{"channels": C_i, "stride": s_i, "layer": l_i}, ...], one per map
    fm.weights_sha256           # sha256 hex of the weights file, None for random weights
    fm.cache_key()              # str; changes with name, weights sha256, layers, input_size, output_stride

Input contract: ``x`` is ``N x 1 x H x W`` (grey) or ``N x 3 x H x W``, float, raw intensities scaled to
``[0, 1]`` (8-bit image / 255), *not* the host's mean/std-normalised tensor. Hosts see images normalised
with the train split's mean/std; map them back with ``to_unit_range(x, mean, std)`` (= ``x * std + mean``,
clamped to [0, 1]; mean/std in the same [0, 1] units the data module uses) before calling ``fm``. Inside,
the adapter repeats grey to 3 channels, applies the backbone's own mean/std (ImageNet for DINOv2/v3,
SAM's pixel mean/std, timm's pretrained_cfg for ``timm:NAME``), optionally resizes to ``input_size``,
pads bottom/right to the patch size (ViTs) or to the deepest stride (CNNs) with zeros *after*
normalisation (the backbone's mean colour), runs the frozen backbone under ``torch.no_grad()`` and
crops the padding away.

Output contract: map ``i`` has shape ``N x C_i x ceil(H / s_i) x ceil(W / s_i)`` with
``C_i, s_i = feature_info[i]["channels"], feature_info[i]["stride"]``; ``map[:, :, a, b]`` describes the
input pixels rows ``[a*s_i, (a+1)*s_i)``, columns ``[b*s_i, (b+1)*s_i)`` (the last row/column of cells
may extend over the padding). Without ``input_size`` / ``output_stride`` this is the backbone's own grid
(no interpolation). With them, the backbone grid is bilinearly sampled at each output cell's centre.

Names (``list_foundations()``): ``dinov2_vit{s,b,l,g}14`` and ``..._reg``, DINOv3 ViTs that timm has
(``dinov3_vits16``, ...), ``sam_vit_{b,l,h}``, ``efficientnet_lite0`` (bundled weights) and ``timm:NAME``.
Defaults: ``layers=None`` -> 4 evenly spaced ViT blocks / every CNN stage; ``input_size=None`` -> native.
Frozen: no parameter requires grad, ``train()`` keeps eval mode, and the backbone is not a registered
submodule, so it never appears in a parent's ``state_dict()`` or ``parameters()``.
"""

from irfoundry.foundation.adapter import (
    ADAPTER_VERSION,
    FoundationModel,
    align,
    create_foundation,
    sample_cells,
    to_unit_range,
)
from irfoundry.foundation.backbones import FoundationSpec, foundation_spec, list_foundations, register_foundation

__all__ = [
    "ADAPTER_VERSION",
    "FoundationModel",
    "FoundationSpec",
    "align",
    "create_foundation",
    "foundation_spec",
    "list_foundations",
    "register_foundation",
    "sample_cells",
    "to_unit_range",
]
