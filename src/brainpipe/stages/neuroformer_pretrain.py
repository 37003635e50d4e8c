"""Pretrain a Neuroformer by next-token (neuron ID + dt) prediction on the train windows of binned counts.

params: see :mod:`brainpipe.stages._neuroformer` (``tokenizer``, ``model``, ``pretrain``, ``modalities``,
``seed``, ``checkpoint``). The checkpoint is chosen on the validation windows; the output holds the weights and
the vocabulary (``model_fit``, model ``neuroformer``), the loss per epoch and the tokeniser's counts of
truncated windows and dropped spikes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from brainpipe.data import make_provenance, read, write
from brainpipe.stages._neuroformer import build_model, checkpoint_path, fingerprint
from brainpipe.stages._runner import cli, stage

INPUTS = {"counts": "spike_counts .nc"}
OUTPUTS = {"model": "model_fit .nc (neuroformer weights and vocabulary, role fit)"}
log_ = logging.getLogger("brainpipe.stages.neuroformer_pretrain")


@stage
def run(inputs, outputs, params, log):
    ckpt = checkpoint_path(params)
    params = {k: v for k, v in params.items() if k != "checkpoint"}
    counts = read(inputs["counts"], "spike_counts")
    model = build_model(params)
    fp = fingerprint("neuroformer_pretrain", params, [inputs["counts"]])
    model.fit(counts, source=str(inputs["counts"]), checkpoint=ckpt, fingerprint=fp, log=log_)
    res = model.train_result_
    log_.info(
        "pretrained on %s (%s): best epoch %s, validation loss %.4f, %.1f s; tokens: %s",
        res.device,
        res.precision,
        res.best_epoch,
        res.best_val,
        res.seconds,
        model.token_stats_,
    )
    ds = model.to_dataset()
    hist = model.history_
    for key in ("train_loss", "val_loss", "loss_id", "loss_dt"):
        if any(key in h for h in hist):
            ds[f"history_{key}"] = ("epoch", np.array([float(h.get(key, np.nan)) for h in hist]))
    ds = ds.assign_coords(epoch=np.array([int(h.get("epoch", i)) for i, h in enumerate(hist)]))
    ds.attrs.update({f"tokens_{k}": int(v) for k, v in model.token_stats_.items()})
    ds.attrs.update(
        best_epoch=int(res.best_epoch),
        best_val_loss=float(res.best_val),
        train_seconds=float(res.seconds),
        device=str(res.device),
        precision=str(res.precision),
    )
    prov = make_provenance(
        "neuroformer_pretrain", params, [inputs["counts"]], seed=model.seed, device=str(res.device)
    )
    write(ds, outputs["model"], "model_fit", prov)
    if (
        ckpt
    ):  # the training loop keeps its finished checkpoint (a re-run returns at once); the output now holds it
        Path(ckpt).unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
