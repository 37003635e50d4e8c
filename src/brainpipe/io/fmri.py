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

import os
from collections.abc import Iterator
from pathlib import Path

import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.io._fmri_common import (
    DEFAULT_CONFOUNDS,
    ENTITIES,
    LOG,
    TABLE_SUFFIXES,
    bids_entities,
    fail,
    find_participants,
    read_participants,
    run_dataset,
    run_id,
)
from brainpipe.io._fmri_nifti import (
    TR_SOURCES,
    extract_rois,
    iter_nifti,
    load_atlas,
    read_nifti,
    read_tr,
    resolve_tr,
    sidecar_path,
    sidecar_tr,
)
from brainpipe.io._fmri_prep import find_bold, fmriprep_confounds, iter_fmriprep
from brainpipe.io._fmri_tables import NOT_DATA, _not_data, find_tables, iter_tables, read_table
from brainpipe.io._registry import has_suffix, read, register, register_modality

__all__ = [
    "DEFAULT_CONFOUNDS",
    "ENTITIES",
    "LOG",
    "NOT_DATA",
    "TABLE_SUFFIXES",
    "TR_SOURCES",
    "bids_entities",
    "extract_rois",
    "fail",
    "find_bold",
    "find_participants",
    "find_tables",
    "fmriprep_confounds",
    "iter_fmriprep",
    "iter_nifti",
    "iter_runs",
    "iter_tables",
    "load_atlas",
    "read_nifti",
    "read_participants",
    "read_table",
    "read_tr",
    "resolve_tr",
    "run_dataset",
    "run_id",
    "sidecar_path",
    "sidecar_tr",
]


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
