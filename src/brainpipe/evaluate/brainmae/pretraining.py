"""BrainMAE on the fMRI evaluation protocol (:mod:`brainpipe.evaluate.fmri`): one encoder pretrained per outer fold,
then scored: masked-ROI reconstruction on held-out fold 0, ROI embeddings vs planted modules, and cross-validated
linear probes and fine-tuning in which test fold ``k`` only ever meets encoder ``k`` (which never saw fold ``k``).

Everything takes a ``roi_segments`` dataset and explicit parameters, and runs without snakemake:

>>> from brainpipe.evaluate.brainmae import pretrain_folds, score_encoders
>>> models = pretrain_folds(ds, {"d_model": 16, "max_epochs": 3, "device": "cpu"})  # doctest: +SKIP
>>> values = score_encoders(ds, models, mask_ratio=0.5, n_patterns=4, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.errors import InputError
from brainpipe.evaluate import fmri
from brainpipe.models.brainmae import BrainMAE, seeds, select_grid, streaming_settings

__all__ = [
    "by_seed",
    "cross_validate_finetune",
    "over_seeds",
    "cross_validate_probe",
    "cross_validate_probe_select",
    "fold_checkpoint",
    "fold_features",
    "folds_to_dataset",
    "open_segments",
    "pretrain_folds",
    "score_encoders",
    "segment_sequences",
]

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


# ---- streamed segments (cohorts larger than memory) -------------------------------------------------------------
def open_segments(path: str | Path, lazy: bool = False) -> xr.Dataset:
    """Open a ``roi_segments`` file, whole (:func:`brainpipe.data.read`) or with ``signal`` left on disk.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``roi_segments`` netCDF file.
    lazy : bool, default False
        Leave ``signal`` on disk (xarray's lazy indexing through h5netcdf: a slice of segments reads only those);
        the contract is checked on everything else, the finiteness of ``signal`` where its segments are read
        (:class:`_LazySignal`). Close the dataset when done.

    Returns
    -------
    xarray.Dataset
        The validated dataset.

    Raises
    ------
    brainpipe.errors.InputError
        The file cannot be read (one line naming it), or its ``signal`` is not (segment, lag, roi).
    brainpipe.errors.ContractError
        The dataset violates its contract.
    """
    from brainpipe.data import contracts
    from brainpipe.data.io import open_dataset, read
    from brainpipe.errors import ContractError

    if not lazy:
        return read(path, "roi_segments")
    try:
        ds = xr.open_dataset(path, engine="h5netcdf", decode_times={"time": False})
    except Exception:  # noqa: BLE001 - the eager opener's one-line message says why
        open_dataset(path)  # raises InputError naming the file and the cause
        raise
    if "signal" not in ds or ds["signal"].dims != ("segment", "lag", "roi"):
        dims = ds["signal"].dims if "signal" in ds else None
        ds.close()
        raise InputError(f"{path}: roi_segments needs variable 'signal' (segment, lag, roi); got {dims}")
    missing = "variable 'signal' is missing"
    problems = [
        p for p in contracts.check(ds.drop_vars("signal"), "roi_segments") if not p.startswith(missing)
    ]
    if problems:
        ds.close()
        raise ContractError(str(path), problems)
    return ds


class _LazySignal:
    """``signal`` of a lazily opened ``roi_segments`` dataset: ``X[mask]`` reads those segments (float32)."""

    def __init__(self, ds: xr.Dataset, source: str):
        self.var, self.source = ds["signal"], source
        self.shape = tuple(int(n) for n in self.var.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.sort(rows.astype(np.int64))
        out = np.asarray(self.var.isel(segment=rows).values, dtype=np.float32)
        if not np.isfinite(out).all():
            raise InputError(
                f"{self.source}: variable 'signal' has NaN or infinite values (rule: finite values; mask or drop bad "
                "samples): run clean_fmri again"
            )
        return out

    def blocks(self, rows: np.ndarray, size: int):
        """The segments ``rows`` (sorted indices) in blocks of ``size``, one block in memory at a time."""
        for start in range(0, len(rows), size):
            yield self[rows[start : start + size]]


def _streamed_fit(model: BrainMAE, X: _LazySignal, tr, va, stream: dict, **fit_kw) -> BrainMAE:
    """Fit ``model`` on the segments ``tr``, early-stopped on ``va``, both streamed from zarr stores under the
    temporary folder (``TMPDIR``: the job's), removed afterwards, also on failure."""
    import shutil
    import tempfile

    from brainpipe.training.streaming import ZarrExamples, write_examples

    folder = tempfile.mkdtemp(prefix="brainmae-stream-")
    try:
        store = write_examples(
            X.blocks(np.flatnonzero(tr), stream["chunk_segments"]),
            Path(folder) / "train.zarr",
            chunk_examples=stream["chunk_segments"],
        )
        data = ZarrExamples(store, cache_chunks=stream["cache_chunks"], shuffle=stream["shuffle"])
        val = None
        if va.any():  # read in order, batch by batch (the loop's validation pass)
            val_store = write_examples(
                X.blocks(np.flatnonzero(va), stream["chunk_segments"]),
                Path(folder) / "validation.zarr",
                chunk_examples=stream["chunk_segments"],
            )
            val = ZarrExamples(val_store, cache_chunks=stream["cache_chunks"])
        return model.fit(data, val, **fit_kw)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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


# ---- downstream --------------------------------------------------------------------------------------------------
def fold_features(
    models: Sequence[BrainMAE], ds: xr.Dataset, features: str = "similarity"
) -> list[np.ndarray]:
    """Each encoder's frozen features of every subject (mean over the subject's segments).

    Parameters
    ----------
    models : sequence of BrainMAE
        The per-fold encoders, encoder ``k`` at index ``k``.
    ds : xarray.Dataset
        A ``roi_segments`` dataset.
    features : {"similarity", "tokens", "mean", "cls"}, default "similarity"
        The read-out (:meth:`brainpipe.models.BrainMAE.transform`); with the temporal encoder the segments are
        encoded in their sequences (:func:`segment_sequences`), and ``"cls"`` (one per sequence) is averaged over
        the subject's sequences.

    Returns
    -------
    list of numpy.ndarray
        Per encoder, (subject, feature) features.
    """
    X = np.asarray(ds["signal"].values, dtype=np.float32)
    seg_sub = np.asarray(ds["segment_subject"].values)
    out = []
    for m in models:
        seqs = None
        if _temporal(m) or features == "cls":
            seqs = segment_sequences(ds, _context(m) if _temporal(m) else 1)
        f = m.transform(X, features) if seqs is None else m.transform(X, features, sequences=seqs)
        owner = seg_sub[seqs[:, 0]] if features == "cls" else seg_sub
        out.append(fmri.subject_means(f, owner, ds.sizes["subject"]))
    return out


def cross_validate_probe(
    features: Sequence[np.ndarray], y: np.ndarray, folds: np.ndarray, task: str, seed: int = 0
) -> dict[str, float]:
    """Linear probe on frozen per-fold features, subject-wise k-fold: test fold ``k`` uses encoder ``k``'s features.

    Parameters
    ----------
    features : sequence of numpy.ndarray
        Per encoder, (subject, feature) features (:func:`fold_features`).
    y : numpy.ndarray
        (subject,) class labels (classification) or phenotype values (regression).
    folds : numpy.ndarray
        (subject,) outer fold of each subject (``fold`` of the ``roi_segments`` dataset).
    task : {"classification", "regression"}
        L2 logistic regression or ridge (:func:`brainpipe.evaluate.fmri.cross_validate`).
    seed : int, default 0
        Seed of the inner cross-validation's shuffling.

    Returns
    -------
    dict
        Pooled out-of-fold scores: ``accuracy`` and ``auroc``, or ``r2`` and ``mae``.

    Raises
    ------
    AssertionError
        A test set spans more than one fold (the protocol is broken).
    """
    folds = np.asarray(folds)

    def probe_features(a, b):  # test fold k: encoder k's features
        k = np.unique(folds[b])
        if len(k) != 1:
            raise AssertionError(f"a test set spans folds {k.tolist()}")
        return features[int(k[0])][a], features[int(k[0])][b]

    return fmri.cross_validate(probe_features, y, folds, task, seed=seed)


def cross_validate_probe_select(
    features: Mapping[str, Sequence[np.ndarray]], y: np.ndarray, folds: np.ndarray, task: str, seed: int = 0
) -> dict[str, float]:
    """Linear probe whose read-out is chosen per outer fold on the validation fold; test fold ``k`` read once.

    For outer fold ``k`` (encoder ``k``'s features), a probe is fitted for every read-out on the subjects of the
    folds other than ``k`` and ``(k + 1) % K`` and scored on fold ``(k + 1) % K`` (accuracy, then AUROC; R2); the
    best read-out (the first of the grid on a tie) is refitted on every subject but fold ``k``'s and predicts fold
    ``k``. Out-of-fold predictions are pooled and scored once.

    Parameters
    ----------
    features : mapping
        Read-out name -> per encoder, (subject, feature) features (:func:`fold_features`), in grid order.
    y : numpy.ndarray
        (subject,) class labels or phenotype values.
    folds : numpy.ndarray
        (subject,) outer fold of each subject.
    task : {"classification", "regression"}
        L2 logistic regression or ridge (:func:`brainpipe.evaluate.fmri.fit_predict`).
    seed : int, default 0
        Seed of the inner cross-validation's shuffling.

    Returns
    -------
    dict
        ``accuracy`` and ``auroc``, or ``r2`` and ``mae``; ``readout_<name>``: the outer folds that chose it.
    """
    folds, y = np.asarray(folds), np.asarray(y)
    K = int(folds.max()) + 1
    names = list(features)
    pred, score = np.zeros(len(y)), np.zeros(len(y))
    chosen = dict.fromkeys(names, 0)
    for k in range(K):
        te, va = folds == k, folds == (k + 1) % K
        fit = ~te & ~va
        best, best_val = names[0], None
        if len(names) > 1 and fit.any() and va.any():
            for name in names:
                F = features[name][k]
                p, sc = fmri.fit_predict(F[fit], y[fit], F[va], task, seed)
                r = fmri.score_predictions(y[va], p, sc, task)
                val = (r["accuracy"], np.nan_to_num(r["auroc"])) if task == "classification" else (r["r2"],)
                if best_val is None or val > best_val:
                    best, best_val = name, val
        chosen[best] += 1
        F = features[best][k]
        pred[te], score[te] = fmri.fit_predict(F[~te], y[~te], F[te], task, seed)
    out = fmri.score_predictions(y.astype(np.float64), pred, score, task)
    out.update({f"readout_{n}": float(c) for n, c in chosen.items()})
    return out


def cross_validate_finetune(
    models: Sequence[BrainMAE],
    ds: xr.Dataset,
    task: str,
    y: np.ndarray,
    max_epochs: int,
    lr: float,
    patience: int | None = None,
    batch_size: int = 32,
    checkpoint: str | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    log: logging.Logger | None = None,
) -> dict[str, float]:
    """Fine-tune encoder ``k`` on fold ``k``'s training subjects and predict fold ``k``; pooled out-of-fold scores.

    Encoder ``k`` (and a linear head) trains on the segments of the subjects of every fold but ``k`` and
    ``(k + 1) % K``, stops early on fold ``(k + 1) % K`` (as in its pretraining), and predicts fold ``k``'s segments;
    a subject's prediction is the mean over its segments (class probabilities, or values). Regression targets are
    standardised on the training subjects.

    Parameters
    ----------
    models : sequence of BrainMAE
        The per-fold encoders, encoder ``k`` at index ``k`` (each is copied, not changed).
    ds : xarray.Dataset
        A ``roi_segments`` dataset (``signal``, ``segment_subject``, ``fold``).
    task : {"classification", "regression"}
        The downstream task.
    y : numpy.ndarray
        (subject,) class labels or phenotype values.
    max_epochs : int
        Most fine-tuning epochs.
    lr : float
        Learning rate.
    patience : int or None, default None
        Epochs without validation improvement before stopping early (None: never).
    batch_size : int, default 32
        Segments per mini-batch.
    checkpoint : str, optional
        The run's checkpoint path: fold ``k`` checkpoints to ``<checkpoint>.finetune-<task>-<k>.pt``, removed when
        the fold is done.
    fingerprint : mapping, optional
        What identifies the run; each fold adds ``task`` and ``fold``.
    log : logging.Logger, optional
        Where progress is logged (this module's logger when None).

    Returns
    -------
    dict
        ``accuracy`` and ``auroc`` (classification), or ``r2`` and ``mae`` (regression).

    Examples
    --------
    >>> from brainpipe.models.brainmae import load_fold_models
    >>> models = load_fold_models("weights.pt")  # doctest: +SKIP
    >>> cross_validate_finetune(models, ds, "classification", ds["label"].values, max_epochs=5, lr=1e-3)
    ... # doctest: +SKIP
    {'accuracy': 0.75, 'auroc': 0.81}
    """
    log = log or log_
    X = np.asarray(ds["signal"].values, dtype=np.float32)
    seg_sub = np.asarray(ds["segment_subject"].values)
    folds = np.asarray(ds["fold"].values)
    K = int(folds.max()) + 1
    pred = np.zeros(len(y))
    score = np.zeros(len(y))
    for k in range(K):
        test_sub = folds == k
        val_sub = folds == (k + 1) % K
        train_sub = ~test_sub & ~val_sub
        yk = np.asarray(y, dtype=np.float64)
        if task == "regression":
            mu, sd = yk[train_sub].mean(), yk[train_sub].std() + 1e-12
            yk = (yk - mu) / sd
        ys = yk[seg_sub]
        if task == "classification":
            ys = ys.astype(np.int64)
        tr, va, te = train_sub[seg_sub], val_sub[seg_sub], test_sub[seg_sub]
        path = f"{checkpoint}.finetune-{task}-{k}.pt" if checkpoint else None
        fp = dict(fingerprint or {}, task=task, fold=k) if checkpoint else None
        model = models[k]
        net = model.finetune(
            X[tr],
            ys[tr],
            task,
            X[va],
            ys[va],
            checkpoint=path,
            fingerprint=fp,
            log=log,
            max_epochs=int(max_epochs),
            lr=float(lr),
            patience=patience,
            batch_size=int(batch_size),
            warmup_steps=0,
        )
        out = model.predict_finetuned(net, X[te])
        for s in np.flatnonzero(test_sub):
            o = out[seg_sub[te] == s]
            if task == "classification":
                p = np.exp(o - o.max(1, keepdims=True))
                p = (p / p.sum(1, keepdims=True)).mean(0)
                pred[s], score[s] = np.argmax(p), p[-1]
            else:
                pred[s] = o[:, 0].mean() * sd + mu
        if path:
            Path(path).unlink(missing_ok=True)
    return fmri.score_predictions(np.asarray(y, dtype=np.float64), pred, score, task)


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


# ---- every metric ------------------------------------------------------------------------------------------------
def score_encoders(
    ds: xr.Dataset,
    models: Sequence[BrainMAE],
    mask_ratio: float,
    n_patterns: int,
    seed: int,
    features: str = "similarity",
    baselines: Mapping[str, float] | None = None,
    modules: np.ndarray | None = None,
    finetune: Mapping[str, Any] | None = None,
    checkpoint: str | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    source: str = "encoders",
    log: logging.Logger | None = None,
) -> dict[str, float]:
    """Every BrainMAE metric of the fMRI protocol, from the per-fold encoders.

    Masked-ROI NMSE on held-out fold 0 with encoder 0 (the masks of the baselines: :func:`fmri.eval_masks`), and
    with its ROI embeddings shuffled (learned embeddings); encoder 0's ROI-embedding ARI vs planted ``modules``;
    for each downstream task of the dataset (class ``label``, phenotype ``target``, subject-split datasets), the
    linear probe (:func:`cross_validate_probe`) and, when ``finetune["enabled"]``, fine-tuning
    (:func:`cross_validate_finetune`); each against the ``baselines``.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``roi_segments`` dataset.
    models : sequence of BrainMAE
        One pretrained encoder per outer fold (:func:`pretrain_folds`).
    mask_ratio : float
        Fraction of the ROIs each evaluation mask hides.
    n_patterns : int
        Number of evaluation mask patterns.
    seed : int
        Seed of the masks, the shuffled embeddings, the clustering and the probes' inner cross-validation.
    features : str or list of str, default "similarity"
        The probe's read-out (``"similarity"``, ``"tokens"``, ``"mean"``, ``"cls"``), or a grid of them: each
        outer fold's read-out is chosen on its validation fold (:func:`cross_validate_probe_select`; the counts are
        ``probe_<accuracy|r2>_readout_<name>``).
    baselines : mapping, optional
        Baseline metrics of the same data (:func:`fmri.baseline_metrics`): ``nmse_<baseline>`` (``best_baseline``,
        ``ridge``, ``ridge_volume``, ``pca``, ``mean_fill``), ``fc_clustering_ari``, ``fc_<kind>_<score>``; the
        ``_vs_`` metrics need them.
    modules : numpy.ndarray, optional
        (roi,) planted module of each ROI, in the dataset's ROI order (simulated data).
    finetune : mapping, optional
        ``enabled``, ``max_epochs``, ``lr``, ``patience``, ``batch_size`` of the fine-tuning.
    checkpoint : str, optional
        The fine-tuning runs checkpoint beside it (see :func:`cross_validate_finetune`).
    fingerprint : mapping, optional
        What identifies the run, for the checkpoints.
    source : str, default "encoders"
        What the encoders are called in error messages (e.g. their file name).
    log : logging.Logger, optional
        Where progress is logged (this module's logger when None).

    Returns
    -------
    dict
        Metric name -> value (names in :data:`brainpipe.evaluate.fmri.FMRI_METRICS`).

    Raises
    ------
    InputError
        The number of encoders is not the dataset's number of folds.

    Examples
    --------
    >>> from brainpipe.data import read
    >>> from brainpipe.models.brainmae import load_fold_models
    >>> ds = read("clean.nc", "roi_segments")  # doctest: +SKIP
    >>> values = score_encoders(ds, load_fold_models("w.pt"), mask_ratio=0.5, n_patterns=4, seed=0)
    ... # doctest: +SKIP
    >>> values["masked_nmse"]  # doctest: +SKIP
    0.61
    """
    if len(models) != fmri.n_folds(ds):
        raise InputError(
            f"{source}: {len(models)} per-fold encoders but the roi_segments data has {fmri.n_folds(ds)} folds; "
            "re-run pretrain_brainmae on this clean file"
        )
    bvals = dict(baselines or {})
    model = models[0]  # never saw fold 0
    X = np.asarray(ds["signal"].values, dtype=np.float32)
    _, _, te = fmri.pretrain_split(ds)
    values: dict[str, float] = {}
    # reconstruction on held-out data, same masks as the baselines
    patterns, index = fmri.eval_masks(int(te.sum()), X.shape[2], float(mask_ratio), int(n_patterns), seed)
    masks = patterns[index]
    values["masked_nmse"] = fmri.nmse(X[te], _reconstruct(model, ds, X, te, patterns, index), masks)
    for b in ("best_baseline", "ridge", "ridge_volume", "pca", "mean_fill"):
        if f"nmse_{b}" in bvals:
            values[f"masked_nmse_vs_{b.replace('_fill', '')}"] = values["masked_nmse"] - bvals[f"nmse_{b}"]
            values[f"nmse_{b}"] = bvals[f"nmse_{b}"]
    if model.roi_embedding == "learned":
        values["masked_nmse_shuffled_embeddings"] = fmri.nmse(
            X[te], _reconstruct(model, ds, X, te, patterns, index, shuffle_embeddings=True, seed=seed), masks
        )
    # ROI embeddings vs planted modules
    if modules is not None:
        values["roi_embedding_ari"] = fmri.module_ari(model.roi_embeddings(), np.asarray(modules), seed)
        if "fc_clustering_ari" in bvals:
            values["fc_clustering_ari"] = bvals["fc_clustering_ari"]
            values["roi_embedding_ari_vs_fc_clustering"] = (
                values["roi_embedding_ari"] - bvals["fc_clustering_ari"]
            )
    # downstream: probe on frozen features, then fine-tuning
    folds = np.asarray(ds["fold"].values)
    ft = dict(finetune or {})
    tasks = []
    if fmri.has_labels(ds):
        tasks.append(("classification", np.asarray(ds["label"].values)))
    if fmri.has_target(ds):
        tasks.append(("regression", np.asarray(ds["target"].values, dtype=np.float64)))
    grid = [features] if isinstance(features, str) else list(features)
    feats = {f: fold_features(models, ds, f) for f in grid} if tasks else {}
    for task, y in tasks:
        key = "accuracy" if task == "classification" else "r2"
        if len(grid) == 1:
            res = cross_validate_probe(feats[grid[0]], y, folds, task, seed=seed)
        else:  # the read-out chosen on the validation fold, per outer fold
            res = cross_validate_probe_select(feats, y, folds, task, seed=seed)
        for k, v in res.items():
            values[f"probe_{key}_{k}" if k.startswith("readout_") else f"probe_{k}"] = v
        fc = [bvals[f"fc_{kind}_{key}"] for kind in ("correlation", "tangent") if f"fc_{kind}_{key}" in bvals]
        if fc:
            values[f"probe_{key}_vs_fc"] = values[f"probe_{key}"] - max(fc)
        if ft.get("enabled"):
            res = cross_validate_finetune(
                models,
                ds,
                task,
                y,
                max_epochs=int(ft["max_epochs"]),
                lr=float(ft["lr"]),
                patience=ft.get("patience"),
                batch_size=int(ft.get("batch_size", 32)),
                checkpoint=checkpoint,
                fingerprint=fingerprint,
                log=log,
            )
            for k, v in res.items():
                values[f"finetune_{k}"] = v
    return values
