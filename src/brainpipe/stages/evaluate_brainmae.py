"""Score the pretrained per-fold BrainMAE encoders on their dataset (:func:`brainpipe.evaluate.brainmae.score_encoders`):
masked-ROI NMSE on held-out fold 0 with encoder 0 (and with its ROI embeddings shuffled), encoder 0's ROI-embedding
ARI vs the planted modules (simulated data), linear probes on frozen features and full fine-tuning (subject-wise
k-fold: test fold ``k`` uses encoder ``k``, which never saw fold ``k``'s subjects) for the class label and the
phenotype, each against the baselines file. Encoders trained with several seeds are scored seed by seed and reported
over seeds (:func:`brainpipe.evaluate.brainmae.over_seeds`: the mean, ``<metric>_sd``, ``<metric>_worst``).

params: ``mask_ratio``, ``n_patterns``, ``seed``, ``features`` (probe read-out), ``finetune`` (mapping:
``enabled``, ``max_epochs``, ``lr``, ``patience``, ``batch_size``), ``bars``, ``dataset``, ``variant``, optionally
``checkpoint`` (fine-tuning runs checkpoint beside it, one file per fold and task), ``ablation_bars``. An ablation
variant is given the base variant's metrics (input ``base``): it gets ``<metric>_vs_base`` (ablation minus base) with
the bars ``ablation_bars`` (the base wins) instead of the baselines' bars
(:func:`brainpipe.evaluate.fmri.versus_base`).
"""

from __future__ import annotations

import logging

import numpy as np

from brainpipe.data import make_provenance, read, write
from brainpipe.evaluate.brainmae import by_seed, over_seeds, score_encoders
from brainpipe.evaluate.fmri import versus_base
from brainpipe.evaluate.metrics import metrics_dataset
from brainpipe.models.brainmae import load_fold_models
from brainpipe.stages._runner import cli, stage
from brainpipe.training import stage_fingerprint

INPUTS = {
    "clean": "roi_segments .nc",
    "weights": "BrainMAE weights, one encoder per outer fold",
    "baselines": "baseline metrics .nc",
    "fit": "model_fit .nc of the pretraining",
    "truth": "optional: planted truth (model_fit)",
    "base": "optional: the base variant's metrics .nc (an ablation is judged against it)",
}
OUTPUTS = {"metrics": "metrics .nc"}
log_ = logging.getLogger("brainpipe.stages.evaluate_brainmae")


@stage
def run(inputs, outputs, params, log):
    params = dict(params)
    ckpt = params.pop("checkpoint", None)
    ds = read(inputs["clean"], "roi_segments")
    base = read(inputs["baselines"], "metrics")
    truth = read(inputs["truth"], "model_fit") if inputs.get("truth") else None
    modules = (
        truth["module"].sel(roi=ds["roi"].values).values if truth is not None and "module" in truth else None
    )
    fit = read(inputs["fit"], "model_fit")
    fp = (
        stage_fingerprint("evaluate_brainmae", params, [inputs["clean"], inputs["weights"]]) if ckpt else None
    )
    groups = by_seed(load_fold_models(inputs["weights"]))
    runs = {}
    for sd, models in groups.items():
        runs[sd] = score_encoders(
            ds,
            models,
            mask_ratio=float(params["mask_ratio"]),
            n_patterns=int(params["n_patterns"]),
            seed=int(params["seed"]),
            features=params.get("features", "similarity"),
            baselines=dict(
                zip(base["metric"].values.astype(str), base["value"].values.astype(float), strict=True)
            ),
            modules=modules,
            finetune=params.get("finetune"),
            checkpoint=f"{ckpt}.seed-{sd}" if ckpt and len(groups) > 1 else ckpt,
            fingerprint=fp,
            source=f"{inputs['weights']} (for {inputs['clean']})",
            log=log_,
        )
    values = over_seeds(runs)
    values["pretrain_seconds"] = float(fit.attrs.get("train_seconds", np.nan))
    log_.info("metrics: %s", {k: round(v, 4) for k, v in values.items()})
    bars = {k: v for k, v in (params.get("bars") or {}).items() if k in values}
    if inputs.get("base"):  # an ablation: judged against the base variant, not held to the baselines' bars
        bm = read(inputs["base"], "metrics")
        base_values = dict(
            zip(bm["metric"].values.astype(str), bm["value"].values.astype(float), strict=True)
        )
        values, bars = versus_base(values, base_values, params.get("ablation_bars"))
    m = metrics_dataset(values, bars, f"brainmae/{params.get('variant', '')}", str(params.get("dataset", "")))
    used = [inputs[k] for k in ("clean", "weights", "baselines", "fit", "truth", "base") if inputs.get(k)]
    prov = make_provenance("evaluate_brainmae", params, used, seed=int(params["seed"]), device="cpu")
    write(m, outputs["metrics"], "metrics", prov)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
