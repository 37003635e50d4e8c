"""Fine-tune a pretrained Neuroformer to decode behaviour, with 1%, 10%, 100% (``finetune.fractions``) of the
labelled train windows, and train the same network from scratch on the same labels (``finetune.scratch``).

Each run picks its checkpoint on the validation windows (all of them, labelled) and predicts the validation and
test windows once; the scores are computed by the evaluate stage. The output (``model_fit``) holds every run's
predictions ``prediction(run, window)`` with ``target(window)``, ``window_split``, ``window_time``, and the
weights of the pretrained run with the most labels (the decoder to use). A vocabulary that differs from the
pretrained checkpoint's (other units, other bins) stops the stage with both sizes named.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from brainpipe.data import make_provenance, read, write
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError
from brainpipe.models.neuroformer import Neuroformer
from brainpipe.stages._neuroformer import checkpoint_path, fingerprint, train_config
from brainpipe.stages._runner import cli, stage

INPUTS = {"counts": "spike_counts .nc", "pretrained": "model_fit .nc (pretrained neuroformer)"}
OUTPUTS = {
    "finetune": "model_fit .nc (predictions of every fine-tuning run; weights of the best-labelled one)"
}
log_ = logging.getLogger("brainpipe.stages.neuroformer_finetune")


def run_label(init: str, fraction: float) -> str:
    return f"{init}_{fraction * 100:g}pct"


@stage
def run(inputs, outputs, params, log):
    ck_base = {"checkpoint": params.get("checkpoint")}
    params = {k: v for k, v in params.items() if k != "checkpoint"}
    counts = read(inputs["counts"], "spike_counts")
    pre = read(inputs["pretrained"], "model_fit")
    target = params.get("target")
    if not target:
        raise ConfigError(
            f"neuroformer finetune: dataset {params.get('dataset')!r} has no decoding target; set neuroformer.datasets.<name>.target"
        )
    ft = dict(params.get("finetune", {}))
    fractions = sorted(float(f) for f in ft.get("fractions", [0.01, 0.1, 1.0]))
    inits = ["pretrained"] + (["scratch"] if ft.get("scratch", True) else [])
    cfg = train_config(params, "finetune")
    src = str(inputs["counts"])
    runs, preds, hist_best, keep_weights = [], [], [], None
    win_ref = None
    for frac in fractions:
        for init in inits:
            model = Neuroformer.from_dataset(pre, counts, source=str(inputs["pretrained"]))
            model.finetune = cfg
            model.set_target(counts, target, src)
            label = run_label(init, frac)
            fp = fingerprint(
                "neuroformer_finetune", {**params, "run": label}, [inputs["counts"], inputs["pretrained"]]
            )
            model.fit_behaviour(
                counts,
                frac,
                from_pretrained=(init == "pretrained"),
                source=src,
                checkpoint=checkpoint_path(ck_base, label),
                fingerprint=fp,
                log=log_,
                max_val_windows=ft.get("max_val_windows", 512),
                min_epoch_windows=int(ft.get("min_epoch_windows", 1024)),
            )
            win = model.tokenizer_.transform(counts, src)
            sel = np.isin(win.split, [SPLIT_FLAGS["validation"], SPLIT_FLAGS["test"]]) & np.isfinite(
                win.target[:, 0]
            )
            win = win.select(sel)
            out = [o["behaviour"].float().cpu().numpy() for o, _, _ in model._forward_windows(win)]
            p = np.concatenate(out) if out else np.zeros((0, 1))
            if model.target_kind == "classification":
                pred = model.tokenizer_.classes_[p.argmax(1)].astype(np.float64)
                tgt = model.tokenizer_.classes_[win.target[:, 0].astype(int)].astype(np.float64)
            else:
                pred = p[:, 0] * model.target_std_ + model.target_mean_
                tgt = win.target[:, 0].astype(np.float64)
            win_ref = (win, tgt) if win_ref is None else win_ref
            runs.append((label, init, frac, model.n_labelled_))
            preds.append(pred)
            hist = model.finetune_history_
            hist_best.append(min((h.get("val_loss", np.nan) for h in hist), default=np.nan))
            log_.info(
                "%s: %d labelled windows, %d epochs, best validation loss %.4f (%d validation windows)",
                label,
                model.n_labelled_,
                len(hist),
                hist_best[-1],
                model.n_validation_,
            )
            if init == "pretrained":
                keep_weights = model
    win, tgt = win_ref
    ds = keep_weights.to_dataset()
    ds["prediction"] = (
        ("run", "window"),
        np.stack(preds),
        {"long_name": "decoded target per run and window"},
    )
    ds["target"] = (
        "window",
        tgt,
        {"long_name": f"recorded {target['variable']} (window mean or last-bin class)"},
    )
    ds["window_split"] = (
        "window",
        win.split.astype(np.int8),
        {"long_name": "split of the window (1 validation, 2 test)"},
    )
    ds["window_time"] = (
        "window",
        win.t_start.astype(np.float64),
        {"units": "s", "long_name": "current window start"},
    )
    ds["window_start_bin"] = ("window", win.start.astype(np.int64))
    ds["run_n_labelled"] = ("run", np.array([r[3] for r in runs], np.int64))
    ds["run_best_val_loss"] = ("run", np.array(hist_best, np.float64))
    ds = ds.assign_coords(
        run=np.array([r[0] for r in runs]),
        run_init=("run", np.array([r[1] for r in runs])),
        run_fraction=("run", np.array([r[2] for r in runs], np.float64)),
    )
    ds.attrs.update(
        target_kind=str(target.get("kind", "regression")),
        target_variable=str(target["variable"]),
        target_source=str(target["source"]),
    )
    prov = make_provenance(
        "neuroformer_finetune",
        params,
        [inputs["counts"], inputs["pretrained"]],
        seed=int(params.get("seed", 0)),
        device=str(next(keep_weights.net_.parameters()).device),
    )
    write(ds, outputs["finetune"], "model_fit", prov)
    for (
        label,
        *_,
    ) in runs:  # finished runs' checkpoints (kept until now so a failed stage resumes them at once)
        ck = checkpoint_path(ck_base, label)
        if ck:
            Path(ck).unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
