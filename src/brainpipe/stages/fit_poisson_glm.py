"""Fit the baseline coupled Poisson GLM (per neuron, scikit-learn) on the train split of binned counts.

params: ``history_tau_s``, ``alpha`` (number, or list chosen on validation), ``use_behaviour``, ``max_iter``.
"""

from __future__ import annotations

import logging

import numpy as np

from brainpipe.data import make_provenance, read, write
from brainpipe.models import PoissonGLM
from brainpipe.stages._runner import cli, stage

INPUTS = {"counts": "spike_counts .nc"}
OUTPUTS = {"fit": "model_fit .nc (role fit)"}
CONFIG = "spikes.poisson_glm"
log_ = logging.getLogger("brainpipe.stages.fit_poisson_glm")


@stage
def run(inputs, outputs, params, log):
    counts = read(inputs["counts"], "spike_counts")
    model = PoissonGLM(**{k: v for k, v in params.items() if k != "enabled"}).fit(counts)
    ds = model.to_dataset()
    ds.attrs["train_ll_per_spike"] = model.score(counts, "train")
    ds.attrs["validation_ll_per_spike"] = (
        model.score(counts, "validation") if np.any(counts["split"] == 1) else np.nan
    )
    log_.info("alpha=%g validation scores=%s", model.alpha_, model.val_scores_)
    write(ds, outputs["fit"], "model_fit", make_provenance("fit_poisson_glm", params, [inputs["counts"]]))


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
