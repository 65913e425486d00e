"""Import checkpoints saved by the field's reference code, and save / load our own weights.

Reference checkpoints (BasicIRSTD, LESPS, DNANet, ...) are ``.pth.tar`` / ``.pth`` files holding
``{"state_dict": ..., "epoch": ..., ...}`` or a bare state dict, with key prefixes from their wrappers
(``module.`` from DataParallel, ``model.`` from BasicIRSTD's ``Net``). :func:`import_reference_checkpoint`
reads them with ``torch.load(weights_only=True)`` (tensors and plain containers only, no code is
unpickled), strips those prefixes, applies the model's registered ``checkpoint_filter`` and loads the
result strictly, so a checkpoint of another architecture is refused with the offending keys named.

Our own format is safetensors plus a JSON sidecar of the same stem (``model.safetensors`` +
``model.json`` with ``model_name`` and ``model_kwargs``), see :func:`save_weights` / :func:`load_weights`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from irfoundry.errors import CheckpointError
from irfoundry.jsonio import dumps as json_dumps
from irfoundry.models._registry import create_model, model_entry

#: wrapper prefixes stripped from reference keys, outermost first
WRAPPER_PREFIXES = ("module.", "model.", "net.")


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (remembered per path, size and mtime for this process)."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def read_torch_checkpoint(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a reference ``.pth`` / ``.pth.tar`` safely and return its state dict (prefixes stripped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, which would run arbitrary code: never pass it on
        raise CheckpointError(
            f"cannot read checkpoint {path}: it holds pickled Python objects beyond tensors and plain containers, "
            "which irfoundry does not load (loading them could run code from the file). Where the file is "
            "trusted, re-save its weights: torch.save({'state_dict': model.state_dict()}, path)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is not a PyTorch checkpoint, or it is corrupt or truncated ({first})"
        ) from None
    for key in ("state_dict", "model", "net", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} holds no state dict of tensors (looked under 'state_dict')")
    return strip_prefixes(dict(obj))


def strip_prefixes(state: dict[str, Tensor], prefixes: tuple[str, ...] = WRAPPER_PREFIXES) -> dict[str, Tensor]:
    """Remove wrapper prefixes shared by *all* keys (``module.model.x`` -> ``x``)."""
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if state and all(k.startswith(p) for k in state):
                state = {k[len(p):]: v for k, v in state.items()}
                changed = True
    return state


def load_state_dict_strict(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """``model.load_state_dict(state, strict=True)`` with a readable error naming missing, unexpected
    and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:

        def show(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {show(shapes)}")
        name = getattr(model, "model_name", type(model).__name__)
        raise CheckpointError(
            f"{source} does not fit model {name!r} ({'; '.join(parts)}). "
            "It was probably saved for another architecture or other model arguments "
            "(e.g. in_chans, deep supervision); pass the matching --model and options."
        )
    model.load_state_dict(state, strict=True)


def import_reference_checkpoint(path: str | os.PathLike, model_name: str, **model_kwargs) -> nn.Module:
    """Build ``model_name`` and load a reference-code checkpoint into it strictly.

    Args:
        path: ``.pth`` / ``.pth.tar`` written by the model's reference code (see ``irfoundry models``).
        model_name: registry name, e.g. ``"acm"``.
        model_kwargs: builder options, must match the checkpoint (``in_chans`` defaults to 1).
    """
    entry = model_entry(model_name)
    state = read_torch_checkpoint(path)
    if entry.checkpoint_filter is not None:
        state = entry.checkpoint_filter(state)
    model = create_model(entry.name, **model_kwargs)
    load_state_dict_strict(model, state, f"checkpoint {path}")
    return model


def sidecar_path(weights_path: str | os.PathLike) -> Path:
    """``x.safetensors`` -> ``x.json``."""
    return Path(weights_path).with_suffix(".json")


def _default_file_mode() -> int:
    """``0o666`` minus the process umask: the mode ``open()`` gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def save_weights(model: nn.Module, path: str | os.PathLike, extra: Mapping | None = None) -> Path:
    """Write ``model``'s state dict as safetensors plus a JSON sidecar, atomically (temp file + rename).

    The sidecar holds ``model_name``, ``model_kwargs`` and anything in ``extra`` (JSON-serialisable).
    Returns the safetensors path.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"model_name": getattr(model, "model_name", ""), "model_kwargs": getattr(model, "model_kwargs", {})}
    meta.update(extra or {})
    tmp_w, tmp_j = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".json.tmp")
    save_file(state, str(tmp_w), metadata={"format": "pt", "irfoundry": json_dumps(meta, indent=None)})
    os.chmod(tmp_w, _default_file_mode())  # safetensors creates 0600 files: colleagues could not read them
    tmp_j.write_text(json_dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp_w, path)
    os.replace(tmp_j, sidecar_path(path))
    return path


def read_weights_meta(path: str | os.PathLike) -> dict:
    """The JSON metadata of a weights file (sidecar, or the copy embedded in the safetensors header)."""
    path = Path(path)
    side = sidecar_path(path)
    if side.is_file():
        try:
            return json.loads(side.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"metadata file {side} is not valid JSON ({exc}); delete it to fall back "
                                  f"on the copy inside {path.name}") from exc
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {}).get("irfoundry", "{}"))
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise CheckpointError(f"cannot read weights {path}: {exc}") from exc


def load_weights(path: str | os.PathLike, **override_kwargs) -> nn.Module:
    """Rebuild the model a :func:`save_weights` file describes and load it strictly."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    meta = read_weights_meta(path)
    if not meta.get("model_name"):
        raise CheckpointError(f"{path} has no model_name in its metadata; it was not written by irfoundry")
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"cannot read weights {path}: {exc} (file corrupt or truncated?)") from exc
    model = create_model(meta["model_name"], **{**meta.get("model_kwargs", {}), **override_kwargs})
    load_state_dict_strict(model, state, f"weights {path}")
    return model
