"""The affinity tensor as a chunked zarr store (the ``affinity_tensor`` contract), written window chunk by window
chunk so memory stays bounded; the tensor itself comes from :mod:`brainpipe.preprocess.affinity`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from brainpipe.data import contracts as _c
from brainpipe.data.atomic import atomic_output
from brainpipe.data.io import stamp
from brainpipe.errors import ContractError
from brainpipe.preprocess.affinity import Alignment, AnimalTraces, tensor_chunks, tensor_dataset


def write_tensor_zarr(
    path: str | os.PathLike,
    animals: Sequence[AnimalTraces],
    provenance: Mapping[str, Any],
    affinity: str = "softthresh_dcorr",
    params: Mapping[str, Any] | None = None,
    window_s: float = 5.0,
    stride_s: float = 2.5,
    memory_mb: float = 256.0,
    alignment: Alignment | None = None,
) -> Path:
    """Build the tensor window chunk by window chunk and append each to a zarr store (memory bounded by about
    ``memory_mb``); validated against the ``affinity_tensor`` contract chunk by chunk; written to a temporary
    sibling and renamed into place, so a failure leaves nothing under ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The zarr store to write (zarr format 2, consolidated metadata).
    animals : sequence of AnimalTraces
        The recordings (one frame rate).
    provenance : mapping
        The provenance stamped on the store (:func:`brainpipe.data.make_provenance`).
    affinity : str
        A name in :data:`brainpipe.preprocess.affinity.AFFINITIES`.
    params : mapping, optional
        The affinity's parameters.
    window_s, stride_s : float
        Window length and stride in seconds.
    memory_mb : float
        Memory budget of one window chunk.
    alignment : Alignment, optional
        How the animals were put on one frame rate and one set of neurons
        (:func:`brainpipe.preprocess.affinity.align_animals`): its attributes and per-animal variables
        (``animal_frame_rate_hz``, ``animal_n_neurons``, ...) are stored with the tensor.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    attrs = {"affinity": affinity, "window_s": float(window_s), "stride_s": float(stride_s)}
    if alignment is not None:
        attrs.update(alignment.attrs())
    with atomic_output(path) as tmp:
        first = True
        for meta, win, chunk in tensor_chunks(
            animals, affinity, params or {}, window_s, stride_s, memory_mb=memory_mb
        ):
            ds = tensor_dataset(meta, win, chunk, [a.name for a in animals], attrs)
            if alignment is not None:
                ds = ds.assign(alignment.variables())
            ds = stamp(ds, "affinity_tensor", provenance)
            problems = _c.check(ds, "affinity_tensor")
            if problems:
                raise ContractError(str(path), problems)
            enc = (
                {"affinity": {"chunks": (chunk.shape[0], chunk.shape[1], chunk.shape[2])}} if first else None
            )
            if first:
                ds.to_zarr(tmp, mode="w", encoding=enc, consolidated=True, zarr_format=2)
                first = False
            else:
                fixed = [
                    v for v in ds.variables if "window" not in ds[v].dims
                ]  # written with the first chunk
                ds.drop_vars(fixed).to_zarr(tmp, append_dim="window", consolidated=True, zarr_format=2)
    return path
