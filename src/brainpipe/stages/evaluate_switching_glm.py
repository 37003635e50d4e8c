"""Score a switching GLM: held-out bits/spike, against reference fits, and against the planted truth if any; how
long its decoded states last (``state_dwell_median_s``); on
recordings with task variables (trial epochs and stimuli, running), the decoded states against them
(:func:`brainpipe.evaluate.switching.task_metrics`) and against a non-HMM baseline, k-means clusters of the
smoothed population rate (:func:`brainpipe.evaluate.switching_clusters.cluster_states`).

params: ``bars`` (metric name -> bar; they apply to switching fits, i.e. more than one state: a single-state
fit is a baseline and carries no bars), ``dataset`` and ``variant`` (names stored in the metrics file).
Inputs ``references`` are other variants' fits on the same data (e.g. the single-state GLM and the HMM-GLM
without prior), named by their folder (``.../switching_glm/<variant>/fit.nc``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from brainpipe.data import make_provenance, read, write
from brainpipe.evaluate import metrics_dataset
from brainpipe.evaluate.switching import (
    EPOCH_EDGES_S,
    SPEED_SMOOTH_S,
    dwell_metrics,
    switching_metrics,
    task_metrics,
    task_variables,
)
from brainpipe.evaluate.switching_clusters import CLUSTER_RESTARTS, cluster_states
from brainpipe.stages._runner import cli, stage

INPUTS = {
    "fit": "model_fit .nc (switching GLM)",
    "counts": "spike_counts .nc",
    "truth": "optional: planted truth (model_fit .nc)",
    "references": "optional: fits of reference variants (model_fit .nc, in <variant>/fit.nc folders)",
}
OUTPUTS = {"metrics": "metrics .nc"}
log_ = logging.getLogger("brainpipe.stages.evaluate_switching_glm")
TASK_SHUFFLES, TASK_SEED = 200, 0  # the shuffled nulls of the decoded states against task variables


def _as_list(v):
    return [] if v is None else (v if isinstance(v, list) else [v])


@stage
def run(inputs, outputs, params, log):
    fit = read(inputs["fit"], "model_fit")
    counts = read(inputs["counts"], "spike_counts")
    truth = read(inputs["truth"], "model_fit") if inputs.get("truth") else None
    refs = {Path(p).parent.name: read(p, "model_fit") for p in _as_list(inputs.get("references"))}
    values = switching_metrics(fit, counts, truth, refs)
    values.update(dwell_metrics(fit, counts))
    clusters = None
    if fit.sizes["state"] > 1 and "posterior" in fit and task_variables(counts):
        clusters = cluster_states(counts, fit.sizes["state"], seed=TASK_SEED)
    values.update(
        task_metrics(fit, counts, refs, n_shuffles=TASK_SHUFFLES, seed=TASK_SEED, clusters=clusters)
    )
    for k, v in values.items():
        log_.info("%s = %.4f", k, v)
    variant = str(params.get("variant") or Path(inputs["fit"]).parent.name)
    dataset = str(params.get("dataset") or Path(inputs["counts"]).parent.name)
    bars = params.get("bars", {}) if fit.sizes["state"] > 1 else {}
    ds = metrics_dataset(values, bars, model=f"switching_glm/{variant}", dataset=dataset)
    ds.attrs["prior"] = fit.attrs.get("prior", "")
    ds.attrs["n_states"] = int(fit.sizes["state"])
    if any(k.startswith("task_mi_") for k in values):
        ds.attrs["task_variables"] = (
            f"test bins; epoch edges {list(EPOCH_EDGES_S)} s from trial start; running: speed of the position "
            f"smoothed over {SPEED_SMOOTH_S} s above Otsu's threshold on log(1 + speed); {TASK_SHUFFLES} "
            f"shuffles (seed {TASK_SEED}): states shifted circularly within blocks, or trials' values permuted"
        )
    if clusters is not None:
        ds.attrs["task_clusters"] = (
            f"non-HMM baseline: k-means ({CLUSTER_RESTARTS} restarts, seed {TASK_SEED}) with "
            f"{fit.sizes['state']} clusters on the sqrt of the population rate smoothed over a boxcar of half-width "
            f"{clusters.half_window_s:g} s (chosen on the {clusters.selected_on} bins from "
            f"{sorted(clusters.scores)} s by the Poisson log-likelihood per bin of the counts given the cluster "
            "of the bin's neighbours: "
            + ", ".join(f"{h:g} s {v:.4f}" for h, v in sorted(clusters.scores.items()))
            + "), fitted on the train bins, the same mutual information and null"
        )
    used = (
        [inputs["fit"], inputs["counts"]]
        + ([inputs["truth"]] if inputs.get("truth") else [])
        + _as_list(inputs.get("references"))
    )
    write(ds, outputs["metrics"], "metrics", make_provenance("evaluate_switching_glm", params, used))


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
