"""Spike preprocessing: spike times -> binned counts with aligned behaviour and a time-block split.

Order of operations in :func:`bin_spikes`:

1. bin edges ``t_start + k * bin_width`` over the observation window (a last partial bin is dropped);
2. count each unit's spikes per bin (left-closed bins);
3. behaviour: the mean of the samples falling in each bin; bins without a sample take the value linearly
   interpolated at the bin centre (so both faster and slower behaviour clocks are handled);
4. trials: each bin gets the index of the trial containing its centre (-1 between trials);
5. split: :func:`time_block_split` labels contiguous blocks train/validation/test.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError


def time_block_split(n_bins: int, fractions: Mapping[str, float], n_blocks: int) -> np.ndarray:
    """Label bins train (0) / validation (1) / test (2) in contiguous time blocks.

    The recording is cut into ``n_blocks`` equal chunks; each chunk is split, in time order, into a train,
    a validation and a test block with the given fractions. Blocks are contiguous (neighbouring bins are
    strongly correlated, so random bins would leak) and interleaved across the recording (so slow drifts
    affect every split alike). ``n_blocks=1`` gives one train block, then validation, then test.
    """
    fr = np.array([fractions.get(k, 0.0) for k in ("train", "validation", "test")], dtype=float)
    if np.any(fr < 0) or not np.isclose(fr.sum(), 1.0) or fr[0] <= 0 or fr[2] <= 0:
        raise ConfigError(f"split fractions {dict(fractions)} must be >= 0, sum to 1, with train and test > 0")
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


def _bin_mean(t_samples: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    centres = 0.5 * (edges[:-1] + edges[1:])
    idx = np.searchsorted(edges, t_samples, side="right") - 1
    ok = (idx >= 0) & (idx < centres.size)
    out = np.empty((centres.size, values.shape[1]))
    n = np.bincount(idx[ok], minlength=centres.size)
    for k in range(values.shape[1]):
        s = np.bincount(idx[ok], weights=values[ok, k], minlength=centres.size)
        interp = np.interp(centres, t_samples, values[:, k])
        out[:, k] = np.where(n > 0, s / np.maximum(n, 1), interp)
    return out


def bin_spikes(
    spikes: xr.Dataset,
    bin_width_s: float,
    fractions: Mapping[str, float] | None = None,
    n_blocks: int = 5,
) -> xr.Dataset:
    """Bin a ``spike_times`` dataset into a ``spike_counts`` dataset (see the module doc for the order)."""
    if not bin_width_s > 0:
        raise ConfigError(f"bin_width_s must be > 0 (got {bin_width_s})")
    t0, t1 = float(spikes.attrs["t_start_s"]), float(spikes.attrs["t_stop_s"])
    n_bins = int(np.floor((t1 - t0) / bin_width_s + 1e-9))
    if n_bins < 3:
        raise ConfigError(f"bin_width_s={bin_width_s} leaves {n_bins} bins in the {t1 - t0:.3g} s recording")
    edges = t0 + np.arange(n_bins + 1) * bin_width_s
    n_units = spikes.sizes["unit"]
    t = spikes["spike_time"].values
    u = spikes["spike_unit"].values.astype(np.int64)
    b = np.floor((t - t0) / bin_width_s).astype(np.int64)
    keep = (b >= 0) & (b < n_bins)
    flat = np.bincount(b[keep] * n_units + u[keep], minlength=n_bins * n_units)
    counts = flat.reshape(n_bins, n_units)
    dtype = np.uint8 if counts.max(initial=0) < 255 else np.int32
    centres = 0.5 * (edges[:-1] + edges[1:])
    fractions = fractions or {"train": 0.6, "validation": 0.2, "test": 0.2}
    split = time_block_split(n_bins, fractions, n_blocks)
    ds = xr.Dataset(
        {
            "counts": (("time", "unit"), counts.astype(dtype), {"units": "1", "long_name": "spike count per bin"}),
            "split": (
                "time",
                split,
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
            "t_start_s": t0,
            "split_n_blocks": int(n_blocks),
            "split_fractions": " ".join(f"{k}={v}" for k, v in fractions.items()),
        },
    )
    if "behaviour" in spikes:
        beh = _bin_mean(spikes["behaviour_time"].values, spikes["behaviour"].values, edges)
        ds["behaviour"] = (("time", "behaviour_var"), beh, dict(spikes["behaviour"].attrs))
        ds = ds.assign_coords(behaviour_var=spikes["behaviour_var"].values)
    if "trial_start" in spikes:
        trial = np.full(n_bins, -1, dtype=np.int32)
        for k, (a, z) in enumerate(zip(spikes["trial_start"].values, spikes["trial_stop"].values, strict=True)):
            trial[(centres >= a) & (centres < z)] = k
        ds["trial"] = ("time", trial, {"long_name": "trial index (-1 outside trials)"})
    for key in ("source",):
        if key in spikes.attrs:
            ds.attrs[key] = spikes.attrs[key]
    return ds
