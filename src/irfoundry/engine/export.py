"""``export(checkpoint, out)``: the deployable network of a run, alone, as safetensors + JSON.

Every method's checkpoints already hold only what ships (:meth:`~irfoundry.methods.Method.export_model`:
for FDEP the host, without SAMF or the frozen foundation model). Export turns a run folder or weights
file into one self-describing file for deployment: it reloads the network strictly (so a file with any
extra key, e.g. fusion or foundation weights, is refused), writes its weights with the metadata a
predictor needs (model name and arguments, the train-split normalisation) and the provenance of the run
(method, foundation identity incl. weights sha256, epoch, validation metrics, git revision), and reports
its parameters and MACs, which equal the plain host's.

``format="onnx"`` writes the same network as an ONNX graph (dynamic batch, height, width) with the
normalisation, input multiple, padding policy and detection threshold in its metadata
(:mod:`irfoundry.deploy.onnx`); the export is refused unless ONNX Runtime reproduces PyTorch's
probabilities within 1e-4.
"""

from __future__ import annotations

from pathlib import Path

from irfoundry.engine.runs import load_checkpoint
from irfoundry.errors import CheckpointError, ConfigError
from irfoundry.models.checkpoint import save_weights, sidecar_path
from irfoundry.models.base import input_multiple
from irfoundry.models.complexity import complexity

#: what ``export`` writes
FORMATS = ("safetensors", "onnx")

#: metadata keys of the run checkpoint carried into the exported file as provenance
PROVENANCE = ("config", "data", "method", "epoch", "metrics", "git_revision", "role", "monitor")


def export(checkpoint: str | Path, out: str | Path, which: str = "best", overwrite: bool = False,
           norm: str | None = None, format: str = "safetensors", threshold: float = 0.5,
           exporter: str = "torchscript") -> dict:
    """Write the deployable network of ``checkpoint`` (run folder or ``.safetensors``) to ``out``.

    Args:
        checkpoint: a run folder (uses ``which``, falling back to ``last``) or a weights file.
        out: target path; the suffix (``.safetensors`` / ``.onnx``) is added if missing. For safetensors
            ``out.json`` is written beside it; an ONNX file carries its metadata inside.
        which: ``best`` (selected on validation) or ``last``.
        overwrite: replace an existing ``out``; by default an existing file is an error and nothing is written.
        format: :data:`FORMATS`.
        threshold: the detection threshold stored with the model (``predict`` uses it unless told otherwise).
        exporter: ONNX only: ``torchscript`` (default) or ``dynamo`` (:mod:`irfoundry.deploy.onnx`).

    Returns:
        ``{"out", "format", "model", "params", "macs", "source"}`` (MACs at ``1 x C x 256 x 256``), for ONNX
        also ``parity_max_abs_diff``.
    """
    if format not in FORMATS:
        raise ConfigError(f"export format {format!r} is not one of {', '.join(FORMATS)}")
    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold must lie in (0, 1), got {threshold}")
    out = Path(out)
    suffix = "." + format
    if out.suffix != suffix:
        out = out.with_suffix(suffix)
    taken = out.exists() or (format == "safetensors" and sidecar_path(out).exists())
    if not overwrite and taken:
        raise CheckpointError(f"{out} already exists; choose another --out or pass --overwrite (nothing was written)")
    model, meta = load_checkpoint(checkpoint, which, norm=norm)
    size = complexity(model, (1, int(getattr(model, "model_kwargs", {}).get("in_chans", 1)), 256, 256))
    extra = {
        "norm": meta["norm"],
        **({"norm_source": meta["norm_source"]} if meta.get("norm_source") else {}),
        "exported_from": meta["file"],
        "complexity_at_256": size,
        "threshold": float(threshold),
        "provenance": {k: meta[k] for k in PROVENANCE if k in meta},
    }
    result = {"out": str(out), "format": format, "model": meta.get("model_name", ""), **size, "source": meta["file"]}
    if format == "onnx":
        from irfoundry.deploy.onnx import export_onnx

        doc = export_onnx(model, out, {"model_name": meta.get("model_name", ""),
                                       "model_kwargs": meta.get("model_kwargs", {}), **extra,
                                       "input_multiple": input_multiple(model), "padding": "multiple"},
                          exporter=exporter)
        return {**result, "parity_max_abs_diff": doc["parity_max_abs_diff"]}
    save_weights(model, out, extra=extra)
    return result
