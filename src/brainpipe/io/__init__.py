"""Readers for outside data formats (spike sorting outputs, NWB, trial-binned counts) into brainpipe contracts.

>>> from brainpipe.io import read_spikes, FORMATS
"""

from brainpipe.io.spikes import (
    FORMATS,
    detect_format,
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
    "detect_format",
    "read_matclust",
    "read_nwb",
    "read_phy",
    "read_position_tracking",
    "read_spike_table",
    "read_spikes",
    "read_trialized_npz",
]
