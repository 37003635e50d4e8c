"""Bin spike times into counts with aligned behaviour and a time-block train/validation/test split.

params: ``bin_width_s``, ``split`` (``fractions``: train/validation/test, ``n_blocks``).
See :func:`brainpipe.preprocess.bin_spikes` for the order of operations.
"""

from __future__ import annotations

from brainpipe.data import make_provenance, read, write
from brainpipe.preprocess import bin_spikes
from brainpipe.stages._runner import cli, stage

INPUTS = {"spikes": "spike_times .nc"}
OUTPUTS = {"counts": "spike_counts .nc"}


@stage
def run(inputs, outputs, params, log):
    spikes = read(inputs["spikes"], "spike_times")
    split = params.get("split", {})
    counts = bin_spikes(spikes, float(params.get("bin_width_s", 0.01)), split.get("fractions"), int(split.get("n_blocks", 5)))
    write(counts, outputs["counts"], "spike_counts", make_provenance("bin_spikes", params, [inputs["spikes"]]))


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
