"""fMRI preprocessing: clean each run's ROI signals, cut fixed-length segments, assemble the cohort.

Order of operations in :func:`clean_run` (it calls :func:`nilearn.signal.clean`, which fixes this order):

1. **scrubbing**: volumes with ``sample_mask`` False are censored (nilearn interpolates them only to filter, then
   drops them); the censored volumes never reach the output;
2. **detrend** (linear, per ROI) when ``detrend``;
3. **band-pass** (Butterworth; ``high_pass`` / ``low_pass`` in Hz, ``None`` to skip), using the run's TR;
4. **confound removal**: the confounds (filtered the same way, standardised) are regressed out by orthogonal
   projection, in the same step as the filter, so no frequency is re-introduced;
5. **standardize** each ROI (``zscore_sample`` by default; ``psc`` or ``False``).

Runs may have different TRs (a cohort from several sites: each run carries its own, read from its sidecar). Every
step above uses the run's own TR. A model that needs one TR across the cohort (segments of a fixed number of
volumes, BrainMAE) gets the runs resampled to a common TR after cleaning, :func:`resample_run` (polyphase
resampling with its anti-aliasing filter, within each unbroken stretch of kept volumes; what a multi-site analysis
does): the clean_fmri stage uses ``fmri.clean.common_tr_s``, by default the longest TR of the cohort when the runs
differ (downsampling only: no samples are invented), and each subject's acquisition TR rides in the cohort file
(``subject_repetition_time(subject)``).

Then :func:`segment_run` cuts the kept volumes into non-overlapping segments of ``segment_s`` seconds, converted
to volumes with the run's own TR (``round(segment_s / TR)``), inside stretches of consecutive kept volumes only (a
segment never spans a scrubbed volume); leftovers shorter than a segment are dropped. A run with no whole segment is
an error (one line naming the file). :func:`assemble_cohort` stacks the segments of every run into a
``roi_segments`` dataset with subject-wise folds and the subjects' labels/phenotypes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.errors import InputError


def clean_run(
    ds: xr.Dataset,
    detrend: bool = True,
    standardize: str | bool = "zscore_sample",
    high_pass: float | None = 0.01,
    low_pass: float | None = None,
    use_confounds: bool = True,
    scrub: bool = True,
    fit: np.ndarray | None = None,
) -> xr.Dataset:
    """Clean one ``roi_timeseries`` run with :func:`nilearn.signal.clean` (see the module docstring for the order).

    With ``fit`` (the volumes the cleaning may learn from, e.g. the training time blocks), the trend, confound
    weights and standardisation are fitted on those volumes only and applied to every volume, and the band-pass
    filter runs on each contiguous stretch of fitted and of held-out volumes separately (no held-out volume
    reaches a fitted one or the reverse); see :func:`clean_fitted`.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``roi_timeseries`` run: ``signal`` (time x roi), optionally ``confounds`` and ``sample_mask``;
        ``repetition_time_s`` in its attrs.
    detrend : bool, default True
        Remove a linear trend per ROI.
    standardize : {"zscore_sample", "psc", False}
        How each ROI is standardised.
    high_pass : float or None, default 0.01
        High-pass cutoff in Hz (None: none).
    low_pass : float or None, default None
        Low-pass cutoff in Hz (None: none).
    use_confounds : bool, default True
        Regress out the run's ``confounds``.
    scrub : bool, default True
        Censor the volumes whose ``sample_mask`` is False.
    fit : numpy.ndarray, optional
        (time,) bool: True for the volumes the cleaning is fitted on (None: every volume, nilearn's cleaning).

    Returns
    -------
    xarray.Dataset
        A ``roi_timeseries`` with only the kept volumes (their original times), without ``confounds`` and
        ``sample_mask``.
    """
    from nilearn.signal import clean

    tr = float(ds.attrs["repetition_time_s"])
    x = np.asarray(ds["signal"].values, dtype=np.float64)
    src = ds.attrs.get("source", "run")
    nyquist = 0.5 / tr
    for name, f in (("high_pass", high_pass), ("low_pass", low_pass)):
        if f is not None and not 0 < f < nyquist:
            raise InputError(
                f"{src}: {name} = {f} Hz is not below the Nyquist frequency {nyquist:.4g} Hz of TR {tr} s; "
                f"lower fmri.clean.{name} (or set it to null) for this dataset"
            )
    keep = np.ones(x.shape[0], dtype=bool)
    if scrub and "sample_mask" in ds:
        keep = np.asarray(ds["sample_mask"].values, dtype=bool)
    conf = None
    if use_confounds and "confounds" in ds and ds.sizes.get("confound", 0):
        conf = np.asarray(ds["confounds"].values, dtype=np.float64)
        if not np.isfinite(conf).all():
            raise InputError(
                f"{src}: confounds have NaN values; fill them (fMRIPrep's n/a in the first row) or drop the column"
            )
    kw: dict[str, Any] = {}
    if not keep.all():
        kw["sample_mask"] = np.flatnonzero(keep)
    if keep.sum() < 3:
        raise InputError(
            f"{src}: only {int(keep.sum())} volumes are left after scrubbing; relax the scrubbing thresholds or drop the run"
        )
    try:
        if fit is not None and not np.asarray(fit, bool)[keep].all():
            y = clean_fitted(
                x[keep],
                np.asarray(fit, bool)[keep],
                detrend,
                standardize,
                None if conf is None else conf[keep],
                high_pass,
                low_pass,
                tr,
            )
        else:
            y = _clean(clean, x, detrend, standardize, conf, high_pass, low_pass, tr, kw)
    except ValueError as err:  # scipy's filter on a run shorter than its padding, nilearn's checks
        raise InputError(
            f"{src}: nilearn.signal.clean failed ({' '.join(str(err).split())[:160]}); "
            "a run this short cannot be band-passed: drop it or set fmri.clean.high_pass/low_pass to null"
        ) from None
    if not np.isfinite(y).all():
        raise InputError(
            f"{src}: cleaning produced non-finite values (a constant ROI after confound removal?); drop that ROI"
        )
    out = xr.Dataset(
        {"signal": (("time", "roi"), y, {"long_name": "cleaned ROI BOLD signal"})},
        coords={"time": ("time", ds["time"].values[keep], {"units": "s"}), "roi": ds["roi"].values},
        attrs={
            k: v
            for k, v in ds.attrs.items()
            if k in ("repetition_time_s", "subject", "session", "task", "run", "source", "participant")
        },
    )
    out.attrs["n_scrubbed"] = int((~keep).sum())
    return out


def clean_fitted(
    x: np.ndarray,
    fit: np.ndarray,
    detrend: bool,
    standardize: str | bool,
    conf: np.ndarray | None,
    high_pass: float | None,
    low_pass: float | None,
    tr: float,
) -> np.ndarray:
    """Clean a run with every fitted quantity learned on the ``fit`` volumes only (the held-out ones unseen).

    Linear trend (fitted on ``fit``, subtracted everywhere); Butterworth band-pass (nilearn's) on each contiguous
    stretch of equal ``fit`` separately; confound weights (confounds detrended, filtered and z-scored the same way)
    by least squares on ``fit``; standardisation with the ``fit`` volumes' mean and SD (``zscore_sample``) or mean
    (``psc``).

    Parameters
    ----------
    x : numpy.ndarray
        (time, roi) signal, censored volumes already removed.
    fit : numpy.ndarray
        (time,) bool: the volumes the cleaning learns from (at least 3).
    detrend : bool
        Remove a linear trend per ROI.
    standardize : {"zscore_sample", "psc", False}
        How each ROI is standardised.
    conf : numpy.ndarray or None
        (time, confound) confounds to regress out.
    high_pass, low_pass : float or None
        Cut-offs in Hz (None: none).
    tr : float
        Repetition time, in seconds.

    Returns
    -------
    numpy.ndarray
        (time, roi) cleaned signal.

    Raises
    ------
    ValueError
        Fewer than 3 fitted volumes, or a stretch too short to be filtered.
    """
    from nilearn.signal import butterworth

    fit = np.asarray(fit, bool)
    if fit.sum() < 3:
        raise ValueError(f"only {int(fit.sum())} volumes to fit the cleaning on")
    t = np.arange(len(x), dtype=np.float64)
    parts = [x] if conf is None else [x, conf]
    out = []
    for a in parts:
        a = np.array(a, dtype=np.float64)
        if detrend:
            D = np.stack([np.ones_like(t), t], axis=1)
            a = a - D @ np.linalg.lstsq(D[fit], a[fit], rcond=None)[0]
        if high_pass or low_pass:
            edges = np.flatnonzero(np.diff(fit.astype(np.int8))) + 1
            for piece in np.split(np.arange(len(a)), edges):
                a[piece] = butterworth(
                    a[piece], sampling_rate=1.0 / tr, low_pass=low_pass, high_pass=high_pass
                )
        out.append(a)
    y = out[0]
    if conf is not None:
        c = out[1]
        mu, sd = c[fit].mean(0), c[fit].std(0)
        c = (c - mu) / np.where(sd > 0, sd, 1.0)
        C = np.column_stack([np.ones(len(c)), c])
        y = y - C @ np.linalg.lstsq(C[fit], y[fit], rcond=None)[0]
    if standardize == "zscore_sample":
        sd = y[fit].std(0, ddof=1)
        y = (y - y[fit].mean(0)) / np.where(sd > 0, sd, 1.0)
    elif standardize == "psc":
        mu = np.asarray(x, dtype=np.float64)[fit].mean(0)
        y = 100.0 * y / np.where(np.abs(mu) > 0, np.abs(mu), 1.0)
    return y


def _clean(clean, x, detrend, standardize, conf, high_pass, low_pass, tr, kw):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # nilearn 0.13 announcing 0.14's confound scaling
        return clean(
            x,
            detrend=detrend,
            standardize=standardize if standardize else False,
            confounds=conf,
            standardize_confounds=True,
            filter="butterworth" if (high_pass or low_pass) else False,
            high_pass=high_pass,
            low_pass=low_pass,
            t_r=tr,
            **kw,
        )


def resample_run(ds: xr.Dataset, tr: float) -> xr.Dataset:
    """Resample a cleaned run to repetition time ``tr`` (polyphase, anti-aliased), stretch by stretch.

    Each unbroken stretch of volumes (one TR apart; scrubbing leaves gaps) is resampled on its own with
    :func:`scipy.signal.resample_poly` (the ratio of the TRs as a fraction with a denominator of at most 100;
    its FIR filter removes what the new TR cannot represent; the edges are padded with a fitted line), from its
    first volume's time; samples past the stretch's last volume are not made. A stretch that yields fewer than 2
    samples is dropped.

    Parameters
    ----------
    ds : xarray.Dataset
        A cleaned ``roi_timeseries`` run (:func:`clean_run`) with ``repetition_time_s`` in its attrs.
    tr : float
        The new repetition time, in seconds.

    Returns
    -------
    xarray.Dataset
        The run on the new time grid: ``repetition_time_s`` = ``tr``, the acquisition TR in
        ``acquisition_repetition_time_s`` (kept from an earlier resampling); the same run when its TR is ``tr``.

    Raises
    ------
    brainpipe.errors.InputError
        No stretch of the run is long enough to give 2 samples at the new TR.
    """
    from fractions import Fraction

    from scipy.signal import resample_poly

    old = float(ds.attrs["repetition_time_s"])
    if np.isclose(old, tr, rtol=1e-6, atol=0):
        return ds
    ratio = Fraction(old / tr).limit_denominator(100)  # new samples per old sample = up / down
    up, down = ratio.numerator, ratio.denominator
    t = np.asarray(ds["time"].values)
    x = np.asarray(ds["signal"].values, dtype=np.float64)
    breaks = np.flatnonzero(~np.isclose(np.diff(t), old, rtol=1e-3, atol=0)) + 1
    times, parts = [], []
    for block in np.split(np.arange(t.size), breaks):
        n_new = int(np.floor((block.size - 1) * old / tr + 1e-9)) + 1
        if n_new < 2:
            continue
        y = resample_poly(x[block], up, down, axis=0, padtype="line")[:n_new]
        parts.append(y)
        times.append(t[block[0]] + np.arange(y.shape[0]) * tr)
    if not parts:
        raise InputError(
            f"{ds.attrs.get('source', 'run')}: no unbroken stretch of the run spans two volumes at TR {tr} s "
            f"(its TR is {old} s); drop the run or lower fmri.clean.common_tr_s"
        )
    out = xr.Dataset(
        {"signal": (("time", "roi"), np.concatenate(parts), dict(ds["signal"].attrs))},
        coords={"time": ("time", np.concatenate(times), {"units": "s"}), "roi": ds["roi"].values},
        attrs=dict(ds.attrs),
    )
    out.attrs["acquisition_repetition_time_s"] = float(ds.attrs.get("acquisition_repetition_time_s", old))
    out.attrs["repetition_time_s"] = float(tr)
    return out


def common_tr(trs: Iterable[float], common_tr_s: float | None = None) -> float | None:
    """The TR a cohort is resampled to: ``common_tr_s`` when set, else the longest TR when the runs' TRs differ.

    Parameters
    ----------
    trs : iterable of float
        Each run's TR, in seconds.
    common_tr_s : float, optional
        The TR asked for (``fmri.clean.common_tr_s``).

    Returns
    -------
    float or None
        The TR to resample every run to; None when every run shares one TR and none is asked for.
    """
    trs = [float(v) for v in trs]
    if common_tr_s is not None:
        return float(common_tr_s)
    if trs and not np.allclose(trs, trs[0], rtol=1e-6, atol=0):
        return max(trs)
    return None


def check_length(ds: xr.Dataset, segment_s: float) -> None:
    """Check that a run has at least one segment's worth of (kept) volumes.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``roi_timeseries`` run.
    segment_s : float
        Segment length, in seconds.

    Raises
    ------
    brainpipe.errors.InputError
        Fewer volumes than one segment (one line naming the run).
    """
    tr = float(ds.attrs["repetition_time_s"])
    L = segment_length(segment_s, tr)
    n = int(np.asarray(ds["sample_mask"].values).sum()) if "sample_mask" in ds else ds.sizes["time"]
    if n < L:
        raise InputError(
            f"{ds.attrs.get('source', 'run')}: run is shorter than one segment ({n} kept volumes, segment = {L} "
            f"volumes = {segment_s} s at TR {tr} s); lower fmri.clean.segment_s or drop this run"
        )


def segment_length(segment_s: float, tr: float) -> int:
    """Compute the number of volumes per segment: ``round(segment_s / tr)`` (at least 2).

    Parameters
    ----------
    segment_s : float
        Segment length, in seconds.
    tr : float
        Repetition time, in seconds.

    Returns
    -------
    int
        Volumes per segment.
    """
    return max(2, int(round(segment_s / tr)))


def segment_run(
    ds: xr.Dataset, segment_s: float, step_s: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a cleaned run into fixed-length segments, within stretches of consecutive kept volumes.

    A new segment starts every ``step_s`` seconds (converted with the run's TR).

    Parameters
    ----------
    ds : xarray.Dataset
        A cleaned ``roi_timeseries`` run (:func:`clean_run`).
    segment_s : float
        Segment length, in seconds.
    step_s : float, optional
        Seconds between segment starts (default ``segment_s``: non-overlapping).

    Returns
    -------
    segments : numpy.ndarray
        (n, L, roi) the segments.
    starts : numpy.ndarray
        (n,) their start times, in seconds.

    Raises
    ------
    brainpipe.errors.InputError
        The run has no unbroken stretch as long as one segment (one line naming the run).
    """
    tr = float(ds.attrs["repetition_time_s"])
    L = segment_length(segment_s, tr)
    step = L if step_s is None else max(1, int(round(step_s / tr)))
    t = np.asarray(ds["time"].values)
    x = np.asarray(ds["signal"].values)
    breaks = np.flatnonzero(~np.isclose(np.diff(t), tr, rtol=1e-3, atol=0)) + 1  # a step other than one TR
    segs, starts = [], []
    for block in np.split(np.arange(t.size), breaks):
        if block.size < L:
            continue
        for k in range(0, block.size - L + 1, step):
            idx = block[k : k + L]
            segs.append(x[idx])
            starts.append(t[idx[0]])
    if not segs:
        raise InputError(
            f"{ds.attrs.get('source', 'run')}: run is shorter than one segment ({t.size} kept volumes, longest "
            f"unbroken stretch {max(b.size for b in np.split(np.arange(t.size), breaks))}, segment = {L} volumes = "
            f"{segment_s} s at TR {tr} s); lower fmri.clean.segment_s or drop this run"
        )
    return np.stack(segs), np.array(starts, dtype=np.float64)


def subject_folds(labels: np.ndarray | None, n_subjects: int, n_folds: int, seed: int) -> np.ndarray:
    """Assign subjects to folds 0..k-1, stratified by class when labels are known (balanced sizes otherwise).

    Parameters
    ----------
    labels : numpy.ndarray or None
        (n_subjects,) class label per subject, or None.
    n_subjects : int
        Number of subjects.
    n_folds : int
        Number of folds (clipped to [1, ``n_subjects``]).
    seed : int
        Seed of the random number generator (the order of subjects within each class).

    Returns
    -------
    numpy.ndarray
        (n_subjects,) fold index per subject.
    """
    rng = np.random.default_rng(seed)
    k = max(1, min(n_folds, n_subjects))
    fold = np.empty(n_subjects, dtype=np.int64)
    groups = (
        [np.arange(n_subjects)]
        if labels is None
        else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    )
    offset = 0
    for g in groups:
        g = rng.permutation(g)
        fold[g] = (np.arange(g.size) + offset) % k
        offset += g.size
    return fold


def assemble_cohort(
    runs: Iterable[xr.Dataset],
    segment_s: float,
    classification: str | None = None,
    regression: str | None = None,
    n_folds: int = 4,
    seed: int = 0,
    segment_step_s: float | None = None,
) -> xr.Dataset:
    """Stack the segments of cleaned runs into a ``roi_segments`` dataset.

    ``classification`` / ``regression`` name participants.tsv columns (the run attr ``participant``) used as the class
    label and the continuous target; a subject without a value for a named column is an error (one line naming
    the run's file). Every run must share the ROI names and the TR (runs of different TRs: :func:`resample_run`
    first); each subject's acquisition TR (a run's ``acquisition_repetition_time_s``, else its
    ``repetition_time_s``) is kept in ``subject_repetition_time``.

    Parameters
    ----------
    runs : iterable of xarray.Dataset
        Cleaned ``roi_timeseries`` runs (:func:`clean_run`), each with its ``subject`` attr.
    segment_s : float
        Segment length, in seconds.
    classification : str, optional
        The participants.tsv column used as the class label.
    regression : str, optional
        The participants.tsv column used as the continuous target.
    n_folds : int, default 4
        Number of subject-wise folds (:func:`subject_folds`).
    seed : int, default 0
        Seed of the fold assignment.
    segment_step_s : float, optional
        Seconds between segment starts (default ``segment_s``: non-overlapping).

    Returns
    -------
    xarray.Dataset
        A ``roi_segments`` dataset: ``signal`` (segment x lag x roi), each segment's subject, start and run, the
        subjects' folds, labels and acquisition TRs (``subject_repetition_time``, s).
    """
    subjects: list[str] = []
    info: dict[str, dict[str, Any]] = {}
    segs, seg_sub, seg_start, seg_run = [], [], [], []
    rois, tr, src0 = None, None, None
    for ds in runs:
        src = ds.attrs.get("source", "run")
        r = [str(v) for v in ds["roi"].values]
        this_tr = float(ds.attrs["repetition_time_s"])
        if rois is None:
            rois, tr, src0 = r, this_tr, src
        elif r != rois:
            raise InputError(
                f"{src}: ROIs differ from {src0} ({len(r)} vs {len(rois)} ROIs, or another order); use one atlas for the whole dataset"
            )
        elif not np.isclose(this_tr, tr):
            raise InputError(
                f"{src}: TR {this_tr} s differs from {tr} s of {src0}; resample the runs to one TR first "
                "(brainpipe.preprocess.fmri.resample_run; the clean_fmri stage does it, fmri.clean.common_tr_s)"
            )
        sub = ds.attrs.get("subject") or str(src)
        acq = float(ds.attrs.get("acquisition_repetition_time_s", this_tr))
        if sub not in info:
            subjects.append(sub)
            info[sub] = {
                "participant": json.loads(ds.attrs.get("participant", "{}") or "{}"),
                "source": src,
                "tr": acq,
            }
        elif not np.isclose(info[sub]["tr"], acq):
            raise InputError(
                f"{src}: subject {sub} was scanned at TR {acq} s here but {info[sub]['tr']} s in "
                f"{info[sub]['source']}; one TR per subject is kept (put the runs of another TR in another dataset)"
            )
        x, starts = segment_run(ds, segment_s, segment_step_s)
        segs.append(x)
        seg_sub += [subjects.index(sub)] * len(x)
        seg_start.append(starts)
        from brainpipe.io.fmri import run_id

        seg_run += [run_id(ds)] * len(x)
    if not segs:
        raise InputError("no runs to assemble; check the dataset's path and filters")
    n_sub = len(subjects)
    data: dict[str, Any] = {}
    attrs: dict[str, Any] = {"repetition_time_s": tr, "segment_length_s": float(segment_s)}
    labels = None
    if classification:
        vals = _column(subjects, info, classification, "classification")
        classes = sorted(set(vals))
        if len(classes) < 2:
            raise InputError(
                f"{info[subjects[0]]['source']}: column '{classification}' has one class only ({classes[0]}); a classification needs two or more"
            )
        labels = np.array([classes.index(v) for v in vals], dtype=np.int64)
        data["label"] = ("subject", labels, {"long_name": f"class of participants column '{classification}'"})
        attrs["classes"] = ",".join(classes)
        attrs["classification"] = classification
    if regression:
        vals = _column(subjects, info, regression, "regression")
        try:
            target = np.array([float(v) for v in vals])
        except ValueError:
            raise InputError(
                f"{info[subjects[0]]['source']}: column '{regression}' is not numeric; choose a numeric column for the regression"
            ) from None
        data["target"] = ("subject", target, {"long_name": f"participants column '{regression}'"})
        attrs["regression"] = regression
    seg_sub_arr = np.array(seg_sub, dtype=np.int64)
    n_seg = len(seg_sub_arr)
    if n_sub >= max(n_folds, 4):
        fold = subject_folds(labels, n_sub, n_folds, seed)
        seg_fold = fold[seg_sub_arr]
        attrs["split_by"] = "subject"
    else:  # too few subjects to hold some out: contiguous time blocks of segments (fold 0 = the last block)
        fold = np.zeros(n_sub, dtype=np.int64)
        k = max(3, n_folds)
        if n_seg < k:
            raise InputError(
                f"{src0}: only {n_seg} segments in all; a time-block split needs {k} or more (lower fmri.clean.segment_s)"
            )
        blocks = np.minimum(np.arange(n_seg) * k // n_seg, k - 1)
        seg_fold = (k - 1 - blocks).astype(np.int64)
        attrs["split_by"] = "time"
        # overlapping segments (segment_step_s < segment_s): drop those sharing volumes with another fold's
        starts_all = np.concatenate(seg_start)
        runs_all = np.array(seg_run)
        span = segment_length(segment_s, tr) * tr
        clash = np.zeros(n_seg, dtype=bool)
        for i in range(n_seg):
            other = (
                (seg_fold != seg_fold[i])
                & (runs_all == runs_all[i])
                & (np.abs(starts_all - starts_all[i]) < span - 1e-9)
            )
            clash[i] = (
                other.any() and seg_fold[i] != 0
            )  # keep the test block whole; trim the others at its edges
        keep_seg = ~clash
        if not keep_seg.all():
            segs = [np.concatenate(segs)[keep_seg]]
            seg_sub_arr, seg_fold = seg_sub_arr[keep_seg], seg_fold[keep_seg]
            seg_start = [starts_all[keep_seg]]
            seg_run = list(runs_all[keep_seg])
    data["fold"] = ("subject", fold, {"long_name": "subject-wise cross-validation fold"})
    data["subject_repetition_time"] = (
        "subject",
        np.array([info[s]["tr"] for s in subjects], dtype=np.float64),
        {"units": "s", "long_name": "repetition time of the subject's acquisition (before any resampling)"},
    )
    data["segment_fold"] = (
        "segment",
        seg_fold,
        {"long_name": "fold of the segment (0 test, 1 validation, >= 2 train)"},
    )
    L = segs[0].shape[1]
    data.update(
        {
            "signal": (("segment", "lag", "roi"), np.concatenate(segs).astype(np.float32)),
            "segment_subject": ("segment", seg_sub_arr),
            "segment_start": ("segment", np.concatenate(seg_start), {"units": "s"}),
            "segment_run": ("segment", np.array(seg_run)),
        }
    )
    return xr.Dataset(
        data,
        coords={
            "lag": ("lag", np.arange(L) * tr, {"units": "s"}),
            "roi": np.array(rois),
            "subject": np.array(subjects),
        },
        attrs=attrs,
    )


def _column(subjects: list[str], info: Mapping[str, Any], col: str, task: str) -> list[str]:
    out = []
    for s in subjects:
        v = info[s]["participant"].get(col)
        if v is None:
            raise InputError(
                f"{info[s]['source']}: participant 'sub-{s}' has no '{col}' value in participants.tsv (needed by the "
                f"{task} task); add it there, drop the subject, or unset fmri.datasets.<name>.{task}"
            )
        out.append(str(v))
    return out
