"""Masked pretraining of BrainMAE on the training folds of a ``roi_segments`` file (segments pooled over subjects;
fold 1 is the validation set for early stopping, fold 0 is never seen), through the shared training loop.

params: the BrainMAE network and training settings (:class:`brainpipe.models.brainmae.BrainMAEConfig`,
:class:`~brainpipe.models.brainmae.TrainSettings`), optionally ``checkpoint`` (a file the loop checkpoints to;
a rerun with the same params and input resumes from it; removed on success). Outputs: the weights (torch file,
no pickle) and a ``model_fit`` with the ROI embeddings, the embedding-derived graph attention and the loss history.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr

from brainpipe.data import make_provenance, read, write
from brainpipe.errors import InputError
from brainpipe.evaluate.fmri import pretrain_split
from brainpipe.models.brainmae import BrainMAE
from brainpipe.stages._runner import cli, stage
from brainpipe.training import stage_fingerprint

INPUTS = {"clean": "roi_segments .nc"}
OUTPUTS = {
    "weights": "BrainMAE weights (.pt)",
    "fit": "model_fit .nc (ROI embeddings, graph attention, history)",
}
log_ = logging.getLogger("brainpipe.stages.pretrain_brainmae")


def fit_dataset(model: BrainMAE, ds: xr.Dataset, params: dict) -> xr.Dataset:
    rois = ds["roi"].values
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
        },
        attrs={
            "model": "brainmae",
            "role": "fit",
            "best_epoch": int(model.best_epoch_ if model.best_epoch_ is not None else -1),
            "device": model.device_,
            "precision": model.precision_,
            "train_seconds": model.train_seconds_,
            "segment_length_s": float(ds.attrs["segment_length_s"]),
            "repetition_time_s": float(ds.attrs["repetition_time_s"]),
        },
    )


@stage
def run(inputs, outputs, params, log):
    params = dict(params)
    ckpt = params.pop("checkpoint", None)
    ds = read(inputs["clean"], "roi_segments")
    tr, va, _ = pretrain_split(ds)
    if not tr.any():
        raise InputError(
            f"{inputs['clean']}: no segments in the training folds (fold >= 2); add subjects or lower fmri.clean.segment_s"
        )
    X = np.asarray(ds["signal"].values, dtype=np.float32)
    model = BrainMAE(**params)
    fp = stage_fingerprint("pretrain_brainmae", params, [inputs["clean"]]) if ckpt else None
    log_.info("pretraining on %d segments (validation %d), %s", tr.sum(), va.sum(), params)
    model.fit(X[tr], X[va], checkpoint=ckpt, fingerprint=fp, log=log_)
    log_.info(
        "done: best epoch %s, %.1f s on %s (%s)",
        model.best_epoch_,
        model.train_seconds_,
        model.device_,
        model.precision_,
    )
    prov = make_provenance(
        "pretrain_brainmae", params, [inputs["clean"]], seed=model.train_settings_.seed, device=model.device_
    )
    write(fit_dataset(model, ds, params), outputs["fit"], "model_fit", prov)
    model.save(outputs["weights"])
    if ckpt:
        Path(ckpt).unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
