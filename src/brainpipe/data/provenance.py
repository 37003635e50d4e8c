"""Provenance: what made a file, recorded as a JSON string attribute on every output.

Keys (all required on files written by a stage): ``stage``, ``package``, ``version``, ``git_sha`` (or null),
``params``, ``inputs`` (list of ``{"path", "sha256"}``), ``seed`` (or null), ``device``, ``created`` (UTC ISO 8601),
``python``, ``packages`` (versions of the main numerical libraries).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import brainpipe

PROVENANCE_ATTR = "provenance"
REQUIRED_KEYS = ("stage", "version", "params", "inputs", "seed", "device", "created")
_TRACKED_PACKAGES = ("numpy", "scipy", "xarray", "torch", "scikit-learn", "snakemake", "h5netcdf")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, or of every file under a directory (zarr stores), in sorted path order.

    Parameters
    ----------
    path : str or os.PathLike
        A file or a directory.
    chunk : int, default 1 MiB
        Bytes read at a time.

    Returns
    -------
    str
        The hex digest.
    """
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                h.update(block)
    return h.hexdigest()


def _git(*args: str) -> subprocess.CompletedProcess | None:
    src = Path(brainpipe.__file__).resolve().parent
    try:
        return subprocess.run(
            ["git", "-C", str(src), *args], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The git commit of the brainpipe source tree, with a ``-dirty`` suffix when the package source has
    uncommitted changes; None when brainpipe is not installed from a checkout."""
    out = _git("rev-parse", "HEAD")
    sha = out.stdout.strip() if out is not None else ""
    if out is None or out.returncode != 0 or len(sha) != 40:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return f"{sha}-dirty" if status is not None and status.stdout.strip() else sha


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {}
    for name in _TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj


def make_provenance(
    stage: str,
    params: Mapping[str, Any] | None = None,
    inputs: Iterable[str | os.PathLike] = (),
    seed: int | None = None,
    device: str = "cpu",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the provenance record of an output. Input files are hashed here.

    Parameters
    ----------
    stage : str
        The stage that made the output.
    params : mapping, optional
        Its parameters (written as JSON).
    inputs : iterable of str or os.PathLike
        Its input files; each is hashed (:func:`sha256_file`).
    seed : int, optional
        The seed it used.
    device : str, default "cpu"
        The device it ran on.
    extra : mapping, optional
        More entries, added to the record.

    Returns
    -------
    dict
        Stage, package and version, git sha, params, inputs with their sha256, seed, device, creation time,
        Python version, host, SLURM job id and the versions of the main packages.
    """
    rec: dict[str, Any] = {
        "stage": stage,
        "package": "brainpipe",
        "version": brainpipe.__version__,
        "git_sha": git_sha(),
        "params": _jsonable(dict(params or {})),
        "inputs": [{"path": os.fspath(p), "sha256": sha256_file(p)} for p in inputs],
        "seed": None if seed is None else int(seed),
        "device": str(device),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "host": platform.node(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),  # None outside SLURM
        "packages": package_versions(),
    }
    training = sys.modules.get("brainpipe.training.distributed")
    comm = training.current() if training is not None else None
    if (
        comm is not None
    ):  # written inside a data-parallel training run (training.distributed): its world and backend
        rec["distributed"] = {"world_size": comm.world, "backend": comm.backend}
    if extra:
        rec.update(_jsonable(dict(extra)))
    return rec


def dumps(rec: Mapping[str, Any]) -> str:
    return json.dumps(_jsonable(rec), sort_keys=True)


def parse(text: str) -> dict[str, Any]:
    """Parse a provenance attribute; raises ValueError with a reason when it is malformed."""
    try:
        rec = json.loads(text)
    except (TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"provenance attribute is not valid JSON ({err})") from None
    if not isinstance(rec, dict):
        raise ValueError("provenance attribute must be a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"provenance attribute lacks key(s) {', '.join(missing)}")
    return rec
