"""Score a fitted coupled GLM: held-out bits per spike, and recovery of planted weights when truth exists.

params: ``bars`` (metric name -> bar; the comparison direction is the metric's own), ``dataset`` (name stored
in the metrics file; default: the folder of the counts file, as in ``results/spikes/<dataset>/counts.nc``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from brainpipe.data import make_provenance, read, write
from brainpipe.evaluate import glm_metrics, metrics_dataset
from brainpipe.stages._runner import cli, stage

INPUTS = {
    "fit": "model_fit .nc",
    "counts": "spike_counts .nc",
    "truth": "optional: planted truth (model_fit .nc)",
}
OUTPUTS = {"metrics": "metrics .nc"}
log_ = logging.getLogger("brainpipe.stages.evaluate_poisson_glm")


@stage
def run(inputs, outputs, params, log):
    fit = read(inputs["fit"], "model_fit")
    counts = read(inputs["counts"], "spike_counts")
    truth = read(inputs["truth"], "model_fit") if inputs.get("truth") else None
    values = glm_metrics(fit, counts, truth)
    for k, v in values.items():
        log_.info("%s = %.4f", k, v)
    dataset = str(params.get("dataset") or Path(inputs["counts"]).parent.name)
    ds = metrics_dataset(values, params.get("bars", {}), model=fit.attrs["model"], dataset=dataset)
    used = [p for p in (inputs["fit"], inputs["counts"], inputs.get("truth")) if p]
    write(ds, outputs["metrics"], "metrics", make_provenance("evaluate_poisson_glm", params, used))


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
