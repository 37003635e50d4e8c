"""Neuroformer training runs from a study's config: the model from a dataset's resolved ``neuroformer`` parameters,
the training configs, pretraining with its ``model_fit`` output, and fine-tuning to decode behaviour at several
label fractions (from the pretrained weights and from scratch; in :mod:`brainpipe.training.neuroformer_finetune`,
re-exported here).

Parameters (one dataset's resolved ``neuroformer`` config, see config/README.md): ``tokenizer`` (SpikeTokenizer
fields), ``model`` (network size, contrastive term), ``pretrain`` and ``finetune`` (TrainConfig fields; finetune
also ``fractions``, ``scratch``, ``max_val_windows``, ``min_epoch_windows``, ``max_epoch_windows``), ``modalities`` (name -> {source,
variables}), ``target`` ({source, variable, kind} or null), ``seed``.

>>> from brainpipe.training.neuroformer import finetune_neuroformer, pretrain_neuroformer, pretrained_dataset
>>> model = pretrain_neuroformer(counts, params)  # doctest: +SKIP
>>> runs, decoder = finetune_neuroformer(counts, pretrained_dataset(model), params["target"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.errors import ConfigError
from brainpipe.models.neuroformer import MODEL_KEYS, Neuroformer, SpikeTokenizer

__all__ = [
    "FINETUNE_EXTRA",
    "PRETRAIN_EXTRA",
    "TOKENIZER_KEYS",
    "TRAIN_KEYS",
    "CONTRASTIVE_SELECT",
    "SELECTED_BY",
    "build_neuroformer",
    "contrastive_grid",
    "contrastive_select",
    "finetune_neuroformer",
    "parse_option",
    "pretrain_checkpoints",
    "pretrain_neuroformer",
    "pretrained_dataset",
    "run_checkpoint",
    "run_labels",
    "train_config",
    "validation_decoding",
]

TOKENIZER_KEYS = ("dt_s", "window_s", "past_window_s", "stride_s", "block_size", "past_block_size")
FINETUNE_EXTRA = (
    "fractions",
    "scratch",
    "max_val_windows",
    "min_epoch_windows",
    "max_epoch_windows",
    "readout",
    "options",
    "label_draws",
    "draw_fractions",
    "streaming",
)
#: pretraining settings that are not the training loop's (TrainConfig's)
PRETRAIN_EXTRA = ("streaming",)
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
    "num_workers",
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
    extra = FINETUNE_EXTRA if which == "finetune" else PRETRAIN_EXTRA
    d = {k: v for k, v in dict(params.get(which, {})).items() if k not in extra}
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
    model_kw.pop("contrastive_grid", None)
    model_kw.pop("contrastive_select", None)
    return Neuroformer(
        tokenizer=tok,
        **_pick(model_kw, MODEL_KEYS, "model"),
        contrastive_weight=cw,
        train=train_config(params, "pretrain"),
        finetune=train_config(params, "finetune"),
        seed=int(params.get("seed", 0)),
    )


def contrastive_grid(params: Mapping[str, Any]) -> list[float]:
    """The contrastive weights pretraining tries, to keep the one with the lowest validation next-token loss.

    Parameters
    ----------
    params : mapping
        One dataset's resolved ``neuroformer`` parameters (``model.contrastive_grid``,
        ``model.contrastive_weight``, ``modalities``).

    Returns
    -------
    list of float
        ``model.contrastive_grid`` (sorted, without repeats) when the dataset has a modality to align to and the
        grid has two or more values; else ``[model.contrastive_weight]`` (one run, no selection).

    Raises
    ------
    ConfigError
        A negative weight in the grid.
    """
    model_kw = dict(params.get("model", {}))
    grid = sorted({float(w) for w in (model_kw.get("contrastive_grid") or [])})
    if any(w < 0 for w in grid):
        raise ConfigError(
            f"neuroformer model.contrastive_grid: {grid} has a negative weight; give weights >= 0 (0: no contrastive term)"
        )
    if len(grid) < 2 or not params.get("modalities"):
        return [float(model_kw.get("contrastive_weight", 0.0))]
    return grid


#: how a contrastive grid chooses its weight (``model.contrastive_select``)
CONTRASTIVE_SELECT = ("next_token", "decoding")
SELECTED_BY = {
    "next_token": "lowest next-token loss (ID + dt, nats) on the validation windows",
    "decoding": "highest decoding score (R2 or balanced accuracy; ties: the lower behaviour loss) of a linear "
    "probe of the frozen network, fitted on the labelled train windows, on the labelled validation windows",
}


def contrastive_select(params: Mapping[str, Any]) -> str:
    """How the contrastive grid chooses its weight on the validation windows.

    Parameters
    ----------
    params : mapping
        One dataset's resolved ``neuroformer`` parameters (``model.contrastive_select``, ``target``).

    Returns
    -------
    str
        ``next_token`` (the lowest next-token loss, the default) or ``decoding`` (the highest validation decoding
        score of a linear probe of the frozen pretrained network, fitted on the labelled train windows:
        :func:`validation_decoding`).

    Raises
    ------
    ConfigError
        Another value, or ``decoding`` on a dataset with a grid but no decoding target.
    """
    rule = str(dict(params.get("model", {})).get("contrastive_select", "next_token"))
    if rule not in CONTRASTIVE_SELECT:
        raise ConfigError(
            f"neuroformer model.contrastive_select: {rule!r} is not one of {', '.join(CONTRASTIVE_SELECT)}"
        )
    if rule == "decoding" and len(contrastive_grid(params)) > 1 and not params.get("target"):
        raise ConfigError(
            "neuroformer model.contrastive_select: decoding needs the dataset's decoding target "
            "(neuroformer.datasets.<name>.target); give one or use next_token"
        )
    return rule


def validation_decoding(
    model: Neuroformer,
    counts: xr.Dataset,
    target: Mapping[str, Any],
    source: str = "counts",
    streaming: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """How well a pretrained network's frozen features decode the target on the validation windows.

    A copy of the model gets a behaviour head fitted as a linear probe (:meth:`Neuroformer.fit_behaviour`,
    ``mode="probe"``: ridge or class-balanced logistic regression on every labelled train window, the penalty
    chosen on the validation windows) and decodes every labelled validation window. The test windows are not read.

    Parameters
    ----------
    model : Neuroformer
        A pretrained model (left unchanged).
    counts : xarray.Dataset
        The ``spike_counts`` dataset with the target variable.
    target : mapping
        The decoding target (``source``, ``variable``, ``kind``).
    source : str, default "counts"
        What the counts are called in error messages.
    streaming : mapping, optional
        :meth:`Neuroformer.fit_behaviour`'s ``streaming``.

    Returns
    -------
    dict
        ``loss``: the behaviour loss on the validation windows (what fine-tuning chooses its option by: mean
        squared error of the standardised target, or class-balanced cross-entropy), and ``score``: R2
        (regression) or balanced accuracy (classification) on them.
    """
    from sklearn.metrics import balanced_accuracy_score

    from brainpipe.models.neuroformer import r2_score

    probe = Neuroformer.from_dataset(model.to_dataset(), counts, source=source)
    probe.set_target(counts, target, source)
    probe.fit_behaviour(counts, 1.0, source=source, mode="probe", max_val_windows=None, streaming=streaming)
    pred, tgt, _ = probe.decode_labelled(counts, "validation", source)
    if probe.target_kind == "classification":
        score = float(balanced_accuracy_score(tgt, pred))
    else:
        score = float(r2_score(tgt, pred))
    return {"loss": float(probe.validation_loss_), "score": score}


def _grid_label(weight: float) -> str:
    return f"cw{weight:g}"


def pretrain_checkpoints(checkpoint: str | None, params: Mapping[str, Any]) -> list[str]:
    """The checkpoint files of the pretraining runs (one per contrastive weight of a grid, else the path itself).

    Parameters
    ----------
    checkpoint : str or None
        The stage's checkpoint path.
    params : mapping
        One dataset's resolved ``neuroformer`` parameters.

    Returns
    -------
    list of str
        The files :func:`pretrain_neuroformer` checkpoints to (empty without ``checkpoint``).
    """
    grid = contrastive_grid(params)
    labels = [""] if len(grid) == 1 else [_grid_label(w) for w in grid]
    return [c for c in (run_checkpoint(checkpoint, lab) for lab in labels) if c]


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

    The checkpoint is chosen on the validation windows. With a contrastive grid (:func:`contrastive_grid`: two or
    more weights of the InfoNCE term and a modality to align to), one model is pretrained per weight and the one
    kept is chosen on the validation windows by ``model.contrastive_select`` (:func:`contrastive_select`): the
    lowest next-token loss (ID + dt, without the contrastive term; ``next_token``), or the highest decoding score
    (R2 or balanced accuracy) of a linear probe of the frozen network (:func:`validation_decoding`; ``decoding``:
    the purpose the modality serves). The grid and each weight's validation losses are in ``contrastive_selection_`` (and in
    :func:`pretrained_dataset`). The test windows are not read.

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
    grid = contrastive_grid(params)
    rule = contrastive_select(params)
    stream = dict(params.get("pretrain", {})).get("streaming")
    if len(grid) == 1:
        model = build_neuroformer(params)
        model.fit(
            counts, source=source, checkpoint=checkpoint, fingerprint=fingerprint, log=log, streaming=stream
        )
        model.contrastive_selection_ = None
    else:
        model, losses, dec = None, [], []
        for w in grid:
            p = dict(params, model={**dict(params.get("model", {})), "contrastive_weight": w})
            m = build_neuroformer(p)
            fp = None if fingerprint is None else dict(fingerprint, contrastive_weight=w)
            m.fit(
                counts,
                source=source,
                checkpoint=run_checkpoint(checkpoint, _grid_label(w)),
                fingerprint=fp,
                log=log,
                streaming=stream,
            )
            losses.append(float(m.token_loss(counts, "validation", source)))
            log.info("contrastive weight %g: validation next-token loss %.4f", w, losses[-1])
            if rule == "decoding":
                dec.append(validation_decoding(m, counts, params["target"], source, stream))
                log.info("contrastive weight %g: validation decoding %s", w, dec[-1])
            # lower is better: the next-token loss, or minus the decoding score (ties: the behaviour loss)
            crit = [(-d["score"], d["loss"]) for d in dec] if rule == "decoding" else losses
            if model is None or crit[-1] < min(crit[:-1]):
                model = m
        model.contrastive_selection_ = {"grid": grid, "val_token_loss": losses, "rule": rule}
        if dec:
            model.contrastive_selection_.update(
                val_decoding_loss=[d["loss"] for d in dec], val_decoding_score=[d["score"] for d in dec]
            )
        log.info(
            "contrastive weight %g chosen on the validation windows (%s)", model.contrastive_weight, rule
        )
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
        epoch and validation loss, the seconds, device and precision of the training, the contrastive weight
        and, after a grid, ``contrastive_grid`` with ``contrastive_grid_val_token_loss`` (JSON lists),
        ``contrastive_select`` and ``contrastive_selected_by`` (the rule), and with ``decoding``
        ``contrastive_grid_val_decoding_loss`` and ``contrastive_grid_val_decoding_score``.
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
        # the weight that acted: none without a modality to align to
        contrastive_weight=float(model.contrastive_weight) if model.tokenizer_.mod_layout_ else 0.0,
    )
    sel = getattr(model, "contrastive_selection_", None)
    if sel:
        ds.attrs.update(
            contrastive_grid=json.dumps([float(w) for w in sel["grid"]]),
            contrastive_grid_val_token_loss=json.dumps([round(float(v), 6) for v in sel["val_token_loss"]]),
            contrastive_select=str(sel.get("rule", "next_token")),
            contrastive_selected_by=SELECTED_BY[str(sel.get("rule", "next_token"))],
        )
        if "val_decoding_loss" in sel:
            ds.attrs.update(
                contrastive_grid_val_decoding_loss=json.dumps(
                    [round(float(v), 6) for v in sel["val_decoding_loss"]]
                ),
                contrastive_grid_val_decoding_score=json.dumps(
                    [round(float(v), 6) for v in sel["val_decoding_score"]]
                ),
            )
    return ds


from brainpipe.training.neuroformer_finetune import (  # noqa: E402  (fine-tuning, in its own module)
    finetune_neuroformer,
    parse_option,
    run_labels,
)
