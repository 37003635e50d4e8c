"""Communities of a weighted pair graph: weighted Louvain (networkx, default) or a weighted stochastic block model
(:mod:`brainpipe.evaluate.sbm`, the stand-in for the paper's nested weighted SBM) on each CP component's pair
factor, as used by the dynamic connectome (:class:`brainpipe.models.connectome.DynamicConnectome`).
"""

from __future__ import annotations

import numpy as np

from brainpipe.errors import ConfigError


def _density(W: np.ndarray, members) -> float:
    """Mean within-community weight (0 for a singleton)."""
    c = sorted(members)
    if len(c) < 2:
        return 0.0
    return float(W[np.ix_(c, c)].sum() / (len(c) * (len(c) - 1)))


def _excess(W: np.ndarray, members, resolution: float = 1.0) -> float:
    """A community's within weight in excess of the component's mean pair weight, summed over its pairs:
    ``sum_{i<j in c} (w_ij - resolution * mean w)``, the community's term of a modularity with a uniform null
    (-inf for a singleton, which has no pairs)."""
    c = sorted(members)
    n = W.shape[0]
    if len(c) < 2:
        return -np.inf
    mean = float(W.sum()) / max(n * (n - 1), 1)
    k = len(c)
    return float(W[np.ix_(c, c)].sum() / 2 - resolution * mean * k * (k - 1) / 2)


#: how :func:`communities` picks each component's community among its partition's
CHOICES = ("density", "excess")


def communities(
    pair_factor: np.ndarray,
    pair_i: np.ndarray,
    pair_j: np.ndarray,
    n_neurons: int,
    resolution: float = 1.0,
    seed: int = 0,
    method: str = "louvain",
    choice: str = "density",
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Louvain or a weighted SBM on each component's pair factor reshaped to neuron x neuron.

    Parameters
    ----------
    pair_factor : numpy.ndarray
        (n_pairs, R) non-negative pair weights, one column per component.
    pair_i, pair_j : numpy.ndarray
        (n_pairs,) the two neurons of each pair.
    n_neurons : int
        Number of neurons (graph nodes).
    resolution : float
        Louvain resolution.
    seed : int
        Louvain (or SBM) seed.
    method : {"louvain", "sbm"}
        ``"louvain"`` (default): weighted Louvain (modularity; only assortative communities).
        ``"sbm"``: the weighted SBM (edges Bernoulli, log-normal weights per block pair) with the number of blocks chosen by ICL
        (:func:`brainpipe.evaluate.sbm.fit_sbm`; ``resolution`` unused).
    choice : {"density", "excess"}
        Which community of the partition is the component's: ``"density"`` (default) the highest mean
        within-community weight among communities of at least 2 neurons; ``"excess"`` the largest within weight
        in excess of the component's mean pair weight (``sum over its pairs of w - resolution * mean w``: the
        community's term of a modularity with a uniform null), which a pair or triplet with a few strong links
        cannot win against a larger block of consistently high weight (on noisy pair factors the densest
        community flipped between such a triplet and the block), while a large community of noise pairs near the
        mean gains nothing.

    Returns
    -------
    membership : numpy.ndarray
        (R, n_neurons) community labels (communities numbered by decreasing score of ``choice``).
    in_community : numpy.ndarray
        (R, n_neurons) bool: the chosen community (label 0).
    """
    import networkx as nx

    if method not in ("louvain", "sbm"):
        raise ConfigError(f"community method must be 'louvain' or 'sbm', got {method!r}: use one of them")
    if choice not in CHOICES:
        raise ConfigError(f"community choice must be 'density' or 'excess', got {choice!r}: use one of them")
    R = pair_factor.shape[1]
    membership = np.zeros((R, n_neurons), dtype=np.int64)
    best = np.zeros((R, n_neurons), dtype=bool)
    for r in range(R):
        w = pair_factor[:, r]
        W = np.zeros((n_neurons, n_neurons))
        W[pair_i, pair_j] = w
        W = W + W.T
        if method == "sbm":
            from brainpipe.evaluate.sbm import fit_sbm

            labels = fit_sbm(W, seed=seed)[0]
            comms = [set(np.flatnonzero(labels == k).tolist()) for k in range(int(labels.max()) + 1)]
        else:
            g = nx.Graph()
            g.add_nodes_from(range(n_neurons))
            keep = w > 1e-9 * max(float(w.max()), 1e-300)
            g.add_weighted_edges_from(
                zip(pair_i[keep].tolist(), pair_j[keep].tolist(), w[keep].tolist(), strict=True)
            )
            comms = nx.algorithms.community.louvain_communities(
                g, weight="weight", resolution=resolution, seed=seed
            )

        if choice == "excess":
            comms = sorted(comms, key=lambda c, W=W: (-_excess(W, c, resolution), min(c)))
        else:
            comms = sorted(comms, key=lambda c, W=W: (-_density(W, c), min(c)))
        for k, c in enumerate(comms):
            membership[r, sorted(c)] = k
        best[r, sorted(comms[0])] = True
    return membership, best
