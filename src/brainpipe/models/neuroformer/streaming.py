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
from brainpipe.errors import InputError

__all__ = ["STREAMING_DEFAULTS", "TENSOR_NAMES", "check_streaming", "streamed_windows"]

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
    split = np.asarray(counts["split"].values)[starts] if starts.size else np.zeros(0, np.int8)
    parts = {name: starts[split == SPLIT_FLAGS[name]] for name in ("train", "validation")}
    for name, part in parts.items():
        if part.size == 0:
            raise InputError(
                f"{source}: no {name} window ({starts.size} windows of {tokenizer.window_s} s after a past of "
                f"{tokenizer.past_window_s} s fit inside the split blocks); use shorter windows or fewer split blocks"
            )
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
