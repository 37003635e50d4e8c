"""Calcium preprocessing: OASIS AR(1) deconvolution on planted events, dF/F against the simulator's truth, the
running-percentile baseline, events as counts, and the bad-input lines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_dilation
from scipy.signal import lfilter

from brainpipe.data import contracts
from brainpipe.errors import InputError
from brainpipe.preprocess.calcium import (
    estimate_g,
    events_to_counts,
    noise_sd,
    oasis_ar1,
    preprocess_calcium,
    running_percentile,
)
from brainpipe.simulate import simulate


def _planted(rng, T=3000, g=0.9, rate=0.02, sd=0.1):
    s = (rng.random(T) < rate) * rng.uniform(0.8, 1.5, T)
    c = lfilter([1.0], [1.0, -g], s)
    return s, c, c + sd * rng.standard_normal(T)


def _recall_precision(true: np.ndarray, found: np.ndarray, tol: int = 1) -> tuple[float, float]:
    k = np.ones((2 * tol + 1,) + (1,) * (true.ndim - 1), bool)
    recall = (binary_dilation(found, k) & true).sum() / max(true.sum(), 1)
    precision = (binary_dilation(true, k) & found).sum() / max(found.sum(), 1)
    return float(recall), float(precision)


def test_oasis_recovers_planted_events():
    rng = np.random.default_rng(0)
    s, c, y = _planted(rng)
    c_hat, s_hat = oasis_ar1(y, 0.9, s_min=0.4)
    assert (s_hat >= 0).all() and (c_hat >= 0).all()
    recall, precision = _recall_precision(s > 0, s_hat > 0)
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
    assert np.corrcoef(c_hat, c)[0, 1] > 0.97
    # s is c's AR(1) innovation: c_t - g c_{t-1}
    np.testing.assert_allclose(s_hat[1:], np.clip(c_hat[1:] - 0.9 * c_hat[:-1], 0, None), atol=1e-9)


def test_oasis_without_threshold_is_the_l1_solution_shape():
    rng = np.random.default_rng(1)
    _, c, y = _planted(rng, T=500, sd=0.0)
    c_hat, s_hat = oasis_ar1(y, 0.9)  # noiseless, lam 0: exact reconstruction
    np.testing.assert_allclose(c_hat, c, atol=1e-9)
    # a larger l1 penalty gives fewer, smaller events
    _, s_lam = oasis_ar1(y + 0.05 * rng.standard_normal(500), 0.9, lam=0.5)
    assert (s_lam > 0).sum() < (s_hat > 0).sum() + 50 and s_lam.sum() < s_hat.sum()


def test_noise_and_decay_estimates():
    rng = np.random.default_rng(2)
    _, _, y = _planted(rng, T=20000, g=0.95, sd=0.2, rate=0.01)
    assert noise_sd(y[:, None])[0] == pytest.approx(0.2, rel=0.2)
    assert estimate_g(y) == pytest.approx(0.95, abs=0.03)


def test_running_percentile_tracks_a_drift():
    t = np.arange(5000)
    base = 100 + 0.01 * t
    x = (base + np.where(np.arange(5000) % 50 < 5, 30.0, 0.0))[:, None]
    f0 = running_percentile(x, 500, 10)
    # inside, the 10th percentile of a window on a ramp sits 0.8 x half a window of drift below the centre (2 here);
    # the half-windows at the edges hold the nearest full window's value
    assert np.abs(f0[250:-250, 0] - base[250:-250]).max() < 2.2
    assert np.abs(f0[:, 0] - base).max() < 5.0


def test_preprocess_matches_the_planted_dff_and_events():
    sim = simulate(
        "calcium_communities",
        {"n_neurons": 12, "n_communities": 2, "community_size": 4, "n_frames": 3000, "n_animals": 1},
        seed=4,
    )
    out = preprocess_calcium(sim.data, neuropil_coef=0.7, window_s=60, percentile=10)
    assert contracts.check(out, "calcium_traces", require_provenance=False) == []
    truth = sim.truth
    r = [
        np.corrcoef(out["dff"].values[:, k], truth["dff_true"].values[:, k])[0, 1]
        for k in range(out.sizes["cell"])
    ]
    assert min(r) > 0.9, r
    true_ev = truth["spikes"].values > 0.5
    recall, precision = _recall_precision(true_ev, out["events"].values > 0)
    assert recall > 0.9 and precision > 0.85, (recall, precision)
    # the decay estimated from the data is near the planted one
    assert np.median(out["ar1_g"].values) == pytest.approx(truth.attrs["ar1_g"], abs=0.04)
    # without neuropil subtraction the shared neuropil leaks into dF/F: worse fit to the truth
    raw = preprocess_calcium(sim.data, neuropil_coef=0.0, window_s=60)
    r_raw = [
        np.corrcoef(raw["dff"].values[:, k], truth["dff_true"].values[:, k])[0, 1]
        for k in range(out.sizes["cell"])
    ]
    assert np.mean(r_raw) < np.mean(r)


def test_events_to_counts_is_a_spike_counts_dataset():
    sim = simulate(
        "calcium_communities",
        {"n_neurons": 6, "n_communities": 1, "community_size": 3, "n_frames": 600, "n_animals": 1},
        seed=1,
    )
    out = preprocess_calcium(sim.data, window_s=20)
    counts = events_to_counts(out, 2, {"train": 0.6, "validation": 0.2, "test": 0.2}, 3)
    assert contracts.check(counts, "spike_counts", require_provenance=False) == []
    assert counts.sizes["time"] == 300 and float(counts.attrs["bin_width_s"]) == pytest.approx(0.2)
    assert int(counts["counts"].sum()) == int((out["events"].values[:600] > 0).sum())
    assert set(np.unique(counts["split"].values)) == {0, 1, 2}


# ---- bad input: one line each ------------------------------------------------------------------------------
def _traces(F, neuropil=None):
    import xarray as xr

    ds = xr.Dataset(
        {"fluorescence": (("time", "cell"), F, {"units": "a.u."})},
        coords={
            "time": ("time", np.arange(F.shape[0]) / 10.0, {"units": "s"}),
            "cell": [f"c{i}" for i in range(F.shape[1])],
        },
        attrs={"frame_rate_hz": 10.0},
    )
    if neuropil is not None:
        ds["neuropil"] = (("time", "cell"), neuropil, {"units": "a.u."})
    return ds


def test_constant_or_nan_cell_is_one_line_or_dropped():
    rng = np.random.default_rng(0)
    F = 100 + rng.standard_normal((600, 3))
    F[:, 1] = 50.0
    with pytest.raises(
        InputError, match=r"constant cell\(s\) c1: no signal to normalise.*drop_bad_cells"
    ) as err:
        preprocess_calcium(_traces(F), window_s=20, source="x.nc")
    assert "\n" not in str(err.value) and str(err.value).startswith("x.nc: ")
    out = preprocess_calcium(_traces(F), window_s=20, drop_bad_cells=True)
    assert list(out["cell"].values) == ["c0", "c2"]
    F[:, 2] = np.nan
    with pytest.raises(InputError, match=r"all-NaN cell\(s\) c2; constant cell\(s\) c1"):
        preprocess_calcium(_traces(F), window_s=20)


def test_nonpositive_baseline_is_one_line():
    rng = np.random.default_rng(0)
    F = 100 + rng.standard_normal((600, 2))
    neuropil = np.full((600, 2), 100.0)
    neuropil[:, 0] = 200.0  # 100 - 0.7 * 200 < 0
    with pytest.raises(
        InputError,
        match=r"baseline F0 <= 0 in cell\(s\) c0 after neuropil subtraction with coefficient 0\.7; lower calcium\.preprocess\.neuropil_coef",
    ):
        preprocess_calcium(_traces(F, neuropil), window_s=20)


def test_baseline_window_longer_than_recording_is_one_line():
    F = 100 + np.random.default_rng(0).standard_normal((100, 2))
    with pytest.raises(
        InputError, match=r"baseline window 60\.0 s = 600 frames but the recording has 100 frames"
    ):
        preprocess_calcium(_traces(F), window_s=60)


def test_traces_given_as_dff_skip_the_baseline():
    rng = np.random.default_rng(3)
    _, c, y = _planted(rng, T=1000)
    ds = _traces(y[:, None] - 0.05)  # dF/F around 0: a baseline division would be meaningless
    ds.attrs["already_dff"] = 1
    out = preprocess_calcium(ds, window_s=20)
    np.testing.assert_array_equal(out["dff"].values, ds["fluorescence"].values)
    assert np.isnan(out["baseline"].values).all() and (out["events"].values > 0).sum() > 10
