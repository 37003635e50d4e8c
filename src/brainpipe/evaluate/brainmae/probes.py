"""Downstream BrainMAE evaluation: frozen-feature linear probes and fine-tuning, cross-validated so that test
fold ``k`` only ever meets encoder ``k``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.evaluate import fmri
from brainpipe.evaluate.brainmae.pretraining import (
    _context,
    _temporal,
    segment_sequences,
)
from brainpipe.models.brainmae import BrainMAE

log_ = logging.getLogger("brainpipe.evaluate.brainmae")


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
