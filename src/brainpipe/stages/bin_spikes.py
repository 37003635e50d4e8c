"""Unit QC, then binning into counts with aligned behaviour/stimulus and a time-block train/validation/test split.

params: ``bin_width_s``, ``split`` (``fractions``: train/validation/test, ``n_blocks``), ``qc``
(``min_rate_hz``, ``refractory_s``, ``max_units``). Per-unit QC results (rate, refractory violations, kept)
ride in the output as ``qc_*`` variables on the ``qc_unit`` dimension (every input unit, kept or not).
See :func:`brainpipe.preprocess.unit_qc` and :func:`brainpipe.preprocess.bin_spikes` for the order of operations.
"""

from __future__ import annotations

import logging

from brainpipe.data import make_provenance, read, write
from brainpipe.preprocess import bin_spikes, unit_qc
from brainpipe.stages._runner import cli, stage

INPUTS = {"spikes": "spike_times .nc"}
OUTPUTS = {"counts": "spike_counts .nc"}
CONFIG = "spikes.bin"
log_ = logging.getLogger("brainpipe.stages.bin_spikes")


@stage
def run(inputs, outputs, params, log):
    spikes = read(inputs["spikes"], "spike_times")
    split, qc_params = params["split"], params["qc"]
    spikes, qc = unit_qc(
        spikes, float(qc_params["min_rate_hz"]), float(qc_params["refractory_s"]), qc_params["max_units"]
    )
    dropped = [str(u) for u, k in zip(qc["unit"].values, qc["kept"].values, strict=True) if not k]
    log_.info(
        "unit QC: kept %d of %d units%s",
        int(qc["kept"].sum()),
        qc.sizes["unit"],
        f" (dropped {', '.join(dropped[:10])}{' ...' if len(dropped) > 10 else ''})" if dropped else "",
    )
    counts = bin_spikes(spikes, float(params["bin_width_s"]), split["fractions"], int(split["n_blocks"]))
    counts = counts.merge(qc.rename({"unit": "qc_unit"}).rename({v: f"qc_{v}" for v in qc.data_vars}))
    write(
        counts, outputs["counts"], "spike_counts", make_provenance("bin_spikes", params, [inputs["spikes"]])
    )


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
