"""The readers of each binned-count file type: ``.npz``, CSV/TSV (with a JSON sidecar) and an NWB TimeSeries of
counts.

Part of :mod:`brainpipe.io.binned`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from brainpipe.io._binned_parts import (
    _SPECIAL,
    _assemble,
    _bin_width,
    _columns,
    _counts,
    _per_bin,
    _positive,
    _split,
    _step_of,
    _trial_index,
)
from brainpipe.io._common import LOG, fail, load_npz, oneline, short


# ---- the readers of each file type ------------------------------------------------------------------------------
def _read_npz(p, bin_width_s, counts_key, behaviour_keys, trial_key) -> xr.Dataset:
    arrays = load_npz(p, "binned-count .npz")
    if counts_key not in arrays:
        have = ", ".join(f"{k}{tuple(v.shape)}" for k, v in arrays.items()) or "none"
        raise fail(p, f"has no array '{counts_key}' (found {have})", "name the counts array with counts_key")
    counts = _counts(p, arrays[counts_key], f"array '{counts_key}'")
    n_bins = counts.shape[0]
    time = arrays.get("time")
    if time is not None and (time.dtype.kind not in "biuf" or time.shape != (n_bins,)):
        raise fail(
            p,
            f"array 'time' has shape {time.shape}, dtype {time.dtype}",
            f"give one bin centre per bin ({n_bins}) in seconds",
        )
    time = None if time is None else time.astype(np.float64)
    stated = _positive(p, arrays["bin_width_s"], "array 'bin_width_s'") if "bin_width_s" in arrays else None
    bw = _bin_width(
        p, bin_width_s, stated, "array 'bin_width_s'", None if time is None else _step_of(p, time)
    )
    t_start = _positive(p, arrays["t_start_s"], "t_start_s") if "t_start_s" in arrays else 0.0
    units = arrays.get("unit")
    if units is not None and (units.ndim != 1 or units.dtype.kind not in "iuUS"):
        raise fail(p, f"array 'unit' has shape {units.shape}, dtype {units.dtype}", "give one label per unit")
    beh: list[tuple[str, np.ndarray]] = []
    if "behaviour" in arrays and behaviour_keys is None:
        b = arrays["behaviour"].reshape(n_bins, -1) if arrays["behaviour"].shape[:1] == (n_bins,) else None
        if b is None or b.dtype.kind not in "biuf":
            raise fail(p, f"array 'behaviour' has shape {arrays['behaviour'].shape}", "give one row per bin")
        names = (
            list(arrays["behaviour_var"].astype(str))
            if "behaviour_var" in arrays
            else _columns("behaviour", b.shape[1])
        )
        if len(names) != b.shape[1]:
            raise fail(p, f"'behaviour_var' names {len(names)} variables for {b.shape[1]} columns", "fix it")
        beh = [(n, b[:, j]) for j, n in enumerate(names)]
    skip = {counts_key, trial_key}
    beh += _per_bin(
        p,
        {k: v for k, v in arrays.items() if k not in skip},
        behaviour_keys,
        n_bins,
        default_all="behaviour" not in arrays,
    )
    trial = _trial_index(p, arrays[trial_key], f"array '{trial_key}'") if trial_key in arrays else None
    if trial is not None and trial.shape != (n_bins,):
        raise fail(p, f"array '{trial_key}' has {trial.size} values for {n_bins} bins", "give one per bin")
    split = _split(p, arrays["split"], "array 'split'") if "split" in arrays else None
    attrs = {}
    for k, v in arrays.items():
        if v.ndim == 0 and k not in _SPECIAL and v.dtype.kind in "biufUS":
            item = v.item()
            attrs[k] = int(item) if isinstance(item, bool) else item
    return _assemble(
        p,
        counts,
        bw,
        time=time,
        t_start=t_start,
        units=None if units is None else units.astype(str),
        behaviour=beh,
        trial=trial,
        split=split,
        attrs=attrs,
    )


def _sidecar(p: Path) -> tuple[dict, Path | None]:
    side = p.with_suffix(".json")
    if not side.is_file():
        return {}, None
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise fail(side, f"sidecar is not valid JSON ({oneline(err)})", "fix or remove it") from None
    if not isinstance(meta, dict):
        raise fail(side, "sidecar is not a JSON object", 'write {"bin_width_s": <seconds>}')
    return meta, side


def _read_table(p, bin_width_s, behaviour_keys, trial_key, sep) -> xr.Dataset:
    import pandas as pd

    sep = sep or ("\t" if p.suffix.lower() in (".tsv", ".tab") else ",")
    try:
        df = pd.read_csv(p, sep=sep)
    except (ValueError, OSError) as err:
        raise fail(
            p,
            f"cannot be read as a table ({type(err).__name__}: {oneline(err)})",
            "write a CSV/TSV with a header row: one column per unit (counts), one row per bin",
        ) from None
    if df.empty:
        raise fail(p, "has no rows (no bins)", "give one row per bin")
    meta, side = _sidecar(p)
    stated = _positive(side, meta["bin_width_s"], "sidecar bin_width_s") if "bin_width_s" in meta else None
    time = None
    if "time" in df.columns:
        time = pd.to_numeric(df["time"], errors="coerce").to_numpy(np.float64)
    bw = _bin_width(
        p,
        bin_width_s,
        stated,
        f"sidecar {side.name}" if side else "",
        None if time is None else _step_of(p, time),
    )
    keys = [behaviour_keys] if isinstance(behaviour_keys, str) else list(behaviour_keys or [])
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise fail(
            p,
            f"has no behaviour column(s) {short(missing)} (columns: {short(list(df.columns), 12)})",
            "fix behaviour_keys",
        )
    special = {"time", trial_key, "split", *keys}
    unit_cols = [c for c in df.columns if c not in special]
    if not unit_cols:
        raise fail(
            p, "has no count columns (every column is time, trial, split or behaviour)", "add the counts"
        )
    nonint = [
        c
        for c in unit_cols
        if df[c].dtype.kind not in "iu"
        and not (df[c].dtype.kind == "f" and np.all(np.isfinite(df[c])) and np.all(np.mod(df[c], 1) == 0))
    ]
    if nonint:
        raise fail(
            p,
            f"column(s) {short(nonint)} do not hold whole-number counts",
            "list behaviour columns in behaviour_keys (every other column is a unit's counts)",
        )
    counts = _counts(p, df[unit_cols].to_numpy(), "the count columns")
    beh = []
    for k in keys:
        v = pd.to_numeric(df[k], errors="coerce").to_numpy(np.float64)
        beh.append((str(k), v))
    trial = (
        _trial_index(p, pd.to_numeric(df[trial_key], errors="coerce").to_numpy(), f"column '{trial_key}'")
        if trial_key in df.columns
        else None
    )
    split = _split(p, df["split"].to_numpy(), "column 'split'") if "split" in df.columns else None
    t_start = _positive(side, meta["t_start_s"], "sidecar t_start_s") if "t_start_s" in meta else 0.0
    return _assemble(
        p,
        counts,
        bw,
        time=time,
        t_start=t_start,
        units=[str(c) for c in unit_cols],
        behaviour=beh,
        trial=trial,
        split=split,
        attrs={},
    )


def _read_nwb(p, bin_width_s, counts_key, behaviour_keys) -> xr.Dataset:
    from pynwb.base import TimeSeries

    from brainpipe.io._nwb import _series_clock, _series_walk, open_nwb

    with open_nwb(p) as nwb:
        found = {}
        for name, s in nwb.acquisition.items():
            if isinstance(s, TimeSeries):
                found[name] = s
        for name, s in _series_walk(nwb):
            found.setdefault(name, s)
        if counts_key not in found:
            raise fail(
                p,
                f"has no TimeSeries '{counts_key}' (found {short(sorted(found), 12) or 'none'})",
                "name the TimeSeries of counts with counts_key",
            )
        series = found[counts_key]
        counts = _counts(p, np.asarray(series.data[:]), f"TimeSeries '{counts_key}'")
        n_bins = counts.shape[0]
        time = np.asarray(series.timestamps[:], dtype=np.float64) if series.timestamps is not None else None
        stated = 1.0 / float(series.rate) if series.rate else None
        bw = _bin_width(
            p,
            bin_width_s,
            stated,
            f"the rate of TimeSeries '{counts_key}'",
            None if time is None else _step_of(p, time),
        )
        t0 = float(series.starting_time or 0.0) if series.rate else 0.0
        if time is None:
            time = t0 + (np.arange(n_bins) + 0.5) * bw  # a rate clock counts bins from starting_time
        else:
            time = time + 0.5 * bw  # NWB timestamps mark the start of each sample (bin)
        beh = []
        keys = [behaviour_keys] if isinstance(behaviour_keys, str) else behaviour_keys
        for name, s in found.items():
            if name == counts_key or (keys is not None and name not in keys):
                continue
            t = _series_clock(s)
            data = np.asarray(s.data[:])
            if data.dtype.kind not in "biuf" or data.shape[0] != n_bins or t is None:
                if keys is not None:
                    raise fail(
                        p,
                        f"behaviour '{name}' has {data.shape[0]} samples for {n_bins} bins",
                        "give behaviour on the bins' clock",
                    )
                LOG.info("%s: TimeSeries '%s' is not on the bins' clock; skipped", p, name)
                continue
            v = data.reshape(n_bins, -1).astype(np.float64) * float(s.conversion)
            beh += [(n, v[:, j]) for j, n in enumerate(_columns(name, v.shape[1]))]
        if keys is not None:
            missing = [k for k in keys if k not in found]
            if missing:
                raise fail(p, f"has no TimeSeries {short(missing)}", "fix behaviour_keys")
        trial = None
        if nwb.trials is not None and len(nwb.trials):
            start = np.asarray(nwb.trials["start_time"].data[:], dtype=np.float64)
            stop = np.asarray(nwb.trials["stop_time"].data[:], dtype=np.float64)
            trial = np.full(n_bins, -1, dtype=np.int32)
            for k, (a, z) in enumerate(zip(start, stop, strict=True)):
                trial[(time >= a) & (time < z)] = k
        attrs = {"identifier": str(nwb.identifier)}
    return _assemble(
        p, counts, bw, time=time, t_start=t0, units=None, behaviour=beh, trial=trial, split=None, attrs=attrs
    )
