"""Calcium traces from a suite2p plane folder (:func:`read_suite2p`, format ``suite2p``).

Part of :mod:`brainpipe.io.calcium`, which re-exports its public names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.io._calcium_checks import (
    LOG,
    SUITE2P_LABELS,
    _check_rate,
    _fail,
    _labels_var,
    _load_npy,
    _sidecar_rate,
    _suite2p_labels,
    _traces,
)


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
