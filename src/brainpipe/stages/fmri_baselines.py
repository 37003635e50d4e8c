"""Baselines of an fMRI dataset on the evaluation protocol of brainpipe.evaluate.fmri
(:func:`~brainpipe.evaluate.fmri.baseline_metrics`): masked-ROI reconstruction by mean filling, ridge (same volume;
whole segment) and a linear autoencoder (PCA), fitted on the training folds with their hyperparameters chosen by
inner cross-validation there; clustering of the FC rows vs the planted modules (simulated data); functional
connectivity (correlation, tangent) + logistic/ridge for the downstream tasks, subject-wise k-fold.

params: ``mask_ratio``, ``n_patterns``, ``seed``, ``dataset``.
"""

from __future__ import annotations

import logging

from brainpipe.data import make_provenance, read, write
from brainpipe.evaluate.fmri import baseline_metrics
from brainpipe.evaluate.metrics import metrics_dataset
from brainpipe.stages._runner import cli, stage

INPUTS = {"clean": "roi_segments .nc", "truth": "optional: planted truth (model_fit)"}
OUTPUTS = {"metrics": "metrics .nc"}
log_ = logging.getLogger("brainpipe.stages.fmri_baselines")


@stage
def run(inputs, outputs, params, log):
    ds = read(inputs["clean"], "roi_segments")
    truth = read(inputs["truth"], "model_fit") if inputs.get("truth") else None
    modules = (
        truth["module"].sel(roi=ds["roi"].values).values if truth is not None and "module" in truth else None
    )
    values = baseline_metrics(ds, params, modules)
    log_.info("baselines: %s", {k: round(v, 4) for k, v in values.items()})
    m = metrics_dataset(values, {}, "fmri_baselines", str(params.get("dataset", "")))
    write(
        m,
        outputs["metrics"],
        "metrics",
        make_provenance(
            "fmri_baselines",
            params,
            [inputs[k] for k in ("clean", "truth") if inputs.get(k)],
            seed=params.get("seed"),
            device="cpu",
        ),
    )


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
