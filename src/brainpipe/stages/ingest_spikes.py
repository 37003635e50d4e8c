"""Read recorded spikes into the spike_times contract: NWB, phy/Kilosort, trial arrays, spike tables, MatClust.
Binned counts (format ``binned``) are refused here: :mod:`brainpipe.stages.ingest_counts` reads them.

params: ``path`` (the recording; also the input ``source``), ``format`` (``auto`` or one of
:data:`brainpipe.io.spikes.FORMATS`), ``options`` (keyword options of the reader, e.g. ``position`` for
MatClust, ``groups`` for phy), ``t_start_s`` / ``t_stop_s`` (observation window, for readers that take one).
See :mod:`brainpipe.io.spikes` for each reader.
"""

from __future__ import annotations

import logging

from brainpipe.data import make_provenance, write
from brainpipe.io.binned import binned_error
from brainpipe.io.spikes import read_spikes
from brainpipe.stages._runner import cli, stage

INPUTS = {
    "source": "the recording: .nwb, a phy folder, .npz (trial array or unit/time table), .csv/.tsv table, .mat (MatClust)",
    "extra": "optional: other files the reader uses (e.g. the MatClust position file)",
}
OUTPUTS = {"spikes": "spike_times .nc"}
log_ = logging.getLogger("brainpipe.stages.ingest_spikes")


@stage
def run(inputs, outputs, params, log):
    options = dict(params.get("options") or {})
    for k in ("t_start_s", "t_stop_s"):
        if params.get(k) is not None:
            options[k] = params[k]
    ds = read_spikes(inputs["source"], params.get("format", "auto"), **options)
    if "counts" in ds:  # already binned: the ingest_counts stage writes its spike_counts
        raise binned_error(inputs["source"])
    log_.info(
        "read %s (%s): %d units, %d spikes",
        inputs["source"],
        ds.attrs.get("format"),
        ds.sizes["unit"],
        ds.sizes["spike"],
    )
    extra = inputs.get("extra") or []
    used = [inputs["source"], *(extra if isinstance(extra, list) else [extra])]
    write(ds, outputs["spikes"], "spike_times", make_provenance("ingest_spikes", params, used))


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
