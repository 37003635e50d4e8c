"""Calcium readers: suite2p plane folders, NWB ophys, plain arrays -> the ``calcium_traces`` contract.

Every reader needs a frame rate: from the ``frame_rate_hz`` argument (config), else from a JSON sidecar
(suite2p: ``<plane>/frame_rate.json`` or ``ops_summary.json`` with ``fs``; arrays: ``<file>.json`` with
``frame_rate_hz``), else (NWB) from the series' ``rate`` or timestamps. ``ops.npy`` is a pickle and is never
loaded unless ``allow_ops_pickle=True`` is given explicitly (then its ``fs`` is used).

Readers: :func:`read_suite2p` (``"suite2p"``), :func:`read_nwb_ophys` (``"nwb"``), :func:`read_array` (``"npy"``,
``"csv"``, ``"hdf5"``), registered in :mod:`brainpipe.io._registry` at the end of this module; every result goes
through :func:`check_cells` (option ``drop_bad_cells``) and :func:`check_kind` (option ``kind``: what the traces
are, :data:`TRACE_KINDS`).

Neuron labels (identities shared across animals, e.g. whole-brain recordings with identified neurons) become a
``label(cell)`` variable ("" for an unlabelled ROI) when the source carries them: a ``labels.tsv`` beside suite2p's
``F.npy`` (:data:`SUITE2P_LABELS`), a label column of an NWB ROI table (:data:`NWB_LABEL_COLUMNS`, or
``label_column``), or ``"labels"`` (one per column) in an array's JSON sidecar. A connectome study matches its
animals' neurons by these labels (:func:`brainpipe.preprocess.affinity.align_animals`).

Behaviour variables on their own clock (``behaviour(behaviour_time, behaviour_var)``): the NWB reader takes the
behaviour time series of the file's processing modules (option ``behaviour_series``); every reader takes a table
given as option ``behaviour: path`` (:func:`read_behaviour_table`: CSV/TSV with a ``time_s`` column and one
column per variable, or an ``.npz`` of 1-D arrays), which replaces what the file carries. A connectome study
relates its factors to them (:func:`brainpipe.evaluate.connectome.behaviour_metrics`).

>>> from brainpipe.io.calcium import read_calcium
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.io._calcium_arrays import read_array
from brainpipe.io._calcium_behaviour import read_behaviour_table, with_behaviour
from brainpipe.io._calcium_checks import (
    LOG,
    NWB_LABEL_COLUMNS,
    SUITE2P_LABELS,
    TRACE_KINDS,
    check_cells,
    check_kind,
    finish_calcium,
    resolve_kind,
)
from brainpipe.io._calcium_nwb import read_nwb_ophys
from brainpipe.io._calcium_suite2p import read_suite2p
from brainpipe.io._registry import has_suffix, read, register, register_modality

__all__ = [
    "LOG",
    "NWB_LABEL_COLUMNS",
    "SUITE2P_LABELS",
    "TRACE_KINDS",
    "check_cells",
    "check_kind",
    "finish_calcium",
    "read_array",
    "read_behaviour_table",
    "read_calcium",
    "read_nwb_ophys",
    "read_suite2p",
    "resolve_kind",
    "with_behaviour",
]


# -- registration (detection tries them in this order) -----------------------------------------------------------
def _is_folder(path: Path) -> bool:
    # a folder can only be a suite2p plane: the reader then says what the folder lacks (F.npy, Fneu.npy)
    return path.is_dir()


register_modality("calcium", finish=finish_calcium)
register(
    read_suite2p,
    name="suite2p",
    modality="calcium",
    detect=_is_folder,
    looks_for="a suite2p plane folder (F.npy, Fneu.npy)",
)
register(read_nwb_ophys, name="nwb", modality="calcium", detect=has_suffix(".nwb"), looks_for="a .nwb file")
register(read_array, name="npy", modality="calcium", detect=has_suffix(".npy"), looks_for="a .npy array")
register(read_array, name="csv", modality="calcium", detect=has_suffix(".csv"), looks_for="a .csv table")
register(
    read_array,
    name="hdf5",
    modality="calcium",
    detect=has_suffix(".h5", ".hdf5"),
    looks_for="an .h5/.hdf5 file",
)


@fill_doc
def read_calcium(
    path,
    format: str = "auto",
    frame_rate_hz: float | None = None,
    options: dict[str, Any] | None = None,
    drop_bad_cells: bool = False,
    kind: str = "auto",
) -> xr.Dataset:
    """Read any supported calcium source into a ``calcium_traces`` dataset.

    The calcium case of :func:`brainpipe.io.read`.

    Parameters
    ----------
    path : str or PathLike
        A suite2p plane folder or a file.
    format : str
        ``"auto"`` (a folder -> ``suite2p``, else from the suffix: :func:`brainpipe.io.detect`) or one of
        ``brainpipe.io.formats("calcium")``.
    frame_rate_hz : float, optional
        The frame rate; default: the source's sidecar or NWB series (see each reader).
    options : dict, optional
        The reader's other keyword options (an option it lacks is a :class:`~brainpipe.errors.ConfigError`).
    drop_bad_cells : bool
        Drop all-NaN or constant ROIs (logged) instead of failing (see :func:`check_cells`).
    kind : str
        What the traces are (:data:`TRACE_KINDS`); checked against the values (:func:`check_kind`) and recorded
        in attr ``trace_kind``.

    Returns
    -------
    xarray.Dataset
        ``calcium_traces`` without file attributes.

    %(read_raises)s

    Examples
    --------
    >>> import numpy as np
    >>> from brainpipe.io import read_calcium
    >>> np.save("traces.npy", np.random.default_rng(0).normal(1.0, 0.1, size=(100, 3)))
    >>> ds = read_calcium("traces.npy", frame_rate_hz=10.0)  # detected: a (time, neuron) array
    >>> ds.sizes["time"], ds.sizes["cell"], ds.attrs["frame_rate_hz"]
    (100, 3, 10.0)
    """
    opts = dict(options or {})
    if frame_rate_hz is not None:
        opts["frame_rate_hz"] = frame_rate_hz
    opts["drop_bad_cells"] = drop_bad_cells
    opts["kind"] = kind
    return read(path, "calcium", format, **opts)
