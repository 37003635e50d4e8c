"""The simulator (determinism, planted structure, parameter checks) and spike preprocessing (binning, split)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from brainpipe.data import check
from brainpipe.errors import ConfigError
from brainpipe.preprocess import bin_spikes, time_block_split
from brainpipe.simulate import GENERATORS, PoissonGLMNetworkParams, get_generator, simulate
from brainpipe.simulate.glm_network import exp_history, ou_process

DT = 0.01


# -- simulator -------------------------------------------------------------------------------------------------
def test_same_seed_same_output(tiny_sim, tiny_spec):
    again = simulate("poisson_glm_network", tiny_spec["params"], seed=tiny_spec["seed"])
    xr.testing.assert_identical(again.data, tiny_sim.data)
    xr.testing.assert_identical(again.truth, tiny_sim.truth)


def test_different_seed_different_output(tiny_sim, tiny_spec):
    other = simulate("poisson_glm_network", tiny_spec["params"], seed=tiny_spec["seed"] + 1)
    assert not np.array_equal(
        other.truth["log_baseline_rate"].values, tiny_sim.truth["log_baseline_rate"].values
    )
    n = min(other.data.sizes["spike"], tiny_sim.data.sizes["spike"])
    assert not np.array_equal(other.data["spike_time"].values[:n], tiny_sim.data["spike_time"].values[:n])


def test_simulation_passes_its_contracts(tiny_sim):
    assert tiny_sim.data_kind == "spike_times" and tiny_sim.truth_kind == "model_fit"
    assert check(tiny_sim.data, "spike_times", require_provenance=False) == []
    assert check(tiny_sim.truth, "model_fit", require_provenance=False) == []
    assert tiny_sim.truth.attrs["role"] == "truth"


def test_simulation_shapes_and_window(tiny_sim, tiny_spec):
    d = tiny_sim.data
    n = tiny_spec["params"]["n_neurons"]
    assert d.sizes["unit"] == n and list(d["unit"].values) == [f"n{i:03d}" for i in range(n)]
    assert d.attrs["t_start_s"] == 0.0 and d.attrs["t_stop_s"] == pytest.approx(
        tiny_spec["params"]["duration_s"]
    )
    t = d["spike_time"].values
    assert d.sizes["spike"] > 100
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() < tiny_spec["params"]["duration_s"]
    n_steps = round(tiny_spec["params"]["duration_s"] / DT)
    np.testing.assert_allclose(d["behaviour_time"].values, (np.arange(n_steps) + 0.5) * DT)
    speed = d["behaviour"].values[:, 0]
    assert abs(speed.mean()) < 1e-9 and speed.std() == pytest.approx(1.0, abs=1e-6)


def test_planted_structure(tiny_sim, tiny_spec):
    p = PoissonGLMNetworkParams(**tiny_spec["params"])
    tr = tiny_sim.truth
    W, C = tr["coupling"].values, tr["connected"].values.astype(bool)
    n = W.shape[0]
    np.testing.assert_array_equal(np.diag(W), np.full(n, p.self_history_weight))
    off = ~np.eye(n, dtype=bool)
    assert not C[~off].any()
    np.testing.assert_array_equal(C[off], W[off] != 0)
    assert np.all((np.abs(W[C]) >= p.weight_min) & (np.abs(W[C]) <= p.weight_max))
    rates = np.exp(tr["log_baseline_rate"].values)
    assert np.all((rates >= p.rate_min_hz) & (rates <= p.rate_max_hz))
    beta = tr["behaviour_weight"].values[:, 0]
    assert np.count_nonzero(beta) == round(p.behaviour_fraction * n)
    assert np.all(np.abs(beta[beta != 0]) <= p.behaviour_weight_max)
    assert tr.attrs["dt_s"] == p.dt_s and tr.attrs["history_tau_s"] == p.history_tau_s


def test_firing_rates_in_configured_range(tiny_sim, tiny_spec):
    n = tiny_spec["params"]["n_neurons"]
    rates = np.bincount(tiny_sim.data["spike_unit"].values, minlength=n) / tiny_spec["params"]["duration_s"]
    # coupling and behaviour move rates around the planted baseline (2-10 Hz), but not by much
    assert np.all(rates > 1.0) and np.all(rates < 20.0), rates


def test_uncoupled_network_fires_at_planted_rates():
    params = {
        "n_neurons": 6,
        "duration_s": 120.0,
        "connection_density": 0.0,
        "behaviour_fraction": 0.0,
        "self_history_weight": 0.0,
        "rate_min_hz": 4.0,
        "rate_max_hz": 8.0,
    }
    sim = simulate("poisson_glm_network", params, seed=11)
    lam = np.exp(sim.truth["log_baseline_rate"].values)
    assert np.all((lam >= 4.0) & (lam <= 8.0))
    rates = np.bincount(sim.data["spike_unit"].values, minlength=6) / 120.0
    z = (rates - lam) / np.sqrt(lam / 120.0)  # homogeneous Poisson: count ~ Poisson(lam * T)
    assert np.all(np.abs(z) < 4.0), z


def test_unknown_parameter_lists_allowed_names():
    with pytest.raises(ConfigError) as info:
        simulate("poisson_glm_network", {"n_neurons": 5, "n_neuron": 5, "durationS": 3})
    msg = str(info.value)
    assert "unknown parameter(s) durationS, n_neuron" in msg
    assert "allowed:" in msg and "duration_s" in msg and "connection_density" in msg and "n_neurons" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"n_neurons": 1}, "n_neurons must be >= 2"),
        ({"duration_s": -1.0}, "duration_s and dt_s must be > 0"),
        ({"duration_s": 0.05}, "at least 10 steps"),
        ({"rate_min_hz": 12.0, "rate_max_hz": 10.0}, "rate_min_hz <= rate_max_hz"),
        ({"connection_density": 1.5}, "connection_density must be in [0, 1]"),
        ({"weight_min": 2.0}, "weight_min <= weight_max"),
        ({"history_tau_s": 0.0}, "time constants must be > 0"),
        ({"max_rate_hz": 5.0}, "max_rate_hz must exceed rate_max_hz"),
    ],
)
def test_invalid_parameter_value(params, fragment):
    with pytest.raises(ConfigError, match="simulator 'poisson_glm_network'") as info:
        simulate("poisson_glm_network", params)
    assert fragment in str(info.value)


def test_unknown_simulator():
    with pytest.raises(ConfigError, match="unknown simulator 'nope'.*poisson_glm_network"):
        get_generator("nope")
    assert "poisson_glm_network" in GENERATORS
    assert GENERATORS["poisson_glm_network"].modality == "spikes"


def test_exp_history_matches_loop(rng):
    counts = rng.poisson(0.3, (200, 4))
    dt, tau = 0.01, 0.03
    a = np.exp(-dt / tau)
    expected = np.zeros((200, 4))
    for t in range(1, 200):
        expected[t] = a * expected[t - 1] + counts[t - 1]
    got = exp_history(counts, dt, tau)
    assert got.shape == counts.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[0], 0.0)
    np.testing.assert_array_equal(exp_history(counts[:1], dt, tau), np.zeros((1, 4)))


def test_ou_process_is_standardised_and_correlated(rng):
    x = ou_process(5000, 0.01, 0.5, rng)
    assert abs(x.mean()) < 1e-12 and x.std() == pytest.approx(1.0)
    assert np.corrcoef(x[:-1], x[1:])[0, 1] > 0.95  # lag-1 correlation exp(-0.02) ~ 0.98


# -- binning ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bin_width", [0.01, 0.05, 0.25])
def test_bin_spikes_conserves_spikes(tiny_sim, bin_width, tiny_spec):
    counts = bin_spikes(tiny_sim.data, bin_width)
    n = tiny_spec["params"]["n_neurons"]
    assert check(counts, "spike_counts", require_provenance=False) == []
    assert counts.sizes["time"] == round(tiny_spec["params"]["duration_s"] / bin_width)
    per_unit = np.bincount(tiny_sim.data["spike_unit"].values, minlength=n)
    np.testing.assert_array_equal(counts["counts"].values.sum(axis=0), per_unit)
    assert counts.attrs["bin_width_s"] == bin_width
    np.testing.assert_allclose(counts["time"].values, (np.arange(counts.sizes["time"]) + 0.5) * bin_width)
    np.testing.assert_array_equal(counts["unit"].values, tiny_sim.data["unit"].values)


def test_bin_spikes_drops_last_partial_bin(tiny_sim):
    bw = 0.7  # 60 s / 0.7 s = 85.7 bins: 85 kept, spikes after 59.5 s dropped
    counts = bin_spikes(tiny_sim.data, bw)
    assert counts.sizes["time"] == 85
    t = tiny_sim.data["spike_time"].values
    assert int(counts["counts"].values.sum()) == int(np.sum(t < 85 * bw))
    assert int(counts["counts"].values.sum()) < t.size


def test_bins_of_simulator_dt_reproduce_per_step_counts(tiny_sim, tiny_counts, tiny_spec):
    d = tiny_sim.data
    n_steps, n = round(tiny_spec["params"]["duration_s"] / DT), tiny_spec["params"]["n_neurons"]
    steps = np.floor(d["spike_time"].values / DT).astype(int)  # the step each spike was drawn in
    per_step = np.zeros((n_steps, n), dtype=int)
    np.add.at(per_step, (steps, d["spike_unit"].values), 1)
    assert tiny_counts.sizes["time"] == n_steps
    np.testing.assert_array_equal(tiny_counts["counts"].values, per_step)
    # same thing, counted with numpy's histogram on the step edges
    edges = np.arange(n_steps + 1) * DT
    for i in range(n):
        hist, _ = np.histogram(d["spike_time"].values[d["spike_unit"].values == i], edges)
        np.testing.assert_array_equal(tiny_counts["counts"].values[:, i], hist)
    assert tiny_counts["counts"].dtype == np.uint8  # few spikes per 10 ms bin
    # behaviour sampled once per step, at the step centre: binning at dt keeps it unchanged
    np.testing.assert_allclose(tiny_counts["behaviour"].values, d["behaviour"].values)


def test_behaviour_is_bin_mean_when_samples_are_denser(tiny_sim):
    counts = bin_spikes(tiny_sim.data, 2 * DT)
    speed = tiny_sim.data["behaviour"].values[:, 0]
    np.testing.assert_allclose(
        counts["behaviour"].values[:, 0], speed.reshape(-1, 2).mean(axis=1), rtol=1e-12
    )
    assert list(counts["behaviour_var"].values) == ["speed"]


def _toy_spikes(beh_t, beh_v, trials=None) -> xr.Dataset:
    ds = xr.Dataset(
        {
            "spike_time": ("spike", np.array([0.1, 0.3, 0.3, 1.9]), {"units": "s"}),
            "spike_unit": ("spike", np.array([0, 0, 1, 1], dtype=np.int32)),
            "behaviour": (("behaviour_time", "behaviour_var"), np.asarray(beh_v, float)[:, None]),
        },
        coords={
            "unit": ("unit", np.array(["a", "b"])),
            "behaviour_time": ("behaviour_time", np.asarray(beh_t, float), {"units": "s"}),
            "behaviour_var": ("behaviour_var", np.array(["x"])),
        },
        attrs={"t_start_s": 0.0, "t_stop_s": 2.0},
    )
    if trials is not None:
        ds["trial_start"] = ("trial", np.array([a for a, _ in trials], float), {"units": "s"})
        ds["trial_stop"] = ("trial", np.array([z for _, z in trials], float), {"units": "s"})
    assert check(ds, "spike_times", require_provenance=False) == []
    return ds


def test_behaviour_bin_mean_hand_computed():
    # 32 samples every 1/16 s starting at 1/32 s, value = sample index; 0.25 s bins hold 4 samples each
    k = np.arange(32)
    counts = bin_spikes(_toy_spikes(1 / 32 + k / 16, k), 0.25, n_blocks=1)
    np.testing.assert_allclose(
        counts["behaviour"].values[:, 0], [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    )
    np.testing.assert_array_equal(
        counts["counts"].values, [[1, 0], [1, 1], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0], [0, 1]]
    )


def test_behaviour_interpolated_when_samples_are_sparser():
    # samples at 0, 1, 2 s (values 0, 8, 0); 0.25 s bins: bins holding a sample take it, the others the
    # value interpolated at the bin centre; the sample at t_stop (2 s) belongs to no bin
    counts = bin_spikes(_toy_spikes([0.0, 1.0, 2.0], [0.0, 8.0, 0.0]), 0.25, n_blocks=1)
    np.testing.assert_allclose(counts["behaviour"].values[:, 0], [0.0, 3.0, 5.0, 7.0, 8.0, 5.0, 3.0, 1.0])


def test_trial_index_per_bin():
    ds = _toy_spikes([0.0, 2.0], [0.0, 1.0], trials=[(0.3, 0.9), (1.2, 1.7)])
    counts = bin_spikes(ds, 0.25, n_blocks=1)  # centres 0.125, 0.375, ..., 1.875
    np.testing.assert_array_equal(counts["trial"].values, [-1, 0, 0, 0, -1, 1, 1, -1])
    assert check(counts, "spike_counts", require_provenance=False) == []


@pytest.mark.parametrize("bw", [0.0, -0.01, 0.9])
def test_bin_spikes_bad_width(bw):
    ds = _toy_spikes([0.0, 2.0], [0.0, 1.0])
    with pytest.raises(ConfigError, match="bin_width_s"):
        bin_spikes(ds, bw)


def test_bin_spikes_split_matches_time_block_split(tiny_counts):
    n = tiny_counts.sizes["time"]
    np.testing.assert_array_equal(
        tiny_counts["split"].values, time_block_split(n, {"train": 0.6, "validation": 0.2, "test": 0.2}, 3)
    )
    assert tiny_counts["split"].attrs["flag_meanings"] == "train validation test"
    np.testing.assert_array_equal(tiny_counts["split"].attrs["flag_values"], [0, 1, 2])


# -- time-block split ------------------------------------------------------------------------------------------
def _runs(split):
    """(value, length) of each run of equal values."""
    change = np.flatnonzero(np.diff(split)) + 1
    starts = np.r_[0, change]
    lengths = np.diff(np.r_[starts, split.size])
    return list(zip(split[starts].tolist(), lengths.tolist(), strict=True))


@pytest.mark.parametrize("n_bins", [1000, 1003, 97])
@pytest.mark.parametrize("n_blocks", [1, 3, 5])
def test_time_block_split_fractions_and_blocks(n_bins, n_blocks):
    fr = {"train": 0.6, "validation": 0.25, "test": 0.15}
    split = time_block_split(n_bins, fr, n_blocks)
    assert split.shape == (n_bins,) and split.dtype == np.int8
    runs = _runs(split)
    assert [v for v, _ in runs] == [0, 1, 2] * n_blocks  # contiguous blocks, in order, in every chunk
    for k, name in enumerate(("train", "validation", "test")):
        assert abs(np.sum(split == k) - fr[name] * n_bins) <= n_blocks, name
    # each block is within one bin of its share of its chunk
    edges = np.linspace(0, n_bins, n_blocks + 1).round().astype(int)
    for b in range(n_blocks):
        chunk = edges[b + 1] - edges[b]
        for k, name in enumerate(("train", "validation", "test")):
            assert abs(runs[3 * b + k][1] - fr[name] * chunk) <= 1


def test_time_block_split_without_validation():
    split = time_block_split(100, {"train": 0.8, "test": 0.2}, 2)
    assert _runs(split) == [(0, 40), (2, 10), (0, 40), (2, 10)]


@pytest.mark.parametrize(
    "fractions",
    [
        {"train": 0.6, "validation": 0.2, "test": 0.3},  # sums to 1.1
        {"train": 1.2, "validation": -0.4, "test": 0.2},  # negative
        {"train": 0.0, "validation": 0.5, "test": 0.5},  # no train
        {"train": 0.8, "validation": 0.2},  # no test
    ],
)
def test_time_block_split_bad_fractions(fractions):
    with pytest.raises(ConfigError, match="split fractions"):
        time_block_split(100, fractions, 2)


@pytest.mark.parametrize(("n_bins", "n_blocks"), [(100, 0), (8, 3)])
def test_time_block_split_bad_blocks(n_bins, n_blocks):
    with pytest.raises(ConfigError, match="n_blocks"):
        time_block_split(n_bins, {"train": 0.6, "validation": 0.2, "test": 0.2}, n_blocks)


def test_bin_spikes_bad_fractions_are_config_errors(tiny_sim):
    with pytest.raises(ConfigError, match="split fractions"):
        bin_spikes(tiny_sim.data, 0.1, {"train": 0.5, "validation": 0.5, "test": 0.5})


@pytest.mark.parametrize(
    "prior_mean, problem",
    [
        ([0.2, 0.6, 0.2], None),
        ([0.5, 0.5], "list of 3 values"),
        ("x", "list of 3 values"),
        ([0.2, "a", 0.8], r"prior_mean\[1\] must be a number"),
    ],
)
def test_simulator_list_parameters_are_checked_element_by_element(prior_mean, problem):
    """A tuple-typed parameter (the switching simulator's prior_mean) takes a list of the right length of numbers."""
    from brainpipe.simulate.base import parse_params
    from brainpipe.simulate.switching_glm import SwitchingGLMParams

    where = "simulator 'switching_glm_network'"
    if problem is None:
        params = parse_params(SwitchingGLMParams, {"prior_mean": prior_mean}, where)
        assert params.prior_mean == (0.2, 0.6, 0.2)
    else:
        with pytest.raises(ConfigError, match=problem):
            parse_params(SwitchingGLMParams, {"prior_mean": prior_mean}, where)
