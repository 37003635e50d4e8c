"""Baselines of the dynamic connectome on the same affinity tensor, scored like the NTF against planted communities.

Each baseline gives a list of *found communities* (bool over the tensor's neurons) and, per community, a *time
course* over the windows; :func:`score_communities` matches them to the planted communities (Hungarian on the
Jaccard index, one found community per planted one) and reports the Jaccard indices and whether each matched time
course peaks inside its planted epoch. The NTF is scored by the same function (its components' densest Louvain
communities and time factors), so the comparison uses one matching rule.

Baselines (:func:`baseline_communities`):

- ``static_louvain``: weighted Louvain on the time-averaged affinity (mean over windows and observed animals); the
  time course of a community is its mean within-community affinity per window. A partition: a neuron belongs to
  one community only.
- ``windowed_louvain``: Louvain per window (animal-averaged affinity), then a consensus: the co-membership matrix
  weighted by each window community's mean within-community affinity, and Louvain on it; time courses as above.
- ``nmf``: scikit-learn NMF (same rank as the NTF, ``nndsvda`` start, seeded) of the unfolded pair x (window x
  animal) matrix, entries an animal lacks filled with the mean over the animals that have the pair; communities the
  densest Louvain community of each component's pair factor (as for the NTF); time course the component's
  activation averaged over animals.
- ``nmf_masked``: the same unfolded matrix with the entries an animal lacks *masked out of the loss* (as the NTF
  treats them), not filled: weighted multiplicative updates (Lee & Seung's, with the 0/1 mask as weights) started
  from the ``nmf`` solution, until the relative masked error improves by less than 1e-6 (at most 1,000
  iterations); communities and time courses as for ``nmf``. The like-for-like comparison for the NTF; ``nmf`` is
  kept because its imputation copies an animal's affinities into the others' missing fibres, which can favour
  structure present in few animals.

Both NMFs take the NTF's selected rank (a rank they borrow). :func:`nmf_stable_rank` gives the mean-filled NMF a
rank of its own by the NTF's default rule applied to NMF restarts: per candidate rank, restarts from random starts,
the replicate stability of the communities they report (:func:`~brainpipe.models.connectome_rank.replicate_stability`
with :func:`~brainpipe.models.connectome_rank.community_similarity`, restarts near the best error only), the largest
rank whose stability reaches the threshold (the smallest when none does); its communities and time courses are the
best-error restart's at that rank. ``rank_rule="cv"`` gives it the NTF's cross-validated rule instead
(``rank_selection: cv``): the same folds of the observed entries, the masked NMF of the pair x (window, animal)
unfolding (the NTF's HALS solver with a third mode of length one) refitted per fold and rank, the smallest rank within
one SE of the lowest mean held-out error.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment

from brainpipe.evaluate.communities import communities

__all__ = [
    "BASELINES",
    "baseline_communities",
    "masked_nmf",
    "match_communities",
    "nmf_stable_rank",
    "score_communities",
    "window_affinity",
]

#: the baselines, in the order they are reported
BASELINES = ("static_louvain", "windowed_louvain", "nmf", "nmf_masked")


def window_affinity(tensor: xr.Dataset) -> np.ndarray:
    """(pair, window) affinity averaged over the animals that have each pair (0 where none has it).

    Parameters
    ----------
    tensor : xarray.Dataset
        An ``affinity_tensor`` (``affinity`` pair x window x animal, ``mask`` pair x animal).

    Returns
    -------
    numpy.ndarray
        (pair, window) float64.
    """
    X = np.asarray(tensor["affinity"].values, dtype=np.float64)
    M = np.asarray(tensor["mask"].values).astype(bool)
    n = M.sum(1)
    return np.where(M[:, None, :], X, 0.0).sum(2) / np.maximum(n, 1)[:, None]


def _partition(w: np.ndarray, pi: np.ndarray, pj: np.ndarray, n: int, resolution: float, seed: int) -> list:
    """Louvain communities (lists of neuron indices, at least 2 neurons) of one pair-weight vector."""
    if not np.any(w > 0):
        return []
    membership, _ = communities(w[:, None], pi, pj, n, resolution, seed)
    labels = membership[0]
    return [np.flatnonzero(labels == k) for k in np.unique(labels) if (labels == k).sum() >= 2]


def _within(A: np.ndarray, pi: np.ndarray, pj: np.ndarray, members: np.ndarray) -> np.ndarray:
    """(window,) mean affinity of the pairs inside a community."""
    inside = np.isin(pi, members) & np.isin(pj, members)
    return A[inside].mean(0) if inside.any() else np.zeros(A.shape[1])


def _animal_within(
    X: np.ndarray, M: np.ndarray, pi: np.ndarray, pj: np.ndarray, members: np.ndarray
) -> np.ndarray:
    """(window, animal) mean affinity of the pairs inside a community that each animal has (0 where none)."""
    inside = np.isin(pi, members) & np.isin(pj, members)
    out = np.zeros(X.shape[1:])
    for a in range(X.shape[2]):
        rows = inside & M[:, a]
        if rows.any():
            out[:, a] = X[rows, :, a].mean(0)
    return out


def baseline_communities(
    tensor: xr.Dataset,
    method: str,
    rank: int = 3,
    resolution: float = 1.0,
    seed: int = 0,
    per_animal: bool = False,
    choice: str = "density",
) -> tuple[np.ndarray, ...]:
    """Communities and time courses found by one baseline on an affinity tensor.

    Parameters
    ----------
    tensor : xarray.Dataset
        An ``affinity_tensor``.
    method : {"static_louvain", "windowed_louvain", "nmf", "nmf_masked"}
        The baseline (module docstring).
    rank : int
        NMF components (use the NTF's selected rank); unused by the Louvain baselines.
    resolution : float
        Louvain resolution.
    seed : int
        Louvain and NMF seed.
    per_animal : bool
        Also return each animal's own time course (for relating to behaviour that is not time-locked across
        animals): the Louvain baselines' within-community affinity in that animal, the NMFs' activation in that
        animal's windows.

    Returns
    -------
    found : numpy.ndarray
        (K, neuron) bool, one row per found community.
    timecourse : numpy.ndarray
        (K, window) float64, each community's time course.
    animal_timecourse : numpy.ndarray
        (K, window, animal) float64, with ``per_animal`` only.
    """
    pi = np.asarray(tensor["pair_i"].values)
    pj = np.asarray(tensor["pair_j"].values)
    n = tensor.sizes["neuron"]
    A = window_affinity(tensor)
    if method == "static_louvain":
        comms = _partition(A.mean(1), pi, pj, n, resolution, seed)
    elif method == "windowed_louvain":
        C = np.zeros(len(pi))
        for w in range(A.shape[1]):
            for c in _partition(A[:, w], pi, pj, n, resolution, seed):
                inside = np.isin(pi, c) & np.isin(pj, c)
                C[inside] += A[inside, w].mean()
        comms = _partition(C, pi, pj, n, resolution, seed)
    elif method in ("nmf", "nmf_masked"):
        from sklearn.decomposition import NMF

        X, M, filled = _filled(tensor, A)
        P, W, n_an = X.shape
        nmf = NMF(n_components=int(rank), init="nndsvda", random_state=int(seed), max_iter=1000, tol=1e-6)
        pair = nmf.fit_transform(filled.reshape(P, W * n_an))
        act = nmf.components_
        if method == "nmf_masked":
            pair, act = masked_nmf(X.reshape(P, W * n_an), M.reshape(P, W * n_an), pair, act)
        time = act.reshape(int(rank), W, n_an).mean(2)
        _, dense = communities(pair, pi, pj, n, resolution, seed, choice=choice)
        if per_animal:
            return dense.astype(bool), time, act.reshape(int(rank), W, n_an).astype(np.float64)
        return dense.astype(bool), time
    else:
        raise ValueError(f"unknown baseline {method!r} (known: {', '.join(BASELINES)})")
    found = np.zeros((len(comms), n), dtype=bool)
    for k, c in enumerate(comms):
        found[k, c] = True
    time = np.array([_within(A, pi, pj, c) for c in comms]).reshape(len(comms), A.shape[1])
    if per_animal:
        X = np.asarray(tensor["affinity"].values, dtype=np.float64)
        M = np.asarray(tensor["mask"].values).astype(bool)
        animal_time = np.array([_animal_within(X, M, pi, pj, c) for c in comms]).reshape(
            len(comms), *X.shape[1:]
        )
        return found, time, animal_time
    return found, time


def _filled(tensor: xr.Dataset, A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tensor (float64), its (pair, window, animal) mask, and the tensor with the entries an animal lacks filled
    with the mean over the animals that have the pair (``A``, :func:`window_affinity`)."""
    X = np.asarray(tensor["affinity"].values, dtype=np.float64)
    M = np.broadcast_to(np.asarray(tensor["mask"].values).astype(bool)[:, None, :], X.shape)
    return X, M, np.where(M, X, A[:, :, None])


def nmf_stable_rank(
    tensor: xr.Dataset,
    ranks: tuple[int, ...] | list[int] = (2, 3, 4, 5),
    restarts: int = 5,
    threshold: float = 0.95,
    resolution: float = 1.0,
    seed: int = 0,
    choice: str = "density",
    error_tol: float | None = None,
    rank_rule: str = "stability",
    cv_folds: int = 3,
    cv_se: float = 1.0,
    block_windows: int = 0,
) -> dict:
    """The mean-filled NMF baseline with a rank of its own: the NTF's stability rule on NMF restarts.

    Parameters
    ----------
    tensor : xarray.Dataset
        An ``affinity_tensor``.
    ranks : sequence of int
        Candidate ranks.
    restarts : int
        NMF restarts per rank (random starts, seeded ``seed + 1000 * rank + k``).
    threshold : float
        Stability (mean Jaccard of the communities, restarts near the best error) a rank must reach.
    resolution : float
        Louvain resolution.
    seed : int
        Base seed of the restarts and of Louvain.
    choice : {"density", "excess"}
        How each component's community is picked (:func:`~brainpipe.evaluate.communities.communities`).
    error_tol : float, optional
        Restarts counted in the stability (``error_tol`` of
        :func:`~brainpipe.models.connectome_rank.replicate_stability`): None the midpoint to the next-lower rank's
        best, a number a fixed relative margin (the NTF's ``stability_error_tol``).
    rank_rule : {"stability", "cv"}
        ``"stability"``: the largest rank whose stability reaches ``threshold``. ``"cv"``: the NTF's
        ``rank_selection: cv`` on the NMF model: the observed entries dealt into ``cv_folds`` folds (the NTF's draw
        for the same ``seed``), per fold and rank the masked NMF of the unfolding (HALS, one seeded start, the
        fold hidden) scored on the hidden entries, the smallest rank within ``cv_se`` standard errors of the lowest
        mean (:func:`~brainpipe.models.connectome_rank.one_se_rank`).
    cv_folds : int
        Folds of ``rank_rule="cv"``.
    cv_se : float
        Standard errors of slack of ``rank_rule="cv"``.
    block_windows : int
        Hold-out unit of ``rank_rule="cv"``: 0 or 1 single entries, ``n > 1`` runs of ``n`` windows.

    Returns
    -------
    dict
        ``rank`` (selected), ``is_stable`` (some rank reached the threshold), ``stability`` (rank -> value),
        ``error`` (rank -> best relative error of the filled matrix), ``found`` (K, neuron) bool,
        ``timecourse`` (K, window) and ``animal_timecourse`` (K, window, animal) of the best restart at the rank;
        with ``rank_rule="cv"`` also ``cv_error`` and ``cv_se`` (rank -> mean held-out error and its SE).
    """
    from types import SimpleNamespace

    from sklearn.decomposition import NMF

    from brainpipe.models.connectome_rank import _lower_error, community_similarity, replicate_stability

    ranks = sorted(int(r) for r in ranks)
    if rank_rule not in ("stability", "cv") or int(cv_folds) < 2 or not float(cv_se) >= 0.0:
        raise ValueError(
            f"nmf_stable_rank: need rank_rule stability or cv, cv_folds >= 2 and cv_se >= 0, got {rank_rule!r}, "
            f"{cv_folds}, {cv_se}"
        )
    if not ranks or ranks[0] < 1 or int(restarts) < 1 or not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(
            f"nmf_stable_rank: need ranks >= 1, restarts >= 1 and threshold in [0, 1], got {ranks}, "
            f"{restarts}, {threshold}"
        )
    pi = np.asarray(tensor["pair_i"].values)
    pj = np.asarray(tensor["pair_j"].values)
    n = tensor.sizes["neuron"]
    X, _, filled = _filled(tensor, window_affinity(tensor))
    P, W, n_an = X.shape
    Y = filled.reshape(P, W * n_an)
    norm = max(float(np.linalg.norm(Y)), 1e-300)
    fits: dict[int, list] = {}
    for R in ranks:
        fits[R] = []
        for k in range(int(restarts)):
            nmf = NMF(
                n_components=R, init="random", random_state=int(seed) + 1000 * R + k, max_iter=1000, tol=1e-6
            )
            pair = nmf.fit_transform(Y)
            act = nmf.components_
            err = float(np.linalg.norm(Y - pair @ act)) / norm
            found = communities(pair, pi, pj, n, resolution, seed, choice=choice)[1].astype(bool)
            fits[R].append(SimpleNamespace(errors=[err], found=found, act=act))
    best = {R: min(f, key=lambda f: f.errors[-1]) for R, f in fits.items()}
    stability = {}
    for R in ranks:
        stability[R] = replicate_stability(
            fits[R],
            None if error_tol is None else float(error_tol),
            _lower_error(best, ranks, R),
            lambda b, o: community_similarity(b.found, o.found),
        )[0]
    stable = [R for R in ranks if stability[R] >= float(threshold)]
    R = max(stable) if stable else ranks[0]
    cv = {}
    if rank_rule == "cv":
        R, cv["cv_error"], cv["cv_se"] = _nmf_cv_rank(tensor, Y, ranks, seed, cv_folds, cv_se, block_windows)
    b = best[R]
    animal = b.act.reshape(R, W, n_an).astype(np.float64)
    return {
        **cv,
        "rank": R,
        "is_stable": bool(stable),
        "stability": stability,
        "error": {r: best[r].errors[-1] for r in ranks},
        "found": b.found,
        "timecourse": animal.mean(2),
        "animal_timecourse": animal,
    }


def _nmf_cv_rank(
    tensor: xr.Dataset,
    Y: np.ndarray,
    ranks: list[int],
    seed: int,
    n_folds: int,
    n_se: float,
    block_windows: int,
) -> tuple[int, dict, dict]:
    """The NMF's rank by the NTF's cross-validation (``nmf_stable_rank(rank_rule="cv")``): the masked NMF of the
    (pair, window x animal) unfolding ``Y`` by the NTF's HALS solver, the observed entries in the NTF's folds."""
    import torch

    from brainpipe.models.connectome_rank import cv_folds, cv_rank_errors, one_se_rank
    from brainpipe.models.ncp import masked_ncp_hals

    P, W, n_an = tensor["affinity"].shape
    seen = torch.as_tensor(np.asarray(tensor["mask"].values).astype(bool))[:, None, :]
    seen = torch.broadcast_to(seen, (P, W, n_an)).reshape(P, W * n_an, 1)
    folds = cv_folds(P, W, n_an, int(n_folds), int(block_windows), int(seed) + 7).reshape(P, W * n_an, 1)
    errors = cv_rank_errors(
        torch.as_tensor(Y, dtype=torch.float32)[:, :, None],
        seen,
        ranks,
        folds,
        lambda Z, r, train, k: masked_ncp_hals(
            Z, r, train, n_iter_max=300, tol=1e-8, n_inner=3, seed=int(seed) + 1000 * r + 500 + k
        ),
    )
    return one_se_rank(errors, float(n_se))


def masked_nmf(
    X: np.ndarray, mask: np.ndarray, W: np.ndarray, H: np.ndarray, n_iter_max: int = 1000, tol: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative matrix factorisation with missing entries left out of the loss (weighted multiplicative updates).

    Minimises ``||mask * (X - W H)||_F`` by Lee & Seung's multiplicative updates with the mask as weights, from the
    given start; stops when the relative masked error improves by less than ``tol``.

    Parameters
    ----------
    X : numpy.ndarray
        (n, m) non-negative data (values at unobserved entries are ignored).
    mask : numpy.ndarray
        (n, m) bool, True where observed.
    W, H : numpy.ndarray
        (n, R) and (R, m) non-negative start (e.g. an NMF of a filled matrix).
    n_iter_max : int
        Most iterations.
    tol : float
        Relative improvement of the error below which it stops.

    Returns
    -------
    W, H : numpy.ndarray
        The factors (float64 copies).
    """
    Mf = np.asarray(mask, dtype=np.float64)
    Xm = np.where(mask, np.asarray(X, dtype=np.float64), 0.0)
    W = np.maximum(np.array(W, dtype=np.float64), 1e-12)
    H = np.maximum(np.array(H, dtype=np.float64), 1e-12)
    norm = max(float(np.linalg.norm(Xm)), 1e-300)
    prev = np.inf
    for _ in range(int(n_iter_max)):
        W *= (Xm @ H.T) / np.maximum((Mf * (W @ H)) @ H.T, 1e-300)
        WH = Mf * (W @ H)
        H *= (W.T @ Xm) / np.maximum(W.T @ WH, 1e-300)
        err = float(np.linalg.norm(Xm - Mf * (W @ H))) / norm
        if prev - err < tol * max(prev, 1e-300) and np.isfinite(prev):
            break
        prev = err
    return W, H


def match_communities(found: np.ndarray, planted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Match found communities to planted ones (Hungarian, maximising the Jaccard index).

    Parameters
    ----------
    found : numpy.ndarray
        (K, neuron) bool found communities.
    planted : numpy.ndarray
        (neuron, C) bool planted membership.

    Returns
    -------
    jaccard : numpy.ndarray
        (C,) each planted community's Jaccard index with its match (0 when unmatched).
    match : numpy.ndarray
        (C,) the matched found community (-1 when unmatched).
    """
    C, K = planted.shape[1], found.shape[0]
    jac = np.zeros((C, K))
    for c in range(C):
        p = planted[:, c].astype(bool)
        for k in range(K):
            jac[c, k] = (p & found[k]).sum() / max((p | found[k]).sum(), 1)
    best = np.zeros(C)
    match = np.full(C, -1, dtype=np.int64)
    if K:
        rows, cols = linear_sum_assignment(-jac)
        best[rows], match[rows] = jac[rows, cols], cols
    return best, match


def score_communities(
    found: np.ndarray,
    timecourse: np.ndarray,
    planted: np.ndarray,
    window_time: np.ndarray,
    epochs: list[list[tuple[float, float]]],
) -> dict[str, float]:
    """Community recovery and epoch detection of found communities against planted ones.

    Parameters
    ----------
    found : numpy.ndarray
        (K, neuron) bool found communities.
    timecourse : numpy.ndarray
        (K, window) time course of each found community.
    planted : numpy.ndarray
        (neuron, C) bool planted membership (a neuron may be in several communities).
    window_time : numpy.ndarray
        (window,) window centres (s).
    epochs : list of list of (float, float)
        Per planted community, its active intervals (s) in any animal.

    Returns
    -------
    dict
        ``community_jaccard_min``, ``community_jaccard_mean`` (Hungarian-matched on the Jaccard index; 0 for a
        planted community left unmatched) and ``epoch_peak_fraction`` (matched time courses whose maximum lies in
        one of the community's epochs).
    """
    best, match = match_communities(found, planted)
    peaks = np.zeros(len(best))
    for c, k in enumerate(match):
        if k >= 0:
            t_peak = window_time[int(np.argmax(timecourse[k]))]
            peaks[c] = float(any(lo <= t_peak < hi for lo, hi in epochs[c]))
    return {
        "community_jaccard_min": float(best.min()),
        "community_jaccard_mean": float(best.mean()),
        "epoch_peak_fraction": float(peaks.mean()),
    }
