"""Read already-binned spike counts (format ``binned``: npz, CSV/TSV, NWB TimeSeries of counts) straight into
``spike_counts``, without re-binning: the file's bins are kept, or summed into whole multiples when the study's
``bin_width_s`` is wider; then unit QC (rates) and the train/validation/test split, as ``bin_spikes`` does for
spike times. See :mod:`brainpipe.io.binned` for the order of operations.

params: ``path`` (the file; also the input ``source``), ``format`` (``binned`` or ``auto``), ``options`` (keyword
options of :func:`brainpipe.io.binned.read_binned`: ``bin_width_s``, ``counts_key``, ``behaviour_keys``,
``trial_key``, ``sep``), and the binning parameters of ``spikes.bin``: ``bin_width_s``, ``split`` (``fractions``,
``n_blocks``), ``qc`` (``min_rate_hz``, ``max_units``; ``refractory_s`` is not assessable on counts).
"""

from __future__ import annotations

import logging

from brainpipe.data import make_provenance, write
from brainpipe.errors import InputError
from brainpipe.io.binned import finish_counts
from brainpipe.io.spikes import read_spikes
from brainpipe.stages._runner import cli, stage

INPUTS = {"source": "the binned counts: .npz, .csv/.tsv (format binned) or .nwb with a TimeSeries of counts"}
OUTPUTS = {"counts": "spike_counts .nc"}
CONFIG = "spikes.bin"
log_ = logging.getLogger("brainpipe.stages.ingest_counts")


@stage
def run(inputs, outputs, params, log):
    fmt = params.get("format", "auto")
    ds = read_spikes(
        inputs["source"], "binned" if fmt == "auto" else fmt, **dict(params.get("options") or {})
    )
    if "counts" not in ds:
        raise InputError(
            f"{inputs['source']}: holds spike times (format '{ds.attrs.get('format')}'), not binned counts; set "
            "format: binned for binned counts, or let the workflow bin the spikes (ingest_spikes, bin_spikes)"
        )
    split, qc = params["split"], params["qc"]
    counts = finish_counts(
        ds,
        float(params["bin_width_s"]),
        split["fractions"],
        int(split["n_blocks"]),
        float(qc["min_rate_hz"]),
        qc["max_units"],
    )
    log_.info(
        "%s: %d bins of %g s (file: %g s), kept %d of %d units, %d behaviour variable(s), split: %s",
        inputs["source"],
        counts.sizes["time"],
        counts.attrs["bin_width_s"],
        counts.attrs["source_bin_width_s"],
        counts.sizes["unit"],
        counts.sizes["qc_unit"],
        counts.sizes.get("behaviour_var", 0),
        counts.attrs["split_rule"],
    )
    write(
        counts,
        outputs["counts"],
        "spike_counts",
        make_provenance("ingest_counts", params, [inputs["source"]]),
    )


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
