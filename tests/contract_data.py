"""Minimal valid datasets for every contract (``BUILDERS``) and a provenance record, for tests to import."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from brainpipe.data import CONTRACTS, make_provenance


# -- minimal valid datasets, one per contract ---------------------------------------------------------------
def roi_timeseries() -> xr.Dataset:
    n_t, tr = 12, 2.0
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {
            "signal": (("time", "roi"), rng.standard_normal((n_t, 3))),
            "confounds": (("time", "confound"), rng.standard_normal((n_t, 2))),
            "sample_mask": ("time", np.arange(n_t) % 5 != 4),
        },
        coords={
            "time": ("time", np.arange(n_t) * tr, {"units": "s"}),
            "roi": ("roi", np.array(["V1", "M1", "PFC"])),
            "confound": ("confound", np.array(["csf", "wm"])),
        },
        attrs={"repetition_time_s": tr},
    )


def calcium_traces() -> xr.Dataset:
    n_t, fr = 20, 30.0
    rng = np.random.default_rng(1)
    f = 100.0 + rng.standard_normal((n_t, 4))
    return xr.Dataset(
        {
            "fluorescence": (("time", "cell"), f, {"units": "a.u."}),
            "dff": (("time", "cell"), f / 100.0 - 1.0, {"units": "1"}),
            "events": (("time", "cell"), (rng.random((n_t, 4)) < 0.1).astype(np.int16), {"units": "1"}),
        },
        coords={"time": ("time", np.arange(n_t) / fr, {"units": "s"}), "cell": ("cell", np.arange(4))},
        attrs={"frame_rate_hz": fr},
    )


def spike_times() -> xr.Dataset:
    t = np.array([0.05, 0.10, 0.10, 0.42, 0.77, 1.30, 1.95])
    u = np.array([0, 1, 2, 0, 1, 0, 2], dtype=np.int32)
    bt = np.linspace(0.0, 2.0, 9)
    return xr.Dataset(
        {
            "spike_time": ("spike", t, {"units": "s"}),
            "spike_unit": ("spike", u),
            "behaviour": (("behaviour_time", "behaviour_var"), np.stack([bt, bt**2], axis=1)),
            "trial_start": ("trial", np.array([0.0, 1.0]), {"units": "s"}),
            "trial_stop": ("trial", np.array([0.8, 1.9]), {"units": "s"}),
        },
        coords={
            "unit": ("unit", np.array(["a", "b", "c"])),
            "behaviour_time": ("behaviour_time", bt, {"units": "s"}),
            "behaviour_var": ("behaviour_var", np.array(["x", "speed"])),
        },
        attrs={"t_start_s": 0.0, "t_stop_s": 2.0},
    )


def spike_counts() -> xr.Dataset:
    n_t, bw = 30, 0.1
    rng = np.random.default_rng(2)
    return xr.Dataset(
        {
            "counts": (("time", "unit"), rng.poisson(1.0, (n_t, 3)).astype(np.uint8), {"units": "1"}),
            "split": ("time", np.repeat(np.array([0, 1, 2], dtype=np.int8), [18, 6, 6])),
            "behaviour": (("time", "behaviour_var"), rng.standard_normal((n_t, 1))),
            "stimulus": (("time", "stimulus_var"), rng.standard_normal((n_t, 2))),
            "trial": ("time", np.repeat(np.array([-1, 0, 1], dtype=np.int32), 10)),
        },
        coords={
            "time": ("time", (np.arange(n_t) + 0.5) * bw, {"units": "s"}),
            "unit": ("unit", np.array(["u0", "u1", "u2"])),
            "behaviour_var": ("behaviour_var", np.array(["speed"])),
            "stimulus_var": ("stimulus_var", np.array(["contrast", "orientation"])),
        },
        attrs={"bin_width_s": bw},
    )


def model_fit() -> xr.Dataset:
    units = np.array(["u0", "u1"])
    return xr.Dataset(
        {"coupling": (("unit_post", "unit_pre"), np.array([[-2.0, 0.5], [0.0, -2.0]]))},
        coords={"unit_post": units, "unit_pre": units},
        attrs={"model": "toy", "role": "fit"},
    )


def metrics() -> xr.Dataset:
    return xr.Dataset(
        {
            "value": ("metric", np.array([0.9, 0.3, np.nan])),
            "bar": ("metric", np.array([0.8, 0.2, np.nan])),
            "bar_op": ("metric", np.array([">=", "<=", ""])),
            "passed": ("metric", np.array([1, 0, -1], dtype=np.int8)),
            "description": ("metric", np.array(["a correlation", "an error", ""])),
        },
        coords={"metric": np.array(["corr", "mae", "other"])},
        attrs={"model": "toy", "dataset": "unit-test"},
    )


def roi_segments() -> xr.Dataset:
    n_seg, n_lag, tr = 4, 5, 2.0
    rng = np.random.default_rng(3)
    return xr.Dataset(
        {
            "signal": (("segment", "lag", "roi"), rng.standard_normal((n_seg, n_lag, 3))),
            "segment_subject": ("segment", np.array([0, 0, 1, 1])),
            "segment_start": ("segment", np.array([0.0, 10.0, 0.0, 10.0]), {"units": "s"}),
            "segment_run": ("segment", np.array(["sub-a", "sub-a", "sub-b", "sub-b"])),
            "fold": ("subject", np.array([0, 1])),
            "segment_fold": ("segment", np.array([0, 0, 1, 1])),
            "label": ("subject", np.array([0, 1])),
            "target": ("subject", np.array([0.5, np.nan])),
        },
        coords={
            "lag": ("lag", np.arange(n_lag) * tr, {"units": "s"}),
            "roi": ("roi", np.array(["V1", "M1", "PFC"])),
            "subject": ("subject", np.array(["a", "b"])),
        },
        attrs={"repetition_time_s": tr, "segment_length_s": n_lag * tr, "classes": "control,patient"},
    )


def affinity_tensor() -> xr.Dataset:
    rng = np.random.default_rng(2)
    ii, jj = np.triu_indices(3, k=1)
    return xr.Dataset(
        {
            "affinity": (("pair", "window", "animal"), rng.random((3, 4, 2)), {"units": "1"}),
            "mask": (("pair", "animal"), np.array([[1, 1], [1, 0], [1, 0]], dtype=np.int8)),
            "pair_i": ("pair", ii),
            "pair_j": ("pair", jj),
        },
        coords={
            "pair": np.arange(3),
            "window": np.arange(4),
            "animal": ["a1", "a2"],
            "neuron": ["n0", "n1", "n2"],
            "time": ("window", np.arange(4) * 2.5 + 2.5, {"units": "s"}),
        },
        attrs={"affinity": "softthresh_dcorr", "window_s": 5.0, "stride_s": 2.5, "frame_rate_hz": 10.0},
    )


BUILDERS: dict[str, Callable[[], xr.Dataset]] = {
    "roi_segments": roi_segments,
    "roi_timeseries": roi_timeseries,
    "calcium_traces": calcium_traces,
    "spike_times": spike_times,
    "spike_counts": spike_counts,
    "model_fit": model_fit,
    "metrics": metrics,
    "affinity_tensor": affinity_tensor,
}
assert set(BUILDERS) == set(CONTRACTS), "conftest needs a builder for every contract kind"


def prov_record(stage: str = "unit-test", **kw) -> dict:
    return make_provenance(stage, kw.pop("params", {"answer": 42}), **kw)
