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

import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from brainpipe import errors
from brainpipe.errors import BrainpipeError, ConfigError
from brainpipe.training._distributed_comm import Comm, current, free_port, init, shutdown
from brainpipe.training._distributed_setup import (
    KEY,
    DistributedSettings,
    check_capacity,
    distributed_tasks,
    rendezvous,
    usable_cpus,
    wants_cuda,
)

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
