"""Low-rank adapters (Hu et al., *LoRA*, ICLR 2022) for fine-tuning a frozen foundation's linear layers.

``y = W x + b + (alpha / r) B A x`` with the base ``W, b`` frozen, ``A`` (``r x in``, Kaiming-uniform) and
``B`` (``out x r``, zeros) trainable: at the start the layer is exactly the base one. SimIR's teacher
(issue 20) adapts a SAM-family image encoder this way as one of its fine-tuning options.

Written here rather than taken from ``peft``: the layer is a few lines, and ``peft`` would bring
``transformers`` and ``accelerate`` into the install for it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from irfoundry.errors import ModelError

__all__ = ["LoRALinear", "inject_lora"]


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``rank`` update (see the module docstring).

    Args:
        base: the layer to adapt (its parameters are frozen in place).
        rank: ``r`` (>= 1).
        alpha: the scale numerator (default ``rank``: scale 1).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        if rank < 1:
            raise ModelError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base.requires_grad_(False)
        self.rank, self.scale = int(rank), float(alpha if alpha is not None else rank) / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device,
                                               dtype=base.weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device,
                                               dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` equal to this layer (for export)."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scale * self.lora_b @ self.lora_a)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def inject_lora(module: nn.Module, names: tuple[str, ...] = ("qkv",), rank: int = 4,
                alpha: float | None = None) -> list[str]:
    """Replace every ``nn.Linear`` of ``module`` whose attribute name is in ``names`` by a
    :class:`LoRALinear`; returns the replaced modules' qualified names (a :class:`ModelError` when none)."""
    replaced = []
    for parent_name, parent in list(module.named_modules()):
        for child_name, child in list(parent.named_children()):
            if child_name in names and isinstance(child, nn.Linear):
                setattr(parent, child_name, LoRALinear(child, rank, alpha))
                replaced.append(f"{parent_name}.{child_name}" if parent_name else child_name)
    if not replaced:
        raise ModelError(f"no nn.Linear named {list(names)} to adapt with LoRA in {type(module).__name__}")
    return replaced
