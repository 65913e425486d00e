"""ONNX export of the deployable network and an ONNX Runtime backend for the one inference path.

:func:`export_onnx` writes the network that ships (the host alone, as :func:`irfoundry.engine.export.export`
writes it in safetensors) as an ONNX graph with dynamic batch, height and width: ``image`` (``B x C x H x W``
normalised, padded to the input multiple) -> ``logits`` (``B x 1 x H x W``, the main output; deep
supervision heads are not exported). Everything a predictor needs beside the graph travels in the model's
metadata under the key ``irfoundry`` (JSON, :func:`read_onnx_meta`): the train-split normalisation, the
input multiple, the padding policy, the detection threshold, the model name and arguments, parameters and
MACs, and the provenance of the run. Export checks its own file: ONNX Runtime must reproduce PyTorch's
probabilities within :data:`PARITY_TOLERANCE` at two input sizes, else the file is removed and the export
refused (the measured difference is stored as ``parity_max_abs_diff``).

:class:`OnnxNetwork` is an ONNX Runtime session behind the callable a :class:`~irfoundry.engine.inference.
Predictor` runs (normalised padded images -> logits), so the sigmoid, padding and cropping are the same
code for both backends and ``predict`` / ``eval`` can never disagree between them beyond the graph's own
float rounding. Needs the ``onnx`` extra (``pip install irfoundry[onnx]``: onnx + onnxruntime).

The graph is written by PyTorch's TorchScript-based exporter (``exporter="torchscript"``, opset 17, a
second per host) by default; ``exporter="dynamo"`` uses ``torch.export`` (needs onnxscript, about a minute
per host on a 2-core CPU). Both pass the parity check for every registered host.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from irfoundry.errors import CheckpointError, ConfigError
from irfoundry.models.base import main_output

__all__ = ["EXPORTERS", "META_KEY", "OnnxNetwork", "PARITY_TOLERANCE", "export_onnx", "read_onnx_meta"]

#: metadata_props key holding the JSON a predictor needs
META_KEY = "irfoundry"
#: largest accepted |p_onnx - p_torch| over the export's probe inputs
PARITY_TOLERANCE = 1e-4
EXPORTERS = ("torchscript", "dynamo")
OPSET = 17


def _require_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(f"ONNX export and the onnx backend need the onnx extra ({exc}): "
                          "pip install 'irfoundry[onnx]'") from None
    return onnx, onnxruntime


class _MainOutput(nn.Module):
    """The exported graph: ``model(x)``'s main output (logits), deep supervision dropped."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return main_output(self.model(x))


def _write_graph(model: nn.Module, path: Path, in_chans: int, multiple: int, exporter: str) -> None:
    sample = torch.zeros(2, in_chans, 2 * multiple, 3 * multiple)
    wrapped = _MainOutput(model).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python branches, deprecations
        if exporter == "torchscript":
            torch.onnx.export(wrapped, (sample,), str(path), input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                            "logits": {0: "batch", 2: "height", 3: "width"}},
                              opset_version=OPSET, dynamo=False)
        else:
            dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
            torch.onnx.export(wrapped, (sample,), str(path), input_names=["image"], output_names=["logits"],
                              dynamic_shapes={"x": dims}, dynamo=True, verbose=False)


def _parity(model: nn.Module, network: "OnnxNetwork", in_chans: int, multiple: int) -> float:
    """max |sigmoid(onnx) - sigmoid(torch)| on two seeded inputs of different batch and size."""
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for b, h, w in ((1, 4 * multiple, 3 * multiple), (3, 2 * multiple, 5 * multiple)):
        x = torch.randn(b, in_chans, h, w, generator=gen)
        with torch.no_grad():
            ref = torch.sigmoid(main_output(model(x)).float())
        got = torch.sigmoid(network(x).float())
        if got.shape != ref.shape:
            raise CheckpointError(f"the ONNX graph gives {tuple(got.shape)} for {tuple(x.shape)}, PyTorch "
                                  f"{tuple(ref.shape)}: its dynamic axes are wrong")
        worst = max(worst, float((got - ref).abs().max()))
    return worst


def export_onnx(model: nn.Module, out: str | os.PathLike, meta: Mapping, *, exporter: str = "torchscript") -> dict:
    """Write ``model`` (eval mode) to ``out`` (``.onnx``) with ``meta`` in its metadata; check parity.

    Args:
        model: the deployable network (``B x C x H x W`` normalised images -> logits or a list of them).
        out: the ``.onnx`` path (overwritten: the caller decides about existing files).
        meta: JSON-serialisable metadata; must hold ``norm``, ``input_multiple``, ``padding``, ``threshold``.
        exporter: :data:`EXPORTERS`.

    Returns:
        ``meta`` plus ``parity_max_abs_diff`` (probabilities, float32), ``opset``, ``exporter``.
    """
    onnx, _ = _require_onnx()
    if getattr(model, "onnx_refusal", None):
        raise ConfigError(f"{meta.get('model_name', type(model).__name__)} is not exported to ONNX: {model.onnx_refusal}")
    if exporter not in EXPORTERS:
        raise ConfigError(f"ONNX exporter {exporter!r} is not one of {', '.join(EXPORTERS)}")
    missing = [k for k in ("norm", "input_multiple", "padding", "threshold") if k not in meta]
    if missing:
        raise ConfigError(f"ONNX metadata lacks {', '.join(missing)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    in_chans = int(getattr(model, "model_kwargs", {}).get("in_chans", 1))
    multiple = int(meta["input_multiple"])
    _write_graph(model, out, in_chans, multiple, exporter)
    doc = {**meta, "in_chans": in_chans, "opset": OPSET if exporter == "torchscript" else None, "exporter": exporter}
    try:
        diff = _parity(model, OnnxNetwork(out, threads=None), in_chans, multiple)
        if not diff <= PARITY_TOLERANCE:
            raise CheckpointError(f"ONNX Runtime's probabilities differ from PyTorch's by {diff:.2e} (> "
                                  f"{PARITY_TOLERANCE:g}) for {meta.get('model_name', 'this model')}: the export "
                                  f"is refused and {out} removed; try exporter='dynamo' or report the host")
        doc["parity_max_abs_diff"] = diff
        graph = onnx.load(str(out))
        del graph.metadata_props[:]
        entry = graph.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(doc, sort_keys=True, default=str)
        graph.producer_name = "irfoundry"
        onnx.checker.check_model(graph)
        onnx.save(graph, str(out))
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return doc


def read_onnx_meta(path: str | os.PathLike) -> dict:
    """The ``irfoundry`` metadata of an exported ``.onnx`` file (refuses files without it)."""
    onnx, _ = _require_onnx()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX file {path} does not exist")
    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError / ValueError / OSError on corrupt files
        raise CheckpointError(f"cannot read {path}: not an ONNX model, or corrupt ({type(exc).__name__}: {exc})") from None
    props = {p.key: p.value for p in graph.metadata_props}
    if META_KEY not in props:
        raise CheckpointError(f"{path} carries no '{META_KEY}' metadata (normalisation, input multiple, threshold): "
                              "export it with 'irfoundry export --format onnx'")
    return json.loads(props[META_KEY])


class OnnxNetwork:
    """An ONNX Runtime session as a network: ``B x C x H x W`` float tensor -> logits tensor (on the CPU).

    Args:
        path: an exported ``.onnx`` file.
        threads: ONNX Runtime intra-op threads (default: torch's current thread count, so both backends run
            on the same cores; ``None`` lets ONNX Runtime decide).
        providers: execution providers (default: CUDA first when ONNX Runtime offers it, then CPU).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None | str = "torch",
                 providers: list[str] | None = None) -> None:
        _, ort = _require_onnx()
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads == "torch":
            threads = torch.get_num_threads()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:
            raise CheckpointError(f"ONNX Runtime cannot load {path} ({type(exc).__name__}: {exc})") from None
        self.path = Path(path)
        self.input_name = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()

    def __call__(self, x: Tensor) -> Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: arr})[0])
