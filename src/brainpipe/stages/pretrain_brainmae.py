"""Masked pretraining of BrainMAE on a ``roi_segments`` file, one encoder per outer cross-validation fold
(:func:`brainpipe.evaluate.brainmae.pretrain_folds`: encoder ``k`` never sees fold ``k``, stops early on fold
``(k + 1) % K``). Encoder 0 is the one scored on held-out fold 0.

params: the BrainMAE network and training settings (:class:`brainpipe.models.brainmae.BrainMAEConfig`,
:class:`~brainpipe.models.brainmae.TrainSettings`), optionally ``checkpoint`` (fold ``k`` checkpoints to
``<checkpoint>.fold-<k>.pt``; a rerun with the same params and input resumes at the fold it was in, finished folds
return at once; all removed on success); ``seeds`` (a list) trains the K encoders once per seed (their fit
describes the first seed's); ``select`` (setting -> list of values) pretrains every combination per fold and keeps the
least validation-fold NMSE (the grid, the candidates' validation NMSE and the choice in the fit); with
``temporal_encoder: transformer`` the encoders train on sequences of segments
(:func:`~brainpipe.evaluate.brainmae.segment_sequences`); with ``streaming.enabled`` the file's ``signal`` stays on
disk and each encoder's training and validation segments are streamed from zarr stores under the job's temporary
folder
(:func:`~brainpipe.evaluate.brainmae.open_segments`, :mod:`brainpipe.training.streaming`). Outputs: the encoders' weights (one torch file, no pickle; see
:func:`~brainpipe.models.brainmae.save_fold_models`) and their ``model_fit``
(:func:`~brainpipe.evaluate.brainmae.folds_to_dataset`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from brainpipe.data import make_provenance, write
from brainpipe.evaluate.brainmae import (
    by_seed,
    fold_checkpoint,
    folds_to_dataset,
    open_segments,
    pretrain_folds,
)
from brainpipe.models.brainmae import save_fold_models, streaming_settings
from brainpipe.stages._runner import cli, stage
from brainpipe.training import stage_fingerprint

INPUTS = {"clean": "roi_segments .nc"}
OUTPUTS = {
    "weights": "BrainMAE weights (.pt), one encoder per outer fold",
    "fit": "model_fit .nc (ROI embeddings, graph attention, history; per-fold embeddings and training subjects)",
}
log_ = logging.getLogger("brainpipe.stages.pretrain_brainmae")


@stage
def run(inputs, outputs, params, log):
    params = dict(params)
    ckpt = params.pop("checkpoint", None)
    lazy = streaming_settings(params.get("streaming")) is not None
    ds = open_segments(inputs["clean"], lazy=lazy)
    try:
        fp = stage_fingerprint("pretrain_brainmae", params, [inputs["clean"]]) if ckpt else None
        models = pretrain_folds(
            ds, params, checkpoint=ckpt, fingerprint=fp, source=str(inputs["clean"]), log=log_
        )
        fit = folds_to_dataset(next(iter(by_seed(models).values())), ds).load()
    finally:
        ds.close()
    prov = make_provenance(
        "pretrain_brainmae", params, [inputs["clean"]], seed=models[0].seed, device=models[0].device_
    )
    groups = by_seed(models)
    fit.attrs["seeds"] = [int(s) for s in groups]
    write(fit, outputs["fit"], "model_fit", prov)
    save_fold_models(models, outputs["weights"])
    if ckpt:
        bases = [ckpt] if len(groups) == 1 else [f"{ckpt}.seed-{s}" for s in groups]
        for base in bases:
            for k in range(len(models) // len(groups)):
                Path(fold_checkpoint(base, k)).unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
