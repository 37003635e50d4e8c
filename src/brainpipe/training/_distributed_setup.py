"""The settings of a data-parallel run (:class:`DistributedSettings`), the capacity checks and where the ranks meet
(:func:`rendezvous`: torchrun/spawn environment or SLURM).

Part of :mod:`brainpipe.training.distributed`, which re-exports its public names.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from brainpipe.errors import ConfigError, InputError

log_ = logging.getLogger("brainpipe.training")
KEY = "training.distributed"


@dataclass(frozen=True)
class DistributedSettings:
    """The study's ``training.distributed`` section.

    Parameters
    ----------
    processes_per_node : int
        Training processes on each node (0 or 1 with ``nodes`` 1: off, one ordinary process).
    nodes : int
        Nodes (several only under SLURM).
    backend : {"auto", "gloo", "nccl"}
        ``auto``: NCCL when the processes train on CUDA devices, else gloo.
    """

    processes_per_node: int = 1
    nodes: int = 1
    backend: str = "auto"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, source: str = KEY) -> DistributedSettings:
        """Build checked settings from the config section.

        Parameters
        ----------
        d : mapping or None
            ``processes_per_node``, ``nodes``, ``backend`` (missing ones take their defaults; None: off).
        source : str, default "training.distributed"
            The config key named in errors.

        Returns
        -------
        DistributedSettings
            The settings.

        Raises
        ------
        brainpipe.errors.ConfigError
            An unknown key or a value out of range (one line naming the key).
        """
        d = dict(d or {})
        bad = sorted(set(d) - {"processes_per_node", "nodes", "backend"})
        if bad:
            raise ConfigError(
                f"{source}: unknown key '{bad[0]}' (allowed: backend, nodes, processes_per_node)"
            )
        s = cls(**d)
        for key in ("processes_per_node", "nodes"):
            v = getattr(s, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{source}.{key}: {v!r} is not an integer >= 1")
        if s.backend not in ("auto", "gloo", "nccl"):
            raise ConfigError(f"{source}.backend: {s.backend!r} is not one of auto, gloo, nccl")
        return s

    @property
    def world_size(self) -> int:
        """Processes in all (``processes_per_node * nodes``)."""
        return self.processes_per_node * self.nodes

    @property
    def enabled(self) -> bool:
        """Whether training runs in more than one process."""
        return self.world_size > 1


def distributed_tasks(config: Mapping[str, Any]) -> dict[str, int]:
    """The SLURM resources of a distributed training rule: one task (and one core, or one GPU) per process.

    The SLURM executor submits the job with ``--ntasks`` (``--ntasks-per-gpu=1`` with GPUs), ``--nodes`` and
    ``--cpus-per-task=1``; inside it :func:`run_stage` starts one ``srun`` task per rank. Local runs ignore these
    resources (the rule's ``threads`` reserve a core per spawned process there).

    Parameters
    ----------
    config : mapping
        The validated study config (its ``training.distributed``).

    Returns
    -------
    dict
        ``tasks`` (processes in all), ``nodes``, ``cpus_per_task`` (1) and ``tasks_per_gpu`` (1) when training is
        distributed, else empty (an ordinary one-task job).
    """
    s = DistributedSettings.from_dict((config.get("training") or {}).get("distributed"))
    if not s.enabled:
        return {}
    return {"tasks": s.world_size, "nodes": s.nodes, "cpus_per_task": 1, "tasks_per_gpu": 1}


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask; SLURM's allocation on a cluster).

    Returns
    -------
    int
        The number of cores.
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def wants_cuda(device: str | None) -> bool:
    """Whether a training ``device`` setting will train on CUDA here.

    Parameters
    ----------
    device : str or None
        ``auto``/None, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns
    -------
    bool
        True for ``cuda*``, and for ``auto`` when a CUDA device is present.
    """
    if device in (None, "auto"):
        return torch.cuda.is_available()
    return str(device).startswith("cuda")


def check_capacity(processes: int, device: str | None = "auto", source: str = KEY) -> None:
    """Refuse more processes on this node than it has devices for.

    On CUDA every process needs its own GPU; on the CPU every process needs at least one core.

    Parameters
    ----------
    processes : int
        Processes requested on this node.
    device : str or None, default "auto"
        The training device setting (see :func:`wants_cuda`).
    source : str, default "training.distributed"
        The config section named in the message.

    Raises
    ------
    brainpipe.errors.ConfigError
        Fewer GPUs (or CPU cores) than processes: one line naming the key and both counts.
    """
    if wants_cuda(device):
        have, what = torch.cuda.device_count(), "CUDA device(s) are visible"
    else:
        have, what = usable_cpus(), "CPU core(s) are usable"
    if processes > have:
        raise ConfigError(
            f"{source}.processes_per_node = {processes}, but only {have} {what} on this node: "
            f"lower it to {have} or run where there are {processes}"
        )


def _nodelist_head(nodelist: str) -> str:
    """The first host of a SLURM node list (``node[03-05,9],gpu1`` -> ``node03``), via scontrol when present."""
    exe = shutil.which("scontrol")
    if exe is not None:
        try:
            out = subprocess.run(
                [exe, "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30, check=True
            ).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass
    first = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if first is None:
        raise InputError(f"SLURM_JOB_NODELIST={nodelist!r}: not a SLURM node list")
    prefix, ranges = first.group(1), first.group(2)
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def rendezvous(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Where this process sits in the job: from ``torchrun``'s variables, else from SLURM's.

    Parameters
    ----------
    environ : mapping, optional
        The environment (default: ``os.environ``).

    Returns
    -------
    dict
        ``rank``, ``world_size``, ``local_rank``, ``master_addr``, ``master_port``, ``launcher``
        (``"torchrun"``, ``"slurm"``) — or an empty dict outside any launcher (one ordinary process).

    Raises
    ------
    brainpipe.errors.InputError
        Under SLURM (``SLURM_JOB_ID`` set, several tasks), a variable needed to meet the other ranks is missing: one
        line naming it.
    """
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return {
            "rank": int(env["RANK"]),
            "world_size": int(env["WORLD_SIZE"]),
            "local_rank": int(env.get("LOCAL_RANK", env["RANK"])),
            "master_addr": env.get("MASTER_ADDR", "127.0.0.1"),
            "master_port": int(env.get("MASTER_PORT", 29500)),
            "launcher": "torchrun",
        }
    if not env.get("SLURM_JOB_ID"):
        return {}
    need = ("SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    for var in need:
        if not env.get(var):
            raise InputError(
                f"SLURM: {var} is not set, so this task cannot meet the other ranks; launch the training "
                "with srun (one task per process) inside the job"
            )
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise InputError(
            "SLURM: SLURM_JOB_NODELIST is not set, so the ranks have no master address; launch the training "
            "with srun inside the job"
        )
    job = int(re.sub(r"\D", "", env["SLURM_JOB_ID"]) or 0) * 7 + int(
        re.sub(r"\D", "", env.get("SLURM_STEP_ID", "")) or 0
    )
    return {
        "rank": int(env["SLURM_PROCID"]),
        "world_size": int(env["SLURM_NTASKS"]),
        "local_rank": int(env["SLURM_LOCALID"]),
        "master_addr": env.get("MASTER_ADDR") or _nodelist_head(nodelist),
        "master_port": int(env.get("MASTER_PORT") or 20000 + job % 20000),
        "launcher": "slurm",
    }
