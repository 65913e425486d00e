"""``export(checkpoint, out)``: the deployable network of a run, alone, as safetensors + JSON.

Every method's checkpoints already hold only what ships (:meth:`~irfoundry.methods.Method.export_model`:
for FDEP the host, without SAMF or the frozen foundation model). Export turns a run folder or weights
file into one self-describing file for deployment: it reloads the network strictly (so a file with any
extra key, e.g. fusion or foundation weights, is refused), writes its weights with the metadata a
predictor needs (model name and arguments, the train-split normalisation) and the provenance of the run
(method, foundation identity incl. weights sha256, epoch, validation metrics, git revision), and reports
its parameters and MACs, which equal the plain host's.
"""

from __future__ import annotations

from pathlib import Path

from irfoundry.engine.runs import load_checkpoint
from irfoundry.errors import CheckpointError
from irfoundry.models.checkpoint import save_weights, sidecar_path
from irfoundry.models.complexity import complexity

#: metadata keys of the run checkpoint carried into the exported file as provenance
PROVENANCE = ("config", "data", "method", "epoch", "metrics", "git_revision", "role", "monitor")


def export(checkpoint: str | Path, out: str | Path, which: str = "best", overwrite: bool = False,
           norm: str | None = None) -> dict:
    """Write the deployable network of ``checkpoint`` (run folder or ``.safetensors``) to ``out``.

    Args:
        checkpoint: a run folder (uses ``which``, falling back to ``last``) or a weights file.
        out: target ``.safetensors`` path (the suffix is added if missing); ``out.json`` is written beside it.
        which: ``best`` (selected on validation) or ``last``.
        overwrite: replace an existing ``out``; by default an existing file is an error and nothing is written.

    Returns:
        ``{"out", "model", "params", "macs", "source"}`` (MACs at ``1 x C x 256 x 256``).
    """
    out = Path(out)
    if out.suffix != ".safetensors":
        out = out.with_suffix(".safetensors")
    if not overwrite and (out.exists() or sidecar_path(out).exists()):
        raise CheckpointError(f"{out} already exists; choose another --out or pass --overwrite (nothing was written)")
    model, meta = load_checkpoint(checkpoint, which, norm=norm)
    size = complexity(model, (1, int(getattr(model, "model_kwargs", {}).get("in_chans", 1)), 256, 256))
    extra = {
        "norm": meta["norm"],
        **({"norm_source": meta["norm_source"]} if meta.get("norm_source") else {}),
        "exported_from": meta["file"],
        "complexity_at_256": size,
        "provenance": {k: meta[k] for k in PROVENANCE if k in meta},
    }
    save_weights(model, out, extra=extra)
    return {"out": str(out), "model": meta.get("model_name", ""), **size, "source": meta["file"]}
