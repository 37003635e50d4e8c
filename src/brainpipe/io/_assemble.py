"""Shared helpers of the spike readers: spike-train and behaviour checks, the time window, and the assembly of a
``spike_times`` dataset (:func:`assemble`).

Part of :mod:`brainpipe.io._common`, which re-exports its public names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from brainpipe.io._files import LOG, fail, short


def check_train(path, label: str, t: np.ndarray, *, require_sorted: bool, where: str = "") -> np.ndarray:
    """One unit's spike times as float64 seconds; rejects non-finite and negative times (and unsorted ones)."""
    t = np.asarray(t, dtype=np.float64).ravel()
    what = f"unit {label}{where}"
    if t.size and not np.all(np.isfinite(t)):
        raise fail(path, f"{what} has non-finite spike times", "spike times must be finite seconds")
    if t.size and t.min() < 0:
        raise fail(
            path,
            f"{what} has negative spike times (min {t.min():.6g} s)",
            "spike times are seconds on the session clock (>= 0); shift or fix the times in the source",
        )
    if require_sorted and t.size > 1:
        bad = np.flatnonzero(np.diff(t) < 0)
        if bad.size:
            i = int(bad[0])
            raise fail(
                path,
                f"{what} has spike times that go back in time ({bad.size} place(s), first: {t[i]:.9g} s then "
                f"{t[i + 1]:.9g} s)",
                "spike times within a unit must be non-decreasing; re-export the sorting",
            )
    return t


def check_finite(path, values: np.ndarray, names: Sequence[str]) -> None:
    """Raise naming the first behaviour variable (column of ``values``) with a NaN or infinite value."""
    values = np.asarray(values, dtype=np.float64).reshape(values.shape[0], -1)
    for k, name in enumerate(names):
        n_bad = int(np.count_nonzero(~np.isfinite(values[:, k])))
        if n_bad:
            raise fail(
                path,
                f"behaviour variable '{name}' has {n_bad} NaN or infinite value(s) of {values.shape[0]}",
                "fill or drop the gaps (e.g. interpolate tracking losses) before reading, or read without behaviour",
            )


def behaviour_block(
    path,
    time: np.ndarray,
    values: np.ndarray,
    names: Sequence[str],
    units: Sequence[str] | str,
) -> dict:
    """Validate one behaviour block (finite values, strictly increasing time) for :func:`assemble`."""
    time = np.asarray(time, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64).reshape(time.size, -1)
    if isinstance(units, str):
        units = [units] * values.shape[1]
    if not np.all(np.isfinite(time)):
        raise fail(path, "behaviour timestamps have non-finite values", "fix the timestamps in the source")
    if time.size > 1 and not np.all(np.diff(time) > 0):
        raise fail(
            path, "behaviour timestamps are not strictly increasing", "drop repeated samples in the source"
        )
    check_finite(path, values, names)
    return {
        "time": time,
        "values": values,
        "names": [str(n) for n in names],
        "units": [str(u) for u in units],
    }


def assemble(
    path,
    trains: Sequence[np.ndarray],
    labels: Sequence[str],
    *,
    fmt: str,
    t_start: float,
    t_stop: float,
    observed: str,
    trials: Mapping | None = None,
    behaviour: Mapping | None = None,
    attrs: Mapping | None = None,
) -> xr.Dataset:
    """Build the ``spike_times`` dataset from per-unit spike trains (already validated, in seconds).

    ``trials``: ``{"start": array, "stop": array, "covariates": {name: array}}`` (names without ``trial_``);
    ``behaviour``: the dict of :func:`behaviour_block`. Spikes are sorted by time, ties by unit index.
    """
    labels = [str(lab) for lab in labels]
    if len(set(labels)) != len(labels):
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        raise fail(path, f"unit labels are not unique ({short(dup)})", "give every unit its own id")
    lengths = np.array([len(t) for t in trains], dtype=np.int64)
    t = np.concatenate([np.asarray(x, dtype=np.float64) for x in trains]) if trains else np.zeros(0)
    u = np.repeat(np.arange(len(trains), dtype=np.int32), lengths)
    order = np.lexsort((u, t))
    empty = [lab for lab, n in zip(labels, lengths, strict=True) if n == 0]
    if empty:
        LOG.warning(
            "%s: %d of %d unit(s) have no spikes (%s); kept, the QC stage reports or drops them",
            path,
            len(empty),
            len(labels),
            short(empty),
        )
    ds = xr.Dataset(
        {
            "spike_time": ("spike", t[order], {"units": "s", "long_name": "spike time"}),
            "spike_unit": ("spike", u[order], {"long_name": "index of the spike's unit in 'unit'"}),
        },
        coords={"unit": ("unit", np.array(labels, dtype=str), {"long_name": "unit identifier"})},
    )
    if trials is not None:
        start = np.asarray(trials["start"], dtype=np.float64)
        stop = np.asarray(trials["stop"], dtype=np.float64)
        if start.size and not np.all(stop > start):
            k = int(np.flatnonzero(~(stop > start))[0])
            raise fail(
                path,
                f"trial {k} stops ({stop[k]:.9g} s) before it starts ({start[k]:.9g} s)",
                "fix the trial table",
            )
        ds["trial_start"] = ("trial", start, {"units": "s", "long_name": "trial start"})
        ds["trial_stop"] = ("trial", stop, {"units": "s", "long_name": "trial stop"})
        for name, val in trials.get("covariates", {}).items():
            ds[f"trial_{name}"] = (
                "trial",
                np.asarray(val, dtype=np.float64),
                {"long_name": f"trial covariate {name}"},
            )
    if behaviour is not None and len(behaviour["names"]):
        units = list(dict.fromkeys(behaviour["units"]))
        battrs = {"long_name": "behaviour", "units": units[0] if len(units) == 1 else "mixed"}
        if len(units) > 1:
            battrs["units_by_var"] = "; ".join(
                f"{n}={x}" for n, x in zip(behaviour["names"], behaviour["units"], strict=True)
            )
        ds = ds.assign_coords(
            behaviour_time=(
                "behaviour_time",
                behaviour["time"],
                {"units": "s", "long_name": "behaviour sample time"},
            ),
            behaviour_var=("behaviour_var", np.array(behaviour["names"], dtype=str)),
        )
        ds["behaviour"] = (("behaviour_time", "behaviour_var"), behaviour["values"], battrs)
    ds.attrs.update(
        {
            "t_start_s": float(t_start),
            "t_stop_s": float(t_stop),
            "source": str(path),
            "format": fmt,
            "observed": observed,
        }
    )
    if attrs:
        ds.attrs.update(attrs)
    return ds


def window(path, t_all: np.ndarray, t_start: float | None, t_stop: float | None) -> tuple[float, float]:
    """The observation window: the given bounds, widened to hold every spike (just past the last one)."""
    t_all = np.asarray(t_all, dtype=np.float64)
    lo = [float(t_all.min())] if t_all.size else []
    hi = [float(np.nextafter(t_all.max(), np.inf))] if t_all.size else []
    if t_start is not None:
        lo.append(float(t_start))
    if t_stop is not None:
        hi.append(float(t_stop))
    if not lo or not hi:
        raise fail(
            path, "holds no spikes and no observation window", "check that the sorting exported any units"
        )
    t0, t1 = min(lo), max(hi)
    if not t1 > t0:
        t1 = float(np.nextafter(t0, np.inf))
    return t0, t1


def increasing_mask(t: np.ndarray) -> np.ndarray:
    """True for samples whose time is later than every earlier sample (drops repeats and steps back)."""
    t = np.asarray(t, dtype=np.float64)
    if t.size == 0:
        return np.zeros(0, dtype=bool)
    prev_max = np.maximum.accumulate(t)
    return np.concatenate([[True], t[1:] > prev_max[:-1]])
