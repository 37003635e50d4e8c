"""fMRI from NIfTI images: the labels atlas, the repetition time (sidecar, config or header), the ROI signals and the
``nifti`` reader (:func:`iter_nifti`).

Part of :mod:`brainpipe.io.fmri`, which re-exports its public names.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.io._common import load_nifti, oneline, require_file
from brainpipe.io._fmri_common import (
    LOG,
    bids_entities,
    fail,
    find_participants,
    read_participants,
    run_dataset,
)


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
