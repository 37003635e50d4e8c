"""Dynamic-connectome metrics against the simulator's planted communities (and rank diagnostics for any data).

Planted CP factors (from the truth of each animal and the tensor's coordinates): pair factor r = 1 where both
neurons are in community r; time factor r = the fraction of each window inside epoch r; animal factor = 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from brainpipe.evaluate.metrics import METRICS, MetricInfo, metrics_dataset
from brainpipe.models.connectome import factor_match_score

METRICS.update(
    {
        "factor_match_score": MetricInfo(
            ">=",
            "factor match score (mean |cos| product, Hungarian-matched) vs planted factors, at the true rank",
        ),
        "selected_rank_is_true": MetricInfo(
            ">=", "1 if the replicate-stability rule picked the planted number of communities"
        ),
        "community_jaccard_min": MetricInfo(
            ">=",
            "smallest Jaccard index between a planted community and its matched component's densest Louvain community",
        ),
        "community_jaccard_mean": MetricInfo(">=", "mean of the same Jaccard indices"),
        "epoch_peak_fraction": MetricInfo(
            ">=", "fraction of planted communities whose matched time factor peaks inside its planted epoch"
        ),
        "selected_rank": MetricInfo(">=", "rank picked by replicate stability"),
        "stability_at_selected": MetricInfo(
            ">=", "replicate stability (mean FMS of restarts vs the best) at the selected rank"
        ),
        "relative_error": MetricInfo(
            "<=", "relative reconstruction error (observed entries) at the selected rank"
        ),
    }
)


def planted_factors(tensor: xr.Dataset, truth: xr.Dataset) -> list[np.ndarray]:
    """[pair (P, C), time (W, C), animal (A, C)] planted factors on the tensor's coordinates."""
    neurons = [str(n) for n in tensor["neuron"].values]
    mem = truth["membership"].sel(neuron=neurons).values.astype(float)
    pi, pj = tensor["pair_i"].values, tensor["pair_j"].values
    pair = mem[pi] * mem[pj]
    tc = np.asarray(tensor["time"].values)
    half = float(tensor.attrs["window_frames"]) / float(tensor.attrs["frame_rate_hz"]) / 2
    lo, hi = truth["epoch_start_s"].values, truth["epoch_stop_s"].values
    time = np.clip(
        np.minimum(tc[:, None] + half, hi[None]) - np.maximum(tc[:, None] - half, lo[None]), 0, None
    ) / (2 * half)
    animal = np.ones((tensor.sizes["animal"], mem.shape[1]))
    return [pair, time, animal]


def _factors_at(fit: xr.Dataset, rank: int) -> list[np.ndarray]:
    sel = fit.sel(rank=rank)
    return [
        np.asarray(sel[v].values)[:, :rank]
        for v in ("all_pair_factor", "all_time_factor", "all_animal_factor")
    ]


def connectome_metrics(
    fit: xr.Dataset, tensor: xr.Dataset, truth: xr.Dataset | None = None
) -> dict[str, float]:
    """Rank diagnostics, and with a truth: FMS at the true rank, rank choice, community Jaccard, epoch peaks."""
    R = int(fit.attrs["selected_rank"])
    ranks = [int(r) for r in fit["rank"].values]
    out = {
        "selected_rank": float(R),
        "stability_at_selected": float(fit["rank_stability"].sel(rank=R)),
        "relative_error": float(fit["rank_error"].sel(rank=R)),
    }
    if truth is None or "membership" not in truth:
        return out
    true = planted_factors(tensor, truth)
    C = true[0].shape[1]
    out["factor_match_score"] = (
        factor_match_score(true, _factors_at(fit, C))[0] if C in ranks else float("nan")
    )
    out["selected_rank_is_true"] = float(R == C)
    sel = [np.asarray(fit[v].values) for v in ("pair_factor", "time_factor", "animal_factor")]
    _, perm = factor_match_score(true, sel)
    neurons = [str(n) for n in fit["neuron"].values]
    mem = truth["membership"].sel(neuron=neurons).values.astype(bool)
    jac, peaks = [], []
    lo, hi = truth["epoch_start_s"].values, truth["epoch_stop_s"].values
    tc = np.asarray(fit["time"].values)
    for c in range(C):
        r = perm[c]
        if r < 0:
            jac.append(0.0)
            peaks.append(0.0)
            continue
        found = np.asarray(fit["in_community"].values[r]).astype(bool)
        planted = mem[:, c]
        jac.append(float((found & planted).sum() / max((found | planted).sum(), 1)))
        t_peak = tc[int(np.argmax(sel[1][:, r]))]
        peaks.append(float(lo[c] <= t_peak < hi[c]))
    out["community_jaccard_min"] = float(min(jac))
    out["community_jaccard_mean"] = float(np.mean(jac))
    out["epoch_peak_fraction"] = float(np.mean(peaks))
    return out


def connectome_metrics_dataset(
    values: Mapping[str, float], bars: Mapping[str, float] | None, study: str
) -> xr.Dataset:
    return metrics_dataset(values, bars, model="connectome_ntf", dataset=study)


def merge_truths(truths: Sequence[xr.Dataset]) -> xr.Dataset | None:
    """The shared planted network of a study's animals (all simulated with the same seed); None if any lacks one."""
    if not truths or any("membership" not in t for t in truths):
        return None
    first = truths[0]
    for t in truths[1:]:
        if not np.array_equal(t["membership"].values, first["membership"].values):
            return None
    return first[["membership", "epoch_start_s", "epoch_stop_s"]]
