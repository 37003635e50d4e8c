"""Masked non-negative CP decomposition of a 3-way tensor by HALS (torch, on the input's device and dtype), its
results as tensorly ``CPTensor``s, and the factor match score between CP models (tensorly's congruence
coefficient).

The solver is ours, not tensorly's ``non_negative_parafac_hals``: it imputes masked entries EM-style (only the
missing ones are recomputed), reads the tensor twice per iteration and extrapolates between iterations (Ang &
Gillis 2019); ``bench/ntf_vs_tensorly.py`` compares the two. tensorly is the CP algebra around it:
:meth:`NCPResult.to_cp_tensor` gives a :class:`tensorly.cp_tensor.CPTensor`, reconstructed with
:func:`tensorly.cp_to_tensor`, and :func:`factor_match_score` is
:func:`tensorly.metrics.congruence_coefficient` wherever tensorly defines it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorly as tl
import torch
from scipy.optimize import linear_sum_assignment
from tensorly.cp_tensor import CPTensor
from tensorly.metrics import congruence_coefficient


# ---- masked non-negative CP by HALS ----------------------------------------------------------------------
@dataclass
class NCPResult:
    """A fitted CP model: ``weights`` (R,) and unit-norm ``factors`` [(I,R), (J,R), (K,R)], on the input's device;
    ``errors``: relative error on the observed entries per outer iteration."""

    weights: torch.Tensor
    factors: list[torch.Tensor]
    errors: list[float]
    n_iter: int
    #: how the run ended: ``"tol"``, ``"target"``, ``"stalled"`` (no progress after the extrapolation was
    #: restarted, see :func:`masked_ncp_hals`) or ``"max_iter"``
    stop: str = "max_iter"
    #: times the extrapolation was restarted after a stall
    n_restarts: int = 0

    def to_tensor(self) -> torch.Tensor:
        """The full tensor of the model, on the factors' device and in their dtype.

        Returns
        -------
        torch.Tensor
            (I, J, K): ``sum_r w_r a_r (x) b_r (x) c_r``.
        """
        a, b, c = self.factors
        return torch.einsum("r,ir,jr,kr->ijk", self.weights, a, b, c)

    def to_cp_tensor(self) -> CPTensor:
        """The model as a tensorly ``CPTensor`` of float64 numpy arrays (copies, on the CPU).

        Returns
        -------
        tensorly.cp_tensor.CPTensor
            ``(weights (R,), [A (I, R), B (J, R), C (K, R)])``; :func:`tensorly.cp_to_tensor` rebuilds the tensor.
        """
        return to_cp_tensor(self.weights, self.factors)


def to_cp_tensor(
    weights: torch.Tensor | np.ndarray, factors: Sequence[torch.Tensor | np.ndarray]
) -> CPTensor:
    """A tensorly ``CPTensor`` of float64 numpy copies of CP weights and factors (torch tensors on any device, or
    arrays).

    Parameters
    ----------
    weights : torch.Tensor or numpy.ndarray
        (R,) component weights.
    factors : sequence of torch.Tensor or numpy.ndarray
        One (n_mode, R) factor matrix per mode.

    Returns
    -------
    tensorly.cp_tensor.CPTensor
        The validated CP tensor (tensorly checks that the ranks agree).
    """

    def as_np(a) -> np.ndarray:
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().double().numpy()
        return np.array(a, dtype=np.float64)  # a copy: the CPTensor does not alias the solver's tensors

    return CPTensor((as_np(weights), [as_np(f) for f in factors]))


def _hals_sweeps(U: torch.Tensor, G: torch.Tensor, M: torch.Tensor, n_inner: int, eps: float = 1e-12) -> None:
    """In place: ``n_inner`` HALS sweeps over the columns of U for min ||X_(n) - U KR^T||, given G = KR^T KR and
    M = X_(n) KR. Columns stay >= 0; a column with G[r,r] ~ 0 is left as it is."""
    diag = torch.diagonal(G).tolist()  # one device sync per call, not one per column
    for _ in range(n_inner):
        for r, g in enumerate(diag):
            if g <= eps:
                continue
            col = U[:, r]  # a view: updated in place, so the next column sees it
            col.add_((M[:, r] - U @ G[:, r]) / g).clamp_(min=0.0)


def _model_sq(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    return torch.sum((A.T @ A).double() * (B.T @ B).double() * (C.T @ C).double())


def _rebalance(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> None:
    """In place: unit columns in A and B, their scale moved into C (keeps HALS well conditioned)."""
    na, nb = torch.linalg.norm(A, dim=0), torch.linalg.norm(B, dim=0)
    ok = (na > 0) & (nb > 0)
    A[:, ok] /= na[ok]
    B[:, ok] /= nb[ok]
    C[:, ok] *= (na * nb)[ok]


def masked_ncp_hals(
    X: torch.Tensor,
    rank: int,
    mask: torch.Tensor | None = None,
    init: Sequence[torch.Tensor] | None = None,
    n_iter_max: int = 300,
    tol: float = 1e-6,
    n_inner: int = 3,
    seed: int = 0,
    target_error: float | None = None,
    extrapolate: bool = True,
    patience: int = 30,
    stall_tol: float = 1e-8,
) -> NCPResult:
    """Non-negative CP of a 3-way tensor by HALS, with a mask of observed entries.

    Missing entries are imputed from the current model (EM-style; only the missing ones are recomputed) and the
    error is measured on the observed entries only.

    One outer iteration: HALS on A (``n_inner`` column sweeps) with X_(0) (B kr C); Z = A^T X_(0) then gives the
    MTTKRPs of B and of C (contracting the largest mode first, so no intermediate is as large as X); then, with ``extrapolate``, the extrapolated point x + beta (x - x_prev) (projected on >= 0)
    is kept when its error is lower, with beta adapted as in Ang & Gillis (2019, "Accelerating nonnegative matrix
    factorization algorithms using extrapolation"): grown x1.05 after a success, divided by 1.5 after a failure
    (and its ceiling lowered to the failed value). Each accepted iteration reads X twice (the next iteration's
    X_(0) (B kr C) doubles as the error check); a rejected one three times.

    Safeguards: an extrapolated point is never kept when it raises the error, so the error of the kept iterate is
    non-increasing (HALS sweeps and EM imputation are monotone; up to rounding in float32, where the error is
    still accumulated in float64). *Stall detection*: when the best error improved by less than ``stall_tol``
    (relative) over the last ``patience`` iterations, the extrapolation is restarted (beta and its ceiling back
    to their initial 0.5 and 0.99: repeated failures can leave beta near 0, i.e. plain HALS); a second stall with
    no progress in between ends the run (``stop = "stalled"``) instead of running to ``n_iter_max``. The kept
    iterate with the lowest error is returned. A stall is a (local) minimum reached, not a failure: from the same
    start, HALS with 3 and with 5 inner sweeps can converge to different local minima (see bench/README.md).
    ``mask=None`` or all-True: plain non-negative CP-HALS.

    Parameters
    ----------
    X : torch.Tensor
        (I, J, K) on any device and dtype (the result comes back on it); NaN is read as 0.
    rank : int
        Number of components.
    mask : torch.Tensor, optional
        Bool or 0/1, broadcastable to ``X`` (e.g. (I, 1, K)), True where observed.
    init : sequence of torch.Tensor, optional
        Three non-negative factor matrices; else uniform random from ``seed``, scaled so that the model's norm
        is about ``||X||``.
    n_iter_max : int
        Most outer iterations.
    tol : float
        Stop when one iteration improves the relative error by less than ``tol`` times the explained part
        (``1 - error``): the fitted part's relative change, so the rule does not loosen as the noise grows (an
        absolute ``tol`` stopped noisy fits, error ~0.92, before their factors had settled). A fit that explains
        nothing ends by ``n_iter_max`` or the stall rule.
    n_inner : int
        HALS column sweeps per factor and outer iteration.
    seed : int
        Seed of the random initialisation.
    target_error : float, optional
        Stop when the relative error reaches this instead (for benchmarks; ``tol`` is then not used).
    extrapolate : bool
        Extrapolate between iterations (see above).
    patience : int
        Iterations without a relative improvement of ``stall_tol`` before a stall is declared.
    stall_tol : float
        Relative improvement of the best error that counts as progress.

    Returns
    -------
    NCPResult
        Weights sorted in decreasing order, unit-norm factors, the error per iteration, and the iterations run;
        :meth:`NCPResult.to_cp_tensor` converts it to a tensorly ``CPTensor``.
    """
    if X.ndim != 3:
        raise ValueError(f"masked_ncp_hals: a 3-way tensor is needed, got {X.ndim} dims")
    dev, dt = X.device, X.dtype
    X = torch.nan_to_num(X, nan=0.0).contiguous()
    I, J, K = X.shape  # noqa: E741  (tensor dimensions, as in the literature)
    if init is None:
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        factors = [torch.rand(n, rank, generator=g, dtype=torch.float64).to(dev, dt) for n in (I, J, K)]
    else:
        factors = [torch.as_tensor(f).to(dev, dt).clone() for f in init]
    miss = None
    if mask is not None:
        m = torch.broadcast_to(torch.as_tensor(mask, device=dev).bool(), X.shape)
        if not bool(m.all()):
            miss = torch.nonzero(~m, as_tuple=True)
            X = X.clone()
            X[miss] = 0.0
    xsq_obs = torch.sum(X.double() ** 2)  # the missing entries are 0 here
    norm_obs = float(torch.sqrt(xsq_obs))
    if init is None:  # scale so that ||model|| ~ ||X||
        est = torch.sqrt(_model_sq(*factors))
        s = (norm_obs / max(float(est), 1e-30)) ** (1.0 / 3.0)
        factors = [f * s for f in factors]
    A, B, C = factors

    def impute(A, B, C) -> None:
        if miss is not None:
            i, j, k = miss
            X[miss] = (A[i] * B[j] * C[k]).sum(dim=1)

    def xsq() -> torch.Tensor:  # ||X||^2 of the current (imputed) tensor
        return xsq_obs if miss is None else xsq_obs + torch.sum(X[miss].double() ** 2)

    def missing_residual(A, B, C) -> torch.Tensor:  # what the imputed entries add to the error of (A, B, C)
        if miss is None:
            return torch.zeros((), dtype=torch.float64, device=dev)
        i, j, k = miss
        return torch.sum((X[miss] - (A[i] * B[j] * C[k]).sum(dim=1)).double() ** 2)

    def rel(sq: torch.Tensor) -> float:
        return float(torch.sqrt(torch.clamp(sq, min=0.0))) / max(norm_obs, 1e-30)

    X0 = X.reshape(I, J * K)  # mode-0 unfolding (a view: imputation updates it too)

    def mttkrp0(B, C) -> torch.Tensor:  # X_(0) (B kr C): one read of X, (I, R)
        return X0 @ (B[:, None, :] * C[None, :, :]).reshape(J * K, -1)

    impute(A, B, C)
    M0 = mttkrp0(B, C)
    errors: list[float] = []
    prev: tuple[torch.Tensor, ...] | None = None
    beta, beta_max = 0.5, 0.99
    n_done = 0
    best_err, best = float("inf"), (A, B, C)
    since = 0  # iterations since the best error last improved by stall_tol
    n_restarts, restarted_at_best = 0, False
    stop = "max_iter"
    for it in range(n_iter_max):
        An, Bn, Cn = A.clone(), B.clone(), C.clone()
        _hals_sweeps(An, (Bn.T @ Bn) * (Cn.T @ Cn), M0, n_inner)
        Z = (An.T @ X0).reshape(-1, J, K)  # A^T X_(0): one read of X; serves modes 1 and 2 (A is fixed now)
        _hals_sweeps(Bn, (An.T @ An) * (Cn.T @ Cn), torch.einsum("rjk,kr->jr", Z, Cn), n_inner)
        M2 = torch.einsum("rjk,jr->kr", Z, Bn)
        _hals_sweeps(Cn, (An.T @ An) * (Bn.T @ Bn), M2, n_inner)
        # observed-entry error of the HALS point: Gram identity on the imputed X, minus the imputed entries' share
        sq_n = (
            xsq()
            - 2 * torch.sum(Cn.double() * M2.double())
            + _model_sq(An, Bn, Cn)
            - missing_residual(An, Bn, Cn)
        )
        _rebalance(An, Bn, Cn)
        err = rel(sq_n)
        accepted = False
        if extrapolate and prev is not None:
            Ae, Be, Ce = (
                torch.clamp(x + beta * (x - p), min=0.0) for x, p in zip((An, Bn, Cn), prev, strict=True)
            )
            impute(Ae, Be, Ce)
            M0e = mttkrp0(Be, Ce)  # the next iteration's mode-0 MTTKRP doubles as the error check
            sq_e = xsq() - 2 * torch.sum(Ae.double() * M0e.double()) + _model_sq(Ae, Be, Ce)
            if rel(sq_e) < err:
                A, B, C, M0, err = Ae, Be, Ce, M0e, rel(sq_e)
                beta, beta_max = min(beta_max, 1.05 * beta), min(1.0, 1.01 * beta_max)
                accepted = True
            else:
                beta_max, beta = beta, beta / 1.5
        if not accepted:
            A, B, C = An, Bn, Cn
            impute(A, B, C)
            M0 = mttkrp0(B, C)
        prev = (An, Bn, Cn)
        errors.append(err)
        n_done = it + 1
        if err < best_err * (1.0 - stall_tol):
            since, restarted_at_best = 0, False
        else:
            since += 1
        if err < best_err:
            best_err, best = err, (A, B, C)
        if target_error is not None and err <= target_error:
            stop = "target"
            break
        # tol on the explained part (1 - error), not the error: with mostly noise (error ~0.92) an absolute 1e-6
        # stopped restarts still moving, each at its own factors (bench/README.md, ntf_baselines.py --grid)
        if target_error is None and it > 0 and abs(errors[-2] - err) < tol * max(1.0 - err, 0.0):
            stop = "tol"
            break
        if since >= patience:
            if restarted_at_best or not extrapolate:
                stop = "stalled"
                break
            beta, beta_max = 0.5, 0.99  # restart the extrapolation
            n_restarts, restarted_at_best, since = n_restarts + 1, True, 0
    weights, normed = _normalize(list(best))
    return NCPResult(weights, normed, errors, n_done, stop, n_restarts)


def _normalize(factors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Unit-norm columns; the product of the norms goes to the weights; components sorted by weight."""
    norms = [torch.linalg.norm(f, dim=0) for f in factors]
    w = torch.ones_like(norms[0])
    out = []
    for f, n in zip(factors, norms, strict=True):
        w = w * n
        out.append(f / torch.where(n > 0, n, torch.ones_like(n)))
    order = torch.argsort(w, descending=True)
    return w[order], [f[:, order] for f in out]


# ---- comparing CP models ---------------------------------------------------------------------------------
def _unit(f: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(f, axis=0)
    return f / np.where(n > 0, n, 1.0)


def _hungarian_fms(
    factors_a: Sequence[np.ndarray],
    factors_b: Sequence[np.ndarray],
    weights_a,
    weights_b,
    consider_weights: bool,
    skip_modes: Sequence[int],
) -> tuple[float, np.ndarray]:
    """The factor match score where tensorly's congruence coefficient is not defined (different ranks, a zero
    column, weights): the same Hungarian matching on the product over modes of |cosine|, a zero column having
    cosine 0 with everything, unmatched components counting 0."""
    Ra, Rb = factors_a[0].shape[1], factors_b[0].shape[1]
    sim = np.ones((Ra, Rb))
    for m, (fa, fb) in enumerate(zip(factors_a, factors_b, strict=True)):
        if m in skip_modes:
            continue
        sim *= np.abs(_unit(np.asarray(fa, float)).T @ _unit(np.asarray(fb, float)))
    if consider_weights and weights_a is not None and weights_b is not None:
        wa, wb = np.asarray(weights_a, float)[:, None], np.asarray(weights_b, float)[None, :]
        sim *= 1.0 - np.abs(wa - wb) / np.maximum(np.maximum(wa, wb), 1e-30)
    rows, cols = linear_sum_assignment(-sim)
    perm = np.full(Ra, -1)
    perm[rows] = cols
    return float(sim[rows, cols].sum() / Ra), perm


def _congruence_defined(fa: Sequence[np.ndarray], fb: Sequence[np.ndarray]) -> bool:
    """Whether :func:`tensorly.metrics.congruence_coefficient` accepts these factors: at least one mode, one rank
    for all, and no product of column norms equal to 0 (its own check)."""
    if not fa or len(fa) != len(fb):
        return False
    if len({f.shape[1] for f in (*fa, *fb)}) != 1:
        return False
    return all(np.prod(np.linalg.norm(f, axis=0)) != 0 for f in (*fa, *fb))


def factor_match_score(
    factors_a: Sequence[np.ndarray],
    factors_b: Sequence[np.ndarray],
    weights_a=None,
    weights_b=None,
    consider_weights: bool = False,
    skip_modes: Sequence[int] = (),
) -> tuple[float, np.ndarray]:
    """Factor match score (Tomasi & Bro): components matched by the Hungarian method on the product over modes
    of |cosine|; the score is the mean over matched components.

    Computed by :func:`tensorly.metrics.congruence_coefficient` (numpy backend, float64) when both models have
    the same rank, no zero column and no weight term; tensorly does not define the other cases, which use the
    same matching here (a zero column has cosine 0; components of ``a`` beyond ``b``'s rank count 0; with
    ``consider_weights`` each pair's similarity is multiplied by ``1 - |w_a - w_b| / max(w_a, w_b)``).

    Parameters
    ----------
    factors_a, factors_b : sequence of numpy.ndarray
        One (n_mode, R) factor matrix per mode (the same modes, the same rows).
    weights_a, weights_b : numpy.ndarray, optional
        (R,) weights, used with ``consider_weights``.
    consider_weights : bool
        Penalise matched components whose weights differ.
    skip_modes : sequence of int
        Modes left out of the product.

    Returns
    -------
    score : float
        In [0, 1]; 1 when the factors agree up to permutation and scaling.
    perm : numpy.ndarray
        ``perm[r]``: the component of ``b`` matched to ``a``'s component r (-1: none).
    """
    if len(factors_a) != len(factors_b):
        raise ValueError(f"factor_match_score: {len(factors_a)} and {len(factors_b)} modes")
    fa = [np.asarray(f, float) for m, f in enumerate(factors_a) if m not in skip_modes]
    fb = [np.asarray(f, float) for m, f in enumerate(factors_b) if m not in skip_modes]
    weighted = consider_weights and weights_a is not None and weights_b is not None
    if weighted or not _congruence_defined(fa, fb):
        return _hungarian_fms(factors_a, factors_b, weights_a, weights_b, consider_weights, skip_modes)
    with tl.backend_context("numpy", local_threadsafe=True):
        score, perm = congruence_coefficient(fa, fb)
    return float(score), np.asarray(perm, dtype=np.int64)
