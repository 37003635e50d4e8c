"""Calcium readers: suite2p plane folders, NWB ophys, plain arrays -> the ``calcium_traces`` contract.

Every reader needs a frame rate: from the ``frame_rate_hz`` argument (config), else from a JSON sidecar
(suite2p: ``<plane>/frame_rate.json`` or ``ops_summary.json`` with ``fs``; arrays: ``<file>.json`` with
``frame_rate_hz``), else (NWB) from the series' ``rate`` or timestamps. ``ops.npy`` is a pickle and is never
loaded unless ``allow_ops_pickle=True`` is given explicitly (then its ``fs`` is used).

Readers: :func:`read_suite2p` (``"suite2p"``), :func:`read_nwb_ophys` (``"nwb"``), :func:`read_array` (``"npy"``,
``"csv"``, ``"hdf5"``), registered in :mod:`brainpipe.io._registry` at the end of this module; every result goes
through :func:`check_cells` (option ``drop_bad_cells``) and :func:`check_kind` (option ``kind``: what the traces
are, :data:`TRACE_KINDS`).

Neuron labels (identities shared across animals, e.g. whole-brain recordings with identified neurons) become a
``label(cell)`` variable ("" for an unlabelled ROI) when the source carries them: a ``labels.tsv`` beside suite2p's
``F.npy`` (:data:`SUITE2P_LABELS`), a label column of an NWB ROI table (:data:`NWB_LABEL_COLUMNS`, or
``label_column``), or ``"labels"`` (one per column) in an array's JSON sidecar. A connectome study matches its
animals' neurons by these labels (:func:`brainpipe.preprocess.affinity.align_animals`).

>>> from brainpipe.io.calcium import read_calcium
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.errors import InputError
from brainpipe.io._common import hdf5_error, load_npy, require_file
from brainpipe.io._nwb import open_nwb
from brainpipe.io._registry import has_suffix, read, register, register_modality

LOG = logging.getLogger("brainpipe.io.calcium")

#: what a calcium dataset's traces are (config ``calcium.datasets.<name>.kind``): ``auto`` (today's default: dF/F
#: when the source says so, e.g. an NWB DfOverF series, else raw fluorescence, neuropil-corrected when the source
#: carries a neuropil trace), ``raw`` (raw fluorescence; a neuropil trace, if any, is not subtracted),
#: ``raw_with_neuropil`` (raw fluorescence with a neuropil trace to subtract), ``dff`` (dF/F already), ``denoised``
#: (e.g. CNMF-E's denoised C: background removed, may go negative) and ``deconvolved`` (non-negative event/spike
#: estimates, e.g. suite2p spks or CNMF-E S). :func:`brainpipe.preprocess.calcium.preprocess_calcium` takes the
#: path of each kind.
TRACE_KINDS = ("auto", "raw", "raw_with_neuropil", "dff", "denoised", "deconvolved")
#: the labels file of a suite2p plane folder (beside F.npy): UTF-8, tab-separated, header ``roi<TAB>label``, one
#: row per labelled ROI (``roi``: its row in F.npy, from 0, before any iscell selection); ROIs not listed, or with
#: an empty label, are unlabelled
SUITE2P_LABELS = "labels.tsv"
#: the NWB ROI-table (PlaneSegmentation) columns read as neuron labels, the first one present (option
#: ``label_column`` names another)
NWB_LABEL_COLUMNS = ("label", "labels", "neuron_label", "neuron_name", "ID_labels", "cell_label")


def _fail(path, what: str, todo: str) -> InputError:
    return InputError(f"{path}: {what}; {todo}")


def _load_npy(path: Path, what: str) -> np.ndarray:
    return load_npy(path, what, "biuf", "save it as a plain numeric array")


def _sidecar_rate(paths: list[Path]) -> tuple[float | None, str | None]:
    for p in paths:
        if p.exists():
            if p.is_file() and p.stat().st_size == 0:
                raise _fail(
                    p,
                    "frame-rate sidecar is empty (0 bytes)",
                    'write {"frame_rate_hz": <Hz>} in it, or remove it',
                )
            try:
                data = json.loads(p.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise _fail(
                    p,
                    f"frame-rate sidecar is not valid JSON ({' '.join(str(err).split())})",
                    "fix or remove it",
                ) from None
            for key in ("frame_rate_hz", "fs"):
                if isinstance(data, dict) and key in data:
                    return _check_rate(data[key], p, f"'{key}' in this sidecar"), f"{p.name}:{key}"
    return None, None


def _check_rate(rate, path, where: str = "") -> float:
    given = rate
    try:
        rate = float(rate)
    except (TypeError, ValueError, OverflowError):
        rate = float("nan")
    if not (np.isfinite(rate) and rate > 0):
        todo = f"fix {where} or set frame_rate_hz" if where else "set frame_rate_hz"
        raise _fail(
            path,
            f"frame rate {given!r}{' (' + where + ')' if where else ''} is not a positive number",
            f"{todo} in the dataset's config",
        )
    return rate


def _labels_var(path, labels) -> tuple:
    """A ``label(cell)`` variable from one label per cell ("" or None: unlabelled); a label given twice is an
    error naming it (a label names one neuron)."""
    out = np.array(["" if v is None else " ".join(str(v).split()) for v in labels], dtype=object)
    named = out[out != ""]
    uniq, counts = np.unique(named.astype(str), return_counts=True) if named.size else ([], [])
    twice = [str(u) for u, c in zip(uniq, counts, strict=True) if c > 1]
    if twice:
        raise _fail(
            path,
            f"neuron label(s) {', '.join(repr(t) for t in twice[:5])} name more than one ROI",
            "give each identified neuron one ROI (leave the others unlabelled)",
        )
    return (
        "cell",
        out.astype(str),
        {"long_name": "neuron label: identity shared across animals (empty: unlabelled)"},
    )


def _suite2p_labels(p: Path, n_rois: int) -> np.ndarray:
    """The labels of :data:`SUITE2P_LABELS`, one per suite2p ROI ("" where none is given)."""
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise _fail(
            p,
            f"cannot be read as UTF-8 text ({type(err).__name__})",
            "write it as a tab-separated UTF-8 table with the header roi<TAB>label",
        ) from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or [c.strip().lower() for c in lines[0].split("\t")] != ["roi", "label"]:
        raise _fail(
            p,
            "does not start with the header row roi<TAB>label",
            "write one tab-separated row per labelled ROI under that header (roi: its row in F.npy, from 0)",
        )
    out = np.full(n_rois, "", dtype=object)
    for k, line in enumerate(lines[1:], start=2):
        parts = [c.strip() for c in line.split("\t")]
        roi = parts[0]
        if len(parts) != 2 or not roi.isdigit() or int(roi) >= n_rois:
            raise _fail(
                p,
                f"line {k} ({line.strip()[:40]!r}) is not 'roi<TAB>label' with roi a row of F.npy (0..{n_rois - 1})",
                "fix that line",
            )
        if out[int(roi)]:
            raise _fail(p, f"line {k}: ROI {roi} is labelled twice", "keep one label per ROI")
        out[int(roi)] = parts[1]
    return out


def _traces(
    F: np.ndarray, rate: float, cells, source: str, neuropil: np.ndarray | None = None, extra=None
) -> xr.Dataset:
    T = F.shape[0]
    ds = xr.Dataset(
        {
            "fluorescence": (
                ("time", "cell"),
                F.astype(np.float64),
                {"units": "a.u.", "long_name": "raw fluorescence"},
            )
        },
        coords={
            "time": ("time", np.arange(T, dtype=np.float64) / rate, {"units": "s"}),
            "cell": ("cell", np.asarray(cells)),
        },
        attrs={"frame_rate_hz": float(rate), "source": source},
    )
    if neuropil is not None:
        ds["neuropil"] = (
            ("time", "cell"),
            neuropil.astype(np.float64),
            {"units": "a.u.", "long_name": "neuropil fluorescence"},
        )
    for k, v in (extra or {}).items():
        ds[k] = v
    return ds


@fill_doc
def check_cells(path, ds: xr.Dataset, drop_bad_cells: bool = False) -> xr.Dataset:
    """Check the ROIs of a calcium reader's result (the calcium finishing step of every reader).

    An all-NaN or constant ROI is an error naming it (one line), or is dropped (logged) with ``drop_bad_cells``;
    NaN/inf frames in other ROIs are an error.

    Parameters
    ----------
    %(calcium_finish)s
    drop_bad_cells : bool
        Drop all-NaN or constant ROIs instead of failing.

    Returns
    -------
    xarray.Dataset
        ``ds``, without the dropped ROIs.
    """
    from brainpipe.preprocess.calcium import bad_cells

    F = np.asarray(ds["fluorescence"].values)
    if F.shape[1] == 0:
        raise _fail(
            path,
            f"holds no ROIs (fluorescence has shape {F.shape}, time x ROI)",
            "give a recording with ROIs",
        )
    if F.shape[0] == 0:
        raise _fail(
            path,
            f"holds no frames (fluorescence has shape {F.shape}, time x ROI)",
            "give a recording with at least one frame",
        )
    cells = np.asarray(ds["cell"].values)
    all_nan, constant = bad_cells(F)
    bad = all_nan | constant
    if bad.any():
        names = ", ".join(str(c) for c in cells[bad][:5]) + (
            f" ... ({int(bad.sum())} in all)" if bad.sum() > 5 else ""
        )
        kind = (
            "all-NaN"
            if all_nan.any() and not constant.any()
            else ("constant" if not all_nan.any() else "all-NaN or constant")
        )
        if not drop_bad_cells:
            raise _fail(
                path,
                f"ROI(s) {names} are {kind} (no signal)",
                "exclude them (suite2p: iscell.npy; arrays: drop the columns) or set drop_bad_cells: true",
            )
        LOG.warning("%s: dropping %s ROI(s) %s", path, kind, names)
        if bad.all():
            raise _fail(path, "every ROI is all-NaN or constant", "check the recording")
        ds = ds.isel(cell=np.flatnonzero(~bad))
    if not np.isfinite(ds["fluorescence"].values).all():
        raise _fail(path, "fluorescence has NaN/inf frames", "interpolate or drop those frames before ingest")
    return ds


def resolve_kind(ds: xr.Dataset, kind: str = "auto") -> str:
    """The kind of a ``calcium_traces`` dataset's traces, ``auto`` resolved as before kinds existed.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``calcium_traces`` dataset (attr ``already_dff``: the source stores dF/F, e.g. an NWB DfOverF series).
    kind : str
        One of :data:`TRACE_KINDS`.

    Returns
    -------
    str
        ``kind`` itself unless ``auto``: then ``dff`` when the source stores dF/F, ``raw_with_neuropil`` when the
        traces carry ``neuropil``, else ``raw``.
    """
    if kind != "auto":
        return kind
    if int(ds.attrs.get("already_dff", 0)):
        return "dff"
    return "raw_with_neuropil" if "neuropil" in ds else "raw"


@fill_doc
def check_kind(path, ds: xr.Dataset, kind: str = "auto") -> xr.Dataset:
    """Check that the traces are what their declared kind says, and record the kind (attr ``trace_kind``).

    Raw fluorescence is never negative (a negative value means denoised, background-subtracted or dF/F traces);
    ``raw_with_neuropil`` needs a neuropil trace; dF/F hovers around 0 (every cell's 10th percentile >= 1, i.e. a
    baseline 100 % above zero, is raw fluorescence, not dF/F); deconvolved activity is non-negative; an NWB DfOverF
    series is dF/F. ``auto`` (today's default) is checked by the dF/F step instead, which names the kinds when the
    baseline is not positive.

    Parameters
    ----------
    %(calcium_finish)s
    kind : str
        One of :data:`TRACE_KINDS` (config ``calcium.datasets.<name>.kind``).

    Returns
    -------
    xarray.Dataset
        ``ds`` with attr ``trace_kind`` (``kind`` with ``auto`` resolved by :func:`resolve_kind`).

    Raises
    ------
    brainpipe.errors.InputError
        One line naming the file, what does not fit the kind and which kind would.
    """
    from brainpipe.errors import ConfigError

    if kind not in TRACE_KINDS:
        raise ConfigError(f"calcium kind {kind!r} is not one of {', '.join(TRACE_KINDS)}")
    F = np.asarray(ds["fluorescence"].values)
    cells = np.asarray(ds["cell"].values)
    key = "the dataset's kind (calcium.datasets.<name>.kind)"
    if kind in ("raw", "raw_with_neuropil") and int(ds.attrs.get("already_dff", 0)):
        raise _fail(path, f"stores dF/F (an NWB DfOverF series) but kind is {kind!r}", f"set {key} to dff")
    if kind in ("raw", "raw_with_neuropil"):
        neg = (F < 0).any(axis=0)
        if neg.any():
            names = ", ".join(str(c) for c in cells[neg][:3]) + (" ..." if neg.sum() > 3 else "")
            raise _fail(
                path,
                f"kind is {kind!r} but {int(neg.sum())} of {neg.size} cells ({names}) go negative (min "
                f"{float(F.min()):.4g}); raw fluorescence is never negative",
                f"set {key} to denoised (e.g. CNMF-E traces), dff or deconvolved, whichever these are",
            )
    if kind == "raw_with_neuropil" and "neuropil" not in ds:
        raise _fail(
            path,
            "kind is 'raw_with_neuropil' but the recording carries no neuropil trace",
            "give one (suite2p Fneu.npy, an NWB 'Neuropil' series, options.neuropil_key in HDF5) or set "
            f"{key} to raw",
        )
    if kind == "dff" and F.shape[0] > 1 and (np.percentile(F, 10, axis=0) >= 1.0).all():
        raise _fail(
            path,
            f"kind is 'dff' but every cell sits far above 0 (10th percentiles {np.percentile(F, 10):.4g} and up), "
            "as raw fluorescence does; dF/F hovers around 0",
            f"set {key} to raw or raw_with_neuropil (or auto)",
        )
    if kind == "deconvolved" and (F < 0).any():
        raise _fail(
            path,
            f"kind is 'deconvolved' but the traces go negative (min {float(F.min()):.4g}); deconvolved activity is "
            "never negative",
            f"set {key} to denoised or dff, whichever these are",
        )
    ds.attrs["trace_kind"] = resolve_kind(ds, kind)
    return ds


def finish_calcium(path, ds: xr.Dataset, drop_bad_cells: bool = False, kind: str = "auto") -> xr.Dataset:
    """The finishing step of every calcium reader: :func:`check_cells`, then :func:`check_kind`.

    Parameters
    ----------
    path : str or PathLike
        The source (named in messages).
    ds : xarray.Dataset
        A reader's ``calcium_traces`` dataset.
    drop_bad_cells : bool
        Drop all-NaN or constant ROIs instead of failing.
    kind : str
        What the traces are, one of :data:`TRACE_KINDS`.

    Returns
    -------
    xarray.Dataset
        The checked dataset with attr ``trace_kind``.
    """
    return check_kind(path, check_cells(path, ds, drop_bad_cells), kind)


@fill_doc
def read_suite2p(
    path,
    frame_rate_hz: float | None = None,
    use_iscell: bool = True,
    allow_ops_pickle: bool = False,
    min_iscell_prob: float | None = None,
) -> xr.Dataset:
    """Read a suite2p plane folder (F.npy, Fneu.npy, iscell.npy; spks.npy is carried when present).

    F and Fneu are (ROI, frame). Cells are named ``roi<index>`` by their suite2p row; neuron labels come from
    :data:`SUITE2P_LABELS` beside F.npy when it exists (a ``label`` variable).

    Parameters
    ----------
    path : str or os.PathLike
        The plane folder (e.g. ``suite2p/plane0``).
    frame_rate_hz : float, optional
        The frame rate in Hz (None: ``fs`` of ``frame_rate.json`` or ``ops_summary.json`` in the folder).
    use_iscell : bool, default True
        Keep only the ROIs ``iscell.npy`` (ROI, 2) marks as cells (when the file is there).
    allow_ops_pickle : bool, default False
        Read the frame rate from ``ops.npy`` when nothing else gives it; ops.npy is a pickle, so it is loaded only
        on this explicit opt-in.
    min_iscell_prob : float, optional
        Keep the ROIs whose cell probability (column 1 of ``iscell.npy``) reaches it (None: column 0, suite2p's
        own decision).

    %(calcium_traces_returns)s

    %(reader_raises)s
    """
    d = Path(path)
    if not d.is_dir():
        raise _fail(
            d,
            "suite2p plane folder does not exist"
            if not d.exists()
            else "is a file where the suite2p plane folder is expected",
            "give the folder holding F.npy (e.g. suite2p/plane0)",
        )
    for name, what in (("F.npy", "fluorescence"), ("Fneu.npy", "neuropil")):
        if not (d / name).exists():
            raise _fail(
                d,
                f"suite2p folder has no {name} ({what})",
                f"export {name} from suite2p or give the plane folder that holds it",
            )
    F = _load_npy(d / "F.npy", "suite2p fluorescence (F.npy)")
    if F.ndim != 2:
        raise _fail(d / "F.npy", f"has shape {F.shape}, expected (ROIs, frames)", "give suite2p's F.npy")
    if F.shape[0] == 0:
        raise _fail(
            d / "F.npy",
            f"holds no ROIs (shape {F.shape}, ROIs x frames)",
            "give a plane in which suite2p detected ROIs",
        )
    if F.shape[1] == 0:
        raise _fail(
            d / "F.npy",
            f"holds no frames (shape {F.shape}, ROIs x frames)",
            "give the F.npy of a run that recorded frames",
        )
    Fneu = _load_npy(d / "Fneu.npy", "suite2p neuropil (Fneu.npy)")
    if Fneu.shape != F.shape:
        raise _fail(
            d / "Fneu.npy",
            f"has shape {Fneu.shape} but F.npy has {F.shape}",
            "give the Fneu.npy of the same run",
        )
    keep = np.ones(F.shape[0], dtype=bool)
    if use_iscell and (d / "iscell.npy").exists():
        isc = _load_npy(d / "iscell.npy", "suite2p cell classification (iscell.npy)")
        isc = isc.reshape(-1, 1) if isc.ndim == 1 else isc
        if isc.ndim != 2 or isc.shape[1] == 0:
            raise _fail(
                d / "iscell.npy", f"has shape {isc.shape}, expected (ROIs, 2)", "give suite2p's iscell.npy"
            )
        if isc.shape[0] != F.shape[0]:
            raise _fail(
                d / "iscell.npy",
                f"has {isc.shape[0]} rows but F.npy has {F.shape[0]} ROIs",
                "give the iscell.npy of the same suite2p run",
            )
        keep = (
            isc[:, 1] >= min_iscell_prob
            if (min_iscell_prob is not None and isc.shape[1] > 1)
            else isc[:, 0] > 0.5
        )
        if not keep.any():
            raise _fail(
                d / "iscell.npy",
                "marks no ROI as a cell",
                "curate the ROIs in suite2p or set use_iscell: false",
            )
    rate, src = (
        (frame_rate_hz, "config")
        if frame_rate_hz
        else _sidecar_rate([d / "frame_rate.json", d / "ops_summary.json"])
    )
    if rate is None and allow_ops_pickle and (d / "ops.npy").exists():
        rate, src = _ops_rate(d / "ops.npy"), "ops.npy:fs"
    if rate is None:
        raise _fail(
            d,
            "no frame rate (not in the config, no frame_rate.json/ops_summary.json with 'fs')",
            "set frame_rate_hz for this dataset in calcium.datasets (ops.npy is a pickle and is not read)",
        )
    rate = _check_rate(rate, d)
    LOG.info(
        "%s: %d of %d ROIs are cells; frame rate %g Hz from %s", d, int(keep.sum()), F.shape[0], rate, src
    )
    rows = np.flatnonzero(keep)
    cells = np.array([f"roi{r}" for r in rows])
    Fk = F[rows].T.astype(np.float64)
    extra = {}
    if (d / "spks.npy").exists():
        sp = _load_npy(d / "spks.npy", "suite2p deconvolved activity (spks.npy)")
        if sp.shape == F.shape:
            extra["suite2p_spks"] = (
                ("time", "cell"),
                sp[rows].T.astype(np.float64),
                {"long_name": "suite2p deconvolved activity"},
            )
    if (d / SUITE2P_LABELS).exists():
        labels = _suite2p_labels(d / SUITE2P_LABELS, F.shape[0])
        extra["label"] = _labels_var(d / SUITE2P_LABELS, labels[rows])
    ds = _traces(Fk, rate, cells, f"suite2p:{d}", Fneu[rows].T, extra)
    ds.attrs["frame_rate_source"] = str(src)
    return ds


def _ops_rate(path: Path):
    """``fs`` of a suite2p ``ops.npy`` (a pickled dict): read only on the explicit ``allow_ops_pickle`` opt-in."""
    import pickle

    try:
        ops = np.load(path, allow_pickle=True).item()  # explicit opt-in only: ops.npy is a pickle
    except (ValueError, OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError) as err:
        raise _fail(
            path,
            f"cannot be read as suite2p's ops.npy ({type(err).__name__}: {' '.join(str(err).split())[:120]})",
            "set frame_rate_hz for this dataset instead",
        ) from None
    if not isinstance(ops, dict):
        raise _fail(
            path,
            f"holds a {type(ops).__name__}, not suite2p's ops dict",
            "set frame_rate_hz for this dataset",
        )
    return ops.get("fs")


@fill_doc
def read_nwb_ophys(
    path, frame_rate_hz: float | None = None, series: str | None = None, label_column: str | None = None
) -> xr.Dataset:
    """Read an NWB file's ophys ``Fluorescence`` (or ``DfOverF``) RoiResponseSeries, with ROI ids from its table.

    A series named ``Neuropil`` in the same container (if any) becomes ``neuropil``.

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

    %(calcium_traces_returns)s

    %(reader_raises)s
    """
    p = require_file(path, "NWB file")
    with open_nwb(p) as nwb:
        try:
            return _ophys(p, nwb, frame_rate_hz, series, label_column)
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
    if container.name == "DfOverF":
        ds.attrs["already_dff"] = 1
    return ds


@fill_doc
def read_array(
    path, frame_rate_hz: float | None = None, key: str | None = None, neuropil_key: str | None = None
) -> xr.Dataset:
    """Read a plain (time, neuron) array: ``.npy``, ``.csv`` (header row of cell names optional) or HDF5.

    The JSON sidecar (``<file>.json`` or ``<stem>.json``) may give ``frame_rate_hz`` and neuron ``"labels"`` (one
    per column). Cells without a CSV header are named ``n000``, ``n001``, ...

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` (loaded without pickle), ``.csv`` or ``.h5``/``.hdf5`` file.
    %(frame_rate_hz)s
    key : str, optional
        The (time, neuron) dataset of an HDF5 file (None: its first dataset).
    neuropil_key : str, optional
        A (time, neuron) neuropil dataset of an HDF5 file, kept as ``neuropil``.

    %(calcium_traces_returns)s

    %(reader_raises)s
    """
    p = require_file(path, "calcium array file")
    neuropil = None
    cells = None
    suffix = p.suffix.lower()
    if suffix == ".npy":
        F = _load_npy(p, "calcium array (time x neuron)")
    elif suffix == ".csv":
        F, cells = _read_csv(p)
    elif suffix in (".h5", ".hdf5"):
        F, neuropil = _read_hdf5(p, key, neuropil_key)
    else:
        raise _fail(p, f"unknown array format {suffix!r}", "use .npy, .csv or .h5/.hdf5 (time x neuron)")
    if F.ndim != 2:
        raise _fail(
            p, f"has shape {F.shape}, expected (time, neuron)", "save a 2-D array, one column per neuron"
        )
    rate = frame_rate_hz
    sidecars = [p.with_suffix(p.suffix + ".json"), p.with_suffix(".json")]
    if rate is None:
        rate, _ = _sidecar_rate(sidecars)
    if rate is None:
        raise _fail(
            p,
            "no frame rate (none in the config, no JSON sidecar with frame_rate_hz)",
            "set frame_rate_hz for this dataset",
        )
    rate = _check_rate(rate, p)
    cells = cells or [f"n{i:03d}" for i in range(F.shape[1])]
    labels = _sidecar_labels(sidecars, F.shape[1])
    return _traces(F.astype(np.float64), rate, cells, f"array:{p}", neuropil, labels)


def _sidecar_labels(paths: list[Path], n_cells: int) -> dict | None:
    """``"labels"`` of the first JSON sidecar that exists (one per column, "" or null: unlabelled), as variables."""
    for sc in paths:
        if sc.is_file():
            try:
                data = json.loads(sc.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise _fail(
                    sc, f"sidecar is not valid JSON ({' '.join(str(err).split())})", "fix or remove it"
                ) from None
            if not isinstance(data, dict) or "labels" not in data:
                return None
            labels = data["labels"]
            if not isinstance(labels, list) or len(labels) != n_cells:
                raise _fail(
                    sc,
                    f"'labels' is not a list of {n_cells} labels (one per column)",
                    'write "labels": [one text per column, "" for an unlabelled one]',
                )
            return {"label": _labels_var(sc, labels)}
    return None


def _read_csv(p: Path) -> tuple[np.ndarray, list[str]]:
    import pandas as pd

    try:
        df = pd.read_csv(p)
        if all(str(c).replace(".", "").replace("-", "").isdigit() for c in df.columns):
            df = pd.read_csv(p, header=None)
    except pd.errors.EmptyDataError:
        raise _fail(p, "holds no table (no header row, no values)", "give a time x neuron table") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise _fail(
            p,
            f"cannot be read as a CSV table ({type(err).__name__}: {' '.join(str(err).split())[:120]})",
            "give a comma-separated time x neuron table",
        ) from None
    if df.shape[0] == 0:
        raise _fail(
            p,
            f"holds no frames (a header row of {df.shape[1]} column(s) and no values)",
            "give one row per frame",
        )
    bad = [str(c) for c in df.columns if df[c].dtype.kind not in "biuf"]
    if bad:
        raise _fail(
            p,
            f"column(s) {', '.join(bad[:5])} hold non-numeric values",
            "give numbers only (one column per neuron, an optional header row of names)",
        )
    return df.to_numpy(dtype=np.float64), [str(c) for c in df.columns]


def _read_hdf5(p: Path, key, neuropil_key):
    import h5py

    try:
        fh = h5py.File(p, "r")
    except (OSError, RuntimeError) as err:  # h5py: not HDF5, truncated, damaged
        raise hdf5_error(p, err, "an HDF5 file") from None
    with fh:

        def dataset(k, option):
            obj = fh.get(k) if k is not None else None
            if not isinstance(obj, h5py.Dataset):
                raise _fail(
                    p,
                    f"no dataset {k!r} in the HDF5 file",
                    f"set options.{option} to the (time, neuron) dataset",
                )
            if obj.dtype.kind not in "biuf":
                raise _fail(
                    p,
                    f"dataset {k!r} holds {obj.dtype} values, not numbers",
                    "store a numeric (time, neuron) array",
                )
            try:
                return np.asarray(obj[()], dtype=np.float64)
            except (OSError, RuntimeError) as err:
                raise hdf5_error(p, err, "an HDF5 file") from None

        k = key or next((n for n in fh if isinstance(fh[n], h5py.Dataset)), None)
        F = dataset(k, "key")
        neuropil = dataset(neuropil_key, "neuropil_key") if neuropil_key else None
    return F, neuropil


# -- registration (detection tries them in this order) -----------------------------------------------------------
def _is_folder(path: Path) -> bool:
    # a folder can only be a suite2p plane: the reader then says what the folder lacks (F.npy, Fneu.npy)
    return path.is_dir()


register_modality("calcium", finish=finish_calcium)
register(
    read_suite2p,
    name="suite2p",
    modality="calcium",
    detect=_is_folder,
    looks_for="a suite2p plane folder (F.npy, Fneu.npy)",
)
register(read_nwb_ophys, name="nwb", modality="calcium", detect=has_suffix(".nwb"), looks_for="a .nwb file")
register(read_array, name="npy", modality="calcium", detect=has_suffix(".npy"), looks_for="a .npy array")
register(read_array, name="csv", modality="calcium", detect=has_suffix(".csv"), looks_for="a .csv table")
register(
    read_array,
    name="hdf5",
    modality="calcium",
    detect=has_suffix(".h5", ".hdf5"),
    looks_for="an .h5/.hdf5 file",
)


@fill_doc
def read_calcium(
    path,
    format: str = "auto",
    frame_rate_hz: float | None = None,
    options: dict[str, Any] | None = None,
    drop_bad_cells: bool = False,
    kind: str = "auto",
) -> xr.Dataset:
    """Read any supported calcium source into a ``calcium_traces`` dataset.

    The calcium case of :func:`brainpipe.io.read`.

    Parameters
    ----------
    path : str or PathLike
        A suite2p plane folder or a file.
    format : str
        ``"auto"`` (a folder -> ``suite2p``, else from the suffix: :func:`brainpipe.io.detect`) or one of
        ``brainpipe.io.formats("calcium")``.
    frame_rate_hz : float, optional
        The frame rate; default: the source's sidecar or NWB series (see each reader).
    options : dict, optional
        The reader's other keyword options (an option it lacks is a :class:`~brainpipe.errors.ConfigError`).
    drop_bad_cells : bool
        Drop all-NaN or constant ROIs (logged) instead of failing (see :func:`check_cells`).
    kind : str
        What the traces are (:data:`TRACE_KINDS`); checked against the values (:func:`check_kind`) and recorded
        in attr ``trace_kind``.

    Returns
    -------
    xarray.Dataset
        ``calcium_traces`` without file attributes.

    %(read_raises)s

    Examples
    --------
    >>> import numpy as np
    >>> from brainpipe.io import read_calcium
    >>> np.save("traces.npy", np.random.default_rng(0).normal(1.0, 0.1, size=(100, 3)))
    >>> ds = read_calcium("traces.npy", frame_rate_hz=10.0)  # detected: a (time, neuron) array
    >>> ds.sizes["time"], ds.sizes["cell"], ds.attrs["frame_rate_hz"]
    (100, 3, 10.0)
    """
    opts = dict(options or {})
    if frame_rate_hz is not None:
        opts["frame_rate_hz"] = frame_rate_hz
    opts["drop_bad_cells"] = drop_bad_cells
    opts["kind"] = kind
    return read(path, "calcium", format, **opts)
