"""Readers for outside data formats into brainpipe contracts: spikes (NWB, phy/Kilosort, trial arrays, spike tables,
MatClust) -> ``spike_times``; calcium (suite2p, NWB ophys, arrays) -> ``calcium_traces``; fMRI (fMRIPrep, NIfTI +
atlas, ROI tables) -> ``roi_timeseries`` runs.

Every reader is registered in one registry (:mod:`brainpipe.io._registry`) with its format name, modality,
detection function and options (its signature). :func:`read` reads any of them, :func:`detect` names the format of
a path, :func:`formats` lists a modality's formats; :func:`read_spikes`, :func:`read_calcium` and :func:`iter_runs`
are :func:`read` for one modality.

>>> from brainpipe.io import read, detect, formats
>>> formats("calcium")
('suite2p', 'nwb', 'npy', 'csv', 'hdf5')
"""

from brainpipe.io._registry import (
    MODALITIES,
    Reader,
    detect,
    formats,
    get_reader,
    has_suffix,
    read,
    readers,
    register,
    register_modality,
)
from brainpipe.io.calcium import check_cells, read_array, read_calcium, read_nwb_ophys, read_suite2p
from brainpipe.io.fmri import (
    iter_fmriprep,
    iter_nifti,
    iter_runs,
    iter_tables,
    read_nifti,
    read_participants,
    read_table,
    run_id,
)
from brainpipe.io.spikes import (
    FORMATS,
    read_binned,
    read_matclust,
    read_nwb,
    read_phy,
    read_position_tracking,
    read_spike_table,
    read_spikes,
    read_trialized_npz,
)

__all__ = [
    "FORMATS",
    "MODALITIES",
    "Reader",
    "check_cells",
    "detect",
    "formats",
    "get_reader",
    "has_suffix",
    "iter_fmriprep",
    "iter_nifti",
    "iter_runs",
    "iter_tables",
    "read",
    "read_array",
    "read_binned",
    "read_calcium",
    "read_matclust",
    "read_nifti",
    "read_nwb",
    "read_nwb_ophys",
    "read_participants",
    "read_phy",
    "read_position_tracking",
    "read_spike_table",
    "read_spikes",
    "read_suite2p",
    "read_table",
    "read_trialized_npz",
    "readers",
    "register",
    "register_modality",
    "run_id",
]
