"""The weighted SBM community step (issue 16): planted weighted graphs whose weights are gamma (shape 4; the model's
are log-normal or exponential) and whose block sizes differ, against weighted Louvain."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score as ari

from brainpipe.errors import ConfigError, InputError
from brainpipe.evaluate import communities, fit_sbm, sbm_icl, sbm_loglik

P_IN, P_OUT = 0.8, 0.3


def _planted(sizes, means, probs, seed, shape=4.0):
    """Symmetric weighted graph: an edge with probability probs[g, h], a gamma weight of mean means[g, h]."""
    rng = np.random.default_rng(seed)
    z = np.repeat(np.arange(len(sizes)), sizes)
    n = len(z)
    mu, p = np.asarray(means, float)[z][:, z], np.asarray(probs, float)[z][:, z]
    W = rng.gamma(shape, mu / shape) * (rng.random((n, n)) < p)
    W = np.triu(W, 1)
    return W + W.T, z


def _louvain(W, seed=0):
    n = len(W)
    i, j = np.triu_indices(n, 1)
    return communities(W[i, j][:, None], i, j, n, seed=seed)[0][0]


def _sbm(W, seed=0):
    n = len(W)
    i, j = np.triu_indices(n, 1)
    return communities(W[i, j][:, None], i, j, n, seed=seed, method="sbm")


def _assortative(seed):
    hi, lo = 3.0, 0.5
    return _planted(
        [15, 12, 9],
        [[hi, lo, lo], [lo, hi, lo], [lo, lo, hi]],
        [[P_IN, P_OUT, P_OUT], [P_OUT, P_IN, P_OUT], [P_OUT, P_OUT, P_IN]],
        seed,
    )


@pytest.mark.parametrize("weights", ["lognormal", "exponential"])
def test_assortative_recovery_at_least_louvain_and_block_count(weights):
    for seed in range(3):
        W, z = _assortative(seed)
        found, _ = fit_sbm(W, seed=0, weights=weights)
        assert found.max() + 1 == 3  # the planted number of blocks, chosen by ICL
        assert ari(z, found) >= ari(z, _louvain(W)) - 1e-12
        assert ari(z, found) > 0.9


@pytest.mark.parametrize(
    "sizes, means, probs",
    [
        ([8, 22], [[3.0, 2.0], [2.0, 0.5]], [[0.9, 0.7], [0.7, 0.2]]),  # core-periphery
        ([10, 14], [[0.5, 3.0], [3.0, 0.5]], [[0.3, 0.8], [0.8, 0.3]]),  # disassortative (bipartite-like)
    ],
)
def test_structure_modularity_cannot_express(sizes, means, probs):
    for seed in range(2):
        W, z = _planted(sizes, means, probs, seed)
        membership, dense = _sbm(W)
        assert ari(z, membership[0]) > 0.9
        assert ari(z, _louvain(W)) < 0.3
        if sizes[0] == 8:  # the core is the densest block
            assert dense[0].tolist() == (z == 0).tolist()


def test_seeded_determinism_and_icl_consistency():
    W, z = _assortative(5)
    a, icl_a = fit_sbm(W, seed=3)
    b, icl_b = fit_sbm(W, seed=3)
    assert a.tolist() == b.tolist() and icl_a == icl_b
    # the chosen partition beats the one-block partition
    assert sbm_icl(W, a) > sbm_icl(W, np.zeros_like(a))
    assert sbm_loglik(W, a) >= sbm_loglik(W, np.zeros_like(a))
    # ICL is scale-free: rescaling the weights shifts the log-likelihood by a constant
    shift = sbm_loglik(10.0 * W, a) - sbm_loglik(W, a)
    assert np.isclose(sbm_loglik(10.0 * W, z) - sbm_loglik(W, z), shift)


def test_bad_input_one_line_errors():
    W, _ = _assortative(0)
    bad = W.copy()
    bad[0, 1] = -1.0
    with pytest.raises(InputError, match="negative weights"):
        fit_sbm(bad)
    bad[0, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        fit_sbm(bad)
    with pytest.raises(InputError, match="square"):
        fit_sbm(W[:3])
    with pytest.raises(ConfigError, match="SBM weights must be one of lognormal, exponential"):
        fit_sbm(W, weights="normal")
    with pytest.raises(ConfigError, match="max_blocks"):
        fit_sbm(W, max_blocks=0)
    with pytest.raises(ConfigError, match="louvain' or 'sbm"):
        communities(W[0, 1:][:, None], np.zeros(len(W) - 1, int), np.arange(1, len(W)), len(W), method="x")


def test_empty_and_tiny_graphs():
    labels, _ = fit_sbm(np.zeros((4, 4)))
    assert labels.tolist() == [0, 0, 0, 0]
    assert fit_sbm(np.zeros((1, 1)))[0].tolist() == [0]


def test_connectome_passes_the_community_method_down():
    """A planted rank-1 pair factor whose community is a core the periphery also links to: the SBM option gives
    the model the core, and an unknown method is a one-line config error."""
    import torch
    import xarray as xr

    from brainpipe.models.connectome import DynamicConnectome

    W, z = _planted([8, 22], [[3.0, 2.0], [2.0, 0.5]], [[0.9, 0.7], [0.7, 0.2]], 0)
    n = len(W)
    i, j = np.triu_indices(n, 1)
    rng = np.random.default_rng(0)
    time_f, animal_f = rng.random(12) + 0.1, np.ones(2)
    X = W[i, j][:, None, None] * time_f[None, :, None] * animal_f[None, None, :]
    tensor = xr.Dataset(
        {
            "affinity": (("pair", "window", "animal"), X),
            "mask": (("pair", "animal"), np.ones((len(i), 2), dtype=np.int8)),
            "pair_i": ("pair", i),
            "pair_j": ("pair", j),
        },
        coords={
            "neuron": [f"n{k}" for k in range(n)],
            "pair": np.arange(len(i)),
            "window": np.arange(12),
            "time": ("window", 2.5 * np.arange(12)),
            "animal": ["a0", "a1"],
        },
    )
    torch.set_num_threads(1)
    model = DynamicConnectome(ranks=[1], restarts=1, device="cpu", n_iter_max=50, community_method="sbm")
    model.fit(tensor)
    assert model.community_[0].tolist() == (z == 0).tolist()
    assert ari(z, model.membership_[0]) > 0.9
    with pytest.raises(ConfigError, match="community_method"):
        DynamicConnectome(community_method="graph-tool").fit(tensor)


def test_weakly_linked_neurons_stay_out_of_a_tight_community():
    """The NTF pair factors' failure mode of the exponential weight model (bench/ntf_baselines.py, differ seed 4): a
    tight community (gamma shape 20) and two neurons whose links to it are 8x weaker. The exponential's density peaks
    at 0, so weak links fit the community's block pair; the log-normal keeps them out, like Louvain."""
    n = 30
    for seed in range(2):
        rng = np.random.default_rng(seed)
        mu = np.full((n, n), 0.002)
        mu[:7, 7:9] = mu[7:9, :7] = 0.015
        W = rng.gamma(4.0, mu / 4.0) * (rng.random((n, n)) < 0.7)
        W[:7, :7] = rng.gamma(20.0, 0.12 / 20.0, (7, 7))
        W = np.triu(W, 1)
        W = W + W.T
        for weights, members in (("lognormal", list(range(7))), ("exponential", list(range(9)))):
            labels, _ = fit_sbm(W, weights=weights)
            assert np.flatnonzero(labels == labels[0]).tolist() == members, weights
