"""Fine-tune a pretrained Neuroformer to decode behaviour, with 1%, 10%, 100% (``finetune.fractions``) of the
labelled train windows, and train the same network from scratch on the same labels (``finetune.scratch``), each
start choosing among the fine-tuning ``finetune.options`` on validation, over ``finetune.label_draws`` labelled
subsets; see :func:`brainpipe.training.neuroformer.finetune_neuroformer`.

Each run picks its checkpoint on the validation windows (all of them, labelled) and predicts the validation and
test windows once; the scores are computed by the evaluate stage. The output (``model_fit``) holds every run's
predictions ``prediction(run, window)`` with ``target(window)``, ``window_split``, ``window_time``, and the
weights of the pretrained run with the most labels (the decoder to use). A vocabulary that differs from the
pretrained checkpoint's (other units, other bins) stops the stage with both sizes named.
"""

from __future__ import annotations

import logging
from pathlib import Path

from brainpipe.data import make_provenance, read, write
from brainpipe.errors import ConfigError
from brainpipe.stages._neuroformer import fingerprint
from brainpipe.stages._runner import cli, stage
from brainpipe.training.neuroformer import finetune_neuroformer, run_checkpoint, run_labels, train_config

INPUTS = {"counts": "spike_counts .nc", "pretrained": "model_fit .nc (pretrained neuroformer)"}
OUTPUTS = {
    "finetune": "model_fit .nc (predictions of every fine-tuning run; weights of the best-labelled one)"
}
log_ = logging.getLogger("brainpipe.stages.neuroformer_finetune")


@stage
def run(inputs, outputs, params, log):
    ckpt = params.get("checkpoint")
    params = {k: v for k, v in params.items() if k != "checkpoint"}
    counts = read(inputs["counts"], "spike_counts")
    pre = read(inputs["pretrained"], "model_fit")
    if not params.get("target"):
        raise ConfigError(
            f"neuroformer finetune: dataset {params.get('dataset')!r} has no decoding target; set neuroformer.datasets.<name>.target"
        )
    ft = dict(params.get("finetune", {}))
    fractions, scratch = ft.get("fractions", [0.01, 0.1, 1.0]), ft.get("scratch", True)
    menu = {
        "options": list(ft.get("options", ["full"])),
        "label_draws": int(ft.get("label_draws", 1)),
        "draw_fractions": ft.get("draw_fractions"),
    }
    ds, decoder = finetune_neuroformer(
        counts,
        pre,
        params["target"],
        train_config(params, "finetune"),
        fractions=fractions,
        scratch=scratch,
        max_val_windows=ft.get("max_val_windows", 512),
        min_epoch_windows=int(ft.get("min_epoch_windows", 1024)),
        max_epoch_windows=ft.get("max_epoch_windows"),
        source=str(inputs["counts"]),
        pretrained_source=str(inputs["pretrained"]),
        checkpoint=ckpt,
        fingerprint=fingerprint("neuroformer_finetune", params, [inputs["counts"], inputs["pretrained"]]),
        log=log_,
        streaming=ft.get("streaming"),
        **menu,
    )
    device = str(next(decoder.net_.parameters()).device)
    prov = make_provenance(
        "neuroformer_finetune",
        params,
        [inputs["counts"], inputs["pretrained"]],
        seed=int(params.get("seed", 0)),
        device=device,
    )
    write(ds, outputs["finetune"], "model_fit", prov)
    for label in run_labels(
        fractions, scratch, **menu
    ):  # kept until now so that a failed stage resumes them at once
        if ckpt:
            Path(run_checkpoint(ckpt, label)).unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
