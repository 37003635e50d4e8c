"""Masked pretraining of BrainMAE on a ``roi_segments`` file, one encoder per outer cross-validation fold, through
the shared training loop: encoder ``k`` trains on every fold but ``k`` and ``(k + 1) % K`` (segments pooled over
subjects), stops early on fold ``(k + 1) % K`` and never sees fold ``k`` (its test fold downstream; see
:func:`brainpipe.evaluate.fmri.fold_split`). Encoder 0 is the one scored on held-out fold 0.

params: the BrainMAE network and training settings (:class:`brainpipe.models.brainmae.BrainMAEConfig`,
:class:`~brainpipe.models.brainmae.TrainSettings`), optionally ``checkpoint`` (fold ``k`` checkpoints to
``<checkpoint>.fold-<k>.pt``; a rerun with the same params and input resumes at the fold it was in, finished folds
return at once; all removed on success). Outputs: the K encoders' weights (one torch file, no pickle; see
:func:`~brainpipe.models.brainmae.save_fold_models`) and a ``model_fit`` with encoder 0's ROI embeddings,
embedding-derived graph attention and loss history, every encoder's ROI embeddings (``fold_roi_embedding``) and the
subjects each one trained and stopped on (``fold_train_subject``, ``fold_validation_subject``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr

from brainpipe.data import make_provenance, read, write
from brainpipe.errors import InputError
from brainpipe.evaluate.fmri import fold_split, n_folds
from brainpipe.models.brainmae import BrainMAE, save_fold_models
from brainpipe.stages._runner import cli, stage
from brainpipe.training import stage_fingerprint

INPUTS = {"clean": "roi_segments .nc"}
OUTPUTS = {
    "weights": "BrainMAE weights (.pt), one encoder per outer fold",
    "fit": "model_fit .nc (ROI embeddings, graph attention, history; per-fold embeddings and training subjects)",
}
log_ = logging.getLogger("brainpipe.stages.pretrain_brainmae")


def fit_dataset(models: list[BrainMAE], ds: xr.Dataset, splits: list[tuple[np.ndarray, ...]]) -> xr.Dataset:
    """The ``model_fit`` of the per-fold encoders ``models`` (``splits[k]``: fold ``k``'s segment masks)."""
    model = models[0]
    rois = ds["roi"].values
    seg_sub = np.asarray(ds["segment_subject"].values)
    n_sub = ds.sizes["subject"]

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
        },
    )


def _fold_checkpoint(ckpt: str | None, k: int) -> str | None:
    return f"{ckpt}.fold-{k}.pt" if ckpt else None


@stage
def run(inputs, outputs, params, log):
    params = dict(params)
    ckpt = params.pop("checkpoint", None)
    ds = read(inputs["clean"], "roi_segments")
    X = np.asarray(ds["signal"].values, dtype=np.float32)
    K = n_folds(ds)
    fp = stage_fingerprint("pretrain_brainmae", params, [inputs["clean"]]) if ckpt else None
    splits = [fold_split(ds, k) for k in range(K)]
    for k, (tr, _, _) in enumerate(splits):
        if not tr.any():
            raise InputError(
                f"{inputs['clean']}: outer fold {k} leaves no training segments (folds other than {k} and "
                f"{(k + 1) % K}); add subjects, raise fmri.clean.n_folds or lower fmri.clean.segment_s"
            )
    models = []
    for k, (tr, va, _) in enumerate(splits):
        model = BrainMAE(**params)
        log_.info(
            "encoder %d/%d: pretraining on %d segments (validation %d), %s",
            k + 1,
            K,
            tr.sum(),
            va.sum(),
            params,
        )
        model.fit(
            X[tr],
            X[va],
            checkpoint=_fold_checkpoint(ckpt, k),
            fingerprint=dict(fp, fold=k) if ckpt else None,
            log=log_,
        )
        log_.info(
            "encoder %d/%d done: best epoch %s, %.1f s on %s (%s)",
            k + 1,
            K,
            model.best_epoch_,
            model.train_seconds_,
            model.device_,
            model.precision_,
        )
        models.append(model)
    prov = make_provenance(
        "pretrain_brainmae",
        params,
        [inputs["clean"]],
        seed=models[0].seed,
        device=models[0].device_,
    )
    write(fit_dataset(models, ds, splits), outputs["fit"], "model_fit", prov)
    save_fold_models(models, outputs["weights"])
    if ckpt:
        for k in range(K):
            Path(_fold_checkpoint(ckpt, k)).unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
