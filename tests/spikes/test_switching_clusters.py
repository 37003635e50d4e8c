"""The non-HMM baseline of the decoded states' task information (brainpipe.evaluate.switching_clusters): k-means
clusters of the smoothed population rate, window chosen on the validation bins, compared in task_metrics."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from brainpipe.evaluate.switching import task_metrics, task_variables
from brainpipe.evaluate.switching_clusters import cluster_states, smoothed_rates


def test_smoothing_stays_within_segments_and_can_leave_the_bin_out():
    y = np.array([[1.0], [2.0], [3.0], [10.0], [20.0]])
    seg = np.array([0, 0, 0, 1, 1])
    np.testing.assert_allclose(smoothed_rates(y, seg, 1)[:, 0], [1.5, 2.0, 2.5, 15.0, 15.0])
    np.testing.assert_allclose(smoothed_rates(y, seg, 1, leave_out=True)[:, 0], [2.0, 2.0, 2.0, 20.0, 10.0])
    lone = smoothed_rates(np.array([[4.0], [7.0]]), np.array([0, 1]), 2, leave_out=True)
    np.testing.assert_allclose(lone[:, 0], [4.0, 7.0])  # a bin alone in its segment: its segment's mean


def _track(rng, n=6000, dt=0.05, units=4):
    """Rests and runs on a track (400-bin blocks), units firing faster while running; train, validation and test
    blocks."""
    running = (np.arange(n) // 400) % 2 == 1
    v = np.where(running, 60.0 * dt, 0.0) * np.where((np.arange(n) // 800) % 2 == 0, 1, -1)
    x = np.round(300 + np.cumsum(v) + rng.normal(0, 0.3, n))
    rate = np.where(running[:, None], 0.6, 0.3) * np.ones((1, units))
    split = np.zeros(n, dtype=np.int8)
    split[2400:3600], split[4800:] = 1, 2
    counts = xr.Dataset(
        {
            "counts": (("time", "unit"), rng.poisson(rate).astype(np.uint8)),
            "split": ("time", split),
            "behaviour": (("time", "behaviour_var"), np.stack([x, np.full(n, 200.0)], 1)),
        },
        coords={"time": (np.arange(n) + 0.5) * dt, "behaviour_var": ["x", "y"]},
        attrs={"bin_width_s": dt},
    )
    return counts, running


def test_clusters_of_the_smoothed_rate_find_slow_states_and_are_compared(rng):
    counts, running = _track(rng)
    cl = cluster_states(counts, 2, seed=0)
    assert cl.selected_on == "validation" and set(cl.scores) == {0.05, 0.1, 0.2, 0.5, 1.0, 2.0}
    # slow states in noisy counts: a window longer than one bin predicts the held-out counts better
    assert cl.half_window_s > 0.05 and cl.scores[cl.half_window_s] > cl.scores[0.05]
    test = counts["split"].values == 2
    agree = np.mean(cl.labels[test] == running[test])
    assert max(agree, 1 - agree) > 0.9
    assert task_variables(counts)["running"].labels[test].mean() == pytest.approx(
        running[test].mean(), abs=0.05
    )
    # decoded states that are flat carry nothing: less than the clusters; states equal to the variable carry more
    n = counts.sizes["time"]
    flat = xr.Dataset({"posterior": (("time", "state"), np.full((n, 2), 0.5))}, coords={"state": [0, 1]})
    same = np.eye(2)[np.maximum(task_variables(counts)["running"].labels, 0)]
    exact = xr.Dataset({"posterior": (("time", "state"), same)}, coords={"state": [0, 1]})
    m_flat = task_metrics(flat, counts, n_shuffles=20, clusters=cl)
    m_exact = task_metrics(exact, counts, n_shuffles=20, clusters=cl)
    assert m_flat["task_mi_running_clusters_excess"] > 0.3
    assert m_flat["task_mi_running_vs_clusters"] < -0.3 < 0 <= m_exact["task_mi_running_vs_clusters"]
    assert m_flat["task_mi_running_clusters"] == m_exact["task_mi_running_clusters"]
    assert "task_mi_running_vs_clusters" not in task_metrics(exact, counts, n_shuffles=20)


def test_report_sentence_says_whether_the_states_beat_the_clusters(rng):
    from brainpipe.report.switching import _task_part

    counts, running = _track(rng, n=3000)
    cl = cluster_states(counts, 2, seed=0)
    n = counts.sizes["time"]
    flat = xr.Dataset({"posterior": (("time", "state"), np.full((n, 2), 0.5))}, coords={"state": [0, 1]})
    m = task_metrics(flat, counts, n_shuffles=10, clusters=cl)
    html = "".join(_task_part("toy", "none", flat, {"none": {k: (v,) for k, v in m.items()}}, counts))
    assert "the k-means clusters of the smoothed population rate" in html
    assert "the states carry less than the clusters" in html
