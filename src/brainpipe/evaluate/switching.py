"""Metrics of switching GLMs: held-out likelihood, and recovery of planted states, weights and structure."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.evaluate.metrics import METRIC_PATTERNS, METRICS, MetricInfo, _corr
from brainpipe.evaluate.switching_clusters import StateClusters
from brainpipe.models.baselines import poisson_log_likelihood
from brainpipe.models.switching_glm import SwitchingGLM
from brainpipe.preprocess.spikes import segments

METRICS.update(
    {
        "shared_adjacency_balanced_accuracy": MetricInfo(
            ">=",
            "balanced accuracy of the shared (state-constant) inh/none/exc structure: each pair's most probable class "
            "of the learned (or, for free-weight fits, post-hoc) shared categorical against the planted one",
        ),
        "shared_mean_corr": MetricInfo(
            ">=",
            "Pearson r between the state-constant connectome (shared mean) and the planted weights' state mean",
        ),
        "shared_probs_tv": MetricInfo(
            "<=",
            "mean over pairs of the total-variation distance between the fit's shared inh/none/exc categorical "
            "(learned, or post hoc for free weights) and the planted one (0: equal, 1: disjoint)",
        ),
        "state_dwell_median_s": MetricInfo(
            ">=",
            "median duration of the decoded states' visits (runs of one state in the Viterbi path over the test "
            "bins, cut at sequence edges), seconds; descriptive (how fast the states switch), no bar",
        ),
    }
)
METRIC_PATTERNS.extend(
    [
        (
            re.compile(r"shared_adjacency_ba_vs_(?P<ref>[A-Za-z0-9]+)"),
            ">=",
            "shared-adjacency balanced accuracy minus that of {ref}",
        ),
        (
            re.compile(r"task_mi_(?P<v>.+)_vs_clusters"),
            ">=",
            "excess mutual information of the decoded states about {v} minus that of the k-means clusters of the "
            "smoothed population rate (the non-HMM baseline, as many clusters as states)",
        ),
        (
            re.compile(r"task_mi_(?P<v>.+)_vs_(?P<ref>[A-Za-z0-9]+)"),
            ">=",
            "excess mutual information of the decoded states about {v} minus {ref}'s",
        ),
        (
            re.compile(r"task_mi_(?P<v>.+)_clusters_excess"),
            ">=",
            "mutual information between the k-means clusters of the smoothed population rate (the non-HMM "
            "baseline, as many clusters as states) and {v} minus its shuffled null, bits",
        ),
        (
            re.compile(r"task_mi_(?P<v>.+)_clusters"),
            ">=",
            "mutual information between the k-means clusters of the smoothed population rate (the non-HMM "
            "baseline) and {v} on the test bins, bits",
        ),
        (
            re.compile(r"task_mi_(?P<v>.+)_null"),
            "<=",
            "mean mutual information between shuffled decoded states and {v} (the null), bits",
        ),
        (
            re.compile(r"task_mi_(?P<v>.+)_excess"),
            ">=",
            "mutual information between the decoded states and {v} minus its shuffled null, bits",
        ),
        (
            re.compile(r"task_mi_(?P<v>.+)_p"),
            "<=",
            "permutation p-value of the mutual information between the decoded states and {v} (200 shuffles)",
        ),
        (
            re.compile(r"task_mi_(?P<v>.+)"),
            ">=",
            "mutual information between the decoded state (posterior) and {v} on the test bins, bits",
        ),
    ]
)


def match_states(
    true_states: np.ndarray, est_states: np.ndarray, n_true: int, n_est: int
) -> tuple[np.ndarray, float]:
    """Hungarian matching of estimated to true states on their confusion matrix.

    Returns ``(perm, accuracy)``: ``perm[k]`` is the estimated state matched to true state ``k`` (-1 when there
    are fewer estimated states), and the fraction of bins whose matched state is right.
    """
    C = np.zeros((n_true, n_est))
    np.add.at(C, (true_states, est_states), 1)
    rows, cols = linear_sum_assignment(-C)
    perm = np.full(n_true, -1, dtype=np.int64)
    perm[rows] = cols
    return perm, float(C[rows, cols].sum() / max(len(true_states), 1))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true``."""
    classes = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def null_log_likelihood(counts: xr.Dataset, split: str = "test") -> tuple[float, float]:
    """Log-likelihood of a homogeneous Poisson model (per-neuron train rates) on a split, and its spike count."""
    y = np.asarray(counts["counts"].values, dtype=np.float64)
    s = counts["split"].values
    rate = y[s == SPLIT_FLAGS["train"]].mean(axis=0)
    te = y[s == SPLIT_FLAGS[split]]
    return poisson_log_likelihood(te, np.broadcast_to(rate, te.shape)), float(te.sum())


def truth_states_at(truth: xr.Dataset, times: np.ndarray) -> np.ndarray:
    """The planted state (``true_state`` on ``state_time``) at each of ``times`` (nearest planted bin)."""
    st = truth["state_time"].values
    idx = np.clip(np.searchsorted(st, times), 0, st.size - 1)
    prev = np.clip(idx - 1, 0, st.size - 1)
    idx = np.where(np.abs(st[prev] - times) < np.abs(st[idx] - times), prev, idx)
    return np.asarray(truth["true_state"].values)[idx].astype(np.int64)


def switching_metrics(
    fit: xr.Dataset,
    counts: xr.Dataset,
    truth: xr.Dataset | None = None,
    references: Mapping[str, xr.Dataset] | None = None,
) -> dict[str, float]:
    """Metrics of one fitted switching GLM (a ``model_fit`` with posterior/viterbi over the counts' bins).

    ``test_bits_per_spike``: held-out marginal log-likelihood gain over a homogeneous Poisson model, bits/spike.
    With a planted truth (simulated data): ``oracle_test_bits_per_spike`` and ``bits_vs_oracle`` (the same for
    the true parameters, and the difference), ``state_accuracy`` (posterior argmax on test bins, Hungarian
    matched), ``oracle_state_accuracy`` and ``state_accuracy_vs_oracle``, ``weight_corr`` (off-diagonal weights of
    all states, matched), ``weight_rel_error``, ``adjacency_balanced_accuracy`` (inh/none/exc, off-diagonal),
    and the shared structure (any fit with ``shared_adjacency``/``shared_mean``, the single state included):
    ``shared_adjacency_balanced_accuracy`` (the fit's shared class per pair against the most probable class of the
    planted shared categorical) and ``shared_mean_corr`` (the fit's state-constant connectome against the planted
    weights' mean over states, off-diagonal); with ``prior_probs`` also ``shared_probs_tv`` (the fit's shared
    categorical against the planted one, total-variation distance averaged over pairs: the whole categorical,
    not only its most probable class, whose balanced accuracy a few near-tie pairs decide).
    With reference fits (e.g. ``single``, ``none``): ``bits_vs_<name>``, and where both have them
    ``state_accuracy_vs_<name>``, ``weight_corr_vs_<name>``, ``adjacency_ba_vs_<name>``,
    ``shared_adjacency_ba_vs_<name>``, ``shared_mean_corr_vs_<name>`` and ``shared_probs_tv_vs_<name>``.
    """
    null_ll, n_spikes = null_log_likelihood(counts)
    denom = max(n_spikes, 1.0) * np.log(2)
    test = counts["split"].values == SPLIT_FLAGS["test"]
    z = truth_states_at(truth, counts["time"].values[test]) if truth is not None else None

    def fit_metrics(
        f: xr.Dataset,
    ) -> dict[str, float]:  # what depends on the fit only; truth terms computed once
        model = SwitchingGLM.from_dataset(f, device="cpu")
        m = {"test_bits_per_spike": (model.log_likelihood(counts, "test") - null_ll) / denom}
        S = f.sizes["state"]
        if truth is not None and "shared_adjacency" in f and "prior_probs" in truth:
            units = [str(u) for u in f["unit_post"].values]
            t = truth.sel(unit_post=units, unit_pre=units)
            off = ~np.eye(len(units), dtype=bool)
            planted = np.asarray(t["prior_probs"].values).argmax(-1) - 1
            m["shared_adjacency_balanced_accuracy"] = balanced_accuracy(
                planted[off], np.asarray(f["shared_adjacency"].values)[off]
            )
            m["shared_mean_corr"] = _corr(
                np.asarray(t["weights"].values).mean(0)[off], np.asarray(f["shared_mean"].values)[off]
            )
            if "prior_probs" in f:
                gap = np.abs(np.asarray(f["prior_probs"].values) - np.asarray(t["prior_probs"].values))
                m["shared_probs_tv"] = float(0.5 * gap.sum(-1)[off].mean())
        if truth is None or S < 2:
            return m
        S_true = truth.sizes["state"]
        perm, m["state_accuracy"] = match_states(
            z, np.asarray(f["posterior"].values)[test].argmax(1), S_true, S
        )
        if np.all(perm >= 0):
            units = [str(u) for u in f["unit_post"].values]
            t = truth.sel(unit_post=units, unit_pre=units)
            off = ~np.eye(len(units), dtype=bool)
            W_true = t["weights"].values[:, off]
            W_fit = f["weights"].values[perm][:, off]
            m["weight_corr"] = _corr(W_true, W_fit)
            m["weight_rel_error"] = float(np.linalg.norm(W_fit - W_true) / np.linalg.norm(W_true))
            m["adjacency_balanced_accuracy"] = balanced_accuracy(
                t["adjacency"].values[:, off].ravel(), f["adjacency"].values[perm][:, off].ravel()
            )
        return m

    own = fit_metrics(fit)
    out = {"test_bits_per_spike": own["test_bits_per_spike"]}
    if truth is not None:
        oracle = SwitchingGLM.from_dataset(truth, device="cpu")
        out["oracle_test_bits_per_spike"] = (oracle.log_likelihood(counts, "test") - null_ll) / denom
        out["bits_vs_oracle"] = out["test_bits_per_spike"] - out["oracle_test_bits_per_spike"]
        S_true = truth.sizes["state"]
        oracle_post, _ = oracle.decode(counts)
        _, out["oracle_state_accuracy"] = match_states(z, oracle_post[test].argmax(1), S_true, S_true)
        if "state_accuracy" in own:
            out["state_accuracy"] = own["state_accuracy"]
            out["state_accuracy_vs_oracle"] = own["state_accuracy"] - out["oracle_state_accuracy"]
        for k in (
            "weight_corr",
            "weight_rel_error",
            "adjacency_balanced_accuracy",
            "shared_adjacency_balanced_accuracy",
            "shared_mean_corr",
            "shared_probs_tv",
        ):
            if k in own:
                out[k] = own[k]
    for name, ref in (references or {}).items():
        ref_metrics = fit_metrics(ref)
        out[f"bits_vs_{name}"] = out["test_bits_per_spike"] - ref_metrics["test_bits_per_spike"]
        for key, short in (
            ("state_accuracy", "state_accuracy"),
            ("weight_corr", "weight_corr"),
            ("adjacency_balanced_accuracy", "adjacency_ba"),
            ("shared_adjacency_balanced_accuracy", "shared_adjacency_ba"),
            ("shared_mean_corr", "shared_mean_corr"),
            ("shared_probs_tv", "shared_probs_tv"),
        ):
            if key in out and key in ref_metrics:
                out[f"{short}_vs_{name}"] = out[key] - ref_metrics[key]
    return out


def state_dwell_times(viterbi: np.ndarray, sequence: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Lengths (bins) of the visits to one state in a decoded state path, over the selected bins.

    Parameters
    ----------
    viterbi : numpy.ndarray
        (n_bins,) decoded state per bin (-1: not decoded).
    sequence : numpy.ndarray
        (n_bins,) sequence (segment) id per bin (:func:`brainpipe.preprocess.spikes.segments`): a visit ends at a
        sequence's edge (it is censored there and counted as it is).
    bins : numpy.ndarray
        Boolean (n_bins,) selection (e.g. the test split); a gap in it ends a visit too.

    Returns
    -------
    numpy.ndarray
        (n_visits,) int64 visit lengths in bins, in time order.
    """
    idx = np.flatnonzero(np.asarray(bins, dtype=bool) & (np.asarray(viterbi) >= 0))
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    v, g = np.asarray(viterbi)[idx], np.asarray(sequence)[idx]
    new = np.r_[True, (v[1:] != v[:-1]) | (g[1:] != g[:-1]) | (np.diff(idx) > 1)]
    return np.diff(np.r_[np.flatnonzero(new), idx.size]).astype(np.int64)


def dwell_metrics(fit: xr.Dataset, counts: xr.Dataset) -> dict[str, float]:
    """``state_dwell_median_s`` of a multi-state fit with a ``viterbi`` path over the counts' bins (test bins).

    Parameters
    ----------
    fit : xarray.Dataset
        A switching-GLM ``model_fit`` with ``viterbi`` over the counts' bins.
    counts : xarray.Dataset
        Its ``spike_counts``.

    Returns
    -------
    dict
        Metric name -> value; empty for a single-state fit, a fit without a path, or no decoded test bin.
    """
    if "viterbi" not in fit or fit.sizes.get("state", 1) < 2:
        return {}
    test = np.asarray(counts["split"].values) == SPLIT_FLAGS["test"]
    runs = state_dwell_times(np.asarray(fit["viterbi"].values), segments(counts), test)
    if runs.size == 0:
        return {}
    return {"state_dwell_median_s": float(np.median(runs)) * float(counts.attrs["bin_width_s"])}


# -- decoded states against task variables (real data) ------------------------------------------------------------
#: Edges (s from trial start) of the within-trial epochs of trialized recordings. In the bundled Steinmetz sessions a
#: trial's bins start at stimulus onset: before visual latency (0-50 ms), the early response (50-150 ms), later.
EPOCH_EDGES_S = (0.05, 0.15)
#: Window (s) of the running mean applied to position before the speed is taken (tracked positions are in pixels
#: and step by whole pixels, so a frame-to-frame speed flickers between 0 and a few pixels per frame).
SPEED_SMOOTH_S = 0.5
#: Most distinct values a trial-level stimulus variable may take to be treated as categories.
MAX_CATEGORIES = 8


class TaskVariable:
    """One discrete task variable per bin of a ``spike_counts`` dataset, and how to shuffle it.

    Parameters
    ----------
    labels : numpy.ndarray
        (n_bins,) category index per bin, -1 where unknown.
    categories : list of str
        The categories' names.
    groups : numpy.ndarray
        (n_bins,) id of the block each bin lies in (a trial, a contiguous stretch of time).
    shuffle : {"shift", "permute"}
        The null: "shift" circularly shifts the states within each block (for variables that change within a
        block: epochs, running); "permute" pairs each block's states with another block's value (for variables
        constant within a block: a trial's stimulus or outcome).
    """

    def __init__(self, labels: np.ndarray, categories: list[str], groups: np.ndarray, shuffle: str):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.categories = list(categories)
        self.groups = np.asarray(groups, dtype=np.int64)
        self.shuffle = shuffle


def _otsu(x: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut of a 1-D sample that maximises the between-class variance."""
    hist, edges = np.histogram(x, bins=bins)
    mids = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * mids) / np.maximum(w0, 1)
    m1 = (np.sum(hist * mids) - np.cumsum(hist * mids)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[1:][np.argmax(between)])


def _runs(mask: np.ndarray) -> np.ndarray:
    """Id of the contiguous run of True each bin lies in (-1 outside)."""
    idx = np.flatnonzero(mask)
    out = np.full(mask.shape, -1, dtype=np.int64)
    if idx.size:
        out[idx] = np.concatenate([[0], np.cumsum(np.diff(idx) > 1)])
    return out


def task_variables(counts: xr.Dataset) -> dict[str, TaskVariable]:
    """The task variables a ``spike_counts`` dataset carries, as discrete labels per bin.

    - Trialized recordings (a ``trial`` variable): ``epoch``, the time since trial start cut at
      :data:`EPOCH_EDGES_S`; and each ``stimulus`` variable that is constant within trials and takes at most
      :data:`MAX_CATEGORIES` values (in the Steinmetz sessions: left and right contrast, feedback), as
      ``stimulus_<name>``.
    - Recordings with tracked position (``behaviour`` with an ``x`` variable, and ``y`` if present):
      ``running``, whether the speed of the position smoothed over :data:`SPEED_SMOOTH_S` is above Otsu's
      threshold on log(1 + speed) (the speeds of a session with runs and rests are bimodal; the threshold is the
      data's, in its own units).

    Parameters
    ----------
    counts : xarray.Dataset
        A ``spike_counts`` dataset.

    Returns
    -------
    dict
        Name -> :class:`TaskVariable`; empty when the dataset carries none.
    """
    out: dict[str, TaskVariable] = {}
    n = counts.sizes["time"]
    dt = float(counts.attrs.get("bin_width_s", 0) or 0)
    if "trial" in counts:
        trial = np.asarray(counts["trial"].values, dtype=np.int64)
        t = counts["time"].values
        t = (t - t[0]) / np.timedelta64(1, "s") if np.issubdtype(t.dtype, np.datetime64) else t.astype(float)
        groups = np.concatenate([[0], np.cumsum(np.diff(trial) != 0)])
        outside = trial < 0  # bins between trials
        first = np.maximum.accumulate(np.where(np.r_[True, np.diff(groups) != 0], t, -np.inf))
        since = t - first + (dt / 2 if dt else 0.0)  # bin centres
        edges = np.asarray(EPOCH_EDGES_S)
        names = [
            f"{lo * 1000:.0f}-{hi * 1000:.0f} ms" for lo, hi in zip(np.r_[0, edges], edges, strict=False)
        ]
        names.append(f">{edges[-1] * 1000:.0f} ms")
        epoch = np.where(outside, -1, np.searchsorted(edges, since, side="right"))
        out["epoch"] = TaskVariable(epoch, names, groups, "shift")
        if "stimulus" in counts:
            dim = [d for d in counts["stimulus"].dims if d != "time"][0]
            for k, var in enumerate(counts[dim].values):
                x = np.where(outside, np.nan, np.asarray(counts["stimulus"].values[:, k], dtype=np.float64))
                values = np.unique(x[np.isfinite(x)])
                constant = all(np.unique(x[groups == g]).size == 1 for g in np.unique(groups[~outside]))
                if not constant or not 2 <= values.size <= MAX_CATEGORIES:
                    continue
                lab = np.where(np.isfinite(x), np.searchsorted(values, x), -1)
                out[f"stimulus_{var}"] = TaskVariable(lab, [f"{v:g}" for v in values], groups, "permute")
    if "behaviour" in counts and dt > 0:
        dim = [d for d in counts["behaviour"].dims if d != "time"][0]
        names = [str(v) for v in counts[dim].values]
        if "x" in names:
            cols = [names.index(c) for c in ("x", "y") if c in names]
            pos = np.asarray(counts["behaviour"].values[:, cols], dtype=np.float64)
            w = max(1, int(round(SPEED_SMOOTH_S / dt)))
            kernel = np.ones(w) / w
            smooth = np.stack([np.convolve(p, kernel, mode="same") for p in pos.T], 1)
            speed = np.linalg.norm(np.gradient(smooth, axis=0), axis=1) / dt
            ok = np.isfinite(speed)
            if ok.sum() > 10 and np.ptp(speed[ok]) > 0:
                cut = _otsu(np.log1p(speed[ok]))
                lab = np.where(ok, (np.log1p(np.where(ok, speed, 0)) > cut).astype(np.int64), -1)
                out["running"] = TaskVariable(lab, ["still", "running"], np.zeros(n, dtype=np.int64), "shift")
    return out


def _soft_mi(post: np.ndarray, labels: np.ndarray, n_cat: int) -> float:
    """Mutual information (bits) between the state (posterior weights) and a category, plug-in estimate."""
    C = np.zeros((post.shape[1], n_cat))
    np.add.at(C.T, labels, post)
    p = C / max(C.sum(), 1e-300)
    ps, pk = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log2(p[nz] / (ps @ pk)[nz])))


def state_occupancy(post: np.ndarray, var: TaskVariable, bins: np.ndarray) -> np.ndarray:
    """P(state | category) over ``bins``: (n_categories, S), rows summing to 1 (NaN for an absent category).

    Parameters
    ----------
    post : numpy.ndarray
        (n_bins, S) posterior state probabilities.
    var : TaskVariable
        The task variable.
    bins : numpy.ndarray
        Boolean (n_bins,) selection (e.g. the test split).

    Returns
    -------
    numpy.ndarray
        (n_categories, S) state occupancy per category.
    """
    sel = bins & (var.labels >= 0)
    C = np.zeros((len(var.categories), post.shape[1]))
    np.add.at(C, var.labels[sel], post[sel])
    with np.errstate(invalid="ignore", divide="ignore"):
        return C / C.sum(1, keepdims=True)


def task_information(
    post: np.ndarray, var: TaskVariable, bins: np.ndarray, n_shuffles: int = 200, seed: int = 0
) -> tuple[float, float, float]:
    """Mutual information between decoded states and a task variable on ``bins``, against a shuffled null.

    Parameters
    ----------
    post : numpy.ndarray
        (n_bins, S) posterior state probabilities.
    var : TaskVariable
        The task variable (its ``shuffle`` sets the null: circular shifts of the states within blocks, or
        blocks' values permuted among blocks).
    bins : numpy.ndarray
        Boolean (n_bins,) selection (the test split).
    n_shuffles : int
        Shuffles of the null.
    seed : int
        Seed of the shuffles.

    Returns
    -------
    (float, float, float)
        The mutual information (bits), its mean under the null (the plug-in estimate's bias plus what the states'
        and the variable's own time structure give by chance), and the permutation p-value
        ``(1 + #{null >= observed}) / (1 + n_shuffles)``.
    """
    sel = bins & (var.labels >= 0)
    idx = np.flatnonzero(sel)
    if idx.size == 0 or post.shape[1] < 2:
        return float("nan"), float("nan"), float("nan")
    P, lab, K = post[idx], var.labels[idx], len(var.categories)
    grp = var.groups[idx]
    blocks = [np.flatnonzero(g) for g in (grp[:, None] == np.unique(grp)[None]).T]
    if (
        var.shuffle == "shift"
    ):  # split each block further at gaps (e.g. test blocks of a continuous recording)
        blocks = [b[r == k] for b in blocks for r in [_runs_of(idx[b])] for k in np.unique(r)]
    observed = _soft_mi(P, lab, K)
    rng = np.random.default_rng(seed)
    null = np.empty(n_shuffles)
    for s in range(n_shuffles):
        if var.shuffle == "shift":
            Q = np.empty_like(P)
            for b in blocks:
                L = b.size
                k = int(rng.integers(max(1, L // 10), max(2, L - L // 10))) if L > 1 else 0
                Q[b] = np.roll(P[b], k, axis=0)
            null[s] = _soft_mi(Q, lab, K)
        else:  # each block's value replaced by another block's
            values = np.array([lab[b[0]] for b in blocks])
            perm = rng.permutation(len(blocks))
            lab2 = np.empty_like(lab)
            for b, v in zip(blocks, values[perm], strict=True):
                lab2[b] = v
            null[s] = _soft_mi(P, lab2, K)
    return observed, float(null.mean()), float((1 + np.sum(null >= observed)) / (1 + n_shuffles))


def _runs_of(positions: np.ndarray) -> np.ndarray:
    """Id of the contiguous stretch (consecutive bin indices) each of the sorted ``positions`` lies in."""
    return np.concatenate([[0], np.cumsum(np.diff(positions) > 1)]) if positions.size else positions


def task_metrics(
    fit: xr.Dataset,
    counts: xr.Dataset,
    references: Mapping[str, xr.Dataset] | None = None,
    n_shuffles: int = 200,
    seed: int = 0,
    clusters: StateClusters | None = None,
) -> dict[str, float]:
    """Decoded states against the task variables of :func:`task_variables`, on the test bins.

    For each variable ``v``: ``task_mi_<v>`` (bits: mutual information between the posterior state and the
    variable), ``task_mi_<v>_null`` (its mean under the shuffled null of :func:`task_information`),
    ``task_mi_<v>_excess`` (the difference) and ``task_mi_<v>_p`` (permutation p-value); with multi-state
    reference fits, ``task_mi_<v>_vs_<name>`` (excess minus the reference's excess); with ``clusters`` (the
    non-HMM baseline of :func:`brainpipe.evaluate.switching_clusters.cluster_states`), ``task_mi_<v>_clusters``
    and ``task_mi_<v>_clusters_excess`` (the clusters' mutual information and its excess over the same null) and
    ``task_mi_<v>_vs_clusters`` (the states' excess minus the clusters'). Empty for a single-state fit or a
    dataset without task variables.

    Parameters
    ----------
    fit : xarray.Dataset
        A switching-GLM ``model_fit`` with ``posterior`` over the counts' bins.
    counts : xarray.Dataset
        Its ``spike_counts``.
    references : mapping, optional
        Name -> reference fits (single-state ones are skipped).
    n_shuffles : int
        Shuffles of each null.
    seed : int
        Seed of the shuffles.
    clusters : StateClusters, optional
        Cluster labels of every bin (the non-HMM baseline), with as many clusters as the fit has states.

    Returns
    -------
    dict
        Metric name -> value.
    """
    if "posterior" not in fit or fit.sizes.get("state", 1) < 2:
        return {}
    test = counts["split"].values == SPLIT_FLAGS["test"]
    out: dict[str, float] = {}
    for name, var in task_variables(counts).items():
        mi, null, p = task_information(np.asarray(fit["posterior"].values), var, test, n_shuffles, seed)
        out[f"task_mi_{name}"], out[f"task_mi_{name}_null"] = mi, null
        out[f"task_mi_{name}_excess"], out[f"task_mi_{name}_p"] = mi - null, p
        for ref_name, ref in (references or {}).items():
            if "posterior" in ref and ref.sizes.get("state", 1) > 1:
                r_mi, r_null, _ = task_information(
                    np.asarray(ref["posterior"].values), var, test, n_shuffles, seed
                )
                out[f"task_mi_{name}_vs_{ref_name}"] = (mi - null) - (r_mi - r_null)
        if clusters is not None:
            c_mi, c_null, _ = task_information(
                clusters.one_hot(fit.sizes["state"]), var, test, n_shuffles, seed
            )
            out[f"task_mi_{name}_clusters"], out[f"task_mi_{name}_clusters_excess"] = c_mi, c_mi - c_null
            out[f"task_mi_{name}_vs_clusters"] = (mi - null) - (c_mi - c_null)
    return out
