"""Distinct GPUs for concurrent local jobs.

Snakemake counts a ``gpu`` resource but does not say *which* device a job may use, so two GPU jobs running at once
on a multi-GPU workstation would both land on device 0. :func:`claim_gpus` gives each job its own: it takes an
exclusive lock file per device (in :func:`lock_dir`: ``$BRAINPIPE_GPU_LOCK_DIR``, else a folder of the user's own, so
users sharing a machine never block or break each other's jobs through their lock files), held until the
process exits (even by ``kill -9``: the kernel drops ``flock`` locks with the process), and sets
``CUDA_VISIBLE_DEVICES`` to the claimed ids before CUDA is initialised. Under SLURM, where the scheduler already
sets ``CUDA_VISIBLE_DEVICES`` for the job's allocation, nothing is changed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

log_ = logging.getLogger("brainpipe.training")
_HELD: list[int] = []  # open lock file descriptors: kept for the life of the process


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else the ones ``nvidia-smi -L`` lists
    (asked without initialising CUDA in this process); empty without a GPU."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def lock_dir() -> Path:
    """The folder of the GPU lock files, created readable by the user alone (mode 0700).

    ``$BRAINPIPE_GPU_LOCK_DIR`` when set; else ``$XDG_RUNTIME_DIR/brainpipe-gpu-locks`` (the user's runtime folder,
    emptied at logout); else ``~/.cache/brainpipe/gpu-locks``; else ``<tmp>/brainpipe-gpu-locks-<uid>``.

    Returns
    -------
    pathlib.Path
    """
    from brainpipe.errors import ConfigError

    explicit = os.environ.get("BRAINPIPE_GPU_LOCK_DIR")
    if explicit:
        candidates = [Path(explicit)]
    else:
        candidates = []
        if os.environ.get("XDG_RUNTIME_DIR"):
            candidates.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "brainpipe-gpu-locks")
        candidates.append(Path.home() / ".cache" / "brainpipe" / "gpu-locks")
        candidates.append(Path(tempfile.gettempdir()) / f"brainpipe-gpu-locks-{os.getuid()}")
    for d in candidates:
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            if d.stat().st_uid != os.getuid():
                continue  # someone else's folder: never share lock files across users
            if not os.access(d, os.W_OK):
                continue
            return d
        except OSError:
            continue
    raise ConfigError(
        f"no writable folder of your own for GPU lock files (tried {', '.join(map(str, candidates))}); "
        "set BRAINPIPE_GPU_LOCK_DIR to one"
    )


def claim_gpus(n: int, wait_s: float = 3600.0, poll_s: float = 1.0) -> list[str] | None:
    """Claim ``n`` GPUs for this process and point ``CUDA_VISIBLE_DEVICES`` at them; returns the ids, or ``None``
    when nothing was done (``n`` is 0, no GPU is visible, or SLURM manages the allocation). Waits up to ``wait_s``
    seconds for devices to free up (set Snakemake's ``--resources gpu=N`` so jobs queue there instead)."""
    if n <= 0 or os.environ.get("SLURM_JOB_ID"):
        return None
    ids = visible_gpus()
    if not ids:
        return None
    n = min(n, len(ids))
    d = lock_dir()
    start = time.monotonic()
    warned = False
    while True:
        got: list[tuple[str, int]] = []
        for dev in ids:
            fd = os.open(d / f"gpu-{dev}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            got.append((dev, fd))
            if len(got) == n:
                break
        if len(got) == n:
            _HELD.extend(fd for _, fd in got)
            claimed = [dev for dev, _ in got]
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(claimed)
            log_.info("using GPU(s) %s (CUDA_VISIBLE_DEVICES)", ",".join(claimed))
            return claimed
        for _, fd in got:
            os.close(fd)
        if time.monotonic() - start > wait_s:
            log_.warning("no free GPU after %.0f s: sharing device(s) %s", wait_s, ",".join(ids[:n]))
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids[:n])
            return ids[:n]
        if not warned:
            log_.info("waiting for a free GPU (all %d busy with other brainpipe jobs)", len(ids))
            warned = True
        time.sleep(poll_s)


def release_gpus() -> None:
    """Drop every lock this process holds (tests; a process's locks also go when it exits)."""
    while _HELD:
        os.close(_HELD.pop())
