"""MatClust (Frank/Kemere lab) ``spikes.mat`` reader, with the ``.videoPositionTracking`` position file."""

from __future__ import annotations

import os
import re
import struct
import zlib

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.io._common import (
    LOG,
    assemble,
    behaviour_block,
    check_train,
    fail,
    increasing_mask,
    require_file,
    window,
)

END_SETTINGS = b"<End settings>"
POSITION_RECORD = np.dtype([("time", "<u4"), ("x", "<u2"), ("y", "<u2"), ("x2", "<u2"), ("y2", "<u2")])


def _walk(node, path: tuple[int, ...]):
    """Yield (1-based index path, struct or array) for every leaf unit in MatClust's nested cell arrays."""
    if not isinstance(node, np.ndarray):
        return
    if node.dtype.names is not None:
        if node.size == 1:
            yield path, node.reshape(-1)[0]
            return
        for k, item in enumerate(node.reshape(-1, order="F")):
            yield from _walk(np.asarray(item).reshape(1), (*path, k + 1))
        return
    if node.dtype == object:
        if node.size == 1 and not path:  # the outer 1x1 wrappers (day, epoch) of a one-session file
            yield from _walk(node.reshape(-1)[0], path)
            return
        for k, item in enumerate(node.reshape(-1, order="F")):
            yield from _walk(item, (*path, k + 1))
        return
    # numeric leaf: an empty slot (no unit sorted), or a bare vector of spike times
    if node.size:
        yield path, node


def _label(path: tuple[int, ...]) -> str:
    path = path + (1,) * (2 - len(path))  # a lone struct in a tetrode slot is that tetrode's unit 1
    *outer, tet, unit = path
    prefix = "" if all(i == 1 for i in outer) else "e" + "-".join(map(str, outer))
    return f"{prefix}t{tet}u{unit}"


def _as_float(x) -> np.ndarray:
    a = np.asarray(x)
    while a.dtype == object and a.size == 1:
        a = np.asarray(a.reshape(-1)[0])
    if a.dtype == object or a.dtype.kind not in "fiub":
        raise ValueError(f"dtype {a.dtype}")
    if a.ndim == 2 and a.shape[1] > 1 and a.shape[0] > 1:
        a = a[:, 0]
    return a.astype(np.float64).ravel()


def _mat_truncated(p) -> tuple[int, int] | None:
    """(bytes the top-level data elements of a MATLAB v5 file declare, file size) when they run past its end."""
    size = os.path.getsize(p)
    with open(p, "rb") as fh:
        raw = fh.read()
    if size < 128 and raw.startswith(b"MATLAB"[: min(size, 6)]):
        return 128, size  # it ends inside the 128-byte header
    if size < 128 or raw[126:128] not in (b"IM", b"MI"):
        return None
    order = "<" if raw[126:128] == b"IM" else ">"
    at = 128
    while at < size:
        if at + 8 > size:
            return at + 8, size
        kind, n = struct.unpack(order + "II", raw[at : at + 8])
        step = 8 if kind >> 16 else 8 + n + (-n % 8 if kind != 15 else 0)  # small elements fit in their tag
        if at + step > size and at + 8 + n > size:
            return at + 8 + n, size
        at += step
    return None


@fill_doc
def read_position_tracking(path: str | os.PathLike, ticks_per_s: float = 30000.0) -> dict:
    """Parse a ``.videoPositionTracking`` file: header up to ``<End settings>``, then 12-byte records.

    Records whose time is not after every earlier one (exact repeats) are dropped (logged). A ``clockrate`` in the
    header that differs from ``ticks_per_s`` is logged; ``ticks_per_s`` is used.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.videoPositionTracking`` file.
    ticks_per_s : float, default 30000.0
        Clock ticks per second of the record times.

    Returns
    -------
    dict
        A behaviour block (``time``, ``values``, ``names``, ``units``): time = ticks / ``ticks_per_s``; x, y in
        pixels, plus x2, y2 when a second LED was tracked.

    %(reader_raises)s
    """
    p = require_file(path, "position tracking file")
    raw = p.read_bytes()
    end = raw.find(END_SETTINGS)
    if end < 0:
        raise fail(
            p,
            "has no '<End settings>' header line",
            "give a .videoPositionTracking file (text header, then records)",
        )
    header = raw[:end].decode("latin-1")
    off = end + len(END_SETTINGS)
    off += 2 if raw[off : off + 2] == b"\r\n" else 1 if raw[off : off + 1] == b"\n" else 0
    m = re.search(r"clockrate:\s*([0-9.eE+]+)", header)
    if m and not np.isclose(float(m.group(1)), float(ticks_per_s)):
        LOG.warning(
            "%s: header clockrate %s differs from ticks_per_s=%s; using ticks_per_s",
            p,
            m.group(1),
            ticks_per_s,
        )
    n = (len(raw) - off) // POSITION_RECORD.itemsize
    extra = (len(raw) - off) % POSITION_RECORD.itemsize
    if n == 0:
        raise fail(p, "holds no position records after the header", "check the file is complete")
    if extra:
        LOG.warning("%s: %d trailing byte(s) after the last whole record ignored (truncated file?)", p, extra)
    rec = np.frombuffer(raw, dtype=POSITION_RECORD, count=n, offset=off)
    t = rec["time"].astype(np.float64) / float(ticks_per_s)
    keep = increasing_mask(rec["time"])
    if not keep.all():
        LOG.warning(
            "%s: %d position record(s) with a repeated or earlier timestamp dropped", p, int((~keep).sum())
        )
    names = ["x", "y"]
    if rec["x2"].any() or rec["y2"].any():
        names += ["x2", "y2"]
    values = np.column_stack([rec[k][keep].astype(np.float64) for k in names])
    return behaviour_block(p, t[keep], values, names, "px")


@fill_doc
def read_matclust(
    path: str | os.PathLike,
    position: str | os.PathLike | None = None,
    ticks_per_s: float = 30000.0,
    t_start_s: float | None = None,
    t_stop_s: float | None = None,
) -> xr.Dataset:
    """Read a MatClust ``spikes.mat`` (and optionally its position file) into a ``spike_times`` dataset.

    The file holds a nested cell array ``spikes`` ({day}{epoch}{tetrode}{cell}, 1x1 outer levels for one
    session); each cell is empty (nothing sorted) or a struct with ``time`` (spike times in s), ``timerange``
    ([start, stop] s) and ``meanrate``. Every struct is a unit, kept even without spikes (logged). Unit labels are
    ``"t{tetrode}u{cell}"``, 1-based MATLAB indices (``t1u1`` is ``spikes{1}{1}{1}{1}``); when a file holds several
    days/epochs the outer indices are prefixed, ``"e{day}-{epoch}t{tetrode}u{cell}"``. Attrs: ``t_start_s``,
    ``t_stop_s``, ``source``, ``format = "matclust"``, ``observed = "continuous"``, and ``position_source`` when
    position was read.

    Parameters
    ----------
    path : str or os.PathLike
        A MatClust ``spikes.mat`` (MATLAB v7 or older; v7.3 is HDF5 and refused with what to do).
    position : str or os.PathLike, optional
        A ``.videoPositionTracking`` file (:func:`read_position_tracking`): behaviour ``x``, ``y`` (and ``x2``,
        ``y2`` when a second LED was tracked) in pixels (units ``"px"``) at ``time = ticks / ticks_per_s``.
    ticks_per_s : float, default 30000.0
        Clock ticks per second of the position file.
    t_start_s, t_stop_s : float, optional
        The observation window in seconds (None: the hull of the units' ``timerange``); always widened to hold
        every spike.

    %(spike_times_returns)s

    %(reader_raises)s
    """
    p = require_file(path, "MatClust spikes file")
    import scipy.io
    from scipy.io.matlab import MatReadError

    try:
        mat = scipy.io.loadmat(p, squeeze_me=False, struct_as_record=True)
    except NotImplementedError:
        raise fail(p, "is a MATLAB v7.3 (HDF5) file", "save it in MATLAB with save(..., '-v7')") from None
    except (
        MatReadError,
        ValueError,
        TypeError,
        OSError,
        EOFError,
        zlib.error,
        KeyError,
        IndexError,
        struct.error,
    ) as err:  # what scipy raises on a cut or damaged file, by where the damage is
        cut = _mat_truncated(p)
        if cut is not None:
            raise fail(
                p,
                f"is truncated: its variables need {cut[0]} bytes but the file holds {cut[1]}",
                "copy or export the file again",
            ) from None
        raise fail(
            p,
            f"cannot be read as a MATLAB .mat file ({type(err).__name__}: {' '.join(str(err).split())[:160]})",
            "check that it is a complete, undamaged MatClust spikes file",
        ) from None
    if "spikes" not in mat:
        found = [k for k in mat if not k.startswith("__")]
        if not found and p.stat().st_size <= 128:
            raise fail(
                p,
                "is truncated: it holds the 128-byte .mat header and no variables",
                "copy or export the file again",
            )
        raise fail(
            p, f"has no variable 'spikes' (found {', '.join(found) or 'none'})", "give a MatClust spikes.mat"
        )
    trains, labels, lo, hi = [], [], [], []
    for idx, rec in _walk(mat["spikes"], ()):
        label = _label(idx)
        if isinstance(rec, np.void) and rec.dtype.names is not None:
            if "time" not in rec.dtype.names:
                raise fail(
                    p,
                    f"unit {label} has no field 'time' (fields: {', '.join(rec.dtype.names)})",
                    "give a MatClust spikes.mat",
                )
            try:
                t = _as_float(rec["time"])
                tr = _as_float(rec["timerange"]) if "timerange" in rec.dtype.names else np.zeros(0)
            except ValueError as err:
                raise fail(
                    p,
                    f"unit {label}: field 'time' or 'timerange' is not numeric ({err})",
                    "give a MatClust spikes.mat",
                ) from None
            if tr.size == 2 and np.all(np.isfinite(tr)):
                lo.append(tr[0])
                hi.append(tr[1])
        else:
            t = np.asarray(rec, dtype=np.float64).ravel()
        trains.append(check_train(p, label, np.sort(t), require_sorted=False))
        labels.append(label)
    if not labels:
        raise fail(p, "holds no units", "check that the tetrodes were sorted")
    all_t = np.concatenate(trains)
    t0, t1 = window(
        p,
        all_t,
        t_start_s if t_start_s is not None else (min(lo) if lo else None),
        t_stop_s if t_stop_s is not None else (max(hi) if hi else None),
    )
    attrs, beh = {}, None
    if position is not None:
        beh = read_position_tracking(position, ticks_per_s)
        attrs["position_source"] = str(position)
    return assemble(
        p,
        trains,
        labels,
        fmt="matclust",
        t_start=t0,
        t_stop=t1,
        observed="continuous",
        behaviour=beh,
        attrs=attrs,
    )
