"""``calcium_communities`` with ``shared_event_times``: the default output is unchanged, and with the option a
community's shared events fall at the same frames in every animal that expresses it (issue 16, twelfth session)."""

from __future__ import annotations

import numpy as np
import pytest

from brainpipe.simulate import simulate

#: figures of the simulator's output before the option existed (seed 7, 600 frames): sum, sum of squares, nonzeros
BEFORE = {
    ("default", 1, "spikes"): (536.4397313952279, 966.8384007620014, 404),
    ("default", 1, "fluorescence"): (3249394.4013881134, 543163996.8821914, 21600),
    ("default", 1, "neuropil"): (1260275.6705877786, 74550053.21002413, 21600),
    ("default", 1, "behaviour"): (9193.56437844842, 92206.16750113541, 1717),
    ("tonic", 2, "spikes"): (417.9092585067412, 666.2412408648729, 321),
    ("tonic", 2, "fluorescence"): (1753320.4062105946, 311741847.46190727, 10800),
    ("differ", 0, "spikes"): (326.5713623864784, 551.3764094937608, 292),
    ("differ", 0, "fluorescence"): (3155141.9340430857, 486915750.30566174, 21600),
}
CFGS = {
    "default": {"n_frames": 600},
    "tonic": {
        "n_neurons": 20,
        "n_frames": 600,
        "community_size": 6,
        "tonic_communities": 1,
        "animal_strength": 0.5,
    },
    "differ": {
        "n_frames": 600,
        "overlap": 3,
        "specific_communities": 1,
        "epoch_jitter": 0.2,
        "shuffle_epochs": True,
    },
}


@pytest.mark.parametrize("explicit", [False, True])
def test_default_output_unchanged(explicit):
    extra = {"shared_event_times": False} if explicit else {}
    for (cfg, animal, var), (total, squares, nonzero) in BEFORE.items():
        sim = simulate("calcium_communities", {**CFGS[cfg], **extra, "animal": animal}, seed=7)
        v = (sim.truth if var == "spikes" else sim.data)[var].values
        got = [v.sum(), (v**2).sum()]
        np.testing.assert_allclose(got, [total, squares], rtol=1e-11, err_msg=str((cfg, var)))
        assert int((v != 0).sum()) == nonzero


def _event_frames(truth, community: int) -> np.ndarray:
    """Frames where any of the community's present members has a planted spike (no private events, no jitter)."""
    members = np.flatnonzero(truth["membership"].values[:, community])
    cells = [f"n{k:03d}" for k in members if f"n{k:03d}" in truth["cell"].values]
    return np.flatnonzero((truth["spikes"].sel(cell=cells).values > 0).any(1))


QUIET = {"n_frames": 900, "private_rate_hz": 0.0, "jitter_frames": 0, "participation": 1.0}


def _study(params: dict, seed: int = 3, n_animals: int = 3):
    return [
        simulate("calcium_communities", {**params, "n_animals": n_animals, "animal": a}, seed=seed).truth
        for a in range(n_animals)
    ]


def test_events_coincide_across_animals():
    shared = _study({**QUIET, "shared_event_times": True})
    own = _study(QUIET)
    for c in range(3):
        ev = [_event_frames(t, c) for t in shared]
        assert ev[0].size >= 5
        for e in ev[1:]:
            np.testing.assert_array_equal(e, ev[0])
        # the default: each animal its own draws
        assert not np.array_equal(_event_frames(own[0], c), _event_frames(own[1], c))
    # a cell both animals have: spikes at the same frames, with each animal's own amplitudes
    cell = sorted(set(shared[0]["cell"].values) & set(shared[1]["cell"].values))[0]
    s0, s1 = (t["spikes"].sel(cell=cell).values for t in shared[:2])
    np.testing.assert_array_equal(s0 > 0, s1 > 0)
    assert (s0 > 0).any() and not np.allclose(s0, s1)


def test_events_coincide_where_jittered_epochs_overlap():
    """With ``epoch_jitter`` the events lie on one session clock: each animal keeps those inside its own epoch."""
    study = _study({**QUIET, "epoch_jitter": 0.3, "shared_event_times": True})
    start = study[0]["animal_epoch_start_s"].values * 10
    stop = study[0]["animal_epoch_stop_s"].values * 10
    assert np.ptp(start[:, 1]) > 5  # the epochs really differ between animals
    for c in range(3):
        lo, hi = start[:, c].max(), stop[:, c].min()
        ev = [_event_frames(t, c) for t in study]
        for a, e in enumerate(ev):
            assert ((e >= start[a, c]) & (e < stop[a, c])).all()
        inside = [e[(e >= lo) & (e < hi)] for e in ev]
        assert inside[0].size >= 3
        for e in inside[1:]:
            np.testing.assert_array_equal(e, inside[0])


def test_events_nested_with_animal_strengths():
    """With ``animal_strength`` a weaker animal's events are a subset of a stronger one's (one uniform draw)."""
    study = _study({**QUIET, "tonic_communities": 3, "animal_strength": 0.5, "shared_event_times": True})
    strength = study[0]["community_strength"].values
    for c in range(3):
        order = np.argsort(strength[:, c])
        ev = [set(_event_frames(study[a], c).tolist()) for a in order]
        assert ev[0] <= ev[1] <= ev[2] and len(ev[0]) >= 3
        assert len(ev[2]) > len(ev[0])  # the rate multiplier still acts on the count


def test_specific_community_only_in_its_animal():
    study = _study({**QUIET, "specific_communities": 1, "shared_event_times": True})
    assert _event_frames(study[2], 2).size > 0
    assert _event_frames(study[0], 2).size == 0 and _event_frames(study[1], 2).size == 0
