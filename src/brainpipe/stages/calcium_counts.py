"""Calcium events -> ``spike_counts`` for the spike models (Poisson GLM, switching GLM, report).

params: ``bin_width_s`` (rounded to a whole number of frames, at least one), ``split`` (``fractions``,
``n_blocks``), as for bin_spikes. A bin's count is the number of its frames with an inferred event.
"""

from __future__ import annotations

import logging

from brainpipe.data import make_provenance, read, write
from brainpipe.preprocess.calcium import events_to_counts
from brainpipe.stages._runner import cli, stage

INPUTS = {"processed": "calcium_traces .nc with events"}
OUTPUTS = {"counts": "spike_counts .nc"}
log_ = logging.getLogger("brainpipe.stages.calcium_counts")


@stage
def run(inputs, outputs, params, log):
    proc = read(inputs["processed"], "calcium_traces")
    if "events" not in proc:
        from brainpipe.errors import InputError

        raise InputError(f"{inputs['processed']}: has no 'events'; run preprocess_calcium on it first")
    fs = float(proc.attrs["frame_rate_hz"])
    bin_frames = max(1, int(round(float(params.get("bin_width_s", 1.0 / fs)) * fs)))
    split = params.get("split", {})
    fractions = split.get("fractions", {"train": 0.6, "validation": 0.2, "test": 0.2})
    counts = events_to_counts(proc, bin_frames, fractions, int(split.get("n_blocks", 5)))
    log_.info(
        "%d bins of %d frame(s), %d events", counts.sizes["time"], bin_frames, int(counts["counts"].sum())
    )
    write(
        counts,
        outputs["counts"],
        "spike_counts",
        make_provenance("calcium_counts", params, [inputs["processed"]]),
    )


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
