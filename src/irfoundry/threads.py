"""How many CPU threads torch uses: chosen deliberately, never left to collapse on a shared machine.

PyTorch's default is one thread per core. On a small machine that is the worst choice as soon as anything
else runs: on the 2-core development VM two evaluations side by side took 155 s each with 2 threads and
24 s each with 1 (reported in issue 17). irfoundry therefore picks, for ``train``, ``eval``, ``predict``
and ``quickstart``:

1. ``--threads N`` / ``trainer.threads: N`` when given;
2. else the ``OMP_NUM_THREADS`` environment variable when set (the user's explicit choice, which torch
   already follows);
3. else half the logical CPUs, at least 1 (1 on a 2-core machine): the machine can run one more job of the
   same size without oversubscription. What a lone job gives up, measured on the idle 2-core VM:
   ``irfoundry quickstart --epochs 5`` took 53.5 s with 1 thread and 41.4 s with ``--threads 2``.

The thread count changes the order of floating-point sums, so runs with different counts differ in their
last bits and, through training, in their numbers; with one count they are the same whatever the load.

The count actually used is recorded with every run and evaluation (``torch_threads``).
"""

from __future__ import annotations

import os

import torch

from irfoundry.errors import ConfigError

__all__ = ["default_threads", "use_threads"]


def default_threads() -> int:
    """The count rule 2-3 of the module docstring gives."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ConfigError(f"OMP_NUM_THREADS={env!r} is not a number of threads; unset it or give an integer") from None
    return max(1, (os.cpu_count() or 2) // 2)


def use_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count (``None``: :func:`default_threads`); returns the count used."""
    n = default_threads() if threads is None else int(threads)
    if n < 1:
        raise ConfigError(f"threads must be a positive number, got {threads!r}")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
