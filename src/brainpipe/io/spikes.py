"""Readers for outside spike-data formats, each returning a ``spike_times`` dataset (see
:mod:`brainpipe.data.contracts`) without provenance attributes (the stage that calls them stamps those).

Every reader takes a path and keyword options and returns a Dataset with

* ``spike_time(spike)`` float64 seconds (``units = "s"``), sorted by time, ties by unit index, and
  ``spike_unit(spike)`` int32, an index into the string coordinate ``unit`` (unique labels);
* attrs ``t_start_s``, ``t_stop_s`` (the observation window; every spike inside), ``source`` (the input
  path), ``format`` (one of :data:`FORMATS`) and ``observed`` (``"trials"`` when only trial windows were
  recorded, else ``"continuous"``), plus reader-specific attrs documented on each reader;
* optionally behaviour on its own clock: ``behaviour(behaviour_time, behaviour_var)`` float64 with ``units``;
* optionally trials: ``trial_start(trial)``, ``trial_stop(trial)`` (s) and float64 covariates
  ``trial_<name>(trial)``.

Units without spikes are kept and logged (logger ``brainpipe.io.spikes``). Bad input raises
:class:`~brainpipe.errors.InputError` with a one-line message ``"<path>: <what is wrong>; <what to do>"``.

Readers: :func:`read_nwb` (``"nwb"``), :func:`read_phy` (``"phy"``), :func:`read_trialized_npz`
(``"trialized_npz"``), :func:`read_spike_table` (``"table"``), :func:`read_matclust` (``"matclust"``), and
:func:`~brainpipe.io.binned.read_binned` (``"binned"``: already-binned counts, which it returns as binned counts
(see :mod:`brainpipe.io.binned`), not spike times);
:func:`read_spikes` picks one from the path. Each is registered in :mod:`brainpipe.io._registry` (name, detection,
options from its signature) at the end of this module.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.errors import InputError
from brainpipe.io._common import LOG, assemble, check_train, fail, load_npz, npz_shapes, require_file
from brainpipe.io._matclust import read_matclust, read_position_tracking
from brainpipe.io._nwb import read_nwb
from brainpipe.io._phy import read_phy
from brainpipe.io._registry import formats, has_suffix, read, register
from brainpipe.io.binned import is_binned, read_binned

__all__ = [
    "FORMATS",
    "read_binned",
    "read_matclust",
    "read_nwb",
    "read_phy",
    "read_position_tracking",
    "read_spike_table",
    "read_spikes",
    "read_trialized_npz",
]

_RESERVED_ATTRS = ("t_start_s", "t_stop_s", "source", "format", "observed", "time_resolution_s")


def _load_npz(p: Path, kind: str) -> dict[str, np.ndarray]:
    if p.is_file() and p.stat().st_size and zipfile.is_zipfile(p) is False:
        with open(p, "rb") as fh:
            if fh.read(6) == b"\x93NUMPY":
                raise fail(
                    p, "is a single .npy array, not an .npz archive", "save the arrays with numpy.savez"
                )
    return load_npz(p, kind)


# -- unit/time tables -----------------------------------------------------------------------------------------
@fill_doc
def read_spike_table(path, t_start_s=None, t_stop_s=None, sep=None) -> xr.Dataset:
    """Parse a unit/time table into a spike_times dataset (units sorted by label).

    Attrs: ``t_start_s``, ``t_stop_s``, ``source``, ``format = "table"``, ``observed = "continuous"``.

    Parameters
    ----------
    path : str or os.PathLike
        A CSV/TSV with columns ``unit`` (read as strings) and ``time`` (seconds), other columns ignored; or an
        ``.npz`` with 1-D arrays ``unit`` and ``time`` of equal length (loaded with ``allow_pickle=False``).
    t_start_s, t_stop_s : float, optional
        The observation window in seconds (not checked here: the contract rejects spikes outside it); None: from
        the first spike to just after the last.
    sep : str, optional
        The CSV/TSV separator (None: tab for ``.tsv``/``.tab``, else comma).

    %(spike_times_returns)s

    %(reader_raises)s
    """
    if str(path).endswith(".npz"):
        p = require_file(path, "spike table")
        arrays = _load_npz(p, "spike table .npz")
        missing = {"unit", "time"} - set(arrays)
        if missing:
            raise InputError(
                f"{path}: missing array(s) {', '.join(sorted(missing))} (found {', '.join(arrays) or 'none'}); "
                "a spike table .npz needs arrays 'unit' and 'time' (seconds)"
            )
        unit, time = arrays["unit"], arrays["time"]
        if unit.ndim != 1 or time.ndim != 1 or unit.size != time.size:
            raise InputError(
                f"{path}: arrays 'unit' {unit.shape} and 'time' {time.shape} must be 1-D and of equal length; "
                "one entry per spike"
            )
        df = pd.DataFrame({"unit": unit.astype(str), "time": time})
    else:
        sep = sep or ("\t" if str(path).endswith((".tsv", ".tab")) else ",")
        require_file(path, "spike table")
        try:
            df = pd.read_csv(path, sep=sep, dtype={"unit": str})
        except (OSError, ValueError, pd.errors.ParserError) as err:
            raise InputError(
                f"{path}: cannot be read as a {'TSV' if sep == chr(9) else 'CSV'} table ({err}); "
                "give a table with a header row and columns 'unit' and 'time' (seconds)"
            ) from None
        missing = {"unit", "time"} - set(df.columns)
        if missing:
            raise InputError(
                f"{path}: missing column(s) {', '.join(sorted(missing))} (found {', '.join(map(str, df.columns))}); "
                "a spike table needs columns 'unit' and 'time' (seconds); for binned counts (one column per unit, "
                "one row per bin) set format: binned"
            )
    t = pd.to_numeric(df["time"], errors="coerce").to_numpy(dtype=np.float64)
    if df.empty:
        raise InputError(f"{path}: has no spikes (no rows); a spike table has one row per spike")
    if not np.all(np.isfinite(t)):
        n_bad = int(np.count_nonzero(~np.isfinite(t)))
        raise InputError(
            f"{path}: column 'time' must hold finite numbers of seconds, one spike per row "
            f"({n_bad} row(s) are empty, non-numeric or infinite); fix those rows"
        )
    if t.min() < 0:
        raise fail(
            path,
            f"column 'time' has negative spike times (min {t.min():.6g} s)",
            "spike times are seconds on the session clock (>= 0); shift them",
        )
    units, idx = np.unique(df["unit"].astype(str).to_numpy(), return_inverse=True)
    order = np.lexsort((idx, t))
    t0 = float(t.min()) if t_start_s is None else float(t_start_s)
    t1 = float(np.nextafter(t.max(), np.inf)) if t_stop_s is None else float(t_stop_s)
    return xr.Dataset(
        {
            "spike_time": ("spike", t[order], {"units": "s", "long_name": "spike time"}),
            "spike_unit": ("spike", idx[order].astype(np.int32), {"long_name": "index into unit"}),
        },
        coords={"unit": ("unit", units.astype(str), {"long_name": "unit identifier"})},
        attrs={
            "t_start_s": t0,
            "t_stop_s": t1,
            "source": str(path),
            "format": "table",
            "observed": "continuous",
        },
    )


# -- trialized counts (Steinmetz course npz) --------------------------------------------------------------------
@fill_doc
def read_trialized_npz(
    path, counts_key: str = "spks", time_key: str = "time", bin_width_s: float | None = None
) -> xr.Dataset:
    """Read trial-binned counts (Steinmetz et al. 2019 course npz) as reconstructed spike times.

    A count k becomes k identical spike times at the bin centre (resolution = one bin), so re-binning within the
    trials gives the counts back exactly. Trial windows: ``[first centre - width/2, last centre + width/2]``;
    ``observed = "trials"``; window ``t_start_s``/``t_stop_s`` = first trial start / last trial stop. Every other
    array with one numeric value per trial becomes ``trial_<key>`` (float64); scalar keys (``mouse_name``,
    ``date_exp``) become attrs; anything else is skipped (logged). Units are labelled ``u000``, ``u001``, ... (the
    file has no unit ids). Attrs: ``t_start_s``, ``t_stop_s``, ``source``, ``format = "trialized_npz"``,
    ``observed = "trials"``, ``time_resolution_s`` (the bin width), ``time_base = "bin centres"`` and the scalar
    keys.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` (loaded without pickle).
    counts_key : str, default "spks"
        The counts: trials x units x bins, non-negative integers.
    time_key : str, default "time"
        Trials x bins: the bin CENTRES on the session clock in seconds (the course data description: "time:
        centers of the time bins for spks").
    bin_width_s : float, optional
        The bin width in seconds (None: the regular step of ``time``).

    %(spike_times_returns)s

    %(reader_raises)s
    """
    p = require_file(path, "trialized .npz file")
    arrays = _load_npz(p, "trialized .npz file")
    for key, nd in ((counts_key, 3), (time_key, 2)):
        if key not in arrays or arrays[key].ndim != nd:
            have = ", ".join(f"{k}{tuple(v.shape)}" for k, v in arrays.items()) or "none"
            raise fail(
                p,
                f"has no {nd}-D array '{key}' (found {have})",
                f"a trialized .npz needs '{counts_key}' (trials x units x bins) and '{time_key}' (trials x bins)",
            )
    counts, time = arrays[counts_key], arrays[time_key]
    n_trials, n_units, n_bins = counts.shape
    for n, what in ((n_trials, "trials"), (n_units, "units"), (n_bins, "bins")):
        if n == 0:
            raise fail(
                p,
                f"holds no {what} ('{counts_key}' has shape {counts.shape}, trials x units x bins)",
                "give the counts of a session with trials, units and bins",
            )
    if time.dtype.kind not in "biuf":
        raise fail(
            p, f"'{time_key}' holds {time.dtype} values, not seconds", "give the bin centres in seconds"
        )
    time = time.astype(np.float64)
    if time.shape != (n_trials, n_bins):
        raise fail(
            p,
            f"'{time_key}' has shape {time.shape}, expected {(n_trials, n_bins)} (trials x bins of '{counts_key}')",
            "give one bin time per trial and bin",
        )
    if counts.dtype.kind not in "iuf" or (counts.dtype.kind == "f" and not np.all(np.mod(counts, 1) == 0)):
        raise fail(
            p,
            f"'{counts_key}' (dtype {counts.dtype}) does not hold whole-number counts",
            "give spike counts per bin",
        )
    if counts.size and counts.min() < 0:
        raise fail(p, f"'{counts_key}' has negative counts", "give spike counts per bin (>= 0)")
    if not np.all(np.isfinite(time)):
        raise fail(p, f"'{time_key}' has non-finite bin times", "fix the bin times")
    steps = np.diff(time, axis=1)
    if bin_width_s is None:
        if n_bins < 2:
            raise fail(p, "has one bin per trial, so the bin width is unknown", "pass bin_width_s")
        # mean step over each trial, rounded to the nanosecond (the median step carries float noise ~1e-14 s)
        bw = round(float(np.mean((time[:, -1] - time[:, 0]) / (n_bins - 1))), 9)
        if not (bw > 0 and np.allclose(steps, bw, rtol=1e-6, atol=1e-9)):
            raise fail(
                p,
                f"'{time_key}' steps are not regular (from {steps.min():.6g} to {steps.max():.6g} s)",
                "pass bin_width_s, or fix the bin times",
            )
    else:
        bw = float(bin_width_s)
        if not bw > 0:
            raise fail(
                p,
                f"bin_width_s={bin_width_s} is not a positive number of seconds",
                "pass the bin width in seconds",
            )
    start, stop = time[:, 0] - bw / 2, time[:, -1] + bw / 2
    if start.min() < 0:
        raise fail(
            p,
            f"'{time_key}' gives negative spike times (first trial starts at {start.min():.6g} s)",
            "bin times are seconds on the session clock (>= 0)",
        )
    tr, un, bi = np.nonzero(counts)
    k = counts[tr, un, bi].astype(np.int64)
    t_all = np.repeat(time[tr, bi], k)
    u_all = np.repeat(un, k)
    order = np.lexsort((t_all, u_all))
    t_all, u_all = t_all[order], u_all[order]
    bounds = np.searchsorted(u_all, np.arange(n_units + 1))
    width = max(3, len(str(max(n_units - 1, 0))))
    labels = [f"u{i:0{width}d}" for i in range(n_units)]
    trains = [
        check_train(p, labels[i], t_all[bounds[i] : bounds[i + 1]], require_sorted=False)
        for i in range(n_units)
    ]
    covariates, attrs = {}, {"time_resolution_s": bw, "time_base": "bin centres"}
    for key, val in arrays.items():
        if key in (counts_key, time_key):
            continue
        if val.ndim == 1 and val.shape[0] == n_trials and val.dtype.kind in "fiub":
            covariates[key] = val.astype(np.float64)
        elif val.ndim == 0 or val.size == 1 and val.dtype.kind in "US":
            item = val.reshape(-1)[0].item() if val.size else ""
            item = int(item) if isinstance(item, bool) else item  # netCDF has no boolean attributes
            if key in _RESERVED_ATTRS:
                LOG.warning("%s: scalar '%s' would overwrite a reserved attribute; skipped", p, key)
            else:
                attrs[key] = item if isinstance(item, int | float | str) else str(item)
        else:
            LOG.warning("%s: array '%s' %s is neither per-trial nor scalar; skipped", p, key, val.shape)
    trials = {"start": start, "stop": stop, "covariates": covariates}
    return assemble(
        p,
        trains,
        labels,
        fmt="trialized_npz",
        t_start=float(start.min()),
        t_stop=float(stop.max()),
        observed="trials",
        trials=trials,
        attrs=attrs,
    )


# -- registration (detection tries them in this order) -----------------------------------------------------------
TABLE_SUFFIXES = (".csv", ".tsv", ".tab")


def _is_phy(path: Path) -> bool:
    return path.is_dir() and (path / "spike_times.npy").is_file()


def _is_trialized_npz(path: Path, counts_key: str = "spks") -> bool:
    return has_suffix(".npz")(path) and len(npz_shapes(path).get(counts_key, ())) == 3


def _is_spike_table(path: Path) -> bool:
    if has_suffix(*TABLE_SUFFIXES)(path):
        return True
    return has_suffix(".npz")(path) and {"unit", "time"} <= set(npz_shapes(path))


register(read_nwb, name="nwb", modality="spikes", detect=has_suffix(".nwb"), looks_for="a .nwb file")
register(
    read_phy, name="phy", modality="spikes", detect=_is_phy, looks_for="a folder holding spike_times.npy"
)
register(
    read_trialized_npz,
    name="trialized_npz",
    modality="spikes",
    detect=_is_trialized_npz,
    looks_for="an .npz with a 3-D counts array (counts_key, default 'spks')",
)
register(
    read_binned,
    name="binned",
    modality="spikes",
    detect=is_binned,
    looks_for="an .npz with a 2-D counts array (counts_key, default 'counts') and its bin width (CSV/TSV and NWB "
    "counts: set format: binned)",
)
register(
    read_spike_table,
    name="table",
    modality="spikes",
    detect=_is_spike_table,
    looks_for=f"a {'/'.join(TABLE_SUFFIXES)} table, or an .npz with arrays 'unit' and 'time'",
)
register(
    read_matclust, name="matclust", modality="spikes", detect=has_suffix(".mat"), looks_for="a .mat file"
)

#: The spike data formats, in detection order (``format:`` may also be ``auto``).
FORMATS: tuple[str, ...] = formats("spikes")


@fill_doc
def read_spikes(path: str | os.PathLike, format: str = "auto", **options) -> xr.Dataset:
    """Read spike data in any supported format (the spike case of :func:`brainpipe.io.read`).

    Parameters
    ----------
    path : str or PathLike
        The recording: a file or a phy folder.
    format : str
        ``"auto"`` (detected from the suffix or the folder contents: :func:`brainpipe.io.detect`) or one of
        :data:`FORMATS`.
    **options
        The reader's keyword options (see each reader); an option the reader lacks is a
        :class:`~brainpipe.errors.ConfigError` naming it.

    Returns
    -------
    xarray.Dataset
        A ``spike_times`` dataset without provenance attributes.

    %(read_raises)s

    Examples
    --------
    >>> from pathlib import Path
    >>> from brainpipe.io import read_spikes
    >>> _ = Path("spikes.csv").write_text("unit,time\\na,0.1\\na,0.5\\nb,0.3\\n")
    >>> ds = read_spikes("spikes.csv")  # detected: a spike table
    >>> ds.attrs["format"], ds.sizes["spike"], [str(u) for u in ds["unit"].values]
    ('table', 3, ['a', 'b'])
    """
    return read(path, "spikes", format, **options)
