"""A method's other evaluation branches after training (a teacher, a fused branch).

The run's ``best.safetensors`` holds the deployable network alone. When a method validates more than one
branch (:meth:`~irfoundry.methods.Method.eval_branches`: semantic-prior KD's teacher, FDEP's fused branch),
the checkpointing also writes every weight of the method at the same selected epoch to
``RUN/best_method.safetensors`` (:func:`save_method_weights`; frozen foundations hold no state in it).
:func:`branch_predictor` rebuilds the method from the run's ``config.yaml``, loads that file strictly and
predicts with the named branch through the one inference path, so ``irfoundry eval --branch teacher`` and a
study's teacher rows score it exactly like the deployable network: same checkpoint selection (on
validation), test images at native resolution.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from irfoundry.errors import CheckpointError, ConfigError

#: the method's weights at the ``best`` checkpoint (methods with more than one evaluation branch)
METHOD_WEIGHTS = "best_method.safetensors"


def save_method_weights(method: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Every tensor of ``method.state_dict()`` to a safetensors file (contiguous CPU copies)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in method.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def branch_predictor(run_dir: str | Path, branch: str, *, device: str = "cpu", norm: str | None = None):
    """``(Predictor, meta)`` of branch ``branch`` of the run in ``run_dir`` at its ``best`` checkpoint.

    Raises:
        ConfigError: not a run folder, or no such branch (the message lists them).
        CheckpointError: no :data:`METHOD_WEIGHTS` (a method with one branch, or an older run), or a file that
            does not fit the rebuilt method.
    """
    from safetensors.torch import load_file

    from irfoundry.data.dataset import load_norm_stats
    from irfoundry.data.norm_presets import parse_norm
    from irfoundry.engine.config import from_dict, read_yaml
    from irfoundry.engine.inference import Predictor
    from irfoundry.methods import build_method
    from irfoundry.methods.context import BuildEnv
    from irfoundry.models import create_model, input_multiple

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"--branch {branch} needs a run folder (with config.yaml), got {run_dir}")
    cfg = from_dict(read_yaml(run_dir / "config.yaml"))
    stats = load_norm_stats(run_dir / "norm.json")
    source = None
    if norm is not None:
        given = parse_norm(norm)
        stats, source = {"mean": given["mean"], "std": given["std"]}, given["source"]
    host = create_model(cfg.model.name, in_chans=cfg.model.in_chans, **cfg.model.kwargs)
    method = build_method(cfg.method, host, BuildEnv(norm=stats))
    branches = method.eval_branches()
    if branch not in branches:
        raise ConfigError(f"method {cfg.method.name!r} has the branches {', '.join(branches)}, not {branch!r}")
    path = run_dir / METHOD_WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: the run kept no weights of its branches besides the "
                              "deployable one (methods with one branch, or runs before this file existed)")
    try:
        method.load_state_dict(load_file(str(path)), strict=True)
    except (RuntimeError, OSError) as exc:
        raise CheckpointError(f"{path} does not fit method {cfg.method.name!r} of {run_dir}/config.yaml ({exc})") from None
    method = method.to(device).eval()
    meta = {"file": str(path), "norm": stats, "model_name": f"{cfg.model.name}:{branch}", "branch": branch,
            "backend": "torch", **({"norm_source": source} if source else {})}
    with torch.no_grad():
        return Predictor(method.eval_branches()[branch], norm=stats, multiple=input_multiple(host), device=device,
                         module=method), meta
