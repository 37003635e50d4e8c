"""Rank selection of the dynamic connectome (:class:`~brainpipe.models.connectome.DynamicConnectome`): replicate
stability of a rank's restarts, held-out entries (fibres, blocks, or speckled K-fold cross-validation with a one-SE
rule), and the per-animal time courses of a coupled fit shown as a CP model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from brainpipe.models.ncp import NCPResult, factor_match_score

__all__ = [
    "ZERO_WARN",
    "community_similarity",
    "cv_folds",
    "cv_rank_errors",
    "heldout_blocks",
    "one_se_rank",
    "pair_support",
    "replicate_stability",
]

#: above this fraction of zero observed affinities the fit warns (and ``affinity_zero_fraction`` records it): by
#: construction (communities co-active in a third of the windows, a few % of the pairs) the default simulated study
#: sits near 0.93, the issue's freely moving animals at 0.98
ZERO_WARN = 0.95


def _animal_time(res: NCPResult, n_windows: int, n_animals: int) -> torch.Tensor:
    """(animal, window, R) time courses of a pair x (animal, window) x 1 fit, weights included."""
    _, B, C = res.factors
    R = B.shape[1]
    return B.reshape(n_animals, n_windows, R) * (C[0] * res.weights)[None, None, :]


def _fold(res: NCPResult, n_windows: int, n_animals: int) -> NCPResult:
    """A per-animal-time fit shown as a CP model (pair, window, animal): time = the unit-norm sum of the animals'
    time courses, animal = the unit-norm per-animal energy, weight = the component's energy."""
    T = _animal_time(res, n_windows, n_animals)
    energy = torch.linalg.norm(T, dim=1)  # (animal, R)
    weight = torch.linalg.norm(energy, dim=0)
    time = T.sum(0)
    time = time / torch.clamp(torch.linalg.norm(time, dim=0), min=1e-30)
    animal = energy / torch.clamp(weight, min=1e-30)
    return NCPResult(weight, [res.factors[0], time, animal], res.errors, res.n_iter, res.stop, res.n_restarts)


def replicate_stability(
    fits: Sequence[NCPResult],
    error_tol: float | None = None,
    lower_error: float = 1.0,
    similarity: Callable[[NCPResult, NCPResult], float] | None = None,
) -> tuple[float, float]:
    """Replicate stability of one rank's restarts: the mean factor match score against the best-error restart of
    the other restarts that converged near the best.

    A restart stuck in a worse local minimum is an optimisation failure, not a second solution of equal quality:
    counting it (``error_tol = inf``) makes a rank look unstable whenever one restart fails, which biases a
    "largest stable rank" rule to the smallest rank. "Near" is, by default (``error_tol=None``), scale-free: an
    error below the midpoint between the best error and ``lower_error`` (the next-lower candidate rank's best
    error; 1.0, the empty model's, for the smallest rank), i.e. the restart gained at least half of what this rank
    gains over the lower one; a restart above it has not used its extra component.

    Parameters
    ----------
    fits : sequence of NCPResult
        The restarts of one rank (at least one).
    error_tol : float, optional
        A fixed relative margin instead: restarts with ``error <= (1 + error_tol) * best error`` are compared.
    lower_error : float
        The next-lower candidate rank's best relative error (for the default margin).
    similarity : callable, optional
        ``similarity(best, other)`` in [0, 1] instead of the factor match score (e.g.
        :func:`community_similarity` of their communities).

    Returns
    -------
    stability : float
        In [0, 1]; 1.0 with a single restart (nothing to compare), 0.0 when no other restart is within the margin
        (the best solution was not reproduced).
    near_fraction : float
        Fraction of the other restarts within the margin (1.0 with a single restart).
    """
    best = min(fits, key=lambda f: f.errors[-1])
    others = [f for f in fits if f is not best]
    if not others:
        return 1.0, 1.0
    e = best.errors[-1]
    cutoff = (1.0 + float(error_tol)) * e if error_tol is not None else max(e, 0.5 * (e + float(lower_error)))
    near = [o for o in others if o.errors[-1] <= cutoff]
    if similarity is not None:
        sims = [float(similarity(best, o)) for o in near]
    else:
        bf = [f.cpu().numpy() for f in best.factors]
        sims = [factor_match_score(bf, [f.cpu().numpy() for f in o.factors])[0] for o in near]
    return (float(np.mean(sims)) if sims else 0.0), len(near) / len(others)


def _lower_error(best: dict[int, NCPResult], ranks: Sequence[int], R: int) -> float:
    """The best error of the largest candidate rank below ``R`` (1.0, the empty model's, when there is none)."""
    lower = [r for r in ranks if r < R]
    return best[max(lower)].errors[-1] if lower else 1.0


def _draw_runs(
    n_pairs: int, n_windows: int, n_animals: int, run: int, seed: int, draw: Callable
) -> torch.Tensor:
    """``draw((pair, run, animal) shape, generator)`` on a seeded CPU generator, each run's value repeated over its
    ``run`` consecutive windows (the last run shorter): (pair, window, animal)."""
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    n_runs = -(-int(n_windows) // int(run))
    values = draw((int(n_pairs), n_runs, int(n_animals)), g)
    return values.repeat_interleave(int(run), dim=1)[:, : int(n_windows)]


def heldout_blocks(
    n_pairs: int, n_windows: int, n_animals: int, fraction: float, block_windows: int, seed: int
) -> torch.Tensor:
    """The (pair, window, animal) entries hidden for held-out rank selection: whole (pair, animal) fibres, or runs
    of ``block_windows`` consecutive windows of a pair in an animal.

    Parameters
    ----------
    n_pairs, n_windows, n_animals : int
        The tensor's shape.
    fraction : float
        Probability that a fibre (or a block) is hidden.
    block_windows : int
        0: whole fibres; ``n > 0``: the windows cut into runs of ``n`` (the last one shorter), each (pair, run,
        animal) hidden independently.
    seed : int
        Seed of the draw (a CPU generator: the same entries on every device).

    Returns
    -------
    torch.Tensor
        (pair, window, animal) bool on the CPU, True where hidden.
    """
    return _draw_runs(
        n_pairs,
        n_windows,
        n_animals,
        int(block_windows) or int(n_windows),
        seed,
        lambda shape, g: torch.rand(shape, generator=g) < float(fraction),
    )


def cv_folds(
    n_pairs: int, n_windows: int, n_animals: int, n_folds: int, block_windows: int, seed: int
) -> torch.Tensor:
    """The fold of every (pair, window, animal) entry for speckled cross-validation of the rank.

    Parameters
    ----------
    n_pairs, n_windows, n_animals : int
        The tensor's shape.
    n_folds : int
        Number of folds (each entry in one, drawn uniformly).
    block_windows : int
        0 or 1: single entries; ``n > 1``: the windows cut into runs of ``n`` (the last one shorter), each
        (pair, run, animal) block in one fold.
    seed : int
        Seed of the draw (a CPU generator: the same folds on every device).

    Returns
    -------
    torch.Tensor
        (pair, window, animal) int64 on the CPU, the fold of each entry.
    """
    return _draw_runs(
        n_pairs,
        n_windows,
        n_animals,
        max(int(block_windows), 1),
        seed,
        lambda shape, g: torch.randint(0, int(n_folds), shape, generator=g),
    )


def cv_rank_errors(
    X: torch.Tensor,
    observed: torch.Tensor,
    ranks: Sequence[int],
    folds: torch.Tensor,
    fit: Callable[[torch.Tensor, int, torch.Tensor, int], NCPResult],
) -> dict[int, np.ndarray]:
    """Held-out error of every rank on every fold: each fold's observed entries hidden (masked), the model refitted
    on the others, its relative error on the hidden ones.

    Parameters
    ----------
    X : torch.Tensor
        (I, J, K) data.
    observed : torch.Tensor
        (I, J, K) bool, True where observed (only observed entries are hidden or scored).
    ranks : sequence of int
        Candidate ranks.
    folds : torch.Tensor
        (I, J, K) int fold of each entry (:func:`cv_folds`), on ``X``'s device.
    fit : callable
        ``fit(X, rank, train_mask, fold)`` -> :class:`~brainpipe.models.ncp.NCPResult` fitted on the entries of
        ``train_mask`` only (e.g. :func:`~brainpipe.models.ncp.masked_ncp_hals`).

    Returns
    -------
    dict
        rank -> (n_folds,) relative error ``||X - X_hat||`` over the hidden entries ``/ ||X||`` over them.
    """
    n_folds = int(folds.max()) + 1
    out = {int(R): np.full(n_folds, np.nan) for R in ranks}
    for k in range(n_folds):
        hide = (folds == k) & observed
        if not bool(hide.any()):
            continue
        train = observed & ~hide
        den = max(float(torch.linalg.norm(X[hide].double())), 1e-300)
        for R in ranks:
            res = fit(X, int(R), train, k)
            out[int(R)][k] = float(torch.linalg.norm((X - res.to_tensor())[hide].double())) / den
    return out


def one_se_rank(errors: dict[int, np.ndarray], n_se: float = 1.0) -> tuple[int, dict, dict]:
    """The smallest rank whose mean held-out error is within ``n_se`` standard errors of the lowest mean.

    Parameters
    ----------
    errors : dict
        rank -> per-fold held-out errors (:func:`cv_rank_errors`; NaN folds ignored).
    n_se : float
        Standard errors (of the best rank's mean over the folds) of slack; 0: the rank with the lowest mean.

    Returns
    -------
    rank : int
        The selected rank.
    mean, se : dict
        rank -> mean held-out error over the folds, and its standard error.
    """
    mean, se = {}, {}
    for R, e in errors.items():
        e = np.asarray(e, dtype=np.float64)
        e = e[np.isfinite(e)]
        mean[int(R)] = float(e.mean()) if e.size else np.inf
        se[int(R)] = float(e.std(ddof=1) / np.sqrt(e.size)) if e.size > 1 else 0.0
    best = min(mean, key=lambda r: (mean[r], r))
    cut = mean[best] + float(n_se) * se[best]
    return min(R for R in mean if mean[R] <= cut), mean, se


def pair_support(mask: np.ndarray, animal_factor: np.ndarray) -> np.ndarray:
    """Share of each component's animal energy carried by the animals that observe each pair.

    Parameters
    ----------
    mask : numpy.ndarray
        (pair, animal) 0/1 or bool, 1 where the animal has the pair.
    animal_factor : numpy.ndarray
        (animal, R) non-negative animal factors.

    Returns
    -------
    numpy.ndarray
        (pair, R) in [0, 1]: ``sum_a mask[p, a] c[a, r]^2 / sum_a c[a, r]^2`` (0 for an all-zero column).
    """
    c2 = np.asarray(animal_factor, dtype=np.float64) ** 2
    tot = c2.sum(0)
    return (np.asarray(mask, dtype=np.float64) @ c2) / np.where(tot > 0, tot, 1.0)


def community_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """How well one fit's communities reproduce another's: each community of ``a`` matched to one of ``b``
    (Hungarian on the Jaccard index), the mean Jaccard index (0 for one left unmatched).

    Parameters
    ----------
    a, b : numpy.ndarray
        (components, neuron) bool: each component's community (e.g. the densest Louvain community).

    Returns
    -------
    float
        In [0, 1]; 1.0 when ``a`` has no community.
    """
    from scipy.optimize import linear_sum_assignment

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape[0] == 0:
        return 1.0
    inter = a.astype(np.float64) @ b.T.astype(np.float64)
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    jac = inter / np.maximum(union, 1.0)
    rows, cols = linear_sum_assignment(-jac)
    return float(jac[rows, cols].sum() / a.shape[0])
