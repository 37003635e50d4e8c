"""Data-parallel training with ``torch.distributed``: settings, capacity checks, rendezvous, launching, collectives.

:func:`brainpipe.training.train` trains data-parallel whenever a process group is initialised (:func:`current`):
every rank takes its share of each global batch (the same seeded permutation everywhere, split with
``torch.tensor_split``: a distributed sampler whose union over ranks is exactly one process's batch), the local loss
is weighted by the rank's share of the batch, and the gradients are summed over ranks in one flat all-reduce per
step, so the step equals one process's step on the global batch up to float rounding. Rank 0 writes the checkpoints
(atomically, with every rank's RNG state); every rank restores from them. Gloo on CPUs, NCCL on GPUs (one device
per process, ``cuda:<local rank>``).

The gradients are reduced explicitly rather than by wrapping the model in ``DistributedDataParallel``: the loop's
``loss_fn(model, batch)`` may call any method of the model (``encode``, ``mask``, a head), and DDP synchronises only
through ``forward``. One all-reduce of every gradient flattened into one buffer is what DDP's bucketing does without
the overlap with the backward pass; parameters without a gradient on every rank stay without one (AdamW then skips
them, as in one process).

Launching: :func:`spawn` starts ``processes`` ranks on this machine (laptop, workstation, tests);
:func:`rendezvous` reads the rank, world and master address from ``torchrun``'s variables or, under SLURM (one task
per rank, ``srun``), from SLURM's (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``, ``SLURM_JOB_NODELIST``,
``SLURM_JOB_ID``), naming any variable that is missing. :func:`from_snakemake` is the Snakemake entry of the
training stages (their ``workflow/scripts`` shims): with ``training.distributed`` off it is the ordinary stage entry,
unchanged; outside SLURM (a laptop, a workstation) or in a one-task SLURM job it runs the stage in
``processes_per_node`` spawned ranks; in a SLURM job with a task per process (what the rules ask for through the
SLURM profile, :func:`distributed_tasks`: one node or several) it starts one task per rank with ``srun --overlap``
inside the job's allocation, and the ranks meet through SLURM's variables. Every rank runs the
whole stage (reading the inputs, training); rank 0 writes the outputs and the log, the others write theirs into a
temporary folder that is removed (and their log beside the stage's, ``<log>.rank-<r>``).
"""

from __future__ import annotations

import datetime
import importlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from brainpipe import errors
from brainpipe.errors import BrainpipeError, ConfigError, InputError

__all__ = [
    "Comm",
    "DistributedSettings",
    "check_capacity",
    "current",
    "distributed_tasks",
    "free_port",
    "from_snakemake",
    "init",
    "rendezvous",
    "run_stage",
    "shutdown",
    "slurm_job_tasks",
    "spawn",
    "usable_cpus",
    "wants_cuda",
]

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


class Comm:
    """This process's view of an initialised process group: rank, world size, backend, and the loop's collectives.

    Parameters
    ----------
    local_rank : int, default 0
        The rank on this node (the CUDA device index with NCCL).
    """

    def __init__(self, local_rank: int = 0):
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.local_rank = int(local_rank)
        self.backend = str(dist.get_backend())
        self.device = torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes."""
        return self.rank == 0

    def shard(self, idx: torch.Tensor) -> tuple[torch.Tensor, float]:
        """This rank's part of a global batch, and its weight (its share of the batch's examples).

        A rank left without an example (a last batch smaller than the world) gets the batch's first example with
        weight 0, so that it still takes part in the all-reduce without changing the result.

        Parameters
        ----------
        idx : torch.Tensor
            The global batch's example indices.

        Returns
        -------
        tuple of (torch.Tensor, float)
            The local indices and their weight.
        """
        local = torch.tensor_split(idx, self.world)[self.rank]
        if len(local) == 0:
            return idx[:1], 0.0
        return local, len(local) / len(idx)

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Sum a short vector of floats over ranks (float64).

        Parameters
        ----------
        values : sequence of float
            This rank's values.

        Returns
        -------
        list of float
            The sums, the same on every rank.
        """
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.cpu().tolist()

    def broadcast_float(self, value: float) -> float:
        """Rank 0's ``value`` on every rank.

        Parameters
        ----------
        value : float
            The value (used on rank 0 only).

        Returns
        -------
        float
            Rank 0's value.
        """
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(t, 0)
        return float(t.item())

    def broadcast_module(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers (as DDP does when it wraps a model).

        Parameters
        ----------
        model : torch.nn.Module
            The model, on this rank's device.
        """
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(t.data, 0)

    def reduce_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum the gradients over ranks in one flat all-reduce.

        A parameter without a gradient on any rank keeps none; one with a gradient on some ranks only gets the sum
        (zeros for the others).

        Parameters
        ----------
        params : sequence of torch.nn.Parameter
            The trained parameters (the same order on every rank).
        """
        parts, flags = [], []
        for p in params:
            g = p.grad
            flags.append(0.0 if g is None else 1.0)
            parts.append(
                torch.zeros(p.numel(), dtype=p.dtype, device=p.device) if g is None else g.reshape(-1)
            )
        flat = torch.cat([torch.cat(parts).float(), torch.tensor(flags, device=parts[0].device)])
        dist.all_reduce(flat)
        off = 0
        n_all = len(flat) - len(flags)
        for i, p in enumerate(params):
            n = p.numel()
            if float(flat[n_all + i]) > 0:
                g = flat[off : off + n].view_as(p).to(p.dtype)
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)
            off += n

    def gather_rng(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """Every rank's RNG state, in rank order (for rank 0's checkpoint).

        Parameters
        ----------
        state : dict
            This rank's RNG state (tensors).

        Returns
        -------
        list of dict
            The states of ranks 0..world-1 (on the CPU).
        """
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, {k: v.cpu() for k, v in state.items()})
        return out

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.local_rank])
        else:
            dist.barrier()


_COMM: Comm | None = None


def current() -> Comm | None:
    """The process group this process trains in, or None (one ordinary process).

    Returns
    -------
    Comm or None
        The rank, world size and backend of the initialised group.
    """
    global _COMM
    if not (dist.is_available() and dist.is_initialized()):
        _COMM = None
        return None
    if _COMM is None:
        _COMM = Comm(int(os.environ.get("LOCAL_RANK", 0)))
    return _COMM


def init(
    backend: str = "auto",
    device: str | None = "auto",
    environ: Mapping[str, str] | None = None,
    timeout_s: float = 600.0,
) -> Comm | None:
    """Join the process group described by the environment (:func:`rendezvous`).

    Parameters
    ----------
    backend : {"auto", "gloo", "nccl"}, default "auto"
        ``auto``: NCCL when training on CUDA (:func:`wants_cuda`), else gloo.
    device : str or None, default "auto"
        The training device setting.
    environ : mapping, optional
        The environment (default: ``os.environ``).
    timeout_s : float, default 600.0
        How long the ranks wait for each other.

    Returns
    -------
    Comm or None
        The group; None outside any launcher.

    Raises
    ------
    brainpipe.errors.InputError
        A missing rendezvous variable under SLURM.
    brainpipe.errors.ConfigError
        NCCL without CUDA, or more processes on this node than devices.
    """
    global _COMM
    if dist.is_initialized():
        return current()
    where = rendezvous(environ)
    if not where:
        return None
    cuda = wants_cuda(device)
    if backend == "auto":
        backend = "nccl" if cuda else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError(f"{KEY}.backend: nccl needs CUDA devices and none is present here (use gloo)")
    if cuda:
        n = torch.cuda.device_count()
        if where["local_rank"] >= n:
            raise ConfigError(
                f"{KEY}.processes_per_node: local rank {where['local_rank']} has no GPU of its own "
                f"(only {n} CUDA device(s) are visible on this node)"
            )
        torch.cuda.set_device(where["local_rank"])
    os.environ["MASTER_ADDR"] = str(where["master_addr"])
    os.environ["MASTER_PORT"] = str(where["master_port"])
    os.environ["LOCAL_RANK"] = str(where["local_rank"])
    dist.init_process_group(
        backend,
        init_method="env://",
        rank=where["rank"],
        world_size=where["world_size"],
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    _COMM = Comm(where["local_rank"])
    log_.info(
        "rank %d of %d (%s, %s, master %s:%s)",
        _COMM.rank,
        _COMM.world,
        backend,
        where["launcher"],
        where["master_addr"],
        where["master_port"],
    )
    return _COMM


def shutdown() -> None:
    """Leave the process group (no-op when none)."""
    global _COMM
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _COMM = None


def free_port() -> int:
    """A free TCP port on this machine, for a local rendezvous.

    Returns
    -------
    int
        The port.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, fn: Callable, args: tuple, world: int, port: int, backend: str, device) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    init(backend, device)
    try:
        fn(*args)
    finally:
        shutdown()


def spawn(
    fn: Callable, args: tuple = (), processes: int = 2, backend: str = "auto", device: str | None = "auto"
) -> None:
    """Run ``fn(*args)`` in ``processes`` new processes on this machine, each a rank of one process group.

    Parameters
    ----------
    fn : callable
        A module-level function (it is pickled to the new processes).
    args : tuple, default ()
        Its arguments (picklable).
    processes : int, default 2
        The world size.
    backend : {"auto", "gloo", "nccl"}, default "auto"
        The backend (see :func:`init`).
    device : str or None, default "auto"
        The training device setting (capacity is checked against it first).

    Raises
    ------
    brainpipe.errors.ConfigError
        More processes than this machine has devices for (:func:`check_capacity`).
    torch.multiprocessing.ProcessRaisedException
        A rank failed (its traceback is in the message).
    """
    check_capacity(processes, device)
    import torch.multiprocessing as mp

    # a new process re-runs the parent's main script unless told otherwise: a Snakemake rule's script (the stage
    # shim) must not run again in every rank, so the main module is hidden while the ranks start unless ``fn`` lives
    # there
    main = sys.modules.get("__main__")
    hide = main is not None and getattr(fn, "__module__", "") != "__main__"
    hidden = {k: main.__dict__[k] for k in ("__file__", "__spec__") if hide and k in main.__dict__}
    if hidden:
        main.__dict__.pop("__file__", None)
        main.__spec__ = None
    try:
        ctx = mp.start_processes(
            _rank_main,
            args=(fn, args, processes, free_port(), backend, device),
            nprocs=processes,
            join=False,
            start_method="spawn",
        )
    finally:
        if main is not None:
            main.__dict__.update(hidden)
    previous, installed = None, threading.current_thread() is threading.main_thread()
    if installed:  # a preempted job: every rank checkpoints (SIGTERM -> checkpoint -> Preempted in each)
        previous = signal.getsignal(signal.SIGTERM)

        def forward(signum, frame):
            for p in ctx.processes:
                if p.is_alive() and p.pid is not None:
                    os.kill(p.pid, signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward)
    try:
        while not ctx.join():
            pass
    except mp.ProcessRaisedException as err:
        raise _rank_error(str(err)) from None
    except (
        mp.ProcessExitedException
    ) as err:  # killed (a signal before training began) or exited without an error
        raise BrainpipeError(
            f"training process {err.error_index} of {processes} ended early: {err}"
        ) from None
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _rank_error(text: str) -> BrainpipeError:
    """A rank's brainpipe error again, in one line (other errors: the rank's last line, as a BrainpipeError)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else "a training process failed"
    m = re.match(r"^(?:[\w.]+\.)?(\w+): (.*)$", last)
    if m is not None:
        cls = getattr(errors, m.group(1), None)
        if cls is None and m.group(1) == "Preempted":
            from brainpipe.training.checkpoint import Preempted as cls
        if isinstance(cls, type) and issubclass(cls, BrainpipeError):
            return cls(m.group(2))
    return BrainpipeError(f"a training process failed: {last}")


def _find_device(params: Any) -> str | None:
    """The first ``device`` setting in a stage's (nested) params, or None."""
    if isinstance(params, Mapping):
        if isinstance(params.get("device"), str):
            return params["device"]
        for v in params.values():
            found = _find_device(v)
            if found is not None:
                return found
    return None


def _stage_rank(module_name: str, ins: dict, outs: dict, params: dict, log: str | None) -> None:
    """One rank of a distributed stage: rank 0 runs it as usual; the others write their outputs to a scratch
    folder (removed) and their log beside the stage's."""
    comm = current()
    module = importlib.import_module(f"brainpipe.stages.{module_name}")
    if comm is None or comm.is_main:
        module.run(ins, outs, params, log)
        return
    with tempfile.TemporaryDirectory(prefix=f"brainpipe-rank{comm.rank}-") as tmp:
        scratch = {}
        for k, v in outs.items():
            paths = v if isinstance(v, (list, tuple)) else [v]
            moved = [str(Path(tmp) / f"{k}-{i}-{Path(str(p)).name}") for i, p in enumerate(paths)]
            scratch[k] = moved if isinstance(v, (list, tuple)) else moved[0]
        module.run(ins, scratch, params, f"{log}.rank-{comm.rank}" if log else None)


def run_stage(module_name: str, settings: DistributedSettings, ins, outs, params, log) -> None:
    """Run a training stage data-parallel (see the module docstring).

    Parameters
    ----------
    module_name : str
        The stage (``brainpipe.stages.<module_name>``).
    settings : DistributedSettings
        The study's ``training.distributed``.
    ins, outs : mapping
        The stage's inputs and outputs (paths).
    params : mapping
        The stage's parameters.
    log : str or None
        The stage's log file.

    Raises
    ------
    brainpipe.errors.ConfigError
        Several nodes outside SLURM, or more processes than the node or the SLURM job has room for.
    brainpipe.errors.BrainpipeError
        A rank failed (its error, in one line).
    """
    device = _find_device(params)
    args = (module_name, dict(ins), dict(outs), dict(params), None if log is None else str(log))
    slurm = bool(os.environ.get("SLURM_JOB_ID"))
    have = slurm_job_tasks() if slurm else 0
    if settings.nodes == 1 and have <= 1:  # no SLURM, or a one-task SLURM job: the ranks are spawned here
        spawn(_stage_rank, args, settings.processes_per_node, settings.backend, device)
        return
    if not slurm:
        raise ConfigError(
            f"{KEY}.nodes = {settings.nodes}: several nodes need a SLURM job (run with the slurm profile), "
            "or set nodes to 1"
        )
    if have < settings.world_size:
        raise ConfigError(
            f"{KEY}: {settings.world_size} processes ({settings.processes_per_node} per node x {settings.nodes} "
            f"nodes), but this SLURM job has {have} task(s): submit it with the workflow's slurm profile (a task "
            "per process) or lower processes_per_node"
        )
    exe = shutil.which("srun")
    if exe is None:
        raise ConfigError(f"{KEY}: this SLURM job has {have} tasks, but srun is not on PATH to start them")
    folder = Path(str(next(iter(outs.values())))).parent
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / f".distributed-{os.environ['SLURM_JOB_ID']}-{os.getpid()}.json"
    spec.write_text(json.dumps({"args": args, "backend": settings.backend, "device": device}, default=str))
    try:
        proc = subprocess.run(
            [
                exe,
                "--overlap",
                f"--ntasks={settings.world_size}",
                f"--nodes={settings.nodes}",
                f"--ntasks-per-node={settings.processes_per_node}",
                "--kill-on-bad-exit=1",
                sys.executable,
                "-m",
                "brainpipe.training.distributed",
                str(spec),
            ],
            capture_output=True,
            text=True,
        )
    finally:
        spec.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise _srun_error(proc.stderr, proc.returncode)


def slurm_job_tasks(environ: Mapping[str, str] | None = None) -> int:
    """The number of tasks of the SLURM job this process runs in (0 outside SLURM).

    Inside a job step (Snakemake's SLURM executor runs every rule in a one-task ``srun`` step) ``SLURM_NTASKS``
    counts the step's tasks, so the job's own count is asked from ``scontrol``; in the batch script (no step)
    ``SLURM_NTASKS`` is the job's.

    Parameters
    ----------
    environ : mapping, optional
        The environment (default: ``os.environ``).

    Returns
    -------
    int
        The job's tasks (1 when SLURM does not say).
    """
    env = os.environ if environ is None else environ
    job = env.get("SLURM_JOB_ID")
    if not job:
        return 0
    exe = shutil.which("scontrol")
    if env.get("SLURM_STEP_ID") and exe is not None:
        try:
            out = subprocess.run(
                [exe, "show", "job", "-o", job], capture_output=True, text=True, timeout=30, check=True
            ).stdout
            m = re.search(r"\bNumTasks=(\d+)", out)
            if m is not None:
                return int(m.group(1))
        except (OSError, subprocess.SubprocessError):
            pass
    return int(env.get("SLURM_NTASKS") or 1)


def _srun_error(stderr: str, status: int) -> BrainpipeError:
    """The first rank's error line in ``srun``'s merged stderr (srun's own lines come after it), in one line."""
    lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()]
    errs = [ln for ln in lines if re.match(r"^(?:[\w.]+\.)?(\w+Error|Preempted|Exception): ", ln)]
    if errs:
        return _rank_error(errs[0])
    theirs = [ln for ln in lines if not ln.startswith("srun:")]
    last = (theirs or lines or [f"srun exited with status {status}"])[-1]
    return BrainpipeError(f"a training process failed: {last}")


def from_snakemake(smk: Any, module_name: str) -> None:
    """Entry of a training stage's Snakemake shim: the ordinary stage entry, data-parallel when the study asks.

    With ``training.distributed`` off (the default) this is exactly
    :func:`brainpipe.stages._runner.from_snakemake`; when on, the stage's ``run`` is replaced, for this call, by
    :func:`run_stage` (threads, GPU claims and error lines stay the ordinary entry's).

    Parameters
    ----------
    smk : snakemake.script.Snakemake
        The ``snakemake`` object of the rule's script.
    module_name : str
        The stage (``brainpipe.stages.<module_name>``).
    """
    from brainpipe.stages import _runner

    cfg = getattr(smk, "config", None) or {}
    settings = DistributedSettings.from_dict((cfg.get("training") or {}).get("distributed"))
    if not settings.enabled:
        _runner.from_snakemake(smk, module_name)
        return
    module = importlib.import_module(f"brainpipe.stages.{module_name}")
    original = module.run

    def run(ins, outs, params=None, log=None):
        run_stage(module_name, settings, ins, outs, dict(params or {}), log)

    module.run = run
    try:
        _runner.from_snakemake(smk, module_name)
    finally:
        module.run = original


def _srun_main(spec_path: str) -> int:
    """One SLURM task of :func:`run_stage` on several nodes."""
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(
        1
    )  # as the spawned ranks: results depend on the world size only, not on the launcher
    try:
        init(spec["backend"], spec["device"])
        try:
            _stage_rank(*spec["args"])
        finally:
            shutdown()
    except BrainpipeError as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if (
    __name__ == "__main__"
):  # the package's module (not this __main__ copy) holds the process group the loop sees
    from brainpipe.training.distributed import _srun_main as _main

    raise SystemExit(_main(sys.argv[1]))
