"""Small readers of headers for the folder scan: ``.npy`` shapes, JSON sidecars, README hints, table headers."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brainpipe.errors import InputError
from brainpipe.scan._found import (
    _CELL_NAMES,
    _DOC_NAMES,
    _DOC_SUFFIXES,
    _FMRI_GLOBAL,
    _FMRI_NUISANCE,
    _HEMISPHERE,
)


def _npy_shape(p: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` from its header (memory-mapped: no data read, no pickle)."""
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, SyntaxError, TypeError, EOFError) as err:
        raise InputError(f"{p}: not a readable .npy array ({' '.join(str(err).split())[:100]})") from None
    return tuple(arr.shape), arr.dtype


def _json(p: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _sidecars(p: Path) -> list[Path]:
    """JSON sidecars of a file (``x.csv.json``, ``x.json``) or folder (``frame_rate.json`` and any ``*.json``)."""
    if p.is_dir():
        return sorted(c for c in p.iterdir() if c.suffix.lower() == ".json" and not c.name.startswith("."))
    stem = p.name[: -len(".nii.gz")] if p.name.lower().endswith(".nii.gz") else p.stem
    return [s for s in (p.with_name(p.name + ".json"), p.with_name(stem + ".json")) if s.is_file()]


def _sidecar_value(p: Path, keys: Sequence[str]) -> tuple[float | None, str | None]:
    for side in _sidecars(p):
        data = _json(side) or {}
        for k in keys:
            try:
                v = float(data[k])
            except (KeyError, TypeError, ValueError):
                continue
            if np.isfinite(v) and v > 0:
                return v, f"{side.name}:{k}"
    return None, None


def _readme_hint(p: Path, pattern: str) -> str:
    """A line of a README beside ``p`` that names ``p`` and matches ``pattern`` (e.g. a TR), for a hint."""
    folder = p.parent if p.is_file() else p
    for doc in sorted(folder.glob("*")):
        if not (doc.is_file() and _DOC_NAMES.match(doc.name)) or doc.stat().st_size > 2**20:
            continue
        try:
            text = doc.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if p.name in line:
                m = re.search(pattern, line)
                if m:
                    return f"; {doc.name} says '{m.group(0)}'"
    return ""


def _size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(c.stat().st_size for c in p.rglob("*") if c.is_file())


def _table_header(p: Path) -> tuple[list[str], int]:
    """Column names and number of data rows of a CSV/TSV (rows counted by lines)."""
    import pandas as pd

    sep = "\t" if p.suffix.lower() in (".tsv", ".tab") else ","
    try:
        head = pd.read_csv(p, sep=sep, nrows=5)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(f"{p}: cannot be read as a table ({' '.join(str(err).split())[:100]})") from None
    with open(p, "rb") as fh:
        rows = sum(1 for line in fh if line.strip()) - 1
    return [str(c) for c in head.columns], max(rows, 0)


def _table_kind(p: Path, columns: Sequence[str]) -> str | None:
    """What a table's header and sidecars say it holds: "spikes", "fmri", "calcium" or None (undecided)."""
    low = {c.lower() for c in columns}
    if {"unit", "time"} <= low:
        return "spikes"
    if _sidecar_value(p, ("RepetitionTime", "repetition_time_s"))[0]:
        return "fmri"
    if _sidecar_value(p, ("frame_rate_hz", "fs", "SamplingFrequency"))[0]:
        return "calcium"
    ents = set(re.findall(r"(?:^|_)([a-zA-Z]+)-[a-zA-Z0-9]+", p.name))
    if {"sub", "task"} & ents or re.search(r"_(bold|timeseries)\b", p.name):
        return "fmri"
    if (p.parent / "participants.tsv").is_file():
        return "fmri"
    if low & (_FMRI_NUISANCE | _FMRI_GLOBAL) or "bold" in low:
        return "fmri"
    names = [c for c in columns if not re.fullmatch(r"[\d.eE+-]+", c)]
    if names and sum(bool(_HEMISPHERE.match(c)) for c in names) >= max(2, len(names) // 2):
        return "fmri"
    if names and all(_CELL_NAMES.match(c) for c in names):
        return "calcium"
    return None


def _is_doc(p: Path) -> bool:
    if _DOC_NAMES.match(p.name) or p.suffix.lower() in _DOC_SUFFIXES:
        return True
    if p.suffix.lower() == ".txt":  # an AFNI-style numeric table is data; prose is not
        try:
            np.loadtxt(p, comments="#", ndmin=2, max_rows=3)
        except (OSError, ValueError, UnicodeDecodeError):
            return True
    return False
