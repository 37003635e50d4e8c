"""Score a Neuroformer: behaviour decoding (pretrained vs scratch vs ridge/logistic on binned counts, per label
fraction), attention connectivity (vs planted connections, lagged cross-correlation and a coupled Poisson GLM)
and spike generation (per-window F1 vs a Poisson-GLM generator), on the test windows, once.

params: the dataset's resolved neuroformer config (see :mod:`brainpipe.stages._neuroformer`), of which this stage
reads ``evaluate`` (``n_samples``, ``max_windows``, ``connectivity_windows``, ``temperature``, ``connectivity_by``,
``glm_alpha``, ``glm_history_tau_s``), ``bars``, ``seed``, ``dataset``. Outputs: ``metrics`` and ``connectivity`` (a
``model_fit`` with the three neuron x neuron matrices ``attention``, ``xcorr``, ``glm`` on (unit_post, unit_pre)).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import xarray as xr

from brainpipe.data import make_provenance, read, write
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.evaluate.neuroformer import (
    balanced_accuracy,
    connectivity_scores,
    glm_generate,
    linear_decoder,
    neuroformer_metrics_dataset,
    set_f1,
    window_features,
    xcorr_connectivity,
)
from brainpipe.models.baselines import PoissonGLM
from brainpipe.models.neuroformer import Neuroformer, label_subset, pretrain_loss, r2_score
from brainpipe.stages._runner import cli, stage

INPUTS = {
    "counts": "spike_counts .nc",
    "pretrained": "model_fit .nc (pretrained neuroformer)",
    "finetune": "optional: model_fit .nc (fine-tuning runs' predictions); no decoding metrics without it",
    "truth": "optional: planted truth (model_fit .nc with weights/connected on unit_post, unit_pre)",
}
OUTPUTS = {"metrics": "metrics .nc", "connectivity": "model_fit .nc (attention, xcorr and GLM connectivity)"}
log_ = logging.getLogger("brainpipe.stages.neuroformer_evaluate")


def _pct(f: float) -> str:
    return f"{f * 100:g}pct"


def decoding_metrics(ft: xr.Dataset, counts: xr.Dataset, model: Neuroformer) -> dict[str, float]:
    """Test scores of every fine-tuning run, plus ridge/logistic on binned counts with the same labelled windows."""
    kind = str(ft.attrs.get("target_kind", "regression"))
    score_name = "bacc" if kind == "classification" else "r2"
    score = balanced_accuracy if kind == "classification" else r2_score
    split = ft["window_split"].values
    te = split == SPLIT_FLAGS["test"]
    y = ft["target"].values
    out: dict[str, float] = {}
    for r in range(ft.sizes["run"]):
        init, frac = str(ft["run_init"].values[r]), float(ft["run_fraction"].values[r])
        out[f"decode_{score_name}_{init}_{_pct(frac)}"] = score(y[te], ft["prediction"].values[r][te])
    # baseline on binned counts: same windows, same labelled train subset
    tok = model.tokenizer_
    tok.target = {"source": ft.attrs["target_source"], "variable": ft.attrs["target_variable"], "kind": kind}
    tok.fit(counts)
    win = tok.transform(counts)
    lab = np.isfinite(win.target[:, 0])
    yc = np.asarray(counts["counts"].values)
    X = window_features(yc, win.start, tok.window_bins_, tok.past_bins_)
    tgt = (
        win.target[:, 0]
        if kind != "classification"
        else tok.classes_[np.nan_to_num(win.target[:, 0]).astype(int)]
    )
    tr_idx = np.flatnonzero((win.split == SPLIT_FLAGS["train"]) & lab)
    va = (win.split == SPLIT_FLAGS["validation"]) & lab
    tem = (win.split == SPLIT_FLAGS["test"]) & lab
    base = "logistic" if kind == "classification" else "ridge"
    for frac in sorted(set(ft["run_fraction"].values.tolist())):
        keep = label_subset(tr_idx, float(frac))
        p = linear_decoder(X[keep], tgt[keep], X[va], tgt[va], X[tem], kind)
        out[f"decode_{score_name}_{base}_{_pct(frac)}"] = score(tgt[tem], p)
    for frac in sorted(set(ft["run_fraction"].values.tolist())):
        pk, sk, bk = (f"decode_{score_name}_{m}_{_pct(frac)}" for m in ("pretrained", "scratch", base))
        if sk in out:
            out[f"decode_{score_name}_pretrained_vs_scratch_{_pct(frac)}"] = out[pk] - out[sk]
        out[f"decode_{score_name}_pretrained_vs_baseline_{_pct(frac)}"] = out[pk] - out[bk]
    return out


def _glm(counts: xr.Dataset, model: Neuroformer, params: dict) -> tuple[PoissonGLM, np.ndarray]:
    """A coupled Poisson GLM with the Neuroformer's modality variables as covariates (same information)."""
    ev = params.get("evaluate", {})
    tok = model.tokenizer_
    cov = [tok._variables(counts, src, v, f"modality '{n}'", "counts") for n, src, v in tok.mod_layout_]
    ds = counts[["counts", "split"]]
    if cov:
        X = np.concatenate(cov, axis=1)
        ds = ds.assign(behaviour=(("time", "behaviour_var"), X)).assign_coords(
            behaviour_var=[f"v{i}" for i in range(X.shape[1])]
        )
    glm = PoissonGLM(
        history_tau_s=float(ev.get("glm_history_tau_s", 0.02)),
        alpha=float(ev.get("glm_alpha", 1e-4)),
        max_iter=200,
    )
    glm.fit(ds)
    return glm, (np.concatenate(cov, axis=1) if cov else np.zeros((counts.sizes["time"], 0)))


@stage
def run(inputs, outputs, params, log):
    counts = read(inputs["counts"], "spike_counts")
    pre = read(inputs["pretrained"], "model_fit")
    ev = dict(params.get("evaluate", {}))
    seed = int(params.get("seed", 0))
    model = Neuroformer.from_dataset(pre, counts, source=str(inputs["pretrained"]))
    dev = torch.device("cpu")
    try:
        from brainpipe.training import resolve_device

        dev = resolve_device(str(params.get("pretrain", {}).get("device", "auto")))
    except ImportError:  # pragma: no cover - the training loop ships with brainpipe
        pass
    model.net_.to(dev)
    values: dict[str, float] = {}
    tok = model.tokenizer_
    win = tok.transform(counts, str(inputs["counts"]))
    test = win.select(win.split == SPLIT_FLAGS["test"])
    max_w = int(ev.get("max_windows", 400))
    if len(test) > max_w:  # evenly spread over the test blocks
        test = test.select(
            np.isin(np.arange(len(test)), np.linspace(0, len(test) - 1, max_w).round().astype(int))
        )
    with torch.no_grad():
        losses = [
            float(pretrain_loss(model.net_, [t[i : i + 256].to(dev) for t in test.tensors()])["loss"])
            * min(256, len(test) - i)
            for i in range(0, len(test), 256)
        ]
    values["pretrain_test_loss"] = float(np.sum(losses) / max(len(test), 1))

    # connectivity
    units = np.asarray(counts["unit"].values).astype(str)
    cw = ev.get("connectivity_windows")
    att = model.connectivity(
        counts,
        "test",
        by=str(ev.get("connectivity_by", "target")),
        max_windows=None if cw is None else int(cw),
    )
    xc = xcorr_connectivity(counts["counts"].values, counts["split"].values, tok.past_bins_)
    glm, cov = _glm(counts, model, params)
    mats = {"attention": att, "xcorr": xc, "glm": glm.coupling_}
    truth = read(inputs["truth"], "model_fit") if inputs.get("truth") else None
    if truth is not None and "connected" in truth:
        t = truth.assign_coords(
            unit_post=truth["unit_post"].astype(str), unit_pre=truth["unit_pre"].astype(str)
        )
        conn = np.asarray(t["connected"].sel(unit_post=units, unit_pre=units).values)
        hub = np.asarray(t["is_hub"].sel(unit_post=units).values) if "is_hub" in t else None
        w = next(
            (t[v] for v in ("weights", "coupling") if v in t and t[v].dims == ("unit_post", "unit_pre")), None
        )
        wv = np.asarray(w.sel(unit_post=units, unit_pre=units).values) if w is not None else np.zeros(1)
        signed = not bool((wv[conn.astype(bool)] < 0).any())  # excitatory-only truth: signed scores
        for name, suffix in (("attention", ""), ("xcorr", "_xcorr"), ("glm", "_glm")):
            hs = model.attention_received_ if name == "attention" else None
            auc, rec = connectivity_scores(
                mats[name], conn, hub, hs, signed=signed, centre=1.0 if name == "attention" else 0.0
            )
            values[f"connectivity_auroc{suffix}"] = auc
            if hub is not None:
                values[f"hub_recall{suffix}"] = rec

    # generation
    n_s = int(ev.get("n_samples", 5))
    sampled = model.generate(test, n_samples=n_s, temperature=float(ev.get("temperature", 1.0)), seed=seed)
    values["generation_f1"] = set_f1(test.window_counts, sampled)
    yc = np.asarray(counts["counts"].values)
    g = glm_generate(glm, yc, cov, test.start, tok.window_bins_, tok.past_bins_, n_s, seed)
    values["generation_f1_glm"] = set_f1(test.window_counts, g)
    values["generation_f1_vs_glm"] = values["generation_f1"] - values["generation_f1_glm"]

    # decoding
    used = [inputs["counts"], inputs["pretrained"]]
    if inputs.get("finetune"):
        ft = read(inputs["finetune"], "model_fit")
        values.update(decoding_metrics(ft, counts, model))
        used.append(inputs["finetune"])
    for k, v in values.items():
        log_.info("%s = %.4f", k, v)
    dataset = str(params.get("dataset") or inputs["counts"].parent.name)
    m = neuroformer_metrics_dataset(values, params.get("bars", {}), dataset)
    m.attrs.update({f"tokens_{k}": int(v) for k, v in tok.stats_.items()})
    if truth is not None:
        used.append(inputs["truth"])
    prov = make_provenance("neuroformer_evaluate", params, used, seed=seed, device=str(dev))
    cds = xr.Dataset(
        {
            k: (("unit_post", "unit_pre"), v.astype(np.float64), {"long_name": d})
            for (k, v), d in zip(
                mats.items(),
                [
                    "attention-rollout lift, current -> past tokens",
                    "summed lagged cross-correlation",
                    "Poisson-GLM coupling",
                ],
                strict=True,
            )
        },
        coords={"unit_post": units, "unit_pre": units},
        attrs={"model": "neuroformer_connectivity", "role": "fit", "dataset": dataset},
    )
    cds["attention_received"] = (
        "unit_pre",
        model.attention_received_,
        {"long_name": "attention per past token (hub score)"},
    )
    write(cds, outputs["connectivity"], "model_fit", prov)
    write(m, outputs["metrics"], "metrics", prov)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
