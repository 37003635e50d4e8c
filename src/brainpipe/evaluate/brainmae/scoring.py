"""Scores of the per-fold BrainMAE encoders: masked-ROI reconstruction against baselines, ROI embeddings
against planted modules, probes and fine-tuning (:func:`score_encoders`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.errors import InputError
from brainpipe.evaluate import fmri
from brainpipe.evaluate.brainmae.pretraining import (
    _reconstruct,
)
from brainpipe.evaluate.brainmae.probes import (
    cross_validate_finetune,
    cross_validate_probe,
    cross_validate_probe_select,
    fold_features,
)
from brainpipe.models.brainmae import BrainMAE

log_ = logging.getLogger("brainpipe.evaluate.brainmae")


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
    if getattr(model, "linear_alpha_", None) is not None:  # the linear path: its penalty and its fill alone
        import torch

        values["linear_log10_alpha"] = float(np.log10(model.linear_alpha_))
        with torch.no_grad():
            dev = model._device()
            fill = model.net_.linear_fill(torch.as_tensor(X[te]).to(dev), torch.as_tensor(masks).to(dev))
        fill = fill.float().cpu().numpy()
        values["masked_nmse_linear_path"] = fmri.nmse(X[te], fill, masks)
        values["masked_nmse_vs_linear_path"] = values["masked_nmse"] - values["masked_nmse_linear_path"]
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
