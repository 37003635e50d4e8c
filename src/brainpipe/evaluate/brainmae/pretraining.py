"""BrainMAE pretraining on the fMRI protocol: the temporal encoder's sequences of segments, one encoder per
outer fold (and training seed), the summaries over seeds and the ``model_fit`` dataset of the encoders."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.errors import InputError
from brainpipe.evaluate import fmri
from brainpipe.evaluate.brainmae.streaming import _LazySignal, _streamed_fit
from brainpipe.models.brainmae import BrainMAE, seeds, select_grid, streaming_settings

log_ = logging.getLogger("brainpipe.evaluate.brainmae")


# ---- sequences of segments (the temporal encoder's input) -------------------------------------------------------
def segment_sequences(ds: xr.Dataset, context: int, subset: np.ndarray | None = None) -> np.ndarray:
    """Time-ordered sequences of non-overlapping segments of one subject's run (and one fold).

    Segments are grouped by subject, run and fold and sorted by start; overlapping segments (a segment step
    shorter than a segment) are dealt into interleaved chains whose segments do not overlap (so no volume of a
    hidden ROI is seen in another segment of its sequence); each chain is cut into runs of ``context`` segments.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``roi_segments`` dataset (``segment_subject``, ``segment_run``, ``segment_start``, ``segment_fold``).
    context : int
        Segments per sequence (the last of a chain is padded with -1).
    subset : numpy.ndarray, optional
        (segment,) bool: only these segments.

    Returns
    -------
    numpy.ndarray
        (sequence, context) int64 indices into the dataset's segments, -1 for padding.
    """
    sub = np.asarray(ds["segment_subject"].values)
    run = np.asarray(ds["segment_run"].values) if "segment_run" in ds else np.zeros(len(sub), int)
    fold = np.asarray(ds["segment_fold"].values)
    start = np.asarray(ds["segment_start"].values, dtype=np.float64)
    length = ds["signal"].shape[1] * float(ds.attrs["repetition_time_s"])
    keep = np.ones(len(sub), bool) if subset is None else np.asarray(subset, bool)
    keys = np.stack([sub, np.unique(run.astype(str), return_inverse=True)[1], fold], axis=1)
    rows = []
    for key in np.unique(keys[keep], axis=0):
        idx = np.flatnonzero(keep & (keys == key).all(axis=1))
        idx = idx[np.argsort(start[idx], kind="stable")]
        steps = np.diff(start[idx])
        step = float(np.median(steps)) if len(steps) else length
        stride = max(1, int(np.ceil(length / max(step, 1e-9) - 1e-6)))
        for o in range(min(stride, len(idx))):
            chain = idx[o::stride]
            for c in range(0, len(chain), context):
                row = np.full(context, -1, dtype=np.int64)
                part = chain[c : c + context]
                row[: len(part)] = part
                rows.append(row)
    return np.array(rows, dtype=np.int64).reshape(-1, context)


def _temporal(model_or_params) -> bool:
    get = (
        model_or_params.get
        if isinstance(model_or_params, Mapping)
        else lambda k, d: getattr(model_or_params, k, d)
    )
    return get("temporal_encoder", "none") != "none"


def _context(model_or_params) -> int:
    get = (
        model_or_params.get
        if isinstance(model_or_params, Mapping)
        else lambda k, d: getattr(model_or_params, k, d)
    )
    return int(get("context", 8))


def _reconstruct(model: BrainMAE, ds, X, te, patterns, index, **kw) -> np.ndarray:
    """Test segments ``X[te]`` reconstructed with test segment ``i`` hiding ``patterns[index[i]]``; with the
    temporal encoder each segment in its sequence (:func:`segment_sequences`) with the same ROIs hidden in every
    segment of the sequence (one pass per pattern), so a hidden ROI is never seen at another time."""
    if not _temporal(model):
        return model.reconstruct(X[te], patterns[index], **kw)
    seqs = segment_sequences(ds, _context(model), subset=te)
    rows = np.flatnonzero(te)
    out = np.zeros_like(X[te])
    for p in np.unique(index):
        rec = model.reconstruct(X, np.repeat(patterns[p][None], len(X), 0), sequences=seqs, **kw)
        out[index == p] = rec[rows[index == p]]
    return out


# ---- pretraining -----------------------------------------------------------------------------------------------
def fold_checkpoint(checkpoint: str | None, k: int) -> str | None:
    """The checkpoint file of encoder ``k``.

    Parameters
    ----------
    checkpoint : str or None
        The run's checkpoint path (None: no checkpoints).
    k : int
        The outer fold.

    Returns
    -------
    str or None
        ``<checkpoint>.fold-<k>.pt``, or None when ``checkpoint`` is None.
    """
    return f"{checkpoint}.fold-{k}.pt" if checkpoint else None


def pretrain_folds(
    ds: xr.Dataset,
    model_params: Mapping[str, Any],
    checkpoint: str | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    source: str = "roi_segments",
    log: logging.Logger | None = None,
) -> list[BrainMAE]:
    """Pretrain one BrainMAE encoder per outer fold of a ``roi_segments`` dataset.

    Encoder ``k`` trains on the segments of every fold but ``k`` and ``(k + 1) % K`` (segments pooled over
    subjects), stops early on fold ``(k + 1) % K`` and never sees fold ``k``, its test fold downstream
    (:func:`brainpipe.evaluate.fmri.fold_split`). With the temporal encoder it trains on sequences of
    ``context`` segments (:func:`segment_sequences`), each within one fold.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``roi_segments`` dataset (``signal`` (segment, time, roi), ``segment_fold``).
    model_params : mapping
        Keyword arguments of :class:`~brainpipe.models.brainmae.BrainMAE` (network and training settings), the
        same for every encoder; optionally ``seeds`` (a list): the ``K`` encoders are trained once per seed;
        ``select`` (network setting -> list of values, :func:`~brainpipe.models.brainmae.select_grid`): encoder
        ``k`` is pretrained for every combination and the one with the least masked NMSE on its validation fold
        ``(k + 1) % K`` (masks hiding ``select_mask_ratio``, default 0.5, of the ROIs; 20 patterns, seed 0) is
        kept, its choice in ``selection_`` (no checkpoints then); ``streaming``
        (:func:`~brainpipe.models.brainmae.streaming_settings`): each encoder's training segments are read from
        ``ds`` fold by fold into a zarr store under the temporary folder and streamed, its validation segments
        too (``ds`` may be opened with :func:`open_segments` ``lazy=True``; a ``select`` grid still scores the
        validation fold in memory).
    checkpoint : str, optional
        Encoder ``k`` checkpoints to :func:`fold_checkpoint` of it (of ``<checkpoint>.seed-<s>`` with several
        seeds); a rerun with the same ``fingerprint`` resumes at the fold it was in (finished folds return at
        once). The files are left for the caller to remove once its outputs are written.
    fingerprint : mapping, optional
        What identifies the run (e.g. the input's hash); each fold adds ``fold=k``.
    source : str, default "roi_segments"
        What the data is called in error messages (e.g. its file name).
    log : logging.Logger, optional
        Where progress is logged (this module's logger when None).

    Returns
    -------
    list of BrainMAE
        The ``K`` fitted encoders, encoder ``k`` at index ``k`` (with several seeds, seed after seed: ``K``
        encoders each, see :func:`by_seed`).

    Raises
    ------
    InputError
        An outer fold leaves no training segments.
    ConfigError
        ``seeds`` is not a list of distinct integers >= 0.

    Examples
    --------
    >>> from brainpipe.data import read
    >>> ds = read("clean.nc", "roi_segments")  # doctest: +SKIP
    >>> models = pretrain_folds(ds, {"d_model": 16, "n_layers": 1, "max_epochs": 3})  # doctest: +SKIP
    >>> len(models) == fmri.n_folds(ds)  # doctest: +SKIP
    True
    """
    log = log or log_
    params = dict(model_params)
    stream = streaming_settings(params.pop("streaming", None))
    if stream is not None and _temporal(params):
        from brainpipe.errors import ConfigError

        raise ConfigError(
            "fmri.brainmae.model.streaming: the temporal encoder (temporal_encoder: transformer) cannot stream; "
            "set streaming.enabled: false or temporal_encoder: none"
        )
    if stream is not None and params.get("linear_path", "none") != "none":
        from brainpipe.errors import ConfigError

        raise ConfigError(
            "fmri.brainmae.model.streaming: the linear path (linear_path: volume) needs the training segments in "
            "memory; set streaming.enabled: false or linear_path: none"
        )
    X = _LazySignal(ds, source) if stream is not None else np.asarray(ds["signal"].values, dtype=np.float32)
    K = fmri.n_folds(ds)
    splits = [fmri.fold_split(ds, k) for k in range(K)]
    for k, (tr, _, _) in enumerate(splits):
        if not tr.any():
            raise InputError(
                f"{source}: outer fold {k} leaves no training segments (folds other than {k} and "
                f"{(k + 1) % K}); add subjects, raise fmri.clean.n_folds or lower fmri.clean.segment_s"
            )
    run_seeds = seeds(params.pop("seeds", None), params.get("seed", 0))
    select = params.pop("select", None)
    select_ratio = float(params.pop("select_mask_ratio", 0.5))
    grid = select_grid(select, select_ratio)
    if len(run_seeds) > 1:
        models = []
        for sd in run_seeds:
            ck = f"{checkpoint}.seed-{sd}" if checkpoint else None
            fp = dict(fingerprint or {}, seed=sd)
            over = {"select": select, "select_mask_ratio": select_ratio} if select else {}
            if stream is not None:
                over["streaming"] = stream
            models += pretrain_folds(ds, dict(params, seed=sd, **over), ck, fp, source, log)
        return models
    params["seed"] = run_seeds[0]
    models = []
    if len(grid) > 1:
        checkpoint = None  # the candidates of a select grid are not checkpointed
    for k, (tr, va, _) in enumerate(splits):
        fitted = []
        for cand in grid:
            fitted.append(
                _pretrain_one(ds, X, dict(params, **cand), k, K, tr, va, checkpoint, fingerprint, log, stream)
            )
            if len(grid) == 1:
                break
        model = fitted[0]
        if len(grid) > 1:  # the setting with the least masked NMSE on the validation fold (k + 1) % K
            patterns, index = fmri.eval_masks(int(va.sum()), X.shape[2], select_ratio, 20, 0)
            scores = [
                fmri.nmse(X[va], _reconstruct(m, ds, X, va, patterns, index), patterns[index]) for m in fitted
            ]
            model = fitted[int(np.argmin(scores))]
            model.selection_ = {
                "grid": [dict(c) for c in grid],
                "validation_nmse": [float(v) for v in scores],
                "chosen": dict(grid[int(np.argmin(scores))]),
            }
            log.info("encoder %d/%d: validation NMSE %s -> %s", k + 1, K, scores, model.selection_["chosen"])
        models.append(model)
    return models


def _pretrain_one(ds, X, params, k, K, tr, va, checkpoint, fingerprint, log, stream=None) -> BrainMAE:
    """Encoder ``k``: pretrained on the training folds, early-stopped on the validation fold (candidates of a
    ``select`` grid get no checkpoints); ``stream``: its training segments streamed (:func:`_streamed_fit`)."""
    model = BrainMAE(**params)
    seq_kw = {}
    seqs = segment_sequences(ds, _context(params)) if _temporal(params) else None
    if seqs is not None:  # every sequence lies in one fold: its first segment says which
        seq_kw = {"sequences": seqs[tr[seqs[:, 0]]], "sequences_val": seqs[va[seqs[:, 0]]]}
    log.info(
        "encoder %d/%d: pretraining on %d segments (validation %d), %s", k + 1, K, tr.sum(), va.sum(), params
    )
    fit_kw = {
        "checkpoint": fold_checkpoint(checkpoint, k),
        "fingerprint": dict(fingerprint or {}, fold=k) if checkpoint else None,
        "log": log,
    }
    if stream is not None:
        _streamed_fit(model, X, tr, va, stream, **fit_kw)
    else:
        model.fit(X if seq_kw else X[tr], X if seq_kw else X[va], **fit_kw, **seq_kw)
    log.info(
        "encoder %d/%d done: best epoch %s, %.1f s on %s (%s)",
        k + 1,
        K,
        model.best_epoch_,
        model.train_seconds_,
        model.device_,
        model.precision_,
    )
    return model


def by_seed(models: Sequence[BrainMAE]) -> dict[int, list[BrainMAE]]:
    """The encoders of each training seed, in their order (encoder ``k`` of a seed at index ``k``).

    Parameters
    ----------
    models : sequence of BrainMAE
        Encoders of :func:`pretrain_folds` (or :func:`~brainpipe.models.brainmae.load_fold_models`).

    Returns
    -------
    dict
        Seed -> its encoders, seeds in order of first appearance.
    """
    out: dict[int, list[BrainMAE]] = {}
    for m in models:
        out.setdefault(int(m.seed), []).append(m)
    return out


def over_seeds(runs: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    """Metrics over training seeds: mean, spread and worst seed.

    The mean under each metric's name, ``<metric>_sd`` (SD, ``ddof=1``), ``<metric>_worst`` (by the metric's
    direction) and ``n_seeds``; the baselines (the same for every seed) once; one seed's metrics as they are.

    Parameters
    ----------
    runs : mapping
        Seed -> its metrics (:func:`score_encoders`).

    Returns
    -------
    dict
        Metric name -> value.
    """
    from brainpipe.evaluate.metrics import METRICS

    runs = {int(k): dict(v) for k, v in runs.items()}
    if len(runs) == 1:
        return next(iter(runs.values()))
    out: dict[str, float] = {}
    names = [n for n in next(iter(runs.values())) if all(n in r for r in runs.values())]
    for n in names:
        v = np.array([r[n] for r in runs.values()], dtype=np.float64)
        out[n] = float(np.mean(v))
        if n.startswith(("nmse_", "fc_", "ridge_", "pca_")):
            continue  # baselines: the same for every seed
        out[f"{n}_sd"] = float(np.std(v, ddof=1))
        higher = METRICS[n].op.startswith(">") if n in METRICS else True
        out[f"{n}_worst"] = float(np.min(v) if higher else np.max(v))
    out["n_seeds"] = float(len(runs))
    return out


def folds_to_dataset(models: Sequence[BrainMAE], ds: xr.Dataset) -> xr.Dataset:
    """The ``model_fit`` dataset of per-fold encoders.

    Parameters
    ----------
    models : sequence of BrainMAE
        The fitted encoders of :func:`pretrain_folds`, encoder ``k`` at index ``k``.
    ds : xarray.Dataset
        The ``roi_segments`` dataset they were pretrained on.

    Returns
    -------
    xarray.Dataset
        A ``model_fit`` (model ``brainmae``): encoder 0's ROI embeddings, embedding-derived graph attention, loss
        history and best epoch; every encoder's ROI embeddings (``fold_roi_embedding``), the subjects it trained
        and stopped on (``fold_train_subject``, ``fold_validation_subject``), its training segments, best epoch
        and seconds.
    """
    model = models[0]
    rois = ds["roi"].values
    seg_sub = np.asarray(ds["segment_subject"].values)
    n_sub = ds.sizes["subject"]
    splits = [fmri.fold_split(ds, k) for k in range(len(models))]

    def subjects(mask):
        return np.isin(np.arange(n_sub), seg_sub[mask]).astype(np.int8)

    hist = model.history_
    keys = sorted({k for h in hist for k in h if k not in ("epoch",)})
    data = {
        "roi_embedding": (("roi", "embedding_dim"), model.roi_embeddings()),
        **{
            f"history_{k}": (
                "epoch",
                np.array([float(h.get(k, np.nan)) if h.get(k) is not None else np.nan for h in hist]),
            )
            for k in keys
        },
    }
    data["fold_roi_embedding"] = (
        ("fold", "roi", "embedding_dim"),
        np.stack([m.roi_embeddings() for m in models]),
    )
    data["fold_train_subject"] = (
        ("fold", "subject"),
        np.stack([subjects(tr) for tr, _, _ in splits]),
        {"long_name": "1: the subject's segments trained encoder k (never one of fold k's)"},
    )
    data["fold_validation_subject"] = (
        ("fold", "subject"),
        np.stack([subjects(va) for _, va, _ in splits]),
        {"long_name": "1: the subject's segments were encoder k's early-stopping set"},
    )
    data["fold_n_train_segments"] = ("fold", np.array([int(tr.sum()) for tr, _, _ in splits]))
    data["fold_best_epoch"] = (
        "fold",
        np.array([int(-1 if m.best_epoch_ is None else m.best_epoch_) for m in models]),
    )
    data["fold_train_seconds"] = ("fold", np.array([float(m.train_seconds_) for m in models]))
    if all(getattr(m, "selection_", None) for m in models):
        import json

        data["fold_validation_nmse"] = (
            ("fold", "candidate"),
            np.array([m.selection_["validation_nmse"] for m in models]),
            {"long_name": "masked NMSE on the validation fold of each candidate setting (select grid)"},
        )
        data["fold_chosen_candidate"] = (
            "fold",
            np.array([m.selection_["grid"].index(m.selection_["chosen"]) for m in models]),
            {"long_name": "index of the candidate setting kept for encoder k (least validation NMSE)"},
        )
        select_attrs = {"select_grid": json.dumps(models[0].selection_["grid"])}
    else:
        select_attrs = {}
    att = model.graph_attention()
    if att is not None:
        data["graph_attention"] = (
            ("roi_post", "roi_pre"),
            att.mean(axis=(0, 1)),
            {"long_name": "embedding-derived ROI-to-ROI attention, mean over layers and heads"},
        )
    return xr.Dataset(
        data,
        coords={
            "roi": rois,
            "roi_post": rois,
            "roi_pre": rois,
            "epoch": np.array([int(h["epoch"]) for h in hist]),
            "fold": np.arange(len(models)),
            "subject": ds["subject"].values,
        },
        attrs={
            "model": "brainmae",
            "role": "fit",
            "best_epoch": int(model.best_epoch_ if model.best_epoch_ is not None else -1),
            "device": model.device_,
            "precision": model.precision_,
            "train_seconds": float(sum(m.train_seconds_ for m in models)),
            "n_folds": len(models),
            "encoders": "one per outer fold k (test fold k, validation fold (k+1) % K, trained on the rest); "
            "roi_embedding, graph_attention, history and best_epoch are encoder 0's",
            "segment_length_s": float(ds.attrs["segment_length_s"]),
            "repetition_time_s": float(ds.attrs["repetition_time_s"]),
            **select_attrs,
        },
    )
