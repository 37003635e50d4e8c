"""Preprocessing: pure functions Dataset -> Dataset, one module per modality (fMRI, calcium, spikes)."""

from brainpipe.preprocess.calcium import (
    bad_cells,
    deconvolve,
    estimate_g,
    events_to_counts,
    noise_sd,
    oasis_ar1,
    preprocess_calcium,
    running_percentile,
)
from brainpipe.preprocess.fmri import (
    assemble_cohort,
    check_length,
    clean_fitted,
    clean_run,
    common_tr,
    resample_run,
    segment_length,
    segment_run,
    subject_folds,
)
from brainpipe.preprocess.spikes import (
    bin_spikes,
    observed_duration,
    segments,
    select_units,
    time_block_split,
    unit_qc,
)

__all__ = [
    "assemble_cohort",
    "bad_cells",
    "bin_spikes",
    "check_length",
    "clean_fitted",
    "clean_run",
    "common_tr",
    "deconvolve",
    "estimate_g",
    "events_to_counts",
    "noise_sd",
    "oasis_ar1",
    "observed_duration",
    "preprocess_calcium",
    "resample_run",
    "running_percentile",
    "segment_length",
    "segment_run",
    "segments",
    "select_units",
    "subject_folds",
    "time_block_split",
    "unit_qc",
]

# the dynamic connectome's affinities and tensor (calcium): every public name of brainpipe.preprocess.affinity
from brainpipe.preprocess import affinity as _affinity  # noqa: E402
from brainpipe.preprocess.affinity import *  # noqa: E402, F403

__all__ += _affinity.__all__
