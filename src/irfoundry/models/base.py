"""The two-part interface every host network exposes.

A host is an encoder-decoder IRSTD network split into

* ``encode(x) -> list[Tensor]``: the encoder stage features the decoder consumes, shallow to deep.
  Stage ``i`` has ``stage_channels[i]`` channels at stride ``stage_strides[i]``
  (shape ``B x C_i x H / s_i x W / s_i``). The last entry is the bottleneck.
* ``decode(features, input_size) -> Tensor | list[Tensor]``: everything after the encoder.

``forward(x) = decode(encode(x), x.shape[-2:])``. A fusion module can therefore change the bottleneck
(FDEP's SAMF) or every stage (SCAM) between the two calls without editing the host.

Output contract (``Sam.mask_threshold``-style, explicit): logits, never probabilities.

* eval mode: a tensor ``B x 1 x H x W``;
* training mode with deep supervision: a list ``[main, aux_1, ...]`` of ``B x 1 x H x W`` logits,
  the main output first. Hosts without deep supervision return a tensor in both modes.

Deep supervision is decided by ``self.training``, never by a ``mode`` flag.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from irfoundry.errors import ModelError

#: every host accepts inputs whose height and width are multiples of this
INPUT_MULTIPLE = 32


class HostNet(nn.Module):
    """Base class of host networks. Subclasses set ``stage_channels`` / ``stage_strides``
    in ``__init__`` and implement :meth:`encode` and :meth:`decode`."""

    stage_channels: tuple[int, ...] = ()
    stage_strides: tuple[int, ...] = ()
    #: submodules the reference builds but never calls (kept so reference checkpoints load strictly);
    #: they get no gradient, so DDP needs ``find_unused_parameters=True`` for such hosts
    unused_modules: tuple[str, ...] = ()
    #: filled in by :func:`irfoundry.models.create_model`
    model_name: str = ""
    model_kwargs: dict = {}

    @property
    def feature_info(self) -> list[dict]:
        """timm-style description of the encoder stages: ``num_chs``, ``reduction``, ``index``."""
        return [
            {"num_chs": c, "reduction": s, "index": i}
            for i, (c, s) in enumerate(zip(self.stage_channels, self.stage_strides))
        ]

    def encode(self, x: Tensor) -> list[Tensor]:  # pragma: no cover - abstract
        """``B x in_chans x H x W`` -> encoder stage features, shallow to deep."""
        raise NotImplementedError

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor | list[Tensor]:
        """Stage features -> logits ``B x 1 x H x W`` (a list, main first, in training with deep supervision)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        check_input_size(x)
        return self.decode(self.encode(x), (x.shape[-2], x.shape[-1]))


def check_input_size(x: Tensor, multiple: int = INPUT_MULTIPLE) -> None:
    """Raise :class:`ModelError` unless ``x`` is ``B x C x H x W`` with H, W multiples of ``multiple``."""
    if x.dim() != 4:
        raise ModelError(f"expected a B x C x H x W tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ModelError(
            f"input size {h}x{w} is not a multiple of {multiple}; pad it first "
            "(irfoundry.data.transforms.pad_to_multiple does this and crops the output back)"
        )


def main_output(out: Tensor | Sequence[Tensor]) -> Tensor:
    """The main prediction of a host's output (the tensor itself, or the first of a list)."""
    return out if isinstance(out, torch.Tensor) else out[0]


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
