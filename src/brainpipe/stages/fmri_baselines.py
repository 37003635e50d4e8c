"""Baselines of an fMRI dataset on the evaluation protocol of brainpipe.evaluate.fmri: masked-ROI reconstruction by
mean filling and by ridge regression (fitted on the training subjects), and functional connectivity (correlation,
tangent) + logistic/ridge for the downstream tasks, subject-wise k-fold.

params: ``mask_ratio``, ``n_patterns``, ``seed``, ``ridge_alpha``, ``dataset``.
"""

from __future__ import annotations

import logging

from brainpipe.data import make_provenance, read, write
from brainpipe.evaluate.fmri import baseline_metrics
from brainpipe.evaluate.metrics import metrics_dataset
from brainpipe.stages._runner import cli, stage

INPUTS = {"clean": "roi_segments .nc"}
OUTPUTS = {"metrics": "metrics .nc"}
log_ = logging.getLogger("brainpipe.stages.fmri_baselines")


@stage
def run(inputs, outputs, params, log):
    ds = read(inputs["clean"], "roi_segments")
    values = baseline_metrics(ds, params)
    log_.info("baselines: %s", {k: round(v, 4) for k, v in values.items()})
    m = metrics_dataset(values, {}, "fmri_baselines", str(params.get("dataset", "")))
    write(
        m,
        outputs["metrics"],
        "metrics",
        make_provenance("fmri_baselines", params, [inputs["clean"]], seed=params.get("seed"), device="cpu"),
    )


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
