"""The baseline coupled Poisson GLM (recovery on planted data, alpha selection, serialisation) and metrics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import xarray as xr
from sklearn.metrics import roc_auc_score

from brainpipe.data import check, read, write
from brainpipe.errors import InputError
from brainpipe.evaluate import METRICS, auroc, bits_per_spike, glm_metrics, metrics_dataset
from brainpipe.models import PoissonGLM, poisson_log_likelihood
from brainpipe.preprocess import bin_spikes
from brainpipe.simulate import simulate


@pytest.fixture(scope="module")
def planted():
    """8 coupled neurons, 300 s at 10 ms, fitted with the default GLM (a few seconds)."""
    sim = simulate("poisson_glm_network", {"n_neurons": 8, "duration_s": 300.0}, seed=1)
    counts = bin_spikes(sim.data, 0.01)
    model = PoissonGLM().fit(counts)
    return sim, counts, model


@pytest.fixture(scope="module")
def tiny_model(tiny_counts):
    return PoissonGLM().fit(tiny_counts)


# -- PoissonGLM --------------------------------------------------------------------------------------------------
def test_glm_recovers_planted_coupling(planted):
    sim, _, model = planted
    W_true = sim.truth["coupling"].values
    connected = sim.truth["connected"].values.astype(bool)
    off = ~np.eye(W_true.shape[0], dtype=bool)
    assert connected[off].sum() >= 3 and (~connected[off]).sum() >= 3  # both classes present
    r = np.corrcoef(W_true[off], model.coupling_[off])[0, 1]
    assert r >= 0.8, r
    assert roc_auc_score(connected[off], np.abs(model.coupling_[off])) >= 0.9
    # the refractory self-history term is negative for every neuron
    assert np.all(np.diag(model.coupling_) < -0.5)
    # behaviour weights: driven neurons recovered
    beta_true = sim.truth["behaviour_weight"].values[:, 0]
    assert np.corrcoef(beta_true, model.behaviour_weight_[:, 0])[0, 1] >= 0.9


def test_glm_fitted_attributes(planted):
    sim, counts, model = planted
    n = counts.sizes["unit"]
    assert model.coupling_.shape == (n, n) and model.intercept_.shape == (n,)
    assert model.behaviour_weight_.shape == (n, 1)
    assert list(model.units_) == list(sim.data["unit"].values)
    assert list(model.behaviour_vars_) == ["speed"]
    assert model.bin_width_s_ == 0.01 and model.alpha_ == 1e-4
    # baselines near the planted ones (log Hz): intercept is a per-bin log mean
    np.testing.assert_allclose(
        model.intercept_ - np.log(0.01), sim.truth["log_baseline_rate"].values, atol=0.5
    )


def test_glm_beats_homogeneous_null_on_test_split(planted):
    _, counts, model = planted
    y = counts["counts"].values.astype(float)
    split = counts["split"].values
    te, tr = split == 2, split == 0
    mu = model.predict(counts)
    assert mu.shape == y.shape and np.all(mu > 0)
    ll_model = scipy.stats.poisson.logpmf(y[te], mu[te]).sum()
    ll_null = scipy.stats.poisson.logpmf(y[te], np.broadcast_to(y[tr].mean(axis=0), y[te].shape)).sum()
    expected_bits = (ll_model - ll_null) / y[te].sum() / np.log(2)
    bits = bits_per_spike(counts, mu)
    assert bits == pytest.approx(expected_bits, rel=1e-9)
    assert bits > 0.1, bits
    assert model.score(counts, "test") == pytest.approx(ll_model / y[te].sum(), rel=1e-9)


def test_bits_per_spike_of_the_null_is_zero(tiny_counts):
    y = tiny_counts["counts"].values.astype(float)
    null = np.broadcast_to(y[tiny_counts["split"].values == 0].mean(axis=0), y.shape)
    assert bits_per_spike(tiny_counts, null) == pytest.approx(0.0, abs=1e-12)
    assert bits_per_spike(tiny_counts, null * 3.0) < 0


def test_glm_metrics_on_planted_data(planted):
    sim, counts, model = planted
    fit = model.to_dataset()
    m = glm_metrics(fit, counts, sim.truth)
    assert set(m) == {
        "test_bits_per_spike",
        "oracle_test_bits_per_spike",
        "coupling_corr",
        "coupling_auroc",
        "coupling_sign_accuracy",
        "history_weight_mae",
        "behaviour_weight_corr",
    }
    assert set(m) <= set(METRICS)  # every metric has a registered direction and description
    W_true, W_fit = sim.truth["coupling"].values, model.coupling_
    off = ~np.eye(W_true.shape[0], dtype=bool)
    connected = sim.truth["connected"].values.astype(bool)
    assert m["coupling_corr"] == pytest.approx(np.corrcoef(W_true[off], W_fit[off])[0, 1])
    assert m["coupling_auroc"] == pytest.approx(roc_auc_score(connected[off], np.abs(W_fit[off])))
    assert m["history_weight_mae"] == pytest.approx(np.mean(np.abs(np.diag(W_true) - np.diag(W_fit))))
    assert m["history_weight_mae"] < 0.5
    assert m["coupling_sign_accuracy"] >= 0.8
    assert m["test_bits_per_spike"] == pytest.approx(bits_per_spike(counts, model.predict(counts)))
    # the planted model is the ceiling; the fit comes close to it
    assert m["oracle_test_bits_per_spike"] > 0.1
    assert m["test_bits_per_spike"] <= m["oracle_test_bits_per_spike"] + 0.02
    assert m["test_bits_per_spike"] >= 0.8 * m["oracle_test_bits_per_spike"]
    assert glm_metrics(fit, counts) == {"test_bits_per_spike": m["test_bits_per_spike"]}


def test_alpha_list_picks_best_validation_score(tiny_counts, tiny_model):
    alphas = [10.0, 1e-4, 1e-2]  # the best is not the first
    model = PoissonGLM(alpha=alphas).fit(tiny_counts)
    assert sorted(model.val_scores_) == sorted(alphas)
    best = max(model.val_scores_, key=model.val_scores_.get)
    assert model.alpha_ == best
    assert model.alpha_ != alphas[0]
    # the kept model is refitted on train with the chosen alpha: its validation score is the one recorded
    assert model.score(tiny_counts, "validation") == pytest.approx(model.val_scores_[best], rel=1e-9)
    # and the recorded score of another alpha is what a model fitted with that alpha alone gets
    strong = PoissonGLM(alpha=10.0).fit(tiny_counts)
    assert strong.score(tiny_counts, "validation") == pytest.approx(model.val_scores_[10.0], rel=1e-9)
    assert model.val_scores_[10.0] < model.val_scores_[best]
    if best == 1e-4:
        np.testing.assert_allclose(model.coupling_, tiny_model.coupling_, rtol=1e-9, atol=1e-12)


def test_single_alpha_skips_validation(tiny_model):
    assert tiny_model.val_scores_ == {} and tiny_model.alpha_ == 1e-4


def test_to_from_dataset_round_trip(tiny_model, tiny_counts, tmp_path, provenance):
    ds = tiny_model.to_dataset()
    assert check(ds, "model_fit", require_provenance=False) == []
    assert ds.attrs["role"] == "fit" and ds.attrs["model"] == "poisson_glm"
    again = PoissonGLM.from_dataset(ds)
    np.testing.assert_allclose(again.predict(tiny_counts), tiny_model.predict(tiny_counts), rtol=1e-12)
    # through a file too
    back = read(write(ds, tmp_path / "fit.nc", "model_fit", provenance("fit")), "model_fit")
    from_file = PoissonGLM.from_dataset(back)
    np.testing.assert_allclose(from_file.predict(tiny_counts), tiny_model.predict(tiny_counts), rtol=1e-12)
    assert from_file.history_tau_s == tiny_model.history_tau_s and from_file.alpha_ == tiny_model.alpha_
    assert list(from_file.units_) == list(tiny_model.units_)
    assert list(from_file.behaviour_vars_) == ["speed"]
    xr.testing.assert_identical(from_file.to_dataset(), ds)


def test_round_trip_without_behaviour(tiny_counts, tmp_path, provenance):
    model = PoissonGLM(use_behaviour=False, max_iter=50).fit(tiny_counts)
    assert model.behaviour_weight_.shape == (tiny_counts.sizes["unit"], 0)
    back = read(write(model.to_dataset(), tmp_path / "fit.nc", "model_fit", provenance("fit")), "model_fit")
    again = PoissonGLM.from_dataset(back)
    assert again.use_behaviour is False
    np.testing.assert_allclose(again.predict(tiny_counts), model.predict(tiny_counts), rtol=1e-12)


def test_predict_with_mismatched_covariates(tiny_model, tiny_counts):
    fewer_units = tiny_counts.isel(unit=slice(0, 4))
    with pytest.raises(InputError, match="units"):
        tiny_model.predict(fewer_units)
    no_behaviour = tiny_counts.drop_vars(["behaviour", "behaviour_var"])
    with pytest.raises(InputError, match="covariates"):
        tiny_model.predict(no_behaviour)


def test_predict_with_other_unit_labels(tiny_model, tiny_counts):
    renamed = tiny_counts.assign_coords(unit=[f"x{i}" for i in range(tiny_counts.sizes["unit"])])
    with pytest.raises(InputError, match="unit"):
        tiny_model.predict(renamed)
    reordered = tiny_counts.isel(unit=slice(None, None, -1))
    with pytest.raises(InputError, match="unit"):
        tiny_model.predict(reordered)


def test_fit_needs_counts_and_split(tiny_counts):
    with pytest.raises(InputError, match="spike_counts"):
        PoissonGLM().fit(tiny_counts.drop_vars("split"))


def test_silent_unit_gets_rate_floor(tiny_counts):
    counts = tiny_counts.copy(deep=True)
    counts["counts"][:, 0] = 0
    model = PoissonGLM(use_behaviour=False, max_iter=50).fit(counts)
    assert model.intercept_[0] == pytest.approx(np.log(1e-6))
    np.testing.assert_array_equal(model.coupling_[0], 0.0)
    assert np.all(model.predict(counts)[:, 0] < 1e-5)


# -- metric functions --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [10, 57, 400])
def test_auroc_matches_sklearn_with_ties(rng, n):
    labels = rng.random(n) < 0.3
    labels[:2] = [True, False]  # both classes present
    scores = rng.integers(0, 5, n).astype(float)  # many ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), rel=1e-12)
    continuous = rng.standard_normal(n) + labels
    assert auroc(labels, continuous) == pytest.approx(roc_auc_score(labels, continuous), rel=1e-12)


def test_auroc_edge_cases():
    assert auroc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert auroc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert auroc([1, 0], [0.5, 0.5]) == 0.5
    assert np.isnan(auroc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert np.isnan(auroc([0, 0], [0.1, 0.2]))


def test_poisson_log_likelihood_matches_scipy(rng):
    mean = rng.uniform(0.01, 5.0, (50, 3))
    counts = rng.poisson(mean)
    expected = scipy.stats.poisson.logpmf(counts, mean).sum()
    assert poisson_log_likelihood(counts, mean) == pytest.approx(expected, rel=1e-12)
    # a zero mean is floored, not -inf/NaN, where the count is zero
    assert np.isfinite(poisson_log_likelihood(np.zeros(3), np.zeros(3)))
    assert poisson_log_likelihood(np.zeros(3), np.zeros(3)) == pytest.approx(-3e-12, abs=1e-15)


def test_metrics_dataset_pass_miss_no_bar(tmp_path, provenance):
    values = {
        "coupling_corr": 0.9,  # >= 0.8: pass
        "coupling_auroc": 0.85,  # >= 0.9: miss
        "history_weight_mae": 0.1,  # <= 0.2: pass
        "behaviour_weight_corr": float("nan"),  # NaN: miss
        "test_bits_per_spike": 0.3,  # no bar
        "my_metric": 2.0,  # not a known metric: ">=" 2.0, met exactly
    }
    bars = {
        "coupling_corr": 0.8,
        "coupling_auroc": 0.9,
        "history_weight_mae": 0.2,
        "behaviour_weight_corr": 0.5,
        "my_metric": 2.0,
        "unused_bar": 1.0,
    }
    ds = metrics_dataset(values, bars, model="poisson_glm", dataset="toy")
    assert list(ds["metric"].values) == list(values)
    assert dict(zip(ds["metric"].values, ds["passed"].values.tolist(), strict=True)) == {
        "coupling_corr": 1,
        "coupling_auroc": 0,
        "history_weight_mae": 1,
        "behaviour_weight_corr": 0,
        "test_bits_per_spike": -1,
        "my_metric": 1,
    }
    assert list(ds["bar_op"].values) == [">=", ">=", "<=", ">=", "", ">="]
    bar = ds["bar"].values
    np.testing.assert_array_equal(bar[[0, 1, 2, 3, 5]], [0.8, 0.9, 0.2, 0.5, 2.0])
    assert np.isnan(bar[4])
    assert ds["description"].values[2] == METRICS["history_weight_mae"].description
    assert ds["description"].values[5] == ""
    assert ds.attrs == {"model": "poisson_glm", "dataset": "toy"}
    back = read(write(ds, tmp_path / "m.nc", "metrics", provenance("evaluate")), "metrics")
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())


@pytest.mark.parametrize(
    ("name", "value", "bar", "passed"),
    [
        ("history_weight_mae", 0.3, 0.2, 0),  # "<=" metric above its bar: miss
        ("history_weight_mae", 0.2, 0.2, 1),  # equal: pass
        ("coupling_corr", 0.79, 0.8, 0),
        ("coupling_corr", float("inf"), 0.8, 0),  # non-finite: miss
        ("history_weight_mae", float("nan"), 0.2, 0),
    ],
)
def test_metrics_dataset_single(name, value, bar, passed):
    ds = metrics_dataset({name: value}, {name: bar}, model="m", dataset="d")
    assert int(ds["passed"].values[0]) == passed
    assert ds["bar_op"].values[0] == METRICS[name].op


def test_metrics_dataset_without_bars():
    ds = metrics_dataset({"coupling_corr": 0.5}, None, model="m", dataset="d")
    assert ds["passed"].values.tolist() == [-1] and ds["bar_op"].values.tolist() == [""]
    assert check(ds, "metrics", require_provenance=False) == []
