"""Streamed BrainMAE pretraining (cohorts larger than memory): ``roi_segments`` opened lazily, each fold's
segments written block by block to zarr stores and trained from there."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr

from brainpipe.errors import InputError
from brainpipe.models.brainmae import BrainMAE

log_ = logging.getLogger("brainpipe.evaluate.brainmae")


# ---- streamed segments (cohorts larger than memory) -------------------------------------------------------------
def open_segments(path: str | Path, lazy: bool = False) -> xr.Dataset:
    """Open a ``roi_segments`` file, whole (:func:`brainpipe.data.read`) or with ``signal`` left on disk.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``roi_segments`` netCDF file.
    lazy : bool, default False
        Leave ``signal`` on disk (xarray's lazy indexing through h5netcdf: a slice of segments reads only those);
        the contract is checked on everything else, the finiteness of ``signal`` where its segments are read
        (:class:`_LazySignal`). Close the dataset when done.

    Returns
    -------
    xarray.Dataset
        The validated dataset.

    Raises
    ------
    brainpipe.errors.InputError
        The file cannot be read (one line naming it), or its ``signal`` is not (segment, lag, roi).
    brainpipe.errors.ContractError
        The dataset violates its contract.
    """
    from brainpipe.data import contracts
    from brainpipe.data.io import open_dataset, read
    from brainpipe.errors import ContractError

    if not lazy:
        return read(path, "roi_segments")
    try:
        ds = xr.open_dataset(path, engine="h5netcdf", decode_times={"time": False})
    except Exception:  # noqa: BLE001 - the eager opener's one-line message says why
        open_dataset(path)  # raises InputError naming the file and the cause
        raise
    if "signal" not in ds or ds["signal"].dims != ("segment", "lag", "roi"):
        dims = ds["signal"].dims if "signal" in ds else None
        ds.close()
        raise InputError(f"{path}: roi_segments needs variable 'signal' (segment, lag, roi); got {dims}")
    missing = "variable 'signal' is missing"
    problems = [
        p for p in contracts.check(ds.drop_vars("signal"), "roi_segments") if not p.startswith(missing)
    ]
    if problems:
        ds.close()
        raise ContractError(str(path), problems)
    return ds


class _LazySignal:
    """``signal`` of a lazily opened ``roi_segments`` dataset: ``X[mask]`` reads those segments (float32)."""

    def __init__(self, ds: xr.Dataset, source: str):
        self.var, self.source = ds["signal"], source
        self.shape = tuple(int(n) for n in self.var.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.sort(rows.astype(np.int64))
        out = np.asarray(self.var.isel(segment=rows).values, dtype=np.float32)
        if not np.isfinite(out).all():
            raise InputError(
                f"{self.source}: variable 'signal' has NaN or infinite values (rule: finite values; mask or drop bad "
                "samples): run clean_fmri again"
            )
        return out

    def blocks(self, rows: np.ndarray, size: int):
        """The segments ``rows`` (sorted indices) in blocks of ``size``, one block in memory at a time."""
        for start in range(0, len(rows), size):
            yield self[rows[start : start + size]]


def _streamed_fit(model: BrainMAE, X: _LazySignal, tr, va, stream: dict, **fit_kw) -> BrainMAE:
    """Fit ``model`` on the segments ``tr``, early-stopped on ``va``, both streamed from zarr stores under the
    temporary folder (``TMPDIR``: the job's), removed afterwards, also on failure."""
    import shutil
    import tempfile

    from brainpipe.training.streaming import ZarrExamples, write_examples

    folder = tempfile.mkdtemp(prefix="brainmae-stream-")
    try:
        store = write_examples(
            X.blocks(np.flatnonzero(tr), stream["chunk_segments"]),
            Path(folder) / "train.zarr",
            chunk_examples=stream["chunk_segments"],
        )
        data = ZarrExamples(store, cache_chunks=stream["cache_chunks"], shuffle=stream["shuffle"])
        val = None
        if va.any():  # read in order, batch by batch (the loop's validation pass)
            val_store = write_examples(
                X.blocks(np.flatnonzero(va), stream["chunk_segments"]),
                Path(folder) / "validation.zarr",
                chunk_examples=stream["chunk_segments"],
            )
            val = ZarrExamples(val_store, cache_chunks=stream["cache_chunks"])
        return model.fit(data, val, **fit_kw)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
