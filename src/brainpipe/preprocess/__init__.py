"""Preprocessing: pure functions Dataset -> Dataset, one module per modality."""

from brainpipe.preprocess.spikes import bin_spikes, time_block_split

__all__ = ["bin_spikes", "time_block_split"]
