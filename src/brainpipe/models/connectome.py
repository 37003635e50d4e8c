"""Dynamic functional connectomes: pairwise affinities over time, a (pair x window x animal) tensor, masked
non-negative CP (HALS) with rank chosen by replicate stability, and weighted communities on each pair factor.

After Dyballa et al. (ICLR 2024, "Learning dynamic representations of the functional connectome in
neurobiological networks"). Their exact "differential affinity" could not be read here; the default affinity
(``softthresh_dcorr``) is a documented stand-in, and every affinity is a plug-in of :data:`AFFINITIES`.

Order of operations
-------------------
1. per animal, an :class:`Affinity`: its ``transform`` on the whole ``dff(time, cell)`` (e.g. smoothed
   derivatives), then its ``window`` map -> affinities per window for the animal's cell pairs (default:
   soft-thresholded correlation of smoothed derivatives).
2. :func:`build_tensor` / :func:`write_tensor_zarr`: every animal's affinities placed on the union of neuron
   identities (pairs = upper triangle, ``i < j``); pairs an animal lacks are masked (``mask(pair, animal) = 0``)
   and hold 0. The zarr writer goes window chunk by window chunk, so memory stays bounded.
3. :func:`masked_ncp_hals`: non-negative CP by HALS in torch, on the input's device and dtype; masked entries are
   imputed from the current model (EM-style), only where missing; adaptive extrapolation between iterations.
4. :class:`DynamicConnectome`: ranks x restarts; per rank the best-error fit and its replicate stability (mean
   factor match score of the other restarts against it); the selected rank is the largest whose stability
   reaches ``stability_threshold``.
5. :func:`communities`: each pair factor reshaped to a neuron x neuron weight matrix, networkx Louvain
   (weighted, seeded); the component's "community" is the densest Louvain community.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import linear_sum_assignment

from brainpipe.data.atomic import atomic_output
from brainpipe.errors import ConfigError, InputError
from brainpipe.models.base import Estimator, _plain
from brainpipe.training.device import resolve_device

LOG = logging.getLogger("brainpipe.models.connectome")

# ---- affinities --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Affinity:
    """A pluggable affinity: ``transform(x, params)`` is applied once to a whole (time, n) dF/F recording (so window
    chunks see the same signal), then ``window(w, params)`` maps a stack of windows (n_windows, window, n) of the
    transformed signal to non-negative (n_windows, n, n) affinities with a zero diagonal."""

    name: str
    transform: Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]
    window: Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]
    description: str


AFFINITIES: dict[str, Affinity] = {}


def register_affinity(name: str, transform, window, description: str) -> None:
    AFFINITIES[name] = Affinity(name, transform, window, description)


def _windows(x: np.ndarray, window: int, stride: int) -> np.ndarray:
    """(n_windows, window, n) strided view of the rows of x."""
    v = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)[::stride]  # (nw, n, window)
    return np.moveaxis(v, 2, 1)


def _corr(w: np.ndarray) -> np.ndarray:
    """Pearson correlation of the columns within each window: (n_windows, n, n); 0 where a column is flat."""
    w = w.astype(np.float64)
    w = w - w.mean(axis=1, keepdims=True)
    sd = np.sqrt((w**2).mean(axis=1, keepdims=True))
    z = np.divide(w, sd, out=np.zeros_like(w), where=sd > 1e-12)
    return np.einsum("wti,wtj->wij", z, z) / w.shape[1]


def _zero_diag(a: np.ndarray) -> np.ndarray:
    idx = np.arange(a.shape[1])
    a[:, idx, idx] = 0.0
    return a


def smoothed_derivative(x: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """First difference of each trace, smoothed by a Gaussian of ``smooth_frames`` frames (0: none)."""
    sigma = float(params.get("smooth_frames", 2.0))
    d = np.diff(np.asarray(x, dtype=np.float64), axis=0, prepend=x[:1])
    return gaussian_filter1d(d, sigma, axis=0, mode="nearest") if sigma > 0 else d


def _softthresh(w: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    r0 = min(float(params.get("null_z", 3.0)) / math.sqrt(w.shape[1]), 0.99)
    return _zero_diag(np.clip((_corr(w) - r0) / (1.0 - r0), 0.0, None))


register_affinity(
    "softthresh_dcorr", smoothed_derivative, _softthresh,
    "stand-in for the paper's differential affinity: d_i = Gaussian-smoothed (smooth_frames) first difference of "
    "dF/F_i; per window the Pearson r_ij of d_i, d_j; a_ij = max(0, (r_ij - r0) / (1 - r0)), r0 = null_z / sqrt(window)",
)
register_affinity(
    "pos_corr", lambda x, p: np.asarray(x, dtype=np.float64), lambda w, p: _zero_diag(np.clip(_corr(w), 0.0, None)),
    "positive part of the windowed Pearson correlation of dF/F (no derivative, no threshold)",
)


def _rectified_z(x: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    d = smoothed_derivative(x, params)
    sd = d.std(axis=0)
    return np.clip(np.divide(d - d.mean(axis=0), sd, out=np.zeros_like(d), where=sd > 1e-12), 0.0, None)


register_affinity(
    "coactivation", _rectified_z, lambda w, p: _zero_diag(np.einsum("wti,wtj->wij", w, w) / w.shape[1]),
    "the instantaneous variant averaged per window: mean of max(0, z'_i) max(0, z'_j), z' the smoothed derivative "
    "z-scored over the whole recording (high when both rise together)",
)


def get_affinity(name: str) -> Affinity:
    if name not in AFFINITIES:
        raise ConfigError(f"unknown affinity {name!r} (allowed: {', '.join(sorted(AFFINITIES))})")
    return AFFINITIES[name]


def window_frames(frame_rate_hz: float, window_s: float, stride_s: float, n_frames: int, where: str = "") -> tuple[int, int]:
    """Window and stride in frames; an error when the window is longer than the recording."""
    w = max(2, int(round(window_s * frame_rate_hz)))
    s = max(1, int(round(stride_s * frame_rate_hz)))
    if w > n_frames:
        raise InputError(
            f"{where or 'recording'}: affinity window {window_s} s ({w} frames) is longer than the recording "
            f"({n_frames} frames at {frame_rate_hz} Hz); set calcium.connectome.affinity.window_s below "
            f"{n_frames / frame_rate_hz:.4g} s"
        )
    return w, s


def pair_index(neurons: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Upper-triangle pairs (i < j) of a neuron list, as two index arrays."""
    return np.triu_indices(len(neurons), k=1)


# ---- the tensor ----------------------------------------------------------------------------------------
@dataclass
class AnimalTraces:
    """One animal's dF/F (time, cell) with cell identities (shared across animals) and its frame rate."""

    name: str
    dff: np.ndarray
    cells: list[str]
    frame_rate_hz: float


def _layout(animals: Sequence[AnimalTraces], window_s: float, stride_s: float):
    fr = {a.frame_rate_hz for a in animals}
    if len(fr) != 1:
        raise InputError(
            f"connectome: animals have different frame rates ({', '.join(f'{a.name}={a.frame_rate_hz}' for a in animals)}); "
            "resample them to one rate before stacking"
        )
    rate = fr.pop()
    spans = []
    for a in animals:
        spans.append(window_frames(rate, window_s, stride_s, a.dff.shape[0], where=a.name))
    w, s = spans[0]
    n_frames = min(a.dff.shape[0] for a in animals)
    n_windows = (n_frames - w) // s + 1
    neurons = sorted({c for a in animals for c in a.cells})
    return rate, w, s, n_windows, neurons


def _tensor_chunks(
    animals: Sequence[AnimalTraces], affinity: str, params: Mapping[str, Any], window_s: float, stride_s: float,
    chunk_windows: int | None = None, memory_mb: float = 256.0,
) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
    """Yield (meta, window indices, chunk (pair, window, animal) float32) over the windows."""
    rate, w, s, n_windows, neurons = _layout(animals, window_s, stride_s)
    aff = get_affinity(affinity)
    # whole-recording transform, kept in float32 (time x cells per animal: small next to the tensor it feeds)
    signals = [aff.transform(a.dff, params).astype(np.float32) for a in animals]
    ii, jj = pair_index(neurons)
    n_pairs = ii.size
    pos = {n: k for k, n in enumerate(neurons)}
    mask = np.zeros((n_pairs, len(animals)), dtype=np.int8)
    lookup = np.full((len(neurons), len(neurons)), -1, dtype=np.int64)
    lookup[ii, jj] = np.arange(n_pairs)
    maps = []
    for k, a in enumerate(animals):
        g = np.array([pos[c] for c in a.cells])
        order = np.argsort(g)
        g = g[order]
        ai, aj = np.triu_indices(g.size, k=1)
        dest = lookup[g[ai], g[aj]]
        mask[dest, k] = 1
        maps.append((order, ai, aj, dest))
    if chunk_windows is None:
        per_window = n_pairs * len(animals) * 4 + sum(len(a.cells) ** 2 * 8 * 3 for a in animals)
        chunk_windows = max(1, int(memory_mb * 2**20 // max(per_window, 1)))
    meta = {
        "frame_rate_hz": rate, "window_frames": w, "stride_frames": s, "n_windows": n_windows,
        "neurons": neurons, "pair_i": ii, "pair_j": jj, "mask": mask,
    }
    for lo in range(0, n_windows, chunk_windows):
        hi = min(n_windows, lo + chunk_windows)
        out = np.zeros((n_pairs, hi - lo, len(animals)), dtype=np.float32)
        for k in range(len(animals)):
            order, ai, aj, dest = maps[k]
            seg = signals[k][lo * s : (hi - 1) * s + w][:, order]
            a_win = aff.window(_windows(seg, w, s), params)  # (n_win, n, n)
            out[dest, :, k] = a_win[:, ai, aj].T
        yield meta, np.arange(lo, hi), out


def _tensor_dataset(meta, windows: np.ndarray, chunk: np.ndarray, animal_names, attrs) -> xr.Dataset:
    rate, w, s = meta["frame_rate_hz"], meta["window_frames"], meta["stride_frames"]
    neurons = np.asarray(meta["neurons"])
    t0 = (windows * s) / rate
    ds = xr.Dataset(
        {
            "affinity": (("pair", "window", "animal"), chunk, {"units": "1", "long_name": "pairwise affinity"}),
            "window_start_s": (("window",), t0.astype(np.float64), {"units": "s"}),
        },
        coords={
            "window": ("window", windows.astype(np.int64)),
            "pair": ("pair", np.arange(meta["pair_i"].size, dtype=np.int64)),
            "animal": ("animal", np.asarray(animal_names)),
            "neuron": ("neuron", neurons),
            "time": ("window", (t0 + 0.5 * w / rate).astype(np.float64), {"units": "s", "long_name": "window centre"}),
        },
        attrs={**attrs, "frame_rate_hz": rate, "window_frames": w, "stride_frames": s},
    )
    ds["pair_i"] = ("pair", meta["pair_i"].astype(np.int64), {"long_name": "index into 'neuron' of the first neuron"})
    ds["pair_j"] = ("pair", meta["pair_j"].astype(np.int64), {"long_name": "index into 'neuron' of the second neuron"})
    ds["mask"] = (("pair", "animal"), meta["mask"], {"long_name": "1 if the animal has both neurons of the pair"})
    return ds


def build_tensor(
    animals: Sequence[AnimalTraces], affinity: str = "softthresh_dcorr", params: Mapping[str, Any] | None = None,
    window_s: float = 5.0, stride_s: float = 2.5,
) -> xr.Dataset:
    """The whole (pair, window, animal) affinity tensor in memory (an ``affinity_tensor`` dataset without the
    file attributes). For large data use :func:`write_tensor_zarr`."""
    parts = list(_tensor_chunks(animals, affinity, params or {}, window_s, stride_s, chunk_windows=10**9))
    meta, win, chunk = parts[0]
    attrs = {"affinity": affinity, "window_s": float(window_s), "stride_s": float(stride_s)}
    return _tensor_dataset(meta, win, chunk, [a.name for a in animals], attrs)


def write_tensor_zarr(
    path: str | os.PathLike, animals: Sequence[AnimalTraces], provenance: Mapping[str, Any],
    affinity: str = "softthresh_dcorr", params: Mapping[str, Any] | None = None, window_s: float = 5.0,
    stride_s: float = 2.5, memory_mb: float = 256.0,
) -> Path:
    """Build the tensor window chunk by window chunk and append each to a zarr store (memory bounded by about
    ``memory_mb``); validated against the ``affinity_tensor`` contract chunk by chunk; written to a temporary
    sibling and renamed into place, so a failure leaves nothing under ``path``."""
    from brainpipe.data import contracts as _c
    from brainpipe.data.io import stamp
    from brainpipe.errors import ContractError

    path = Path(path)
    attrs = {"affinity": affinity, "window_s": float(window_s), "stride_s": float(stride_s)}
    with atomic_output(path) as tmp:
        first = True
        for meta, win, chunk in _tensor_chunks(animals, affinity, params or {}, window_s, stride_s, memory_mb=memory_mb):
            ds = _tensor_dataset(meta, win, chunk, [a.name for a in animals], attrs)
            ds = stamp(ds, "affinity_tensor", provenance)
            problems = _c.check(ds, "affinity_tensor")
            if problems:
                raise ContractError(str(path), problems)
            enc = {"affinity": {"chunks": (chunk.shape[0], chunk.shape[1], chunk.shape[2])}} if first else None
            if first:
                ds.to_zarr(tmp, mode="w", encoding=enc, consolidated=True, zarr_format=2)
                first = False
            else:
                ds.drop_vars(["pair_i", "pair_j", "mask", "pair", "animal", "neuron"]).to_zarr(
                    tmp, append_dim="window", consolidated=True, zarr_format=2
                )
    return path


# ---- masked non-negative CP by HALS ----------------------------------------------------------------------
@dataclass
class NCPResult:
    """A fitted CP model: ``weights`` (R,) and unit-norm ``factors`` [(I,R), (J,R), (K,R)], on the input's device;
    ``errors``: relative error on the observed entries per outer iteration."""

    weights: torch.Tensor
    factors: list[torch.Tensor]
    errors: list[float]
    n_iter: int

    def to_tensor(self) -> torch.Tensor:
        a, b, c = self.factors
        return torch.einsum("r,ir,jr,kr->ijk", self.weights, a, b, c)


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
) -> NCPResult:
    """Non-negative CP of a 3-way tensor by HALS, with a mask of observed entries.

    ``X`` (I, J, K) on any device/dtype (the result comes back on it). ``mask``: bool/0-1 tensor broadcastable to
    X (e.g. (I, 1, K)), True where observed; missing entries are imputed from the current model (EM-style; only
    the missing ones are recomputed) and the error is measured on the observed entries only. ``init``: three
    non-negative factor matrices (else uniform random from ``seed``, scaled to ||X||). Stops when the relative
    error improves by less than ``tol`` (or reaches ``target_error``, for benchmarks).

    One outer iteration: HALS on A (``n_inner`` column sweeps) with X_(0) (B kr C); Z = A^T X_(0) then gives the
    MTTKRPs of B and of C (contracting the largest mode first, so no intermediate is as large as X); then, with ``extrapolate``, the extrapolated point x + beta (x - x_prev) (projected on >= 0)
    is kept when its error is lower, with beta adapted as in Ang & Gillis (2019, "Accelerating nonnegative matrix
    factorization algorithms using extrapolation"): grown x1.05 after a success, divided by 1.5 after a failure.
    Each accepted iteration reads X twice (the next iteration's X_(0) (B kr C) doubles as the error check).
    ``mask=None`` or all-True: plain non-negative CP-HALS.
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
    for it in range(n_iter_max):
        An, Bn, Cn = A.clone(), B.clone(), C.clone()
        _hals_sweeps(An, (Bn.T @ Bn) * (Cn.T @ Cn), M0, n_inner)
        Z = (An.T @ X0).reshape(-1, J, K)  # A^T X_(0): one read of X; serves modes 1 and 2 (A is fixed now)
        _hals_sweeps(Bn, (An.T @ An) * (Cn.T @ Cn), torch.einsum("rjk,kr->jr", Z, Cn), n_inner)
        M2 = torch.einsum("rjk,jr->kr", Z, Bn)
        _hals_sweeps(Cn, (An.T @ An) * (Bn.T @ Bn), M2, n_inner)
        # observed-entry error of the HALS point: Gram identity on the imputed X, minus the imputed entries' share
        sq_n = xsq() - 2 * torch.sum(Cn.double() * M2.double()) + _model_sq(An, Bn, Cn) - missing_residual(An, Bn, Cn)
        _rebalance(An, Bn, Cn)
        err = rel(sq_n)
        accepted = False
        if extrapolate and prev is not None:
            Ae, Be, Ce = (torch.clamp(x + beta * (x - p), min=0.0) for x, p in zip((An, Bn, Cn), prev, strict=True))
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
        if target_error is not None and err <= target_error:
            break
        if target_error is None and it > 0 and abs(errors[-2] - err) < tol:
            break
    weights, normed = _normalize([A, B, C])
    return NCPResult(weights, normed, errors, n_done)


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


def factor_match_score(
    factors_a: Sequence[np.ndarray], factors_b: Sequence[np.ndarray], weights_a=None, weights_b=None,
    consider_weights: bool = False, skip_modes: Sequence[int] = (),
) -> tuple[float, np.ndarray]:
    """Factor match score (Tomasi & Bro): components matched by the Hungarian method on the product over modes
    of |cosine|; the score is the mean over matched components (times 1 - |w_a - w_b| / max(w_a, w_b) when
    ``consider_weights``). Components of ``a`` beyond ``b``'s rank are unmatched and count 0.
    Returns (score, perm) with ``perm[r]`` the component of ``b`` matched to ``a``'s component r (-1: none)."""
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


# ---- the estimator ----------------------------------------------------------------------------------------
class DynamicConnectome(Estimator):
    """Masked non-negative CP over ranks x restarts, rank by replicate stability, communities per component.

    Parameters
    ----------
    ranks : candidate ranks.
    restarts : random restarts per rank (seeds ``seed + k``).
    stability_threshold : the selected rank is the largest whose stability (mean FMS of the other restarts
        against the best one) reaches it; the smallest rank if none does.
    n_iter_max, tol, n_inner : HALS settings (see :func:`masked_ncp_hals`).
    dtype : "float32" or "float64".  device : "auto", "cpu", "cuda".
    resolution : Louvain resolution.  seed : base seed (restarts and Louvain).
    """

    def __init__(
        self, ranks: Sequence[int] = (2, 3, 4, 5), restarts: int = 5, stability_threshold: float = 0.95,
        n_iter_max: int = 300, tol: float = 1e-6, n_inner: int = 3, dtype: str = "float32", device: str = "auto",
        resolution: float = 1.0, seed: int = 0,
    ):
        self.ranks = ranks
        self.restarts = restarts
        self.stability_threshold = stability_threshold
        self.n_iter_max = n_iter_max
        self.tol = tol
        self.n_inner = n_inner
        self.dtype = dtype
        self.device = device
        self.resolution = resolution
        self.seed = seed

    model_name = "connectome_ntf"

    def _check_params(self) -> None:
        self._check_choice("dtype", ("float32", "float64"))
        ranks = [int(r) for r in np.atleast_1d(self.ranks)]
        if not ranks or min(ranks) < 1:
            raise self._param_error("ranks", "must be a non-empty list of ranks >= 1")
        for name in ("restarts", "n_iter_max", "n_inner"):
            if int(getattr(self, name)) < 1:
                raise self._param_error(name, "must be >= 1")
        if not 0.0 <= float(self.stability_threshold) <= 1.0:
            raise self._param_error("stability_threshold", "must be in [0, 1]")

    def fit(self, tensor: xr.Dataset) -> DynamicConnectome:
        """Fit every candidate rank with its restarts, select the rank, find the communities.

        Parameters
        ----------
        tensor : xarray.Dataset
            An ``affinity_tensor`` dataset (``affinity`` pair x window x animal, ``mask`` pair x animal).

        Returns
        -------
        DynamicConnectome
            ``self``, fitted.
        """
        self._check_params()
        ranks = [int(r) for r in np.atleast_1d(self.ranks)]
        dev = resolve_device(self.device)
        dt = getattr(torch, self.dtype)
        X = torch.as_tensor(np.asarray(tensor["affinity"].values), dtype=dt, device=dev)
        mask = torch.as_tensor(np.asarray(tensor["mask"].values).astype(bool), device=dev)[:, None, :]
        if float(torch.linalg.norm(X)) == 0.0:
            raise InputError("connectome: every affinity is 0 (no co-active pairs); lower null_z or check the traces")
        self.device_ = dev
        self.fits_: dict[int, list[NCPResult]] = {}
        self.stability_: dict[int, float] = {}
        self.best_: dict[int, NCPResult] = {}
        for R in ranks:
            fits = [
                masked_ncp_hals(X, R, mask, n_iter_max=int(self.n_iter_max), tol=float(self.tol),
                                n_inner=int(self.n_inner), seed=int(self.seed) + 1000 * R + k)
                for k in range(int(self.restarts))
            ]
            best = min(fits, key=lambda f: f.errors[-1])
            others = [f for f in fits if f is not best]
            bf = [f.cpu().numpy() for f in best.factors]
            sims = [factor_match_score(bf, [f.cpu().numpy() for f in o.factors])[0] for o in others]
            self.fits_[R], self.best_[R] = fits, best
            self.stability_[R] = float(np.mean(sims)) if sims else 1.0
            LOG.info("rank %d: error %.4f, stability %.3f, iterations %s", R, best.errors[-1], self.stability_[R],
                     [f.n_iter for f in fits])
        stable = [R for R in ranks if self.stability_[R] >= float(self.stability_threshold)]
        self.ranks_ = ranks
        self.rank_ = max(stable) if stable else min(ranks)
        res = self.best_[self.rank_]
        self.weights_ = res.weights
        self.factors_ = res.factors
        self.neurons_ = [str(n) for n in tensor["neuron"].values]
        self.pair_i_ = np.asarray(tensor["pair_i"].values)
        self.pair_j_ = np.asarray(tensor["pair_j"].values)
        self.membership_, self.community_ = communities(
            self.factors_[0].cpu().numpy(), self.pair_i_, self.pair_j_, len(self.neurons_), float(self.resolution),
            int(self.seed),
        )
        self.coords_ = {
            "pair": tensor["pair"].values,
            "window": tensor["window"].values,
            "time": np.asarray(tensor["time"].values, dtype=np.float64),
            "animal": tensor["animal"].values,
        }
        self.affinity_ = str(tensor.attrs.get("affinity", ""))
        return self

    def reconstruct(self) -> np.ndarray:
        """The fitted low-rank tensor (pair, window, animal) of the selected rank, as float64."""
        self._check_fitted()
        w = self.weights_.detach().cpu().double().numpy()
        A, B, C = (f.detach().cpu().double().numpy() for f in self.factors_)
        return np.einsum("r,ir,jr,kr->ijk", w, A, B, C)

    def score(self, tensor: xr.Dataset) -> float:
        """``1 -`` the relative masked reconstruction error of ``tensor`` (higher is better; 1 is exact).

        Parameters
        ----------
        tensor : xarray.Dataset
            An ``affinity_tensor`` with the fitted pairs, windows and animals (e.g. the same recordings, or
            held-out entries marked in ``mask``).

        Returns
        -------
        float
            ``1 - ||M * (X - X_hat)|| / ||M * X||`` with ``M`` the pair x animal mask.
        """
        X_hat = self.reconstruct()
        X = np.asarray(tensor["affinity"].values, dtype=np.float64)
        if X.shape != X_hat.shape:
            raise InputError(
                f"connectome: tensor of shape {X.shape} (pair, window, animal) differs from the fitted {X_hat.shape}"
            )
        M = np.asarray(tensor["mask"].values).astype(bool)[:, None, :]
        den = np.linalg.norm(np.where(M, X, 0.0))
        return 1.0 - float(np.linalg.norm(np.where(M, X - X_hat, 0.0)) / max(den, 1e-300))

    def to_dataset(self, tensor: xr.Dataset | None = None) -> xr.Dataset:
        """A ``model_fit`` dataset (role fit): factors of the selected rank, rank diagnostics, communities.

        ``tensor`` is accepted for compatibility and not needed: the coordinates are kept from ``fit``.
        """
        self._check_fitted()
        R = self.rank_
        comp = np.arange(R)
        pair_f, time_f, animal_f = (f.cpu().numpy().astype(np.float64) for f in self.factors_)
        ranks = np.array(self.ranks_)
        Rmax = max(self.ranks_)

        def padded(mode: int) -> np.ndarray:
            n = self.factors_[mode].shape[0]
            arr = np.full((len(ranks), n, Rmax), np.nan)
            for k, r in enumerate(ranks):
                arr[k, :, :r] = self.best_[int(r)].factors[mode].cpu().numpy()
            return arr

        all_w = np.full((len(ranks), Rmax), np.nan)
        for k, r in enumerate(ranks):
            all_w[k, :r] = self.best_[int(r)].weights.cpu().numpy()
        ds = xr.Dataset(
            {
                "weight": ("component", self.weights_.cpu().numpy().astype(np.float64)),
                "pair_factor": (("pair", "component"), pair_f),
                "time_factor": (("window", "component"), time_f),
                "animal_factor": (("animal", "component"), animal_f),
                "membership": (("component", "neuron"), self.membership_.astype(np.int32),
                               {"long_name": "Louvain community of each neuron on the component's pair factor"}),
                "in_community": (("component", "neuron"), self.community_.astype(np.int8),
                                 {"long_name": "1 if the neuron is in the component's densest community"}),
                "rank_stability": ("rank", np.array([self.stability_[r] for r in ranks])),
                "rank_error": ("rank", np.array([self.best_[r].errors[-1] for r in ranks])),
                "rank_n_iter": ("rank", np.array([self.best_[r].n_iter for r in ranks], dtype=np.int64)),
                "all_weight": (("rank", "kcomponent"), all_w, {"long_name": "best fit's weights at each rank (NaN-padded)"}),
                "all_pair_factor": (("rank", "pair", "kcomponent"), padded(0)),
                "all_time_factor": (("rank", "window", "kcomponent"), padded(1)),
                "all_animal_factor": (("rank", "animal", "kcomponent"), padded(2)),
                "error_history": ("iteration", np.asarray(self.best_[R].errors, dtype=np.float64)),
                "pair_i": ("pair", self.pair_i_.astype(np.int64)),
                "pair_j": ("pair", self.pair_j_.astype(np.int64)),
            },
            coords={
                "component": comp,
                "pair": self.coords_["pair"],
                "window": self.coords_["window"],
                "time": ("window", self.coords_["time"], {"units": "s"}),
                "animal": self.coords_["animal"],
                "neuron": np.asarray(self.neurons_),
                "rank": ranks,
            },
            attrs={
                "model": "connectome_ntf",
                "role": "fit",
                "selected_rank": int(R),
                "stability_threshold": self.stability_threshold,
                "restarts": self.restarts,
                "device": str(self.device_),
                "dtype": self.dtype,
                "affinity": self.affinity_,
                "estimator_params": json.dumps(_plain(self.get_params(deep=False))),
            },
        )
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, device: str = "cpu") -> DynamicConnectome:
        """Rebuild a fitted model from :meth:`to_dataset` (the selected rank's factors and every rank's best fit).

        Parameters
        ----------
        ds : xarray.Dataset
            A ``model_fit`` dataset with ``model = "connectome_ntf"``.
        device : str
            Where the factors are placed (``"cpu"``, ``"cuda"``, ``"auto"``).

        Returns
        -------
        DynamicConnectome
            The fitted model (``fits_`` holds only each rank's best restart).
        """
        if ds.attrs.get("model") != cls.model_name:
            raise InputError(f"not a connectome fit (model = {ds.attrs.get('model')!r})")
        params = json.loads(ds.attrs["estimator_params"]) if "estimator_params" in ds.attrs else {}
        m = cls(**params)
        dev = resolve_device(device if device != "auto" else m.device)
        dt = getattr(torch, str(ds.attrs.get("dtype", "float32")))
        as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dt, device=dev)  # noqa: E731
        m.device_ = dev
        m.ranks_ = [int(r) for r in ds["rank"].values]
        m.rank_ = int(ds.attrs["selected_rank"])
        m.stability_ = {r: float(s) for r, s in zip(m.ranks_, ds["rank_stability"].values, strict=True)}
        m.best_ = {}
        for k, r in enumerate(m.ranks_):
            factors = [as_t(ds[v].values[k, :, :r]) for v in ("all_pair_factor", "all_time_factor", "all_animal_factor")]
            errors = [float(ds["rank_error"].values[k])]
            if r == m.rank_:
                errors = [float(e) for e in ds["error_history"].values]
            m.best_[r] = NCPResult(as_t(ds["all_weight"].values[k, :r]), factors, errors, int(ds["rank_n_iter"].values[k]))
        m.fits_ = {r: [f] for r, f in m.best_.items()}
        m.weights_ = as_t(ds["weight"].values)
        m.factors_ = [as_t(ds[v].values) for v in ("pair_factor", "time_factor", "animal_factor")]
        m.neurons_ = [str(n) for n in ds["neuron"].values]
        m.pair_i_ = np.asarray(ds["pair_i"].values)
        m.pair_j_ = np.asarray(ds["pair_j"].values)
        m.membership_ = np.asarray(ds["membership"].values)
        m.community_ = np.asarray(ds["in_community"].values).astype(bool)
        m.coords_ = {
            "pair": ds["pair"].values,
            "window": ds["window"].values,
            "time": np.asarray(ds["time"].values, dtype=np.float64),
            "animal": ds["animal"].values,
        }
        m.affinity_ = str(ds.attrs.get("affinity", ""))
        return m


def _density(W: np.ndarray, members) -> float:
    """Mean within-community weight (0 for a singleton)."""
    c = sorted(members)
    if len(c) < 2:
        return 0.0
    return float(W[np.ix_(c, c)].sum() / (len(c) * (len(c) - 1)))


def communities(
    pair_factor: np.ndarray, pair_i: np.ndarray, pair_j: np.ndarray, n_neurons: int, resolution: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Louvain (networkx) on each component's pair factor reshaped to neuron x neuron.

    Returns ``membership`` (R, n_neurons) community labels (communities numbered by decreasing density), and
    ``in_community`` (R, n_neurons) bool: the densest community (highest mean within-community weight among
    communities of at least 2 neurons).
    """
    import networkx as nx

    R = pair_factor.shape[1]
    membership = np.zeros((R, n_neurons), dtype=np.int64)
    best = np.zeros((R, n_neurons), dtype=bool)
    for r in range(R):
        w = pair_factor[:, r]
        W = np.zeros((n_neurons, n_neurons))
        W[pair_i, pair_j] = w
        W = W + W.T
        g = nx.Graph()
        g.add_nodes_from(range(n_neurons))
        keep = w > 1e-9 * max(float(w.max()), 1e-300)
        g.add_weighted_edges_from(zip(pair_i[keep].tolist(), pair_j[keep].tolist(), w[keep].tolist(), strict=True))
        comms = nx.algorithms.community.louvain_communities(g, weight="weight", resolution=resolution, seed=seed)

        comms = sorted(comms, key=lambda c, W=W: (-_density(W, c), min(c)))
        for k, c in enumerate(comms):
            membership[r, sorted(c)] = k
        best[r, sorted(comms[0])] = True
    return membership, best
