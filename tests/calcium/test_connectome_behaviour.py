"""Connectome factors related to behaviour: the simulator's behaviour (own generator and clock, following each
animal's epochs), the relation metrics (r / AUROC, circular-shift null, baselines) and the stage path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainpipe.data import contracts, provenance_of, read
from brainpipe.evaluate.connectome_behaviour import behaviour_metrics, window_means
from brainpipe.evaluate.metrics import metric_info
from brainpipe.simulate.calcium import CalciumCommunitiesParams, calcium_communities
from brainpipe.stages import (
    build_connectome_tensor,
    evaluate_connectome,
    fit_connectome,
    preprocess_calcium,
    simulate,
)

SIM = {"n_animals": 2, "n_neurons": 12, "n_communities": 2, "community_size": 4, "n_frames": 1200}


def test_simulated_behaviour_follows_each_animals_epochs_and_leaves_the_traces_alone():
    kw = {**SIM, "epoch_jitter": 0.3}
    with_b = [calcium_communities(CalciumCommunitiesParams(animal=a, **kw), 3) for a in range(2)]
    without = calcium_communities(CalciumCommunitiesParams(animal=0, behaviour_rate_hz=0.0, **kw), 3)
    assert "behaviour" not in without.data
    for v in ("fluorescence", "neuropil"):
        np.testing.assert_array_equal(with_b[0].data[v].values, without.data[v].values)
    np.testing.assert_array_equal(with_b[0].truth["spikes"].values, without.truth["spikes"].values)
    edges = []
    for s in with_b:
        assert contracts.check(s.data, "calcium_traces", require_provenance=False) == []
        t = s.data["behaviour_time"].values
        assert np.allclose(np.diff(t), 1 / 20.0)  # its own 20 Hz clock, not the 10 Hz frames
        run = s.data["behaviour"].sel(behaviour_var="running").values
        lo, hi = float(s.truth["epoch_start_s"][0]), float(s.truth["epoch_stop_s"][0])
        inside = (t >= lo) & (t < hi)
        assert run[inside].mean() > 0.5 > run[~inside].mean()
        speed = s.data["behaviour"].sel(behaviour_var="speed").values
        lo1, hi1 = float(s.truth["epoch_start_s"][1]), float(s.truth["epoch_stop_s"][1])
        in1 = (t >= lo1 + 5) & (t < hi1 - 5)
        assert speed.min() >= 0 and speed[in1].mean() > speed[(t < lo1 - 5) | (t > hi1 + 5)].mean() + 5
        edges.append(hi)
    assert edges[0] != edges[1]  # jittered epochs: the animals' behaviour is not time-locked


def _running(t, start):
    return ((t >= start) & (t < start + 100.0)).astype(float)


def _behaviour(t, start):
    return {"time": t, "values": np.c_[_running(t, start), np.sin(t / 7.0)], "names": ["run", "wave"]}


def test_behaviour_metrics_per_animal_time_courses_null_and_baseline():
    W, win = 80, 5.0
    start = np.arange(W) * win
    t = np.arange(0, W * win, 0.1)
    starts = [100.0, 250.0]  # the animals run at different times
    beh = [_behaviour(t, s) for s in starts]
    own = np.stack([_running(start + win / 2, s) for s in starts], 1)  # (W, animal)
    rng = np.random.default_rng(0)
    per_animal = np.stack([own + 0.05 * rng.standard_normal(own.shape), rng.random(own.shape)])  # (K=2, W, A)
    shared = np.repeat(own.mean(1)[None, :, None], 2, axis=2)  # one time course for both animals
    weak = np.stack([own + 1.0 * rng.standard_normal(own.shape)])
    out = behaviour_metrics({"ntf": per_animal, "nmf": weak}, start, win, beh, n_shifts=50, seed=0)
    assert out["behaviour_run_auroc_ntf"] > 0.99 and out["behaviour_run_auroc_ntf_factor"] == 0
    assert out["behaviour_run_auroc_ntf_p"] < 0.05
    assert out["behaviour_run_auroc_best_baseline"] == out["behaviour_run_auroc_nmf"] < 0.95
    assert out["behaviour_run_auroc_ntf_vs_best_baseline"] > 0.05
    assert out["behaviour_wave_r_ntf_p"] > 0.05  # a variable nothing follows: not significant
    locked = behaviour_metrics({"ntf": shared}, start, win, beh, n_shifts=50, seed=0)
    assert (
        locked["behaviour_run_auroc_ntf"] < out["behaviour_run_auroc_ntf"]
    )  # shared course misses the timing
    assert metric_info("behaviour_run_auroc_ntf_p").op == "<="
    assert "circular shifts" in metric_info("behaviour_wave_r_ntf_p").description
    assert behaviour_metrics({"ntf": per_animal}, start, win, [None, None]) == {}


def test_window_means_match_a_loop():
    t = np.arange(0, 20, 0.3)
    v = np.c_[t, t**2]
    got = window_means(np.array([0.0, 5.0, 30.0]), 5.0, t, v)
    for k, s in enumerate([0.0, 5.0]):
        np.testing.assert_allclose(got[k], v[(t >= s) & (t < s + 5)].mean(0))
    assert np.isnan(got[2]).all()


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("cabeh")
    out = []
    for a in range(2):
        d = root / f"ca{a}"
        params = {"generator": "calcium_communities", "seed": 2, "params": {**SIM, "animal": a}}
        simulate.run({}, {"data": d / "traces.nc", "truth": d / "truth.nc"}, params, None)
        pre = {"baseline": {"window_s": 20.0}}
        preprocess_calcium.run({"traces": d / "traces.nc"}, {"processed": d / "processed.nc"}, pre, None)
        out.append(d)
    return out


def test_stage_relates_factors_to_the_recordings_behaviour(processed, tmp_path):
    ds = read(processed[0] / "processed.nc", "calcium_traces")
    assert list(ds["behaviour_var"].values) == [
        "running",
        "speed",
    ]  # written, read back, kept by preprocessing
    tensor, fit, metrics = tmp_path / "t.zarr", tmp_path / "fit.nc", tmp_path / "m.nc"
    aff = {"affinity": {"name": "softthresh_dcorr", "window_s": 5.0, "stride_s": 2.5}}
    build_connectome_tensor.run(
        {"processed": [d / "processed.nc" for d in processed]}, {"tensor": tensor}, aff, None
    )
    fit_connectome.run({"tensor": tensor}, {"fit": fit}, {"ranks": [2], "restarts": 2, "device": "cpu"}, None)
    inputs = {
        "fit": fit,
        "tensor": tensor,
        "truths": [d / "truth.nc" for d in processed],
        "processed": [d / "processed.nc" for d in processed],
    }
    evaluate_connectome.run(inputs, {"metrics": metrics}, {"study": "s"}, None)
    m = read(metrics, "metrics")
    names = [str(n) for n in m["metric"].values]
    assert "behaviour_running_auroc_ntf_vs_best_baseline" in names and "behaviour_speed_r_nmf" in names
    assert float(m["value"].sel(metric="behaviour_running_auroc_ntf")) > 0.8
    assert float(m["value"].sel(metric="behaviour_running_auroc_ntf_p")) < 0.05
    assert int(m["passed"].sel(metric="behaviour_running_auroc_ntf")) == -1  # no bar by default
    assert len(provenance_of(m)["inputs"]) == 6


def test_report_table_names_the_component_and_the_strongest_baseline():
    from brainpipe.evaluate.connectome import connectome_metrics_dataset
    from brainpipe.report.calcium import behaviour_html

    values = {
        "behaviour_running_auroc_ntf": 0.95,
        "behaviour_running_auroc_ntf_factor": 2.0,
        "behaviour_running_auroc_ntf_p": 0.005,
        "behaviour_running_auroc_static_louvain": 0.85,
        "behaviour_running_auroc_nmf": 0.10,  # strength 0.8: the strongest baseline
        "behaviour_running_auroc_best_baseline": 0.10,
        "behaviour_running_auroc_best_baseline_p": 0.01,
        "behaviour_running_auroc_ntf_vs_best_baseline": 0.1,
    }
    html = behaviour_html(connectome_metrics_dataset(values, None, "s"))
    assert "<td>running</td><td>AUROC</td><td>2</td><td>0.95" in html and "<td>nmf</td>" in html
    assert "+0.100" in html
    assert behaviour_html(connectome_metrics_dataset({"selected_rank": 3.0}, None, "s")) == ""


def test_shuffled_epochs_give_each_animal_its_own_order():
    kw = {**SIM, "n_animals": 4, "n_communities": 3, "community_size": 3, "shuffle_epochs": True}
    sims = [calcium_communities(CalciumCommunitiesParams(animal=a, **kw), 1) for a in range(4)]
    starts = sims[0].truth["animal_epoch_start_s"].values
    assert len({tuple(np.argsort(r)) for r in starts}) > 1  # not every animal in the same order
    for a, s in enumerate(sims):
        np.testing.assert_array_equal(s.truth["epoch_start_s"].values, starts[a])
        t = s.data["behaviour_time"].values
        run = s.data["behaviour"].sel(behaviour_var="running").values
        inside = (t >= starts[a, 0]) & (t < s.truth["epoch_stop_s"].values[0])
        assert run[inside].mean() > 0.5 > run[~inside].mean()  # running follows community 0 wherever it falls
    plain = calcium_communities(CalciumCommunitiesParams(animal=0, **{**kw, "shuffle_epochs": False}), 1)
    np.testing.assert_array_equal(plain.data["neuropil"].values, sims[0].data["neuropil"].values)
