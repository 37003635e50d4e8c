"""Neuroformer metrics: connectivity against planted connections (vs lagged cross-correlation and a coupled
Poisson GLM), behaviour decoding (pretrained vs from scratch vs ridge/logistic on binned counts, at several label
fractions), and spike generation (per-window F1 of predicted neuron sets vs a Poisson-GLM generator).

Every metric is "higher is better" (op ``>=``); names and descriptions are in :data:`DESCRIPTIONS` (patterns).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.evaluate.metrics import auroc, metrics_dataset
from brainpipe.models.baselines import PoissonGLM

DESCRIPTIONS = {
    "connectivity_auroc": "AUROC of Neuroformer attention-rollout connectivity (lift, or its distance from 1 when some planted connections are inhibitory) for planted directed connections",
    "connectivity_auroc_xcorr": "the same for lagged cross-correlation of the binned counts (baseline)",
    "connectivity_auroc_glm": "the same for the coupling weights of a coupled Poisson GLM (baseline)",
    "hub_recall": "fraction of planted hubs among the top-n_hubs neurons by the attention their past tokens receive",
    "hub_recall_xcorr": "the same by out-strength (positive z-scored weights) of lagged cross-correlation",
    "hub_recall_glm": "the same by out-strength of the Poisson-GLM couplings",
    "generation_f1": "mean per-window F1 of the neuron set sampled by Neuroformer vs the recorded one (test windows)",
    "generation_f1_glm": "the same for windows sampled from a coupled Poisson GLM given the same past",
    "generation_f1_vs_glm": "generation_f1 minus generation_f1_glm",
    "pretrain_test_loss": "next-token cross-entropy (ID + dt, nats) of the pretrained model on the test windows (lower is better; no bar)",
}


def describe(name: str) -> str:
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
    parts = name.split("_")
    if name.startswith("decode_") and len(parts) >= 4:
        score, model, pct = parts[1], "_".join(parts[2:-1]), parts[-1]
        what = {"r2": "R2", "bacc": "balanced accuracy"}.get(score, score)
        who = {
            "pretrained": "Neuroformer fine-tuned from the pretrained weights",
            "scratch": "the same network trained from scratch",
            "ridge": "ridge regression on binned counts (baseline)",
            "logistic": "logistic regression on binned counts (baseline)",
            "pretrained_vs_scratch": "pretrained minus from-scratch",
            "pretrained_vs_baseline": "pretrained minus the ridge/logistic baseline",
        }.get(model, model)
        return f"behaviour decoding {what} on test windows, {who}, {pct.replace('pct', '%')} of the labelled train windows"
    return ""


# ---- connectivity ---------------------------------------------------------------------------------------------
def xcorr_connectivity(counts: np.ndarray, split: np.ndarray, max_lag_bins: int) -> np.ndarray:
    """Lagged cross-correlation (post, pre): ``C[i, j] = sum_{l=1..L} corr(y_i(t), y_j(t - l))`` over train bins
    (pairs crossing a split boundary are left out)."""
    y = np.asarray(counts, dtype=np.float64)
    tr = split == SPLIT_FLAGS["train"]
    mu, sd = y[tr].mean(0), y[tr].std(0) + 1e-12
    z = np.where(tr[:, None], (y - mu) / sd, 0.0)
    C = np.zeros((y.shape[1], y.shape[1]))
    for lag in range(1, max_lag_bins + 1):
        both = tr[lag:] & tr[:-lag]
        C += (z[lag:][both]).T @ z[:-lag][both] / max(both.sum(), 1)
    return C


def hub_scores(M: np.ndarray) -> np.ndarray:
    """Out-strength of each neuron: the sum over targets of its positive, off-diagonal z-scored weights."""
    off = ~np.eye(M.shape[0], dtype=bool)
    v = M[off]
    z = (M - v.mean()) / (v.std() + 1e-12)
    return np.where(off, np.maximum(z, 0.0), 0.0).sum(0)


def connectivity_scores(
    M: np.ndarray,
    connected: np.ndarray,
    is_hub: np.ndarray | None,
    hub_score: np.ndarray | None = None,
    signed: bool = True,
    centre: float = 0.0,
) -> tuple[float, float]:
    """(AUROC over off-diagonal pairs, hub recall at k = number of hubs).

    The score of a pair is ``M`` itself when ``signed`` (the planted connections are all excitatory), else its
    distance from ``centre`` (|M - centre|: excitatory and inhibitory connections both count). Hubs are ranked by
    ``hub_score`` when given (Neuroformer: attention received per past token), else by :func:`hub_scores` of ``M``.
    """
    off = ~np.eye(M.shape[0], dtype=bool)
    auc = auroc(connected.astype(bool)[off], (M if signed else np.abs(M - centre))[off])
    if is_hub is None or not np.any(is_hub):
        return auc, float("nan")
    k = int(np.sum(is_hub))
    score = hub_scores(M) if hub_score is None else np.asarray(hub_score, dtype=float)
    top = np.argsort(-score, kind="stable")[:k]
    return auc, float(np.mean(np.asarray(is_hub, bool)[top]))


# ---- decoding baselines ------------------------------------------------------------------------------------------
def window_features(y: np.ndarray, starts: np.ndarray, window_bins: int, past_bins: int) -> np.ndarray:
    """Per-unit spike counts of the current and of the past window (square-root transformed), side by side."""
    cur = (
        np.stack([y[s : s + window_bins].sum(0) for s in starts])
        if starts.size
        else np.zeros((0, y.shape[1]))
    )
    past = (
        np.stack([y[s - past_bins : s].sum(0) for s in starts]) if starts.size else np.zeros((0, y.shape[1]))
    )
    return np.sqrt(np.hstack([cur, past]).astype(np.float64))


def linear_decoder(X_tr, y_tr, X_va, y_va, X_te, kind: str):
    """Ridge (regression) or class-balanced L2-logistic (classification) with the penalty chosen on validation
    (MSE, or balanced accuracy); test predictions."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(X_tr)
    X_tr, X_va, X_te = sc.transform(X_tr), sc.transform(X_va), sc.transform(X_te)
    best, best_score = None, -np.inf
    for a in np.logspace(-2, 4, 7):
        if kind == "classification":
            if np.unique(y_tr).size < 2:
                continue
            m = LogisticRegression(C=1.0 / a, max_iter=500, class_weight="balanced").fit(X_tr, y_tr)
            s = balanced_accuracy(y_va, m.predict(X_va))
        else:
            m = Ridge(alpha=a).fit(X_tr, y_tr)
            s = -np.mean((m.predict(X_va) - y_va) ** 2)
        if s > best_score:
            best, best_score = m, s
    if best is None:  # one class only among the labels: predict it
        return np.full(X_te.shape[0], y_tr[0])
    return best.predict(X_te)


def balanced_accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y``."""
    y, p = np.asarray(y), np.asarray(p)
    classes = np.unique(y)
    if classes.size == 0:
        return float("nan")
    return float(np.mean([np.mean(p[y == c] == c) for c in classes]))


# ---- generation ------------------------------------------------------------------------------------------------
def set_f1(true_counts: np.ndarray, sampled: np.ndarray) -> float:
    """Mean per-window F1 between the set of neurons that fired (``true_counts`` (n, units) > 0) and the set
    predicted from samples (``sampled`` (S, n, units)): a neuron is predicted when it fires in at least half the
    samples. Windows where both sets are empty count as F1 = 1."""
    t = np.asarray(true_counts) > 0
    p = (np.asarray(sampled) > 0).mean(0) >= 0.5
    tp = (t & p).sum(1)
    fp = (~t & p).sum(1)
    fn = (t & ~p).sum(1)
    den = 2 * tp + fp + fn
    f1 = np.where(den > 0, 2 * tp / np.maximum(den, 1), 1.0)
    return float(f1.mean()) if f1.size else float("nan")


def glm_generate(
    glm: PoissonGLM,
    y: np.ndarray,
    covariates: np.ndarray,
    starts: np.ndarray,
    window_bins: int,
    past_bins: int,
    n_samples: int,
    seed: int,
) -> np.ndarray:
    """Sample each current window from a fitted coupled Poisson GLM given the recorded past window only (history
    starts empty at the past window's start, as the Neuroformer sees only that window). (S, n, units) counts."""
    rng = np.random.default_rng(seed)
    a = np.exp(-glm.bin_width_s_ / glm.history_tau_s)
    n, N = starts.size, y.shape[1]
    out = np.zeros((n_samples, n, N), np.int64)
    W, B = glm.coupling_, glm.behaviour_weight_
    for w, s0 in enumerate(starts):
        h = np.zeros(N)
        for t in range(s0 - past_bins, s0):
            h = a * h + (y[t - 1] if t > s0 - past_bins else 0.0)
        hs = np.repeat(h[None], n_samples, 0)
        prev = np.repeat(y[s0 - 1][None].astype(float), n_samples, 0)
        for t in range(s0, s0 + window_bins):
            hs = a * hs + prev
            eta = glm.intercept_[None] + hs @ W.T
            if B.shape[1]:
                eta = eta + covariates[t] @ B.T
            prev = rng.poisson(np.exp(np.clip(eta, -30, 10))).astype(float)
            out[:, w] += prev.astype(np.int64)
    return out


def neuroformer_metrics_dataset(
    values: Mapping[str, float], bars: Mapping[str, float] | None, dataset: str
) -> xr.Dataset:
    """A ``metrics`` dataset for Neuroformer with the descriptions above (every metric: higher is better, except
    ``pretrain_test_loss`` which carries no bar)."""
    bars = {k: v for k, v in (bars or {}).items() if k in values and k != "pretrain_test_loss"}
    ds = metrics_dataset(values, bars, model="neuroformer", dataset=dataset)
    ds["description"] = ("metric", np.array([describe(str(n)) for n in ds["metric"].values]))
    return ds
