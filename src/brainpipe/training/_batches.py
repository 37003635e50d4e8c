"""The batches of one epoch of :func:`brainpipe.training.train`, read in the training process or ahead of it by
DataLoader worker processes (``TrainConfig.num_workers``).

The epoch's order is always drawn in the training process (a seeded permutation, or a streamed store's chunk order),
so the batches, and therefore the result, are the same with any number of workers; workers only move reading and
collating (for a zarr store: disk reads and decoding) off the training step. Each worker keeps its own chunk cache,
so memory grows with ``num_workers x cache_chunks`` chunks, still independent of the cohort's size.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from typing import Any

import torch

from brainpipe.errors import InputError


class _Tensors:
    """A tuple of tensors with equal first dimension, indexed by a tensor of indices in one gather."""

    def __init__(self, tensors: tuple[torch.Tensor, ...]):
        n = {int(t.shape[0]) for t in tensors}
        if len(n) != 1:
            raise InputError(f"training data: tensors differ in their first dimension ({sorted(n)})")
        self.tensors = tensors
        self.n = n.pop()

    def __len__(self) -> int:
        return self.n

    def take(self, idx: torch.Tensor):
        out = tuple(t[idx] for t in self.tensors)
        return out if len(out) > 1 else out[0]


def source(data, collate_fn: Callable | None):
    """The training source of ``data`` and its collate function (None for tensors, gathered in one ``take``)."""
    if isinstance(data, torch.Tensor):
        return _Tensors((data,)), None
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        return _Tensors(tuple(data)), None
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise InputError("training data must be a tensor, a tuple of tensors or a torch Dataset")
    collate = collate_fn or torch.utils.data.default_collate
    return data, collate


def fetch(src, collate: Callable | None, idx: torch.Tensor):
    """The batch of examples ``idx`` of a training source (tensors: ``take``; a dataset: ``collate`` of items)."""
    if collate is None:
        return src.take(idx)
    return collate([src[int(i)] for i in idx])


class _Fetch(torch.utils.data.Dataset):
    """A DataLoader dataset whose items are whole batches: item ``idx`` (an index tensor) is :func:`fetch`'s batch."""

    def __init__(self, src, collate: Callable | None):
        self.src, self.collate = src, collate

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, idx: torch.Tensor):
        return fetch(self.src, self.collate, idx)


def epoch_batches(
    src,
    collate: Callable | None,
    perm: torch.Tensor,
    batch_size: int,
    first: int,
    n_batches: int,
    num_workers: int = 0,
    shard: Callable[[torch.Tensor], tuple[torch.Tensor, float]] | None = None,
    pin_memory: bool = False,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, float, Any]]:
    """The batches ``first .. n_batches - 1`` of an epoch whose example order is ``perm``.

    Parameters
    ----------
    src : object
        The training source (``take``-able tensors, or a dataset with ``collate``).
    collate : callable or None
        Builds a batch from a dataset's items; None for tensors.
    perm : torch.Tensor
        The epoch's example order.
    batch_size : int
        Examples per (global) batch.
    first : int
        The first batch to give (a resumed epoch starts where it stopped).
    n_batches : int
        Batches in the epoch.
    num_workers : int, default 0
        DataLoader worker processes reading ahead (0: read in this process, one batch at a time).
    shard : callable, optional
        ``shard(idx) -> (local idx, weight)``: this rank's part of a global batch (data-parallel training).
    pin_memory : bool, default False
        Pin the batches' memory (for copies to a CUDA device).

    Yields
    ------
    tuple
        ``(batch number, global indices, local indices, weight, batch)``; without ``shard`` the local indices are
        the global ones and the weight is 1.
    """
    plan = []
    for b in range(first, n_batches):
        idx = perm[b * batch_size : (b + 1) * batch_size]
        local, weight = shard(idx) if shard is not None else (idx, 1.0)
        plan.append((b, idx, local, weight))
    if num_workers <= 0 or not plan:
        for b, idx, local, weight in plan:
            yield b, idx, local, weight, fetch(src, collate, local)
        return
    loader = torch.utils.data.DataLoader(
        _Fetch(src, collate),
        batch_size=None,  # every sampler item is a whole batch's index tensor
        sampler=[local for _, _, local, _ in plan],
        num_workers=num_workers,
        pin_memory=pin_memory,
        # the workers' base seed from a generator of their own: drawing it from torch's global generator would
        # shift the training's random stream (dropout, masks) and change the result
        generator=torch.Generator().manual_seed(0),
        # fork where there is one: the source and collate function need not be picklable
        multiprocessing_context="fork" if "fork" in multiprocessing.get_all_start_methods() else None,
    )
    for (b, idx, local, weight), batch in zip(plan, loader, strict=True):
        yield b, idx, local, weight, batch
