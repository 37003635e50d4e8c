"""Find the datasets in a user's folders and write a commented study file (``brainpipe init``).

:func:`scan` walks the given folders and files. A path is a dataset when a reader of the registry
(:func:`brainpipe.io.readers`) detects it and a look inside agrees (a folder detected as a suite2p plane must hold
``F.npy``; a ``.csv`` claimed by the spike, calcium and fMRI readers is decided by its header: ``unit,time`` is a
spike table, ROI names or a ``RepetitionTime`` sidecar an fMRI ROI table, a ``frame_rate_hz`` sidecar calcium
traces; a ``.nwb`` file is a spike dataset when it holds Units and a calcium dataset when it holds ophys traces,
possibly both). Otherwise a folder is walked into. Hidden files, documentation (README, LICENSE, ``.md``, text)
and files no reader claims are skipped and listed.

What the files say is read cheaply: headers (``.npy``/``.npz``/NIfTI/HDF5 shapes, ``params.py``, JSON sidecars,
``participants.tsv``), and for spike data up to :data:`FULL_READ_BYTES` the reader itself (units, duration,
behaviour and per-trial variables are then exactly what the pipeline will see). A reader registered without a
look-inside here is still found: its ``detect`` decides, and a small file is read through the registry.

:func:`study_yaml` writes the study: each dataset with what was read as a comment, the models that fit the data
enabled (spikes: Poisson GLM, switching GLM, and Neuroformer when there is a behaviour or trial variable to
decode; fMRI: BrainMAE, with ``classification``/``regression`` from ``participants.tsv``; calcium: preprocessing
and a connectome study per folder of animals). What could not be determined is a commented line
``# <key>: <placeholder>  # could not determine: <what to look at>``; a value the study cannot run without is
never made up (:attr:`FoundDataset.missing` lists those, and :func:`check_study` says whether the study is
complete).

>>> from brainpipe.scan import scan, study_yaml
>>> found = scan(["resources/"])  # doctest: +SKIP
>>> print(study_yaml(found, name="my-study"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainpipe.errors import ConfigError, InputError
from brainpipe.io import readers
from brainpipe.io._registry import Reader

__all__ = [
    "FULL_READ_BYTES",
    "NAME_PATTERN",
    "SNIFFERS",
    "FoundDataset",
    "Question",
    "Scan",
    "check_study",
    "scan",
    "study_yaml",
]

#: Spike files up to this size are read with their reader to say what they hold (units, duration, variables);
#: larger ones only through their headers.
FULL_READ_BYTES = 64 * 2**20

#: The dataset name pattern of the study schema.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")

_DOC_NAMES = re.compile(r"^(readme|license|licence|copying|notice|citation|changes|changelog|authors)", re.I)
_DOC_SUFFIXES = (
    ".md",
    ".rst",
    ".pdf",
    ".html",
    ".htm",
    ".doc",
    ".docx",
    ".py",
    ".m",
    ".ipynb",
    ".sh",
    ".yaml",
)
_SIDECAR_SUFFIXES = (".json",)
# folder and file names that say nothing about the recording: a dataset is named after its nearest other ancestor
_GENERIC = re.compile(
    r"^(suite2p|plane\d+|derivatives|fmriprep|phy|kilosort\d*|ks\d*|sorting|sorted|nwb|data|raw|output|outputs|"
    r"results|spikes|spike_times|units|traces|f|fluorescence|recording|rec|bold|func|tables|roi|rois|ophys|"
    r"calcium|fmri|imaging|session|\d+)$",
    re.I,
)
_FMRI_NUISANCE = {"wm", "csf", "vent", "ventricles", "white_matter", "whitematter", "csf_wm"}
_FMRI_GLOBAL = {"brain", "global", "global_signal", "globalsignal", "gs", "wholebrain"}
_HEMISPHERE = re.compile(r"^(l|r|lh|rh|left|right)([_.-]|[A-Z])", re.I)
_CELL_NAMES = re.compile(r"^(cell|neuron|unit|n|c)[_-]?\d+$", re.I)
_TARGET_CLASS = ("group", "diagnosis", "dx", "condition", "class", "label", "status", "phenotype")
_TARGET_REG = ("score", "iq", "age")
_NUISANCE_LABELS = ("site", "scanner", "session", "ses", "run", "batch", "center", "centre")
_BEHAVIOUR_PREF = ("x", "position_x", "pos_x", "position", "speed", "velocity", "y")
_STIMULUS_PREF = ("feedback_type", "choice", "response", "outcome", "correct", "reward")


@dataclass
class Question:
    """A dataset key that :func:`scan` could not determine from the files.

    Attributes
    ----------
    key : str
        The key in the dataset's entry (dotted below it, e.g. ``"options.position"``).
    placeholder : str
        What goes there, e.g. ``"<seconds>"``.
    hint : str
        What to look at to find the value.
    required : bool
        True when the dataset cannot be read without it.
    full_key : str or None
        The key from the top of the study when it lies outside the dataset's entry.
    """

    key: str
    placeholder: str
    hint: str
    required: bool = False
    full_key: str | None = (
        None  # a key outside the dataset's entry (a connectome study's), dotted from the top
    )


@dataclass
class FoundDataset:
    """One dataset found by :func:`scan`.

    Attributes
    ----------
    path : pathlib.Path
        The file or folder (as reached from the path given to :func:`scan`).
    modality : str or None
        ``"spikes"``, ``"calcium"`` or ``"fmri"``; None when the content could be several (see ``choices``).
    format : str or None
        The reader's format name (``format:`` in the study).
    name : str
        The dataset name in the study (unique, matching :data:`NAME_PATTERN`).
    keys : dict
        The dataset keys read from the files, besides ``path`` and ``format`` (``options``, ``frame_rate_hz``,
        ``repetition_time_s``, ``atlas``, ``participants``, ``confound_columns``, ...).
    facts : dict
        What the files say: ``units``, ``duration_s``, ``sample_rate_hz``, ``bin_width_s``, ``trials``,
        ``behaviour`` and ``stimulus`` (variable names), ``cells``, ``frames``, ``frame_rate_hz``, ``kind``,
        ``rois``, ``runs``, ``subjects``, ``tr_s``, ``labels`` (participants columns), as found.
    questions : list of Question
        What could not be determined.
    notes : list of str
        Remarks written as comments beside the dataset.
    choices : tuple of (str, str)
        (modality, format) pairs the content fits when ``modality`` is None.
    group : str or None
        Calcium: the folder holding this animal among others of one study.
    """

    path: Path
    modality: str | None
    format: str | None
    name: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    questions: list[Question] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    choices: tuple[tuple[str, str], ...] = ()
    group: str | None = None
    sure: bool = field(default=True, repr=False)
    consumes: Any = field(default="all", repr=False)  # "all" or a set of child paths this dataset reads

    @property
    def missing(self) -> list[Question]:
        """The required keys that could not be determined.

        Returns
        -------
        list of Question
        """
        return [q for q in self.questions if q.required]

    @property
    def summary(self) -> str:
        """What the files say, in a few words (the comment beside the dataset).

        Returns
        -------
        str
        """
        f, parts = self.facts, []
        if "units" in f:
            parts.append(f"{f['units']} units")
        if "cells" in f:
            parts.append(f"{f['cells']} ROIs")
        if "rois" in f:
            parts.append(f"{f['rois']} ROIs")
        if f.get("runs"):
            parts.append(f"{f['runs']} run{'s' if f['runs'] != 1 else ''}")
        if f.get("subjects"):
            parts.append(f"{len(f['subjects'])} subject{'s' if len(f['subjects']) != 1 else ''}")
        if f.get("trials"):
            parts.append(f"{f['trials']} trials")
        if "frames" in f:
            parts.append(f"{f['frames']} frames")
        if "volumes" in f:
            parts.append(f"{f['volumes']} volumes")
        if f.get("duration_s") is not None:
            parts.append(_duration(f["duration_s"]))
        for key, unit, what in (
            ("sample_rate_hz", "Hz", "sampling"),
            ("frame_rate_hz", "Hz", "frames"),
            ("bin_width_s", "s", "bins"),
            ("tr_s", "s", "TR"),
        ):
            if f.get(key):
                parts.append(f"{what} {f[key]:g} {unit}")
        if f.get("kind"):
            parts.append(f"traces: {f['kind']}")
        if f.get("behaviour"):
            parts.append("behaviour " + ", ".join(f["behaviour"]))
        if f.get("stimulus"):
            parts.append("per-trial " + ", ".join(f["stimulus"]))
        if f.get("labels"):
            parts.append("participants " + ", ".join(f["labels"]))
        if f.get("neuron_labels"):
            parts.append("neuron labels")
        return ", ".join(parts)


class Scan(list):
    """The datasets found by :func:`scan` (a list of :class:`FoundDataset`), with what was skipped.

    Parameters
    ----------
    items : iterable of FoundDataset
        The datasets.

    Attributes
    ----------
    skipped : list of (pathlib.Path, str)
        Each skipped file or folder and why.
    roots : list of pathlib.Path
        The paths that were scanned.
    """

    def __init__(self, items: Iterable[FoundDataset] = ()):
        super().__init__(items)
        self.skipped: list[tuple[Path, str]] = []
        self.roots: list[Path] = []


class Rejected(Exception):
    """A look-inside's reason why a path that a reader's detector accepted is not a dataset of that format."""


# ---- small readers of headers ---------------------------------------------------------------------------------------
def _duration(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.3g} s"


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


# ---- look inside: spikes ---------------------------------------------------------------------------------------------
def _spike_facts(ds) -> dict[str, Any]:
    """What a reader's ``spike_times`` dataset holds."""
    facts: dict[str, Any] = {}
    if "unit" in ds.sizes:
        facts["units"] = int(ds.sizes["unit"])
    if "spike" in ds.sizes:
        facts["spikes"] = int(ds.sizes["spike"])
    t0, t1 = ds.attrs.get("t_start_s"), ds.attrs.get("t_stop_s")
    if t0 is not None and t1 is not None:
        facts["duration_s"] = float(t1) - float(t0)
    if "counts" in ds and ds.attrs.get("bin_width_s"):  # binned counts: (time, unit) with their bin width
        facts["bin_width_s"] = float(ds.attrs["bin_width_s"])
        facts.setdefault("duration_s", ds.sizes.get("time", 0) * facts["bin_width_s"])
    if "trial" in ds.sizes:
        facts["trials"] = int(ds.sizes["trial"])
    if "behaviour_var" in ds.coords:
        facts["behaviour"] = [str(v) for v in ds["behaviour_var"].values]
    stim = [
        str(v)[len("trial_") :]
        for v in ds.data_vars
        if str(v).startswith("trial_") and str(v) not in ("trial_start", "trial_stop", "trial_split")
    ]
    if stim:
        facts["stimulus"] = stim
        facts["stimulus_values"] = {s: int(np.unique(ds[f"trial_{s}"].values).size) for s in stim}
    return facts


def _read_spikes(found: FoundDataset) -> None:
    """Fill ``found.facts`` from the reader's output when the data is small; a read failure becomes a question."""
    from brainpipe.io import read

    if _size(found.path) > FULL_READ_BYTES:
        found.notes.append(
            f"larger than {FULL_READ_BYTES >> 20} MB: summarised from its headers, not read through"
        )
        return
    try:
        with _captured_warnings(found):
            ds = read(found.path, "spikes", found.format, **found.keys.get("options", {}))
    except (InputError, ConfigError) as err:
        found.notes.append(f"reading it failed: {err}")
        return
    found.facts.update(_spike_facts(ds))


@contextmanager
def _captured_warnings(found: FoundDataset) -> Iterator[None]:
    """The readers' log warnings while reading ``found`` become its notes (not lines on the terminal)."""

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = record.getMessage()
            for prefix in (f"{found.path}: ", f"{found.path.parent}/"):
                msg = msg[len(prefix) :] if msg.startswith(prefix) else msg
            found.notes.append(msg)

    log = logging.getLogger("brainpipe.io")
    handler, propagate = Keep(logging.WARNING), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _sniff_spike_nwb(reader: Reader, p: Path) -> FoundDataset | None:
    groups = _nwb_groups(p)
    if "units" not in groups:
        return None
    found = FoundDataset(p, "spikes", reader.name)
    found.facts["units"] = groups["units"]
    _read_spikes(found)
    return found


def _nwb_groups(p: Path) -> dict[str, Any]:
    """What an NWB file holds, from its HDF5 tree: {"units": n, "ophys": [(container, series, shape, rate)]}."""
    import h5py

    out: dict[str, Any] = {}
    try:
        with h5py.File(p, "r") as f:
            units = f.get("units")
            if isinstance(units, h5py.Group) and "spike_times" in units:
                out["units"] = int(units["id"].shape[0]) if "id" in units else 0
            ophys = f.get("processing/ophys")
            series = []
            if isinstance(ophys, h5py.Group):
                for cname in ("Fluorescence", "DfOverF"):
                    cont = ophys.get(cname)
                    if not isinstance(cont, h5py.Group):
                        continue
                    for sname, s in cont.items():
                        if not (isinstance(s, h5py.Group) and "data" in s):
                            continue
                        rate = None
                        if "starting_time" in s:
                            rate = s["starting_time"].attrs.get("rate")
                        elif "timestamps" in s and s["timestamps"].shape[0] > 1:
                            ts = s["timestamps"][: min(1000, s["timestamps"].shape[0])]
                            step = float(np.median(np.diff(ts)))
                            rate = 1.0 / step if step > 0 else None
                        series.append((cname, sname, tuple(s["data"].shape), rate))
            if series:
                out["ophys"] = series
                out["neuron_labels"] = _nwb_has_labels(ophys)
    except (OSError, RuntimeError, ValueError) as err:
        raise InputError(f"{p}: cannot be opened as NWB/HDF5 ({' '.join(str(err).split())[:100]})") from None
    return out


def _nwb_has_labels(ophys: Any) -> bool:
    """Whether an ophys module's ROI table (a PlaneSegmentation) has a neuron-label column."""
    import h5py

    from brainpipe.io.calcium import NWB_LABEL_COLUMNS

    found: list[bool] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and obj.attrs.get("neurodata_type") in (
            "PlaneSegmentation",
            b"PlaneSegmentation",
        ):
            found.append(any(c in obj for c in NWB_LABEL_COLUMNS))

    ophys.visititems(visit)
    return any(found)


def _sniff_phy(reader: Reader, p: Path) -> FoundDataset | None:
    if not (p / "spike_times.npy").is_file():
        return None
    from brainpipe.io._phy import params_value

    found = FoundDataset(p, "spikes", reader.name)
    if (p / "params.py").is_file():
        fs = params_value(p / "params.py", "sample_rate")
        if fs:
            found.facts["sample_rate_hz"] = float(fs)
    if "sample_rate_hz" not in found.facts:
        found.questions.append(
            Question(
                "options.sample_rate",
                "<Hz>",
                "params.py has no sample_rate: the acquisition rate of spike_times.npy (e.g. 30000)",
                required=True,
            )
        )
        return found
    groups = None
    for name in ("cluster_group.tsv", "cluster_KSLabel.tsv", "cluster_info.tsv"):
        if (p / name).is_file():
            import pandas as pd

            try:
                df = pd.read_csv(p / name, sep="\t", dtype=str, keep_default_na=False)
            except (OSError, ValueError):
                continue
            col = next((c for c in ("group", "KSLabel") if c in df.columns), None)
            if col:
                groups = Counter(df[col].str.strip())
                break
    if groups:
        found.facts["clusters"] = dict(groups)
        found.notes.append(
            "clusters: "
            + ", ".join(f"{n} {g}" for g, n in sorted(groups.items()))
            + " (only 'good' are read)"
        )
    _read_spikes(found)
    return found


def _sniff_trialized(reader: Reader, p: Path) -> FoundDataset | None:
    from brainpipe.io._common import npz_shapes

    shapes = npz_shapes(p)
    counts = shapes.get("spks", ())
    if len(counts) != 3:
        return None
    found = FoundDataset(p, "spikes", reader.name)
    found.facts.update(trials=counts[0], units=counts[1])
    _read_spikes(found)
    if "time" in shapes:
        with np.load(p, allow_pickle=False) as z:
            t = np.asarray(z["time"], dtype=np.float64)
        steps = np.diff(t, axis=-1) if t.ndim == 2 and t.shape[-1] > 1 else np.array([])
        if steps.size and np.allclose(steps, steps.flat[0], rtol=1e-3):
            found.facts["bin_width_s"] = round(float(steps.flat[0]), 9)
    return found


def _sniff_spike_table(reader: Reader, p: Path) -> FoundDataset | None:
    if p.suffix.lower() == ".npz":
        from brainpipe.io._common import npz_shapes

        if not {"unit", "time"} <= set(npz_shapes(p)):
            return None
    else:
        cols, _ = _table_header(p)
        if _table_kind(p, cols) != "spikes":
            return None
    found = FoundDataset(p, "spikes", reader.name)
    _read_spikes(found)
    return found


def _sniff_matclust(reader: Reader, p: Path) -> FoundDataset | None:
    found = FoundDataset(p, "spikes", reader.name)
    tracking = sorted(p.parent.glob("*.videoPositionTracking"))
    if len(tracking) == 1:
        found.keys["options"] = {"position": str(tracking[0])}
    elif tracking:
        found.questions.append(
            Question(
                "options.position",
                "<file>",
                "several .videoPositionTracking files beside it: " + ", ".join(t.name for t in tracking),
            )
        )
    _read_spikes(found)
    if any(n.startswith("reading it failed") for n in found.notes) and "units" not in found.facts:
        return None  # a .mat file that is not MatClust output
    return found


# ---- look inside: calcium --------------------------------------------------------------------------------------------
def _rate_question(found: FoundDataset, what: str) -> None:
    found.questions.append(
        Question(
            "frame_rate_hz",
            "<Hz>",
            f"{what}; the imaging frame rate (suite2p's ops 'fs', the microscope's metadata)",
            required=True,
        )
    )


def _sniff_suite2p(reader: Reader, p: Path) -> FoundDataset | None:
    if not (p.is_dir() and (p / "F.npy").is_file() and (p / "Fneu.npy").is_file()):
        return None
    shape, _ = _npy_shape(p / "F.npy")
    if len(shape) != 2:
        return None
    found = FoundDataset(p, "calcium", reader.name)
    found.facts.update(cells=shape[0], frames=shape[1], kind="raw_with_neuropil")
    sample = np.load(p / "F.npy", mmap_mode="r", allow_pickle=False)[:, : min(shape[1], 2000)]
    if sample.size and float(np.min(sample)) < 0:  # raw fluorescence is positive; CNMF-E's C is not
        found.facts["kind"] = "denoised"
        found.notes.append("F.npy goes negative: denoised traces (e.g. CNMF-E C), not raw fluorescence")
    if (p / "iscell.npy").is_file():
        try:
            isc = np.load(p / "iscell.npy", allow_pickle=False)
            n = int((isc[:, 0] if isc.ndim == 2 else isc).astype(float).__gt__(0.5).sum())
            found.notes.append(f"{n} of {shape[0]} ROIs marked as cells in iscell.npy (only those are read)")
            found.facts["cells"] = n
        except (OSError, ValueError, IndexError):
            pass
    from brainpipe.io.calcium import SUITE2P_LABELS

    found.facts["neuron_labels"] = (p / SUITE2P_LABELS).is_file()
    rate, src = _sidecar_value(p, ("frame_rate_hz", "fs"))
    if rate is None:
        where = "ops.npy is a pickle and is not read" if (p / "ops.npy").is_file() else "no frame_rate.json"
        _rate_question(found, f"no frame rate beside F.npy ({where})")
    elif src and src.endswith(":fs") and rate == 1.0:
        found.questions.append(
            Question(
                "frame_rate_hz",
                "<Hz>",
                f"{src} says fs = 1.0, suite2p's default, so the true frame rate is unknown; set the microscope's",
            )
        )
        found.facts["frame_rate_hz"] = rate
    else:
        found.facts["frame_rate_hz"] = rate
    if found.facts.get("frame_rate_hz"):
        found.facts["duration_s"] = shape[1] / found.facts["frame_rate_hz"]
    return found


def _sniff_calcium_nwb(reader: Reader, p: Path) -> FoundDataset | None:
    groups = _nwb_groups(p)
    series = [s for s in groups.get("ophys", []) if s[1].lower() != "neuropil"]
    if not series:
        return None
    cname, sname, shape, rate = series[0]
    found = FoundDataset(p, "calcium", reader.name)
    found.facts.update(frames=shape[0], cells=shape[1] if len(shape) > 1 else 1)
    has_neuropil = any(s[1].lower() == "neuropil" for s in groups["ophys"])
    found.facts["kind"] = "dff" if cname == "DfOverF" else ("raw_with_neuropil" if has_neuropil else "raw")
    found.facts["neuron_labels"] = bool(groups.get("neuron_labels"))
    if len(series) > 1:
        found.keys["options"] = {"series": sname}
        found.notes.append("other series: " + ", ".join(s[1] for s in series[1:]) + " (options.series)")
    if rate:
        found.facts["frame_rate_hz"] = round(float(rate), 6)
        found.facts["duration_s"] = shape[0] / float(rate)
    else:
        _rate_question(found, f"series {sname} has neither a rate nor timestamps")
    return found


def _array_found(reader: Reader, p: Path, shape: tuple[int, ...]) -> FoundDataset:
    found = FoundDataset(p, "calcium", reader.name)
    found.facts.update(frames=shape[0], cells=shape[1])
    found.facts["neuron_labels"] = any(
        isinstance((_json(side) or {}).get("labels"), list) for side in _sidecars(p)
    )
    found.questions.append(
        Question(
            "kind",
            "<raw|dff|denoised|deconvolved>",
            "what the array holds (auto reads it as raw fluorescence)",
        )
    )
    rate, _ = _sidecar_value(p, ("frame_rate_hz", "fs"))
    if rate:
        found.facts["frame_rate_hz"] = rate
        found.facts["duration_s"] = shape[0] / rate
    else:
        _rate_question(found, f"no {p.name}.json sidecar with frame_rate_hz")
    return found


def _sniff_calcium_array(reader: Reader, p: Path) -> FoundDataset | None:
    suffix = p.suffix.lower()
    if suffix == ".npy":
        shape, dtype = _npy_shape(p)
        if len(shape) != 2 or dtype.kind not in "biuf":
            return None
        found = _array_found(reader, p, shape)
        found.sure = _table_kind(p, []) == "calcium"
        return found
    if suffix == ".csv":
        cols, rows = _table_header(p)
        kind = _table_kind(p, cols)
        if kind not in (None, "calcium"):
            return None
        found = _array_found(reader, p, (rows, len(cols)))
        found.sure = kind == "calcium"
        return found
    return _sniff_calcium_hdf5(reader, p)


def _sniff_calcium_hdf5(reader: Reader, p: Path) -> FoundDataset | None:
    import h5py

    arrays: list[tuple[str, tuple[int, ...]]] = []
    try:
        with h5py.File(p, "r") as f:
            f.visititems(
                lambda n, o: (
                    arrays.append((n, o.shape)) if isinstance(o, h5py.Dataset) and len(o.shape) == 2 else None
                )
            )
    except (OSError, RuntimeError, ValueError):
        return None
    if not arrays:
        return None
    found = _array_found(reader, p, arrays[0][1])
    if len(arrays) > 1:
        found.questions.append(
            Question(
                "options.key",
                "<dataset>",
                "several 2-D arrays: " + ", ".join(f"{n}{s}" for n, s in arrays[:6]) + " (time x neuron)",
                required=True,
            )
        )
    else:
        found.keys["options"] = {"key": arrays[0][0]}
    return found


# ---- look inside: fMRI -----------------------------------------------------------------------------------------------
def _nifti_shape(p: Path):
    import nibabel as nib

    try:
        img = nib.load(str(p))
    except Exception as err:  # nibabel raises many kinds on a damaged header  # noqa: BLE001
        raise InputError(f"{p}: not a readable NIfTI ({' '.join(str(err).split())[:100]})") from None
    return img


def _nifti_tr(p: Path, img) -> float | None:
    tr, _ = _sidecar_value(p, ("RepetitionTime",))
    if tr:
        return tr
    zooms = img.header.get_zooms()
    units = img.header.get_xyzt_units()[1] if hasattr(img.header, "get_xyzt_units") else "sec"
    if len(zooms) > 3 and zooms[3] > 0 and units in ("sec", "msec", "usec"):
        return round(float(zooms[3]) * {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}[units], 6)
    return None


def _find_atlas(folder: Path) -> tuple[Path | None, Path | None, list[Path]]:
    """A 3D labels NIfTI near ``folder`` (in it, beside it, or in an ``atlas*``/``parcellation`` folder there)."""
    places = [folder, folder.parent]
    for base in (folder, folder.parent):
        places += [
            d for d in sorted(base.iterdir()) if d.is_dir() and re.match(r"(atlas|parc|label)", d.name, re.I)
        ]
    hits: list[Path] = []
    for place in places:
        for f in sorted(place.iterdir()):
            if f.is_file() and f.name.lower().endswith((".nii", ".nii.gz")):
                if re.search(r"(atlas|dseg|parc|label|schaefer|aal|harvard|gordon|glasser)", f.name, re.I):
                    try:
                        if len(_nifti_shape(f).shape) == 3:
                            hits.append(f)
                    except InputError:
                        continue
    if len(hits) != 1:
        return None, None, hits
    atlas = hits[0]
    stem = atlas.name[: -len(".nii.gz")] if atlas.name.lower().endswith(".gz") else atlas.stem
    labels = next(
        (atlas.with_name(stem + s) for s in (".tsv", ".csv", ".txt") if atlas.with_name(stem + s).is_file()),
        None,
    )
    return atlas, labels, hits


def _set_atlas(found: FoundDataset, folder: Path) -> None:
    atlas, labels, hits = _find_atlas(folder)
    if atlas is None:
        found.questions.append(
            Question(
                "atlas",
                "<labels.nii.gz>",
                (
                    "several labels images: " + ", ".join(h.name for h in hits)
                    if hits
                    else "no labels atlas found beside the images"
                )
                + " (a 3D labels NIfTI in the bold images' space)",
                required=True,
            )
        )
        return
    found.keys["atlas"] = str(atlas)
    if labels is not None:
        found.keys["atlas_labels"] = str(labels)
    else:
        found.questions.append(
            Question("atlas_labels", "<labels.tsv>", "ROI names of the atlas (index, name)")
        )


def _participants(found: FoundDataset, near: Sequence[Path], subjects: Sequence[str]) -> None:
    """Use a participants.tsv near the data: its path, its label columns, and a BrainMAE target from them."""
    table = next((d / "participants.tsv" for d in near if (d / "participants.tsv").is_file()), None)
    if table is None:
        return
    import pandas as pd

    try:
        df = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        found.notes.append(f"{table}: cannot be read as a table; not used")
        return
    if "participant_id" not in df.columns:
        found.notes.append(f"{table}: has no participant_id column; not used")
        return
    found.keys["participants"] = str(table)
    ids = df["participant_id"].str.replace(r"^sub-", "", regex=True)
    if subjects:
        df = df[ids.isin(set(subjects))]
    labels: dict[str, str] = {}
    classes, numbers = [], []
    for col in df.columns:
        if col == "participant_id":
            continue
        vals = df[col].str.strip().replace({"n/a": "", "NA": "", "nan": ""})
        vals = vals[vals != ""]
        num = pd.to_numeric(vals, errors="coerce")
        n_distinct = vals.nunique()
        if n_distinct < 2:
            labels[col] = f"{n_distinct} value"
            continue
        if num.notna().all() and n_distinct > 5:
            labels[col] = "numeric"
            numbers.append(col)
        else:
            counts = vals.value_counts()
            labels[col] = f"{n_distinct} values"
            if counts.min() >= 2 and n_distinct <= 10:
                classes.append(col)
    found.facts["labels"] = [f"{c} ({k})" for c, k in labels.items()]
    nuisance = [c for c in classes + numbers if c.lower() in _NUISANCE_LABELS]
    if nuisance:
        found.notes.append(f"{', '.join(nuisance)}: acquisition labels, not used as targets")

    def pick(cols: list[str], prefer: Sequence[str]) -> str | None:
        cols = [c for c in cols if c.lower() not in _NUISANCE_LABELS]
        return next((c for p in prefer for c in cols if c.lower() == p), cols[0] if cols else None)

    target = pick(classes, _TARGET_CLASS)
    if target:
        found.keys["classification"] = target
        others = [c for c in classes if c != target and c not in nuisance]
        if others:
            found.notes.append(f"classification: also possible: {', '.join(others)}")
    reg = pick(numbers, _TARGET_REG)
    if reg:
        found.keys["regression"] = reg


def _sniff_fmriprep(reader: Reader, p: Path) -> FoundDataset | None:
    if not p.is_dir():
        return None
    # the derivatives folder itself: subject folders or dataset_description.json directly in it
    if not (
        (p / "dataset_description.json").is_file()
        or any(c.is_dir() and c.name.startswith("sub-") for c in p.iterdir())
    ):
        return None
    bolds = sorted(p.rglob("*_desc-preproc_bold.nii*"))
    if not bolds:
        return None
    from brainpipe.io.fmri import bids_entities

    ents = [bids_entities(b.name) for b in bolds]
    found = FoundDataset(p, "fmri", reader.name)
    subjects = sorted({e.get("sub", "") for e in ents} - {""})
    found.facts.update(runs=len(bolds), subjects=subjects)
    for key in ("space", "task", "ses"):
        values = Counter(e.get(key) for e in ents if e.get(key))
        if len(values) > 1:
            pick = next((v for v in values if key == "space" and v.startswith("MNI")), None)
            cfg = "session" if key == "ses" else key
            if pick:
                found.keys[cfg] = pick
                found.notes.append(f"{cfg}: also found {', '.join(v for v in values if v != pick)}")
            else:
                found.questions.append(
                    Question(cfg, f"<{'|'.join(sorted(values))}>", f"the runs have several {cfg}s; pick one")
                )
    img = _nifti_shape(bolds[0])
    tr = _nifti_tr(bolds[0], img)
    if tr:
        found.facts["tr_s"] = tr
    if len(img.shape) == 4:
        found.facts["volumes"] = int(img.shape[3])
    _set_atlas(found, p)
    _participants(found, [p, p.parent, p.parent.parent], subjects)
    return found


def _sniff_nifti(reader: Reader, p: Path) -> FoundDataset | None:
    files = (
        [p]
        if p.is_file()
        else sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith((".nii", ".nii.gz")))
    )
    imgs = [(f, _nifti_shape(f)) for f in files]
    bolds = [(f, img) for f, img in imgs if len(img.shape) == 4 and img.shape[3] > 1]
    if not bolds:
        return None
    others = [f for f, img in imgs if (f, img) not in bolds]
    folder = p if p.is_dir() else p.parent
    found = FoundDataset(p, "fmri", reader.name, consumes={f for f, _ in imgs} | set(_sidecars_of(files)))
    from brainpipe.io.fmri import bids_entities

    subjects = sorted({bids_entities(f.name).get("sub", "") for f, _ in bolds} - {""})
    found.facts.update(runs=len(bolds), subjects=subjects, volumes=int(bolds[0][1].shape[3]))
    found.facts["grid"] = "x".join(str(int(s)) for s in bolds[0][1].shape[:3])
    trs = {_nifti_tr(f, img) for f, img in bolds}
    if len(trs) == 1 and None not in trs:
        found.facts["tr_s"] = trs.pop()
    elif None in trs:
        found.questions.append(
            Question(
                "repetition_time_s",
                "<seconds>",
                "no RepetitionTime sidecar and no time step in the NIfTI header",
                required=True,
            )
        )
    else:
        found.notes.append(f"the images have different TRs ({', '.join(f'{t:g}' for t in sorted(trs))} s)")
    if others and p.is_dir():
        found.questions.append(
            Question(
                "path",
                "<folder of 4D images only>",
                f"{', '.join(f.name for f in others)} (3D) sit among the 4D images, which the reader would read "
                "as runs; move them out",
                required=True,
            )
        )
    _set_atlas(found, folder)
    _participants(found, [folder, folder.parent], subjects)
    return found


def _sidecars_of(files: Iterable[Path]) -> list[Path]:
    return [s for f in files for s in _sidecars(f)]


def _fmri_table_found(
    reader: Reader, p: Path, tables: list[Path], cols: list[str], rows: int
) -> FoundDataset:
    from brainpipe.io.fmri import bids_entities

    consumed = set(tables) | set(_sidecars_of(tables))
    if p.is_dir() and (p / "participants.tsv").is_file():
        consumed.add(p / "participants.tsv")
    found = FoundDataset(p, "fmri", reader.name, consumes=consumed)
    low = {c.lower(): c for c in cols}
    confounds = [low[c] for c in low if c in _FMRI_NUISANCE]
    drop = [low[c] for c in low if c in _FMRI_GLOBAL]
    if confounds:
        found.keys["confound_columns"] = confounds
    labels = _label_columns(tables[0], cols)
    if drop or labels:
        found.keys["drop_columns"] = drop + labels
        if drop:
            found.notes.append(
                f"{', '.join(drop)}: global signal, dropped (move to confound_columns to regress it)"
            )
        if labels:
            found.notes.append(f"{', '.join(labels)}: integer labels with few values, not ROIs: dropped")
    n_rois = len(cols) - len(confounds) - len(drop) - len(labels)
    subjects = sorted({bids_entities(t.name).get("sub", "") for t in tables} - {""})
    found.facts.update(rois=n_rois, runs=len(tables), volumes=rows, subjects=subjects)
    trs = {_sidecar_value(t, ("RepetitionTime", "repetition_time_s"))[0] for t in tables}
    if len(trs) == 1 and None not in trs:
        found.keys["repetition_time_s"] = found.facts["tr_s"] = trs.pop()
    else:
        hint = _readme_hint(tables[0], r"TR\s*[=:]?\s*[0-9.]+\s*(s|sec|ms)\b")
        found.questions.append(
            Question(
                "repetition_time_s",
                "<seconds>",
                (
                    "ROI tables carry no TR (no JSON sidecar with RepetitionTime)"
                    if None in trs
                    else f"the tables' sidecars give different TRs ({', '.join(f'{t:g}' for t in sorted(trs))} s)"
                )
                + hint,
                required=True,
            )
        )
    folder = p if p.is_dir() else p.parent
    _participants(found, [folder, folder.parent], subjects)
    return found


def _label_columns(p: Path, cols: list[str]) -> list[str]:
    """Columns of a small integer range (event codes, conditions) in an ROI table: not ROI signals."""
    if p.suffix.lower() not in (".csv", ".tsv"):
        return []
    import pandas as pd

    try:
        df = pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ",", nrows=5000)
    except (OSError, ValueError):
        return []
    out = []
    for c in df.columns:
        v = df[c].to_numpy()
        if v.dtype.kind not in "iuf" or not np.all(np.isfinite(v)) or not np.all(v == np.round(v)):
            continue
        if np.unique(v).size <= 12 and str(c).lower() not in _FMRI_NUISANCE:
            out.append(str(c))
    return out


def _sniff_fmri_table(reader: Reader, p: Path) -> FoundDataset | None:
    from brainpipe.io.fmri import TABLE_SUFFIXES

    if p.is_file():
        if p.name == "participants.tsv":
            return None
        tables = [p]
    else:
        tables = sorted(
            f
            for f in p.iterdir()
            if f.is_file()
            and f.suffix.lower() in TABLE_SUFFIXES
            and f.name != "participants.tsv"
            and not f.name.startswith(".")
            and not _is_doc(f)
        )
        if len(tables) < 2 and not (p / "participants.tsv").is_file():
            return None  # one table: the file is the dataset (named after it)
    headers = []
    for t in tables:
        if t.suffix.lower() == ".npy":
            shape, dtype = _npy_shape(t)
            if len(shape) != 2 or dtype.kind not in "biuf":
                return None
            headers.append(([f"roi-{k + 1}" for k in range(shape[1])], shape[0], None))
        elif t.suffix.lower() in (".csv", ".tsv"):
            cols, rows = _table_header(t)
            headers.append((cols, rows, _table_kind(t, cols)))
        else:
            try:
                arr = np.loadtxt(t, comments="#", ndmin=2, max_rows=5)
            except (OSError, ValueError, UnicodeDecodeError):
                return None
            with open(t, "rb") as fh:
                rows = sum(1 for line in fh if line.strip() and not line.startswith(b"#"))
            headers.append(([f"roi-{k + 1}" for k in range(arr.shape[1])], rows, None))
    if len({tuple(h[0]) for h in headers}) != 1:
        return None  # tables of different columns are not the runs of one dataset
    kinds = {h[2] for h in headers}
    if kinds - {None, "fmri"}:
        return None
    cols, rows = headers[0][0], headers[0][1]
    found = _fmri_table_found(reader, p, tables, cols, rows)
    if found.facts["rois"] < 2:
        kept = [c for c in cols if c not in found.keys.get("drop_columns", [])]
        raise Rejected(
            f"one signal column ({', '.join(kept)}) and labels: not an ROI table for the fMRI models"
        )
    found.sure = "fmri" in kinds or p.is_dir()
    if p.is_dir():
        from brainpipe.io.fmri import find_tables

        extra = [f.name for f in find_tables(p) if f not in tables]
        if extra:  # the reader takes every table-suffixed file of the folder
            found.questions.append(
                Question(
                    "path",
                    "<a folder of the ROI tables only>",
                    f"the reader would read {', '.join(extra)} as ROI tables too; move them out of {p}",
                    required=True,
                )
            )
    return found


# ---- readers without a look-inside here ----------------------------------------------------------------------------
def _sniff_generic(reader: Reader, p: Path) -> FoundDataset | None:
    """A reader registered after this module was written: its detector decides; small data is read to say more."""
    found = FoundDataset(p, reader.modality, reader.name, sure=False)
    for opt in reader.required:
        found.questions.append(
            Question(
                f"options.{opt}" if reader.modality != "fmri" else opt,
                f"<{opt}>",
                f"needed by format '{reader.name}'",
                required=True,
            )
        )
    if found.questions or _size(p) > FULL_READ_BYTES:
        return found
    from brainpipe.io import read

    try:
        result = read(p, reader.modality, reader.name)
        ds = next(iter(result)) if reader.modality == "fmri" else result
    except (InputError, ConfigError, StopIteration) as err:
        found.notes.append(f"reading it failed: {err}")
        return None
    if reader.modality == "spikes":
        found.facts.update(_spike_facts(ds))
    found.sure = True
    return found


def _content_claims(p: Path) -> set[tuple[str, str]]:
    """Formats a file's content names although their detector leaves them to ``format:`` (a CSV/TSV of binned
    counts with a ``bin_width_s`` sidecar)."""
    if p.is_file() and p.suffix.lower() in (".csv", ".tsv") and _sidecar_value(p, ("bin_width_s",))[0]:
        return {("spikes", "binned")}
    return set()


def _sniff_binned_table(reader: Reader, p: Path) -> FoundDataset | None:
    """Binned counts in a CSV/TSV: one column per unit (whole numbers), other numeric columns are behaviour."""
    width, _ = _sidecar_value(p, ("bin_width_s",))
    if p.suffix.lower() not in (".csv", ".tsv") or not width:
        return None if p.suffix.lower() in (".csv", ".tsv") else _sniff_generic(reader, p)
    import pandas as pd

    try:
        df = pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ",", nrows=20000)
    except (OSError, ValueError) as err:
        raise Rejected(f"cannot be read as a table ({' '.join(str(err).split())[:100]})") from None
    special = {"time", "trial", "split"}
    behaviour = [
        str(c)
        for c in df.columns
        if str(c) not in special
        and (
            df[c].dtype.kind == "f"
            and not np.all(df[c].dropna() == np.round(df[c].dropna()))
            or df[c].min() < 0
        )
    ]
    found = FoundDataset(p, "spikes", reader.name)
    if behaviour:
        found.keys["options"] = {"behaviour_keys": behaviour}
    found.facts.update(bin_width_s=width)
    _read_spikes(found)
    return found


#: The look-inside of each known format: ``(modality, format) -> sniff(reader, path)``, returning the dataset or None
#: when the content is not of that format after all.
SNIFFERS: dict[tuple[str, str], Callable[[Reader, Path], FoundDataset | None]] = {
    ("spikes", "nwb"): _sniff_spike_nwb,
    ("spikes", "phy"): _sniff_phy,
    ("spikes", "trialized_npz"): _sniff_trialized,
    ("spikes", "table"): _sniff_spike_table,
    ("spikes", "matclust"): _sniff_matclust,
    ("spikes", "binned"): _sniff_binned_table,
    ("calcium", "suite2p"): _sniff_suite2p,
    ("calcium", "nwb"): _sniff_calcium_nwb,
    ("calcium", "npy"): _sniff_calcium_array,
    ("calcium", "csv"): _sniff_calcium_array,
    ("calcium", "hdf5"): _sniff_calcium_hdf5,
    ("fmri", "fmriprep"): _sniff_fmriprep,
    ("fmri", "nifti"): _sniff_nifti,
    ("fmri", "table"): _sniff_fmri_table,
}


# ---- the walk --------------------------------------------------------------------------------------------------------
def _is_doc(p: Path) -> bool:
    if _DOC_NAMES.match(p.name) or p.suffix.lower() in _DOC_SUFFIXES:
        return True
    if p.suffix.lower() == ".txt":  # an AFNI-style numeric table is data; prose is not
        try:
            np.loadtxt(p, comments="#", ndmin=2, max_rows=3)
        except (OSError, ValueError, UnicodeDecodeError):
            return True
    return False


def _claim(p: Path, out: Scan) -> list[FoundDataset]:
    """The datasets at ``p`` (none, one, two for an NWB file with units and ophys, or one undecided)."""
    results: list[FoundDataset] = []
    failed: list[str] = []
    claimed = _content_claims(p)
    for reader in readers():
        try:
            if not (reader.matches(p) or (reader.modality, reader.name) in claimed):
                continue
            found = SNIFFERS.get((reader.modality, reader.name), _sniff_generic)(reader, p)
        except (InputError, ConfigError, OSError, Rejected) as err:
            failed.append(str(err))
            continue
        if found is not None:
            results.append(found)
    sure = [f for f in results if f.sure]
    if sure:
        return sure
    if len(results) == 1:
        return results
    if results:
        undecided = FoundDataset(
            p,
            None,
            None,
            choices=tuple((f.modality, f.format) for f in results),
            facts=results[0].facts,
            consumes=results[0].consumes,
        )
        return [undecided]
    if failed and p.is_file():
        out.skipped.append((p, failed[0]))
    return []


def _visit(p: Path, out: Scan, top: bool) -> None:
    if not top and p.name.startswith((".", "_")):
        out.skipped.append((p, "hidden"))
        return
    if p.is_file() and _is_doc(p):
        out.skipped.append((p, "documentation"))
        return
    n_skipped = len(out.skipped)
    found = _claim(p, out)
    out.extend(found)
    if p.is_dir():
        consumed: set[Path] = set()
        for f in found:
            if f.consumes == "all":
                return
            consumed |= set(f.consumes)
        for child in sorted(p.iterdir()):
            if child not in consumed:
                _visit(child, out, top=False)
    elif not found and len(out.skipped) == n_skipped:
        reason = "a sidecar" if p.suffix.lower() in _SIDECAR_SUFFIXES else "no reader claims it"
        if p.name == "participants.tsv":
            reason = "participants table (read with the fMRI data beside it)"
        out.skipped.append((p, reason))


def scan(paths: Iterable[str | os.PathLike]) -> Scan:
    """Find the datasets in folders and files.

    Parameters
    ----------
    paths : iterable of str or PathLike
        Folders to walk and files to look at.

    Returns
    -------
    Scan
        The datasets found (a list of :class:`FoundDataset`, named uniquely), with ``skipped`` (path, reason).

    Raises
    ------
    InputError
        A path does not exist.
    """
    out = Scan()
    for given in paths:
        p = Path(given)
        if not p.exists():
            raise InputError(f"{p}: does not exist; give folders or files that hold recordings")
        out.roots.append(p)
        _visit(p, out, top=True)
    _name(out)
    _group_calcium(out)
    _study_questions(out)
    used = {}
    for f in out:
        for key, value in [
            *f.keys.items(),
            *((f"options.{k}", v) for k, v in f.keys.get("options", {}).items()),
        ]:
            if isinstance(value, str) and key != "options":
                used[Path(value)] = f"read with {f.name} as {key}"
    out.skipped = [(p, used.get(p, reason)) for p, reason in out.skipped]
    return out


# ---- names and groups ------------------------------------------------------------------------------------------------
def _stem(p: Path) -> str:
    name = p.name
    for suf in (".nii.gz", ".tar.gz"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return p.stem if p.is_file() else name


def _sanitise(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_-")
    s = re.sub(r"_+", "_", s)
    return s or "dataset"


def _animal(p: Path) -> Path:
    """The folder or file that stands for one recording (a suite2p plane's animal folder, a file itself)."""
    q = p
    while _GENERIC.match(_stem(q)) and q.parent != q and q.parent.name:
        q = q.parent
    return q


def _base_name(f: FoundDataset) -> str:
    q = _animal(f.path)
    name = _stem(q)
    if (
        re.fullmatch(r"(session|sess|run|rec|animal|mouse|subject|sub)[_-]?\w{0,3}", name, re.I)
        and q.parent.name
    ):
        name = f"{_stem(_animal(q.parent))}_{name}"  # 'session1' alone says little
    plane = re.fullmatch(r"plane(\d+)", f.path.name)
    if plane and any(
        s.is_dir() and s.name.startswith("plane") and s != f.path for s in f.path.parent.iterdir()
    ):
        name += f"_plane{plane.group(1)}"
    return _sanitise(name)


def _name(found: Scan) -> None:
    names = [_base_name(f) for f in found]
    for n, count in Counter(names).items():
        if count < 2:
            continue
        clash = [i for i, m in enumerate(names) if m == n]
        for i in clash:  # the format (or modality) tells them apart: steinmetz_session1_nwb / _npz
            f = found[i]
            if len({found[j].format for j in clash}) == 1:
                tag = f.modality or "undecided"
            elif len({found[j].path.suffix for j in clash}) == len(clash) and f.path.suffix:
                tag = f.path.suffix.lstrip(".")
            else:
                tag = f.format or "undecided"
            names[i] = _sanitise(f"{n}_{tag}")
    seen: Counter[str] = Counter()
    for f, n in zip(found, names, strict=True):
        seen[n] += 1
        f.name = n if seen[n] == 1 else f"{n}-{seen[n]}"


def _group_calcium(found: Scan) -> None:
    for f in found:
        if f.modality == "calcium":
            f.group = str(_animal(f.path).parent)


def _study_questions(found: Scan) -> None:
    """A connectome study of animals imaged at different frame rates needs the rate to resample them to."""
    groups: dict[str, list[FoundDataset]] = {}
    for f in found:
        if f.modality == "calcium":
            groups.setdefault(f.group or "", []).append(f)
    for folder, members in groups.items():
        _match_question(folder, members)
        rates = {f.name: f.facts.get("frame_rate_hz") for f in members}
        known = {r for r in rates.values() if r}
        if len(known) < 2:
            continue
        listed = ", ".join(f"{n} {r:g} Hz" if r else f"{n} unknown" for n, r in rates.items())
        supported = _schema_has("calcium", "connectome", "studies", "*", "target_rate_hz")
        members[0].questions.append(
            Question(
                "target_rate_hz" if supported else "frame_rate_hz",
                "<Hz>",
                f"one frame rate for the study; the animals differ ({listed})"
                + ("; they are resampled to it" if supported else "; check each dataset's frame_rate_hz"),
                required=supported,
                full_key=f"calcium.connectome.studies.{_study_name(folder)}."
                + ("target_rate_hz" if supported else "datasets"),
            )
        )


def _match_question(folder: str, members: list[FoundDataset]) -> None:
    """Animals without neuron labels are paired by ROI index only when the study says so: ask for ``match_by``."""
    if len(members) < 2 or not _schema_has("calcium", "connectome", "studies", "*", "match_by"):
        return
    labelled = [f.name for f in members if f.facts.get("neuron_labels")]
    if len(labelled) == len(members):
        return  # matched by label (the default, auto)
    if labelled:
        hint = (
            f"neuron labels in {', '.join(labelled)} only; add labels to the others (suite2p: labels.tsv beside "
            "F.npy) or pair ROIs by index"
        )
    else:
        hint = "no neuron labels in these animals: index pairs ROI i of every animal (right if they are the same cells)"
    members[0].questions.append(
        Question(
            "match_by",
            "index",
            hint,
            required=True,
            full_key=f"calcium.connectome.studies.{_study_name(folder)}.match_by",
        )
    )


def _study_name(folder: str) -> str:
    return _sanitise(Path(folder).name or "calcium")


def _schema_has(*path: str) -> bool:
    """Whether the study schema has the key at ``path`` (``*`` steps into a mapping's values)."""
    from brainpipe.config import load_schema

    node: Any = load_schema()
    for part in path:
        node = node.get("additionalProperties") if part == "*" else node.get("properties", {}).get(part)
        if not isinstance(node, dict):
            return False
    return True


# ---- the study file ----------------------------------------------------------------------------------------------------
def _yaml(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def _path_text(p: Path, relative: bool) -> str:
    return str(p) if relative or p.is_absolute() else str(p.resolve())


def _entry(f: FoundDataset, relative: bool, indent: str) -> list[str]:
    """The YAML lines of one dataset entry (its keys, then its open questions as commented lines)."""
    lines = [f"{indent}{f.name}:" + (f"   # {f.format}: {f.summary}" if f.summary else f"   # {f.format}")]
    keys: dict[str, Any] = {"path": _path_text(f.path, relative), "format": f.format, **f.keys}
    if f.modality == "calcium" and f.facts.get("kind") and _schema_has("calcium", "datasets", "*", "kind"):
        keys["kind"] = f.facts["kind"]
    for k, v in keys.items():
        if k in ("atlas", "atlas_labels", "participants"):
            v = _path_text(Path(v), relative)
        if k == "options":
            v = {o: _path_text(Path(x), relative) if o == "position" else x for o, x in v.items()}
        lines.append(f"{indent}  {k}: {_yaml(v)}")
    for q in f.questions:
        if q.full_key or (q.key == "kind" and not _schema_has("calcium", "datasets", "*", "kind")):
            continue
        head, _, sub = q.key.partition(".")
        text = f"{{{sub}: {q.placeholder}}}" if sub else q.placeholder
        lines.append(f"{indent}  # {head}: {text}  # could not determine: {q.hint}")
    lines += [f"{indent}  # {n}" for n in f.notes]
    return lines


def _spike_target(f: FoundDataset) -> tuple[dict[str, Any] | None, list[str]]:
    beh, stim = f.facts.get("behaviour", []), f.facts.get("stimulus", [])
    if beh:
        var = next((b for p in _BEHAVIOUR_PREF for b in beh if b.lower() == p), beh[0])
        return {"source": "behaviour", "variable": var}, [b for b in beh if b != var]
    values = f.facts.get("stimulus_values", {})
    discrete = [s for s in stim if 2 <= values.get(s, 0) <= 10]
    if discrete:
        var = next((s for p in _STIMULUS_PREF for s in discrete if s.lower() == p), discrete[0])
        return {"source": "stimulus", "variable": var, "kind": "classification"}, [
            s for s in stim if s != var
        ]
    return None, stim


def study_yaml(found: Sequence[FoundDataset], name: str = "my-study", sources: Sequence[str] = ()) -> str:
    """The commented study file for the datasets found by :func:`scan`.

    Parameters
    ----------
    found : sequence of FoundDataset
        The datasets (named), e.g. a :class:`Scan`.
    name : str
        The study name (``study.name``; letters, digits, ``_ . -``).
    sources : sequence of str
        The paths that were scanned, for the header comment (default: ``found.roots`` of a :class:`Scan`).

    Returns
    -------
    str
        YAML text: every dataset with what its files say as comments, the models that fit it enabled, and a
        commented placeholder line for each key that could not be determined.
    """
    from brainpipe import __version__

    sources = list(sources) or [str(r) for r in getattr(found, "roots", [])]
    relative = Path("Snakefile").is_file()  # run from the checkout: paths as given; elsewhere: absolute
    by = {m: [f for f in found if f.modality == m] for m in ("spikes", "calcium", "fmri")}
    undecided = [f for f in found if f.modality is None]
    counts = ", ".join(f"{len(v)} {m}" for m, v in by.items() if v) or "no"
    where = ", ".join(sources) or "the given folders"
    description = f"Written by brainpipe init from {where}: {counts} dataset(s)."
    out = [
        f"# brainpipe study written by `brainpipe init {' '.join(sources)}` (brainpipe {__version__}).",
        "# Every key is documented in config/README.md. Check it: `brainpipe check-config THIS_FILE`;",
        "# run it: `snakemake --configfile THIS_FILE` from the brainpipe folder.",
        "# A line `# key: <...>  # could not determine: ...` is a value the files did not say: set it and",
        "# remove the leading '# '. Paths are "
        + ("as given (relative to this folder)." if relative else "absolute."),
    ]
    skipped = getattr(found, "skipped", [])
    if skipped:
        out.append(f"# Skipped {len(skipped)} path(s):")
        out += [f"#   {p} ({r})" for p, r in skipped[:40]]
        if len(skipped) > 40:
            out.append(f"#   ... and {len(skipped) - 40} more")
    out += [
        "study:",
        f"  name: {_yaml(name)}",
        f"  description: {_yaml(description)}",
        "",
    ]
    if by["spikes"]:
        out += ["spikes:", "  datasets:"]
        for f in by["spikes"]:
            out += _entry(f, relative, "    ")
            if f.facts.get("bin_width_s"):
                out.append(f"    {'':2}bin: {{bin_width_s: {f.facts['bin_width_s']:g}}}   # the file's bins")
            if f.facts.get("units", 0) > 50:
                out.append(
                    f"      # bin: {{qc: {{max_units: 30}}}}  # {f.facts['units']} units: the switching GLM's cost "
                    "grows with units^2; keep the most active ones to start"
                )
        out += [
            "  poisson_glm:",
            "    enabled: true        # a coupled Poisson GLM on every spike dataset (the baseline)",
            "  switching_glm:",
            "    enabled: true        # HMM-GLMs: one state vs no prior vs a Gaussian prior around a shared connectome",
            "    datasets:",
        ]
        out += [f"      {f.name}: {{variants: [single, none, gaussian]}}" for f in by["spikes"]]
        out.append("")
        decoded = [(f, *_spike_target(f)) for f in by["spikes"]]
        decoded = [d for d in decoded if d[1] is not None]
        out += [
            "neuroformer:",
            f"  enabled: {'true' if decoded else 'false'}"
            + ("" if decoded else "   # no behaviour or trial variable to decode"),
            "  datasets:" if decoded else "  datasets: {}",
        ]
        for f, target, others in decoded:
            out.append(f"    {f.name}:")
            out.append(
                f"      target: {_yaml(target)}"
                + (f"   # also in the file: {', '.join(others)}" if others else "")
            )
        out.append("")
    if by["calcium"]:
        from brainpipe.config import section_defaults

        window = section_defaults("calcium.preprocess")["baseline"]["window_s"]
        out += ["calcium:", "  datasets:"]
        for f in by["calcium"]:
            out += _entry(f, relative, "    ")
            duration = f.facts.get("duration_s")
            if duration is not None and duration < 2 * window:
                out.append(
                    f"      preprocess: {{baseline: {{window_s: {max(round(duration / 4, 1), 0.1):g}}}}}   # a "
                    f"{duration:.0f} s recording: the default {window:g} s running baseline does not fit"
                )
        out += ["  connectome:", "    enabled: true", "    studies:"]
        groups: dict[str, list[FoundDataset]] = {}
        for f in by["calcium"]:
            groups.setdefault(f.group or "", []).append(f)
        used: set[str] = set()
        for folder, members in groups.items():
            study = _study_name(folder)
            while study in used:
                study += "_2"
            used.add(study)
            out.append(
                f"      {study}:" + f"   # {len(members)} animal{'s' if len(members) > 1 else ''} in {folder}"
            )
            out.append(f"        datasets: {_yaml([f.name for f in members])}")
            for q in (q for f in members for q in f.questions if q.full_key):
                out.append(f"        # {q.key}: {q.placeholder}  # could not determine: {q.hint}")
        out.append("")
    if by["fmri"]:
        out += ["fmri:", "  datasets:"]
        for f in by["fmri"]:
            out += _entry(f, relative, "    ")
        out += [
            "  brainmae:",
            "    enabled: true         # masked-ROI pretraining; probe and fine-tuning on the participants' labels",
        ]
        out.append("")
    if undecided:
        out.append(
            "# Undecided: the content fits several readers; move each entry under the branch it belongs to."
        )
        for f in undecided:
            choices = " or ".join(f"{m}.datasets with format: {fmt}" for m, fmt in f.choices)
            out.append(
                f"#   {f.name}: {{path: {_path_text(f.path, relative)}}}   # could not determine: {choices}"
            )
        out.append("")
    out += ["report:", f"  title: {_yaml(f'{name} (brainpipe init)')}", ""]
    return "\n".join(out)


def check_study(text: str, source: str = "study") -> list[str]:
    """What keeps a written study from running: its schema/cross-check error, if any.

    Parameters
    ----------
    text : str
        The study YAML (:func:`study_yaml`).
    source : str
        How to name the study in the message (its file name).

    Returns
    -------
    list of str
        Empty when the study validates (:func:`brainpipe.config.validate_config`); else its one-line error.
    """
    import yaml

    from brainpipe.config import validate_config

    try:
        validate_config(yaml.safe_load(text), source=source)
    except ConfigError as err:
        return [str(err)]
    return []
