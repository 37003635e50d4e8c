"""Rank of the dynamic connectome by speckled cross-validation (``rank_selection: cv``, issue 16), the same rule for
the own-rank NMF baseline, and the simulator's options for communities co-active at the same time with
animal-specific strengths (``tonic_communities``, ``animal_strength``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from brainpipe.errors import ConfigError
from brainpipe.evaluate.connectome_baselines import nmf_stable_rank
from brainpipe.models.connectome import DynamicConnectome, cv_folds, cv_rank_errors, one_se_rank
from brainpipe.models.ncp import masked_ncp_hals
from brainpipe.simulate import simulate


def _planted(rank: int = 2, n_neurons: int = 12, n_windows: int = 24, noise: float = 0.02, seed: int = 0):
    """An affinity tensor of ``rank`` planted communities (disjoint blocks of neurons, each co-active in its own
    run of windows, animals with strengths of their own) with multiplicative noise (no offset: a constant
    background would be a component of its own); one pair missing in one animal."""
    rng = np.random.default_rng(seed)
    ii, jj = np.triu_indices(n_neurons, k=1)
    size = n_neurons // (rank + 1)
    pair = np.stack([((ii // size) == r) & ((jj // size) == r) for r in range(rank)], 1).astype(float)
    time = np.zeros((n_windows, rank))
    for r in range(rank):
        time[r * n_windows // rank : (r + 1) * n_windows // rank, r] = 1.0
    animal = rng.uniform(0.5, 1.5, (3, rank))
    X = np.einsum("pr,wr,ar->pwa", pair, time, animal)
    X = np.maximum(X * (1.0 + noise * rng.standard_normal(X.shape)), 0.0)  # noise on the structure, no offset
    mask = np.ones((len(ii), 3), dtype=np.int8)
    mask[0, 1] = 0
    X[0, :, 1] = 0.0
    return xr.Dataset(
        {
            "affinity": (("pair", "window", "animal"), X),
            "mask": (("pair", "animal"), mask),
            "pair_i": ("pair", ii),
            "pair_j": ("pair", jj),
        },
        coords={
            "pair": np.arange(len(ii)),
            "window": np.arange(n_windows),
            "animal": ["a0", "a1", "a2"],
            "neuron": [f"n{k:03d}" for k in range(n_neurons)],
            "time": ("window", np.arange(n_windows) * 2.5 + 2.5, {"units": "s"}),
        },
        attrs={"window_frames": 50, "frame_rate_hz": 10.0, "affinity": "softthresh_dcorr"},
    )


def test_cv_folds_deal_every_entry_into_one_fold_by_seed():
    f = cv_folds(40, 10, 3, 3, 0, seed=1).numpy()
    assert f.shape == (40, 10, 3) and set(np.unique(f)) == {0, 1, 2}
    assert 0.25 < (f == 0).mean() < 0.42
    np.testing.assert_array_equal(f, cv_folds(40, 10, 3, 3, 0, seed=1).numpy())
    assert not np.array_equal(f, cv_folds(40, 10, 3, 3, 0, seed=2).numpy())
    blk = cv_folds(40, 10, 3, 3, 4, seed=1).numpy()  # runs of 4 windows (the last one 2) share a fold
    assert (
        (blk[:, 1:4] == blk[:, :1]).all()
        and (blk[:, 5:8] == blk[:, 4:5]).all()
        and (blk[:, 9] == blk[:, 8]).all()
    )


def test_one_se_rank_takes_the_smallest_rank_within_one_se_of_the_lowest():
    e = {1: np.array([0.9, 0.92, 0.91]), 2: np.array([0.50, 0.52, 0.51]), 3: np.array([0.495, 0.515, 0.505])}
    R, mean, se = one_se_rank(e, 1.0)
    assert R == 2 and mean[3] == pytest.approx(0.505) and se[3] == pytest.approx(0.01 / np.sqrt(3))
    assert one_se_rank(e, 0.0)[0] == 3  # no slack: the lowest mean
    assert (
        one_se_rank({2: np.array([0.5, np.nan]), 3: np.array([0.6, 0.6])}, 1.0)[0] == 2
    )  # NaN folds ignored


def test_cv_rank_errors_score_only_hidden_observed_entries():
    X = _planted()
    Xt = torch.as_tensor(X["affinity"].values, dtype=torch.float64)
    seen = torch.broadcast_to(torch.as_tensor(X["mask"].values.astype(bool))[:, None, :], Xt.shape)
    folds = cv_folds(*Xt.shape, 2, 0, seed=0)
    calls = []

    def fit(Y, R, train, k):
        calls.append((R, k, int(train.sum()), bool((train & ~seen).any())))
        return masked_ncp_hals(Y, R, train, n_iter_max=50, seed=k)

    err = cv_rank_errors(Xt, seen, [1, 2], folds, fit)
    assert sorted(err) == [1, 2] and all(e.shape == (2,) for e in err.values())
    assert not any(c[3] for c in calls)  # never trained on an unobserved entry
    assert {c[2] for c in calls if c[1] == 0} == {int((seen & (folds != 0)).sum())}
    assert err[2].mean() < 0.5 * err[1].mean()  # the planted rank predicts the hidden entries


def test_cv_rule_picks_the_planted_rank_and_is_recorded():
    X = _planted(rank=2)
    model = DynamicConnectome(ranks=[1, 2, 3, 4], restarts=2, device="cpu", rank_selection="cv").fit(X)
    assert model.rank_ == 2 and sorted(model.heldout_error_) == [1, 2, 3, 4]
    assert model.heldout_error_[1] > 2 * model.heldout_error_[2]
    fit = model.to_dataset(X)
    np.testing.assert_allclose(fit["rank_heldout_se"].values, [model.heldout_se_[r] for r in (1, 2, 3, 4)])
    assert "3-fold cross-validation" in fit.attrs["rank_selection"]
    back = DynamicConnectome.from_dataset(fit)
    assert back.heldout_error_ == pytest.approx(model.heldout_error_)
    assert back.heldout_se_ == pytest.approx(model.heldout_se_)


@pytest.mark.parametrize(("kw", "key"), [({"cv_folds": 1}, "cv_folds"), ({"cv_se": -1.0}, "cv_se")])
def test_cv_bad_settings_are_one_line(kw, key):
    with pytest.raises(ConfigError, match=key) as e:
        DynamicConnectome(rank_selection="cv", device="cpu", **kw).fit(_planted())
    assert "\n" not in str(e.value)


def test_nmf_own_rank_by_the_same_cross_validation():
    X = _planted(rank=2)
    out = nmf_stable_rank(X, ranks=[1, 2, 3], restarts=2, rank_rule="cv")
    assert out["rank"] == 2 and sorted(out["cv_error"]) == [1, 2, 3]
    assert out["cv_error"][1] > 2 * out["cv_error"][2] and sorted(out["cv_se"]) == [1, 2, 3]
    with pytest.raises(ValueError, match="nmf_stable_rank: need rank_rule stability or cv") as e:
        nmf_stable_rank(X, rank_rule="heldout")
    assert "\n" not in str(e.value)


def test_tonic_community_and_animal_strengths():
    base = {"n_neurons": 20, "n_frames": 600, "n_animals": 3, "community_size": 6, "tonic_communities": 1}
    sims = [
        simulate("calcium_communities", {**base, "animal": a, "animal_strength": 0.5}, seed=4)
        for a in range(3)
    ]
    t = sims[0].truth
    assert float(t["epoch_start_s"][0]) == 0.0 and float(t["epoch_stop_s"][0]) == 60.0  # the whole session
    assert float(t["epoch_start_s"][1]) == 20.0 and float(t["epoch_stop_s"][1]) == 40.0  # the others in turn
    s = t["community_strength"].values
    assert s.shape == (3, 3) and ((s >= 0.5) & (s <= 1.5)).all() and s.std() > 0.05
    np.testing.assert_array_equal(s, sims[2].truth["community_strength"].values)  # one draw for the study
    # the tonic community's members fire together in every epoch
    members = np.flatnonzero(t["membership"].values[:, 0])
    cells = [f"n{k:03d}" for k in members if f"n{k:03d}" in t["cell"].values]
    spikes = t["spikes"].sel(cell=cells).values
    joint = (spikes > 0).sum(1) >= 3
    assert all(joint[lo:hi].sum() >= 3 for lo, hi in ((0, 200), (200, 400), (400, 600)))
    plain = simulate("calcium_communities", {**base, "tonic_communities": 0, "animal": 0}, seed=4).truth
    assert (plain["community_strength"].values == 1.0).all()
    assert float(plain["epoch_stop_s"][0]) == 20.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tonic_communities": 4}, "need 0 <= tonic_communities <= n_communities"),
        ({"animal_strength": 1.0}, r"animal_strength must be in \[0, 1\)"),
    ],
)
def test_bad_coactivity_options_are_one_line(params, message):
    with pytest.raises(ConfigError, match=f"^simulator 'calcium_communities': {message}$"):
        simulate("calcium_communities", {"n_frames": 300, **params}, seed=0)


def test_report_names_the_cross_validated_rank_when_it_is_unstable():
    from brainpipe.evaluate.connectome import connectome_metrics_dataset
    from brainpipe.report.calcium import verdict_html

    m = connectome_metrics_dataset({"community_jaccard_mean_vs_best_baseline": 0.0}, None, "s")
    fit = xr.Dataset(attrs={"rank_is_stable": 0, "selected_rank": 5, "stability_threshold": 0.95})
    fit.attrs["rank_selection"] = (
        "smallest rank with mean held-out error within 1.0 SE of the lowest (3-fold cross-validation of the "
        "observed entries); its stability is below 0.95"
    )
    html = verdict_html(m, fit)
    assert "chosen on cross-validated held-out entries (5)" in html and "fibres" not in html
