"""The Snakemake resources of a training rule, so that the SLURM profile asks for what the training will use.

A training rule (BrainMAE pretraining, Neuroformer pretraining and fine-tuning) declares
``resources: **training_resources(config, gpus_per_process)``. With ``training.distributed`` off that is one GPU
(or none, when the model is pinned to the CPU) in an ordinary one-task job. With it on, the SLURM executor plugin
submits one job of ``tasks = processes_per_node x nodes`` (:func:`brainpipe.training.distributed.distributed_tasks`)
and the GPUs are counted for the whole job: the plugin writes ``gpu`` as ``--gpus=<n>``, a total over every node,
and for a GPU job leaves the task count to ``--ntasks-per-gpu=1``, so ``gpu`` must be the world size (per-node
counts gave a 2-node job half its GPUs and half its ranks). Over several nodes the ranks must also be spread
``processes_per_node`` to a node (the rendezvous gives each rank ``cuda:<SLURM_LOCALID>``): ``--gpus-per-node`` for a
GPU job, ``--ntasks-per-node`` for a CPU job (SLURM refuses ``--ntasks-per-node`` beside ``--ntasks-per-gpu``), in
the plugin's ``slurm_extra``. A profile that sets its own ``slurm_extra`` for these rules replaces that line: add the
option there too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from brainpipe.training.distributed import distributed_tasks

__all__ = ["training_resources"]


def training_resources(config: Mapping[str, Any], gpus_per_process: Callable[[Any], int]) -> dict[str, Any]:
    """The Snakemake resources of a training rule: tasks, nodes, CPUs, GPUs and their layout over nodes.

    Parameters
    ----------
    config : mapping
        The validated study config (its ``training.distributed``).
    gpus_per_process : callable
        ``gpus_per_process(wildcards)``: 1 when the rule's model may run on CUDA, 0 when it is pinned to the CPU.

    Returns
    -------
    dict
        :func:`~brainpipe.training.distributed.distributed_tasks`'s resources, plus ``gpu`` (a callable of the
        wildcards: ``gpus_per_process`` x the world size) and, over several nodes, ``slurm_extra`` (a callable:
        ``--gpus-per-node=<p>`` for a GPU job, ``--ntasks-per-node=<p>`` for a CPU job).

    Examples
    --------
    >>> res = training_resources({"training": {"distributed": {"processes_per_node": 2, "nodes": 2}}}, lambda w: 1)
    >>> res["tasks"], res["nodes"], res["gpu"](None), res["slurm_extra"](None)
    (4, 2, 4, '--gpus-per-node=2')
    """
    resources: dict[str, Any] = dict(distributed_tasks(config))  # empty when training is not distributed
    world, nodes = resources.get("tasks", 1), resources.get("nodes", 1)

    def gpu(wildcards) -> int:
        return int(gpus_per_process(wildcards)) * world

    resources["gpu"] = gpu
    if nodes > 1:
        per_node = world // nodes

        def slurm_extra(wildcards) -> str:
            return (
                f"--gpus-per-node={per_node}"
                if gpus_per_process(wildcards)
                else f"--ntasks-per-node={per_node}"
            )

        resources["slurm_extra"] = slurm_extra
    return resources
