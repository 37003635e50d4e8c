"""What the folder scan finds: the datasets (:class:`FoundDataset`), the questions left open (:class:`Question`),
the scan's result (:class:`Scan`), and the name patterns the look-insides share."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def _duration(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.3g} s"
