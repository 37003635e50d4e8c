"""Pretrain a Neuroformer by next-token (neuron ID + dt) prediction on the train windows of binned counts
(:func:`brainpipe.training.neuroformer.pretrain_neuroformer`).

params: see :mod:`brainpipe.stages._neuroformer` (``tokenizer``, ``model``, ``pretrain``, ``modalities``,
``seed``, ``checkpoint``; ``target`` with ``model.contrastive_select: decoding``). The checkpoint is chosen on the
validation windows (and, with ``model.contrastive_grid``, the contrastive weight: the lowest validation next-token
loss, or the best validation decoding score of a linear probe of each network); the output holds the weights and
the vocabulary (``model_fit``, model ``neuroformer``), the loss per epoch and the tokeniser's counts of
truncated windows and dropped spikes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from brainpipe.data import make_provenance, read, write
from brainpipe.stages._neuroformer import fingerprint
from brainpipe.stages._runner import cli, stage
from brainpipe.training.neuroformer import (
    pretrain_checkpoints,
    pretrain_neuroformer,
    pretrained_dataset,
    run_checkpoint,
)

INPUTS = {"counts": "spike_counts .nc"}
OUTPUTS = {"model": "model_fit .nc (neuroformer weights and vocabulary, role fit)"}
log_ = logging.getLogger("brainpipe.stages.neuroformer_pretrain")


@stage
def run(inputs, outputs, params, log):
    ckpt = run_checkpoint(params.get("checkpoint"))
    params = {k: v for k, v in params.items() if k != "checkpoint"}
    counts = read(inputs["counts"], "spike_counts")
    fp = fingerprint("neuroformer_pretrain", params, [inputs["counts"]])
    model = pretrain_neuroformer(
        counts, params, source=str(inputs["counts"]), checkpoint=ckpt, fingerprint=fp, log=log_
    )
    device = str(model.train_result_.device)
    prov = make_provenance("neuroformer_pretrain", params, [inputs["counts"]], seed=model.seed, device=device)
    write(pretrained_dataset(model), outputs["model"], "model_fit", prov)
    # the training loop keeps its finished checkpoints (a re-run returns at once); the output now holds the one kept
    for c in pretrain_checkpoints(ckpt, params):
        Path(c).unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
