"""Neuroformer metrics: connectivity against planted connections (vs lagged cross-correlation and a coupled
Poisson GLM), behaviour decoding (pretrained vs from scratch vs ridge/logistic on binned counts, at several label
fractions), and spike generation (per-window F1 of predicted neuron sets vs a Poisson-GLM generator). The baselines
and their scores live in :mod:`brainpipe.evaluate.neuroformer_baselines` and are re-exported here.

Every metric is "higher is better" (op ``>=``); names and descriptions are in :data:`DESCRIPTIONS` (patterns).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError
from brainpipe.evaluate.metrics import metrics_dataset
from brainpipe.evaluate.neuroformer_baselines import (
    balanced_accuracy,
    connectivity_scores,
    decoder_modality,
    decoding_features,
    direction_accuracy,
    glm_baseline,
    glm_generate,
    history_features,
    hub_scores,
    linear_decoder,
    modality_features,
    rate_hub_recall,
    set_f1,
    window_features,
    xcorr_connectivity,
    xcorr_residual_connectivity,
)
from brainpipe.models.neuroformer import Neuroformer, label_subset, pretrain_loss, r2_score

__all__ = [
    "DESCRIPTIONS",
    "READOUT_METHODS",
    "balanced_accuracy",
    "connectivity_scores",
    "decoder_modality",
    "decoding_features",
    "decoding_metrics",
    "describe",
    "direction_accuracy",
    "format_readout",
    "glm_baseline",
    "glm_generate",
    "history_features",
    "hub_scores",
    "linear_decoder",
    "modality_features",
    "neuroformer_metrics_dataset",
    "parse_readout",
    "rate_hub_recall",
    "score_neuroformer",
    "set_f1",
    "window_features",
    "xcorr_connectivity",
    "xcorr_residual_connectivity",
]

READOUT_METHODS = (
    "rollout",
    "cross",
    "grad",
    "ablation",
    "insert",
    "insert_dominant",
    "insert_range",
    "remove",
)

DESCRIPTIONS = {
    "connectivity_auroc": "AUROC of Neuroformer connectivity (the read-out of evaluate.connectivity_readouts, named in the connectivity file: an attention lift or an interventional rate ratio; its distance from 1 when some planted connections are inhibitory) for planted directed connections",
    "connectivity_auroc_xcorr": "the same for lagged cross-correlation of the binned counts (baseline)",
    "connectivity_auroc_glm": "the same for the coupling weights of a coupled Poisson GLM (baseline)",
    "connectivity_auroc_xcorr_resid": "the same for lagged cross-correlation of the counts' residuals after a least-squares fit on the model's modality variables and their squares (baseline with the model's covariates; plain cross-correlation when it has none)",
    "connectivity_auroc_vs_xcorr": "connectivity_auroc minus connectivity_auroc_xcorr (the bar: >= 0)",
    "connectivity_auroc_validation": "AUROC on the validation windows of the attention read-out chosen there (among evaluate.connectivity_readouts; its name in the connectivity file's attrs)",
    "connectivity_direction": "direction accuracy of Neuroformer connectivity: share of planted one-way connections j -> i scored higher (post i, pre j) than the reverse (i, j) (ties: 1/2; chance 0.5)",
    "connectivity_direction_xcorr": "the same for lagged cross-correlation (baseline)",
    "connectivity_direction_glm": "the same for the Poisson-GLM couplings (baseline)",
    "connectivity_direction_xcorr_resid": "the same for the residual cross-correlation (baseline)",
    "connectivity_direction_vs_xcorr": "connectivity_direction minus connectivity_direction_xcorr",
    "hub_recall": "fraction of planted hubs among the top-n_hubs neurons by the attention their past tokens receive",
    "hub_recall_xcorr": "the same by out-strength (positive z-scored weights) of lagged cross-correlation",
    "hub_recall_glm": "the same by out-strength of the Poisson-GLM couplings",
    "hub_recall_xcorr_resid": "the same by out-strength of the residual cross-correlation",
    "hub_recall_rate": "the same by firing rate on the train bins (trivial baseline; chance n_hubs/n_neurons with rate-matched hubs)",
    "hub_recall_vs_rate": "hub_recall minus hub_recall_rate",
    "generation_f1": "mean per-window F1 of the neuron set sampled by Neuroformer vs the recorded one (test windows)",
    "generation_f1_glm": "the same for windows sampled from a coupled Poisson GLM given the same past",
    "generation_f1_vs_glm": "generation_f1 minus generation_f1_glm",
    "pretrain_test_loss": "next-token cross-entropy (ID + dt, nats) of the pretrained model on the test windows (lower is better; no bar)",
}


def describe(name: str) -> str:
    """The description of a Neuroformer metric (also of the ``decode_<score>_<model>_<pct>`` family).

    Parameters
    ----------
    name : str
        The metric's name.

    Returns
    -------
    str
        Its description; ``""`` for a name this module does not know.
    """
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
    parts = name.split("_")
    if name.startswith("decode_") and len(parts) >= 4:
        score, model, pct = parts[1], "_".join(parts[2:-1]), parts[-1]
        what = {"r2": "R2", "bacc": "balanced accuracy"}.get(score, score)
        who = {
            "pretrained": "Neuroformer fine-tuned from the pretrained weights",
            "scratch": "the same network trained from scratch",
            "ridge": "ridge regression on the current and past windows' counts, penalty chosen on validation (baseline)",
            "logistic": "logistic regression on the current and past windows' counts, penalty chosen on validation (baseline)",
            "ridge_history": "ridge regression on the current window's bins and a few past-window chunks (baseline)",
            "logistic_history": "logistic regression on the current window's bins and a few past-window chunks (baseline)",
            "ridge_inputs": "ridge regression on the current and past windows' counts and the model's modality variables (baseline with the model's inputs)",
            "logistic_inputs": "logistic regression on the current and past windows' counts and the model's modality variables (baseline with the model's inputs)",
            "ridge_history_inputs": "ridge regression on the current window's bins, a few past-window chunks and the model's modality variables (baseline with the model's inputs)",
            "logistic_history_inputs": "logistic regression on the current window's bins, a few past-window chunks and the model's modality variables (baseline with the model's inputs)",
            "ridge_modality": "ridge regression on the model's modality variables alone (window means and their pairwise products; baseline: what the modality gives without spikes)",
            "logistic_modality": "logistic regression on the model's modality variables alone (window means and their pairwise products; baseline: what the modality gives without spikes)",
            "baseline": "the linear baseline with the best validation score among those given the model's inputs or part of them (counts, counts + history bins, and, when the model has modality variables, each of these with them and the modality variables alone)",
            "pretrained_vs_scratch": "pretrained minus from-scratch",
            "pretrained_vs_baseline": "pretrained minus the validation-chosen linear baseline",
        }.get(model, model)
        return f"behaviour decoding {what} on test windows, {who}, {pct.replace('pct', '%')} of the labelled train windows"
    return ""


def neuroformer_metrics_dataset(
    values: Mapping[str, float], bars: Mapping[str, float] | None, dataset: str
) -> xr.Dataset:
    """A ``metrics`` dataset for Neuroformer with the descriptions of :func:`describe`.

    Every metric is higher-is-better, except ``pretrain_test_loss``, which carries no bar.

    Parameters
    ----------
    values : mapping
        Metric name -> value.
    bars : mapping or None
        Metric name -> bar.
    dataset : str
        The dataset's name.

    Returns
    -------
    xarray.Dataset
        The ``metrics`` dataset (model ``neuroformer``).
    """
    bars = {k: v for k, v in (bars or {}).items() if k in values and k != "pretrain_test_loss"}
    ds = metrics_dataset(values, bars, model="neuroformer", dataset=dataset)
    ds["description"] = ("metric", np.array([describe(str(n)) for n in ds["metric"].values]))
    return ds


# ---- every metric of a fitted Neuroformer ----------------------------------------------------------------------
def parse_readout(readout: str) -> dict[str, object]:
    """The :meth:`Neuroformer.connectivity` arguments of a read-out name ``<method>/<by>[/rows]``.

    Methods: ``rollout``, ``cross``, ``grad``, ``ablation``, ``remove`` and ``insert`` (lags summed), with
    ``insert_dominant`` and ``insert_range`` for its other lag aggregates (``lags``).

    Parameters
    ----------
    readout : str
        E.g. ``rollout/target``, ``rollout/target/rows``, ``cross/query``, ``insert_range/target``.

    Returns
    -------
    dict
        ``method``, ``by`` and ``centre_rows`` (and ``lags`` for the ``insert`` methods).

    Raises
    ------
    ConfigError
        A name of another form (one line naming the allowed parts).
    """
    parts = str(readout).split("/")
    ok = (
        len(parts) in (2, 3)
        and parts[0] in READOUT_METHODS
        and parts[1] in ("target", "query")
        and (len(parts) == 2 or parts[2] == "rows")
    )
    if not ok:
        raise ConfigError(
            f"neuroformer evaluate.connectivity_readouts: {readout!r} is not <method>/<by>[/rows] with method in "
            f"{', '.join(READOUT_METHODS)} and by in target, query (e.g. rollout/target/rows)"
        )
    method, _, lags = parts[0].partition("_")
    out: dict[str, object] = {"method": method, "by": parts[1], "centre_rows": len(parts) == 3}
    if method == "insert":
        out["lags"] = lags or "sum"
    return out


def format_readout(r: Mapping[str, object]) -> str:
    """The name of a read-out given as :func:`parse_readout` arguments.

    Parameters
    ----------
    r : mapping
        ``method``, ``by`` and ``centre_rows`` (and ``lags``).

    Returns
    -------
    str
        ``<method>/<by>[/rows]``.
    """
    method = str(r["method"])
    if method == "insert" and r.get("lags", "sum") != "sum":
        method = f"insert_{r['lags']}"
    return f"{method}/{r['by']}" + ("/rows" if r.get("centre_rows") else "")


def _pct(f: float) -> str:
    return f"{f * 100:g}pct"


def decoding_metrics(
    ft: xr.Dataset, counts: xr.Dataset, model: Neuroformer, n_history: int = 4
) -> dict[str, float]:
    """Test scores of the fine-tuning runs, and of ridge/logistic on binned counts with the same labelled windows.

    Per start and fraction, the runs of the option chosen on validation (``run_chosen``) are scored and their
    scores averaged over the label draws (``run_draw``); the linear baselines are fitted on the same draws and
    averaged the same way.

    Two linear baselines, each with its penalty chosen on the labelled validation windows: on the current and
    past windows' counts (:func:`window_features`, ``ridge``/``logistic``) and on the current window's bins plus
    ``n_history`` chunks of the past window (:func:`history_features`, ``_history``). When the model has modality
    variables, both are also fitted with them (``_inputs``, ``_history_inputs``) and a fifth decoder sees them alone
    (``_modality``; :func:`decoding_features`; not a modality holding the target, which the model's decoder sees as
    absent: :func:`decoder_modality`), so the baselines have the model's inputs; ``baseline`` is the one with the
    best validation score, the one ``pretrained_vs_baseline`` is measured against.

    Parameters
    ----------
    ft : xarray.Dataset
        The fine-tuning runs' ``model_fit`` (:func:`brainpipe.training.neuroformer.finetune_neuroformer`).
    counts : xarray.Dataset
        The ``spike_counts`` dataset they were trained on.
    model : Neuroformer
        The pretrained model (its tokeniser is given the runs' target and refitted).
    n_history : int, default 4
        Chunks of the past window in the history baseline.

    Returns
    -------
    dict
        ``decode_<r2|bacc>_<run init, ridge[_history], logistic[_history] or baseline>_<pct>`` and the
        ``pretrained_vs_scratch`` and ``pretrained_vs_baseline`` differences, per label fraction.
    """
    kind = str(ft.attrs.get("target_kind", "regression"))
    score_name = "bacc" if kind == "classification" else "r2"
    score = balanced_accuracy if kind == "classification" else r2_score
    split = ft["window_split"].values
    te = split == SPLIT_FLAGS["test"]
    y = ft["target"].values
    n_run = ft.sizes["run"]
    chosen = ft["run_chosen"].values.astype(bool) if "run_chosen" in ft else np.ones(n_run, bool)
    draw = ft["run_draw"].values.astype(int) if "run_draw" in ft.coords else np.zeros(n_run, int)
    out: dict[str, float] = {}
    per: dict[str, list[float]] = {}
    n_draws: dict[float, int] = {}
    for r in np.flatnonzero(chosen):  # the option chosen on validation, each label draw
        init, frac = str(ft["run_init"].values[r]), float(ft["run_fraction"].values[r])
        per.setdefault(f"decode_{score_name}_{init}_{_pct(frac)}", []).append(
            score(y[te], ft["prediction"].values[r][te])
        )
        n_draws[frac] = max(n_draws.get(frac, 1), int(draw[r]) + 1)
    out.update({k: float(np.mean(v)) for k, v in per.items()})  # mean over the label draws
    # baseline on binned counts: same windows, same labelled train subsets (every draw), scores averaged
    tok = model.tokenizer_
    tok.target = {"source": ft.attrs["target_source"], "variable": ft.attrs["target_variable"], "kind": kind}
    tok.fit(counts)
    win = tok.transform(counts)
    lab = np.isfinite(win.target[:, 0])
    yc = np.asarray(counts["counts"].values)
    mod = decoder_modality(win.modality, tok)  # a modality holding the target is absent for the decoder too
    feats = decoding_features(yc, win.start, mod, tok.window_bins_, tok.past_bins_, n_history)
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
        nd = n_draws.get(float(frac), 1)
        acc: dict[str, list[float]] = {}
        for d in range(nd):
            keep = label_subset(tr_idx, float(frac), draw=d, n_draws=nd)
            best_val = -np.inf
            for suffix, X in feats.items():
                p, val = linear_decoder(X[keep], tgt[keep], X[va], tgt[va], X[tem], kind, with_score=True)
                te_score = score(tgt[tem], p)
                acc.setdefault(f"decode_{score_name}_{base}{suffix}_{_pct(frac)}", []).append(te_score)
                if suffix == "" or val > best_val:  # the better features on validation (ties: the simpler)
                    best_val, best_score = val, te_score
            acc.setdefault(f"decode_{score_name}_baseline_{_pct(frac)}", []).append(best_score)
        out.update({k: float(np.mean(v)) for k, v in acc.items()})
    for frac in sorted(set(ft["run_fraction"].values.tolist())):
        pk, sk, bk = (f"decode_{score_name}_{m}_{_pct(frac)}" for m in ("pretrained", "scratch", "baseline"))
        if sk in out:
            out[f"decode_{score_name}_pretrained_vs_scratch_{_pct(frac)}"] = out[pk] - out[sk]
        out[f"decode_{score_name}_pretrained_vs_baseline_{_pct(frac)}"] = out[pk] - out[bk]
    return out


def score_neuroformer(
    counts: xr.Dataset,
    model: Neuroformer,
    finetune: xr.Dataset | None = None,
    truth: xr.Dataset | None = None,
    seed: int = 0,
    n_samples: int = 5,
    max_windows: int = 400,
    connectivity_windows: int | None = None,
    connectivity_by: str = "target",
    temperature: float = 1.0,
    glm_alpha: float = 1e-4,
    glm_history_tau_s: float = 0.02,
    source: str = "counts",
    top_k: int | None = None,
    top_p: float | None = None,
    connectivity_readouts: Sequence[str] | None = None,
) -> tuple[dict[str, float], xr.Dataset]:
    """Every Neuroformer metric on the test windows: next-token loss, connectivity, generation and decoding.

    The test windows (at most ``max_windows``, evenly spread over the test blocks) give the pretrained model's
    next-token loss and the generation F1 (vs a coupled Poisson GLM given the same past, :func:`glm_generate`);
    attention-rollout connectivity is scored against planted connections with the lagged cross-correlation and
    the GLM's couplings as baselines (:func:`connectivity_scores`); the fine-tuning runs, when given, against
    ridge/logistic decoders (:func:`decoding_metrics`).

    Parameters
    ----------
    counts : xarray.Dataset
        A ``spike_counts`` dataset with the model's units.
    model : Neuroformer
        The pretrained model (on the device it should run on).
    finetune : xarray.Dataset, optional
        The fine-tuning runs' ``model_fit``; no decoding metrics without it.
    truth : xarray.Dataset, optional
        Planted truth (``connected``, optionally ``is_hub`` and ``weights``/``coupling`` on unit_post, unit_pre).
    seed : int, default 0
        Seed of the sampled windows.
    n_samples : int, default 5
        Samples per window for the generation F1.
    max_windows : int, default 400
        Most test windows scored.
    connectivity_windows : int, optional
        Most windows in the attention rollout (None: every test window).
    connectivity_by : str, default "target"
        How the rollout attributes attention (:meth:`Neuroformer.connectivity`).
    temperature : float, default 1.0
        Sampling temperature of the generation.
    glm_alpha : float, default 1e-4
        L2 penalty of the GLM baseline.
    glm_history_tau_s : float, default 0.02
        History time constant of the GLM baseline, in seconds.
    source : str, default "counts"
        What the counts are called in error messages.
    top_k : int, optional
        Top-k sampling in the generation (None: off).
    top_p : float, optional
        Nucleus (top-p) sampling in the generation (None: off).
    connectivity_readouts : sequence of str, optional
        Candidate connectivity read-outs, ``<method>/<by>`` with an optional ``/rows`` (the arguments of
        :meth:`Neuroformer.connectivity`, e.g. ``rollout/target/rows``). With planted truth and two or more
        candidates, each is scored (AUROC) on the validation windows and the best one alone is computed on the
        test windows (``connectivity_auroc_validation``; its name in the connectivity dataset's attrs); without
        truth the first is used. None: ``rollout/<connectivity_by>``.

    Returns
    -------
    values : dict
        Metric name -> value (:data:`DESCRIPTIONS`).
    connectivity : xarray.Dataset
        ``attention``, ``xcorr``, ``glm`` and ``xcorr_resid`` (unit_post, unit_pre) matrices and
        ``attention_received(unit_pre)``.

    Examples
    --------
    >>> from brainpipe.data import read
    >>> from brainpipe.models import Neuroformer
    >>> counts = read("counts.nc", "spike_counts")  # doctest: +SKIP
    >>> model = Neuroformer.from_dataset(read("pretrained.nc", "model_fit"), counts)  # doctest: +SKIP
    >>> values, conn = score_neuroformer(counts, model, truth=read("truth.nc", "model_fit"))  # doctest: +SKIP
    >>> values["connectivity_auroc"]  # doctest: +SKIP
    0.93
    """
    import torch

    dev = next(model.net_.parameters()).device
    values: dict[str, float] = {}
    tok = model.tokenizer_
    win = tok.transform(counts, source)
    test = win.select(win.split == SPLIT_FLAGS["test"])
    max_w = int(max_windows)
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

    # connectivity: the read-out chosen on the validation windows (with truth), then the test windows once
    units = np.asarray(counts["unit"].values).astype(str)
    readouts = [parse_readout(r) for r in (connectivity_readouts or [f"rollout/{connectivity_by}"])]
    n_conn = None if connectivity_windows is None else int(connectivity_windows)
    has_truth = truth is not None and "connected" in truth
    if has_truth:
        t = truth.assign_coords(
            unit_post=truth["unit_post"].astype(str), unit_pre=truth["unit_pre"].astype(str)
        )
        conn = np.asarray(t["connected"].sel(unit_post=units, unit_pre=units).values)
        hub = np.asarray(t["is_hub"].sel(unit_post=units).values) if "is_hub" in t else None
        w = next(
            (t[v] for v in ("weights", "coupling") if v in t and t[v].dims == ("unit_post", "unit_pre")), None
        )
        wv = (
            np.asarray(w.sel(unit_post=units, unit_pre=units).values)
            if w is not None
            else np.zeros(conn.shape)
        )
        signed = not bool((wv[conn.astype(bool)] < 0).any())  # excitatory-only truth: signed scores
    chosen, val_aucs = readouts[0], []
    if has_truth and len(readouts) > 1:
        for r in readouts:
            M = model.connectivity(counts, "validation", max_windows=n_conn, **r)
            val_aucs.append(connectivity_scores(M, conn, None, signed=signed, centre=1.0)[0])
        chosen = readouts[int(np.nanargmax(val_aucs))]
        values["connectivity_auroc_validation"] = float(np.nanmax(val_aucs))
    att = model.connectivity(counts, "test", max_windows=n_conn, **chosen)
    xc = xcorr_connectivity(counts["counts"].values, counts["split"].values, tok.past_bins_)
    glm, cov = glm_baseline(counts, model, glm_history_tau_s, glm_alpha)
    xres = xcorr_residual_connectivity(counts["counts"].values, counts["split"].values, tok.past_bins_, cov)
    mats = {"attention": att, "xcorr": xc, "glm": glm.coupling_, "xcorr_resid": xres}
    if has_truth:
        for name, suffix in (
            ("attention", ""),
            ("xcorr", "_xcorr"),
            ("glm", "_glm"),
            ("xcorr_resid", "_xcorr_resid"),
        ):
            hs = model.attention_received_ if name == "attention" else None
            centre = 1.0 if name == "attention" else 0.0
            auc, rec = connectivity_scores(mats[name], conn, hub, hs, signed=signed, centre=centre)
            values[f"connectivity_auroc{suffix}"] = auc
            values[f"connectivity_direction{suffix}"] = direction_accuracy(mats[name], conn, signed, centre)
            if hub is not None:
                values[f"hub_recall{suffix}"] = rec
        for m in ("auroc", "direction"):
            values[f"connectivity_{m}_vs_xcorr"] = (
                values[f"connectivity_{m}"] - values[f"connectivity_{m}_xcorr"]
            )
        if hub is not None:
            values["hub_recall_rate"] = rate_hub_recall(counts["counts"].values, counts["split"].values, hub)
            values["hub_recall_vs_rate"] = values["hub_recall"] - values["hub_recall_rate"]

    # generation
    sampled = model.generate(
        test, n_samples=int(n_samples), temperature=float(temperature), seed=seed, top_k=top_k, top_p=top_p
    )
    values["generation_f1"] = set_f1(test.window_counts, sampled)
    yc = np.asarray(counts["counts"].values)
    g = glm_generate(glm, yc, cov, test.start, tok.window_bins_, tok.past_bins_, int(n_samples), seed)
    values["generation_f1_glm"] = set_f1(test.window_counts, g)
    values["generation_f1_vs_glm"] = values["generation_f1"] - values["generation_f1_glm"]

    # decoding
    if finetune is not None:
        values.update(decoding_metrics(finetune, counts, model))
    descriptions = [
        "attention-rollout lift, current -> past tokens",
        "summed lagged cross-correlation",
        "Poisson-GLM coupling",
        "summed lagged cross-correlation of the counts' residuals after the modality covariates",
    ]
    cds = xr.Dataset(
        {
            k: (("unit_post", "unit_pre"), v.astype(np.float64), {"long_name": d})
            for (k, v), d in zip(mats.items(), descriptions, strict=True)
        },
        coords={"unit_post": units, "unit_pre": units},
        attrs={
            "model": "neuroformer_connectivity",
            "role": "fit",
            "attention_readout": format_readout(chosen),
            "attention_readout_candidates": json.dumps([format_readout(r) for r in readouts]),
            "attention_readout_validation_auroc": json.dumps([round(float(v), 6) for v in val_aucs]),
        },
    )
    cds["attention_received"] = (
        "unit_pre",
        model.attention_received_,
        {"long_name": "attention per past token (hub score)"},
    )
    return values, cds
