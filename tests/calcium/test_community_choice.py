"""How a component's community is picked from its pair factor's partition (issue 16): the densest community or the
largest within weight in excess of the mean, in :func:`brainpipe.evaluate.communities` and the dynamic connectome."""

from __future__ import annotations

import numpy as np
import pytest

from brainpipe.errors import ConfigError
from brainpipe.evaluate import communities


def _block_and_noisy_pair(seed=0, n=20):
    """A 9-neuron block of within weight ~1, the other neurons weakly linked to it, and a 2-neuron pair with one
    strong noise link (3.0): the pair factor of a component on noisy data."""
    rng = np.random.default_rng(seed)
    W = np.zeros((n, n))
    W[:9, 9:] = 0.02 * rng.random((9, n - 9))
    W[:9, :9] = 1.0 + 0.1 * rng.standard_normal((9, 9))
    W[:9, 12:14] = 0.0
    W[12, 13] = 3.0
    W = np.triu(W, 1)
    i, j = np.triu_indices(n, 1)
    return W[i, j][:, None], i, j, n


def test_excess_choice_ignores_a_pair_with_a_few_strong_noise_links():
    w, i, j, n = _block_and_noisy_pair()
    membership, dense = communities(w, i, j, n, seed=0)  # the default: densest community
    assert np.flatnonzero(dense[0]).tolist() == [12, 13]  # the noisy pair wins on mean weight
    membership, mod = communities(w, i, j, n, seed=0, choice="excess")
    chosen = np.flatnonzero(mod[0])
    assert set(range(9)) <= set(chosen) and not {12, 13} & set(chosen)
    assert (membership[0][mod[0]] == 0).all()  # the chosen community carries label 0
    with pytest.raises(ConfigError, match="community choice"):
        communities(w, i, j, n, choice="largest")


def test_excess_choice_is_the_densest_when_blocks_are_alike():
    """Two equal blocks on a clean factor: both rules pick the same (the lower-index) block."""
    n = 12
    W = np.zeros((n, n))
    W[:5, :5] = 1.0
    W[6:11, 6:11] = 1.0
    W = np.triu(W, 1)
    i, j = np.triu_indices(n, 1)
    a = communities(W[i, j][:, None], i, j, n)[1]
    b = communities(W[i, j][:, None], i, j, n, choice="excess")[1]
    assert (a == b).all() and np.flatnonzero(b[0]).tolist() == list(range(5))


def test_connectome_community_choice_reaches_the_communities_and_the_baselines():
    """The model passes its choice to the communities (and the rank rule's), records it, and the evaluation gives
    the NMF baselines the same choice; a bad value is one line naming the key."""
    import json

    import xarray as xr

    from brainpipe.evaluate.connectome_baselines import nmf_stable_rank
    from brainpipe.models.connectome import DynamicConnectome

    rng = np.random.default_rng(0)
    n, n_win, n_an = 14, 40, 2
    i, j = np.triu_indices(n, 1)
    block = (i < 6) & (j < 6)
    time = (np.arange(n_win) % 10 < 5).astype(float)
    X = block[:, None, None] * (time[None, :, None] + 0.1 * rng.random((len(i), n_win, n_an)))
    X[(i == 8) & (j == 9)] += 2.0  # a strong noise link, constant in time
    tensor = xr.Dataset(
        {
            "affinity": (("pair", "window", "animal"), X),
            "mask": (("pair", "animal"), np.ones((len(i), n_an), dtype=np.int8)),
            "pair_i": ("pair", i),
            "pair_j": ("pair", j),
        },
        coords={
            "neuron": [f"n{k}" for k in range(n)],
            "pair": np.arange(len(i)),
            "window": np.arange(n_win),
            "time": ("window", 2.5 * np.arange(n_win)),
            "animal": ["a", "b"],
        },
    )
    # one component holds the block and the constant noise link (stronger than any block link)
    kw = {"ranks": [1], "restarts": 2, "n_iter_max": 200, "device": "cpu", "seed": 0}
    dens = DynamicConnectome(**kw).fit(tensor)
    mod = DynamicConnectome(community_choice="excess", **kw).fit(tensor)
    assert np.flatnonzero(dens.community_[0]).tolist() == [8, 9]
    assert np.flatnonzero(mod.community_[0]).tolist() == list(range(6))
    assert json.loads(mod.to_dataset(tensor).attrs["estimator_params"])["community_choice"] == "excess"
    own = nmf_stable_rank(tensor, ranks=[1], restarts=2, choice="excess")
    assert np.flatnonzero(own["found"][0]).tolist() == list(range(6))
    with pytest.raises(ConfigError, match="community_choice"):
        DynamicConnectome(community_choice="largest").fit(tensor)
