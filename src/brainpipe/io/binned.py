"""Binned spike counts (a time x unit count matrix with its bin width), the form in which many public datasets ship
(Neural Latents Benchmark style): ``.npz``, CSV/TSV, or an NWB TimeSeries of counts -> ``spike_counts``.

A binned-count file is already binned, so it skips ``bin_spikes``: :func:`read_binned` (format ``"binned"``) reads
the counts, their bin width, the behaviour and the trials, and :func:`finish_counts` completes the ``spike_counts``
contract the models read (the workflow's ``ingest_counts`` stage calls both). Order of operations in
:func:`finish_counts`:

1. **rebin**: when the study's bin width is a whole multiple ``k`` of the file's, ``k`` consecutive bins are summed
   (behaviour: their mean) inside each unbroken stretch (no gap in time, one trial, one predefined split); a last
   partial group of a stretch is dropped. A bin width that is finer than the file's, or not a whole multiple of
   it, is a :class:`~brainpipe.errors.ConfigError` naming both widths and what to set (counts cannot be split);
2. **unit QC**: each unit's mean rate over the binned time; units under ``min_rate_hz`` are dropped, then the
   ``max_units`` most active are kept. Refractory violations cannot be seen in counts: reported as NaN;
3. **split**: the file's own per-bin ``split`` (0 train, 1 validation, 2 test) when it has one; else blocks of
   whole trials when only the trials were recorded; else contiguous time blocks
   (:func:`brainpipe.preprocess.spikes.time_block_split`).

The bin width comes from the file (an ``.npz`` scalar ``bin_width_s``, a JSON sidecar ``<table stem>.json`` with
``bin_width_s`` beside a CSV/TSV, the ``rate`` of an NWB TimeSeries, or the regular step of the bin times) or from
the reader option ``bin_width_s``; a file without one and no option is an error, and an option that disagrees with
the file is an error naming both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError, InputError
from brainpipe.io._common import LOG, fail, load_npz, npz_shapes, oneline, require_file, short

__all__ = [
    "BINNED_SUFFIXES",
    "binned_datasets",
    "binned_error",
    "finish_counts",
    "is_binned",
    "read_binned",
    "rebin",
]

#: The file types :func:`read_binned` reads.
BINNED_SUFFIXES = (".npz", ".csv", ".tsv", ".nwb")
_SPECIAL = ("time", "trial", "split", "unit", "bin_width_s", "t_start_s", "behaviour", "behaviour_var")
_XYZ = ("x", "y", "z")


# ---- the bin width ----------------------------------------------------------------------------------------------
def _positive(p, value: Any, what: str) -> float:
    try:
        v = float(np.asarray(value).reshape(-1)[0]) if np.size(value) == 1 else float("nan")
    except (TypeError, ValueError):
        v = float("nan")
    if not (np.isfinite(v) and v > 0):
        raise fail(
            p, f"{what} = {value!r} is not a positive number of seconds", "give the bin width in seconds"
        )
    return v


def _step_of(p, time: np.ndarray) -> float | None:
    """The bin width implied by bin times: their smallest step (longer steps are gaps), None for < 2 bins."""
    if time.size < 2:
        return None
    steps = np.diff(time)
    if not np.all(steps > 0):
        raise fail(
            p, "bin times are not strictly increasing", "give one increasing time per bin (bin centres)"
        )
    return round(float(steps.min()), 9)


def _bin_width(
    p, option: float | None, stated: float | None, stated_where: str, from_time: float | None
) -> float:
    """The bin width: the file's (stated, else from the bin times), checked against the option; or the option."""
    if option is not None:
        option = _positive(p, option, "bin_width_s")
    file_bw = stated if stated is not None else from_time
    if option is not None and file_bw is not None and not np.isclose(option, file_bw, rtol=1e-6, atol=1e-9):
        where = stated_where if stated is not None else "the step of its bin times"
        raise fail(
            p,
            f"bin width {file_bw} s ({where}) disagrees with the option bin_width_s = {option} s",
            "remove bin_width_s from the dataset's options (the file's is used) or fix the file",
        )
    bw = file_bw if file_bw is not None else option
    if bw is None:
        raise fail(
            p,
            "binned counts without a bin width (no bin_width_s in the file, no sidecar, fewer than 2 bin times)",
            "store bin_width_s (seconds) in the file or its JSON sidecar, or set options: {bin_width_s: ...} for "
            "this dataset",
        )
    if stated is not None and from_time is not None and from_time < stated * (1 - 1e-6):
        raise fail(
            p,
            f"bin times are {from_time} s apart, closer than the bin width {stated} s ({stated_where})",
            "give the bin centres of non-overlapping bins, or fix bin_width_s",
        )
    return float(bw)


# ---- the parts of a binned dataset ------------------------------------------------------------------------------
def _counts(p, counts: np.ndarray, where: str) -> np.ndarray:
    if counts.ndim != 2:
        raise fail(
            p, f"{where} has shape {counts.shape}", "give the counts as a 2-D array (time bins x units)"
        )
    if 0 in counts.shape:
        raise fail(
            p, f"{where} holds no bins or no units (shape {counts.shape}, time x units)", "give counts"
        )
    if counts.dtype.kind not in "biuf":
        raise fail(p, f"{where} holds {counts.dtype} values, not counts", "give whole-number spike counts")
    if counts.dtype.kind == "f":
        if not np.all(np.isfinite(counts)):
            raise fail(
                p, f"{where} has NaN or infinite counts", "give whole-number spike counts (0 for none)"
            )
        if not np.all(np.mod(counts, 1) == 0):
            raise fail(p, f"{where} holds non-whole numbers", "give spike counts per bin, not rates")
    if counts.min() < 0:
        raise fail(p, f"{where} has negative counts", "give spike counts per bin (>= 0)")
    top = int(counts.max())
    return counts.astype(np.uint8 if top < 255 else np.int32)


def _columns(name: str, n: int) -> list[str]:
    if n == 1:
        return [name]
    return [f"{name}_{c}" for c in _XYZ[:n]] if n <= 3 else [f"{name}_{k}" for k in range(n)]


def _trial_index(p, trial: np.ndarray, where: str) -> np.ndarray:
    t = np.asarray(trial, dtype=np.float64)
    t = np.where(np.isnan(t), -1.0, t)
    if not np.all(np.mod(t, 1) == 0) or t.min(initial=0) < -1:
        raise fail(
            p,
            f"{where} holds values that are not trial numbers",
            "give a whole trial number per bin, -1 or empty between trials",
        )
    # renumber 0..n-1 in order of first appearance (files number trials from 1, or by id)
    out = np.full(t.shape, -1, dtype=np.int32)
    ids = [v for v in dict.fromkeys(t.tolist()) if v >= 0]
    for k, v in enumerate(ids):
        out[t == v] = k
    return out


_SPLIT_WORDS = {"train": 0, "training": 0, "val": 1, "valid": 1, "validation": 1, "test": 2, "testing": 2}


def _split(p, split: np.ndarray, where: str) -> np.ndarray:
    s = np.asarray(split)
    if s.dtype.kind in "US":
        words = np.char.lower(s.astype(str))
        bad = sorted(set(words.tolist()) - set(_SPLIT_WORDS))
        if bad:
            raise fail(p, f"{where} has values {short(bad)}", "use train/validation/test (or 0/1/2)")
        return np.array([_SPLIT_WORDS[w] for w in words], dtype=np.int8)
    if s.dtype.kind not in "biuf" or not set(np.unique(s).tolist()) <= set(SPLIT_FLAGS.values()):
        raise fail(p, f"{where} has values other than 0/1/2", "use 0 train, 1 validation, 2 test")
    return s.astype(np.int8)


def _assemble(
    p: Path,
    counts: np.ndarray,
    bw: float,
    *,
    time: np.ndarray | None,
    t_start: float,
    units: Sequence[str] | None,
    behaviour: list[tuple[str, np.ndarray]],
    trial: np.ndarray | None,
    split: np.ndarray | None,
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    n_bins, n_units = counts.shape
    if time is None:
        time = t_start + (np.arange(n_bins) + 0.5) * bw
    time = np.asarray(time, dtype=np.float64)
    if time.shape != (n_bins,):
        raise fail(p, f"bin times have shape {time.shape}, expected ({n_bins},)", "give one time per bin")
    if not np.all(np.isfinite(time)):
        raise fail(p, "bin times have NaN or infinite values", "give finite bin centres in seconds")
    if units is None:
        width = max(3, len(str(n_units - 1)))
        units = [f"u{i:0{width}d}" for i in range(n_units)]
    units = [str(u) for u in units]
    if len(units) != n_units or len(set(units)) != n_units:
        raise fail(
            p,
            f"unit labels ({len(units)}, {len(set(units))} distinct) do not name the {n_units} units "
            "one each",
            "give one distinct label per count column",
        )
    gaps = time.size > 1 and bool(np.any(np.diff(time) > 1.5 * bw))
    ds = xr.Dataset(
        {"counts": (("time", "unit"), counts, {"units": "1", "long_name": "spike count per bin"})},
        coords={"time": ("time", time, {"units": "s", "long_name": "bin centre"}), "unit": np.array(units)},
        attrs={
            "bin_width_s": float(bw),
            "t_start_s": float(time[0] - bw / 2),
            "source": str(p),
            "format": "binned",
            "observed": "trials" if gaps and trial is not None else "continuous",
            **attrs,
        },
    )
    if behaviour:
        names = [n for n, _ in behaviour]
        if len(set(names)) != len(names):
            raise fail(p, f"behaviour variable names repeat ({short(names)})", "rename them")
        vals = np.column_stack([v for _, v in behaviour]).astype(np.float64)
        bad = [n for n, ok in zip(names, np.isfinite(vals).all(axis=0), strict=True) if not ok]
        if bad:
            raise fail(p, f"behaviour {short(bad)} has NaN or infinite values", "fill or drop those bins")
        ds["behaviour"] = (("time", "behaviour_var"), vals, {"long_name": "behaviour"})
        ds = ds.assign_coords(behaviour_var=np.array(names))
    if trial is not None:
        ds["trial"] = ("time", trial.astype(np.int32), {"long_name": "trial index (-1 outside trials)"})
    if split is not None:
        ds["split"] = ("time", split.astype(np.int8), {"long_name": "data split (from the file)"})
    return ds


def _per_bin(
    p, arrays: Mapping[str, np.ndarray], keys, n_bins: int, default_all: bool
) -> list[tuple[str, np.ndarray]]:
    """Behaviour variables: the named keys, or (``default_all``) every other numeric per-bin array."""
    if keys is None:
        if not default_all:
            return []
        keys = [
            k
            for k, v in arrays.items()
            if k not in _SPECIAL and v.ndim in (1, 2) and v.shape[0] == n_bins and v.dtype.kind in "biuf"
        ]
    elif isinstance(keys, str):
        keys = [keys]
    out = []
    for k in keys:
        if k not in arrays:
            raise fail(p, f"has no behaviour '{k}' (found {short(list(arrays), 12)})", "fix behaviour_keys")
        v = np.asarray(arrays[k])
        if v.dtype.kind not in "biuf" or v.ndim not in (1, 2) or v.shape[0] != n_bins:
            raise fail(
                p,
                f"behaviour '{k}' has shape {v.shape} and dtype {v.dtype}",
                f"give one number (or row) per bin ({n_bins} bins)",
            )
        v = v.reshape(n_bins, -1)
        out += [(n, v[:, j]) for j, n in enumerate(_columns(k, v.shape[1]))]
    return out


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


def read_binned(
    path: str | os.PathLike,
    bin_width_s: float | None = None,
    counts_key: str = "counts",
    behaviour_keys: str | Sequence[str] | None = None,
    trial_key: str = "trial",
    sep: str | None = None,
) -> xr.Dataset:
    """Read binned spike counts (time x unit) with their bin width, behaviour and trials.

    * ``.npz`` (loaded without pickle): ``counts_key`` (time bins x units, whole numbers >= 0); the bin width in
      a scalar ``bin_width_s``; optional ``time`` (bin centres, s; default ``t_start_s + (k + 1/2) * width``,
      ``t_start_s`` a scalar or 0), ``unit`` (labels), ``trial_key`` (trial number per bin; -1 or NaN between
      trials), ``split`` (per bin: 0/1/2 or train/validation/test), behaviour as ``behaviour`` (time x var, names in
      ``behaviour_var``) or one array per variable (every other numeric array with one value or row per bin, or the
      ``behaviour_keys`` named); other scalars become attributes.
    * CSV/TSV (``sep`` default: tab for ``.tsv``, else comma): a header row, one row per bin; columns ``time``,
      ``trial_key``, ``split`` (as above) and the ``behaviour_keys``; every other column is a unit's counts (its
      name the unit's label). The bin width in a JSON sidecar ``<stem>.json`` (``{"bin_width_s": ...,
      "t_start_s": ...}``) or from the regular step of ``time``.
    * ``.nwb``: the TimeSeries named ``counts_key`` (in ``acquisition`` or a processing module; data bins x units);
      the bin width is ``1 / rate`` (or the step of its timestamps, which mark bin starts); every other
      TimeSeries on the same clock (or the ``behaviour_keys`` named) is behaviour; the trials table labels the bins.

    Parameters
    ----------
    path : str or PathLike
        The file (:data:`BINNED_SUFFIXES`).
    bin_width_s : float, optional
        The bin width in seconds, for a file that does not state one; it must agree with the file's when both are
        given.
    counts_key : str, default "counts"
        The counts array (npz) or TimeSeries (NWB).
    behaviour_keys : str or list of str, optional
        The behaviour arrays/columns/series (default: npz and NWB, every other per-bin array; CSV, none).
    trial_key : str, default "trial"
        The per-bin trial number array/column.
    sep : str, optional
        The CSV/TSV separator.

    Returns
    -------
    xarray.Dataset
        ``counts(time, unit)`` (bin centres), optional ``behaviour(time, behaviour_var)``, ``trial(time)`` and
        ``split(time)``; attrs ``bin_width_s``, ``t_start_s``, ``source``, ``format = "binned"``, ``observed``
        (``"trials"`` when the bins have gaps between trials). :func:`finish_counts` makes it a ``spike_counts``.

    Raises
    ------
    InputError
        One line naming the file: no bin width, a bin width that disagrees with ``bin_width_s``, counts that are
        not whole numbers >= 0, per-bin arrays of another length, ...
    """
    p = require_file(path, "binned-count file")
    suf = p.suffix.lower()
    if suf == ".npz":
        return _read_npz(p, bin_width_s, counts_key, behaviour_keys, trial_key)
    if suf in (".csv", ".tsv", ".tab"):
        return _read_table(p, bin_width_s, behaviour_keys, trial_key, sep)
    if suf == ".nwb":
        return _read_nwb(p, bin_width_s, counts_key, behaviour_keys)
    raise fail(p, f"is a '{p.suffix}' file", f"give binned counts as one of {', '.join(BINNED_SUFFIXES)}")


def is_binned(path: str | os.PathLike, counts_key: str = "counts") -> bool:
    """Detect binned counts: an ``.npz`` whose ``counts_key`` array is 2-D (CSV and NWB need ``format: binned``).

    Parameters
    ----------
    path : str or PathLike
        An existing path.
    counts_key : str, default "counts"
        The counts array's name.

    Returns
    -------
    bool
    """
    p = Path(path)
    return p.is_file() and p.name.lower().endswith(".npz") and len(npz_shapes(p).get(counts_key, ())) == 2


def binned_datasets(datasets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The spike datasets read from binned counts: ``format: binned``, or ``auto`` on a path :func:`is_binned` accepts.

    Parameters
    ----------
    datasets : mapping
        ``spikes.datasets`` of a study config (name -> entry).

    Returns
    -------
    list of str
        Their names, sorted (the workflow reads them with ``ingest_counts`` instead of ``ingest_spikes`` +
        ``bin_spikes``).
    """
    out = []
    for name, entry in datasets.items():
        if "path" not in entry:
            continue
        fmt = entry.get("format", "auto")
        key = (entry.get("options") or {}).get("counts_key", "counts")
        try:
            binned = fmt == "binned" or (fmt == "auto" and is_binned(entry["path"], key))
        except InputError:  # an unreadable file: the ingest stage names the problem
            binned = False
        if binned:
            out.append(name)
    return sorted(out)


# ---- completing the spike_counts contract -----------------------------------------------------------------------
def _stretches(ds: xr.Dataset) -> np.ndarray:
    """Index of the unbroken stretch of each bin: a new one at a gap, a trial change or a split change."""
    n = ds.sizes["time"]
    brk = np.zeros(n, dtype=bool)
    if n:
        brk[0] = True
    t = np.asarray(ds["time"].values)
    bw = float(ds.attrs["bin_width_s"])
    brk[1:] |= np.diff(t) > 1.5 * bw
    for v in ("trial", "split"):
        if v in ds:
            x = np.asarray(ds[v].values)
            brk[1:] |= x[1:] != x[:-1]
    return np.cumsum(brk) - 1


def rebin(ds: xr.Dataset, factor: int) -> xr.Dataset:
    """Sum ``factor`` consecutive bins inside each unbroken stretch (a partial last group of a stretch is dropped).

    Parameters
    ----------
    ds : xarray.Dataset
        Binned counts (:func:`read_binned`).
    factor : int
        Bins per new bin (>= 1).

    Returns
    -------
    xarray.Dataset
        Counts summed, behaviour averaged, trial and split kept, bin centres at the groups' centres and
        ``bin_width_s`` multiplied by ``factor``.
    """
    if factor == 1:
        return ds
    seg = _stretches(ds)
    groups = np.full(seg.size, -1, dtype=np.int64)
    g = 0
    for s in np.unique(seg):
        idx = np.flatnonzero(seg == s)
        n_full = idx.size // factor
        if n_full:
            groups[idx[: n_full * factor]] = g + np.repeat(np.arange(n_full), factor)
            g += n_full
    keep = groups >= 0
    gi = groups[keep]
    counts = np.asarray(ds["counts"].values)[keep]
    summed = np.zeros((g, counts.shape[1]), dtype=np.int64)
    np.add.at(summed, gi, counts)
    first = np.flatnonzero(keep)[np.r_[0, np.flatnonzero(np.diff(gi)) + 1]] if g else np.zeros(0, int)
    t = np.asarray(ds["time"].values)[keep]
    centre = np.bincount(gi, weights=t, minlength=g) / factor
    out = xr.Dataset(
        {
            "counts": (
                ("time", "unit"),
                summed.astype(np.uint8 if summed.max(initial=0) < 255 else np.int32),
                dict(ds["counts"].attrs),
            )
        },
        coords={"time": ("time", centre, dict(ds["time"].attrs)), "unit": ds["unit"].values},
        attrs=dict(ds.attrs, bin_width_s=float(ds.attrs["bin_width_s"]) * factor),
    )
    out.attrs["t_start_s"] = float(centre[0] - out.attrs["bin_width_s"] / 2) if g else ds.attrs["t_start_s"]
    if "behaviour" in ds:
        b = np.asarray(ds["behaviour"].values)[keep]
        mean = (
            np.column_stack([np.bincount(gi, weights=b[:, k], minlength=g) for k in range(b.shape[1])])
            / factor
        )
        out["behaviour"] = (("time", "behaviour_var"), mean, dict(ds["behaviour"].attrs))
        out = out.assign_coords(behaviour_var=ds["behaviour_var"].values)
    for v in ("trial", "split"):
        if v in ds:
            out[v] = ("time", np.asarray(ds[v].values)[first], dict(ds[v].attrs))
    return out


def finish_counts(
    ds: xr.Dataset,
    bin_width_s: float,
    fractions: Mapping[str, float] | None = None,
    n_blocks: int = 5,
    min_rate_hz: float = 0.0,
    max_units: int | None = None,
) -> xr.Dataset:
    """Complete binned counts into a ``spike_counts`` dataset: rebin, unit QC, split (see the module docstring).

    Parameters
    ----------
    ds : xarray.Dataset
        Binned counts from :func:`read_binned`.
    bin_width_s : float
        The study's bin width: the file's, or a whole multiple of it.
    fractions : mapping, optional
        ``train``/``validation``/``test`` fractions (default 0.6/0.2/0.2).
    n_blocks : int, default 5
        Time blocks of the split (for trial data, at most a third of the trials).
    min_rate_hz : float, default 0.0
        Units with a lower mean rate are dropped.
    max_units : int, optional
        Keep at most this many units, the most active.

    Returns
    -------
    xarray.Dataset
        A ``spike_counts`` dataset with ``qc_rate_hz``, ``qc_refractory_violation_fraction`` (NaN) and ``qc_kept``
        on ``qc_unit`` (every unit of the file), like ``bin_spikes`` writes; attrs also ``source_bin_width_s``.

    Raises
    ------
    ConfigError
        ``bin_width_s`` is not a whole multiple of the file's, or no unit passes QC, or too few bins to split.
    """
    from brainpipe.preprocess.spikes import select_units, time_block_split

    src = ds.attrs.get("source", "binned counts")
    file_bw = float(ds.attrs["bin_width_s"])
    want = float(bin_width_s)
    k = want / file_bw
    if not (k > 1 - 1e-6 and abs(k - round(k)) < 1e-6):
        raise ConfigError(
            f"{src}: the counts are binned at {file_bw:g} s and bin_width_s = {want:g} s is not a whole multiple "
            f"of it (counts can be summed into wider bins, never split); set bin_width_s to {file_bw:g} s or a "
            "multiple of it for this dataset"
        )
    out = rebin(ds, int(round(k)))
    if out.sizes["time"] < 3:
        raise ConfigError(
            f"{src}: bin_width_s = {want:g} s leaves {out.sizes['time']} bins (need at least 3)"
        )
    # unit QC on the counts
    counts = np.asarray(out["counts"].values)
    duration = out.sizes["time"] * want
    rate = counts.sum(axis=0) / duration
    keep = select_units(rate, min_rate_hz, max_units)
    units = np.asarray(out["unit"].values)
    qc = xr.Dataset(
        {
            "qc_rate_hz": (
                "qc_unit",
                rate,
                {"units": "Hz", "long_name": "mean firing rate over the observed time"},
            ),
            "qc_refractory_violation_fraction": (
                "qc_unit",
                np.full(rate.size, np.nan),
                {
                    "long_name": "fraction of inter-spike intervals under the refractory period (NaN: binned counts "
                    "carry no spike times)"
                },
            ),
            "qc_kept": ("qc_unit", keep.astype(np.int8), {"long_name": "1 if the unit passed QC"}),
        },
        coords={"qc_unit": units},
    )
    out = out.isel(unit=np.flatnonzero(keep))
    # split
    fractions = dict(fractions or {"train": 0.6, "validation": 0.2, "test": 0.2})
    trials_only = out.attrs.get("observed") == "trials" and "trial" in out and bool((out["trial"] >= 0).all())
    if "split" in out:
        split, rule = np.asarray(out["split"].values, dtype=np.int8), "predefined per bin (from the file)"
    elif trials_only:
        trial = np.asarray(out["trial"].values)
        n_trials = int(trial.max()) + 1
        split = time_block_split(n_trials, fractions, min(n_blocks, max(1, n_trials // 3)))[trial]
        rule = "blocks of whole trials"
    else:
        split, rule = time_block_split(out.sizes["time"], fractions, n_blocks), "time blocks"
    out["split"] = (
        "time",
        split.astype(np.int8),
        {
            "long_name": "data split",
            "flag_values": np.array(list(SPLIT_FLAGS.values()), dtype=np.int8),
            "flag_meanings": " ".join(SPLIT_FLAGS),
        },
    )
    out.attrs.update(
        source_bin_width_s=file_bw,
        split_n_blocks=int(n_blocks),
        split_fractions=" ".join(f"{k}={v}" for k, v in fractions.items()),
        split_rule=rule,
    )
    return out.merge(qc)


def binned_error(path: str | os.PathLike) -> InputError:
    """The error of a spike-times stage given binned counts (they go through ``ingest_counts`` instead)."""
    return fail(
        path,
        "holds binned counts (format 'binned'), not spike times",
        "read it with brainpipe.io.binned.read_binned (the workflow's ingest_counts stage writes its spike_counts "
        "without re-binning)",
    )
