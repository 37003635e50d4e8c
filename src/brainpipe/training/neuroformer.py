"""Neuroformer training runs from a study's config: the model from a dataset's resolved ``neuroformer`` parameters,
the training configs, pretraining with its ``model_fit`` output, and fine-tuning to decode behaviour at several
label fractions (from the pretrained weights and from scratch).

Parameters (one dataset's resolved ``neuroformer`` config, see config/README.md): ``tokenizer`` (SpikeTokenizer
fields), ``model`` (network size, contrastive term), ``pretrain`` and ``finetune`` (TrainConfig fields; finetune
also ``fractions``, ``scratch``, ``scratch_max_steps``, ``max_val_windows``, ``min_epoch_windows``), ``modalities`` (name -> {source,
variables}), ``target`` ({source, variable, kind} or null), ``seed``.

>>> from brainpipe.training.neuroformer import finetune_neuroformer, pretrain_neuroformer, pretrained_dataset
>>> model = pretrain_neuroformer(counts, params)  # doctest: +SKIP
>>> runs, decoder = finetune_neuroformer(counts, pretrained_dataset(model), params["target"])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.errors import ConfigError
from brainpipe.models.neuroformer import MODEL_KEYS, Neuroformer, SpikeTokenizer

__all__ = [
    "FINETUNE_EXTRA",
    "TOKENIZER_KEYS",
    "TRAIN_KEYS",
    "build_neuroformer",
    "finetune_neuroformer",
    "pretrain_neuroformer",
    "pretrained_dataset",
    "run_checkpoint",
    "run_labels",
    "train_config",
]

TOKENIZER_KEYS = ("dt_s", "window_s", "past_window_s", "stride_s", "block_size", "past_block_size")
FINETUNE_EXTRA = ("fractions", "scratch", "scratch_max_steps", "max_val_windows", "min_epoch_windows")
TRAIN_KEYS = (
    "max_epochs",
    "max_steps",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_steps",
    "grad_clip",
    "patience",
    "min_delta",
    "device",
    "precision",
    "checkpoint_every_s",
    "progress",
)
log_ = logging.getLogger("brainpipe.training.neuroformer")


def _pick(d: Mapping, keys, where: str) -> dict:
    unknown = sorted(set(d) - set(keys))
    if unknown:
        raise ConfigError(
            f"neuroformer {where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(keys)})"
        )
    return {k: d[k] for k in keys if k in d}


def train_config(params: Mapping[str, Any], which: str) -> dict[str, Any]:
    """The training-loop settings of one phase, seeded by the run's seed.

    Parameters
    ----------
    params : mapping
        One dataset's resolved ``neuroformer`` parameters.
    which : {"pretrain", "finetune"}
        The phase.

    Returns
    -------
    dict
        :class:`~brainpipe.training.TrainConfig` fields (``checkpoint_every_s`` from the environment when unset).

    Raises
    ------
    ConfigError
        The phase names a key the training loop does not have.
    """
    d = {k: v for k, v in dict(params.get(which, {})).items() if k not in FINETUNE_EXTRA}
    cfg = _pick(d, TRAIN_KEYS, which)
    cfg["seed"] = int(params.get("seed", 0))
    if "checkpoint_every_s" not in cfg:
        from brainpipe.training import checkpoint_every_s

        cfg["checkpoint_every_s"] = checkpoint_every_s()
    return cfg


def build_neuroformer(params: Mapping[str, Any], with_target: bool = False) -> Neuroformer:
    """An unfitted Neuroformer (and its tokeniser) from a dataset's resolved ``neuroformer`` parameters.

    Parameters
    ----------
    params : mapping
        One dataset's resolved ``neuroformer`` parameters (``tokenizer``, ``model``, ``pretrain``, ``finetune``,
        ``modalities``, ``target``, ``seed``).
    with_target : bool, default False
        Give the tokeniser the decoding ``target`` (pretraining does without).

    Returns
    -------
    Neuroformer
        The model, not fitted.

    Raises
    ------
    ConfigError
        A section names an unknown key.
    """
    tok = SpikeTokenizer(
        **_pick(dict(params.get("tokenizer", {})), TOKENIZER_KEYS, "tokenizer"),
        modalities=dict(params.get("modalities", {})),
        target=dict(params["target"]) if with_target and params.get("target") else None,
    )
    model_kw = dict(params.get("model", {}))
    cw = float(model_kw.pop("contrastive_weight", 0.0))
    return Neuroformer(
        tokenizer=tok,
        **_pick(model_kw, MODEL_KEYS, "model"),
        contrastive_weight=cw,
        train=train_config(params, "pretrain"),
        finetune=train_config(params, "finetune"),
        seed=int(params.get("seed", 0)),
    )


def run_checkpoint(checkpoint: str | None, label: str = "") -> str | None:
    """The checkpoint file of one training run, its folder made.

    Parameters
    ----------
    checkpoint : str or None
        The stage's checkpoint path (None: no checkpoints).
    label : str, default ""
        The run (a fine-tuning run's label); ``""`` for the path itself.

    Returns
    -------
    str or None
        ``<stem>.<label><suffix>`` beside ``checkpoint`` (``checkpoint`` itself without a label), or None.
    """
    if not checkpoint:
        return None
    p = Path(str(checkpoint))
    if label:
        p = p.with_name(f"{p.stem}.{label}{p.suffix}")
    p.parent.mkdir(parents=True, exist_ok=True)
    return str(p)


def pretrain_neuroformer(
    counts: xr.Dataset,
    params: Mapping[str, Any],
    source: str = "counts",
    checkpoint: str | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    log: logging.Logger | None = None,
) -> Neuroformer:
    """Pretrain a Neuroformer by next-token (neuron ID + dt) prediction on the train windows of binned counts.

    The checkpoint is chosen on the validation windows.

    Parameters
    ----------
    counts : xarray.Dataset
        A ``spike_counts`` dataset (with the modality variables the parameters name).
    params : mapping
        One dataset's resolved ``neuroformer`` parameters.
    source : str, default "counts"
        What the data is called in error messages (e.g. its file name).
    checkpoint : str, optional
        The training loop's resumable checkpoint file.
    fingerprint : mapping, optional
        What identifies the run; a checkpoint written with another one is not resumed.
    log : logging.Logger, optional
        Where progress is logged (this module's logger when None).

    Returns
    -------
    Neuroformer
        The pretrained model.

    Examples
    --------
    >>> from brainpipe.data import read
    >>> counts = read("counts.nc", "spike_counts")  # doctest: +SKIP
    >>> params = {"tokenizer": {"dt_s": 0.01, "window_s": 0.02, "past_window_s": 0.04}, "seed": 0}
    >>> model = pretrain_neuroformer(counts, params)  # doctest: +SKIP
    >>> pretrained_dataset(model).attrs["best_val_loss"]  # doctest: +SKIP
    4.02
    """
    log = log or log_
    model = build_neuroformer(params)
    model.fit(counts, source=source, checkpoint=checkpoint, fingerprint=fingerprint, log=log)
    res = model.train_result_
    log.info(
        "pretrained on %s (%s): best epoch %s, validation loss %.4f, %.1f s; tokens: %s",
        res.device,
        res.precision,
        res.best_epoch,
        res.best_val,
        res.seconds,
        model.token_stats_,
    )
    return model


def pretrained_dataset(model: Neuroformer) -> xr.Dataset:
    """The ``model_fit`` of a pretrained Neuroformer: weights, vocabulary, loss per epoch and token counts.

    Parameters
    ----------
    model : Neuroformer
        A model fitted by :func:`pretrain_neuroformer` (or :meth:`Neuroformer.fit`).

    Returns
    -------
    xarray.Dataset
        :meth:`Neuroformer.to_dataset` with ``history_<loss>(epoch)``, the tokeniser's ``tokens_*`` counts, the best
        epoch and validation loss, the seconds, device and precision of the training.
    """
    res = model.train_result_
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
    return ds


def _inits(scratch: bool | Sequence[float], fraction: float) -> list[str]:
    """The runs at one fraction: pretrained, and scratch when ``scratch`` is True or lists that fraction."""
    if isinstance(scratch, bool):
        at = scratch
    else:
        at = any(abs(float(f) - fraction) < 1e-12 for f in scratch)
    return ["pretrained"] + (["scratch"] if at else [])


def _run_label(init: str, fraction: float) -> str:
    return f"{init}_{fraction * 100:g}pct"


def finetune_neuroformer(
    counts: xr.Dataset,
    pretrained: xr.Dataset,
    target: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    fractions: Sequence[float] = (0.01, 0.1, 1.0),
    scratch: bool | Sequence[float] = True,
    max_val_windows: int | None = 512,
    min_epoch_windows: int = 1024,
    source: str = "counts",
    pretrained_source: str = "pretrained",
    scratch_max_steps: int | None = None,
    checkpoint: str | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    log: logging.Logger | None = None,
) -> tuple[xr.Dataset, Neuroformer]:
    """Fine-tune a pretrained Neuroformer to decode behaviour, at fractions of the labelled train windows.

    At each fraction the same network is also trained from scratch on the same labels (``scratch``), to
    convergence: with the same early stopping (patience on the validation loss, ``max_epochs``) but not the
    fine-tuning's step cap (``scratch_max_steps``, None: no cap). Each run (one per fraction and start: ``pretrained``, then ``scratch``) picks its checkpoint on the validation
    windows and predicts the labelled validation and test windows once; scoring is left to
    :func:`brainpipe.evaluate.neuroformer.decoding_metrics`.

    Parameters
    ----------
    counts : xarray.Dataset
        A ``spike_counts`` dataset with the target variable.
    pretrained : xarray.Dataset
        The pretrained ``model_fit`` (:func:`pretrained_dataset`); its vocabulary must match ``counts``.
    target : mapping
        ``source`` (``behaviour`` or ``stimulus``), ``variable`` and ``kind`` (``regression``, the default, or
        ``classification``).
    config : mapping, optional
        :class:`~brainpipe.training.TrainConfig` fields of the fine-tuning (:func:`train_config`).
    fractions : sequence of float, default (0.01, 0.1, 1.0)
        Fractions of the labelled train windows, one run (or two, with ``scratch``) each.
    scratch : bool or sequence of float, default True
        Also train the network from scratch at each fraction (a sequence: at those fractions only).
    max_val_windows : int or None, default 512
        Most labelled validation windows in the validation loss.
    min_epoch_windows : int, default 1024
        Fewest windows per epoch (a small labelled set is repeated).
    source : str, default "counts"
        What the counts are called in error messages.
    pretrained_source : str, default "pretrained"
        What the pretrained fit is called in error messages.
    scratch_max_steps : int, optional
        Step cap of the from-scratch runs (None: none; they stop by the same early stopping as fine-tuning).
    checkpoint : str, optional
        Each run checkpoints to :func:`run_checkpoint` of it and its label (left for the caller to remove).
    fingerprint : mapping, optional
        What identifies the runs; each adds its ``run`` label.
    log : logging.Logger, optional
        Where progress is logged (this module's logger when None).

    Returns
    -------
    runs : xarray.Dataset
        A ``model_fit``: the weights of the pretrained run with the most labels (the decoder to use), every run's
        predictions ``prediction(run, window)`` with ``target(window)``, ``window_split``, ``window_time``,
        ``window_start_bin``, ``run_n_labelled``, ``run_best_val_loss``, ``run_epochs``; coordinates ``run``, ``run_init``,
        ``run_fraction``; the target in the attrs.
    decoder : Neuroformer
        That decoder (the pretrained run with the most labels), fitted.

    Examples
    --------
    >>> from brainpipe.data import read
    >>> counts, pre = read("counts.nc", "spike_counts"), read("pretrained.nc", "model_fit")  # doctest: +SKIP
    >>> target = {"source": "behaviour", "variable": "speed"}
    >>> runs, decoder = finetune_neuroformer(counts, pre, target, fractions=[0.1, 1.0])  # doctest: +SKIP
    >>> list(runs["run"].values)  # doctest: +SKIP
    ['pretrained_10pct', 'scratch_10pct', 'pretrained_100pct', 'scratch_100pct']
    """
    log = log or log_
    fractions = sorted(float(f) for f in fractions)
    runs, preds, hist_best, keep_weights = [], [], [], None
    win_ref = None
    for frac in fractions:
        for init in _inits(scratch, frac):
            model = Neuroformer.from_dataset(pretrained, counts, source=pretrained_source)
            model.finetune = dict(config or {})
            if init == "scratch":  # converged: same early stopping, not the fine-tuning's step budget
                model.finetune["max_steps"] = None if scratch_max_steps is None else int(scratch_max_steps)
            model.set_target(counts, target, source)
            label = _run_label(init, frac)
            model.fit_behaviour(
                counts,
                frac,
                from_pretrained=(init == "pretrained"),
                source=source,
                checkpoint=run_checkpoint(checkpoint, label),
                fingerprint=dict(fingerprint or {}, run=label),
                log=log,
                max_val_windows=max_val_windows,
                min_epoch_windows=int(min_epoch_windows),
            )
            win = model.labelled_windows(counts, ("validation", "test"), source)
            pred, tgt = model.decode(win)
            win_ref = (win, tgt.astype(np.float64)) if win_ref is None else win_ref
            runs.append((label, init, frac, model.n_labelled_, len(model.finetune_history_)))
            preds.append(pred.astype(np.float64) if model.target_kind == "classification" else pred)
            hist = model.finetune_history_
            hist_best.append(min((h.get("val_loss", np.nan) for h in hist), default=np.nan))
            log.info(
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
    ds["run_epochs"] = ("run", np.array([r[4] for r in runs], np.int64), {"long_name": "epochs trained"})
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
    return ds, keep_weights


def run_labels(fractions: Sequence[float], scratch: bool | Sequence[float] = True) -> list[str]:
    """The labels of the fine-tuning runs, in their order.

    Parameters
    ----------
    fractions : sequence of float
        Fractions of the labelled train windows.
    scratch : bool or sequence of float, default True
        Whether from-scratch runs are made too (a sequence: at those fractions only).

    Returns
    -------
    list of str
        ``<init>_<percent>pct`` per run.
    """
    return [_run_label(i, f) for f in sorted(float(f) for f in fractions) for i in _inits(scratch, f)]
