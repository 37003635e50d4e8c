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

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError, InputError
from brainpipe.io._binned_files import _read_npz, _read_nwb, _read_table
from brainpipe.io._binned_parts import BINNED_SUFFIXES
from brainpipe.io._common import fail, npz_shapes, require_file

__all__ = [
    "BINNED_SUFFIXES",
    "binned_datasets",
    "binned_error",
    "finish_counts",
    "is_binned",
    "read_binned",
    "rebin",
]


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
