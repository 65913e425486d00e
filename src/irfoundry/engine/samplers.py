"""Samplers of the run's loaders: seeded training order and evaluation shards that count every image once.

See :mod:`irfoundry.engine.datamodule` for how the loaders use them under DDP (the Trainer is built with
``use_distributed_sampler=False``: these shard themselves).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Sampler

from irfoundry.data import IRSTDDataset
from irfoundry.data.pool import TrainingPool

__all__ = ["CountedDataset", "EpochSeededSampler", "EvalShardSampler"]


class EpochSeededSampler(Sampler[int]):
    """Random order that depends only on ``(seed, epoch)``; ``set_epoch`` also selects the dataset's
    augmentation epoch (items draw from ``default_rng([seed, epoch, index])``).

    Lightning calls ``set_epoch`` before every training epoch (also after ``--resume``), so a resumed run
    sees exactly the batches and crops an uninterrupted one would.

    With ``num_replicas > 1`` (DDP) every process draws the same permutation, extends it by wrap-around
    to a multiple of ``num_replicas`` (so all processes run the same number of steps; at most
    ``num_replicas - 1`` images are seen twice per epoch) and takes positions ``rank, rank + W, ...``.
    ``num_replicas=1`` yields the permutation itself. With a training ``pool`` the permutation is of the
    pool's members (an image keeps its dataset index, hence its crops' seeds, whether or not others are in).
    """

    def __init__(self, dataset: IRSTDDataset, seed: int, num_replicas: int = 1, rank: int = 0,
                 pool: TrainingPool | None = None) -> None:
        _check_rank(num_replicas, rank)
        self.dataset = dataset
        #: draw from these dataset indices only (read when the loader is built / iterated), else all
        self.pool = pool
        self.seed = int(seed)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.epoch = 0
        self._skip: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.dataset.set_epoch(epoch)

    def skip_in_epoch(self, epoch: int, n_samples: int) -> None:
        """Make the next pass over ``epoch`` start after its first ``n_samples`` (of this process): the
        part of the epoch a resumed run already trained on. Also selects ``epoch``."""
        self.set_epoch(epoch)
        self._skip = (int(epoch), int(n_samples)) if n_samples > 0 else None

    def _indices(self) -> list[int]:
        return self.pool.indices() if self.pool is not None else list(range(len(self.dataset)))

    def __len__(self) -> int:
        return -(-len(self._indices()) // self.num_replicas)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        indices = self._indices()
        order = [indices[i] for i in torch.randperm(len(indices), generator=g).tolist()]
        if self.num_replicas > 1:
            total = len(self) * self.num_replicas
            order = [order[i % len(order)] for i in range(total)][self.rank :: self.num_replicas]
        skip, self._skip = self._skip, None
        start = skip[1] if skip is not None and skip[0] == self.epoch else 0
        return iter(order[start:])


class EvalShardSampler(Sampler[tuple[int, bool]]):
    """Shard of an evaluation set in which every image is counted exactly once over all processes.

    Yields ``(index, counted)`` keys for :class:`CountedDataset`: process ``rank`` gets images
    ``rank, rank + W, ...`` with ``counted=True``, then repeats of its own first image with
    ``counted=False`` until every process has ``ceil(n / W)`` items. Equal lengths keep the processes in
    step (DDP synchronises module buffers on the first forward after training; a rank with fewer batches
    would leave the others waiting), and the flag keeps the repeats out of the metric.
    """

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0) -> None:
        _check_rank(num_replicas, rank)
        self.n, self.num_replicas, self.rank = int(n), int(num_replicas), int(rank)

    def __len__(self) -> int:
        return -(-self.n // self.num_replicas) if self.n else 0

    def __iter__(self):
        own = list(range(self.rank, self.n, self.num_replicas))
        fill = own[0] if own else 0  # a rank past the end of a tiny split re-reads image 0, uncounted
        keys = [(i, True) for i in own] + [(fill, False)] * (len(self) - len(own))
        return iter(keys)


class CountedDataset(Dataset):
    """Wraps an evaluation dataset for :class:`EvalShardSampler`: ``ds[(index, counted)]`` is
    ``ds.dataset[index]`` plus the ``counted`` flag."""

    def __init__(self, dataset: IRSTDDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, bool]) -> dict:
        index, counted = key
        return {**self.dataset[index], "counted": bool(counted)}


def _check_rank(num_replicas: int, rank: int) -> None:
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}")
