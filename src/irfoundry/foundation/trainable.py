"""A foundation backbone as a *trainable* image encoder: the SAM-style teacher's encoder (SimIR, issue 20).

:class:`~irfoundry.foundation.FoundationModel` is frozen by design (the FDEP / semantic-prior priors). A
teacher that is fine-tuned on IRSTD needs the same input plumbing (grey to RGB, the backbone's mean/std,
padding to the patch / stage multiple, maps sampled at cell centres) with gradients, and its weights in the
teacher's ``state_dict``. :class:`FoundationEncoder` wraps a ``FoundationModel`` for that: the timm backbone
becomes a registered submodule (``backbone.*`` keys), and ``finetune`` says what trains:

* ``"frozen"``: nothing (the encoder runs under ``torch.no_grad()`` and stays in eval mode);
* ``"full"``: every backbone parameter;
* ``"last:N"``: the last ``N`` blocks up to the deepest selected layer (ViT blocks, or timm's CNN
  ``blocks`` stages), plus SAM's neck when the ``"neck"`` layer is selected; BatchNorm / dropout of the
  frozen part stay in eval mode;
* ``"lora:R"``: LoRA adapters of rank ``R`` on every ViT block's ``attn.qkv`` and ``attn.proj``
  (:mod:`irfoundry.layers.lora`; the base weights frozen), SAM-family fine-tuning's usual choice.

Shapes: as :meth:`FoundationModel.features`: ``N x 1 x H x W`` in [0, 1] -> one map per selected layer.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.foundation.adapter import FoundationModel

__all__ = ["FoundationEncoder", "parse_finetune"]

_FINETUNE = re.compile(r"^(frozen|full|last:(\d+)|lora:(\d+))$")


def parse_finetune(finetune: str) -> tuple[str, int]:
    """``"frozen" | "full" | "last:N" | "lora:R"`` -> ``(mode, number)`` (number 0 for frozen / full)."""
    m = _FINETUNE.match(str(finetune).strip())
    if not m or (m.group(2) is not None and int(m.group(2)) < 1) or (m.group(3) is not None and int(m.group(3)) < 1):
        raise ModelError(f"finetune must be 'frozen', 'full', 'last:N' or 'lora:R' (N, R >= 1), got {finetune!r}")
    mode = m.group(1).split(":")[0]
    return mode, int(m.group(2) or m.group(3) or 0)


class FoundationEncoder(nn.Module):
    """A trainable view of a :class:`FoundationModel` (see the module docstring).

    Args:
        foundation: the adapter (its backbone is taken over: do not use ``foundation`` as a frozen prior
            elsewhere afterwards).
        finetune: ``frozen``, ``full``, ``last:N`` or ``lora:R``.

    Attributes:
        trainable_modules: qualified names (under ``backbone``) of what trains; ``[]`` when frozen,
            ``[""]`` for the whole backbone.
    """

    def __init__(self, foundation: FoundationModel, finetune: str = "frozen") -> None:
        super().__init__()
        if not isinstance(foundation, FoundationModel):
            raise ModelError(f"FoundationEncoder wraps a FoundationModel, got {type(foundation).__name__}")
        self.mode, n = parse_finetune(finetune)
        self.finetune = str(finetune)
        self.adapter = foundation  # mean / std buffers and the plumbing; its backbone is not its submodule
        self.backbone = foundation.backbone
        self.backbone.requires_grad_(False)
        self.trainable_modules = self._unfreeze(n)
        self.train(False)

    # ------------------------------------------------------------------------------------------ set-up
    def _deepest_block(self) -> int:
        fm, bb = self.adapter, self.backbone
        ints = [layer for layer in fm.layers if isinstance(layer, int)]
        if fm.kind == "vit":
            return len(bb.blocks) - 1 if "neck" in fm.layers or not ints else max(ints)
        info = bb.feature_info
        modules = [i["module"] for i in getattr(info, "info", info)]
        return int(modules[max(ints)].split(".")[1])

    def _unfreeze(self, n: int) -> list[str]:
        fm, bb = self.adapter, self.backbone
        if self.mode == "frozen":
            return []
        if self.mode == "full":
            bb.requires_grad_(True)
            return [""]
        if self.mode == "lora":
            if fm.kind != "vit":
                raise ModelError(f"finetune 'lora:{n}' adapts a ViT's attention; {fm.name} is a CNN: use 'last:N' "
                                 "or 'full'")
            from irfoundry.layers.lora import inject_lora

            return inject_lora(bb.blocks, names=("qkv", "proj"), rank=n)  # adapters are created trainable
        if not hasattr(bb, "blocks"):
            raise ModelError(f"finetune 'last:{n}' needs a backbone with timm 'blocks'; {fm.name} has none")
        deepest = self._deepest_block()
        first = max(0, deepest - n + 1)
        names = [f"blocks.{i}" for i in range(first, deepest + 1)]
        if fm.kind == "vit" and "neck" in fm.layers:
            names.append("neck")
        for name in names:
            bb.get_submodule(name).requires_grad_(True)
        return names

    def train(self, mode: bool = True) -> "FoundationEncoder":
        """``mode`` for the trainable parts only: frozen parts keep BatchNorm statistics and dropout fixed."""
        self.training = mode
        self.backbone.train(False)
        if mode and self.mode in ("full", "lora"):
            self.backbone.train(True)
        elif mode and self.mode == "last":
            for name in self.trainable_modules:
                self.backbone.get_submodule(name).train(True)
        return self

    # ------------------------------------------------------------------------------------------ forward
    @property
    def feature_info(self) -> list[dict]:
        """As :attr:`FoundationModel.feature_info`: ``channels``, ``stride``, ``layer`` per map."""
        return self.adapter.feature_info

    @property
    def pad_multiple(self) -> int:
        """Inputs are padded to this multiple inside (the backbone's largest stride / patch size)."""
        return int(self.adapter.pad_multiple)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``N x 1 x H x W`` (or 3 channels) in [0, 1] -> one map per selected layer (see ``feature_info``)."""
        if self.mode == "frozen":
            with torch.no_grad():
                return self.adapter.features(x)
        return self.adapter.features(x)

    def trainable_parameters(self) -> Sequence[nn.Parameter]:
        """The parameters that train (``requires_grad``)."""
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def extra_repr(self) -> str:
        return f"foundation={self.adapter.name!r}, finetune={self.finetune!r}"
