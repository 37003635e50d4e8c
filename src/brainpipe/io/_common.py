"""Shared helpers of the readers: one-line errors, .npz headers and the assembly of a ``spike_times`` dataset.

Re-exported from :mod:`brainpipe.io._files` (errors, required files, ``.npy``/``.npz``), :mod:`brainpipe.io._assemble`
(spike-train checks, ``spike_times`` assembly) and :mod:`brainpipe.io._hdf5_nifti` (damaged HDF5/NIfTI files).
"""

from __future__ import annotations

from brainpipe.io._assemble import (
    assemble,
    behaviour_block,
    check_finite,
    check_train,
    increasing_mask,
    window,
)
from brainpipe.io._files import (
    LOG,
    fail,
    load_npy,
    load_npz,
    npz_shapes,
    oneline,
    require_dir,
    require_file,
    short,
)
from brainpipe.io._hdf5_nifti import hdf5_error, hdf5_problem, load_nifti

__all__ = [
    "LOG",
    "assemble",
    "behaviour_block",
    "check_finite",
    "check_train",
    "fail",
    "hdf5_error",
    "hdf5_problem",
    "increasing_mask",
    "load_nifti",
    "load_npy",
    "load_npz",
    "npz_shapes",
    "oneline",
    "require_dir",
    "require_file",
    "short",
    "window",
]
