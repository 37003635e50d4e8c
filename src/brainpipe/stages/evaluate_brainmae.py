"""Score the pretrained per-fold BrainMAE encoders on their dataset: masked-ROI NMSE on held-out fold 0 with encoder
0 (and with its ROI embeddings shuffled), encoder 0's ROI-embedding ARI vs the planted modules (simulated data),
linear probes on frozen features and full fine-tuning (subject-wise k-fold: test fold ``k`` uses encoder ``k``,
which never saw fold ``k``'s subjects) for the class label and the phenotype, each against the baselines file.

params: ``mask_ratio``, ``n_patterns``, ``seed``, ``features`` (probe read-out), ``finetune`` (mapping:
``enabled``, ``max_epochs``, ``lr``, ``patience``, ``batch_size``), ``bars``, ``dataset``, ``variant``, optionally
``checkpoint`` (fine-tuning runs checkpoint beside it, one file per fold and task).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from brainpipe.data import make_provenance, read, write
from brainpipe.errors import InputError
from brainpipe.evaluate import fmri as ev
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
}
OUTPUTS = {"metrics": "metrics .nc"}
log_ = logging.getLogger("brainpipe.stages.evaluate_brainmae")


def _finetune_cv(models, ds, task, y_sub, ft, ckpt, fp_base):
    """Fine-tune encoder ``k`` on fold ``k``'s training subjects (validation: fold ``(k + 1) % K``, as in its
    pretraining) and predict fold ``k``; pooled out-of-fold scores."""
    X = np.asarray(ds["signal"].values, dtype=np.float32)
    seg_sub = np.asarray(ds["segment_subject"].values)
    folds = np.asarray(ds["fold"].values)
    K = int(folds.max()) + 1
    pred = np.zeros(len(y_sub))
    score = np.zeros(len(y_sub))
    for k in range(K):
        test_sub = folds == k
        val_sub = folds == (k + 1) % K
        train_sub = ~test_sub & ~val_sub
        y = np.asarray(y_sub, dtype=np.float64)
        if task == "regression":
            mu, sd = y[train_sub].mean(), y[train_sub].std() + 1e-12
            y = (y - mu) / sd
        ys = y[seg_sub]
        if task == "classification":
            ys = ys.astype(np.int64)
        tr, va, te = train_sub[seg_sub], val_sub[seg_sub], test_sub[seg_sub]
        path = f"{ckpt}.finetune-{task}-{k}.pt" if ckpt else None
        fp = dict(fp_base, task=task, fold=k) if ckpt else None
        model = models[k]
        net = model.finetune(
            X[tr],
            ys[tr],
            task,
            X[va],
            ys[va],
            checkpoint=path,
            fingerprint=fp,
            log=log_,
            max_epochs=int(ft["max_epochs"]),
            lr=float(ft["lr"]),
            patience=ft.get("patience"),
            batch_size=int(ft.get("batch_size", 32)),
            warmup_steps=0,
        )
        out = model.predict_finetuned(net, X[te])
        subs = np.flatnonzero(test_sub)
        for s in subs:
            o = out[seg_sub[te] == s]
            if task == "classification":
                p = np.exp(o - o.max(1, keepdims=True))
                p = (p / p.sum(1, keepdims=True)).mean(0)
                pred[s], score[s] = np.argmax(p), p[-1]
            else:
                pred[s] = o[:, 0].mean() * sd + mu
        if path:
            Path(path).unlink(missing_ok=True)
    return ev.score_predictions(np.asarray(y_sub, dtype=np.float64), pred, score, task)


@stage
def run(inputs, outputs, params, log):
    params = dict(params)
    ckpt = params.pop("checkpoint", None)
    ds = read(inputs["clean"], "roi_segments")
    base = read(inputs["baselines"], "metrics")
    bvals = {str(k): float(v) for k, v in zip(base["metric"].values, base["value"].values, strict=True)}
    models = load_fold_models(inputs["weights"])
    if len(models) != ev.n_folds(ds):
        raise InputError(
            f"{inputs['weights']}: {len(models)} per-fold encoders but {inputs['clean']} has {ev.n_folds(ds)} folds; "
            "re-run pretrain_brainmae on this clean file"
        )
    model = models[0]  # never saw fold 0
    X = np.asarray(ds["signal"].values, dtype=np.float32)
    tr, _, te = ev.pretrain_split(ds)
    seed = int(params["seed"])
    values: dict[str, float] = {}
    # reconstruction on held-out data, same masks as the baselines
    patterns, index = ev.eval_masks(
        int(te.sum()), X.shape[2], float(params["mask_ratio"]), int(params["n_patterns"]), seed
    )
    masks = patterns[index]
    values["masked_nmse"] = ev.nmse(X[te], model.reconstruct(X[te], masks), masks)
    for b, name in (("nmse_ridge", "masked_nmse_vs_ridge"), ("nmse_mean_fill", "masked_nmse_vs_mean")):
        if b in bvals:
            values[name] = values["masked_nmse"] - bvals[b]
            values[b] = bvals[b]
    if model.roi_embedding == "learned":
        values["masked_nmse_shuffled_embeddings"] = ev.nmse(
            X[te], model.reconstruct(X[te], masks, shuffle_embeddings=True, seed=seed), masks
        )
    # ROI embeddings vs planted modules
    if inputs.get("truth"):
        truth = read(inputs["truth"], "model_fit")
        if "module" in truth:
            modules = truth["module"].sel(roi=ds["roi"].values).values
            values["roi_embedding_ari"] = ev.module_ari(model.roi_embeddings(), modules, seed)
    # downstream: probe on frozen features, then fine-tuning
    feats = params.get("features", "similarity")
    folds = np.asarray(ds["fold"].values)
    seg_sub = np.asarray(ds["segment_subject"].values)
    S: list = []

    def probe_features(a, b):  # test fold k: encoder k's features
        k = np.unique(folds[b])
        if len(k) != 1:
            raise AssertionError(f"a test set spans folds {k.tolist()}")
        return S[int(k[0])][a], S[int(k[0])][b]

    ft = dict(params.get("finetune") or {})
    fp_base = (
        stage_fingerprint("evaluate_brainmae", params, [inputs["clean"], inputs["weights"]]) if ckpt else {}
    )
    tasks = []
    if ev.has_labels(ds):
        tasks.append(("classification", np.asarray(ds["label"].values)))
    if ev.has_target(ds):
        tasks.append(("regression", np.asarray(ds["target"].values, dtype=np.float64)))
    if tasks:
        S[:] = [ev.subject_means(m.transform(X, feats), seg_sub, ds.sizes["subject"]) for m in models]
    for task, y in tasks:
        res = ev.cross_validate(probe_features, y, folds, task, seed=seed)
        for k, v in res.items():
            values[f"probe_{k}"] = v
        key = "accuracy" if task == "classification" else "r2"
        fc = [bvals[f"fc_{kind}_{key}"] for kind in ("correlation", "tangent") if f"fc_{kind}_{key}" in bvals]
        if fc:
            values[f"probe_{key}_vs_fc"] = values[f"probe_{key}"] - max(fc)
        if ft.get("enabled"):
            res = _finetune_cv(models, ds, task, y, ft, ckpt, fp_base)
            for k, v in res.items():
                values[f"finetune_{k}"] = v
    fit = read(inputs["fit"], "model_fit")
    values["pretrain_seconds"] = float(fit.attrs.get("train_seconds", np.nan))
    log_.info("metrics: %s", {k: round(v, 4) for k, v in values.items()})
    bars = {k: v for k, v in (params.get("bars") or {}).items() if k in values}
    m = metrics_dataset(values, bars, f"brainmae/{params.get('variant', '')}", str(params.get("dataset", "")))
    used = [inputs[k] for k in ("clean", "weights", "baselines", "fit") if inputs.get(k)] + (
        [inputs["truth"]] if inputs.get("truth") else []
    )
    write(
        m,
        outputs["metrics"],
        "metrics",
        make_provenance("evaluate_brainmae", params, used, seed=seed, device="cpu"),
    )


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
