"""Neuroformer fine-tuning runs (re-exported by :mod:`brainpipe.training.neuroformer`): behaviour decoding at
several label fractions from the pretrained weights and from scratch, each start choosing its fine-tuning option
(whole network, linear probe, probe then network; learning-rate factors) on the validation windows, over several
labelled subsets."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.errors import ConfigError
from brainpipe.models.neuroformer import FINETUNE_MODES, READOUTS, Neuroformer

__all__ = ["finetune_neuroformer", "parse_option", "run_labels"]

log_ = logging.getLogger("brainpipe.training.neuroformer")


def _inits(scratch: bool | Sequence[float], fraction: float) -> list[str]:
    """The runs at one fraction: pretrained, and scratch when ``scratch`` is True or lists that fraction."""
    if isinstance(scratch, bool):
        at = scratch
    else:
        at = any(abs(float(f) - fraction) < 1e-12 for f in scratch)
    return ["pretrained"] + (["scratch"] if at else [])


def parse_option(option: str) -> tuple[str, float]:
    """A fine-tuning option ``<mode>[/<lr factor>]`` as (mode, learning-rate factor).

    Parameters
    ----------
    option : str
        ``full``, ``probe`` or ``lpft`` (:meth:`~brainpipe.models.neuroformer.Neuroformer.fit_behaviour`'s
        ``mode``), optionally with a factor on ``finetune.lr``, e.g. ``full/0.3`` or ``lpft/0.1``.

    Returns
    -------
    tuple
        ``(mode, factor)``.

    Raises
    ------
    ConfigError
        Another form (one line naming the allowed ones).
    """
    mode, _, factor = str(option).partition("/")
    try:
        f = float(factor) if factor else 1.0
    except ValueError:
        f = -1.0
    if mode not in FINETUNE_MODES or not f > 0:
        raise ConfigError(
            f"neuroformer finetune.options: {option!r} is not <mode>[/<lr factor>] with mode in "
            f"{', '.join(FINETUNE_MODES)} and a factor > 0 (e.g. full, probe, lpft/0.1)"
        )
    return mode, f


def _n_draws(fraction: float, label_draws: int, draw_fractions: Sequence[float] | None) -> int:
    if fraction >= 1:
        return 1
    if draw_fractions is not None and not any(abs(float(f) - fraction) < 1e-12 for f in draw_fractions):
        return 1
    return max(1, int(label_draws))


def _run_label(init: str, fraction: float, option: str | None = None, draw: int = 0) -> str:
    base = f"{init}_{fraction * 100:g}pct"
    return base if option is None else f"{base}_{option.replace('/', 'x')}_d{draw}"


def _runs(
    fractions: Sequence[float],
    scratch: bool | Sequence[float],
    options: Sequence[str],
    label_draws: int,
    draw_fractions: Sequence[float] | None,
) -> list[tuple[str, str, float, str, int]]:
    """(label, init, fraction, option, draw) of every fine-tuning run, in order."""
    single = len(options) == 1
    out = []
    for frac in sorted(float(f) for f in fractions):
        nd = _n_draws(frac, label_draws, draw_fractions)
        for init in _inits(scratch, frac):
            for d in range(nd):
                for opt in options:
                    lab = _run_label(init, frac) if single and nd == 1 else _run_label(init, frac, opt, d)
                    out.append((lab, init, frac, str(opt), d))
    return out


def finetune_neuroformer(
    counts: xr.Dataset,
    pretrained: xr.Dataset,
    target: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    fractions: Sequence[float] = (0.01, 0.1, 1.0),
    scratch: bool | Sequence[float] = True,
    max_val_windows: int | None = 512,
    min_epoch_windows: int = 1024,
    max_epoch_windows: int | None = None,
    readout: str | None = None,
    source: str = "counts",
    pretrained_source: str = "pretrained",
    checkpoint: str | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    log: logging.Logger | None = None,
    options: Sequence[str] = ("full",),
    label_draws: int = 1,
    draw_fractions: Sequence[float] | None = None,
    streaming: Mapping[str, Any] | None = None,
) -> tuple[xr.Dataset, Neuroformer]:
    """Fine-tune a pretrained Neuroformer to decode behaviour, at fractions of the labelled train windows.

    At each fraction the same network is also trained from scratch on the same labels (``scratch``). Both starts
    get the same menu of fine-tuning ``options`` (:func:`parse_option`: the whole network, a linear probe of the
    frozen network, or the probe then the whole network, each with a factor on the learning rate), train under
    one and the same ``config`` (the same early stopping on the labelled validation windows: ``patience`` epochs
    without improvement, ``min_delta``; the same ``max_epochs`` and ``max_steps``), and each start keeps, per
    fraction, the option with the lowest validation loss (the behaviour loss on the labelled validation windows,
    averaged over the label draws). With ``label_draws`` > 1 (at ``draw_fractions``, default every fraction
    below 1), each start and option is trained on that many different labelled subsets (:func:`label_subset`'s
    shifted grids), so that one lucky or unlucky draw does not decide; the scores are averaged over the draws.
    Each run picks its checkpoint on the validation windows and predicts the labelled validation and test
    windows once; scoring is left to :func:`brainpipe.evaluate.neuroformer.decoding_metrics`.

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
    max_epoch_windows : int, optional
        Most windows per epoch (a larger labelled set is sampled anew each epoch), so that every fraction is
        validated and early-stopped at the same interval (None: one full pass per epoch).
    readout : {"mean", "last", "mean_past"}, optional
        Features of the behaviour head (:class:`~brainpipe.models.neuroformer.Neuroformer`'s ``readout``; None:
        the pretrained model's).
    source : str, default "counts"
        What the counts are called in error messages.
    pretrained_source : str, default "pretrained"
        What the pretrained fit is called in error messages.
    checkpoint : str, optional
        Each run checkpoints to :func:`run_checkpoint` of it and its label (left for the caller to remove).
    fingerprint : mapping, optional
        What identifies the runs; each adds its ``run`` label.
    log : logging.Logger, optional
        Where progress is logged (this module's logger when None).
    options : sequence of str, default ("full",)
        The fine-tuning options both starts choose from on validation (:func:`parse_option`).
    label_draws : int, default 1
        Labelled subsets drawn per fraction below 1 (each start and option trained on each).
    draw_fractions : sequence of float, optional
        The fractions that get ``label_draws`` draws (None: every fraction below 1; the others get one).
    streaming : mapping, optional
        Fine-tune from windows streamed through a temporary store (``neuroformer.finetune.streaming``;
        :meth:`Neuroformer.fit_behaviour`); the validation and test windows are always decoded a chunk at a time.

    Returns
    -------
    runs : xarray.Dataset
        A ``model_fit``: the weights of the chosen pretrained run with the most labels (the decoder to use), every
        run's predictions ``prediction(run, window)`` with ``target(window)``, ``window_split``, ``window_time``,
        ``window_start_bin``, ``run_n_labelled``, ``run_best_val_loss``, ``run_val_loss`` (the loss the option is
        chosen on), ``run_chosen``, ``run_epochs``, ``run_steps``, ``run_best_epoch``, ``run_stopped_early``;
        coordinates ``run``, ``run_init``, ``run_fraction``, ``run_option``, ``run_draw``; the target, the options
        and the label draws in the attrs.
    decoder : Neuroformer
        That decoder, fitted.

    Examples
    --------
    >>> from brainpipe.data import read
    >>> counts, pre = read("counts.nc", "spike_counts"), read("pretrained.nc", "model_fit")  # doctest: +SKIP
    >>> target = {"source": "behaviour", "variable": "speed"}
    >>> runs, decoder = finetune_neuroformer(counts, pre, target, fractions=[0.1, 1.0])  # doctest: +SKIP
    >>> list(runs["run"].values)  # doctest: +SKIP
    ['pretrained_10pct', 'scratch_10pct', 'pretrained_100pct', 'scratch_100pct']
    """
    from brainpipe.training.neuroformer import run_checkpoint

    log = log or log_
    if readout is not None and readout not in READOUTS:
        raise ConfigError(
            f"neuroformer model.readout: {readout!r} is not one of {', '.join(READOUTS)} (or null: the model's)"
        )
    options = [str(o) for o in options]
    if not options or len(set(options)) != len(options):
        raise ConfigError(
            f"neuroformer finetune.options: {options} must list at least one option, each once (e.g. [full, probe])"
        )
    parsed = {o: parse_option(o) for o in options}
    if int(label_draws) < 1:
        raise ConfigError(f"neuroformer finetune.label_draws: {label_draws} must be >= 1")
    from brainpipe.training import TrainConfig

    base_lr = float(dict(config or {}).get("lr", TrainConfig().lr))
    plan = _runs(fractions, scratch, options, int(label_draws), draw_fractions)
    top = max(float(f) for f in fractions)
    runs, preds, hist_best, val_loss, candidates = [], [], [], [], {}
    win_ref = None
    for label, init, frac, opt, draw in plan:
        mode, factor = parsed[opt]
        nd = _n_draws(frac, int(label_draws), draw_fractions)
        model = Neuroformer.from_dataset(pretrained, counts, source=pretrained_source)
        model.finetune = dict(config or {}, lr=base_lr * factor)  # the same stopping rule for both starts
        if readout is not None:
            model.readout = str(readout)
        model.set_target(counts, target, source)
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
            max_epoch_windows=None if max_epoch_windows is None else int(max_epoch_windows),
            mode=mode,
            label_draw=draw,
            label_draws=nd,
            streaming=streaming,
        )
        pred, tgt, win = model.decode_labelled(counts, ("validation", "test"), source)
        win_ref = (win, tgt.astype(np.float64)) if win_ref is None else win_ref
        fres = model.finetune_result_
        runs.append(
            (label, init, frac, model.n_labelled_, len(model.finetune_history_), int(fres.steps))
            + (int(fres.best_epoch), bool(fres.stopped_early), opt, draw)
        )
        preds.append(pred.astype(np.float64) if model.target_kind == "classification" else pred)
        hist = model.finetune_history_
        hist_best.append(min((h.get("val_loss", np.nan) for h in hist), default=float(fres.best_val)))
        val_loss.append(float(model.validation_loss_))
        log.info(
            "%s: %d labelled windows, %d epochs, validation loss %.4f (%d validation windows)",
            label,
            model.n_labelled_,
            len(hist),
            val_loss[-1],
            model.n_validation_,
        )
        if init == "pretrained" and frac == top and draw == 0:
            candidates[opt] = model
    # per start and fraction: the option with the lowest validation loss, averaged over the label draws
    chosen = np.zeros(len(runs), np.int8)
    selection = {}
    for init, frac in dict.fromkeys((r[1], r[2]) for r in runs):
        mean = {
            o: float(
                np.mean(
                    [v for r, v in zip(runs, val_loss, strict=True) if r[1:3] == (init, frac) and r[8] == o]
                )
            )
            for o in options
        }
        best = min(options, key=lambda o: mean[o])
        selection[_run_label(init, frac)] = {"chosen": best, "val_loss": mean}
        for i, r in enumerate(runs):
            chosen[i] = chosen[i] or (r[1:3] == (init, frac) and r[8] == best)
        log.info("%s: option %s chosen on the validation windows (%s)", _run_label(init, frac), best, mean)
    keep_weights = candidates[selection[_run_label("pretrained", top)]["chosen"]]
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
        win["split"].astype(np.int8),
        {"long_name": "split of the window (1 validation, 2 test)"},
    )
    ds["window_time"] = (
        "window",
        win["t_start"].astype(np.float64),
        {"units": "s", "long_name": "current window start"},
    )
    ds["window_start_bin"] = ("window", win["start"].astype(np.int64))
    ds["run_n_labelled"] = ("run", np.array([r[3] for r in runs], np.int64))
    ds["run_best_val_loss"] = ("run", np.array(hist_best, np.float64))
    ds["run_val_loss"] = (
        "run",
        np.array(val_loss, np.float64),
        {
            "long_name": "behaviour loss on the labelled validation windows (the option is chosen on its mean over draws)"
        },
    )
    ds["run_chosen"] = (
        "run",
        chosen,
        {"long_name": "1 for the runs of the option chosen on validation for their start and fraction"},
    )
    ds["run_epochs"] = ("run", np.array([r[4] for r in runs], np.int64), {"long_name": "epochs trained"})
    ds["run_steps"] = (
        "run",
        np.array([r[5] for r in runs], np.int64),
        {"long_name": "optimizer steps taken"},
    )
    ds["run_best_epoch"] = (
        "run",
        np.array([r[6] for r in runs], np.int64),
        {"long_name": "epoch of the best validation loss (the checkpoint kept; -1: a probe, no epochs)"},
    )
    ds["run_stopped_early"] = (
        "run",
        np.array([r[7] for r in runs], np.int8),
        {
            "long_name": "1 when early stopping on the validation loss ended the run, 0 when max_epochs or max_steps did"
        },
    )
    ds = ds.assign_coords(
        run=np.array([r[0] for r in runs]),
        run_init=("run", np.array([r[1] for r in runs])),
        run_fraction=("run", np.array([r[2] for r in runs], np.float64)),
        run_option=("run", np.array([r[8] for r in runs])),
        run_draw=("run", np.array([r[9] for r in runs], np.int64)),
    )
    ds.attrs.update(
        target_kind=str(target.get("kind", "regression")),
        target_variable=str(target["variable"]),
        target_source=str(target["source"]),
        finetune_options=json.dumps(options),
        label_draws=int(label_draws),
        finetune_selection=json.dumps(selection, sort_keys=True),
        finetune_selected_by="lowest behaviour loss on the labelled validation windows, mean over label draws",
    )
    return ds, keep_weights


def run_labels(
    fractions: Sequence[float],
    scratch: bool | Sequence[float] = True,
    options: Sequence[str] = ("full",),
    label_draws: int = 1,
    draw_fractions: Sequence[float] | None = None,
) -> list[str]:
    """The labels of the fine-tuning runs, in their order.

    Parameters
    ----------
    fractions : sequence of float
        Fractions of the labelled train windows.
    scratch : bool or sequence of float, default True
        Whether from-scratch runs are made too (a sequence: at those fractions only).
    options : sequence of str, default ("full",)
        The fine-tuning options (:func:`finetune_neuroformer`).
    label_draws : int, default 1
        Labelled subsets per fraction below 1.
    draw_fractions : sequence of float, optional
        The fractions with ``label_draws`` draws (None: every fraction below 1).

    Returns
    -------
    list of str
        ``<init>_<percent>pct`` per run (one option, one draw), else ``<init>_<percent>pct_<option>_d<draw>``.
    """
    return [r[0] for r in _runs(fractions, scratch, list(options), int(label_draws), draw_fractions)]
