"""The semantic checks of the data contracts (:mod:`brainpipe.data.contracts`): each takes a Dataset and returns
its problems as one-line messages (an empty list when it holds), for a contract's ``checks``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

#: the values of a ``split`` variable (CF ``flag_values``): time blocks for training, validation and test
SPLIT_FLAGS = {"train": 0, "validation": 1, "test": 2}


def _increasing(coord: str) -> Callable[[xr.Dataset], list[str]]:
    def check(ds: xr.Dataset) -> list[str]:
        if coord not in ds.coords or ds[coord].size == 0:
            return []
        v = np.asarray(ds[coord].values)
        if v.dtype.kind != "f":
            return []
        if not np.all(np.isfinite(v)):
            return [f"coordinate '{coord}' has non-finite values (rule: finite, strictly increasing seconds)"]
        if v.size > 1 and not np.all(np.diff(v) > 0):
            return [
                f"coordinate '{coord}' is not strictly increasing (rule: finite, strictly increasing seconds)"
            ]
        return []

    check.__name__ = f"increasing_{coord}"
    return check


def _unique(coord: str) -> Callable[[xr.Dataset], list[str]]:
    def check(ds: xr.Dataset) -> list[str]:
        if coord in ds.coords and ds[coord].size != np.unique(ds[coord].values).size:
            return [f"coordinate '{coord}' has duplicate labels (rule: labels are unique)"]
        return []

    return check


def _positive_attr(name: str) -> Callable[[xr.Dataset], list[str]]:
    def check(ds: xr.Dataset) -> list[str]:
        val = ds.attrs.get(name)
        if val is None:
            return []
        try:
            ok = float(val) > 0 and np.isfinite(float(val))
        except (TypeError, ValueError):
            ok = False
        return [] if ok else [f"attribute '{name}' = {val!r} must be a positive number of seconds/Hz"]

    return check


def _nonnegative(var: str) -> Callable[[xr.Dataset], list[str]]:
    def check(ds: xr.Dataset) -> list[str]:
        if var in ds and ds[var].size and bool((ds[var] < 0).any()):
            return [f"variable '{var}' has negative values (rule: counts are >= 0)"]
        return []

    return check


def _finite(var: str) -> Callable[[xr.Dataset], list[str]]:
    def check(ds: xr.Dataset) -> list[str]:
        if var in ds and ds[var].dtype.kind == "f" and not bool(np.isfinite(ds[var].values).all()):
            return [
                f"variable '{var}' has NaN or infinite values (rule: finite values; mask or drop bad samples)"
            ]
        return []

    return check


def _spike_times_checks(ds: xr.Dataset) -> list[str]:
    out = []
    if "spike_time" not in ds or "spike_unit" not in ds:
        return out
    t = np.asarray(ds["spike_time"].values)
    u = np.asarray(ds["spike_unit"].values)
    n_units = ds.sizes.get("unit", 0)
    if t.size and not np.all(np.isfinite(t)):
        out.append("variable 'spike_time' has non-finite values (rule: finite seconds)")
    elif t.size > 1 and np.any(np.diff(t) < 0):
        out.append("variable 'spike_time' is not sorted (rule: spikes sorted by time)")
    if u.size and (u.min() < 0 or u.max() >= n_units):
        out.append(
            f"variable 'spike_unit' has indices outside [0, {n_units}) (rule: index into the 'unit' coordinate)"
        )
    t0, t1 = ds.attrs.get("t_start_s"), ds.attrs.get("t_stop_s")
    try:
        t0, t1 = float(t0), float(t1)
    except (TypeError, ValueError):
        return out + ["attributes 't_start_s'/'t_stop_s' must be numbers of seconds"]
    if not t1 > t0:
        out.append(f"attribute 't_stop_s' ({t1}) must be greater than 't_start_s' ({t0})")
    elif t.size and np.all(np.isfinite(t)) and (t.min() < t0 or t.max() > t1):
        out.append(
            f"variable 'spike_time' has spikes outside the window [t_start_s, t_stop_s] = [{t0}, {t1}]"
        )
    if "trial_start" in ds and "trial_stop" in ds and bool((ds["trial_stop"] <= ds["trial_start"]).any()):
        out.append("variables 'trial_start'/'trial_stop': every trial must stop after it starts")
    return out


def _split_check(ds: xr.Dataset) -> list[str]:
    if "split" not in ds:
        return []
    vals = np.unique(np.asarray(ds["split"].values))
    bad = sorted(set(vals.tolist()) - set(SPLIT_FLAGS.values()))
    if bad:
        return [f"variable 'split' has values {bad} (rule: 0 train, 1 validation, 2 test)"]
    return []


def _bin_width_check(ds: xr.Dataset) -> list[str]:
    bw = ds.attrs.get("bin_width_s")
    if "time" not in ds.coords or ds.sizes.get("time", 0) < 2 or bw is None:
        return []
    try:
        bw = float(bw)
    except (TypeError, ValueError):
        return []
    steps = np.diff(ds["time"].values) / bw
    regular = np.isclose(steps, 1.0, rtol=0, atol=1e-6)
    if np.any(~regular & (steps < 1.0)):
        return [
            f"coordinate 'time' has steps shorter than attribute 'bin_width_s' = {bw} "
            "(rule: regular bins; longer steps only at gaps where the recording was not observed)"
        ]
    return []


def _segments_checks(ds: xr.Dataset) -> list[str]:
    out = []
    n_sub = ds.sizes.get("subject", 0)
    if "segment_subject" in ds and ds["segment_subject"].size:
        s = np.asarray(ds["segment_subject"].values)
        if s.min() < 0 or s.max() >= n_sub:
            out.append(
                f"variable 'segment_subject' has indices outside [0, {n_sub}) (rule: index into 'subject')"
            )
    if "fold" in ds and ds["fold"].size and int(ds["fold"].min()) < 0:
        out.append("variable 'fold' has negative values (rule: folds are 0..k-1)")
    return out


def _metrics_checks(ds: xr.Dataset) -> list[str]:
    out = []
    if "bar_op" in ds:
        ops = set(np.asarray(ds["bar_op"].values).astype(str).tolist()) - {">=", "<=", ">", "<", ""}
        if ops:
            out.append(f"variable 'bar_op' has values {sorted(ops)} (rule: one of >=, <=, >, < or empty)")
    if "passed" in ds:
        bad = set(np.unique(ds["passed"].values).tolist()) - {-1, 0, 1}
        if bad:
            out.append(f"variable 'passed' has values {sorted(bad)} (rule: 1 pass, 0 miss, -1 no bar)")
    return out


def _model_fit_checks(ds: xr.Dataset) -> list[str]:
    role = ds.attrs.get("role")
    if role is not None and role not in ("fit", "truth"):
        return [f"attribute 'role' = {role!r} (rule: 'fit' or 'truth')"]
    return []
