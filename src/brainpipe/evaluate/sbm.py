"""A weighted stochastic block model for one weighted pair graph, the stand-in for the paper's community step.

The dynamic connectome paper (issue 16) finds each component's communities with graph-tool's *nested weighted*
stochastic block model (``minimize_nested_blockmodel_dl`` with real-valued edge covariates). graph-tool cannot be
pip-installed here, and the reference repository could not be read, so the edge-weight model and the prior of the
paper's fit are not confirmed. This module fits the closest model that needs no compiled dependency:

Model (a "hurdle" weighted SBM, as graph-tool models a weighted graph: edges by an SBM, weights as edge
covariates). Nodes are in blocks ``z``; for each unordered block pair ``(g, h)``, each of its ``N_gh`` node pairs
carries an edge (weight > 0) with probability ``p_gh`` (Bernoulli), and an edge's weight follows a per-block-pair
distribution, ``weights``:

- ``"lognormal"`` (default; graph-tool's ``"real-normal"`` covariate on log weights, the usual way to use it with
  positive weights): ``log w ~ Normal(m_gh, v_gh)``; the variance at its posterior mode under one pseudo-observation
  at the variance of all log weights (``v_gh = (SS_gh + s0) / (E_gh + 1)``), so a block pair of one edge does not get
  an infinite likelihood. 3 parameters per block pair.
- ``"exponential"`` (graph-tool's ``"real-exponential"``): mean ``mu_gh``, closed-form profile
  ``-E (log(S / E) + 1)``. 2 parameters per block pair. Its density peaks at 0, so weak links to a tight community
  fit the community's block pair: on the NTF pair factors (bench/ntf_baselines.py) it added weakly linked neurons to
  the densest block; the log-normal does not.

Both change only by a constant when the weights are rescaled (NTF factors have an arbitrary scale; no
discretisation step, as a Poisson model would need, has to be set by hand). The Bernoulli part contributes
``E log(E / N) + (N - E) log(1 - E / N)`` per block pair (``E`` edges among ``N`` pairs). No degree correction: the
component's community is a block of high within-block weight, which node degree corrections would explain away;
this departs from graph-tool's default (degree-corrected) edge model.

The number of blocks is chosen by the integrated classification likelihood (ICL: the log-likelihood plus the
classification term ``sum_g n_g log(n_g / n)``, less ``(K - 1) / 2 log n`` for the block proportions and
``P / 2 log N_pairs`` for the ``P`` block-pair parameters), so no threshold is set by hand. Not nested: the paper's
hierarchy groups the blocks further; the finest level, used here, is the one that carries the communities.

Fit (deterministic given ``seed``): for every ``K`` in ``1..max_blocks``, a start from k-means on the leading
eigenvectors (by absolute eigenvalue, so disassortative structure shows) of the weight matrix, and a start from
weighted Louvain; each start refined by greedy single-node moves that increase the log-likelihood (nodes visited in a
seeded order until no move helps); then the partition with the highest ICL over all starts.
"""

from __future__ import annotations

import numpy as np

from brainpipe.errors import ConfigError, InputError

__all__ = ["WEIGHT_MODELS", "fit_sbm", "sbm_icl", "sbm_loglik"]


WEIGHT_MODELS = ("lognormal", "exponential")


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``x log y`` with ``0 log 0 = 0``."""
    out = np.zeros(np.broadcast(x, y).shape)
    ok = np.broadcast_to(x > 0, out.shape)
    xb, yb = np.broadcast_to(x, out.shape), np.broadcast_to(y, out.shape)
    out[ok] = xb[ok] * np.log(yb[ok])
    return out


class _Model:
    """Edge features per node pair and the block-pair profile log-likelihood of their sums."""

    def __init__(self, W: np.ndarray, weights: str):
        if weights not in WEIGHT_MODELS:
            raise ConfigError(f"SBM weights must be one of {', '.join(WEIGHT_MODELS)}, got {weights!r}")
        self.weights = weights
        A = (W > 0).astype(float)
        if weights == "exponential":
            self.F = np.stack([A, W])
            self.n_params = 2
        else:
            L = np.where(A > 0, np.log(np.where(A > 0, W, 1.0)), 0.0)
            self.F = np.stack([A, L, L * L])
            self.n_params = 3
            logs = L[np.triu_indices(len(W), 1)][A[np.triu_indices(len(W), 1)] > 0]
            # the variance prior: one pseudo-observation at the variance of every log weight (data-driven scale)
            self.s0 = float(logs.var()) if logs.size > 1 else 1.0
            self.s0 = max(self.s0, 1e-12)

    def stats(self, z: np.ndarray, K: int):
        """Block sizes and the (m, K, K) feature sums (diagonal counted twice)."""
        Z = np.zeros((len(z), K))
        Z[np.arange(len(z)), z] = 1.0
        return Z.sum(0), np.einsum("ia,mij,jb->mab", Z, self.F, Z)

    def loglik(self, n: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Log-likelihood from block stats; leading axes broadcast (n: (..., K), T: (..., m, K, K))."""
        K = n.shape[-1]
        N = n[..., :, None] * n[..., None, :]
        d = np.arange(K)
        N[..., d, d] = n * (n - 1) / 2.0
        T = T.copy()
        T[..., d, d] /= 2.0
        E = T[..., 0, :, :]
        Np = np.maximum(N, 1e-300)
        terms = _xlogy(E, E / Np) + _xlogy(N - E, np.maximum(N - E, 0.0) / Np)
        Ep = np.maximum(E, 1e-300)
        if self.weights == "exponential":
            S = T[..., 1, :, :]
            terms = terms + np.where(E > 0, -E * (np.log(np.maximum(S, 1e-300) / Ep) + 1.0), 0.0)
        else:
            S1, S2 = T[..., 1, :, :], T[..., 2, :, :]
            ss = np.maximum(S2 - S1 * S1 / Ep, 0.0)
            var = (ss + self.s0) / (E + 1.0)
            terms = terms + np.where(E > 0, -0.5 * E * np.log(2 * np.pi * var) - 0.5 * ss / var - S1, 0.0)
        iu = np.triu_indices(K)
        return terms[..., iu[0], iu[1]].sum(-1)

    def icl(self, z: np.ndarray) -> float:
        z = np.unique(z, return_inverse=True)[1].ravel()
        K, n_nodes = int(z.max()) + 1, len(z)
        n, T = self.stats(z, K)
        n_pairs = n_nodes * (n_nodes - 1) / 2.0
        classif = float(np.sum(n * np.log(n / n_nodes)))
        pen = (K - 1) / 2.0 * np.log(n_nodes) + self.n_params * K * (K + 1) / 4.0 * np.log(max(n_pairs, 2.0))
        return float(self.loglik(n, T)) + classif - pen

    def refine(self, z: np.ndarray, K: int, rng, max_sweeps: int = 50) -> np.ndarray:
        """Greedy single-node moves that increase the log-likelihood, until none does."""
        z = z.copy()
        n, T = self.stats(z, K)
        eye = np.eye(K)
        for _ in range(max_sweeps):
            moved = False
            for i in rng.permutation(len(z)):
                a = z[i]
                if n[a] <= 1:
                    continue
                e = np.stack([np.bincount(z, weights=f[i], minlength=K) for f in self.F])  # (m, K)
                ua = eye[a][None, :, None] * e[:, None, :] + e[:, :, None] * eye[a][None, None, :]
                Tr = T - ua
                # candidate b: add node i's links to block b (row and column b)
                add = (
                    eye[:, None, :, None] * e[None, :, None, :] + e[None, :, :, None] * eye[:, None, None, :]
                )
                Tc = Tr[None] + add
                nc = (n - eye[a])[None] + eye
                ll = self.loglik(nc, Tc)
                b = int(np.argmax(ll))
                if b != a and ll[b] > ll[a] + 1e-9:
                    z[i], n, T, moved = b, nc[b], Tc[b], True
            if not moved:
                break
        return z


def _check(W: np.ndarray) -> np.ndarray:
    W = np.asarray(W, dtype=float)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise InputError(f"SBM weight matrix must be square, got shape {W.shape}")
    if not np.isfinite(W).all():
        raise InputError("SBM weight matrix has NaN or infinite entries: fill or drop them before the fit")
    if (W < 0).any():
        raise InputError("SBM weight matrix has negative weights: the model needs non-negative weights")
    W = (W + W.T) / 2.0
    np.fill_diagonal(W, 0.0)
    return W


def sbm_loglik(W: np.ndarray, z: np.ndarray, weights: str = "lognormal") -> float:
    """Profile log-likelihood of a partition under the hurdle weighted SBM (module docstring).

    Parameters
    ----------
    W : numpy.ndarray
        (n, n) symmetric non-negative weights (the diagonal is ignored).
    z : numpy.ndarray
        (n,) block labels ``0..K-1``.
    weights : {"lognormal", "exponential"}
        The edge-weight model per block pair.

    Returns
    -------
    float
        The maximised log-likelihood (the log-normal's variances at their posterior mode).
    """
    model = _Model(_check(W), weights)
    z = np.asarray(z, dtype=np.int64)
    n, T = model.stats(z, int(z.max()) + 1)
    return float(model.loglik(n, T))


def sbm_icl(W: np.ndarray, z: np.ndarray, weights: str = "lognormal") -> float:
    """Integrated classification likelihood of a partition (higher is better; module docstring).

    Parameters
    ----------
    W : numpy.ndarray
        (n, n) symmetric non-negative weights (the diagonal is ignored).
    z : numpy.ndarray
        (n,) block labels; empty labels are dropped.
    weights : {"lognormal", "exponential"}
        The edge-weight model per block pair.

    Returns
    -------
    float
        Log-likelihood + classification term - BIC penalties.
    """
    return _Model(_check(W), weights).icl(np.asarray(z))


def _spectral_start(W: np.ndarray, K: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    if K == 1:
        return np.zeros(len(W), dtype=np.int64)
    vals, vecs = np.linalg.eigh(W)
    X = vecs[:, np.argsort(-np.abs(vals))[:K]]
    return KMeans(K, n_init=4, random_state=seed).fit_predict(X).astype(np.int64)


def _louvain_start(W: np.ndarray, seed: int) -> np.ndarray:
    import networkx as nx

    g = nx.from_numpy_array(W)
    comms = nx.algorithms.community.louvain_communities(g, weight="weight", seed=seed)
    z = np.zeros(len(W), dtype=np.int64)
    for k, c in enumerate(sorted(comms, key=min)):
        z[sorted(c)] = k
    return z


def fit_sbm(
    W: np.ndarray, max_blocks: int = 8, seed: int = 0, weights: str = "lognormal"
) -> tuple[np.ndarray, float]:
    """Fit the hurdle weighted SBM (module docstring) and choose the number of blocks by ICL.

    Parameters
    ----------
    W : numpy.ndarray
        (n, n) non-negative weights (symmetrised; the diagonal is ignored).
    max_blocks : int
        Largest number of blocks tried (capped at n).
    seed : int
        Seed of the k-means starts, the Louvain start and the node visiting order.
    weights : {"lognormal", "exponential"}
        The edge-weight model per block pair (module docstring).

    Returns
    -------
    labels : numpy.ndarray
        (n,) block labels ``0..K-1`` (numbered by first appearance).
    icl : float
        The chosen partition's ICL (weights divided by their maximum).
    """
    W = _check(W)
    if int(max_blocks) < 1:
        raise ConfigError(f"SBM max_blocks must be >= 1, got {max_blocks}")
    n_nodes = len(W)
    if n_nodes < 2:
        return np.zeros(n_nodes, dtype=np.int64), 0.0
    top = float(W.max())
    if top > 0:  # both weight models change by a constant only; keeps the numbers tame
        W = np.where(W > 1e-9 * top, W, 0.0) / top
    model = _Model(W, weights)
    rng = np.random.default_rng(seed)
    starts = [_spectral_start(W, K, seed) for K in range(1, min(int(max_blocks), n_nodes) + 1)]
    if top > 0:
        starts.append(_louvain_start(W, seed))
    best, best_icl = None, -np.inf
    for z0 in starts:
        z0 = np.unique(z0, return_inverse=True)[1].ravel()
        z = model.refine(z0, int(z0.max()) + 1, rng)
        icl = model.icl(z)
        if icl > best_icl + 1e-9:
            best, best_icl = z, icl
    _, first = np.unique(best, return_index=True)
    relabel = np.empty(int(best.max()) + 1, dtype=np.int64)
    relabel[best[np.sort(first)]] = np.arange(len(first))
    return relabel[best], float(best_icl)
