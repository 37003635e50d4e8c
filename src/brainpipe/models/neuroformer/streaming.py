"""Neuroformer pretraining from token windows streamed through an on-disk store, with bounded memory.

A window holds its current and past token sequences (``block_size + past_block_size`` neuron IDs and as many dt
tokens, int64), its modalities and its target, so the windows of a long recording (or of many sessions) take many
times the memory of the counts they come from. With ``neuroformer.pretrain.streaming.enabled`` the train and
validation windows are tokenised ``chunk_windows`` at a time (:meth:`SpikeTokenizer.transform` with ``starts``),
written to a zarr store of named arrays under the job's temporary folder
(:func:`brainpipe.training.streaming.write_examples`) and trained from it
(:class:`~brainpipe.training.streaming.ZarrExamples`: at most ``cache_chunks`` chunks in memory; with ``shuffle:
global`` the in-memory fit's batches, so the same weights bit for bit). The store is removed afterwards, also on
failure. The counts themselves stay in memory (bins x units), and the test windows are not tokenised here.

Fine-tuning streams the same way (``neuroformer.finetune.streaming``; :func:`window_store`, used by
:meth:`Neuroformer.fit_behaviour`): the labelled train windows go through a store, and only the validation windows
in use and a chunk at a time of the others are tokenised in memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.data.contracts import SPLIT_FLAGS

__all__ = ["STREAMING_DEFAULTS", "TENSOR_NAMES", "check_streaming", "streamed_windows", "window_store"]

#: the arrays of a window in the order of the training tuple (:meth:`Windows.tensors`)
TENSOR_NAMES = ("cur_id", "cur_dt", "past_id", "past_dt", "modality", "target")
#: ``neuroformer.pretrain.streaming`` settings and their defaults
STREAMING_DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "chunk_windows": 1024,
    "cache_chunks": 2,
    "shuffle": "chunks",
}


def check_streaming(streaming: Mapping[str, Any] | None, source: str = "neuroformer.pretrain.streaming"):
    """The resolved streaming settings, or None when streaming is off.

    Parameters
    ----------
    streaming : mapping or None
        ``enabled``, ``chunk_windows``, ``cache_chunks``, ``shuffle`` (missing keys take
        :data:`STREAMING_DEFAULTS`).
    source : str
        The settings' name in error messages.

    Returns
    -------
    dict or None
        Every setting, or None when ``enabled`` is false or ``streaming`` is empty.

    Raises
    ------
    brainpipe.errors.ConfigError
        An unknown key or a value out of range (one line naming it).
    """
    from brainpipe.training.streaming import streaming_settings

    return streaming_settings(streaming, STREAMING_DEFAULTS, source)


@contextmanager
def window_store(take, idx: np.ndarray, settings: Mapping[str, Any] | None) -> Iterator[Any]:
    """The training tuples of windows ``idx`` of a window source, in memory or through a temporary zarr store.

    Parameters
    ----------
    take : WindowSource
        The windows (:class:`~brainpipe.models.neuroformer.finetune.WindowSource`, its training target set).
    idx : numpy.ndarray
        The windows to train on, in order (repeats allowed).
    settings : mapping or None
        Resolved streaming settings (:func:`check_streaming`); None: the windows' tensors in memory.

    Yields
    ------
    tuple of torch.Tensor or ZarrExamples
        The tensors, or a :class:`~brainpipe.training.streaming.ZarrExamples` over the store (removed on exit,
        also on failure).
    """
    if settings is None:
        yield take(idx).tensors()
        return
    from brainpipe.training.streaming import ZarrExamples, write_examples

    chunk = int(settings["chunk_windows"])
    blocks = ({n: getattr(w, n) for n in TENSOR_NAMES} for w in take.chunks(idx, chunk))
    tmp = Path(tempfile.mkdtemp(prefix="brainpipe-neuroformer-windows-", dir=os.environ.get("TMPDIR")))
    try:
        store = write_examples(blocks, tmp / "train.zarr", chunk)
        yield ZarrExamples(
            store, cache_chunks=settings["cache_chunks"], shuffle=settings["shuffle"], names=TENSOR_NAMES
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _blocks(tokenizer, counts: xr.Dataset, source: str, starts: np.ndarray, size: int, stats: dict):
    """The windows at ``starts``, ``size`` at a time, as named arrays; token statistics summed into ``stats``."""
    for i in range(0, starts.size, size):
        win = tokenizer.transform(counts, source, starts[i : i + size])
        for k, v in tokenizer.stats_.items():
            stats[k] = stats.get(k, 0) + int(v)
        yield {name: getattr(win, name) for name in TENSOR_NAMES}


@contextmanager
def streamed_windows(
    tokenizer, counts: xr.Dataset, source: str, settings: Mapping[str, Any]
) -> Iterator[tuple[Any, Any, dict[str, int]]]:
    """The train and validation windows of ``counts`` as zarr-backed datasets, removed on exit.

    Parameters
    ----------
    tokenizer : SpikeTokenizer
        A fitted tokeniser.
    counts : xarray.Dataset
        The ``spike_counts`` dataset.
    source : str
        Its name in error messages.
    settings : mapping
        Resolved streaming settings (:func:`check_streaming`).

    Yields
    ------
    tuple
        ``(train, validation, stats)``: two :class:`~brainpipe.training.streaming.ZarrExamples` giving the training
        tuple of each window, and the token statistics of the windows written.

    Raises
    ------
    brainpipe.errors.InputError
        No train or no validation window fits inside the split blocks.
    """
    from brainpipe.training.streaming import ZarrExamples, write_examples

    starts = tokenizer.window_starts(counts)
    split = tokenizer.window_splits(counts, starts)
    tokenizer.require_windows(split, source)
    parts = {name: starts[split == SPLIT_FLAGS[name]] for name in ("train", "validation")}
    chunk = int(settings["chunk_windows"])
    tmp = Path(tempfile.mkdtemp(prefix="brainpipe-neuroformer-windows-", dir=os.environ.get("TMPDIR")))
    try:
        stats: dict[str, int] = {}
        stores = {
            name: write_examples(
                _blocks(tokenizer, counts, source, part, chunk, stats), tmp / f"{name}.zarr", chunk
            )
            for name, part in parts.items()
        }
        train = ZarrExamples(
            stores["train"],
            cache_chunks=settings["cache_chunks"],
            shuffle=settings["shuffle"],
            names=TENSOR_NAMES,
        )
        val = ZarrExamples(stores["validation"], cache_chunks=settings["cache_chunks"], names=TENSOR_NAMES)
        yield train, val, stats
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fit_streamed(
    model, counts: xr.Dataset, source: str, settings: Mapping[str, Any], checkpoint, fingerprint, log
):
    """:meth:`Neuroformer.fit` with the windows streamed (:func:`streamed_windows`); returns the fitted ``model``."""
    if not hasattr(model, "tokenizer_"):
        model.tokenizer_ = model._tokenizer().fit(counts, source)
    model.net_ = model._build()
    with streamed_windows(model.tokenizer_, counts, source, settings) as (tr, va, stats):
        model.token_stats_ = stats
        return model._pretrain(tr, va, checkpoint, fingerprint, log)
