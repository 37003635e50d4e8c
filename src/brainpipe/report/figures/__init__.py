"""Figures of the study report, rendered off-screen (Agg) to PNG bytes; one module per branch.

:mod:`~brainpipe.report.figures.base` (style, PNG encoding, axis helpers), :mod:`~.timeaxis` (trials and test
blocks side by side), :mod:`~.qc` (data and unit QC), :mod:`~.spikes` (couplings), :mod:`~.switching` (switching GLMs), :mod:`~.fmri` (BrainMAE), :mod:`~.calcium` (connectomes) and
:mod:`~.neuroformer`. The names below are re-exported for ``from brainpipe.report import figures``.
"""

from brainpipe.report.figures.base import CMAP, DPI, MAX_LABELLED_UNITS, STYLE, data_uri, plt, to_png
from brainpipe.report.figures.calcium import factors_figure, rank_figure, traces_figure
from brainpipe.report.figures.fmri import brainmae_figure
from brainpipe.report.figures.neuroformer import neuroformer_figure
from brainpipe.report.figures.qc import data_qc_figure, firing_rates_hz, unit_qc_arrays, unit_qc_figure
from brainpipe.report.figures.spikes import aligned_couplings, coupling_matrix, model_figure
from brainpipe.report.figures.switching import (
    STATE_COLORS,
    held_out_bins,
    planted_states,
    posterior,
    state_color,
    state_matching,
    switching_states_figure,
    switching_summary_figure,
    switching_weights_figure,
)
from brainpipe.report.figures.timeaxis import JoinedAxis, decode_window, joined_axis, qc_window

__all__ = [
    "CMAP",
    "DPI",
    "MAX_LABELLED_UNITS",
    "STATE_COLORS",
    "STYLE",
    "JoinedAxis",
    "aligned_couplings",
    "brainmae_figure",
    "coupling_matrix",
    "data_qc_figure",
    "data_uri",
    "decode_window",
    "factors_figure",
    "firing_rates_hz",
    "held_out_bins",
    "joined_axis",
    "model_figure",
    "neuroformer_figure",
    "planted_states",
    "plt",
    "posterior",
    "qc_window",
    "rank_figure",
    "state_color",
    "state_matching",
    "switching_states_figure",
    "switching_summary_figure",
    "switching_weights_figure",
    "to_png",
    "traces_figure",
    "unit_qc_arrays",
    "unit_qc_figure",
]
