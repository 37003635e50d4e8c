"""Stale results: a file whose inputs changed (or are gone, or are stale themselves) since it was written.

Every brainpipe file records its inputs with their SHA-256 in its provenance. When a rerun fails upstream (say a
recording was replaced by a corrupted copy), the previous run's downstream files stay on disk; :func:`stale_reasons`
tells them apart from fresh ones by walking the provenance chain: an input that is missing, whose content changed
since the file was written, or that is itself stale makes the file stale. ``brainpipe info`` and the study report
flag such files.

An input older than the file that records it is taken as unchanged (it existed when its hash was recorded) without
hashing it again, so large raw recordings are hashed only when they were touched.
"""

from __future__ import annotations

import os
from pathlib import Path

from brainpipe.data.atomic import owner
from brainpipe.data.provenance import PROVENANCE_ATTR, parse, sha256_file


def _provenance(path: Path) -> dict | None:
    """The provenance record of a brainpipe file (None for any other file, or an unreadable one)."""
    if owner(path) is None:
        return None
    try:
        if path.is_dir():
            import xarray as xr

            attrs = xr.open_zarr(path).attrs
        else:
            import h5py

            with h5py.File(path, "r") as fh:
                raw = fh.attrs.get(PROVENANCE_ATTR)
            attrs = {PROVENANCE_ATTR: raw.decode() if isinstance(raw, bytes) else raw}
        return parse(str(attrs.get(PROVENANCE_ATTR)))
    except (OSError, ValueError, KeyError):
        return None


def _mtime(path: Path) -> float:
    if path.is_dir():
        return max([path.stat().st_mtime, *(f.stat().st_mtime for f in path.rglob("*") if f.is_file())])
    return path.stat().st_mtime


def _resolve(q: Path, recorder: Path) -> Path:
    """An input path as recorded (relative to the folder the workflow ran in): from the current folder, else from
    the nearest folder above the file that recorded it where it exists (a report built from another folder)."""
    if q.is_absolute() or q.exists():
        return q
    for parent in recorder.resolve().parents:
        if (parent / q).exists():
            return parent / q
    return q


def stale_reasons(path: str | os.PathLike, _seen: dict[str, list[str]] | None = None) -> list[str]:
    """Why ``path`` is stale (an empty list when it is up to date with every input it records).

    Parameters
    ----------
    path : str or path-like
        A file written by brainpipe (other files have no recorded inputs and are never stale).

    Returns
    -------
    list of str
        One line per reason, e.g. ``"input results/spikes/x/counts.nc changed after this file was written"``.

    Examples
    --------
    >>> stale_reasons("results/spikes/stein/poisson_glm/metrics.nc")  # doctest: +SKIP
    ['input results/spikes/stein/counts.nc is stale (input resources/spikes/stein.npz changed ...)']
    """
    seen = {} if _seen is None else _seen
    p = Path(path)
    key = os.fspath(p.resolve()) if p.exists() else os.fspath(p)
    if key in seen:
        return seen[key]
    seen[key] = []  # guards against cycles
    rec = _provenance(p)
    reasons: list[str] = []
    if rec is not None:
        written = _mtime(p)
        for inp in rec.get("inputs", []):
            q = _resolve(Path(str(inp.get("path", ""))), p)
            if not q.exists():
                reasons.append(f"input {q} is gone")
                continue
            if _mtime(q) > written and sha256_file(q) != inp.get("sha256"):
                reasons.append(f"input {q} changed after this file was written")
                continue
            upstream = stale_reasons(q, seen)
            if upstream:
                reasons.append(f"input {q} is stale ({upstream[0]})")
    seen[key] = reasons
    return reasons


def stale_files(paths) -> dict[str, list[str]]:
    """:func:`stale_reasons` of several files (sharing the work on common inputs): path -> reasons, stale ones only."""
    seen: dict[str, list[str]] = {}
    out = {}
    for p in paths:
        r = stale_reasons(p, seen)
        if r:
            out[os.fspath(p)] = r
    return out
