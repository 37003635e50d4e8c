"""Neuropil subtraction, dF/F on a running-percentile baseline and AR(1) event deconvolution.

params: ``neuropil_coef`` (0.7), ``baseline`` (``window_s``, ``percentile``), ``deconvolve`` (``tau_s`` or null
to estimate, ``min_event_snr``), ``drop_bad_cells``. See :func:`brainpipe.preprocess.calcium.preprocess_calcium`
for the order of operations.
"""

from __future__ import annotations

import logging

from brainpipe.data import make_provenance, read, write
from brainpipe.preprocess.calcium import preprocess_calcium
from brainpipe.stages._runner import cli, stage

INPUTS = {"traces": "calcium_traces .nc (raw)"}
OUTPUTS = {"processed": "calcium_traces .nc with dff and events"}
CONFIG = "calcium.preprocess"
log_ = logging.getLogger("brainpipe.stages.preprocess_calcium")


@stage
def run(inputs, outputs, params, log):
    traces = read(inputs["traces"], "calcium_traces")
    base, dec = params["baseline"], params["deconvolve"]
    out = preprocess_calcium(
        traces,
        neuropil_coef=float(params["neuropil_coef"]),
        window_s=float(base["window_s"]),
        percentile=float(base["percentile"]),
        tau_s=dec["tau_s"],
        min_event_snr=float(dec["min_event_snr"]),
        drop_bad_cells=bool(params["drop_bad_cells"]),
        source=str(inputs["traces"]),
    )
    n_ev = int((out["events"] > 0).sum())
    log_.info(
        "%d cells: %d events, median AR(1) g %.3f", out.sizes["cell"], n_ev, float(out["ar1_g"].median())
    )
    write(
        out,
        outputs["processed"],
        "calcium_traces",
        make_provenance("preprocess_calcium", params, [inputs["traces"]]),
    )


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
