"""The parts of a binned-count dataset: its bin width, counts, trials, predefined split and per-bin behaviour, and
the ``spike_counts``-shaped dataset assembled from them.

Part of :mod:`brainpipe.io.binned`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.io._common import fail, short

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
