"""Shared by the Neuroformer stages: the model from stage params, the training configs, the run fingerprint.

Stage params (one dataset's resolved ``neuroformer`` config, see config/README.md): ``tokenizer`` (SpikeTokenizer
fields), ``model`` (network size, contrastive term), ``pretrain`` and ``finetune`` (TrainConfig fields; finetune
also ``fractions``, ``scratch``), ``modalities`` (name -> {source, variables}, the ones this dataset uses),
``target`` ({source, variable, kind} or null), ``evaluate``, ``bars``, ``seed``, ``dataset``, and from the rule
``checkpoint`` (a path for the training loop's resumable checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from brainpipe.errors import ConfigError
from brainpipe.models.neuroformer import MODEL_KEYS, Neuroformer, SpikeTokenizer

TOKENIZER_KEYS = ("dt_s", "window_s", "past_window_s", "stride_s", "block_size", "past_block_size")
FINETUNE_EXTRA = ("fractions", "scratch", "max_val_windows", "min_epoch_windows")
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


def _pick(d: Mapping, keys, where: str) -> dict:
    unknown = sorted(set(d) - set(keys))
    if unknown:
        raise ConfigError(
            f"neuroformer {where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(keys)})"
        )
    return {k: d[k] for k in keys if k in d}


def train_config(params: Mapping, which: str) -> dict:
    """TrainConfig fields for ``which`` ("pretrain" or "finetune"), seeded by the run's seed."""
    d = {k: v for k, v in dict(params.get(which, {})).items() if k not in FINETUNE_EXTRA}
    cfg = _pick(d, TRAIN_KEYS, which)
    cfg["seed"] = int(params.get("seed", 0))
    if "checkpoint_every_s" not in cfg:
        from brainpipe.training import checkpoint_every_s

        cfg["checkpoint_every_s"] = checkpoint_every_s()
    return cfg


def build_model(params: Mapping, with_target: bool = False) -> Neuroformer:
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


def fingerprint(stage: str, params: Mapping, inputs) -> dict:
    """Identifies a training run: stage params (without the checkpoint path), input sha256s, brainpipe version."""
    from brainpipe.training import stage_fingerprint

    return stage_fingerprint(stage, {k: v for k, v in params.items() if k != "checkpoint"}, list(inputs))


def checkpoint_path(params: Mapping, suffix: str = "") -> str | None:
    ck = params.get("checkpoint")
    if not ck:
        return None
    p = Path(str(ck))
    if suffix:
        p = p.with_name(f"{p.stem}.{suffix}{p.suffix}")
    p.parent.mkdir(parents=True, exist_ok=True)
    return str(p)
