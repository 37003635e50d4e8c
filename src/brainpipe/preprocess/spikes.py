"""Spike preprocessing: spike times -> binned counts with aligned behaviour and a time-block split.

Order of operations in :func:`bin_spikes`:

1. bin edges ``t_start + k * bin_width`` over the observation window (a last partial bin is dropped); when
   only the trials were observed (attr ``observed = "trials"``), one such grid per trial, from its start;
2. count each unit's spikes per bin (left-closed bins);
3. behaviour: the mean of the samples falling in each bin; bins without a sample take the value linearly
   interpolated at the bin centre (so both faster and slower behaviour clocks are handled); behaviour that does
   not cover the binned span (beyond one bin plus one sampling step at either end) is an InputError, not a
   silently extrapolated constant;
4. trials: each bin gets the index of its trial (-1 between trials); for trial data the time coordinate has
   gaps between trials, and per-trial covariates ``trial_<name>`` become ``stimulus`` variables;
5. split: a predefined per-trial ``trial_split`` when the data carry one, else blocks of whole trials (trial
   data), else :func:`time_block_split` over bins: contiguous blocks train/validation/test.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError, InputError


def time_block_split(n_bins: int, fractions: Mapping[str, float], n_blocks: int) -> np.ndarray:
    """Label bins train (0) / validation (1) / test (2) in contiguous time blocks.

    The recording is cut into ``n_blocks`` equal chunks; each chunk is split, in time order, into a train,
    a validation and a test block with the given fractions. Blocks are contiguous (neighbouring bins are
    strongly correlated, so random bins would leak) and interleaved across the recording (so slow drifts
    affect every split alike). ``n_blocks=1`` gives one train block, then validation, then test.

    Parameters
    ----------
    n_bins : int
        Number of bins (at least 3 per block).
    fractions : mapping
        ``train``, ``validation`` and ``test`` fractions (>= 0, summing to 1; train and test > 0).
    n_blocks : int
        Number of chunks the recording is cut into.

    Returns
    -------
    numpy.ndarray
        (n_bins,) int8 split flags (:data:`brainpipe.data.SPLIT_FLAGS`).

    Raises
    ------
    brainpipe.errors.ConfigError
        Fractions that do not sum to 1, or too few bins for the blocks.

    Examples
    --------
    >>> time_block_split(10, {"train": 0.6, "validation": 0.2, "test": 0.2}, n_blocks=1)
    array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2], dtype=int8)
    """
    fr = np.array([fractions.get(k, 0.0) for k in ("train", "validation", "test")], dtype=float)
    if np.any(fr < 0) or not np.isclose(fr.sum(), 1.0) or fr[0] <= 0 or fr[2] <= 0:
        raise ConfigError(
            f"split fractions {dict(fractions)} must be >= 0, sum to 1, with train and test > 0"
        )
    if n_blocks < 1 or n_bins < 3 * n_blocks:
        raise ConfigError(f"split: n_blocks={n_blocks} needs at least 3 bins per block ({n_bins} bins)")
    split = np.empty(n_bins, dtype=np.int8)
    edges = np.linspace(0, n_bins, n_blocks + 1).round().astype(int)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        cut = lo + np.round(np.cumsum(fr) * (hi - lo)).astype(int)
        split[lo : cut[0]] = SPLIT_FLAGS["train"]
        split[cut[0] : cut[1]] = SPLIT_FLAGS["validation"]
        split[cut[1] : hi] = SPLIT_FLAGS["test"]
    return split


def _bin_mean(t_samples: np.ndarray, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mean of the samples inside each bin [lo, hi); bins without a sample: interpolation at the bin centre."""
    centres = 0.5 * (lo + hi)
    idx = np.searchsorted(lo, t_samples, side="right") - 1
    ok = (idx >= 0) & (t_samples < hi[np.clip(idx, 0, None)])
    out = np.empty((centres.size, values.shape[1]))
    n = np.bincount(idx[ok], minlength=centres.size)
    for k in range(values.shape[1]):
        s = np.bincount(idx[ok], weights=values[ok, k], minlength=centres.size)
        interp = np.interp(centres, t_samples, values[:, k])
        out[:, k] = np.where(n > 0, s / np.maximum(n, 1), interp)
    return out


def _check_coverage(t_samples: np.ndarray, lo: np.ndarray, hi: np.ndarray, source: str) -> None:
    """Behaviour must cover the binned spikes: a bin farther than one bin width plus one sampling step from the
    behaviour's first/last sample would be filled with an extrapolated constant, so that is an error."""
    if t_samples.size == 0 or lo.size == 0:
        return
    step = float(np.median(np.diff(t_samples))) if t_samples.size > 1 else 0.0
    slack = float(hi[0] - lo[0]) + step
    if t_samples[0] > lo[0] + slack or t_samples[-1] < hi[-1] - slack:
        raise InputError(
            f"{source}: behaviour covers {t_samples[0]:.3f}-{t_samples[-1]:.3f} s but the spikes are binned over "
            f"{lo[0]:.3f}-{hi[-1]:.3f} s; give behaviour recorded over the whole session or restrict the spikes to its "
            "span (t_start_s/t_stop_s of the dataset)"
        )


def _trial_covariates(spikes: xr.Dataset) -> list[str]:
    skip = {"trial_start", "trial_stop", "trial_split"}
    return [
        str(v)
        for v in spikes.data_vars
        if str(v).startswith("trial_")
        and v not in skip
        and spikes[v].dims == ("trial",)
        and spikes[v].dtype.kind in "fiub"
    ]


def _bin_grid(spikes: xr.Dataset, bin_width_s: float, trials_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """Bin starts and the trial index of each bin. Continuous data: one grid over the observation window.
    Trial data: one grid per trial starting at its start (a last partial bin of each trial is dropped)."""
    if not trials_only:
        t0, t1 = float(spikes.attrs["t_start_s"]), float(spikes.attrs["t_stop_s"])
        n = int(np.floor((t1 - t0) / bin_width_s + 1e-9))
        return t0 + np.arange(n) * bin_width_s, np.full(n, -1, dtype=np.int32)
    starts, trial = [], []
    for k, (a, z) in enumerate(zip(spikes["trial_start"].values, spikes["trial_stop"].values, strict=True)):
        n = int(np.floor((z - a) / bin_width_s + 1e-9))
        starts.append(a + np.arange(n) * bin_width_s)
        trial.append(np.full(n, k, dtype=np.int32))
    order_ok = all(np.all(np.diff(np.r_[x]) > 0) for x in starts)
    lo = np.concatenate(starts) if starts else np.zeros(0)
    if not order_ok or (lo.size > 1 and np.any(np.diff(lo) < bin_width_s * (1 - 1e-9))):
        raise ConfigError(
            "trials overlap or are not sorted by start time: cannot bin them as separate windows"
        )
    return lo, np.concatenate(trial) if trial else np.zeros(0, np.int32)


@fill_doc
def bin_spikes(
    spikes: xr.Dataset,
    bin_width_s: float,
    fractions: Mapping[str, float] | None = None,
    n_blocks: int = 5,
) -> xr.Dataset:
    """Bin a ``spike_times`` dataset into a ``spike_counts`` dataset (see the module doc for the order).

    Parameters
    ----------
    spikes : xarray.Dataset
        A ``spike_times`` dataset (after :func:`unit_qc`, typically), with its behaviour and trials if any.
    %(bin_width_s)s
    fractions : mapping, optional
        ``train``/``validation``/``test`` fractions of the split (default 0.6/0.2/0.2).
    n_blocks : int, default 5
        Number of time blocks of the split (:func:`time_block_split`); for trial data, at most a third of the
        number of trials.

    Returns
    -------
    xarray.Dataset
        A ``spike_counts`` dataset: ``counts`` (time x unit), ``split`` per bin, ``behaviour`` (time x
        behaviour_var) and the trial variables when the data have them; ``bin_width_s`` in its attrs.

    Raises
    ------
    brainpipe.errors.InputError
        Behaviour that does not cover the binned span, or too few bins for the split.

    Examples
    --------
    >>> from brainpipe.preprocess import bin_spikes
    >>> from brainpipe.simulate import simulate
    >>> sim = simulate("poisson_glm_network", {"n_neurons": 5, "duration_s": 10}, seed=0)
    >>> counts = bin_spikes(sim.data, bin_width_s=0.05)
    >>> dict(counts.sizes)
    {'time': 200, 'unit': 5, 'behaviour_var': 1}
    >>> list(counts.data_vars)
    ['counts', 'split', 'behaviour']
    """
    if not bin_width_s > 0:
        raise ConfigError(f"bin_width_s must be > 0 (got {bin_width_s})")
    has_trials = "trial_start" in spikes and spikes.sizes.get("trial", 0) > 0
    trials_only = has_trials and spikes.attrs.get("observed", "continuous") == "trials"
    lo, bin_trial = _bin_grid(spikes, float(bin_width_s), trials_only)
    n_bins = lo.size
    if n_bins < 3:
        raise ConfigError(
            f"bin_width_s={bin_width_s} leaves {n_bins} bins in the recording (need at least 3)"
        )
    hi = lo + bin_width_s
    centres = lo + 0.5 * bin_width_s
    n_units = spikes.sizes["unit"]
    t = spikes["spike_time"].values
    u = spikes["spike_unit"].values.astype(np.int64)
    b = np.searchsorted(lo, t, side="right") - 1
    keep = (b >= 0) & (t < hi[np.clip(b, 0, None)])
    flat = np.bincount(b[keep] * n_units + u[keep], minlength=n_bins * n_units)
    counts = flat.reshape(n_bins, n_units)
    fractions = fractions or {"train": 0.6, "validation": 0.2, "test": 0.2}

    if has_trials and not trials_only:  # label continuous bins with the trial containing their centre
        for k, (a, z) in enumerate(
            zip(spikes["trial_start"].values, spikes["trial_stop"].values, strict=True)
        ):
            bin_trial[(centres >= a) & (centres < z)] = k
    if (
        trials_only and "trial_split" in spikes
    ):  # the data define their own split (e.g. simulated test sequences)
        split = np.asarray(spikes["trial_split"].values, dtype=np.int8)[bin_trial]
        rule = "predefined per trial"
    elif trials_only:  # blocks of whole trials
        n_trials = spikes.sizes["trial"]
        split = time_block_split(n_trials, fractions, min(n_blocks, max(1, n_trials // 3)))[bin_trial]
        rule = "blocks of whole trials"
    else:
        split = time_block_split(n_bins, fractions, n_blocks)
        rule = "time blocks"
    dtype = np.uint8 if counts.max(initial=0) < 255 else np.int32
    ds = xr.Dataset(
        {
            "counts": (
                ("time", "unit"),
                counts.astype(dtype),
                {"units": "1", "long_name": "spike count per bin"},
            ),
            "split": (
                "time",
                split.astype(np.int8),
                {
                    "long_name": "data split",
                    "flag_values": np.array(list(SPLIT_FLAGS.values()), dtype=np.int8),
                    "flag_meanings": " ".join(SPLIT_FLAGS),
                },
            ),
        },
        coords={
            "time": ("time", centres.astype(np.float64), {"units": "s", "long_name": "bin centre"}),
            "unit": spikes["unit"],
        },
        attrs={
            "bin_width_s": float(bin_width_s),
            "t_start_s": float(spikes.attrs["t_start_s"]),
            "observed": "trials" if trials_only else "continuous",
            "split_n_blocks": int(n_blocks),
            "split_fractions": " ".join(f"{k}={v}" for k, v in fractions.items()),
            "split_rule": rule,
        },
    )
    if "behaviour" in spikes:
        _check_coverage(
            spikes["behaviour_time"].values, lo, hi, str(spikes.attrs.get("source", "spike data"))
        )
        beh = _bin_mean(spikes["behaviour_time"].values, spikes["behaviour"].values, lo, hi)
        ds["behaviour"] = (("time", "behaviour_var"), beh, dict(spikes["behaviour"].attrs))
        ds = ds.assign_coords(behaviour_var=spikes["behaviour_var"].values)
    if has_trials:
        ds["trial"] = ("time", bin_trial, {"long_name": "trial index (-1 outside trials)"})
        names = _trial_covariates(spikes)
        if trials_only and names:
            stim = np.stack(
                [np.asarray(spikes[v].values, dtype=np.float64)[bin_trial] for v in names], axis=1
            )
            ds["stimulus"] = (("time", "stimulus_var"), stim, {"long_name": "per-trial covariates"})
            ds = ds.assign_coords(stimulus_var=np.array([v[len("trial_") :] for v in names]))
    for key in ("source", "format"):
        if key in spikes.attrs:
            ds.attrs[key] = spikes.attrs[key]
    return ds


@fill_doc
def segments(counts: xr.Dataset) -> np.ndarray:
    """Label each bin of a ``spike_counts`` dataset with the index of its contiguous segment.

    A new segment starts where the split changes, where the trial changes (if ``trial`` is present), and at a
    gap in time (a step larger than one bin). Models with spike history restart the history at each segment;
    sequence models (HMMs) treat each segment as an independent sequence.

    Parameters
    ----------
    %(counts)s

    Returns
    -------
    numpy.ndarray
        (time,) int64 segment index per bin, from 0.
    """
    n = counts.sizes["time"]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    brk = np.zeros(n, dtype=bool)
    brk[0] = True
    split = np.asarray(counts["split"].values)
    brk[1:] |= split[1:] != split[:-1]
    if "trial" in counts:
        trial = np.asarray(counts["trial"].values)
        brk[1:] |= trial[1:] != trial[:-1]
    t = np.asarray(counts["time"].values)
    bw = float(counts.attrs["bin_width_s"])
    brk[1:] |= np.diff(t) > 1.5 * bw
    return np.cumsum(brk) - 1


def observed_duration(spikes: xr.Dataset) -> float:
    """Compute the seconds of recording actually observed (the trials' total length for trial data).

    Parameters
    ----------
    spikes : xarray.Dataset
        A ``spike_times`` dataset.

    Returns
    -------
    float
        ``t_stop_s - t_start_s``, or the summed trial lengths when only the trials were observed.
    """
    if spikes.attrs.get("observed") == "trials" and "trial_start" in spikes:
        return float((spikes["trial_stop"] - spikes["trial_start"]).sum())
    return float(spikes.attrs["t_stop_s"]) - float(spikes.attrs["t_start_s"])


def unit_qc(
    spikes: xr.Dataset, min_rate_hz: float = 0.0, refractory_s: float = 0.002, max_units: int | None = None
) -> tuple[xr.Dataset, xr.Dataset]:
    """Unit quality control on a ``spike_times`` dataset: rates, refractory violations, selection.

    Order: (1) each unit's mean rate over the observed time; (2) the fraction of its inter-spike intervals
    shorter than ``refractory_s`` (NaN where the data's time resolution, attr ``time_resolution_s``, is coarser
    than ``refractory_s``: violations cannot be seen then); (3) units below ``min_rate_hz`` are dropped;
    (4) of the rest, the ``max_units`` most active are kept (None: all). Violations are reported, not used to
    drop units.

    Parameters
    ----------
    spikes : xarray.Dataset
        A ``spike_times`` dataset.
    min_rate_hz : float, default 0.0
        Units with a lower mean rate are dropped.
    refractory_s : float, default 0.002
        The refractory period: shorter inter-spike intervals are violations.
    max_units : int, optional
        Keep at most this many units, the most active (None: all).

    Returns
    -------
    kept : xarray.Dataset
        ``spikes`` with the kept units only.
    qc : xarray.Dataset
        Per input unit: ``rate_hz``, ``refractory_violation_fraction`` and ``kept``.
    """
    n_units = spikes.sizes["unit"]
    t = spikes["spike_time"].values
    u = spikes["spike_unit"].values.astype(np.int64)
    dur = observed_duration(spikes)
    rate = np.bincount(u, minlength=n_units) / max(dur, 1e-12)
    resolution = float(spikes.attrs.get("time_resolution_s", 0.0) or 0.0)
    viol = np.full(n_units, np.nan)
    if resolution <= refractory_s:
        order = np.lexsort((t, u))
        tu, uu = t[order], u[order]
        same = uu[1:] == uu[:-1]
        isi = np.diff(tu)[same]
        n_isi = np.bincount(uu[1:][same], minlength=n_units)
        n_bad = np.bincount(uu[1:][same], weights=(isi < refractory_s).astype(float), minlength=n_units)
        viol = np.where(n_isi > 0, n_bad / np.maximum(n_isi, 1), np.nan)
    keep = select_units(rate, min_rate_hz, max_units)
    units = np.asarray(spikes["unit"].values)
    qc = xr.Dataset(
        {
            "rate_hz": (
                "unit",
                rate,
                {"units": "Hz", "long_name": "mean firing rate over the observed time"},
            ),
            "refractory_violation_fraction": (
                "unit",
                viol,
                {"long_name": f"fraction of inter-spike intervals < {refractory_s} s (NaN: not assessable)"},
            ),
            "kept": ("unit", keep.astype(np.int8), {"long_name": "1 if the unit passed QC"}),
        },
        coords={"unit": units},
    )
    if keep.all():
        return spikes, qc
    new_index = np.cumsum(keep) - 1
    sel = keep[u]
    out = spikes.isel(spike=np.nonzero(sel)[0], unit=np.nonzero(keep)[0])
    out["spike_unit"] = ("spike", new_index[u[sel]].astype(np.int32), dict(spikes["spike_unit"].attrs))
    return out, qc


def select_units(rate: np.ndarray, min_rate_hz: float, max_units: int | None) -> np.ndarray:
    """The units unit QC keeps: rate at least ``min_rate_hz``, then the ``max_units`` fastest of those.

    Parameters
    ----------
    rate : numpy.ndarray
        (unit,) mean firing rates in Hz.
    min_rate_hz : float
        Lowest rate kept.
    max_units : int or None
        Most units kept (the fastest; ties by unit order); None: no limit.

    Returns
    -------
    numpy.ndarray
        (unit,) bool mask of the kept units.

    Raises
    ------
    ConfigError
        No unit reaches ``min_rate_hz``.
    """
    keep = rate >= min_rate_hz
    if max_units is not None and keep.sum() > max_units:
        ranked = np.argsort(-np.where(keep, rate, -1.0), kind="stable")[:max_units]
        keep = np.zeros(rate.size, bool)
        keep[ranked] = True
    if not keep.any():
        raise ConfigError(
            f"unit QC: no unit reaches min_rate_hz={min_rate_hz} (highest rate {rate.max(initial=0):.3g} Hz)"
        )
    return keep
