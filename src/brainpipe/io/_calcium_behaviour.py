"""Behaviour variables of a calcium recording, on their own clock (``behaviour(behaviour_time, behaviour_var)``).

Two sources: the NWB ophys reader takes the behaviour time series of the file's processing modules (the spike
reader's :func:`brainpipe.io._nwb._behaviour`, reused); any calcium reader takes an explicit table through the
option ``behaviour: path`` (:func:`read_behaviour_table`: a CSV/TSV with a ``time_s`` column and one column per
variable, or an ``.npz`` with a ``time_s`` array and one 1-D array per variable, read without pickles), which
replaces what the file carries. Part of :mod:`brainpipe.io.calcium`, which re-exports its public names.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import xarray as xr

from brainpipe.io._assemble import behaviour_block
from brainpipe.io._calcium_checks import LOG, _fail

#: the time column (seconds) of a behaviour table
TIME_COLUMN = "time_s"
_TODO_TIME = f"give a '{TIME_COLUMN}' column (seconds) and one numeric column per behaviour variable"


def _table_columns(p: Path) -> dict[str, np.ndarray]:
    """Column name -> values (float64) of a CSV/TSV behaviour table."""
    import pandas as pd

    sep = "\t" if p.suffix.lower() in (".tsv", ".tab") else ","
    try:
        df = pd.read_csv(p, sep=sep)
    except pd.errors.EmptyDataError:
        raise _fail(p, "behaviour table is empty", _TODO_TIME) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise _fail(p, f"behaviour table cannot be parsed ({str(err).splitlines()[0]})", _TODO_TIME) from None
    out = {}
    for c in df.columns:
        col = pd.to_numeric(df[c], errors="coerce")
        bad = col.isna() & df[c].notna()
        if bad.any():
            k = int(np.flatnonzero(bad.to_numpy())[0])
            raise _fail(
                p,
                f"behaviour column {str(c)!r} is not numeric (row {k + 1}: {df[c].iloc[k]!r})",
                "store numbers only (code categories as 0/1 columns)",
            )
        out[str(c)] = col.to_numpy(dtype=np.float64)
    return out


def _npz_columns(p: Path) -> dict[str, np.ndarray]:
    """Array name -> values of an ``.npz`` behaviour table (no pickles)."""
    try:
        with np.load(p, allow_pickle=False) as z:
            out = {}
            for k in z.files:
                try:
                    a = z[k]
                except ValueError:  # an object array: loading it would unpickle
                    raise _fail(
                        p,
                        f"array {k!r} holds Python objects, which only unpickling could read",
                        "save numeric arrays (brainpipe never unpickles files)",
                    ) from None
                if a.dtype.kind not in "biuf":
                    raise _fail(p, f"array {k!r} has dtype {a.dtype}, not numbers", "save numeric arrays")
                if a.ndim != 1:
                    raise _fail(p, f"array {k!r} has shape {a.shape}", "save one 1-D array per variable")
                out[k] = a.astype(np.float64)
            return out
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise _fail(p, f"is not a readable .npz archive ({err})", "save it with numpy.savez") from None


def read_behaviour_table(path) -> dict:
    """Read a behaviour table: a ``time_s`` column (s from the recording's first frame, strictly increasing) and one
    numeric column per variable.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` or ``.tsv`` (``.tab``) file with a header row, or an ``.npz`` archive of 1-D arrays of equal
        length (read with ``allow_pickle=False``).

    Returns
    -------
    dict
        ``time`` (T,), ``values`` (T, V), ``names`` (V variable names) and ``units`` ("1" each).

    Raises
    ------
    brainpipe.errors.InputError
        A missing or unreadable file, no ``time_s`` column, no variable, non-numeric values, columns of different
        lengths, NaN values, or times that are not finite and strictly increasing: one line naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise _fail(
            p,
            "behaviour table not found" if not p.exists() else "is a folder, not a behaviour table",
            "set options.behaviour to a .csv/.tsv/.npz file with a 'time_s' column",
        )
    cols = _npz_columns(p) if p.suffix.lower() == ".npz" else _table_columns(p)
    if TIME_COLUMN not in cols:
        raise _fail(
            p, f"behaviour table has no {TIME_COLUMN!r} column (has: {', '.join(cols) or 'none'})", _TODO_TIME
        )
    t = cols.pop(TIME_COLUMN)
    if not cols:
        raise _fail(p, "behaviour table has a time column but no variable", _TODO_TIME)
    lengths = {k: v.size for k, v in cols.items() if v.size != t.size}
    if lengths:
        k, n = next(iter(lengths.items()))
        raise _fail(
            p,
            f"behaviour variable {k!r} has {n} samples for {t.size} times",
            f"give every variable one value per '{TIME_COLUMN}'",
        )
    if t.size == 0:
        raise _fail(p, "behaviour table has no rows", "give one row per behaviour sample")
    return behaviour_block(p, t, np.column_stack(list(cols.values())), list(cols), "1")


def with_behaviour(ds: xr.Dataset, block: dict | None, source) -> xr.Dataset:
    """``ds`` with the behaviour block as ``behaviour(behaviour_time, behaviour_var)`` (replacing any it had).

    Parameters
    ----------
    ds : xarray.Dataset
        A ``calcium_traces`` dataset.
    block : dict or None
        ``time``, ``values``, ``names``, ``units`` (:func:`read_behaviour_table`, or the NWB reader's); None: ``ds``
        unchanged.
    source : str or os.PathLike
        Where the behaviour came from (logged; the dataset's ``behaviour_source`` attribute).

    Returns
    -------
    xarray.Dataset
        The traces with the behaviour variables; a warning is logged when the behaviour's clock covers less than
        half of the recording.
    """
    if block is None:
        return ds
    out = ds.drop_vars(["behaviour", "behaviour_time", "behaviour_var"], errors="ignore")
    t = np.asarray(block["time"], dtype=np.float64)
    units = sorted(set(block["units"]))
    out["behaviour"] = xr.DataArray(
        np.asarray(block["values"], dtype=np.float64),
        dims=("behaviour_time", "behaviour_var"),
        coords={
            "behaviour_time": ("behaviour_time", t, {"units": "s", "long_name": "behaviour sample time"}),
            "behaviour_var": ("behaviour_var", np.array(block["names"], dtype=object)),
        },
        attrs={"long_name": "behaviour", "units": units[0] if len(units) == 1 else "mixed"},
    )
    out.attrs["behaviour_source"] = str(source)
    tt = np.asarray(ds["time"].values, dtype=np.float64)
    if tt.size > 1 and t.size > 1:
        covered = max(0.0, min(t[-1], tt[-1]) - max(t[0], tt[0])) / max(tt[-1] - tt[0], 1e-12)
        if covered < 0.5:
            LOG.warning(
                "%s: the behaviour (%.6g..%.6g s) covers %.0f %% of the recording (%.6g..%.6g s)",
                source,
                t[0],
                t[-1],
                100 * covered,
                tt[0],
                tt[-1],
            )
    return out
