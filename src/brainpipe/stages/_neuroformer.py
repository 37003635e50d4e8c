"""Shared by the Neuroformer stages: the run fingerprint. The model from stage params, the training configs and
the runs themselves are library code (:mod:`brainpipe.training.neuroformer`).

Stage params (one dataset's resolved ``neuroformer`` config, see config/README.md): ``tokenizer`` (SpikeTokenizer
fields), ``model`` (network size, contrastive term), ``pretrain`` and ``finetune`` (TrainConfig fields; finetune
also ``fractions``, ``scratch``), ``modalities`` (name -> {source, variables}, the ones this dataset uses),
``target`` ({source, variable, kind} or null), ``evaluate``, ``bars``, ``seed``, ``dataset``, and from the rule
``checkpoint`` (a path for the training loop's resumable checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping


def fingerprint(stage: str, params: Mapping, inputs) -> dict:
    """Identifies a training run: stage params (without the checkpoint path), input sha256s, brainpipe version."""
    from brainpipe.training import stage_fingerprint

    return stage_fingerprint(stage, {k: v for k, v in params.items() if k != "checkpoint"}, list(inputs))
