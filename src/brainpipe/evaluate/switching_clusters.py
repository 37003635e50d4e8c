"""A non-HMM baseline for decoded states: k-means clusters of the smoothed population rate.

Each bin is labelled by the k-means cluster (as many clusters as the switching GLM has states) of the population
rate smoothed over a window around it: no hidden Markov chain, no GLM. The window is chosen on the validation
bins by how well the clusters predict spike counts: each bin's cluster is read from its neighbours' smoothed
rate with the bin itself left out, and the train bins' mean counts in that cluster predict the bin's counts
(Poisson log-likelihood). The decoded states of :func:`brainpipe.evaluate.switching.task_metrics` are compared
with these clusters under the same mutual information and shuffled null.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from brainpipe.data.contracts import SPLIT_FLAGS

#: Half-widths (s) of the boxcar windows tried; each is rounded to whole bins (at least one).
CLUSTER_HALF_WINDOWS_S = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: k-means restarts.
CLUSTER_RESTARTS = 4
#: At most this many train bins (evenly spaced) fit k-means; every bin is then labelled.
CLUSTER_FIT_BINS = 4000


@dataclass
class StateClusters:
    """Cluster labels of every bin and how they were chosen.

    Parameters
    ----------
    labels : numpy.ndarray
        (n_bins,) cluster index per bin.
    half_window_s : float
        The chosen boxcar half-width (s): the window spans ``2 * half_window_s + bin_width_s``.
    scores : dict
        Half-width (s) -> validation log-likelihood per bin of the counts given the cluster (higher is better).
    selected_on : str
        The split the window was chosen on ("validation", or "train" when there is no validation bin).
    """

    labels: np.ndarray
    half_window_s: float
    scores: dict
    selected_on: str

    def one_hot(self, n_clusters: int) -> np.ndarray:
        """The labels as state probabilities of 0 or 1.

        Parameters
        ----------
        n_clusters : int
            Number of clusters (columns).

        Returns
        -------
        numpy.ndarray
            (n_bins, n_clusters) one-hot rows.
        """
        out = np.zeros((self.labels.size, n_clusters))
        out[np.arange(self.labels.size), self.labels] = 1.0
        return out


def _segments(counts: xr.Dataset) -> np.ndarray:
    """Id of the stretch each bin lies in: contiguous in time and in one split (smoothing never crosses a gap
    between trials or a split boundary, so a train bin's feature holds no test counts)."""
    t = counts["time"].values
    t = (t - t[0]) / np.timedelta64(1, "s") if np.issubdtype(t.dtype, np.datetime64) else t.astype(np.float64)
    dt = float(counts.attrs.get("bin_width_s", 0) or 0)
    if dt <= 0:
        dt = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    split = np.asarray(counts["split"].values)
    brk = np.r_[False, (np.diff(t) > 1.5 * dt) | (np.diff(split) != 0)]
    return np.cumsum(brk)


def smoothed_rates(y: np.ndarray, segments: np.ndarray, half: int, leave_out: bool = False) -> np.ndarray:
    """Boxcar mean of the counts over ``[t - half, t + half]`` within each segment (truncated at its edges).

    Parameters
    ----------
    y : numpy.ndarray
        (n_bins, n_units) counts.
    segments : numpy.ndarray
        (n_bins,) segment id (contiguous, non-decreasing).
    half : int
        Half-width in bins.
    leave_out : bool
        Leave the bin itself out of its own mean (a bin alone in its window then gets its segment's mean).

    Returns
    -------
    numpy.ndarray
        (n_bins, n_units) mean counts per bin.
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[0]
    starts = np.flatnonzero(np.r_[True, np.diff(segments) != 0])
    ends = np.r_[starts[1:], n]
    which = np.cumsum(np.r_[True, np.diff(segments) != 0]) - 1  # each bin's segment (index into starts)
    first, stop = starts[which], ends[which]
    c = np.vstack([np.zeros((1, y.shape[1])), np.cumsum(y, 0)])
    i = np.arange(n)
    lo, hi = np.maximum(i - half, first), np.minimum(i + half + 1, stop)
    total, count = c[hi] - c[lo], (hi - lo)[:, None].astype(np.float64)
    if leave_out:
        total, count = total - y, count - 1
        alone = count[:, 0] == 0
        if alone.any():  # a bin alone in its segment: its segment's mean (itself)
            total[alone], count[alone] = y[alone], 1.0
    return total / count


def _kmeans(X: np.ndarray, k: int, seed: int):
    from sklearn.cluster import KMeans

    step = max(1, -(-X.shape[0] // CLUSTER_FIT_BINS))
    return KMeans(n_clusters=k, n_init=CLUSTER_RESTARTS, random_state=seed).fit(X[::step])


def cluster_states(
    counts: xr.Dataset,
    n_clusters: int,
    half_windows_s: tuple[float, ...] = CLUSTER_HALF_WINDOWS_S,
    seed: int = 0,
) -> StateClusters:
    """k-means clusters of the smoothed population rate, window chosen on the validation bins.

    Features are the square roots of the smoothed rates (variance-stabilised), z-scored with the train bins'
    statistics; k-means is fitted on the train bins only (at most :data:`CLUSTER_FIT_BINS`, evenly spaced) and
    applied to every bin. For each candidate window the
    validation score is the Poisson log-likelihood per bin of the counts given the cluster of the bin's
    neighbourhood with the bin itself left out (rates: the train bins' mean counts per cluster); the chosen
    window then labels every bin with the bin included.

    Parameters
    ----------
    counts : xarray.Dataset
        A ``spike_counts`` dataset (``counts``, ``split``, ``time``, attribute ``bin_width_s``).
    n_clusters : int
        Number of clusters (the switching GLM's number of states).
    half_windows_s : tuple of float
        Candidate boxcar half-widths (s); each is rounded to whole bins, at least one.
    seed : int
        Seed of k-means.

    Returns
    -------
    StateClusters
        The labels of every bin and the chosen window with the scores.
    """
    y = np.asarray(counts["counts"].values, dtype=np.float64)
    split = np.asarray(counts["split"].values)
    train = split == SPLIT_FLAGS["train"]
    val = split == SPLIT_FLAGS["validation"]
    selected_on = "validation" if val.any() else "train"
    if not val.any():
        val = train
    dt = float(counts.attrs.get("bin_width_s", 0) or 0) or 1.0
    seg = _segments(counts)
    halves = sorted({max(1, int(round(h / dt))) for h in half_windows_s})

    def features(half: int, leave_out: bool, mu=None, sd=None):
        F = np.sqrt(smoothed_rates(y, seg, half, leave_out))
        if mu is None:
            mu, sd = F[train].mean(0), F[train].std(0)
            sd = np.where(sd > 0, sd, 1.0)
        return (F - mu) / sd, mu, sd

    scores: dict[float, float] = {}
    for half in halves:
        F, mu, sd = features(half, True)
        km = _kmeans(F[train], n_clusters, seed)
        lab = km.predict(F)
        rate = np.stack(
            [
                y[train][lab[train] == k].mean(0) if np.any(lab[train] == k) else y[train].mean(0)
                for k in range(n_clusters)
            ]
        )
        lam = np.maximum(rate[lab[val]], 1e-6)
        yv = y[val]
        scores[half * dt] = float(np.sum(yv * np.log(lam) - lam) / max(val.sum(), 1))
    best = max(scores, key=lambda h: (scores[h], -h))  # ties: the shorter window
    half = int(round(best / dt))
    F, mu, sd = features(half, False)
    km = _kmeans(F[train], n_clusters, seed)
    return StateClusters(km.predict(F).astype(np.int64), best, scores, selected_on)
