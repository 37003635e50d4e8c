"""Calcium traces from plain arrays: ``.npy``, ``.csv`` and HDF5 (:func:`read_array`, formats ``npy``, ``csv``,
``hdf5``).

Part of :mod:`brainpipe.io.calcium`, which re-exports its public names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.io._calcium_checks import _check_rate, _fail, _labels_var, _load_npy, _sidecar_rate, _traces
from brainpipe.io._common import hdf5_error, require_file


@fill_doc
def read_array(
    path, frame_rate_hz: float | None = None, key: str | None = None, neuropil_key: str | None = None
) -> xr.Dataset:
    """Read a plain (time, neuron) array: ``.npy``, ``.csv`` (header row of cell names optional) or HDF5.

    The JSON sidecar (``<file>.json`` or ``<stem>.json``) may give ``frame_rate_hz`` and neuron ``"labels"`` (one
    per column). Cells without a CSV header are named ``n000``, ``n001``, ...

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` (loaded without pickle), ``.csv`` or ``.h5``/``.hdf5`` file.
    %(frame_rate_hz)s
    key : str, optional
        The (time, neuron) dataset of an HDF5 file (None: its first dataset).
    neuropil_key : str, optional
        A (time, neuron) neuropil dataset of an HDF5 file, kept as ``neuropil``.

    %(calcium_traces_returns)s

    %(reader_raises)s
    """
    p = require_file(path, "calcium array file")
    neuropil = None
    cells = None
    suffix = p.suffix.lower()
    if suffix == ".npy":
        F = _load_npy(p, "calcium array (time x neuron)")
    elif suffix == ".csv":
        F, cells = _read_csv(p)
    elif suffix in (".h5", ".hdf5"):
        F, neuropil = _read_hdf5(p, key, neuropil_key)
    else:
        raise _fail(p, f"unknown array format {suffix!r}", "use .npy, .csv or .h5/.hdf5 (time x neuron)")
    if F.ndim != 2:
        raise _fail(
            p, f"has shape {F.shape}, expected (time, neuron)", "save a 2-D array, one column per neuron"
        )
    rate = frame_rate_hz
    sidecars = [p.with_suffix(p.suffix + ".json"), p.with_suffix(".json")]
    if rate is None:
        rate, _ = _sidecar_rate(sidecars)
    if rate is None:
        raise _fail(
            p,
            "no frame rate (none in the config, no JSON sidecar with frame_rate_hz)",
            "set frame_rate_hz for this dataset",
        )
    rate = _check_rate(rate, p)
    cells = cells or [f"n{i:03d}" for i in range(F.shape[1])]
    labels = _sidecar_labels(sidecars, F.shape[1])
    return _traces(F.astype(np.float64), rate, cells, f"array:{p}", neuropil, labels)


def _sidecar_labels(paths: list[Path], n_cells: int) -> dict | None:
    """``"labels"`` of the first JSON sidecar that exists (one per column, "" or null: unlabelled), as variables."""
    for sc in paths:
        if sc.is_file():
            try:
                data = json.loads(sc.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise _fail(
                    sc, f"sidecar is not valid JSON ({' '.join(str(err).split())})", "fix or remove it"
                ) from None
            if not isinstance(data, dict) or "labels" not in data:
                return None
            labels = data["labels"]
            if not isinstance(labels, list) or len(labels) != n_cells:
                raise _fail(
                    sc,
                    f"'labels' is not a list of {n_cells} labels (one per column)",
                    'write "labels": [one text per column, "" for an unlabelled one]',
                )
            return {"label": _labels_var(sc, labels)}
    return None


def _read_csv(p: Path) -> tuple[np.ndarray, list[str]]:
    import pandas as pd

    try:
        df = pd.read_csv(p)
        if all(str(c).replace(".", "").replace("-", "").isdigit() for c in df.columns):
            df = pd.read_csv(p, header=None)
    except pd.errors.EmptyDataError:
        raise _fail(p, "holds no table (no header row, no values)", "give a time x neuron table") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise _fail(
            p,
            f"cannot be read as a CSV table ({type(err).__name__}: {' '.join(str(err).split())[:120]})",
            "give a comma-separated time x neuron table",
        ) from None
    if df.shape[0] == 0:
        raise _fail(
            p,
            f"holds no frames (a header row of {df.shape[1]} column(s) and no values)",
            "give one row per frame",
        )
    bad = [str(c) for c in df.columns if df[c].dtype.kind not in "biuf"]
    if bad:
        raise _fail(
            p,
            f"column(s) {', '.join(bad[:5])} hold non-numeric values",
            "give numbers only (one column per neuron, an optional header row of names)",
        )
    return df.to_numpy(dtype=np.float64), [str(c) for c in df.columns]


def _read_hdf5(p: Path, key, neuropil_key):
    import h5py

    try:
        fh = h5py.File(p, "r")
    except (OSError, RuntimeError) as err:  # h5py: not HDF5, truncated, damaged
        raise hdf5_error(p, err, "an HDF5 file") from None
    with fh:

        def dataset(k, option):
            obj = fh.get(k) if k is not None else None
            if not isinstance(obj, h5py.Dataset):
                raise _fail(
                    p,
                    f"no dataset {k!r} in the HDF5 file",
                    f"set options.{option} to the (time, neuron) dataset",
                )
            if obj.dtype.kind not in "biuf":
                raise _fail(
                    p,
                    f"dataset {k!r} holds {obj.dtype} values, not numbers",
                    "store a numeric (time, neuron) array",
                )
            try:
                return np.asarray(obj[()], dtype=np.float64)
            except (OSError, RuntimeError) as err:
                raise hdf5_error(p, err, "an HDF5 file") from None

        k = key or next((n for n in fh if isinstance(fh[n], h5py.Dataset)), None)
        F = dataset(k, "key")
        neuropil = dataset(neuropil_key, "neuropil_key") if neuropil_key else None
    return F, neuropil
