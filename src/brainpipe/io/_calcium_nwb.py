"""Calcium traces from NWB ophys (:func:`read_nwb_ophys`, format ``nwb``).

Part of :mod:`brainpipe.io.calcium`, which re-exports its public names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.io._calcium_behaviour import with_behaviour
from brainpipe.io._calcium_checks import NWB_LABEL_COLUMNS, _check_rate, _fail, _labels_var, _traces
from brainpipe.io._common import hdf5_error, require_file
from brainpipe.io._nwb import _behaviour, open_nwb


@fill_doc
def read_nwb_ophys(
    path,
    frame_rate_hz: float | None = None,
    series: str | None = None,
    label_column: str | None = None,
    behaviour_series: bool | str | list[str] = True,
) -> xr.Dataset:
    """Read an NWB file's ophys ``Fluorescence`` (or ``DfOverF``) RoiResponseSeries, with ROI ids from its table.

    A series named ``Neuropil`` in the same container (if any) becomes ``neuropil``. Behaviour time series of the
    processing modules (e.g. ``processing['behavior']``: BehavioralTimeSeries, Position, TimeSeries; each 1-D
    series, or each column of a 2-D one, with its timestamps or rate) become ``behaviour(behaviour_time,
    behaviour_var)`` on the first series' clock, read as the spike reader reads them (:func:`brainpipe.io.read_nwb`),
    shifted from the session clock to the traces' (0 at the first frame; the offset in attr ``nwb_start_time_s``).

    Parameters
    ----------
    path : str or os.PathLike
        An NWB 2 (HDF5) file with an ophys processing module.
    frame_rate_hz : float, optional
        The frame rate in Hz (None: the series' ``rate``, else the median step of its timestamps).
    series : str, optional
        The RoiResponseSeries (None: the first one not named ``Neuropil``).
    label_column : str, optional
        The ROI table column of neuron labels (None: the first of :data:`NWB_LABEL_COLUMNS` it has).
    behaviour_series : bool or str or list of str, default True
        Which behaviour series to read: True all, False none, else their names (a missing name is an error).

    %(calcium_traces_returns)s

    %(reader_raises)s
    """
    p = require_file(path, "NWB file")
    with open_nwb(p) as nwb:
        try:
            ds = _ophys(p, nwb, frame_rate_hz, series, label_column)
            block = _behaviour(p, nwb, behaviour_series) if behaviour_series else None
            if block is not None:  # the session clock -> the traces' (0 at the first frame)
                block["time"] = block["time"] - float(ds.attrs["nwb_start_time_s"])
            return with_behaviour(ds, block, f"nwb:{p}")
        except (OSError, RuntimeError) as err:  # h5py (HDF5 errors), reading a damaged dataset lazily
            raise hdf5_error(p, err, "an NWB (HDF5) file") from None


def _nwb_labels(p: Path, table, rows: np.ndarray, column: str | None) -> np.ndarray | None:
    """The labels of the ROI table's rows ``rows`` from its label column (None when it has none)."""
    names = list(getattr(table, "colnames", ()) or ())
    if column is None:
        column = next((c for c in NWB_LABEL_COLUMNS if c in names), None)
        if column is None:
            return None
    elif column not in names:
        raise _fail(
            p,
            f"ROI table {table.name!r} has no column {column!r} (columns: {', '.join(names) or 'none'})",
            "set options.label_column to one of them, or leave it out",
        )
    values = list(table[column][:])
    out = []
    for v in (values[int(r)] for r in rows):
        v = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        if not isinstance(v, str):
            raise _fail(
                p,
                f"ROI table column {column!r} holds {type(v).__name__} values, not one text label per ROI",
                "store one label (text) per ROI, or set options.label_column to such a column",
            )
        out.append(v)
    return np.array(out, dtype=object)


def _ophys(p: Path, nwb, frame_rate_hz, series, label_column=None) -> xr.Dataset:
    ophys = nwb.processing.get("ophys") if nwb.processing else None
    if ophys is None:
        raise _fail(p, "has no 'ophys' processing module", "give an NWB file with optical physiology traces")
    container = None
    for name in ("Fluorescence", "DfOverF"):
        if name in ophys.data_interfaces:
            container = ophys.data_interfaces[name]
            break
    if container is None:
        raise _fail(
            p, "ophys module has neither Fluorescence nor DfOverF", "store the traces as RoiResponseSeries"
        )
    names = list(container.roi_response_series)
    if series is None:
        series = next((n for n in names if n.lower() != "neuropil"), None)
    if series not in container.roi_response_series:
        raise _fail(
            p,
            f"no RoiResponseSeries {series!r} (found: {', '.join(names) or 'none'})",
            "set options.series to one of them",
        )
    rrs = container.roi_response_series[series]
    if np.dtype(rrs.data.dtype).kind not in "biuf":
        raise _fail(
            p,
            f"series {series!r} holds {rrs.data.dtype} values, not numbers",
            "store numeric (time, ROI) data",
        )
    data = np.asarray(rrs.data[:], dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2:
        raise _fail(p, f"series {series!r} has shape {data.shape}", "store (time, ROI) data")
    ids = np.arange(data.shape[1])
    labels = None
    region = getattr(rrs, "rois", None)
    if region is None and label_column is not None:
        raise _fail(p, f"series {series!r} has no ROI table", "leave options.label_column out")
    if region is not None:
        rows = np.asarray(region.data[:])
        table_ids = np.asarray(region.table.id[:])
        if rows.dtype.kind not in "iu" or (rows.size and (rows.min() < 0 or rows.max() >= table_ids.size)):
            raise _fail(
                p,
                f"series {series!r}: its ROI region points outside the ROI table ({table_ids.size} rows)",
                "store a region of the plane segmentation's rows",
            )
        ids = table_ids[rows]
        labels = _nwb_labels(p, region.table, rows, label_column)
    if data.shape[1] != ids.size:
        raise _fail(
            p, f"series {series!r} has shape {data.shape} for {ids.size} ROIs", "store (time, ROI) data"
        )
    rate = frame_rate_hz or rrs.rate
    if rate is None and rrs.timestamps is not None:
        ts = np.asarray(rrs.timestamps[:], dtype=np.float64)
        step = float(np.median(np.diff(ts))) if ts.size > 1 else float("nan")
        rate = 1.0 / step if np.isfinite(step) and step > 0 else None
    if rate is None:
        raise _fail(
            p,
            "no frame rate (series has neither rate nor increasing timestamps, none in config)",
            "set frame_rate_hz for this dataset",
        )
    rate = _check_rate(rate, p)
    neuropil = None
    if "Neuropil" in container.roi_response_series and series != "Neuropil":
        neuropil = np.asarray(container.roi_response_series["Neuropil"].data[:], dtype=np.float64)
        if neuropil.shape != data.shape:
            neuropil = None
    cells = np.array([f"roi{i}" for i in ids])
    extra = {"label": _labels_var(p, labels)} if labels is not None and labels.size == ids.size else None
    ds = _traces(data, rate, cells, f"nwb:{p}:{series}", neuropil, extra)
    stamps = getattr(rrs, "timestamps", None)
    start = (
        float(stamps[0])
        if stamps is not None and len(stamps)
        else float(getattr(rrs, "starting_time", 0.0) or 0.0)
    )
    ds.attrs["nwb_start_time_s"] = start
    if container.name == "DfOverF":
        ds.attrs["already_dff"] = 1
    return ds
