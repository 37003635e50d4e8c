"""Preprocessing: pure functions Dataset -> Dataset, one module per modality."""

from brainpipe.preprocess.spikes import bin_spikes, segments, time_block_split, unit_qc

__all__ = ["bin_spikes", "segments", "time_block_split", "unit_qc"]
