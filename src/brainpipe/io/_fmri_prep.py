"""fMRI from fMRIPrep derivatives: the preprocessed bold runs, their confounds and the ``fmriprep`` reader
(:func:`iter_fmriprep`).

Part of :mod:`brainpipe.io.fmri`, which re-exports its public names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.io._common import oneline
from brainpipe.io._fmri_common import (
    DEFAULT_CONFOUNDS,
    bids_entities,
    fail,
    find_participants,
    read_participants,
    run_dataset,
)
from brainpipe.io._fmri_nifti import extract_rois, read_tr


# ---- fMRIPrep -----------------------------------------------------------------------------------------------------
def find_bold(
    root: str | os.PathLike, task: str | None = None, space: str | None = None, session: str | None = None
) -> list[Path]:
    """Every ``*_desc-preproc_bold.nii[.gz]`` under an fMRIPrep derivatives folder, sorted, filtered by entities."""
    root = Path(root)
    if not root.is_dir():
        raise fail(root, "fMRIPrep derivatives folder does not exist", "check the dataset's 'path'")
    found = sorted(p for p in root.rglob("*_desc-preproc_bold.nii*") if p.name.endswith((".nii", ".nii.gz")))
    out = []
    for p in found:
        ent = bids_entities(p.name)
        if (
            task
            and ent.get("task") != task
            or space
            and ent.get("space") != space
            or session
            and ent.get("ses") != session
        ):
            continue
        out.append(p)
    if not out:
        what = ", ".join(f"{k}={v}" for k, v in (("task", task), ("space", space), ("session", session)) if v)
        raise fail(
            root,
            f"no *_desc-preproc_bold.nii.gz file found{' with ' + what if what else ''}",
            "point 'path' at an fMRIPrep derivatives folder (or fix the task/space/session filters)",
        )
    return out


def fmriprep_confounds(
    bold_path: str | os.PathLike, n_volumes: int, options: Mapping[str, Any] | None = None
):
    """Confounds (array, names) and the sample mask (bool per volume) of one fMRIPrep run.

    Wraps :func:`nilearn.interfaces.fmriprep.load_confounds` with ``options`` (``strategy``, ``motion``, ``scrub``,
    ``fd_threshold``, ... as nilearn names them; defaults in :data:`DEFAULT_CONFOUNDS`). The raw confounds table
    must have one row per volume.
    """
    import pandas as pd
    from nilearn.interfaces.fmriprep import load_confounds

    opts = dict(DEFAULT_CONFOUNDS)
    opts.update(options or {})
    strategy = tuple(opts.pop("strategy"))
    bp = Path(bold_path)
    ent = bids_entities(bp.name)
    stem = "_".join(f"{k}-{ent[k]}" for k in ("sub", "ses", "task", "acq", "run") if k in ent)
    candidates = sorted(bp.parent.glob(f"{stem}*_desc-confounds_timeseries.tsv")) or sorted(
        bp.parent.glob(f"{stem}*_desc-confounds_regressors.tsv")
    )
    if not candidates:
        raise fail(
            bp,
            f"no confounds table ({stem}_desc-confounds_timeseries.tsv) beside the bold image",
            "keep fMRIPrep's confounds file with its bold image, or set confounds.strategy to [] for this dataset",
        )
    raw = candidates[0]
    if raw.stat().st_size == 0:
        raise fail(raw, "is empty (0 bytes)", "use the confounds file fMRIPrep wrote for this run")
    try:
        n_rows = len(pd.read_csv(raw, sep="\t", usecols=[0]))
    except (ValueError, OSError) as err:  # EmptyDataError, ParserError, UnicodeDecodeError are ValueErrors
        raise fail(
            raw,
            f"cannot be read as a TSV table ({type(err).__name__}: {oneline(err)})",
            "use the confounds file fMRIPrep wrote for this run",
        ) from None
    if n_rows != n_volumes:
        raise fail(
            raw,
            f"has {n_rows} rows but the bold image has {n_volumes} volumes",
            "use the confounds file fMRIPrep wrote for this run (one row per volume)",
        )
    if not strategy:
        return np.zeros((n_volumes, 0)), [], np.ones(n_volumes, dtype=bool)
    try:
        conf, mask = load_confounds(str(bp), strategy=strategy, **opts)
    except (ValueError, KeyError, TypeError) as err:
        msg = " ".join(str(err).split())[:200]
        raise fail(
            raw,
            f"nilearn load_confounds failed ({type(err).__name__}: {msg})",
            "check the confound strategy in the config matches the columns in this file",
        ) from None
    bad = [str(c) for c in conf.columns if conf[c].dtype.kind not in "biuf" or not np.isfinite(conf[c]).all()]
    if bad:
        raise fail(
            raw,
            f"confound column(s) {', '.join(bad[:5])} hold non-numeric, NaN or infinite values",
            "use the confounds file fMRIPrep wrote for this run",
        )
    keep = np.ones(n_volumes, dtype=bool)
    if mask is not None:
        keep[:] = False
        keep[np.asarray(mask, dtype=int)] = True
    return conf.to_numpy(dtype=np.float64), [str(c) for c in conf.columns], keep


@fill_doc
def iter_fmriprep(
    path: str | os.PathLike,
    atlas: str | os.PathLike,
    atlas_labels: str | os.PathLike | None = None,
    participants: str | os.PathLike | None = None,
    confounds: Mapping[str, Any] | None = None,
    task: str | None = None,
    space: str | None = None,
    session: str | None = None,
    repetition_time_s: float | None = None,
    repetition_time_from: str = "check",
) -> Iterator[xr.Dataset]:
    """Each run of an fMRIPrep derivatives folder as a ``roi_timeseries`` dataset (one at a time).

    The runs are the ``*_desc-preproc_bold.nii[.gz]`` images under ``path``, sorted; each run's confounds and
    sample mask come from its ``*_desc-confounds_timeseries.tsv`` (:func:`fmriprep_confounds`).

    Parameters
    ----------
    path : str or os.PathLike
        An fMRIPrep derivatives folder.
    %(atlas)s
    %(participants)s
    confounds : mapping, optional
        Options of :func:`nilearn.interfaces.fmriprep.load_confounds` (``strategy``, ``motion``, ``scrub``, ...)
        over :data:`DEFAULT_CONFOUNDS`.
    task, space, session : str, optional
        Only the runs with these BIDS entities (None: any).
    %(repetition_time_s)s
    %(repetition_time_from)s

    %(roi_runs_yields)s

    %(reader_raises)s
    """
    root = Path(path)
    table = read_participants(find_participants(root, participants))
    for bold in find_bold(root, task, space, session):
        signal, names, img = extract_rois(bold, atlas, atlas_labels)
        tr = read_tr(bold, img, repetition_time_s, repetition_time_from)
        conf, conf_names, keep = fmriprep_confounds(bold, signal.shape[0], confounds)
        ent = bids_entities(bold.name)
        yield run_dataset(
            signal,
            names,
            tr,
            source=bold,
            entities=ent,
            participant=table.get(ent.get("sub", ""), {}),
            confounds=conf,
            confound_names=conf_names,
            sample_mask=keep,
        )
