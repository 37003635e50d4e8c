"""NWB 2 reader (pynwb): Units spike times, behaviour time series and the trials table."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.io._common import (
    LOG,
    assemble,
    behaviour_block,
    check_finite,
    check_train,
    fail,
    hdf5_error,
    increasing_mask,
    require_file,
    short,
    window,
)

_XYZ = ("x", "y", "z")


def _merge(intervals: np.ndarray) -> np.ndarray:
    """Union of [start, stop] intervals as sorted, disjoint rows (touching intervals merge)."""
    if intervals.size == 0:
        return intervals.reshape(0, 2)
    iv = intervals[np.argsort(intervals[:, 0], kind="stable")]
    out = [list(iv[0])]
    for a, b in iv[1:]:
        if a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return np.array(out, dtype=np.float64)


def _find_units(nwbfile, name: str):
    from pynwb.misc import Units

    if name == "units":
        if nwbfile.units is None:
            return None
        return nwbfile.units
    for mod in nwbfile.processing.values():
        di = mod.data_interfaces.get(name)
        if isinstance(di, Units):
            return di
    return None


def _ragged(table, col: str):
    """(flat data, end offsets) of column ``col`` of a DynamicTable (ragged or not), or None when absent."""
    from hdmf.common import VectorIndex

    if col not in table.colnames:
        return None
    column = table[col]  # the VectorIndex of a ragged column, else the VectorData
    if isinstance(column, VectorIndex):
        return np.asarray(column.target.data[:]), np.asarray(column.data[:], dtype=np.int64)
    return np.asarray(column.data[:]), np.arange(1, len(table) + 1)


def _series_walk(nwbfile):
    """(name, TimeSeries) of every behaviour-like series in the processing modules, in file order."""
    from pynwb.base import TimeSeries
    from pynwb.behavior import BehavioralEvents
    from pynwb.core import MultiContainerInterface
    from pynwb.ecephys import ElectricalSeries, SpikeEventSeries
    from pynwb.image import ImageSeries
    from pynwb.misc import AnnotationSeries, IntervalSeries
    from pynwb.ophys import RoiResponseSeries

    neural = (
        ElectricalSeries,
        SpikeEventSeries,
        ImageSeries,
        RoiResponseSeries,
        AnnotationSeries,
        IntervalSeries,
    )
    for mod_name, mod in nwbfile.processing.items():
        for di_name, di in mod.data_interfaces.items():
            if isinstance(di, TimeSeries):
                members = [(di_name, di)]
            elif isinstance(di, MultiContainerInterface) and not isinstance(di, BehavioralEvents):
                members = [(s.name, s) for s in di.children if isinstance(s, TimeSeries)]  # e.g. Position
            else:
                continue
            for name, series in members:
                if isinstance(series, neural):
                    LOG.info(
                        "%s: processing/%s/%s is not behaviour; skipped", nwbfile.identifier, mod_name, name
                    )
                    continue
                yield name, series


def _series_clock(series) -> np.ndarray | None:
    if series.timestamps is not None:
        return np.asarray(series.timestamps[:], dtype=np.float64)
    if series.rate is not None:
        n = series.data.shape[0]
        return float(series.starting_time or 0.0) + np.arange(n, dtype=np.float64) / float(series.rate)
    return None


def _columns(name: str, n_cols: int) -> list[str]:
    if n_cols == 1:
        return [name]
    if n_cols <= 3:
        return [f"{name}_{c}" for c in _XYZ[:n_cols]]
    return [f"{name}_{k}" for k in range(n_cols)]


def _behaviour(path, nwbfile, which) -> dict | None:
    wanted = None if which is True else ([which] if isinstance(which, str) else list(which))
    found = []
    for name, series in _series_walk(nwbfile):
        if wanted is not None and name not in wanted:
            continue
        data = series.data
        if data.ndim not in (1, 2) or np.dtype(data.dtype).kind not in "fiub":
            LOG.warning(
                "%s: behaviour series '%s' has shape %s, dtype %s; skipped",
                path,
                name,
                data.shape,
                data.dtype,
            )
            continue
        t = _series_clock(series)
        if t is None:
            LOG.warning("%s: behaviour series '%s' has neither timestamps nor a rate; skipped", path, name)
            continue
        if len(t) != data.shape[0]:
            LOG.warning(
                "%s: behaviour series '%s' has %d samples but %d timestamps; skipped",
                path,
                name,
                data.shape[0],
                len(t),
            )
            continue
        v = np.asarray(data[:], dtype=np.float64).reshape(len(t), -1)
        v = v * float(series.conversion) + float(getattr(series, "offset", 0.0) or 0.0)
        check_finite(path, v, _columns(name, v.shape[1]))
        found.append((name, t, v, str(series.unit)))
    if wanted is not None:
        names = [f[0] for f in found]
        missing = [w for w in wanted if w not in names]
        if missing:
            raise fail(
                path,
                f"no behaviour time series named {short(missing)} in the processing modules",
                f"choose from: {short([n for n, _ in _series_walk(nwbfile)], 20) or 'none'}",
            )
        found.sort(key=lambda f: wanted.index(f[0]))
    if not found:
        return None
    ref_name, t_ref, v_ref, unit_ref = found[0]
    keep = increasing_mask(t_ref)
    if not keep.all():
        LOG.warning(
            "%s: behaviour series '%s': %d sample(s) with a repeated or earlier timestamp dropped",
            path,
            ref_name,
            int((~keep).sum()),
        )
    t_ref, v_ref = t_ref[keep], v_ref[keep]
    cols, units, names = [v_ref], [unit_ref] * v_ref.shape[1], _columns(ref_name, v_ref.shape[1])
    half = 0.5 * float(np.median(np.diff(t_ref))) if t_ref.size > 1 else 0.0
    for name, t, v, unit in found[1:]:
        if t.size == t_ref.size and np.allclose(t, t_ref, rtol=0, atol=1e-9):
            vv = v
        else:
            ok = increasing_mask(t)
            t, v = t[ok], v[ok]
            if t.size < 2 or t[0] > t_ref[0] + half or t[-1] < t_ref[-1] - half:
                LOG.warning(
                    "%s: behaviour series '%s' (%.6g..%.6g s) does not span the clock of '%s' (%.6g..%.6g s); skipped",
                    path,
                    name,
                    t[0] if t.size else np.nan,
                    t[-1] if t.size else np.nan,
                    ref_name,
                    t_ref[0],
                    t_ref[-1],
                )
                continue
            LOG.info(
                "%s: behaviour series '%s' linearly interpolated onto the clock of '%s'", path, name, ref_name
            )
            vv = np.column_stack([np.interp(t_ref, t, v[:, k]) for k in range(v.shape[1])])
        cols.append(vv)
        units += [unit] * vv.shape[1]
        names += _columns(name, vv.shape[1])
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise fail(
            path, f"behaviour variable names repeat ({short(dup)})", "pass behaviour=[series names] to choose"
        )
    return behaviour_block(path, t_ref, np.column_stack(cols), names, units)


def _trials(nwbfile) -> dict | None:
    from hdmf.common import DynamicTableRegion, VectorIndex

    tab = nwbfile.trials
    if tab is None or len(tab) == 0:
        return None
    cov = {}
    indexed = {c.target.name for c in tab.columns if isinstance(c, VectorIndex)}
    for col in tab.columns:
        if (
            col.name in ("start_time", "stop_time")
            or col.name in indexed
            or isinstance(col, VectorIndex | DynamicTableRegion)
        ):
            continue
        try:
            data = np.asarray(col.data[:])
        except (TypeError, ValueError):
            continue
        if data.ndim == 1 and data.size == len(tab) and data.dtype.kind in "fiub":
            cov[col.name] = data.astype(np.float64)
    return {
        "start": np.asarray(tab["start_time"].data[:], dtype=np.float64),
        "stop": np.asarray(tab["stop_time"].data[:], dtype=np.float64),
        "covariates": cov,
    }


@fill_doc
def read_nwb(
    path: str | os.PathLike,
    units: str = "units",
    behaviour: bool | str | Sequence[str] = True,
    trials: bool = True,
) -> xr.Dataset:
    """Read spike trains (and behaviour, trials) from an NWB 2 file into a ``spike_times`` dataset.

    Unit labels are the Units table's ids as strings; ``spike_times`` (ragged) in seconds; each unit's times must
    be non-decreasing and >= 0. The observation window (``t_start_s``, ``t_stop_s``) is the hull of the units'
    ``obs_intervals`` (else of the trials), widened to hold every spike. When the union of ``obs_intervals`` is not
    one contiguous interval (only trial windows were recorded), ``observed = "trials"`` and, without a trials
    table, those intervals become the trials; otherwise ``observed = "continuous"``. Attrs: ``t_start_s``,
    ``t_stop_s``, ``source``, ``format = "nwb"``, ``observed``, ``identifier``, ``session_description`` and
    ``time_resolution_s`` (the Units ``resolution``, when set).

    Parameters
    ----------
    path : str or os.PathLike
        An NWB 2 (HDF5) file.
    units : str, default "units"
        The Units table: ``"units"`` (the file's ``units``) or the name of a Units table inside a processing
        module.
    behaviour : bool or str or sequence of str, default True
        ``True``: every numeric TimeSeries/SpatialSeries in ``processing``, including those inside containers
        such as Position (electrophysiology, imaging, ROI, annotation, interval and event series are skipped);
        ``False``: none; or a series name / list of names (in that order). Clocks: the first series sets
        ``behaviour_time``; a series on the same timestamps joins as is; one on another clock is linearly
        interpolated onto it when it spans that clock (within half a sample), and skipped with a warning
        otherwise (no extrapolation). Samples of the clock series with a repeated or earlier timestamp are
        dropped (logged). Values are in the series' units (``data * conversion + offset``); columns are named
        ``<series>`` (1 column), ``<series>_x``/``_y``/``_z`` (2-3 columns) or ``<series>_<k>``. A NaN is an
        :class:`~brainpipe.errors.InputError` naming the variable.
    trials : bool, default True
        Read the trials table: ``start_time``/``stop_time`` and every numeric 1-value-per-trial column as
        ``trial_<name>`` (float64; text and ragged columns are skipped). ``False`` skips the table only: trial
        windows taken from non-contiguous ``obs_intervals`` are still set, since they bound the recording.

    %(spike_times_returns)s

    %(reader_raises)s
    """
    p = require_file(path, "NWB file")
    with open_nwb(p) as nwbfile:
        try:
            return _read_open(p, nwbfile, units, behaviour, trials)
        except (OSError, RuntimeError) as err:  # h5py (HDF5 errors), reading a damaged dataset lazily
            raise hdf5_error(p, err, "an NWB (HDF5) file") from None


#: What pynwb/hdmf raise on a file that is HDF5 but not (valid) NWB: a missing version or type attribute
#: (TypeError, KeyError), a bad value or namespace (ValueError), an unknown text encoding (LookupError), a damaged
#: specification (ConstructError).
def _nwb_errors() -> tuple[type[BaseException], ...]:
    from hdmf.build.errors import BuildError, ConstructError

    return (
        ValueError,
        TypeError,
        LookupError,
        ConstructError,
        BuildError,
    )  # LookupError: KeyError, IndexError, a bad encoding


@contextlib.contextmanager
def open_nwb(p: Path):
    """The NWBFile of ``p`` (read-only), closed on exit; an unreadable file is one line (:func:`hdf5_error`)."""
    from pynwb import NWBHDF5IO

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Ignoring cached namespace")  # version notices of hdmf
            io = NWBHDF5IO(str(p), mode="r", load_namespaces=True)
    except (OSError, RuntimeError) as err:  # h5py: not HDF5, truncated, a damaged superblock or header
        raise hdf5_error(p, err, "an NWB (HDF5) file") from None
    except _nwb_errors() as err:  # HDF5 but not NWB (a missing or damaged namespace)
        raise fail(
            p,
            f"cannot be opened as an NWB file ({type(err).__name__}: {_oneline(err)})",
            "check that it is a complete NWB 2 file",
        ) from None
    try:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Ignoring cached namespace")
                nwbfile = io.read()
        except (OSError, RuntimeError) as err:  # h5py: a damaged object header or attribute
            raise hdf5_error(p, err, "an NWB (HDF5) file") from None
        except _nwb_errors() as err:
            raise fail(
                p,
                f"cannot be read as NWB ({type(err).__name__}: {_oneline(err)})",
                "check that it is a valid NWB 2 file (e.g. with nwbinspector)",
            ) from None
        yield nwbfile
    finally:
        io.close()


def _oneline(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _read_open(p: Path, nwbfile, units_name: str, behaviour, trials) -> xr.Dataset:
    table = _find_units(nwbfile, units_name)
    if table is None:
        raise fail(
            p,
            f"has no Units table '{units_name}'",
            "give units= the name of the Units table that holds the spikes",
        )
    ids = np.asarray(table.id.data[:])
    labels = [str(i) for i in ids]
    rag = _ragged(table, "spike_times")
    if rag is None:
        raise fail(
            p,
            f"Units table '{units_name}' has no spike_times column",
            "the NWB file must store sorted spike times",
        )
    flat, ends = rag
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    trains = [
        check_train(p, lab, flat[a:b], require_sorted=True, where=f" of Units '{units_name}'")
        for lab, a, b in zip(labels, starts, ends, strict=True)
    ]
    obs = _ragged(table, "obs_intervals")
    intervals = (
        _merge(np.asarray(obs[0], dtype=np.float64).reshape(-1, 2)) if obs is not None else np.zeros((0, 2))
    )
    trial_info = _trials(nwbfile) if trials else None
    observed = "continuous"
    if len(intervals) > 1:
        observed = "trials"
        if trial_info is None:
            trial_info = {"start": intervals[:, 0], "stop": intervals[:, 1], "covariates": {}}
    lo = hi = None
    if len(intervals):
        lo, hi = float(intervals[:, 0].min()), float(intervals[:, 1].max())
    elif trial_info is not None and len(trial_info["start"]):
        lo, hi = float(trial_info["start"].min()), float(trial_info["stop"].max())
    all_t = np.concatenate(trains) if trains else np.zeros(0)
    t0, t1 = window(p, all_t, lo, hi)
    beh = _behaviour(p, nwbfile, behaviour) if behaviour else None
    attrs = {"identifier": str(nwbfile.identifier), "session_description": str(nwbfile.session_description)}
    res = getattr(table, "resolution", None)
    if res is not None and float(res) > 0:
        attrs["time_resolution_s"] = float(res)
    return assemble(
        p,
        trains,
        labels,
        fmt="nwb",
        t_start=t0,
        t_stop=t1,
        observed=observed,
        trials=trial_info,
        behaviour=beh,
        attrs=attrs,
    )
