"""fMRI reading shared by the formats: BIDS entities, ``participants.tsv``, the checks of a run's signal and the
``roi_timeseries`` dataset of one run (:func:`run_dataset`, :func:`run_id`).

Part of :mod:`brainpipe.io.fmri`, which re-exports its public names.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.errors import InputError
from brainpipe.io._common import oneline, require_file

LOG = logging.getLogger("brainpipe.io.fmri")
TABLE_SUFFIXES = (".csv", ".tsv", ".1d", ".npy", ".txt")
ENTITIES = ("sub", "ses", "task", "acq", "run", "space")
DEFAULT_CONFOUNDS = {
    "strategy": ["motion", "high_pass", "wm_csf", "scrub"],
    "motion": "basic",
    "wm_csf": "basic",
    "global_signal": "basic",
    "scrub": 0,
    "fd_threshold": 0.5,
    "std_dvars_threshold": 1.5,
}


def fail(path: str | os.PathLike, what: str, todo: str) -> InputError:
    """An :class:`InputError` reading ``"<path>: <what>; <todo>"`` (one line)."""
    return InputError(f"{path}: {what}; {todo}")


def bids_entities(name: str) -> dict[str, str]:
    """BIDS key-value entities of a file name (``sub-01_ses-a_task-rest_run-1_...`` -> {sub: 01, ...})."""
    return {
        k: v for k, v in re.findall(r"(?:^|_)([a-zA-Z]+)-([a-zA-Z0-9]+)", Path(name).name) if k in ENTITIES
    }


# ---- participants -------------------------------------------------------------------------------------------
def read_participants(path: str | os.PathLike | None) -> dict[str, dict[str, Any]]:
    """Read a ``participants.tsv`` as {subject id without 'sub-': {column: value}}.

    Parameters
    ----------
    path : str or os.PathLike or None
        The table (tab-separated for ``.tsv``, else comma) with a ``participant_id`` column; None: no table.

    Returns
    -------
    dict
        Subject id -> its row, values as text as in the file (empty, ``n/a``, ``NA``, ``nan``: None); ``{}`` for
        None.

    Raises
    ------
    brainpipe.errors.InputError
        The table is missing, unreadable or has no ``participant_id`` column (one line naming it).
    """
    if path is None:
        return {}
    import pandas as pd

    p = require_file(path, "participants table")
    try:
        df = pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ",", dtype=str, keep_default_na=False)
    except (ValueError, OSError) as err:  # EmptyDataError, ParserError, UnicodeDecodeError are ValueErrors
        raise fail(
            p,
            f"cannot be read as a table ({type(err).__name__}: {oneline(err)})",
            "write it as a BIDS participants.tsv",
        ) from None
    if "participant_id" not in df.columns:
        raise fail(
            p,
            f"has no 'participant_id' column (columns: {', '.join(df.columns)})",
            "add it (values like sub-01)",
        )
    out = {}
    for row in df.to_dict("records"):
        sid = str(row.pop("participant_id")).strip()
        sid = sid[4:] if sid.startswith("sub-") else sid
        out[sid] = {
            k: (None if str(v).strip() in ("", "n/a", "NA", "nan") else str(v).strip())
            for k, v in row.items()
        }
    return out


def find_participants(path: str | os.PathLike, participants: str | os.PathLike | None = None) -> Path | None:
    """The ``participants.tsv`` of a dataset: ``participants`` when given, else the one BIDS puts at the dataset
    root (the data folder itself, or the folder of a single data file), else None.

    Parameters
    ----------
    path : str or PathLike
        The dataset's data path (a folder, or one file).
    participants : str or PathLike, optional
        An explicit participants table (the dataset's ``participants`` key).

    Returns
    -------
    Path or None
        The table to read, or None when there is none.
    """
    if participants is not None:
        return Path(participants)
    p = Path(path)
    root = p if p.is_dir() else p.parent
    found = root / "participants.tsv"
    return found if found.is_file() else None


# ---- helpers ----------------------------------------------------------------------------------------------------
def _check_signal(path, signal: np.ndarray, rois: Sequence[str], what: str = "ROI") -> None:
    bad = [r for r, ok in zip(rois, np.isfinite(signal).all(axis=0), strict=True) if not ok]
    if bad:
        raise fail(
            path,
            f"{what} {', '.join(map(str, bad[:5]))} has NaN or infinite values",
            "fix the input (or drop that ROI/column); brainpipe does not fill missing samples silently",
        )
    if signal.shape[0] > 1:
        const = [r for r, s in zip(rois, np.ptp(signal, axis=0), strict=True) if not s > 0]
        if const:
            raise fail(
                path,
                f"{what} {', '.join(map(str, const[:5]))} is constant over time (no signal)",
                "drop it from the atlas/table, or check the brain mask covers it",
            )


def run_dataset(
    signal: np.ndarray,
    rois: Sequence[str],
    tr: float,
    *,
    source: str | os.PathLike,
    entities: Mapping[str, str] | None = None,
    participant: Mapping[str, Any] | None = None,
    confounds: np.ndarray | None = None,
    confound_names: Sequence[str] = (),
    sample_mask: np.ndarray | None = None,
) -> xr.Dataset:
    """Assemble one run's ``roi_timeseries`` dataset (checks: finite, non-constant ROIs, unique names)."""
    signal = np.asarray(signal, dtype=np.float64)
    rois = [str(r) for r in rois]
    _check_signal(source, signal, rois)
    if len(set(rois)) != len(rois):
        dup = sorted({r for r in rois if rois.count(r) > 1})
        raise fail(
            source, f"ROI names are not unique ({', '.join(dup[:5])})", "rename the duplicated ROIs/columns"
        )
    ent = dict(entities or {})
    n_t = signal.shape[0]
    data = {
        "signal": (("time", "roi"), signal, {"long_name": "ROI BOLD signal (mean over the ROI's voxels)"})
    }
    coords = {
        "time": ("time", np.arange(n_t, dtype=np.float64) * float(tr), {"units": "s"}),
        "roi": np.array(rois),
    }
    if confounds is not None and len(confound_names):
        data["confounds"] = (("time", "confound"), np.asarray(confounds, dtype=np.float64))
        coords["confound"] = np.array([str(c) for c in confound_names])
    if sample_mask is not None:
        data["sample_mask"] = ("time", np.asarray(sample_mask, dtype=bool))
    return xr.Dataset(
        data,
        coords=coords,
        attrs={
            "repetition_time_s": float(tr),
            "subject": ent.get("sub", ""),
            "session": ent.get("ses", ""),
            "task": ent.get("task", ""),
            "run": ent.get("run", ""),
            "source": str(source),
            "participant": json.dumps(dict(participant or {}), sort_keys=True),
        },
    )


def run_id(ds: xr.Dataset) -> str:
    """A file-name-safe identifier of a run: ``sub-01_ses-a_task-rest_run-1`` (entities present only).

    Parameters
    ----------
    ds : xarray.Dataset
        A ``roi_timeseries`` run (its ``subject``, ``session``, ``task`` and ``run`` attrs).

    Returns
    -------
    str
        The identifier; without any entity, the stem of the run's ``source``.

    Examples
    --------
    >>> import xarray as xr
    >>> from brainpipe.io import run_id
    >>> run_id(xr.Dataset(attrs={"subject": "01", "task": "rest", "run": "2"}))
    'sub-01_task-rest_run-2'
    """
    parts = [
        f"{k}-{ds.attrs[a]}"
        for k, a in (("sub", "subject"), ("ses", "session"), ("task", "task"), ("run", "run"))
        if ds.attrs.get(a)
    ]
    return "_".join(parts) or Path(str(ds.attrs.get("source", "run"))).stem
