"""The one torch training loop every deep model uses (BrainMAE, Neuroformer, ...).

``train(model, train_data, loss_fn, config, val_data=...)`` runs mini-batch AdamW with optional warm-up and
gradient clipping, on the device chosen at run time (CUDA when present, with bf16 autocast; else CPU in fp32),
with validation-based early stopping and automatic checkpoint/resume:

* a checkpoint is written every ``checkpoint_every_s`` seconds, at every epoch end, on SIGTERM (then
  :class:`~brainpipe.training.checkpoint.Preempted` is raised) and when training finishes;
* a run started with the same ``checkpoint`` path and fingerprint resumes from it: model, optimizer, scheduler,
  RNG states, position inside the epoch, history and early-stopping state, so on the CPU a resumed run ends with the
  same weights, bit for bit, as an uninterrupted one (a finished checkpoint returns at once with the final model);
* batches are drawn by a permutation seeded from ``(seed, epoch)``; randomness inside ``loss_fn`` must use torch's
  global RNG (seeded here and saved in checkpoints); validation runs under a fixed seed of its own so its random
  masks are the same every epoch and do not disturb training's RNG stream;
* the initial weights are the caller's: seed (``torch.manual_seed``) before building the model.

Data-parallel: when a ``torch.distributed`` process group is initialised (see
:mod:`brainpipe.training.distributed`), every rank trains on its share of each global batch of ``batch_size``
examples (the same permutation on every rank), gradients are summed over ranks (weighted by each rank's share) and
the loss history is the global batch's, so the run follows one process's run on the same global batches up to float
rounding; randomness inside ``loss_fn`` (masks, dropout) comes from a per-rank stream (rank 0's is the
single-process one), so results are deterministic for a given world size. Rank 0 writes the checkpoints (with
every rank's RNG state) and computes the validation loss, which every rank receives; every rank restores from a
checkpoint. A checkpoint of an unfinished run written with another world size is refused in one line.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from brainpipe._docs import fill_doc
from brainpipe.errors import BrainpipeError, ConfigError, InputError
from brainpipe.training._batches import epoch_batches, fetch, source
from brainpipe.training.checkpoint import Checkpointer, Preempted, fingerprint_of
from brainpipe.training.device import autocast, resolve_device, resolve_precision, to_device
from brainpipe.training.distributed import current as current_comm

log_ = logging.getLogger("brainpipe.training")
# settings that do not change what is computed
_RUNTIME_ONLY = ("device", "progress", "checkpoint_every_s", "num_workers")


@fill_doc
@dataclass
class TrainConfig:
    """Hyperparameters of :func:`train` (all have defaults; ``from_dict`` rejects unknown keys in one line).

    The defaults are in the signature; BrainMAE and Neuroformer take the same settings with their own defaults.

    Parameters
    ----------
    %(train_config)s
    """

    max_epochs: int = 50
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    patience: int | None = 5
    min_delta: float = 0.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    checkpoint_every_s: float = 60.0
    progress: bool = True
    num_workers: int = 0

    @classmethod
    @fill_doc
    def from_dict(cls, d: Mapping[str, Any] | None, source: str = "training") -> TrainConfig:
        """Build a checked configuration from a dict of settings.

        Parameters
        ----------
        d : mapping or None
            Settings by name; missing ones take their defaults.
        %(source)s

        Returns
        -------
        TrainConfig
            The configuration.

        Raises
        ------
        brainpipe.errors.ConfigError
            An unknown key or a value out of range (one line naming ``source``).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d or {}) - names)
        if bad:
            raise ConfigError(
                f"{source}: unknown training key '{bad[0]}' (allowed: {', '.join(sorted(names))})"
            )
        cfg = cls(**dict(d or {}))
        cfg.check(source)
        return cfg

    @fill_doc
    def check(self, source: str = "training") -> None:
        """Check that every setting is in range.

        Parameters
        ----------
        %(source)s

        Raises
        ------
        brainpipe.errors.ConfigError
            A setting out of range (one line naming ``source``).
        """
        if self.max_epochs < 1 or self.batch_size < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise ConfigError(f"{source}: max_epochs, batch_size and max_steps must be >= 1")
        if not (self.lr > 0) or self.weight_decay < 0 or self.warmup_steps < 0:
            raise ConfigError(f"{source}: lr must be > 0, weight_decay and warmup_steps >= 0")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"{source}: patience must be >= 1 or null (no early stopping)")
        if (
            isinstance(self.num_workers, bool)
            or not isinstance(self.num_workers, int)
            or self.num_workers < 0
        ):
            raise ConfigError(
                f"{source}: num_workers must be an integer >= 0 (0: batches read in the training process)"
            )

    def computed(self) -> dict[str, Any]:
        """The settings that change the result (the checkpoint fingerprint uses these).

        Returns
        -------
        dict
            Every setting but the runtime-only ones (``device``, ``progress``, ``checkpoint_every_s``,
            ``num_workers``).
        """
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _RUNTIME_ONLY}


@dataclass
class TrainResult:
    """What :func:`train` reports about a run.

    Parameters
    ----------
    history : list of dict
        One row per epoch: ``epoch``, ``step``, ``train_loss``, ``val_loss`` (with validation) and the extra
        entries ``loss_fn`` returned.
    best_epoch : int
        The epoch of the best validation loss (-1 without validation).
    best_val : float
        The best validation loss (NaN without validation).
    stopped_early : bool
        Whether early stopping ended the run.
    resumed_from_step : int or None
        The step the run resumed from (None: started afresh).
    steps : int
        Optimizer steps taken in all.
    epochs_run : int
        Epochs completed.
    device : str
        The device trained on.
    precision : str
        ``"fp32"`` or ``"bf16"``.
    seconds : float
        Wall time of this call.
    world_size : int
        Training processes (1: not distributed).
    backend : str
        The ``torch.distributed`` backend (``"gloo"``, ``"nccl"``; ``"none"`` when not distributed).
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = math.nan
    stopped_early: bool = False
    resumed_from_step: int | None = None
    steps: int = 0
    epochs_run: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    seconds: float = 0.0
    world_size: int = 1
    backend: str = "none"


def _loss_of(out) -> tuple[torch.Tensor, dict[str, float]]:
    if isinstance(out, torch.Tensor):
        return out, {}
    if isinstance(out, Mapping) and "loss" in out:
        extra = {
            k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
            for k, v in out.items()
            if k != "loss"
        }
        return out["loss"], extra
    raise BrainpipeError("loss_fn must return a scalar tensor or a dict with a 'loss' entry")


def _evaluate(model, val, collate, loss_fn, val_fn, cfg, dev, prec) -> float:
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(cfg.seed + 7919)
            with torch.no_grad(), autocast(dev, prec):
                if val_fn is not None:
                    return float(val_fn(model))
                total, count = 0.0, 0
                n = len(val)
                for start in range(0, n, cfg.batch_size):
                    idx = torch.arange(start, min(start + cfg.batch_size, n))
                    loss, _ = _loss_of(loss_fn(model, to_device(fetch(val, collate, idx), dev)))
                    total += float(loss.detach().float()) * len(idx)
                    count += len(idx)
                return total / max(count, 1)
    finally:
        model.train(was_training)


def _rng_state(dev: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if dev.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(dev)
    return state


def _set_rng_state(state: Mapping[str, Any], dev: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if dev.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], dev)


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@fill_doc
def train(
    model: nn.Module,
    train_data,
    loss_fn: Callable[[nn.Module, Any], Any],
    config: TrainConfig | Mapping[str, Any] | None = None,
    val_data=None,
    val_fn: Callable[[nn.Module], float] | None = None,
    checkpoint=None,
    fingerprint: Mapping[str, Any] | None = None,
    parameters: Iterable[nn.Parameter] | None = None,
    collate_fn: Callable | None = None,
    log: logging.Logger | None = None,
) -> TrainResult:
    """Train ``model`` in place with mini-batch AdamW; see the module docstring for the checkpoints and seeds.

    On return the model holds its best-validation weights (the last ones without validation) and stays on the
    training device.

    Parameters
    ----------
    model : torch.nn.Module
        The model, with its initial weights (seed before building it).
    train_data : torch.Tensor, tuple of torch.Tensor or torch.utils.data.Dataset
        The training examples: tensors with equal first dimension, or a map-style dataset.
    loss_fn : callable
        ``loss_fn(model, batch)`` -> a scalar tensor, or a dict with a ``"loss"`` entry (its other entries are
        logged in the history).
    config : TrainConfig or mapping, optional
        The hyperparameters (None: the defaults).
    val_data : torch.Tensor, tuple of torch.Tensor or torch.utils.data.Dataset, optional
        Validation examples, scored with ``loss_fn`` at every epoch end (early stopping, best weights).
    val_fn : callable, optional
        ``val_fn(model)`` -> the validation loss; used instead of ``val_data`` when given.
    %(checkpoint)s
    %(fingerprint)s
    parameters : iterable of torch.nn.Parameter, optional
        The parameters to train (default: every parameter of ``model`` that requires a gradient).
    collate_fn : callable, optional
        Builds a batch from a dataset's examples (default: torch's ``default_collate``).
    %(log)s

    Returns
    -------
    TrainResult
        The history, best epoch and validation loss, steps, device and precision of the run.

    Raises
    ------
    brainpipe.training.Preempted
        SIGTERM arrived: a checkpoint was written and the same call resumes from it.
    brainpipe.errors.InputError
        The training data is empty or not tensors/a dataset.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    cfg.check()
    logger = log or log_
    t0 = time.perf_counter()
    dev = resolve_device(cfg.device)
    comm = current_comm()
    if comm is not None and dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", comm.local_rank)
    prec = resolve_precision(cfg.precision, dev)
    src, collate = source(train_data, collate_fn)
    n = len(src)
    if n == 0:
        raise InputError(
            "training data is empty: no examples to train on (check the split and segment length)"
        )
    val = None
    val_collate = None
    if val_data is not None and val_fn is None:
        val, val_collate = source(val_data, collate_fn)
        if len(val) == 0:
            val = None
    model.to(dev)
    if comm is not None:
        comm.broadcast_module(model)
    params = (
        list(parameters) if parameters is not None else [p for p in model.parameters() if p.requires_grad]
    )
    if not params:
        raise BrainpipeError("training: the model has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = cfg.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    ckpt = Checkpointer(
        checkpoint,
        fingerprint_of({"run": fingerprint or {}, "config": cfg.computed(), "n_train": n}),
        every_s=cfg.checkpoint_every_s,
    )
    bs = cfg.batch_size
    n_batches = math.ceil(n / bs)
    res = TrainResult(device=str(dev), precision=prec)
    if comm is not None:
        res.world_size, res.backend = comm.world, comm.backend
    st = {
        "epoch": 0,
        "batch": 0,
        "step": 0,
        "loss_sum": 0.0,
        "loss_n": 0,
        "extra": {},
        "bad": 0,
        "best": None,
    }
    best_state: dict[str, torch.Tensor] | None = None
    torch.manual_seed(cfg.seed if comm is None else cfg.seed + 7_368_787 * comm.rank)
    saved = ckpt.load()
    if saved is not None:
        world = 1 if comm is None else comm.world
        if int(saved.get("world_size", 1)) != world and not saved.get("finished"):
            raise InputError(
                f"{ckpt.path}: checkpoint of a run with {int(saved.get('world_size', 1))} training process(es), "
                f"this run has {world}: set training.distributed back to {int(saved.get('world_size', 1))} "
                "process(es) to resume it, or delete the file to start afresh"
            )
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        if comm is None:
            _set_rng_state(saved["rng"], dev)
        elif int(saved.get("world_size", 1)) == comm.world:  # (a finished run of another world size: no RNG)
            _set_rng_state(saved.get("rng_ranks", [saved["rng"]])[comm.rank], dev)
        st.update(saved["loop"])
        res.history = list(saved["history"])
        best_state = saved.get("best_model")
        res.resumed_from_step = st["step"]
        logger.info("resumed at epoch %d, batch %d (step %d)", st["epoch"], st["batch"], st["step"])
        if saved.get("finished"):
            return _finish(model, best_state, res, st, t0, logger)

    def state() -> dict[str, Any]:
        out = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": _rng_state(dev),
            "loop": dict(st),
            "history": res.history,
            "best_model": best_state,
            "finished": False,
        }
        if comm is not None:  # collective: every rank calls it at the same step
            out["rng_ranks"] = comm.gather_rng(out["rng"])
            out["world_size"] = comm.world
            out["backend"] = comm.backend
        return out

    def save_all(stop: bool, finished: bool = False) -> None:
        """Distributed: every rank's RNG to rank 0, rank 0 writes, all wait; then Preempted if asked to stop."""
        if ckpt.enabled:
            s = state()
            s["finished"] = finished
            if comm.is_main:
                ckpt.save(s)
            comm.barrier()
        if stop:
            raise Preempted(
                f"stopped by SIGTERM; checkpoint written to {ckpt.path}: rerun the same command to resume"
                if ckpt.enabled
                else "stopped by SIGTERM (no checkpoint configured: a rerun starts afresh)"
            )

    bar = None
    if cfg.progress and sys.stderr.isatty() and (comm is None or comm.is_main):
        from tqdm.auto import tqdm

        bar = tqdm(
            total=cfg.max_epochs * n_batches,
            initial=st["epoch"] * n_batches + st["batch"],
            desc="train",
            leave=False,
            dynamic_ncols=True,
        )
    model.train()
    done = cfg.max_steps is not None and st["step"] >= cfg.max_steps
    try:
        with ckpt.guard():
            while st["epoch"] < cfg.max_epochs and not done:
                g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + st["epoch"])
                # a streamed dataset orders its examples by chunk (brainpipe.training.streaming); else a permutation
                perm = src.epoch_order(g) if hasattr(src, "epoch_order") else torch.randperm(n, generator=g)
                batches = epoch_batches(
                    src,
                    collate,
                    perm,
                    bs,
                    st["batch"],
                    n_batches,
                    cfg.num_workers,
                    shard=None if comm is None else comm.shard,
                    pin_memory=dev.type == "cuda",
                )
                for b, idx, local, weight, fetched in batches:
                    if comm is not None:
                        done = _dist_step(
                            comm,
                            fetched,
                            len(local),
                            weight,
                            model,
                            loss_fn,
                            opt,
                            sched,
                            params,
                            cfg,
                            dev,
                            prec,
                            st,
                            ckpt,
                            bar,
                            b,
                            save_all,
                        )
                        if done:
                            break
                        continue
                    batch = to_device(fetched, dev)
                    with autocast(dev, prec):
                        loss, extra = _loss_of(loss_fn(model, batch))
                    if not torch.isfinite(loss.detach()):
                        raise BrainpipeError(
                            f"training diverged: the loss is {float(loss)} at step {st['step']} "
                            f"(epoch {st['epoch']}); lower lr (now {cfg.lr}) or check the inputs for extreme values"
                        )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    _apply_step(params, opt, sched, cfg, st, b)
                    st["loss_sum"] += float(loss.detach().float()) * len(idx)
                    st["loss_n"] += len(idx)
                    for k, v in extra.items():
                        st["extra"][k] = st["extra"].get(k, 0.0) + v * len(idx)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)
                    if cfg.max_steps is not None and st["step"] >= cfg.max_steps:
                        done = True
                        break
                    ckpt.maybe_save(state)
                row = {
                    "epoch": st["epoch"],
                    "step": st["step"],
                    "train_loss": st["loss_sum"] / max(st["loss_n"], 1),
                }
                row.update({k: v / max(st["loss_n"], 1) for k, v in st["extra"].items()})
                if val is not None or val_fn is not None:
                    if comm is None:
                        v = _evaluate(model, val, val_collate, loss_fn, val_fn, cfg, dev, prec)
                    else:  # rank 0 scores, every rank gets its figure (the same early-stopping decisions)
                        v = comm.broadcast_float(
                            _evaluate(model, val, val_collate, loss_fn, val_fn, cfg, dev, prec)
                            if comm.is_main
                            else 0.0
                        )
                    row["val_loss"] = v
                    if st["best"] is None or v < st["best"] - cfg.min_delta:
                        st["best"], st["bad"] = v, 0
                        res.best_epoch = st["epoch"]
                        best_state = _clone_state(model)
                    else:
                        st["bad"] += 1
                res.history.append(row)
                logger.info(
                    "epoch %d step %d: train %.5g%s",
                    st["epoch"],
                    st["step"],
                    row["train_loss"],
                    f", validation {row['val_loss']:.5g}" if "val_loss" in row else "",
                )
                st.update(epoch=st["epoch"] + 1, batch=0, loss_sum=0.0, loss_n=0, extra={})
                if cfg.patience is not None and st["bad"] >= cfg.patience:
                    st["stopped_early"] = True
                    logger.info("early stop: no validation improvement in %d epochs", cfg.patience)
                    break
                if comm is None:
                    ckpt.maybe_save(state, force=True)
                else:
                    save_all(stop=comm.all_sum([float(ckpt.stop_requested)])[0] > 0)
            if comm is None:
                final = state()
                final["finished"] = True
                ckpt.save(final)
            else:
                save_all(stop=False, finished=True)
    finally:
        if bar is not None:
            bar.close()
    return _finish(model, best_state, res, st, t0, logger)


def _dist_step(
    comm,
    local_batch,
    n_local,
    weight,
    model,
    loss_fn,
    opt,
    sched,
    params,
    cfg,
    dev,
    prec,
    st,
    ckpt,
    bar,
    b,
    save_all,
) -> bool:
    """One data-parallel step: this rank's part of the global batch (and its weight); returns True when
    ``max_steps`` is reached."""
    batch = to_device(local_batch, dev)
    with autocast(dev, prec):
        loss, extra = _loss_of(loss_fn(model, batch))
    keys = sorted(extra)
    value = float(loss.detach().float())
    n_eff = n_local if weight > 0 else 0
    finite = math.isfinite(value)
    sums = comm.all_sum(
        [
            value * n_eff if finite else 0.0,
            n_eff,
            0.0 if finite else 1.0,
            float(ckpt.stop_requested),
            float(comm.is_main and ckpt.due()),
        ]
        + [extra[k] * n_eff for k in keys]
    )
    if sums[2] > 0:
        raise BrainpipeError(
            f"training diverged: the loss is not finite on {int(sums[2])} of {comm.world} process(es) at step "
            f"{st['step']} (epoch {st['epoch']}); lower lr (now {cfg.lr}) or check the inputs for extreme values"
        )
    opt.zero_grad(set_to_none=True)
    (loss * weight).backward()
    comm.reduce_grads(params)
    _apply_step(params, opt, sched, cfg, st, b)
    st["loss_sum"] += sums[0]
    st["loss_n"] += int(round(sums[1]))
    for k, v in zip(keys, sums[5:], strict=True):
        st["extra"][k] = st["extra"].get(k, 0.0) + v
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{sums[0] / max(sums[1], 1):.4g}", refresh=False)
    if cfg.max_steps is not None and st["step"] >= cfg.max_steps:
        return True
    if sums[3] > 0 or sums[4] > 0:
        save_all(stop=sums[3] > 0)
    return False


def _finish(model, best_state, res: TrainResult, st: dict, t0: float, logger) -> TrainResult:
    if best_state is not None:
        model.load_state_dict(best_state)
    vals = [(r["val_loss"], r["epoch"]) for r in res.history if "val_loss" in r]
    if vals:
        res.best_val, res.best_epoch = min(vals)
    res.stopped_early = bool(st.get("stopped_early", False))
    res.steps = st["step"]
    res.epochs_run = st["epoch"]
    res.seconds = time.perf_counter() - t0
    logger.info(
        "training done: %d step(s), %d epoch(s), %.1f s on %s (%s)",
        res.steps,
        res.epochs_run,
        res.seconds,
        res.device,
        res.precision,
    )
    return res


def _apply_step(params, opt, sched, cfg, st: dict, b: int) -> None:
    """Clip the gradients (``cfg.grad_clip``), step the optimizer and the schedule, count the step and batch."""
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    opt.step()
    sched.step()
    st["step"] += 1
    st["batch"] = b + 1
