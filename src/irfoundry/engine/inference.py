"""The one inference path: normalise -> pad -> forward -> sigmoid -> crop back, at native resolution.

Validation (every branch of a method), ``irfoundry eval``, ``irfoundry predict`` and label updates on full
training images all go through these functions, so they can never disagree:

* :func:`padded_canvas` is the padding policy (the one place it lives): where a ``h x w`` image sits on
  the canvas the network sees. ``multiple`` (default): bottom / right zero padding (of the normalised image)
  up to the next multiple of the model's ``input_multiple``, none when already divisible. This is the
  reference codes' policy: BasicIRSTD and LESPS ``utils.PadImg`` pad a side to ``(h // 32 + 1) * 32`` only
  ``if not h % 32 == 0``, after ``Normalized``, and test.py crops the prediction back to ``[:h, :w]``
  (checked end to end: ``benchmarks/reference_parity.py``, ``docs/results/reference_parity.md``). Nothing
  is ever resized.
* :func:`pad_collate` pads full images of any sizes into one batch (image, and ground truth / targets) and
  records each image's box on the canvas; :func:`probabilities` runs a network on a padded batch and crops
  every probability map back to its box.
* :class:`Predictor` carries a network with its normalisation, input multiple and padding policy: raw
  ``[0, 1]`` images in, probability maps out; :meth:`Predictor.from_checkpoint` builds one from a weights
  file or run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from irfoundry.data.collate import collate
from irfoundry.errors import ConfigError
from irfoundry.models.base import input_multiple, main_output

__all__ = ["BACKENDS", "PADDING_POLICIES", "Predictor", "crop", "pad_collate", "padded_canvas", "probabilities"]

#: padding policies of :func:`padded_canvas`
PADDING_POLICIES = ("multiple",)
#: what runs the network: PyTorch eager, or ONNX Runtime on an exported file
BACKENDS = ("torch", "onnx")

#: item keys holding ``C x H x W`` maps at the image's size, padded with the image
SPATIAL_KEYS = ("image", "mask", "target")

Box = tuple[int, int, int, int]
"""``(top, left, height, width)`` of an image on the padded canvas."""


def padded_canvas(h: int, w: int, multiple: int, policy: str = "multiple") -> tuple[int, int, int, int]:
    """``(H, W, top, left)``: the canvas a ``h x w`` image is padded to and where the image sits on it."""
    if policy not in PADDING_POLICIES:
        raise ConfigError(f"padding policy {policy!r} is not one of {', '.join(PADDING_POLICIES)}")
    if multiple < 1:
        raise ConfigError(f"input multiple must be positive, got {multiple}")
    return -(-h // multiple) * multiple, -(-w // multiple) * multiple, 0, 0


def pad_collate(items: Sequence[dict], *, multiple: int, policy: str = "multiple") -> dict:
    """Full images of any sizes -> one batch: every :data:`SPATIAL_KEYS` map padded (zeros) onto a common
    canvas (the largest image's, by ``policy``), ``box`` the ``(top, left, h, w)`` of each image on it and
    ``size`` its native ``(h, w)``; every other key collated by :func:`irfoundry.data.collate`."""
    sizes = [tuple(int(v) for v in it["image"].shape[-2:]) for it in items]
    H = W = 0
    boxes: list[Box] = []
    for h, w in sizes:
        ch, cw, top, left = padded_canvas(h, w, multiple, policy)
        H, W = max(H, ch), max(W, cw)
        boxes.append((top, left, h, w))

    def pad(t: Tensor, box: Box) -> Tensor:
        top, left, h, w = box
        return F.pad(t, (left, W - left - w, top, H - top - h))

    padded = []
    for it, box in zip(items, boxes):
        q = dict(it)
        for k in SPATIAL_KEYS:
            if k in q:
                q[k] = pad(q[k], box)
        q["size"] = (box[2], box[3])
        q["box"] = box
        padded.append(q)
    return collate(padded)


def crop(x: Tensor, box: Box) -> Tensor:
    """The ``box`` of the last two dims of ``x`` (undoes :func:`pad_collate`)."""
    top, left, h, w = (int(v) for v in box)
    return x[..., top : top + h, left : left + w]


def probabilities(fn: Callable[[Tensor], Tensor], images: Tensor, boxes: Sequence[Box]) -> list[Tensor]:
    """Run ``fn`` (normalised padded images ``B x C x H x W`` -> logits, or a deep-supervision list) and
    return each image's probability map ``h x w`` (float32, the main output, cropped back to its box)."""
    # the sigmoid of the whole padded batch, then the crop (a sigmoid of strided views may differ in the
    # last bit: vectorised and scalar kernels round differently)
    probs = torch.sigmoid(main_output(fn(images)).detach().float())
    return [crop(probs[i, 0], box) for i, box in enumerate(boxes)]


class Predictor:
    """A network with what running it needs: normalisation, input multiple, padding policy, device.

    Args:
        fn: ``B x C x H x W`` normalised images -> logits (a model, or a method's branch).
        norm: ``{"mean", "std"}`` in [0, 1] units (the run's train-split statistics).
        multiple: the network's input multiple (default: ``fn.input_multiple`` or 32).
        padding: padding policy (:data:`PADDING_POLICIES`).
        device: where ``fn`` runs.
        module: the module ``fn`` belongs to when it may be in training mode (a method's branch during
            training): it is put in eval mode for every prediction and back afterwards, so BatchNorm uses
            (and keeps) its running statistics and dropout is off, as in validation.
    """

    def __init__(
        self,
        fn: Callable[[Tensor], Tensor],
        *,
        norm: Mapping[str, float],
        multiple: int | None = None,
        padding: str = "multiple",
        device: str | torch.device = "cpu",
        module: torch.nn.Module | None = None,
    ) -> None:
        padded_canvas(1, 1, multiple or 1, padding)  # checks the policy
        self.fn = fn
        self.module = module
        self.norm = {"mean": float(norm["mean"]), "std": float(norm["std"])}
        self.multiple = int(multiple or input_multiple(fn))
        self.padding = padding
        self.device = torch.device(device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, which: str = "best", *, device: str = "cpu",
                        padding: str = "multiple", norm: str | None = None,
                        backend: str | None = None) -> tuple["Predictor", dict]:
        """A predictor of a weights file, run folder or exported ``.onnx`` file, and its metadata.

        ``norm``: statistics replacing the stored ones (``MEAN,STD`` on 0-255 grey or a preset). ``backend``:
        ``torch`` or ``onnx`` (ONNX Runtime, :class:`irfoundry.deploy.onnx.OnnxNetwork`); by default ``onnx``
        for a ``.onnx`` file, else ``torch``. The ONNX file's own padding policy and input multiple are used.
        """
        is_onnx = Path(path).suffix.lower() == ".onnx"
        backend = backend or ("onnx" if is_onnx else "torch")
        if backend not in BACKENDS:
            raise ConfigError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
        if backend == "onnx" and not is_onnx:
            raise ConfigError(f"--backend onnx runs an exported .onnx file, and {path} is not one: write it with "
                              f"'irfoundry export --checkpoint {path} --format onnx --out model.onnx'")
        if backend == "torch" and is_onnx:
            raise ConfigError(f"{path} is an ONNX file: it runs with --backend onnx (ONNX Runtime), not torch")
        if is_onnx:
            from irfoundry.data.norm_presets import parse_norm
            from irfoundry.deploy.onnx import OnnxNetwork, read_onnx_meta

            meta = {**read_onnx_meta(path), "file": str(path), "backend": "onnx"}
            if norm is not None:
                given = parse_norm(norm)
                meta["norm"], meta["norm_source"] = {"mean": given["mean"], "std": given["std"]}, given["source"]
            net = OnnxNetwork(path)
            return cls(net, norm=meta["norm"], multiple=meta["input_multiple"], padding=meta["padding"]), meta
        from irfoundry.engine.runs import load_checkpoint

        model, meta = load_checkpoint(path, which, norm=norm)
        model = model.to(device).eval()
        meta["backend"] = "torch"
        return cls(model, norm=meta["norm"], multiple=input_multiple(model), padding=padding, device=device), meta

    def normalise(self, image: np.ndarray) -> Tensor:
        """``float32 H x W`` in [0, 1] -> ``1 x H x W`` normalised as the training images were."""
        x = (np.asarray(image, dtype=np.float32) - np.float32(self.norm["mean"])) / np.float32(self.norm["std"])
        return torch.from_numpy(np.ascontiguousarray(x))[None]

    def collate(self, items: Sequence[dict]) -> dict:
        """:func:`pad_collate` with this predictor's multiple and policy (a DataLoader ``collate_fn``)."""
        return pad_collate(items, multiple=self.multiple, policy=self.padding)

    @torch.no_grad()
    def batch_probabilities(self, batch: Mapping) -> list[Tensor]:
        """Probability maps (``h x w`` each, on the CPU) of a :meth:`collate` d batch, in eval mode."""
        was = self.module.training if self.module is not None else None
        if self.module is not None:
            self.module.eval()
        try:
            probs = probabilities(self.fn, batch["image"].to(self.device), batch["box"])
        finally:
            if was:
                self.module.train()
        return [p.cpu() for p in probs]

    def predict(self, image: np.ndarray) -> np.ndarray:
        """One raw image (``float32 H x W`` in [0, 1]) -> its probability map ``float32 H x W``."""
        batch = self.collate([{"image": self.normalise(image)}])
        return self.batch_probabilities(batch)[0].numpy()
