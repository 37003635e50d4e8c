"""Metrics of switching GLMs: held-out likelihood, and recovery of planted states, weights and structure."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.evaluate.metrics import _corr
from brainpipe.models.baselines import poisson_log_likelihood
from brainpipe.models.switching_glm import SwitchingGLM


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
    weights' mean over states, off-diagonal).
    With reference fits (e.g. ``single``, ``none``): ``bits_vs_<name>``, and where both have them
    ``state_accuracy_vs_<name>``, ``weight_corr_vs_<name>``, ``adjacency_ba_vs_<name>``,
    ``shared_adjacency_ba_vs_<name>`` and ``shared_mean_corr_vs_<name>``.
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
        ):
            if key in out and key in ref_metrics:
                out[f"{short}_vs_{name}"] = out[key] - ref_metrics[key]
    return out
