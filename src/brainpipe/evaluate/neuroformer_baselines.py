"""Neuroformer's baselines and their scores: lagged cross-correlation connectivity, AUROC and direction accuracy
against planted connections, hub recall (and the firing-rate rule), ridge/logistic decoders on binned counts (with
or without past-window chunks, with the model's modality variables when it has any, and on those variables alone),
the generation F1 and a coupled Poisson-GLM generator. Every name is re-exported by
:mod:`brainpipe.evaluate.neuroformer`."""

from __future__ import annotations

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError
from brainpipe.evaluate.metrics import auroc
from brainpipe.models.baselines import PoissonGLM
from brainpipe.models.neuroformer import Neuroformer

__all__ = [
    "balanced_accuracy",
    "connectivity_scores",
    "decoder_modality",
    "decoding_features",
    "direction_accuracy",
    "glm_baseline",
    "glm_generate",
    "history_features",
    "hub_scores",
    "linear_decoder",
    "modality_features",
    "rate_hub_recall",
    "set_f1",
    "window_features",
    "xcorr_connectivity",
    "xcorr_residual_connectivity",
]


# ---- connectivity ---------------------------------------------------------------------------------------------
@fill_doc
def xcorr_connectivity(counts: np.ndarray, split: np.ndarray, max_lag_bins: int) -> np.ndarray:
    """Lagged cross-correlation (post, pre) of binned counts over the train bins.

    ``C[i, j] = sum_{l=1..L} corr(y_i(t), y_j(t - l))``; pairs of bins crossing a split boundary are left out.

    Parameters
    ----------
    %(counts_split_arrays)s
    max_lag_bins : int
        The largest lag ``L``, in bins.

    Returns
    -------
    numpy.ndarray
        (unit_post, unit_pre) summed lagged correlations.
    """
    y = np.asarray(counts, dtype=np.float64)
    tr = split == SPLIT_FLAGS["train"]
    mu, sd = y[tr].mean(0), y[tr].std(0) + 1e-12
    z = np.where(tr[:, None], (y - mu) / sd, 0.0)
    C = np.zeros((y.shape[1], y.shape[1]))
    for lag in range(1, max_lag_bins + 1):
        both = tr[lag:] & tr[:-lag]
        C += (z[lag:][both]).T @ z[:-lag][both] / max(both.sum(), 1)
    return C


def xcorr_residual_connectivity(
    counts: np.ndarray, split: np.ndarray, max_lag_bins: int, covariates: np.ndarray
) -> np.ndarray:
    """Lagged cross-correlation of what the covariates leave unexplained (a baseline given the model's modalities).

    Each neuron's counts minus their least-squares fit on the covariates, their squares and an intercept (fitted on
    the train bins), then :func:`xcorr_connectivity` of the residuals: co-modulation by a shared covariate (e.g.
    two neurons tuned to the same running speed) no longer looks like a connection.

    Parameters
    ----------
    counts : numpy.ndarray
        (time, unit) binned counts.
    split : numpy.ndarray
        (time,) split flags; the fit and the correlations use the train bins.
    max_lag_bins : int
        The largest lag, in bins.
    covariates : numpy.ndarray
        (time, variable) covariates (no columns: plain cross-correlation).

    Returns
    -------
    numpy.ndarray
        (unit_post, unit_pre) summed lagged correlations of the residuals.
    """
    y = np.asarray(counts, dtype=np.float64)
    cov = np.asarray(covariates, dtype=np.float64).reshape(y.shape[0], -1)
    if cov.shape[1] == 0:
        return xcorr_connectivity(y, split, max_lag_bins)
    X = np.concatenate([np.ones((y.shape[0], 1)), cov, cov**2], axis=1)
    tr = np.asarray(split) == SPLIT_FLAGS["train"]
    beta = np.linalg.lstsq(X[tr], y[tr], rcond=None)[0]
    return xcorr_connectivity(y - X @ beta, split, max_lag_bins)


def hub_scores(M: np.ndarray) -> np.ndarray:
    """Out-strength of each neuron: the sum over targets of its positive, off-diagonal z-scored weights.

    Parameters
    ----------
    M : numpy.ndarray
        (post, pre) connectivity matrix.

    Returns
    -------
    numpy.ndarray
        (pre,) hub score of each neuron.
    """
    off = ~np.eye(M.shape[0], dtype=bool)
    v = M[off]
    z = (M - v.mean()) / (v.std() + 1e-12)
    return np.where(off, np.maximum(z, 0.0), 0.0).sum(0)


@fill_doc
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

    Parameters
    ----------
    %(connectivity_matrices)s
    is_hub : numpy.ndarray or None
        (unit,) planted hubs (None: no hub recall).
    hub_score : numpy.ndarray, optional
        (unit,) score to rank hubs by.
    %(signed_centre)s

    Returns
    -------
    tuple of float
        ``(auroc, hub_recall)``; hub recall is NaN without hubs.
    """
    off = ~np.eye(M.shape[0], dtype=bool)
    auc = auroc(connected.astype(bool)[off], (M if signed else np.abs(M - centre))[off])
    if is_hub is None or not np.any(is_hub):
        return auc, float("nan")
    k = int(np.sum(is_hub))
    score = hub_scores(M) if hub_score is None else np.asarray(hub_score, dtype=float)
    top = np.argsort(-score, kind="stable")[:k]
    return auc, float(np.mean(np.asarray(is_hub, bool)[top]))


@fill_doc
def direction_accuracy(
    M: np.ndarray, connected: np.ndarray, signed: bool = True, centre: float = 0.0
) -> float:
    """Share of planted one-way connections whose direction a connectivity matrix gets right.

    For every planted connection ``j -> i`` (``connected[i, j]``) without the reverse one, the pair counts as right
    when its score (post i, pre j) exceeds the reverse score (post j, pre i), as half when they tie. Scores as in
    :func:`connectivity_scores` (``M``, or ``|M - centre|`` when not ``signed``).

    Parameters
    ----------
    %(connectivity_matrices)s
    %(signed_centre)s

    Returns
    -------
    float
        The accuracy (chance 0.5; NaN without one-way connections).
    """
    c = np.asarray(connected).astype(bool)
    S = np.asarray(M, dtype=float) if signed else np.abs(np.asarray(M, dtype=float) - centre)
    one_way = c & ~c.T
    np.fill_diagonal(one_way, False)
    if not one_way.any():
        return float("nan")
    fwd, rev = S[one_way], S.T[one_way]
    return float(np.mean((fwd > rev) + 0.5 * (fwd == rev)))


@fill_doc
def rate_hub_recall(counts: np.ndarray, split: np.ndarray, is_hub: np.ndarray) -> float:
    """Hub recall of the trivial rule: the top-n_hubs neurons by firing rate on the train bins.

    Parameters
    ----------
    %(counts_split_arrays)s
    is_hub : numpy.ndarray
        (unit,) planted hubs.

    Returns
    -------
    float
        Fraction of the planted hubs among the fastest-firing neurons (NaN without hubs).
    """
    hub = np.asarray(is_hub).astype(bool)
    if not hub.any():
        return float("nan")
    rate = np.asarray(counts, dtype=float)[np.asarray(split) == SPLIT_FLAGS["train"]].mean(0)
    return float(np.mean(hub[np.argsort(-rate, kind="stable")[: int(hub.sum())]]))


# ---- decoding baselines ------------------------------------------------------------------------------------------
@fill_doc
def window_features(y: np.ndarray, starts: np.ndarray, window_bins: int, past_bins: int) -> np.ndarray:
    """Per-unit spike counts of the current and of the past window (square-root transformed), side by side.

    Parameters
    ----------
    %(window_counts)s

    Returns
    -------
    numpy.ndarray
        (window, 2 * unit) features.
    """
    cur = (
        np.stack([y[s : s + window_bins].sum(0) for s in starts])
        if starts.size
        else np.zeros((0, y.shape[1]))
    )
    past = (
        np.stack([y[s - past_bins : s].sum(0) for s in starts]) if starts.size else np.zeros((0, y.shape[1]))
    )
    return np.sqrt(np.hstack([cur, past]).astype(np.float64))


@fill_doc
def history_features(
    y: np.ndarray, starts: np.ndarray, window_bins: int, past_bins: int, n_history: int = 4
) -> np.ndarray:
    """Per-unit counts of each bin of the current window and of ``n_history`` chunks of the past window.

    The past window is cut into ``n_history`` consecutive chunks of (nearly) equal length, so the decoder sees
    when the recent spikes came (square-root transformed counts, as :func:`window_features`).

    Parameters
    ----------
    %(window_counts)s
    n_history : int, default 4
        Chunks of the past window (at most ``past_bins``).

    Returns
    -------
    numpy.ndarray
        (window, (window_bins + n_history) * unit) features.
    """
    n_u = y.shape[1]
    edges = np.linspace(0, past_bins, min(int(n_history), past_bins) + 1).round().astype(int)
    rows = []
    for s in np.asarray(starts, dtype=int):
        cur = y[s : s + window_bins].reshape(window_bins, n_u)
        past = y[s - past_bins : s]
        chunks = [past[a:b].sum(0) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        rows.append(np.concatenate([cur.ravel(), *chunks]))
    n_feat = (window_bins + edges.size - 1) * n_u
    return np.sqrt(np.asarray(rows, dtype=np.float64).reshape(-1, n_feat))


def modality_features(modality: np.ndarray, window_bins: int, past_bins: int) -> np.ndarray:
    """The modality variables a linear decoder gets: window means and products of current-window means.

    The means are over the current and over the past window; the products are of every pair of current-window
    means, squares included. The values are those the model's modality encoder sees (the tokeniser's ``Windows.modality``: every fine bin of
    the past and current window). The products let a linear decoder use a variable's distance from another or its
    size (e.g. |contrast left - contrast right|, which a linear function of the two contrasts cannot express).

    Parameters
    ----------
    modality : numpy.ndarray
        (window, past_bins + window_bins, variable) the modality values of each window (no variable: none).
    window_bins, past_bins : int
        Bins of a current and of a past window.

    Returns
    -------
    numpy.ndarray
        (window, 2 * v + v * (v + 1) / 2) features for ``v`` variables; (window, 0) without variables.

    Raises
    ------
    ValueError
        ``modality`` is not (window, past_bins + window_bins, variable).
    """
    m = np.asarray(modality, dtype=np.float64)
    W, P = int(window_bins), int(past_bins)
    if m.ndim != 3 or m.shape[1] != P + W:
        raise ValueError(
            f"modality_features: modality has shape {m.shape}, expected (window, past_bins + window_bins = {P + W}, "
            "variable); pass the tokeniser's Windows.modality with its window_bins_ and past_bins_"
        )
    if m.shape[2] == 0:
        return np.zeros((m.shape[0], 0))
    cur = m[:, P:].mean(axis=1)
    past = m[:, :P].mean(axis=1) if P else np.zeros((m.shape[0], 0))
    i, j = np.triu_indices(m.shape[2])
    return np.hstack([cur, past, cur[:, i] * cur[:, j]])


def decoder_modality(modality: np.ndarray, tokenizer) -> np.ndarray:
    """The modality values a decoder may read: those of every modality but the ones holding the decoding target.

    The model's decoder sees such a modality as absent (its learned absent embedding), so the baselines must not
    read it either: it would hand them the target.

    Parameters
    ----------
    modality : numpy.ndarray
        (window, bin, variable) the tokeniser's ``Windows.modality`` (variables in ``mod_layout_`` order).
    tokenizer : SpikeTokenizer
        The fitted tokeniser (``mod_layout_`` and ``target``).

    Returns
    -------
    numpy.ndarray
        (window, bin, kept variable) the columns of the modalities without the target.
    """
    t = tokenizer.target
    keep, col = [], 0
    for _, src, names in tokenizer.mod_layout_:
        holds = t is not None and src == str(t["source"]) and str(t["variable"]) in names
        if not holds:
            keep.extend(range(col, col + len(names)))
        col += len(names)
    return np.asarray(modality)[..., keep]


def decoding_features(
    y: np.ndarray,
    starts: np.ndarray,
    modality: np.ndarray,
    window_bins: int,
    past_bins: int,
    n_history: int = 4,
) -> dict[str, np.ndarray]:
    """The feature sets of the linear decoding baselines, given the same inputs as the model.

    ``""``: the current and past windows' counts (:func:`window_features`); ``"_history"``: the current window's
    bins and ``n_history`` past chunks (:func:`history_features`). When the model has modality variables, both are
    also given with them (``"_inputs"``, ``"_history_inputs"``; :func:`modality_features`) and ``"_modality"`` is a
    decoder from them alone, so that a comparison can say whether the spikes add anything beyond the modality (e.g.
    the stimulus). The counts-only sets stay, so that the validation-chosen best of them is never weaker for
    having more inputs to choose from (extra features can overfit a small labelled set).

    Parameters
    ----------
    y : numpy.ndarray
        (time, unit) binned counts.
    starts : numpy.ndarray
        (window,) first bin of each current window (the tokeniser's ``Windows.start``).
    modality : numpy.ndarray
        (window, past_bins + window_bins, variable) the model's modality values of each window (the tokeniser's
        ``Windows.modality``; no variable: a model without modalities).
    window_bins, past_bins : int
        Bins of a current and of a past window.
    n_history : int, default 4
        Chunks of the past window in the history features (at least 1).

    Returns
    -------
    dict
        Metric-name suffix -> (window, feature) array: ``""`` (counts) and ``"_history"`` (counts + history bins);
        with modalities also ``"_inputs"`` and ``"_history_inputs"`` (each with the modality variables) and
        ``"_modality"`` (the modality variables alone).

    Raises
    ------
    ConfigError
        ``n_history`` below 1.
    """
    if int(n_history) < 1:
        raise ConfigError(
            f"neuroformer decoding baselines: n_history={n_history} must be at least 1 (chunks of the past window)"
        )
    starts = np.asarray(starts, dtype=np.int64)
    mod = modality_features(modality, window_bins, past_bins)
    if mod.shape[0] != starts.size:
        raise ValueError(
            f"decoding_features: {mod.shape[0]} windows of modality values for {starts.size} window starts; "
            "pass the same tokenised windows' start and modality"
        )
    feats = {
        "": window_features(y, starts, window_bins, past_bins),
        "_history": history_features(y, starts, window_bins, past_bins, int(n_history)),
    }
    if mod.shape[1]:  # the counts-only sets stay: more inputs must not make the best baseline weaker
        feats.update({f"{k}_inputs": np.hstack([X, mod]) for k, X in list(feats.items())})
        feats["_modality"] = mod
    return feats


def linear_decoder(X_tr, y_tr, X_va, y_va, X_te, kind: str, with_score: bool = False):
    """Fit a linear decoder, its penalty chosen on validation, and predict the test rows.

    Ridge (regression) or class-balanced L2-logistic (classification) on standardised features; the penalty is the
    one with the best validation MSE or balanced accuracy.

    Parameters
    ----------
    X_tr : numpy.ndarray
        (n_train, feature) training features.
    y_tr : numpy.ndarray
        (n_train,) training targets.
    X_va : numpy.ndarray
        (n_validation, feature) validation features.
    y_va : numpy.ndarray
        (n_validation,) validation targets.
    X_te : numpy.ndarray
        (n_test, feature) test features.
    kind : {"regression", "classification"}
        The task.
    with_score : bool, default False
        Also return the chosen penalty's validation score.

    Returns
    -------
    numpy.ndarray or tuple
        (n_test,) predictions (the one training class, when there is only one); with ``with_score``, also the
        validation score (R2 or balanced accuracy; -inf with one training class).
    """
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
        pred = np.full(X_te.shape[0], y_tr[0])
        return (pred, -np.inf) if with_score else pred
    if kind != "classification":  # validation R2 from the best MSE
        best_score = 1.0 + best_score / max(float(np.var(y_va)), 1e-12)
    return (best.predict(X_te), float(best_score)) if with_score else best.predict(X_te)


def balanced_accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y``.

    Parameters
    ----------
    y : numpy.ndarray
        True classes.
    p : numpy.ndarray
        Predicted classes.

    Returns
    -------
    float
        The balanced accuracy (NaN for no samples).
    """
    y, p = np.asarray(y), np.asarray(p)
    classes = np.unique(y)
    if classes.size == 0:
        return float("nan")
    return float(np.mean([np.mean(p[y == c] == c) for c in classes]))


# ---- generation ------------------------------------------------------------------------------------------------
def set_f1(true_counts: np.ndarray, sampled: np.ndarray) -> float:
    """Mean per-window F1 between the neurons that fired and those predicted from samples.

    A neuron is predicted when it fires in at least half the samples. Windows where both sets are empty count as
    F1 = 1.

    Parameters
    ----------
    true_counts : numpy.ndarray
        (window, unit) recorded counts.
    sampled : numpy.ndarray
        (sample, window, unit) sampled counts.

    Returns
    -------
    float
        The mean F1 (NaN for no windows).
    """
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
    """Sample each current window from a fitted coupled Poisson GLM given the recorded past window only.

    The history starts empty at the past window's start, as the Neuroformer sees only that window.

    Parameters
    ----------
    glm : PoissonGLM
        A fitted coupled GLM.
    y : numpy.ndarray
        (time, unit) recorded counts.
    covariates : numpy.ndarray
        (time, variable) the GLM's covariates (no columns: none).
    starts : numpy.ndarray
        (window,) first bin of each current window, as for :func:`window_features`.
    window_bins, past_bins : int
        Bins of a current and of a past window.
    n_samples : int
        Samples per window.
    seed : int
        Seed of the sampling.

    Returns
    -------
    numpy.ndarray
        (sample, window, unit) sampled counts.
    """
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


def glm_baseline(
    counts: xr.Dataset, model: Neuroformer, history_tau_s: float = 0.02, alpha: float = 1e-4
) -> tuple[PoissonGLM, np.ndarray]:
    """A coupled Poisson GLM with the Neuroformer's modality variables as covariates (the same information).

    Parameters
    ----------
    counts : xarray.Dataset
        A ``spike_counts`` dataset.
    model : Neuroformer
        The fitted Neuroformer, whose modalities become the GLM's covariates.
    history_tau_s : float, default 0.02
        Time constant of the GLM's spike-history filter, in seconds.
    alpha : float, default 1e-4
        The GLM's L2 penalty.

    Returns
    -------
    glm : PoissonGLM
        The GLM, fitted on the train bins.
    covariates : numpy.ndarray
        (time, variable) the covariates (no columns without modalities).
    """
    tok = model.tokenizer_
    cov = [tok._variables(counts, src, v, f"modality '{n}'", "counts") for n, src, v in tok.mod_layout_]
    ds = counts[["counts", "split"]]
    if cov:
        X = np.concatenate(cov, axis=1)
        ds = ds.assign(behaviour=(("time", "behaviour_var"), X)).assign_coords(
            behaviour_var=[f"v{i}" for i in range(X.shape[1])]
        )
    glm = PoissonGLM(history_tau_s=float(history_tau_s), alpha=float(alpha), max_iter=200)
    glm.fit(ds)
    return glm, (np.concatenate(cov, axis=1) if cov else np.zeros((counts.sizes["time"], 0)))
