"""Training examples streamed from a chunked on-disk store (zarr), with bounded memory.

A cohort larger than memory is written once, block by block, to a zarr array whose first axis is the example
(:func:`write_examples`: a BrainMAE segment ``roi x time``, a Neuroformer token window), chunked along that axis.
:class:`ZarrExamples` is a map-style torch Dataset over it that keeps at most ``cache_chunks`` decoded chunks in
memory, and gives :func:`brainpipe.training.train` its epoch order through ``epoch_order``: the chunks in a seeded
random order, then the examples of each chunk in a seeded random order, so every batch reads one or two chunks and
memory stays one chunk's worth whatever the cohort's size. With several ranks, each takes its share of each global
batch, so the ranks read the same chunks.

BrainMAE pretraining streams when ``fmri.brainmae.model.streaming.enabled`` is true
(:func:`brainpipe.evaluate.brainmae.pretrain_folds`): the stage opens the ``roi_segments`` file lazily, writes each
fold's training and validation segments, block by block, to stores under the job's temporary folder (removed
afterwards, also on failure) and trains from :class:`ZarrExamples` (``bench/streaming_memory.py --stage``: the
stage's peak memory flat while the cohort grows 10x). ``shuffle="global"`` gives the in-memory loop's order, so a
streamed fit equals the in-memory one bit for bit; the default chunk order gives other batches (a fit as good, not
the same weights).

Batches can be read ahead by DataLoader worker processes (``TrainConfig.num_workers``; the order is still drawn in
the training process, so the result does not change; each worker keeps its own ``cache_chunks``).

Neuroformer pretraining and fine-tuning stream their token windows the same way (``neuroformer.pretrain.streaming``,
``neuroformer.finetune.streaming``; a store of named arrays, :mod:`brainpipe.models.neuroformer.streaming`); its
decoding and next-token scoring read the windows a chunk at a time. Not yet done: BrainMAE's temporal encoder
(sequences of segments) does not stream; Neuroformer's counts (bins x units) are read whole.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainpipe.errors import ConfigError, InputError

__all__ = ["ZarrExamples", "streaming_settings", "write_examples"]


def streaming_settings(
    value: Mapping[str, Any] | None, defaults: Mapping[str, Any], key: str
) -> dict[str, Any] | None:
    """A model's ``streaming`` settings, checked (None when streaming is off), as BrainMAE and Neuroformer take them.

    Parameters
    ----------
    value : mapping or None
        ``enabled`` (bool), the chunk sizes (the integer entries of ``defaults``, each >= 1), ``shuffle``
        ("chunks" or "global", see :class:`ZarrExamples`); missing keys take ``defaults``.
    defaults : mapping
        Every allowed key with its default (``enabled`` false).
    key : str
        The settings' place in the study config, for the messages (e.g. ``fmri.brainmae.model.streaming``).

    Returns
    -------
    dict or None
        The settings, or None when streaming is off (``value`` None or empty, or ``enabled`` false).

    Raises
    ------
    brainpipe.errors.ConfigError
        Not a mapping, an unknown key or a bad value (one line naming ``<key>.<setting>``).
    """
    if value is None or (isinstance(value, Mapping) and not value):
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping ({', '.join(defaults)}); got {value!r}")
    unknown = sorted(set(value) - set(defaults))
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(defaults)})")
    out = {**defaults, **value}
    for k, default in defaults.items():
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(out[k], bool) or not isinstance(out[k], int) or out[k] < 1:
                raise ConfigError(f"{key}.{k} must be an integer >= 1; got {out[k]!r}")
    if out["shuffle"] not in ("chunks", "global"):
        raise ConfigError(f"{key}.shuffle must be 'chunks' or 'global'; got {out['shuffle']!r}")
    return out if out["enabled"] else None


def write_examples(
    blocks: Iterable[np.ndarray | Mapping[str, np.ndarray]],
    path: str | os.PathLike,
    chunk_examples: int = 256,
) -> Path:
    """Write examples to a zarr store chunked along the first axis, one block at a time.

    An example is one array (a BrainMAE segment ``roi x time``: the store is one float32 array) or several named
    arrays (a Neuroformer token window: current and past token ids and times, modality, target: the store is a
    group with one array per name, each keeping its dtype, all chunked alike along the example axis).

    Parameters
    ----------
    blocks : iterable of numpy.ndarray or of mapping of str to numpy.ndarray
        Blocks of examples (``examples x ...``; the same trailing shapes, and the same names, in every block); only
        one block is held at a time.
    path : str or os.PathLike
        The zarr store (a folder) to create; an existing one is replaced.
    chunk_examples : int, default 256
        Examples per chunk.

    Returns
    -------
    pathlib.Path
        The store.

    Raises
    ------
    brainpipe.errors.InputError
        No block; blocks of different trailing shapes or names; named arrays of different lengths in a block.
    """
    import shutil

    import zarr

    out = Path(path)
    if out.exists():
        shutil.rmtree(out)
    arrays: dict[str, Any] | None = None
    named = None
    n = 0
    for block in blocks:
        is_named = isinstance(block, Mapping)
        parts = (
            {k: np.asarray(v) for k, v in block.items()}
            if is_named
            else {"": np.asarray(block, dtype=np.float32)}
        )
        sizes = {len(v) for v in parts.values()}
        if len(sizes) != 1:
            raise InputError(f"{out}: the named arrays of a block differ in length ({sorted(sizes)})")
        if arrays is None:
            named = is_named
            if named:
                group = zarr.open_group(str(out), mode="w")
                arrays = {
                    k: group.create_array(
                        k, shape=(0, *v.shape[1:]), chunks=(chunk_examples, *v.shape[1:]), dtype=v.dtype
                    )
                    for k, v in parts.items()
                }
            else:
                v = parts[""]
                arrays = {
                    "": zarr.open_array(
                        str(out),
                        mode="w",
                        shape=(0, *v.shape[1:]),
                        chunks=(chunk_examples, *v.shape[1:]),
                        dtype="float32",
                    )
                }
        elif is_named != named or set(parts) != set(arrays):
            raise InputError(f"{out}: a block with arrays {sorted(parts)} after blocks with {sorted(arrays)}")
        m = sizes.pop()
        for k, v in parts.items():
            arr = arrays[k]
            if tuple(v.shape[1:]) != tuple(arr.shape[1:]):
                raise InputError(
                    f"{out}: a block of examples of shape {v.shape[1:]} after blocks of {tuple(arr.shape[1:])}"
                    + (f" (array {k!r})" if k else "")
                )
            arr.resize((n + m, *arr.shape[1:]))
            arr[n : n + m] = v
        n += m
    if arrays is None:
        raise InputError(f"{out}: no examples to write")
    return out


class ZarrExamples(torch.utils.data.Dataset):
    """The examples of a zarr store (first axis), read chunk by chunk with at most ``cache_chunks`` in memory.

    An example is a tensor (a store of one array) or a tuple of tensors in ``names`` order (a group of named
    arrays, as :func:`write_examples` writes several), which the default collate stacks field by field.

    Parameters
    ----------
    path : str or os.PathLike
        The zarr store (see :func:`write_examples`).
    cache_chunks : int, default 2
        Decoded chunks kept in memory (least recently used dropped first).
    shuffle : {"chunks", "global"}, default "chunks"
        The epoch order: ``"chunks"`` shuffles the chunks, then the examples within each (one or two chunk reads a
        batch); ``"global"`` is the in-memory loop's ``torch.randperm`` over all examples (the same batches as an
        in-memory fit with the same seed, so bit-identical results, but a batch reads up to ``batch_size`` chunks:
        for checks and small stores).
    names : iterable of str, optional
        For a store of named arrays: which, in the order of the example tuple (default: every array, by name).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        cache_chunks: int = 2,
        shuffle: str = "chunks",
        names: Iterable[str] | None = None,
    ):
        import zarr

        if shuffle not in ("chunks", "global"):
            raise ValueError(f"ZarrExamples: shuffle must be 'chunks' or 'global', got {shuffle!r}")
        self.shuffle = shuffle

        self.path = Path(path)
        try:
            node = zarr.open(str(self.path), mode="r")
        except Exception as err:  # noqa: BLE001 - any unreadable store gets the same one-line message
            raise InputError(f"{self.path}: not a readable zarr array ({type(err).__name__})") from None
        if isinstance(node, zarr.Group):
            self.names = tuple(names) if names is not None else tuple(sorted(node.array_keys()))
            missing = [k for k in self.names if k not in set(node.array_keys())]
            if not self.names or missing:
                raise InputError(
                    f"{self.path}: the store has no array {missing[0] if missing else ''!r}"
                    f" (it has: {', '.join(sorted(node.array_keys())) or 'none'})"
                )
            self.arrays = [node[k] for k in self.names]
            lengths = {int(a.shape[0]) for a in self.arrays}
            if len(lengths) != 1 or len({int(a.chunks[0]) for a in self.arrays}) != 1:
                raise InputError(
                    f"{self.path}: its arrays differ in length or chunking along the example axis"
                )
        else:
            self.names = None
            self.arrays = [node]
        self.array = self.arrays[0]
        self.chunk = int(self.array.chunks[0])
        self.cache_chunks = max(1, int(cache_chunks))
        self._cache: OrderedDict[int, list[np.ndarray]] = OrderedDict()
        self.reads = 0

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def _chunk(self, c: int) -> list[np.ndarray]:
        if c in self._cache:
            self._cache.move_to_end(c)
            return self._cache[c]
        rows = slice(c * self.chunk, (c + 1) * self.chunk)
        data = [np.asarray(a[rows]) for a in self.arrays]
        self.reads += 1
        self._cache[c] = data
        while len(self._cache) > self.cache_chunks:
            self._cache.popitem(last=False)
        return data

    def __getitem__(self, i: int) -> torch.Tensor | tuple[torch.Tensor, ...]:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(i)
        rows = self._chunk(i // self.chunk)
        items = tuple(torch.from_numpy(r[i % self.chunk].copy()) for r in rows)
        return items if self.names is not None else items[0]

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        """The order of one epoch: chunks shuffled, then the examples within each chunk.

        With ``shuffle="global"``: a permutation of all examples, as the in-memory loop draws it.

        Parameters
        ----------
        generator : torch.Generator
            The epoch's seeded generator.

        Returns
        -------
        torch.Tensor
            A permutation of ``range(len(self))``.
        """
        n = len(self)
        if self.shuffle == "global":
            return torch.randperm(n, generator=generator)
        n_chunks = -(-n // self.chunk)
        parts = []
        for c in torch.randperm(n_chunks, generator=generator).tolist():
            size = min(self.chunk, n - c * self.chunk)
            parts.append(c * self.chunk + torch.randperm(size, generator=generator))
        return torch.cat(parts)
