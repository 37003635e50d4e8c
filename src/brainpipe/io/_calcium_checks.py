"""What every calcium reader shares: the trace kinds, frame rates from sidecars, neuron labels, the
``calcium_traces`` dataset and its checks (:func:`check_cells`, :func:`check_kind`, :func:`finish_calcium`).

Part of :mod:`brainpipe.io.calcium`, which re-exports its public names.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.errors import InputError
from brainpipe.io._common import load_npy

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


def finish_calcium(
    path, ds: xr.Dataset, drop_bad_cells: bool = False, kind: str = "auto", behaviour: str | None = None
) -> xr.Dataset:
    """The finishing step of every calcium reader: :func:`check_cells`, :func:`check_kind`, then the behaviour table.

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
    behaviour : str, optional
        A behaviour table (:func:`brainpipe.io.calcium.read_behaviour_table`: CSV/TSV/NPZ with a ``time_s``
        column) whose variables replace any behaviour the source carries.

    Returns
    -------
    xarray.Dataset
        The checked dataset with attr ``trace_kind`` (and the table's behaviour).
    """
    out = check_kind(path, check_cells(path, ds, drop_bad_cells), kind)
    if behaviour is None:
        return out
    from brainpipe.io._calcium_behaviour import read_behaviour_table, with_behaviour

    if "behaviour" in out:
        LOG.info("%s: its behaviour is replaced by the table %s", path, behaviour)
    return with_behaviour(out, read_behaviour_table(behaviour), behaviour)
