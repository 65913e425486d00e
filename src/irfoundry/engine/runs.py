"""Finding and loading what a run produced: a weights file, or a run folder holding ``best`` / ``last``."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from irfoundry.errors import CheckpointError
from irfoundry.models.checkpoint import load_weights, read_weights_meta


#: Lightning trainer state (optimiser, epoch, callbacks, method state) for --resume, inside the run folder
RESUME_CKPT = "state/resume.ckpt"


def resolve_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A ``.safetensors`` file itself, or ``RUN_DIR/{which}.safetensors`` (falling back to ``last``)."""
    path = Path(path)
    if path.is_dir():
        for name in (which, "last"):
            cand = path / f"{name}.safetensors"
            if cand.is_file():
                return cand
        raise CheckpointError(_why_no_weights(path, which))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (give a .safetensors file or a run folder)")
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path} is not a .safetensors file; import reference checkpoints first with "
            "'irfoundry models import FILE --model NAME --out X.safetensors'"
        )
    return path


def _why_no_weights(run_dir: Path, which: str) -> str:
    """The message for a folder without weights: what it is, and what to do."""
    head = f"run folder {run_dir} holds no {which}.safetensors or last.safetensors"
    if not (run_dir / "config.yaml").is_file():
        return f"{head}, nor a config.yaml: it is not a run folder of 'irfoundry train' (give a .safetensors file)"
    if (run_dir / RESUME_CKPT).is_file():
        return (f"{head}: its training was interrupted before weights were written; continue it with "
                f"'irfoundry train --resume {run_dir}'")
    return (f"{head}: its training stopped before the end of its first epoch (see {run_dir / 'logs'}); "
            "train it again")


def load_checkpoint(path: str | Path, which: str = "best", norm: str | None = None) -> tuple[nn.Module, dict]:
    """Model (eval mode) and metadata of a checkpoint or run folder.

    The metadata always has ``norm`` (``{"mean", "std"}`` in [0, 1] units): the statistics stored with the
    weights, or ``norm`` (``MEAN,STD`` on 0-255 grey or a preset, :func:`irfoundry.data.norm_presets.
    parse_norm`), which replaces them (``meta["norm_source"]`` says which). Weights without statistics and
    no ``norm`` are refused: run with the wrong statistics they print a wrong number silently.
    """
    from irfoundry.data.norm_presets import parse_norm

    given = parse_norm(norm) if norm is not None else None
    file = resolve_checkpoint(path, which)
    meta = read_weights_meta(file)
    if given is not None:
        meta["norm"] = {"mean": given["mean"], "std": given["std"]}
        meta["norm_source"] = given["source"]
    elif "norm" not in meta:
        raise CheckpointError(
            f"{file} carries no normalisation statistics (an imported reference checkpoint?); give the ones it was "
            "trained with: --norm MEAN,STD (0-255 grey) or a preset such as sirst3 / nuaa-sirst / nudt-sirst, or "
            "store them once with 'irfoundry models import ... --norm'"
        )
    model = load_weights(file).eval()
    meta["file"] = str(file)
    return model, meta
