"""Calcium preprocessing: neuropil subtraction, dF/F on a running-percentile baseline, AR(1) deconvolution.

Order of operations in :func:`preprocess_calcium`:

1. bad cells: a cell whose fluorescence is all NaN, or constant, is an error (one line naming the cells), or is
   dropped with a log line when ``drop_bad_cells`` is true; isolated NaN frames are an error (mask them upstream);
2. neuropil subtraction: Fc = F - ``neuropil_coef`` x Fneu (when the data carry ``neuropil``; default 0.7);
3. baseline: F0 = running ``percentile`` of Fc over a centred window of ``window_s`` seconds (computed every
   ``window/20`` frames and interpolated linearly between; edges use the nearest full window);
4. dF/F = (Fc - F0) / F0. A baseline F0 <= 0 anywhere is an error naming the cells (lower ``neuropil_coef`` or
   check the traces): dividing by a non-positive baseline has no meaning;
5. events: :func:`oasis_ar1` on each cell's dF/F (non-negative AR(1) deconvolution by pool-adjacent-violators;
   decay ``g`` from ``tau_s`` or estimated from the autocovariance; minimum event size ``s_min`` =
   ``min_event_snr`` x the cell's noise SD, which is estimated from the median absolute first difference; the
   noise floor is taken as the 25th percentile + 0.674 SD and subtracted first);
6. :func:`events_to_counts`: events >= ``s_min`` counted per bin of ``bin_frames`` frames (spike_counts).

Each kind of trace (``kind``, else the traces' ``trace_kind`` attribute, else ``auto``; see
:data:`brainpipe.io.calcium.TRACE_KINDS`) takes its own path through steps 2-6:

* ``auto`` (the default, today's path): ``dff`` when the traces are dF/F already (attr ``already_dff``, e.g. an
  NWB DfOverF series), else ``raw_with_neuropil`` when they carry ``neuropil``, else ``raw``;
* ``raw``: steps 3-6 on F itself (a neuropil trace, if any, is not subtracted);
* ``raw_with_neuropil``: steps 2-6;
* ``dff``: the traces are the dF/F; steps 5-6 only (no baseline, ``baseline`` is NaN);
* ``denoised`` (e.g. CNMF-E's C: background removed, may go negative, so a ratio to a baseline means nothing):
  the running-percentile baseline F0 of step 3 is subtracted, not divided by, and the result is scaled to unit
  standard deviation per cell: ``dff`` = (C - F0) / SD(C - F0) (``units`` "1", SD units); then steps 5-6, with the
  noise SD at least :data:`DENOISED_NOISE_FLOOR` (a denoised trace has almost no frame-to-frame noise left, so the
  event threshold would otherwise fall to about 0 and the baseline's small kinks would count as events);
* ``deconvolved`` (non-negative event or spike estimates): no baseline and no deconvolution; ``dff`` holds the
  activity as given and ``events`` the activity at or above ``min_event_snr`` x its noise SD (the noise SD of
  sparse events is about 0, so every positive frame counts); ``ar1_g`` is NaN.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.errors import InputError

LOG = logging.getLogger("brainpipe.preprocess.calcium")
#: the smallest noise SD (in units of the trace's SD) of a ``denoised`` trace's event threshold
DENOISED_NOISE_FLOOR = 0.1


def _short(items, n=5) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def bad_cells(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Find the cells without signal: all NaN, or constant over time (ignoring NaNs).

    Parameters
    ----------
    F : numpy.ndarray
        (time, cell) fluorescence.

    Returns
    -------
    all_nan : numpy.ndarray
        (cell,) bool: every frame is NaN.
    constant : numpy.ndarray
        (cell,) bool: one value over time (NaNs ignored), and not all NaN.
    """
    finite = np.isfinite(F)
    all_nan = ~finite.any(axis=0)
    hi = np.where(finite, F, -np.inf).max(axis=0, initial=-np.inf)
    lo = np.where(finite, F, np.inf).min(axis=0, initial=np.inf)
    constant = ~all_nan & ~(hi > lo)
    return all_nan, constant


def running_percentile(x: np.ndarray, window: int, percentile: float, step: int | None = None) -> np.ndarray:
    """Running percentile of each column of x (time, n) over a centred window of ``window`` frames.

    Evaluated every ``step`` frames (default window // 20) and linearly interpolated; near the edges the
    nearest full window is used. Memory: one block of (n_centres, window) per column chunk.

    Parameters
    ----------
    x : numpy.ndarray
        (time, n) signals.
    window : int
        Window length in frames (clipped to [1, time]).
    percentile : float
        The percentile, in [0, 100].
    step : int, optional
        Frames between evaluated windows (default ``window // 20``, at least 1).

    Returns
    -------
    numpy.ndarray
        (time, n) float64 running percentile.
    """
    T, n = x.shape
    window = int(min(max(window, 1), T))
    step = int(step or max(1, window // 20))
    starts = np.arange(0, T - window + 1, step)
    if starts[-1] != T - window:
        starts = np.append(starts, T - window)
    centres = starts + (window - 1) / 2.0
    out = np.empty_like(x, dtype=np.float64)
    chunk = max(1, int(2e7 // max(1, starts.size * window)))
    t = np.arange(T)
    for lo in range(0, n, chunk):
        cols = x[:, lo : lo + chunk]
        v = np.lib.stride_tricks.sliding_window_view(cols, window, axis=0)[starts]  # (n_c, cols, window)
        q = np.percentile(v, percentile, axis=2)
        for k in range(q.shape[1]):
            out[:, lo + k] = np.interp(t, centres, q[:, k])
    return out


def noise_sd(y: np.ndarray) -> np.ndarray:
    """Noise SD per column from the median absolute first difference (robust to sparse events).

    ``sd = median|dy| / (0.6745 * sqrt(2))``.

    Parameters
    ----------
    y : numpy.ndarray
        (time, n) signals, or (time,) one signal.

    Returns
    -------
    numpy.ndarray
        The noise SD of each column.
    """
    d = np.diff(y, axis=0)
    return np.median(np.abs(d), axis=0) / (0.6745 * math.sqrt(2.0))


def estimate_g(y: np.ndarray) -> float:
    """Estimate the AR(1) decay from the autocovariance at lags 1 and 2 (lag 0 carries the noise).

    ``g = acov(2) / acov(1)``, clipped to [0.5, 0.995]; 0.9 when ``acov(1) <= 0``.

    Parameters
    ----------
    y : numpy.ndarray
        (time,) one signal.

    Returns
    -------
    float
        The decay per frame.
    """
    y = y - y.mean()
    a1 = float(np.dot(y[1:], y[:-1]))
    a2 = float(np.dot(y[2:], y[:-2]))
    if a1 <= 0:
        return 0.9
    return float(np.clip(a2 / a1, 0.5, 0.995))


def oasis_ar1(y: np.ndarray, g: float, lam: float = 0.0, s_min: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative AR(1) deconvolution (OASIS; Friedrich, Zhou & Paninski 2017), written here.

    Solves min_c 1/2 ||c - y||^2 + lam ||s||_1 with s_t = c_t - g c_{t-1} >= 0 (and s_t >= ``s_min`` where s_t > 0,
    the thresholded variant) by pool-adjacent-violators: each pool is a run where c decays freely from a value v;
    a new pool merges into the previous one while it violates v_new >= g^len v_prev + s_min.

    Parameters
    ----------
    y : numpy.ndarray
        (time,) one trace.
    g : float
        AR(1) decay per frame.
    lam : float, default 0.0
        L1 penalty on the events.
    s_min : float, default 0.0
        Smallest non-zero event.

    Returns
    -------
    c : numpy.ndarray
        (time,) the denoised calcium.
    s : numpy.ndarray
        (time,) the events, 0 or >= ``s_min``.
    """
    y = np.asarray(y, dtype=np.float64)
    T = y.size
    yy = y - lam * (1 - g)
    yy[-1] = y[-1] - lam
    # pools as parallel lists: value, weight, start, length
    v = np.empty(T)
    w = np.empty(T)
    t0 = np.empty(T, dtype=np.int64)
    ln = np.empty(T, dtype=np.int64)
    gpow_cache = {}

    def gp(k: int) -> float:
        r = gpow_cache.get(k)
        if r is None:
            r = g**k
            gpow_cache[k] = r
        return r

    i = -1
    for t in range(T):
        i += 1
        v[i], w[i], t0[i], ln[i] = yy[t], 1.0, t, 1
        while i > 0:
            gl = gp(int(ln[i - 1]))
            if v[i] >= gl * v[i - 1] + s_min:
                break
            # merge pool i into i-1
            g2 = gl * gl
            v[i - 1] = (w[i - 1] * v[i - 1] + gl * w[i] * v[i]) / (w[i - 1] + g2 * w[i])
            w[i - 1] = w[i - 1] + g2 * w[i]
            ln[i - 1] += ln[i]
            i -= 1
    c = np.empty(T)
    for k in range(i + 1):
        L = int(ln[k])
        c[t0[k] : t0[k] + L] = max(v[k], 0.0) * g ** np.arange(L)
    s = np.empty(T)
    s[0] = c[0]
    s[1:] = c[1:] - g * c[:-1]
    s[s < 1e-12] = 0.0
    return c, s


def deconvolve(
    dff: np.ndarray,
    frame_rate_hz: float,
    tau_s: float | None = None,
    min_event_snr: float = 3.0,
    lam: float = 0.0,
    noise_floor: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run :func:`oasis_ar1` on each column of dF/F.

    Each cell's noise floor (its 25th percentile + 0.674 noise SD) is subtracted first.

    Parameters
    ----------
    dff : numpy.ndarray
        (time, cell) dF/F.
    frame_rate_hz : float
        Frames per second.
    tau_s : float, optional
        Indicator decay time constant; None: the decay is estimated per cell (:func:`estimate_g`).
    min_event_snr : float, default 3.0
        Smallest event, in units of the cell's noise SD (:func:`noise_sd`).
    lam : float, default 0.0
        L1 penalty on the events.
    noise_floor : float, default 0.0
        Smallest noise SD used (for traces with almost no noise left, e.g. denoised ones).

    Returns
    -------
    events : numpy.ndarray
        (time, cell) inferred events.
    calcium : numpy.ndarray
        (time, cell) denoised calcium.
    g : numpy.ndarray
        (cell,) AR(1) decay used per cell.
    s_min : numpy.ndarray
        (cell,) minimum event size per cell.
    """
    T, n = dff.shape
    sd = np.maximum(noise_sd(dff), noise_floor)
    events = np.zeros_like(dff, dtype=np.float64)
    calcium = np.zeros_like(dff, dtype=np.float64)
    gs = np.zeros(n)
    smins = np.zeros(n)
    for k in range(n):
        g = math.exp(-1.0 / (tau_s * frame_rate_hz)) if tau_s else estimate_g(dff[:, k])
        # noise floor b: the 25th percentile sits 0.674 noise SD below the floor when events fill < half the frames
        y = dff[:, k] - (np.percentile(dff[:, k], 25) + 0.674 * sd[k])
        smin = float(min_event_snr * sd[k])
        c, s = oasis_ar1(y, g, lam=lam, s_min=smin)
        events[:, k], calcium[:, k], gs[k], smins[k] = s, c, g, smin
    return events, calcium, gs, smins


@fill_doc
def preprocess_calcium(
    traces: xr.Dataset,
    neuropil_coef: float = 0.7,
    window_s: float = 60.0,
    percentile: float = 10.0,
    tau_s: float | None = None,
    min_event_snr: float = 3.0,
    drop_bad_cells: bool = False,
    source: str = "traces",
    kind: str | None = None,
) -> xr.Dataset:
    """A ``calcium_traces`` dataset with ``dff`` and ``events`` added (see the module docstring for the order).

    Parameters
    ----------
    traces : xarray.Dataset
        A ``calcium_traces`` dataset: ``fluorescence`` (time x cell), optionally ``neuropil``; ``frame_rate_hz`` in
        its attrs.
    neuropil_coef : float, default 0.7
        Neuropil subtraction coefficient.
    window_s : float, default 60.0
        Length of the running baseline window, in seconds.
    percentile : float, default 10.0
        Percentile of the running baseline.
    tau_s : float, optional
        Indicator decay time constant (None: estimated per cell).
    min_event_snr : float, default 3.0
        Smallest event, in units of the cell's noise SD.
    drop_bad_cells : bool, default False
        Drop all-NaN or constant cells (with a log line) instead of raising.
    %(source)s
    kind : str, optional
        What the traces are (:data:`brainpipe.io.calcium.TRACE_KINDS`); default: the traces' ``trace_kind``
        attribute (set by the readers), else ``auto``.

    Returns
    -------
    xarray.Dataset
        ``traces`` with ``dff``, ``events``, ``baseline`` (time x cell), ``ar1_g`` and ``event_threshold`` (cell)
        added, and the parameters (and ``trace_kind``, the kind's path taken) in its attrs.

    Raises
    ------
    brainpipe.errors.InputError
        Bad cells (unless dropped), NaN frames, a baseline window longer than the recording, a baseline <= 0
        (raw kinds) or traces that do not fit their kind (no neuropil for ``raw_with_neuropil``, negative
        ``deconvolved`` activity).
    """
    from brainpipe.errors import ConfigError
    from brainpipe.io.calcium import TRACE_KINDS, resolve_kind

    kind = str(kind or traces.attrs.get("trace_kind") or "auto")
    if kind not in TRACE_KINDS:
        raise ConfigError(f"{source}: trace kind {kind!r} is not one of {', '.join(TRACE_KINDS)}")
    kind = resolve_kind(traces, kind)
    fs = float(traces.attrs["frame_rate_hz"])
    F = np.asarray(traces["fluorescence"].values, dtype=np.float64)
    cells = np.asarray(traces["cell"].values)
    all_nan, constant = bad_cells(F)
    bad = all_nan | constant
    if bad.any():
        what = ("all-NaN cell(s) " + _short(cells[all_nan]) if all_nan.any() else "") + (
            ("; " if all_nan.any() else "") + "constant cell(s) " + _short(cells[constant])
            if constant.any()
            else ""
        )
        if not drop_bad_cells:
            raise InputError(
                f"{source}: {what}: no signal to normalise; drop them upstream (e.g. iscell) or set "
                "calcium.preprocess.drop_bad_cells: true"
            )
        LOG.warning("%s: dropping %s", source, what)
        traces = traces.isel(cell=np.flatnonzero(~bad))
        F = F[:, ~bad]
        cells = cells[~bad]
        if not cells.size:
            raise InputError(f"{source}: no cell left after dropping bad cells; check the recording")
    if not np.isfinite(F).all():
        bad_c = cells[~np.isfinite(F).all(axis=0)]
        raise InputError(
            f"{source}: NaN/inf frames in cell(s) {_short(bad_c)}; interpolate or drop those frames upstream"
        )
    settings = (fs, tau_s, min_event_snr, neuropil_coef, window_s, percentile, kind)
    if kind == "dff":  # e.g. an NWB DfOverF series: steps 2-4 were done upstream
        dff, F0 = F, np.full_like(F, np.nan)
        return _with_events(traces, dff, F0, *settings)
    if kind == "deconvolved":
        return _deconvolved(traces, F, source, *settings)
    Fc = F
    subtracted = kind == "raw_with_neuropil" and neuropil_coef > 0
    if kind == "raw_with_neuropil" and "neuropil" not in traces:
        raise InputError(
            f"{source}: trace kind 'raw_with_neuropil' but the traces carry no neuropil; give the neuropil trace "
            "or set the dataset's kind (calcium.datasets.<name>.kind) to raw"
        )
    if subtracted:
        Fc = F - neuropil_coef * np.asarray(traces["neuropil"].values, dtype=np.float64)
    T = Fc.shape[0]
    window = int(round(window_s * fs))
    if window < 3 or window > T:
        raise InputError(
            f"{source}: baseline window {float(window_s)} s = {window} frames but the recording has {T} frames at {fs} Hz; "
            f"set calcium.preprocess.baseline.window_s between {3 / fs:.3g} and {T / fs:.4g} s"
        )
    F0 = running_percentile(Fc, window, percentile)
    if kind == "denoised":  # may go negative: subtract the baseline, scale to unit SD (no ratio to F0)
        d = Fc - F0
        sd = d.std(axis=0)
        return _with_events(traces, d / np.where(sd > 0, sd, 1.0), F0, *settings)
    nonpos = ~(F0 > 0).all(axis=0)
    if nonpos.any():
        raise InputError(_nonpositive_baseline(source, cells[nonpos], neuropil_coef, subtracted))
    dff = (Fc - F0) / F0
    return _with_events(traces, dff, F0, *settings)


def _nonpositive_baseline(source: str, cells, neuropil_coef: float, subtracted: bool) -> str:
    """The one line for a baseline F0 <= 0; it suggests lowering the neuropil coefficient only where one was used."""
    kinds = (
        "if the traces are not raw fluorescence (CNMF-E denoised traces, dF/F, deconvolved activity), set the "
        "dataset's kind (calcium.datasets.<name>.kind) to denoised, dff or deconvolved"
    )
    if subtracted:
        return (
            f"{source}: baseline F0 <= 0 in cell(s) {_short(cells)} after neuropil subtraction with coefficient "
            f"{neuropil_coef}; lower calcium.preprocess.neuropil_coef or drop those cells ({kinds})"
        )
    return (
        f"{source}: baseline F0 <= 0 in cell(s) {_short(cells)} (no neuropil subtracted), but raw fluorescence "
        f"has a positive baseline; {kinds}, or drop those cells"
    )


def _deconvolved(traces, A, source, fs, tau_s, min_event_snr, neuropil_coef, window_s, percentile, kind):
    """The ``deconvolved`` path: the activity as given; events where it reaches min_event_snr x its noise SD."""
    if (A < 0).any():
        bad = (A < 0).any(axis=0)
        raise InputError(
            f"{source}: trace kind 'deconvolved' but cell(s) {_short(np.asarray(traces['cell'].values)[bad])} go "
            "negative, which deconvolved activity never does; set the dataset's kind (calcium.datasets.<name>.kind) "
            "to denoised or dff"
        )
    smins = min_event_snr * noise_sd(A)
    events = np.where(A >= np.maximum(smins, 1e-12), A, 0.0)
    nan = np.full(A.shape[1], np.nan)
    return _assemble(
        traces,
        A,
        events,
        np.full_like(A, np.nan),
        nan,
        smins,
        *_attrs(neuropil_coef, window_s, percentile, min_event_snr, kind),
    )


def _attrs(neuropil_coef, window_s, percentile, min_event_snr, kind):
    return (
        {
            "neuropil_coef": float(neuropil_coef),
            "baseline_window_s": float(window_s),
            "baseline_percentile": float(percentile),
            "min_event_snr": float(min_event_snr),
        },
        kind,
    )


#: the long names of ``dff``, ``events`` and ``baseline`` on the paths of the kinds that differ from dF/F's
_NAMES = {
    "denoised": {
        "dff": "denoised trace minus its running-percentile baseline, in units of its SD",
        "events": "inferred events (OASIS AR(1), SD units)",
        "baseline": "F0: running percentile of the denoised trace (its units)",
    },
    "deconvolved": {
        "dff": "deconvolved activity as given",
        "events": "deconvolved activity at or above the event threshold",
        "baseline": "no baseline (NaN): deconvolved activity",
    },
}


def _with_events(
    traces, dff, F0, fs, tau_s, min_event_snr, neuropil_coef, window_s, percentile, kind="auto"
) -> xr.Dataset:
    floor = DENOISED_NOISE_FLOOR if kind == "denoised" else 0.0
    events, _, gs, smins = deconvolve(dff, fs, tau_s, min_event_snr, noise_floor=floor)
    return _assemble(
        traces, dff, events, F0, gs, smins, *_attrs(neuropil_coef, window_s, percentile, min_event_snr, kind)
    )


def _assemble(traces, dff, events, F0, gs, smins, attrs, kind) -> xr.Dataset:
    out = traces.copy()
    names = _NAMES.get(kind, {})
    out["dff"] = (
        ("time", "cell"),
        dff,
        {"units": "1", "long_name": names.get("dff", "dF/F (running-percentile baseline)")},
    )
    out["events"] = (
        ("time", "cell"),
        events,
        {"units": "1", "long_name": names.get("events", "inferred events (OASIS AR(1), dF/F units)")},
    )
    out["baseline"] = (
        ("time", "cell"),
        F0,
        {
            "units": "1",
            "long_name": names.get(
                "baseline", "F0: running percentile of F - r Fneu (arbitrary units; NaN: given as dF/F)"
            ),
        },
    )
    out["ar1_g"] = ("cell", gs, {"long_name": "AR(1) decay per frame used for deconvolution"})
    out["event_threshold"] = ("cell", smins, {"units": "1", "long_name": "minimum event size (s_min)"})
    out.attrs.update(attrs)
    out.attrs["trace_kind"] = kind
    return out


def events_to_counts(processed: xr.Dataset, bin_frames: int, fractions, n_blocks: int) -> xr.Dataset:
    """Count the inferred events into a ``spike_counts`` dataset, with a time-block split as bin_spikes makes.

    Per bin of ``bin_frames`` frames, the count is the number of frames with an event (events are 0 or >= the
    cell's threshold); a last partial bin is dropped.

    Parameters
    ----------
    processed : xarray.Dataset
        A ``calcium_traces`` dataset with ``events`` (:func:`preprocess_calcium`).
    bin_frames : int
        Frames per bin.
    fractions : mapping
        ``train``/``validation``/``test`` fractions of the split.
    n_blocks : int
        Number of time blocks of the split (:func:`~brainpipe.preprocess.time_block_split`).

    Returns
    -------
    xarray.Dataset
        A ``spike_counts`` dataset: ``counts`` (time x unit, one unit per cell) and ``split``.
    """
    from brainpipe.preprocess.spikes import time_block_split

    fs = float(processed.attrs["frame_rate_hz"])
    ev = np.asarray(processed["events"].values) > 0
    T = ev.shape[0] // bin_frames * bin_frames
    counts = ev[:T].reshape(-1, bin_frames, ev.shape[1]).sum(axis=1).astype(np.int64)
    bw = bin_frames / fs
    t0 = float(processed["time"].values[0])
    time = t0 + (np.arange(counts.shape[0]) + 0.5) * bw
    split = time_block_split(counts.shape[0], fractions, n_blocks)
    return xr.Dataset(
        {
            "counts": (
                ("time", "unit"),
                counts,
                {"units": "1", "long_name": "inferred calcium events per bin"},
            ),
            "split": ("time", split, {"flag_values": [0, 1, 2], "flag_meanings": "train validation test"}),
        },
        coords={
            "time": ("time", time.astype(np.float64), {"units": "s"}),
            "unit": np.asarray(processed["cell"].values).astype(str),
        },
        attrs={
            "bin_width_s": bw,
            "source": "calcium events",
            "observed": "continuous",
            "split_n_blocks": int(n_blocks),
            "split_fractions": " ".join(f"{k}={v}" for k, v in dict(fractions).items()),
            "split_rule": "time blocks",
        },
    )
