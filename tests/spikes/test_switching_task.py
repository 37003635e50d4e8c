"""Decoded switching-GLM states against task variables (brainpipe.evaluate.switching.task_*): the variables found
in a spike_counts dataset, the mutual information against its shuffled nulls, the metrics."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from brainpipe.evaluate.switching import state_occupancy, task_information, task_metrics, task_variables


def _trial_counts(rng, n_trials=60, n_bins=20, dt=0.01, gap=3):
    """Trials of ``n_bins`` bins from stimulus onset, ``gap`` inter-trial bins (trial -1) between them, all test."""
    trial = np.concatenate([np.r_[np.full(n_bins, k), np.full(gap, -1)] for k in range(n_trials)])
    n = trial.size
    feedback = rng.choice([-1.0, 1.0], n_trials)
    stim = np.stack([np.where(trial >= 0, feedback[trial], 0.0), rng.standard_normal(n)], 1)
    return xr.Dataset(
        {
            "counts": (("time", "unit"), rng.poisson(1.0, (n, 2)).astype(np.uint8)),
            "split": ("time", np.full(n, 2, dtype=np.int8)),
            "trial": ("time", trial.astype(np.int32)),
            "stimulus": (("time", "stimulus_var"), stim),
        },
        coords={"time": (np.arange(n) + 0.5) * dt, "stimulus_var": ["feedback_type", "noise"]},
        attrs={"bin_width_s": dt},
    )


def _noisy_posterior(rng, states, S, noise=0.3):
    post = np.full((states.size, S), noise / S)
    post[np.arange(states.size), states] += 1 - noise
    return post


def test_trial_variables_epochs_and_trial_level_stimuli(rng):
    counts = _trial_counts(rng)
    tv = task_variables(counts)
    assert set(tv) == {"epoch", "stimulus_feedback_type"}  # the continuous stimulus is not a category
    epoch, fb = tv["epoch"], tv["stimulus_feedback_type"]
    trial = counts["trial"].values
    np.testing.assert_array_equal(epoch.labels[:20], [0] * 5 + [1] * 10 + [2] * 5)  # 0-50, 50-150, >150 ms
    assert np.all(epoch.labels[trial < 0] == -1) and np.all(fb.labels[trial < 0] == -1)
    assert fb.categories == ["-1", "1"] and fb.shuffle == "permute" and epoch.shuffle == "shift"


def test_states_locked_to_epochs_beat_the_shifted_null(rng):
    counts = _trial_counts(rng)
    epoch = task_variables(counts)["epoch"]
    test = np.ones(counts.sizes["time"], dtype=bool)
    locked = _noisy_posterior(rng, np.maximum(epoch.labels, 0), 3)
    mi, null, p = task_information(locked, epoch, test, n_shuffles=100, seed=1)
    assert mi > 0.5 and null < 0.2 and p == pytest.approx(1 / 101)
    occ = state_occupancy(locked, epoch, test)
    np.testing.assert_allclose(occ.sum(1), 1.0)
    assert np.all(occ.argmax(1) == [0, 1, 2])
    # states that switch at random (a sticky Markov chain), unrelated to the epochs: the null is calibrated
    # (measured: p < 0.05 in 5 % of 60 draws, median p 0.55)
    ps = []
    for _ in range(20):
        z = np.zeros(counts.sizes["time"], dtype=np.int64)
        for t in range(1, z.size):
            z[t] = z[t - 1] if rng.random() < 0.9 else rng.integers(3)
        mi, null, p = task_information(_noisy_posterior(rng, z, 3), epoch, test, n_shuffles=50, seed=1)
        assert abs(mi - null) < 0.05
        ps.append(p)
    assert np.mean(np.array(ps) < 0.05) <= 0.2 and np.median(ps) > 0.2


def test_states_following_trial_outcome_beat_the_permuted_null(rng):
    counts = _trial_counts(rng)
    fb = task_variables(counts)["stimulus_feedback_type"]
    test = np.ones(counts.sizes["time"], dtype=bool)
    post = _noisy_posterior(rng, np.maximum(fb.labels, 0), 2, noise=0.6)
    mi, null, p = task_information(post, fb, test, n_shuffles=100, seed=0)
    assert mi > null + 0.05 and p < 0.02
    # states locked to the epochs are the same in every trial: no relation to the outcome
    epoch = task_variables(counts)["epoch"]
    locked = _noisy_posterior(rng, np.maximum(epoch.labels, 0), 3)
    mi2, null2, p2 = task_information(locked, fb, test, n_shuffles=100, seed=0)
    assert mi2 < 0.01 and p2 > 0.2


def _track_counts(rng, n=4000, dt=0.05):
    """Position on a linear track (pixels): rests, then runs back and forth at ~60 px/s; test bins in 2 blocks."""
    running = (np.arange(n) // 400) % 2 == 1
    v = np.where(running, 60.0 * dt, 0.0) * np.where((np.arange(n) // 800) % 2 == 0, 1, -1)
    x = np.round(300 + np.cumsum(v) + rng.normal(0, 0.3, n))  # whole pixels, jitter
    split = np.zeros(n, dtype=np.int8)
    split[1000:1800] = split[3000:3800] = 2
    counts = xr.Dataset(
        {
            "counts": (("time", "unit"), rng.poisson(1.0, (n, 2)).astype(np.uint8)),
            "split": ("time", split),
            "behaviour": (("time", "behaviour_var"), np.stack([x, np.full(n, 200.0)], 1)),
        },
        coords={"time": (np.arange(n) + 0.5) * dt, "behaviour_var": ["x", "y"]},
        attrs={"bin_width_s": dt},
    )
    return counts, running


def test_running_from_position_and_metrics(rng):
    counts, running = _track_counts(rng)
    tv = task_variables(counts)
    assert set(tv) == {"running"}
    assert np.mean(tv["running"].labels == running) > 0.95
    post = _noisy_posterior(rng, running.astype(np.int64) + 1, 3)  # state 0 never used
    S = 3
    fit = xr.Dataset({"posterior": (("time", "state"), post)}, coords={"state": np.arange(S)})
    flat = xr.Dataset({"posterior": (("time", "state"), np.full((post.shape[0], S), 1 / S))})
    single = xr.Dataset({"posterior": (("time", "state"), np.ones((post.shape[0], 1)))})
    m = task_metrics(fit, counts, {"none": flat, "single": single}, n_shuffles=50)
    assert set(m) == {f"task_mi_running{s}" for s in ("", "_null", "_excess", "_p", "_vs_none")}
    assert m["task_mi_running_excess"] > 0.3 and m["task_mi_running_p"] == pytest.approx(1 / 51)
    assert m["task_mi_running_vs_none"] == pytest.approx(m["task_mi_running_excess"], abs=1e-9)
    assert task_metrics(single, counts) == {}  # a single state carries no information
    no_task = counts.drop_vars(["behaviour", "behaviour_var"])
    assert task_metrics(fit, no_task) == {}


def test_report_part_shows_the_occupancy_and_the_numbers(rng):
    from brainpipe.report.switching import _task_part

    counts = _trial_counts(rng, n_trials=20)
    epoch = task_variables(counts)["epoch"]
    post = _noisy_posterior(rng, np.maximum(epoch.labels, 0), 3)
    fit = xr.Dataset({"posterior": (("time", "state"), post)}, coords={"state": np.arange(3)})
    m = task_metrics(fit, counts, n_shuffles=20)
    vals = {"gaussian": {k: (v,) for k, v in m.items()}, "none": {"task_mi_epoch_excess": (0.01,)}}
    html = "".join(_task_part("toy", "gaussian", fit, vals, counts))
    assert "<b>epoch</b>: " + f"{m['task_mi_epoch']:.4g}" in html and "none 0.01" in html
    assert html.count("data:image/png;base64,") == 1
    assert (
        _task_part("toy", "gaussian", fit, {"gaussian": {}}, counts) == []
    )  # metrics without task variables
