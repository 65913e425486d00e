"""``Frozen``: a trained network used as a fixed teacher, never trained and never saved with the student.

Frozen means, as dinov2's teacher (``train/ssl_meta_arch.py``):

* the wrapped module is not a registered submodule (it sits in a small holder): ``parameters()``,
  ``state_dict()`` and ``named_modules()`` of the wrapper and of any parent holding it contain none of its
  weights, so no optimiser receives them and no student checkpoint stores them;
* its parameters have ``requires_grad=False`` and ``forward`` runs under ``torch.no_grad()``;
* ``train(mode)`` keeps it in eval mode whatever ``mode`` says (BatchNorm statistics and dropout stay fixed);
* ``.to(device)``, ``.cuda()``, ``.half()`` on a parent still move / cast it (``_apply`` is forwarded).

Provenance: :attr:`Frozen.sha256` is the sha256 of the weights file it was loaded from
(:meth:`Frozen.from_file`), else a digest of its tensors (:meth:`Frozen.state_digest`); :meth:`provenance`
is what a method writes into the run's metadata. :class:`irfoundry.foundation.FoundationModel` is a
``Frozen`` too.

Typical use (a distillation teacher from an earlier run)::

    teacher = Frozen.from_file("runs/teacher/best.safetensors")
    with torch.no_grad():                   # implied by Frozen.forward
        t_logits = teacher(images)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from irfoundry.errors import ModelError


class _Hidden:
    """Holds a module as a plain attribute, outside ``nn.Module``'s registry."""

    __slots__ = ("module",)

    def __init__(self, module: nn.Module) -> None:
        self.module = module


class Frozen(nn.Module):
    """Wrap ``module`` as a frozen teacher (see the module docstring).

    Args:
        module: the trained network; its ``forward`` is called as is.
        source: where it came from (a file path, ``hub:...``, ``random``), for the run's metadata.
        sha256: sha256 of that file; ``None``: :meth:`state_digest` identifies it.
    """

    def __init__(self, module: nn.Module, *, source: str | None = None, sha256: str | None = None) -> None:
        super().__init__()
        self._frozen = _Hidden(module)
        module.eval().requires_grad_(False)
        self.source = source
        self._sha256 = sha256
        self._state_digest: str | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Frozen":
        """A network saved by irfoundry (``.safetensors`` + sidecar, or a run folder's ``best``), frozen."""
        from irfoundry.models.checkpoint import file_sha256, load_weights

        path = Path(path)
        if path.is_dir():
            path = path / "best.safetensors" if (path / "best.safetensors").is_file() else path / "last.safetensors"
        return cls(load_weights(path), source=str(path), sha256=file_sha256(path))

    @property
    def module(self) -> nn.Module:
        """The wrapped network (not a submodule)."""
        return self._frozen.module

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def train(self, mode: bool = True) -> "Frozen":
        """Frozen: stays in eval mode whatever ``mode`` is."""
        super().train(False)
        self.module.eval()
        return self

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.module._apply(fn)
        return self

    def state_digest(self) -> str:
        """sha256 over the wrapped module's tensors (names, dtypes, shapes, bytes); computed once."""
        if self._state_digest is None:
            h = hashlib.sha256()
            for key, t in sorted(self.module.state_dict().items()):
                if t.is_meta:
                    raise ModelError(f"{type(self.module).__name__} is on the meta device: it has no values to digest")
                t = t.detach().cpu().contiguous()
                h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            self._state_digest = h.hexdigest()
        return self._state_digest

    @property
    def sha256(self) -> str:
        """The weights file's sha256, or :meth:`state_digest` when there is no file."""
        return self._sha256 or self.state_digest()

    def provenance(self) -> dict:
        """JSON-able identity for the run's metadata: ``{"source", "sha256", "sha256_of"}``."""
        return {"source": self.source, "sha256": self.sha256, "sha256_of": "file" if self._sha256 else "tensors"}
