"""The NMF baseline of the dynamic connectome with a rank of its own (issue 16): the NTF's stability rule applied to
NMF restarts (:func:`brainpipe.evaluate.connectome_baselines.nmf_stable_rank`)."""

from __future__ import annotations

import numpy as np
import pytest

from brainpipe.evaluate.connectome import merge_truths
from brainpipe.evaluate.connectome_baselines import match_communities, nmf_stable_rank
from brainpipe.preprocess.affinity import AnimalTraces, build_tensor
from brainpipe.preprocess.calcium import preprocess_calcium
from brainpipe.simulate import simulate


@pytest.fixture(scope="module")
def small():
    base = {"n_neurons": 24, "n_frames": 1500, "n_animals": 3, "community_size": 6}
    sims = [simulate("calcium_communities", {**base, "animal": a}, seed=1) for a in range(3)]
    procs = [preprocess_calcium(s.data, window_s=60) for s in sims]
    animals = [
        AnimalTraces(f"a{k}", p["dff"].values, [str(c) for c in p["cell"].values], 10.0)
        for k, p in enumerate(procs)
    ]
    return merge_truths([s.truth for s in sims]), build_tensor(animals, window_s=5.0, stride_s=2.5)


def test_nmf_stable_rank_picks_the_largest_stable_rank_and_finds_the_communities(small):
    truth, tensor = small
    out = nmf_stable_rank(tensor, ranks=[4, 2, 3], restarts=3)
    stable = [r for r, s in out["stability"].items() if s >= 0.95]
    assert sorted(out["stability"]) == [2, 3, 4] and all(0.0 <= s <= 1.0 for s in out["stability"].values())
    assert out["rank"] == (max(stable) if stable else 2) and out["is_stable"] == bool(stable)
    assert out["error"][2] > out["error"][4]  # each rank's best restart: more components fit better
    R, W, A = out["rank"], tensor.sizes["window"], tensor.sizes["animal"]
    assert out["found"].shape == (R, tensor.sizes["neuron"]) and out["found"].dtype == bool
    assert out["timecourse"].shape == (R, W) and out["animal_timecourse"].shape == (R, W, A)
    np.testing.assert_allclose(out["timecourse"], out["animal_timecourse"].mean(2))
    planted = truth["membership"].sel(neuron=[str(n) for n in tensor["neuron"].values]).values.astype(bool)
    assert match_communities(out["found"], planted)[0].mean() > 0.8


def test_nmf_stable_rank_says_when_no_rank_is_stable(small):
    """Affinities with no structure: the restarts' communities disagree, no rank reaches a threshold of 1, the
    smallest rank is returned and flagged."""
    _, tensor = small
    noise = tensor.copy()
    rng = np.random.default_rng(0)
    noise["affinity"] = noise["affinity"].copy(data=rng.uniform(0, 1, noise["affinity"].shape))
    out = nmf_stable_rank(noise, ranks=[2, 3], restarts=3, threshold=1.0)
    assert out["rank"] == 2 and not out["is_stable"] and min(out["stability"].values()) < 1.0


def test_nmf_stable_rank_bad_settings_are_one_line(small):
    _, tensor = small
    for kw in ({"restarts": 0}, {"ranks": []}, {"threshold": 1.5}):
        with pytest.raises(ValueError, match="nmf_stable_rank: need ranks >= 1") as e:
            nmf_stable_rank(tensor, **kw)
        assert "\n" not in str(e.value)
