"""Dynamic-connectome metrics against the simulator's planted communities (and rank diagnostics for any data).

Planted CP factors (from the truth of each animal and the tensor's coordinates): pair factor r = 1 where both
neurons are in community r; time factor r = the fraction of each window inside epoch r (averaged over the animals
that have community r); animal factor = 1 where the animal has community r.

Community recovery and epoch detection are scored by one rule for the NTF and for its baselines (static Louvain on
the time-averaged affinity, windowed Louvain with a consensus, NMF of the unfolded pair x window matrix with the
missing entries filled or masked: :mod:`brainpipe.evaluate.connectome_baselines`); ``<metric>_vs_best_baseline`` is the NTF's value minus the best
baseline's, the quantity the bars are set on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from brainpipe.evaluate.connectome_baselines import BASELINES, baseline_communities, score_communities
from brainpipe.evaluate.connectome_behaviour import behaviour_metrics
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
            "smallest Jaccard index between a planted community and its matched (Hungarian on Jaccard) component's "
            "densest Louvain community",
        ),
        "community_jaccard_mean": MetricInfo(">=", "mean of the same Jaccard indices"),
        "epoch_peak_fraction": MetricInfo(
            ">=", "fraction of planted communities whose matched time factor peaks inside its planted epoch"
        ),
        "rank_is_stable": MetricInfo(
            ">=", "1 if some candidate rank reached the stability threshold (0: the smallest rank, unstable)"
        ),
        "affinity_zero_fraction": MetricInfo("<=", "fraction of the observed affinity entries that are 0"),
        "stability_at_true_rank": MetricInfo(
            ">=", "replicate stability at the planted rank (why the rank rule missed it, when it did)"
        ),
        **{
            f"{k}_vs_best_baseline": MetricInfo(">=", f"NTF {k} minus the best baseline's")
            for k in ("community_jaccard_mean", "community_jaccard_min", "epoch_peak_fraction")
        },
        **{
            f"{b}_{k}": MetricInfo(">=", f"baseline {b}: {k}")
            for b in BASELINES
            for k in ("community_jaccard_mean", "community_jaccard_min", "epoch_peak_fraction")
        },
        "selected_rank": MetricInfo(">=", "rank picked by replicate stability"),
        "stability_at_selected": MetricInfo(
            ">=", "replicate stability (mean FMS of restarts vs the best) at the selected rank"
        ),
        "relative_error": MetricInfo(
            "<=", "relative reconstruction error (observed entries) at the selected rank"
        ),
    }
)


def _study_animals(truth: xr.Dataset) -> np.ndarray:
    """The simulator's animal index of each of the study's animals (in tensor order)."""
    if "study_animal" in truth:
        return np.asarray(truth["study_animal"].values, dtype=int)
    n = truth.sizes.get("animal", 1)
    return np.arange(n)


def _present(truth: xr.Dataset, n_animals: int, n_comm: int) -> np.ndarray:
    """(animal, community) 1 where the study's animal has the community's co-activity."""
    if "community_present" not in truth:
        return np.ones((n_animals, n_comm))
    return np.asarray(truth["community_present"].values, dtype=float)[_study_animals(truth)[:n_animals]]


def _epochs(truth: xr.Dataset, n_animals: int) -> tuple[np.ndarray, np.ndarray]:
    """(animal, community) epoch starts and stops (s) of the study's animals."""
    if "animal_epoch_start_s" in truth:
        idx = _study_animals(truth)[:n_animals]
        return (
            np.asarray(truth["animal_epoch_start_s"].values)[idx],
            np.asarray(truth["animal_epoch_stop_s"].values)[idx],
        )
    lo, hi = truth["epoch_start_s"].values, truth["epoch_stop_s"].values
    return np.tile(lo, (n_animals, 1)), np.tile(hi, (n_animals, 1))


def planted_factors(tensor: xr.Dataset, truth: xr.Dataset) -> list[np.ndarray]:
    """[pair (P, C), time (W, C), animal (A, C)] planted factors on the tensor's coordinates.

    Parameters
    ----------
    tensor : xarray.Dataset
        The ``affinity_tensor`` (or a fit with the same coordinates and ``window_frames``/``frame_rate_hz``).
    truth : xarray.Dataset
        A study's merged truth (:func:`merge_truths`).

    Returns
    -------
    list of numpy.ndarray
        Pair: both neurons in community r; time: the window's overlap with epoch r, averaged over the animals that
        have the community; animal: 1 where the animal has the community.
    """
    neurons = [str(n) for n in tensor["neuron"].values]
    mem = truth["membership"].sel(neuron=neurons).values.astype(float)
    pi, pj = tensor["pair_i"].values, tensor["pair_j"].values
    pair = mem[pi] * mem[pj]
    tc = np.asarray(tensor["time"].values)
    half = float(tensor.attrs["window_frames"]) / float(tensor.attrs["frame_rate_hz"]) / 2
    n_an = tensor.sizes["animal"]
    animal = _present(truth, n_an, mem.shape[1])
    lo, hi = _epochs(truth, n_an)
    overlap = np.clip(
        np.minimum(tc[None, :, None] + half, hi[:, None, :])
        - np.maximum(tc[None, :, None] - half, lo[:, None, :]),
        0,
        None,
    ) / (2 * half)  # (animal, window, community)
    time = (overlap * animal[:, None, :]).sum(0) / np.maximum(animal.sum(0), 1)[None, :]
    return [pair, time, animal]


def _factors_at(fit: xr.Dataset, rank: int) -> list[np.ndarray]:
    sel = fit.sel(rank=rank)
    return [
        np.asarray(sel[v].values)[:, :rank]
        for v in ("all_pair_factor", "all_time_factor", "all_animal_factor")
    ]


#: the community and epoch metrics compared with the best baseline
COMPARED = ("community_jaccard_mean", "community_jaccard_min", "epoch_peak_fraction")


def ntf_animal_timecourses(fit: xr.Dataset) -> np.ndarray:
    """(component, window, animal) time course of each NTF component in each animal.

    Parameters
    ----------
    fit : xarray.Dataset
        A ``connectome_ntf`` fit.

    Returns
    -------
    numpy.ndarray
        ``time_mode: per_animal``: each animal's own course (``animal_time_factor``); shared: the shared time
        factor in every animal.
    """
    if "animal_time_factor" in fit:
        return np.transpose(np.asarray(fit["animal_time_factor"].values, dtype=np.float64), (2, 1, 0))
    tf = np.asarray(fit["time_factor"].values, dtype=np.float64).T
    return np.repeat(tf[:, :, None], fit.sizes["animal"], axis=2)


def connectome_metrics(
    fit: xr.Dataset,
    tensor: xr.Dataset,
    truth: xr.Dataset | None = None,
    baselines: bool = True,
    behaviour: Sequence[Mapping | None] | None = None,
    n_shifts: int = 200,
) -> dict[str, float]:
    """Rank diagnostics, and with a truth: FMS at the true rank, rank choice, community Jaccard, epoch peaks, the
    same for each baseline (:mod:`brainpipe.evaluate.connectome_baselines`) and the NTF minus the best baseline;
    with behaviour: the time courses related to it (:mod:`brainpipe.evaluate.connectome_behaviour`).

    Parameters
    ----------
    fit : xarray.Dataset
        A ``connectome_ntf`` fit (:meth:`brainpipe.models.connectome.DynamicConnectome.to_dataset`).
    tensor : xarray.Dataset
        The affinity tensor it was fitted on.
    truth : xarray.Dataset, optional
        The study's merged planted truth (:func:`merge_truths`); without it only the diagnostics.
    baselines : bool
        Score the baselines too (with a truth or behaviour).
    behaviour : sequence, optional
        Per animal of the tensor, None or ``{"time", "values", "names"}`` (:func:`animal_behaviour`).
    n_shifts : int
        Circular shifts of the behaviour in its null.

    Returns
    -------
    dict
        Metric name -> value (names in :data:`brainpipe.evaluate.metrics.METRICS` or its patterns).
    """
    R = int(fit.attrs["selected_rank"])
    ranks = [int(r) for r in fit["rank"].values]
    out = {
        "selected_rank": float(R),
        "stability_at_selected": float(fit["rank_stability"].sel(rank=R)),
        "rank_is_stable": float(fit.attrs.get("rank_is_stable", 1)),
        "relative_error": float(fit["rank_error"].sel(rank=R)),
    }
    if "affinity_zero_fraction" in fit.attrs:
        out["affinity_zero_fraction"] = float(fit.attrs["affinity_zero_fraction"])
    has_behaviour = behaviour is not None and any(b is not None for b in behaviour)
    has_truth = truth is not None and "membership" in truth
    params = json.loads(fit.attrs.get("estimator_params", "{}"))
    seed, res = int(params.get("seed", 0)), float(params.get("resolution", 1.0))
    choice = str(params.get("community_choice", "density"))  # the NMF baselines pick as the NTF does
    runs = {}
    if baselines and (has_truth or has_behaviour):
        runs = {
            b: baseline_communities(
                tensor, b, rank=R, resolution=res, seed=seed, per_animal=True, choice=choice
            )
            for b in BASELINES
        }
    if has_behaviour:
        half = float(tensor.attrs["window_frames"]) / float(tensor.attrs["frame_rate_hz"]) / 2
        courses = {"ntf": ntf_animal_timecourses(fit), **{b: r[2] for b, r in runs.items()}}
        start = np.asarray(tensor["time"].values, dtype=np.float64) - half
        beh = behaviour_metrics(courses, start, 2 * half, behaviour, n_shifts, seed)
    else:
        beh = {}
    if not has_truth:
        return {**out, **beh}
    true = planted_factors(tensor, truth)
    C = true[0].shape[1]
    out["factor_match_score"] = (
        factor_match_score(true, _factors_at(fit, C))[0] if C in ranks else float("nan")
    )
    out["selected_rank_is_true"] = float(R == C)
    if C in ranks:
        out["stability_at_true_rank"] = float(fit["rank_stability"].sel(rank=C))
    neurons = [str(n) for n in fit["neuron"].values]
    planted = truth["membership"].sel(neuron=neurons).values.astype(bool)
    n_an = tensor.sizes["animal"]
    present = _present(truth, n_an, C).astype(bool)
    lo, hi = _epochs(truth, n_an)
    epochs = [[(lo[a, c], hi[a, c]) for a in range(n_an) if present[a, c]] for c in range(C)]
    tc = np.asarray(tensor["time"].values)
    found = np.asarray(fit["in_community"].values).astype(bool)
    ntf = score_communities(found, np.asarray(fit["time_factor"].values).T, planted, tc, epochs)
    out.update(ntf)
    if not baselines:
        return {**out, **beh}
    scores = {}
    for b in BASELINES:
        f, t = runs[b][:2]
        scores[b] = score_communities(f, t, planted, tc, epochs)
        for k in COMPARED:
            out[f"{b}_{k}"] = scores[b][k]
    for k in COMPARED:
        out[f"{k}_vs_best_baseline"] = ntf[k] - max(s[k] for s in scores.values())
    return {**out, **beh}


def connectome_metrics_dataset(
    values: Mapping[str, float], bars: Mapping[str, float] | None, study: str
) -> xr.Dataset:
    """The ``metrics`` dataset of a connectome study (model ``connectome_ntf``).

    Parameters
    ----------
    values : mapping
        Metric name -> value (:func:`connectome_metrics`).
    bars : mapping, optional
        Metric name -> bar.
    study : str
        The study's name.

    Returns
    -------
    xarray.Dataset
        As :func:`brainpipe.evaluate.metrics.metrics_dataset`.
    """
    return metrics_dataset(values, bars, model="connectome_ntf", dataset=study)


def merge_truths(truths: Sequence[xr.Dataset]) -> xr.Dataset | None:
    """The shared planted network of a study's animals (all simulated with the same seed); None if any lacks one.

    Parameters
    ----------
    truths : sequence of xarray.Dataset
        Each animal's truth, in the study's (tensor's) order.

    Returns
    -------
    xarray.Dataset or None
        Membership, epochs, community presence per animal, and ``study_animal`` (the simulator's index of each of
        the study's animals).
    """
    if not truths or any("membership" not in t for t in truths):
        return None
    first = truths[0]
    for t in truths[1:]:
        if not np.array_equal(t["membership"].values, first["membership"].values):
            return None
    keep = [
        v
        for v in ("membership", "epoch_start_s", "epoch_stop_s", "community_present")
        + ("animal_epoch_start_s", "animal_epoch_stop_s")
        if v in first
    ]
    out = first[keep]
    idx = [int(t.attrs.get("animal_index", k)) for k, t in enumerate(truths)]
    return out.assign(study_animal=("study_animal", np.asarray(idx, dtype=np.int64)))


def behaviour_relation(
    time_factor: np.ndarray,
    window_start_s: np.ndarray,
    window_s: float,
    behaviour_time_s: np.ndarray,
    behaviour: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Relate each time factor to behaviour variables: the variable averaged over each window, then Pearson r
    (continuous variables) or AUROC (0/1 variables: the factor's ability to tell windows where the variable is
    mostly 1 from the others).

    Parameters
    ----------
    time_factor : numpy.ndarray
        (window, R) time factors (one animal's, for per-animal time modes).
    window_start_s : numpy.ndarray
        (window,) window starts (s).
    window_s : float
        Window length (s).
    behaviour_time_s : numpy.ndarray
        (T,) sample times of the behaviour variables (s), increasing.
    behaviour : mapping
        Variable name -> (T,) values.

    Returns
    -------
    dict
        Variable name -> (R,) Pearson r or AUROC per component (NaN where undefined: a constant variable, or a 0/1
        variable with one class only).
    """
    from brainpipe.evaluate.connectome_behaviour import _prepared, _relate, window_means

    tf = np.asarray(time_factor, dtype=np.float64)
    t = np.asarray(behaviour_time_s, dtype=np.float64)
    out = {}
    for name, values in behaviour.items():
        v = np.asarray(values, dtype=np.float64)
        if v.shape != t.shape:
            raise ValueError(f"behaviour {name!r}: {v.shape[0]} samples for {t.shape[0]} times")
        w = window_means(window_start_s, window_s, t, v)
        ok = np.isfinite(w)
        binary = set(np.unique(v[np.isfinite(v)])) <= {0.0, 1.0}
        out[str(name)] = _relate(_prepared(tf.T, ok, binary), w[ok], binary)
    return out


def animal_behaviour(ds: xr.Dataset) -> dict | None:
    """One animal's behaviour for :func:`connectome_metrics` (None when its recording carries none).

    Parameters
    ----------
    ds : xarray.Dataset
        A ``calcium_traces`` dataset (raw or processed).

    Returns
    -------
    dict or None
        ``time`` (T,) s, ``values`` (T, V) and ``names`` (V).
    """
    if "behaviour" not in ds or ds.sizes.get("behaviour_var", 0) == 0:
        return None
    return {
        "time": np.asarray(ds["behaviour_time"].values, dtype=np.float64),
        "values": np.asarray(
            ds["behaviour"].transpose("behaviour_time", "behaviour_var").values, dtype=np.float64
        ),
        "names": [str(v) for v in ds["behaviour_var"].values],
    }
