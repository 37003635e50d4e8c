"""fMRI readers: fMRIPrep derivatives (BIDS), a 4D NIfTI with a labels atlas, or ROI tables -> ``roi_timeseries``.

Every reader yields one ``roi_timeseries`` dataset per run (``signal(time, roi)`` with the ROI names, the
repetition time in ``repetition_time_s``) and never holds more than one run in memory, so a cohort of any size is
ingested in bounded memory (:func:`iter_runs`). Run attributes: ``subject``, ``session``, ``task``, ``run`` (BIDS
entities, "" when absent), ``source`` (the file read) and ``participant`` (a JSON object: the subject's row of
``participants.tsv``, ``{}`` without one). fMRIPrep runs also carry ``confounds(time, confound)`` from
:func:`nilearn.interfaces.fmriprep.load_confounds` (strategy configurable) and ``sample_mask(time)`` (False on the
volumes scrubbing removes).

ROI signals are the mean over each atlas label's voxels (nilearn's :class:`~nilearn.maskers.NiftiLabelsMasker`,
no cleaning here: cleaning is :func:`brainpipe.preprocess.fmri.clean_run`). Atlas and bold must share the voxel
grid (shape and affine): resampling silently would hide a wrong atlas, so a mismatch is an error.

Bad input stops with one line naming the file, what is wrong and what to do: atlas/bold grids differ, no TR,
confound rows != volumes, a NaN or constant ROI, an atlas label with no voxels, a sidecar TR that disagrees with
the config's ``repetition_time_s`` (unless ``repetition_time_from`` trusts one), a text file in a folder of tables.

Repetition time: each run's own (its BIDS JSON sidecar ``RepetitionTime``, else the config's
``repetition_time_s``, else for NIfTI the header), so a cohort from sites with different TRs is read run by run,
each run carrying its TR (``repetition_time_s``); the cleaning stage uses it and resamples to one TR when the runs
differ (:func:`brainpipe.preprocess.fmri.resample_run`). ``participants.tsv`` is found where BIDS puts it (the
dataset folder) unless given.

Readers: :func:`iter_fmriprep` (``"fmriprep"``), :func:`iter_nifti` (``"nifti"``), :func:`iter_tables`
(``"table"``), registered in :mod:`brainpipe.io._registry` near the end of this module; :func:`iter_runs` picks one.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.errors import InputError
from brainpipe.io._common import load_nifti, load_npy, oneline, require_file
from brainpipe.io._registry import has_suffix, read, register, register_modality

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


# ---- NIfTI + atlas ----------------------------------------------------------------------------------------------
def load_atlas(atlas: str | os.PathLike, labels: str | os.PathLike | None = None):
    """The labels atlas image and its (index, name) pairs: from a TSV/CSV with columns ``index`` and ``name``
    when given (every listed label must have voxels), else every non-zero integer in the image (``roi-<k>``)."""
    ap = Path(atlas)
    img = load_nifti(ap, "atlas image")
    vals = np.asarray(img.dataobj)
    if vals.ndim == 4 and vals.shape[3] == 1:
        vals = vals[..., 0]
    if vals.ndim != 3:
        raise fail(
            ap, f"atlas has {vals.ndim} dimensions", "give a 3D labels image (one integer label per voxel)"
        )
    if vals.dtype.kind not in "biuf" or not np.all(np.isfinite(vals)):
        raise fail(
            ap,
            f"atlas holds {vals.dtype} values with NaN/inf or non-numbers",
            "give a labels atlas (integers)",
        )
    if not np.allclose(vals, np.round(vals)):
        raise fail(
            ap,
            "atlas has non-integer values (a probabilistic atlas?)",
            "give a labels atlas (integers, 0 = background)",
        )
    present = sorted(int(v) for v in np.unique(vals) if v != 0)
    if labels is None:
        table = [(k, f"roi-{k}") for k in present]
    else:
        import pandas as pd

        lp = require_file(labels, "atlas labels table")
        try:
            df = pd.read_csv(lp, sep=None, engine="python")
        except (ValueError, OSError, csv.Error) as err:  # EmptyDataError, ParserError, UnicodeDecodeError
            raise fail(
                lp,
                f"cannot be read as a table ({type(err).__name__}: {oneline(err)})",
                "write a TSV/CSV with columns index and name",
            ) from None
        if not {"index", "name"} <= set(df.columns):
            raise fail(
                lp,
                f"needs columns 'index' and 'name' (has {', '.join(map(str, df.columns))})",
                "rename the columns",
            )
        index = pd.to_numeric(df["index"], errors="coerce").to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(index) & (index == np.round(index))):
            raise fail(
                lp, "column 'index' holds values that are not whole numbers", "give one integer label per row"
            )
        table = [(int(i), str(n)) for i, n in zip(index, df["name"], strict=True) if int(i) != 0]
        if not table:
            raise fail(
                lp, "lists no atlas labels (no row with an index > 0)", "give one row per label of the atlas"
            )
        empty = [f"{n} (label {i})" for i, n in table if i not in present]
        if empty:
            raise fail(
                ap,
                f"atlas label {', '.join(empty[:3])} listed in {lp.name} has no voxels",
                "remove it from the labels table, or use the atlas the table belongs to",
            )
    if not table:
        raise fail(ap, "atlas has no labelled voxels", "give a labels atlas with integer labels > 0")
    return img, table


def _check_grid(bold_path, bold_img, atlas_path, atlas_img) -> None:
    bs, as_ = tuple(bold_img.shape[:3]), tuple(atlas_img.shape[:3])
    if bs != as_:
        raise fail(
            bold_path,
            f"voxel grid {bs} differs from atlas {Path(atlas_path).name} {as_}",
            "resample the atlas to the bold image (e.g. nilearn.image.resample_to_img, interpolation='nearest')",
        )
    if not np.allclose(bold_img.affine, atlas_img.affine, atol=1e-3):
        raise fail(
            bold_path,
            f"affine differs from atlas {Path(atlas_path).name} (not in the same space)",
            "use an atlas in the bold image's space, or resample it with nearest-neighbour interpolation",
        )


#: Where a run's TR comes from when the config (``repetition_time_s``) and the run's JSON sidecar both give one.
TR_SOURCES = ("check", "sidecar", "config")


def sidecar_path(path: str | os.PathLike) -> Path:
    """The BIDS JSON sidecar of a data file: the same name with ``.json`` for its (``.nii.gz``, ``.nii``, table) suffix.

    Parameters
    ----------
    path : str or PathLike
        A bold image or an ROI table.

    Returns
    -------
    Path
        The sidecar's path (it may not exist).
    """
    p = Path(path)
    for suf in (".nii.gz", ".nii"):
        if p.name.endswith(suf):
            return p.with_name(p.name[: -len(suf)] + ".json")
    return p.with_suffix(".json")


def sidecar_tr(path: str | os.PathLike) -> tuple[float | None, Path]:
    """The repetition time a data file's JSON sidecar states (``RepetitionTime``, else ``1 / SamplingFrequency``).

    Parameters
    ----------
    path : str or PathLike
        A bold image or an ROI table (its sidecar: :func:`sidecar_path`).

    Returns
    -------
    tr : float or None
        The TR in seconds; None without a sidecar or without either key.
    sidecar : Path
        The sidecar's path.

    Raises
    ------
    InputError
        The sidecar is empty, not JSON, or states a TR that is not a positive number of seconds.
    """
    side = sidecar_path(path)
    if not side.is_file():
        return None, side
    if side.stat().st_size == 0:
        raise fail(side, "sidecar is empty (0 bytes)", "write the BIDS sidecar again, or remove it")
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise fail(side, f"sidecar is not valid JSON ({oneline(err)})", "fix or remove it") from None
    if not isinstance(meta, dict):
        return None, side
    key = (
        "RepetitionTime"
        if "RepetitionTime" in meta
        else "SamplingFrequency"
        if "SamplingFrequency" in meta
        else None
    )
    if key is None:
        return None, side
    try:
        value = float(meta[key])
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise fail(
            side,
            f"{key} {meta[key]!r} is not a positive number",
            "fix the sidecar, or set 'repetition_time_s' for this dataset",
        )
    return (value if key == "RepetitionTime" else 1.0 / value), side


def resolve_tr(
    path: str | os.PathLike, config_tr: float | None, repetition_time_from: str = "check"
) -> float | None:
    """A run's TR from its sidecar and the config: the one given, or both when they agree (``check``), or the one
    ``repetition_time_from`` trusts (``sidecar``: the sidecar wins; ``config``: the config wins).

    Parameters
    ----------
    path : str or PathLike
        A bold image or an ROI table (its sidecar: :func:`sidecar_path`).
    config_tr : float or None
        ``repetition_time_s`` of the dataset.
    repetition_time_from : {"check", "sidecar", "config"}
        What to trust when both give a TR.

    Returns
    -------
    float or None
        The TR in seconds; None when neither gives one.

    Raises
    ------
    InputError
        The sidecar and the config disagree (``check``; one line naming the sidecar and both values).
    """
    if repetition_time_from not in TR_SOURCES:
        raise fail(
            path, f"repetition_time_from = {repetition_time_from!r}", f"use one of {', '.join(TR_SOURCES)}"
        )
    if repetition_time_from == "config" and config_tr is not None:
        return float(config_tr)
    tr, side = sidecar_tr(path)
    if tr is None:
        return None if config_tr is None else float(config_tr)
    if config_tr is not None and not np.isclose(tr, float(config_tr), rtol=1e-4, atol=0):
        if repetition_time_from == "sidecar":
            LOG.info(
                "%s: TR %g s from the sidecar (the config's repetition_time_s %g s is not used)",
                path,
                tr,
                config_tr,
            )
            return tr
        raise fail(
            side,
            f"sidecar RepetitionTime {tr:g} s disagrees with repetition_time_s {float(config_tr):g} s in the config",
            "remove repetition_time_s from the dataset (each run's sidecar gives its TR), fix the sidecar, or set "
            "repetition_time_from: sidecar (or config) for this dataset to trust one",
        )
    return tr


def read_tr(
    bold_path: str | os.PathLike,
    img=None,
    override: float | None = None,
    repetition_time_from: str = "check",
) -> float:
    """Repetition time in seconds: the BIDS sidecar's ``RepetitionTime`` and the config's ``override``
    (:func:`resolve_tr`: when both are given they must agree, unless ``repetition_time_from`` trusts one), else the
    NIfTI header (pixdim[4] with time units). Missing everywhere -> one-line error."""
    p = Path(bold_path)
    tr = resolve_tr(p, override, repetition_time_from)
    if tr is not None:
        return tr
    if img is not None and len(img.shape) == 4:
        zooms = img.header.get_zooms()
        units = img.header.get_xyzt_units()[1] if hasattr(img.header, "get_xyzt_units") else "sec"
        if len(zooms) > 3 and zooms[3] > 0 and units in ("sec", "msec", "usec"):
            return float(zooms[3]) * {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}[units]
    raise fail(
        p,
        "repetition time (TR) is missing (no sidecar RepetitionTime, no time step in the NIfTI header)",
        "add RepetitionTime to the bold JSON sidecar, or set 'repetition_time_s' for this dataset in the config",
    )


def extract_rois(bold_path, atlas_path, labels_path=None, img=None):
    """Mean signal of every atlas label: (time x roi) array and ROI names, via NiftiLabelsMasker."""
    import nibabel as nib
    from nilearn.maskers import NiftiLabelsMasker

    bp = Path(bold_path)
    if img is None:
        img = load_nifti(bp, "bold image")
    if len(img.shape) != 4:
        raise fail(bp, f"is a {len(img.shape)}D image", "give a 4D bold image (x, y, z, time)")
    if img.shape[3] == 0:
        raise fail(bp, f"holds no volumes (shape {tuple(img.shape)})", "give a 4D bold image with volumes")
    if np.asarray(img.dataobj).dtype.kind not in "biuf":
        raise fail(
            bp, f"holds {np.asarray(img.dataobj).dtype} values, not numbers", "give a numeric 4D bold image"
        )
    atlas_img, table = load_atlas(atlas_path, labels_path)
    _check_grid(bp, img, atlas_path, atlas_img)
    atlas_data = np.asarray(atlas_img.dataobj).reshape(atlas_img.shape[:3]).astype(np.int32)
    atlas_img = nib.Nifti1Image(atlas_data, atlas_img.affine)
    masker = NiftiLabelsMasker(
        labels_img=atlas_img, standardize=False, detrend=False, keep_masked_labels=False
    )
    signal = masker.fit_transform(img)
    # map the masker's output columns back to label indices (region_ids_: {column: label, "background": 0})
    ids = masker.region_ids_
    got = [int(ids[k]) for k in sorted(k for k in ids if k != "background")]
    index = {k: j for j, k in enumerate(got)}
    cols = [index[i] for i, _ in table]
    return np.asarray(signal, dtype=np.float64)[:, cols], [n for _, n in table], img


@fill_doc
def read_nifti(
    path: str | os.PathLike,
    atlas: str | os.PathLike,
    atlas_labels: str | os.PathLike | None = None,
    repetition_time_s: float | None = None,
    participant: Mapping[str, Any] | None = None,
    repetition_time_from: str = "check",
) -> xr.Dataset:
    """Read one 4D NIfTI as a ``roi_timeseries`` run: the mean signal of every label of an atlas.

    The TR comes from the JSON sidecar and ``repetition_time_s`` (:func:`resolve_tr`), else the NIfTI header.

    Parameters
    ----------
    path : str or os.PathLike
        A 4D ``.nii``/``.nii.gz`` image.
    %(atlas)s
    %(repetition_time_s)s
    %(participant)s
    %(repetition_time_from)s

    %(roi_run_returns)s

    %(reader_raises)s
    """
    signal, names, img = extract_rois(path, atlas, atlas_labels)
    tr = read_tr(path, img, repetition_time_s, repetition_time_from)
    return run_dataset(
        signal, names, tr, source=path, entities=bids_entities(Path(path).name), participant=participant
    )


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
def iter_nifti(
    path: str | os.PathLike,
    atlas: str | os.PathLike,
    atlas_labels: str | os.PathLike | None = None,
    participants: str | os.PathLike | None = None,
    repetition_time_s: float | None = None,
    repetition_time_from: str = "check",
) -> Iterator[xr.Dataset]:
    """Each 4D NIfTI (one image, or every ``.nii``/``.nii.gz`` in a folder, sorted) as a ``roi_timeseries`` run.

    Parameters
    ----------
    path : str or os.PathLike
        A 4D image or a folder of them.
    %(atlas)s
    %(participants)s
    %(repetition_time_s)s
    %(repetition_time_from)s

    %(roi_runs_yields)s

    %(reader_raises)s
    """
    p = Path(path)
    table = read_participants(find_participants(p, participants))
    files = [p] if p.is_file() else sorted(f for f in p.iterdir() if f.name.endswith((".nii", ".nii.gz")))
    if not files:
        raise fail(p, "no .nii/.nii.gz image found", "point 'path' at a 4D NIfTI or a folder of them")
    for f in files:
        sub = bids_entities(f.name).get("sub", "")
        yield read_nifti(f, atlas, atlas_labels, repetition_time_s, table.get(sub, {}), repetition_time_from)


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


# ---- registration (detection tries them in this order) -------------------------------------------------------------
def _is_fmriprep(path: Path) -> bool:
    return path.is_dir() and next(iter(path.rglob("*_desc-preproc_bold.nii*")), None) is not None


def _is_nifti(path: Path) -> bool:
    if path.is_dir():
        return any(f.name.endswith((".nii", ".nii.gz")) for f in path.iterdir())
    return has_suffix(".nii", ".nii.gz")(path)


def _is_table(path: Path) -> bool:
    if path.is_dir():
        return any(f.suffix.lower() in TABLE_SUFFIXES and not _not_data(f) for f in path.iterdir())
    return has_suffix(*TABLE_SUFFIXES)(path)


def _stream(path: str | os.PathLike, runs: Iterator[xr.Dataset]) -> Iterator[xr.Dataset]:
    """The fMRI finishing step: hand the runs on one at a time, with cheap garbage collections meanwhile."""
    import gc

    # nilearn forces a full garbage collection on every image access; with a large heap (torch, xarray imported)
    # that dominates the reading time. Freezing the objects that exist now makes those collections cheap.
    import nilearn.interfaces.fmriprep  # noqa: F401  (imported before the freeze: its objects are long-lived)
    import nilearn.maskers  # noqa: F401

    gc.collect()
    gc.freeze()
    try:
        yield from runs
    finally:
        gc.unfreeze()


register_modality("fmri", finish=_stream, shared_options=True)
register(
    iter_fmriprep,
    name="fmriprep",
    modality="fmri",
    detect=_is_fmriprep,
    looks_for="a folder with *_desc-preproc_bold.nii[.gz] images (fMRIPrep derivatives)",
)
register(
    iter_nifti,
    name="nifti",
    modality="fmri",
    detect=_is_nifti,
    looks_for="a .nii/.nii.gz image or a folder of them",
)
register(
    iter_tables,
    name="table",
    modality="fmri",
    detect=_is_table,
    looks_for=f"a {'/'.join(TABLE_SUFFIXES)} ROI table or a folder of them",
)


# ---- one entry point ----------------------------------------------------------------------------------------------
@fill_doc
def iter_runs(path: str | os.PathLike, format: str = "auto", **options) -> Iterator[xr.Dataset]:
    """Every run of a dataset as ``roi_timeseries`` datasets, one at a time.

    The fMRI case of :func:`brainpipe.io.read`.

    Parameters
    ----------
    path : str or PathLike
        An fMRIPrep derivatives folder, a 4D NIfTI or a folder of them, a table or a folder of tables.
    format : str
        ``fmriprep`` (:func:`iter_fmriprep`; needs ``atlas``), ``nifti`` (:func:`iter_nifti`; needs ``atlas``),
        ``table`` (:func:`iter_tables`; needs ``repetition_time_s``), or ``auto`` (a folder with
        ``*_desc-preproc_bold`` files -> fmriprep; a .nii/.nii.gz or a folder of them -> nifti; a table or a folder
        of tables -> table).
    **options
        ``atlas``, ``atlas_labels``, ``participants``, ``confounds`` (fmriprep), ``task``, ``space``, ``session``
        (fmriprep filters), ``repetition_time_s``, ``repetition_time_from``, ``roi_names``, ``confound_columns``,
        ``drop_columns`` (tables).
        The options of another fMRI format are left out (logged); any other name is a
        :class:`~brainpipe.errors.ConfigError`.

    Returns
    -------
    iterator of xarray.Dataset
        One run in memory at a time.

    %(read_raises)s

    Examples
    --------
    >>> import numpy as np
    >>> from brainpipe.io import iter_runs, run_id
    >>> signal = np.random.default_rng(0).normal(size=(50, 4))  # 50 volumes x 4 ROIs
    >>> np.savetxt("sub-01_task-rest_timeseries.csv", signal, delimiter=",", header="a,b,c,d", comments="")
    >>> for run in iter_runs("sub-01_task-rest_timeseries.csv", repetition_time_s=2.0):  # detected: a table
    ...     print(run_id(run), dict(run.sizes), run.attrs["repetition_time_s"])
    sub-01_task-rest {'time': 50, 'roi': 4} 2.0
    """
    return read(path, "fmri", format, **options)
