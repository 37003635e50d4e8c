"""fMRI from ROI tables (``.csv``/``.tsv``/``.1D``/``.npy``/``.txt``): one table, a folder of them and the ``table``
reader (:func:`iter_tables`).

Part of :mod:`brainpipe.io.fmri`, which re-exports its public names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.io._common import load_npy, oneline, require_file
from brainpipe.io._fmri_common import (
    LOG,
    TABLE_SUFFIXES,
    bids_entities,
    fail,
    find_participants,
    read_participants,
    run_dataset,
)
from brainpipe.io._fmri_nifti import resolve_tr, sidecar_path


# ---- ROI tables ---------------------------------------------------------------------------------------------------
@fill_doc
def read_table(
    path: str | os.PathLike,
    repetition_time_s: float | None,
    roi_names: Sequence[str] | None = None,
    confound_columns: Sequence[str] = (),
    drop_columns: Sequence[str] = (),
    participant: Mapping[str, Any] | None = None,
    repetition_time_from: str = "check",
) -> xr.Dataset:
    """Read an ROI table (time x ROI) as one ``roi_timeseries`` run.

    The TR comes from the table's JSON sidecar (``<stem>.json`` with ``RepetitionTime``, BIDS) and/or
    ``repetition_time_s`` (:func:`resolve_tr`); without either it is an error.

    Parameters
    ----------
    path : str or os.PathLike
        A CSV/TSV with a header row of ROI names, an AFNI ``.1D`` (whitespace, ``#`` comments, no header), or an
        ``.npy`` (2D float array; loaded without pickle).
    %(repetition_time_s)s
    %(table_columns)s
    %(participant)s
    %(repetition_time_from)s

    %(roi_run_returns)s

    %(reader_raises)s
    """
    import pandas as pd

    p = require_file(path, "ROI table")
    repetition_time_s = resolve_tr(p, repetition_time_s, repetition_time_from)
    if repetition_time_s is None:
        raise fail(
            p,
            f"repetition time (TR) is missing (no sidecar {sidecar_path(p).name} with RepetitionTime)",
            "add the BIDS sidecar, or set 'repetition_time_s' for this dataset in the config",
        )
    suf = p.suffix.lower()
    if suf == ".npy":
        arr = load_npy(p, "ROI table (.npy)", "biuf", "save a plain 2D float array (time x ROI)")
        if arr.ndim != 2 or arr.dtype.kind not in "biuf":
            raise fail(p, f"holds a {arr.ndim}D {arr.dtype} array", "save a 2D float array (time x ROI)")
        names = _table_names(p, roi_names, arr.shape[1])
        df = pd.DataFrame(arr.astype(np.float64), columns=names)
    elif suf in (".1d", ".txt"):
        try:
            arr = np.loadtxt(p, comments="#", ndmin=2)
        except (ValueError, UnicodeDecodeError) as err:
            raise fail(
                p,
                f"is not a numeric whitespace table ({' '.join(str(err).split())[:120]})",
                "write one row per volume, one column per ROI",
            ) from None
        names = _table_names(p, roi_names, arr.shape[1])
        df = pd.DataFrame(arr, columns=names)
    elif suf in (".csv", ".tsv"):
        try:
            df = pd.read_csv(p, sep="\t" if suf == ".tsv" else ",", na_values=["n/a"])
        except (
            ValueError,
            OSError,
        ) as err:  # EmptyDataError, ParserError, UnicodeDecodeError are ValueErrors
            raise fail(
                p,
                f"cannot be read as a table ({type(err).__name__}: {oneline(err)})",
                "write a CSV/TSV with a header row of ROI names",
            ) from None
        if df.shape[0] == 0:
            raise fail(
                p, f"has no rows (no volumes; a header of {df.shape[1]} column(s))", "give one row per volume"
            )
        nonnum = [c for c in df.columns if df[c].dtype.kind not in "fiu" and c not in drop_columns]
        if nonnum:
            raise fail(
                p,
                f"column(s) {', '.join(map(str, nonnum[:5]))} are not numeric",
                "remove them or list them in 'drop_columns'",
            )
        if roi_names:
            if len(roi_names) != df.shape[1]:
                raise fail(
                    p,
                    f"has {df.shape[1]} columns but {len(roi_names)} ROI names are configured",
                    "fix 'roi_names'",
                )
            df.columns = list(roi_names)
    else:
        raise fail(p, f"unknown ROI table type '{p.suffix}'", f"use one of {', '.join(TABLE_SUFFIXES)}")
    if df.shape[0] == 0:
        raise fail(p, f"has no rows (no volumes; {df.shape[1]} column(s))", "give one row per volume")
    missing = [c for c in list(confound_columns) + list(drop_columns) if c not in df.columns]
    if missing:
        raise fail(
            p,
            f"has no column(s) {', '.join(missing)}",
            "fix 'confound_columns'/'drop_columns' for this dataset",
        )
    conf = df[list(confound_columns)].to_numpy(np.float64) if confound_columns else None
    rois = df.drop(columns=list(confound_columns) + list(drop_columns))
    if rois.shape[1] == 0:
        raise fail(p, "has no ROI columns left", "check 'confound_columns'/'drop_columns'")
    return run_dataset(
        rois.to_numpy(np.float64),
        [str(c) for c in rois.columns],
        float(repetition_time_s),
        source=p,
        entities=bids_entities(p.name),
        participant=participant,
        confounds=conf,
        confound_names=list(confound_columns),
    )


def _table_names(p: Path, roi_names: Sequence[str] | None, n_cols: int) -> list[str]:
    if not roi_names:
        return [f"roi-{k + 1}" for k in range(n_cols)]
    if len(roi_names) != n_cols:
        raise fail(
            p, f"has {n_cols} columns but {len(roi_names)} ROI names are configured", "fix 'roi_names'"
        )
    return list(roi_names)


#: Files of a data folder that are never data: BIDS metadata and documentation (matched case-insensitively on the
#: name without its suffix), hidden files, and JSON sidecars.
NOT_DATA = (
    "participants",
    "readme",
    "changes",
    "license",
    "licence",
    "dataset_description",
    "citation",
    "notes",
)


def _not_data(f: Path) -> bool:
    stem = f.name.split(".")[0].lower()
    return f.name.startswith((".", "_")) or stem in NOT_DATA or f.suffix.lower() == ".json"


def _numeric_line(f: Path) -> str | None:
    """The first data line of a whitespace table when it is not all numbers (a text file), else None."""
    try:
        with open(f, encoding="utf-8", errors="strict") as fh:
            for line in fh:
                text = line.split("#", 1)[0].strip()
                if not text:
                    continue
                try:
                    [float(v) for v in text.split()]
                except ValueError:
                    return text[:40]
                return None
    except (UnicodeDecodeError, OSError):
        return "(not UTF-8 text)"
    return None


def find_tables(path: str | os.PathLike) -> list[Path]:
    """The ROI tables of a dataset: one file, or the data files of a folder, sorted.

    A folder's data files are those with a table suffix (:data:`TABLE_SUFFIXES`) that are not metadata or
    documentation (:data:`NOT_DATA`: ``participants.tsv``, ``README.txt``, ``LICENSE``, ..., hidden files, JSON
    sidecars; skipped, logged). Every other file is checked before any is read, so a stray text file stops the
    ingest at once (nothing written), naming it.

    Parameters
    ----------
    path : str or PathLike
        A table or a folder of tables.

    Returns
    -------
    list of Path
        The tables, sorted by name.

    Raises
    ------
    InputError
        The path does not exist, the folder holds no table, or a ``.txt``/``.1D`` file of the folder is not a
        numeric table (one line naming it: move it out of the data folder).
    """
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise fail(p, "ROI table file or folder does not exist", "check the dataset's 'path'")
    out, skipped = [], []
    for f in sorted(p.iterdir()):
        if not f.is_file() or f.suffix.lower() not in TABLE_SUFFIXES:
            continue
        if _not_data(f):
            skipped.append(f.name)
            continue
        if f.suffix.lower() in (".txt", ".1d"):
            bad = _numeric_line(f)
            if bad is not None:
                raise fail(
                    f,
                    f"is in the data folder but is not an ROI table (first line {bad!r} is not numbers)",
                    "move it out of the folder (data folders hold tables, their JSON sidecars, participants.tsv and "
                    "README/LICENSE files), or point 'path' at the tables",
                )
        out.append(f)
    if skipped:
        LOG.info("%s: not data, skipped: %s", p, ", ".join(skipped))
    if not out:
        raise fail(p, f"folder has no ROI tables ({', '.join(TABLE_SUFFIXES)})", "point 'path' at the tables")
    return out


@fill_doc
def iter_tables(
    path: str | os.PathLike,
    repetition_time_s: float | None = None,
    roi_names: Sequence[str] | None = None,
    confound_columns: Sequence[str] = (),
    drop_columns: Sequence[str] = (),
    participants: str | os.PathLike | None = None,
    repetition_time_from: str = "check",
) -> Iterator[xr.Dataset]:
    """Each ROI table (one file, or every data file of a folder: :func:`find_tables`) as a ``roi_timeseries`` run.

    Each table's TR comes from its own JSON sidecar (``<stem>.json``, ``RepetitionTime``), so a cohort from sites
    with different TRs is read correctly, run by run; ``repetition_time_s`` serves the tables without a sidecar.

    Parameters
    ----------
    path : str or os.PathLike
        A table or a folder of tables (:data:`TABLE_SUFFIXES`).
    %(repetition_time_s)s
    %(table_columns)s
    %(participants)s
    %(repetition_time_from)s

    %(roi_runs_yields)s

    %(reader_raises)s
    """
    tables = find_tables(path)  # every file checked before the first run is read
    table = read_participants(find_participants(path, participants))
    for f in tables:
        sub = bids_entities(f.name).get("sub", "")
        yield read_table(
            f,
            repetition_time_s,
            roi_names,
            confound_columns,
            drop_columns,
            table.get(sub, {}),
            repetition_time_from,
        )
