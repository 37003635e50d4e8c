"""One clock and one set of neuron identities for a connectome study's animals, and their traces.

Before the affinities (:mod:`brainpipe.preprocess.affinity`), :func:`align_animals` puts the animals of a study on
one clock and one set of neuron identities:

* **frame rate**: rates within ``rate_tolerance`` (relative, default 1e-3) of the common rate are taken as equal to
  it (no resampling; timing error at most tolerance x duration); the common rate is ``target_rate_hz`` when the
  study sets one, else the median of the animals' rates, and rates further apart without a target are an error.
  An animal further from the target is resampled (:func:`resample_traces`: Gaussian anti-alias low-pass when
  downsampling, then linear interpolation onto the target time grid). Original and common rates are recorded
  (``animal_frame_rate_hz``, ``frame_rate_hz``);
* **neuron identity**: by label (``match_by: label``, or ``auto`` when every animal carries labels: a reader's
  ``label`` variable; simulated animals' cell ids are their planted identities, so they count as labels), keeping
  each animal's labelled neurons; by ROI id (``roi<index>``, ``n<column>``) only with ``match_by: index``. The
  number of neurons each animal contributes and the neurons and pairs shared are recorded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy.ndimage import gaussian_filter1d

from brainpipe.errors import ConfigError, InputError

__all__ = [
    "MATCH_BY",
    "RESAMPLE_METHOD",
    "Alignment",
    "AnimalTraces",
    "align_animals",
    "animal_labels",
    "common_frame_rate",
    "resample_traces",
]


@dataclass
class AnimalTraces:
    """One animal's dF/F (time, cell) with cell identities (shared across animals), its frame rate and labels.

    Parameters
    ----------
    name : str
        The animal (or recording) name, used in messages.
    dff : numpy.ndarray
        (time, cell) dF/F.
    cells : list of str
        Cell identities, shared across animals.
    frame_rate_hz : float
        Frames per second.
    labels : list of str, optional
        Neuron labels per cell ("" unlabelled), when the recording carries them (:func:`animal_labels`); used by
        :func:`align_animals`.
    """

    name: str
    dff: np.ndarray
    cells: list[str]
    frame_rate_hz: float
    labels: list[str] | None = None


# ---- one clock and one set of identities across animals -----------------------------------------------
#: how an animal is resampled to the common rate (recorded in the tensor's ``resample_method`` attribute)
RESAMPLE_METHOD = (
    "Gaussian anti-alias low-pass (sigma = half the source frames per target frame; downsampling only) then "
    "linear interpolation onto the target time grid k / target_rate_hz"
)
#: how neurons are matched across the animals of a connectome study (``calcium.connectome.match_by``)
MATCH_BY = ("auto", "label", "index")


def resample_traces(x: np.ndarray, rate_hz: float, target_hz: float) -> np.ndarray:
    """Resample (time, n) traces from ``rate_hz`` to ``target_hz`` on the grid ``k / target_hz`` from 0.

    When downsampling by q = rate / target, a Gaussian low-pass of sigma q/2 source frames first (gain 0.29 at the
    target Nyquist frequency, 0.06 at 1.5 times it, half power near half of it), then linear interpolation onto
    the target grid. Chosen for calcium traces because it works for any rate ratio (polyphase resampling needs a
    rational one, e.g. 30.02 -> 10 Hz), and neither step overshoots: a polyphase FIR rings around the fast rise of
    a transient (negative lobes, spurious derivative correlations), while Gaussian smoothing and linear
    interpolation keep non-negative activity non-negative. Upsampling only interpolates (it adds no content).

    Parameters
    ----------
    x : numpy.ndarray
        (time, n) traces sampled at ``rate_hz``.
    rate_hz : float
        Their frame rate.
    target_hz : float
        The frame rate wanted.

    Returns
    -------
    numpy.ndarray
        (time', n) float64 traces at ``target_hz``, time' = floor((time - 1) x target / rate) + 1 frames (the
        same span).
    """
    x = np.asarray(x, dtype=np.float64)
    T = x.shape[0]
    if target_hz < rate_hz:
        x = gaussian_filter1d(x, (rate_hz / target_hz) / 2.0, axis=0, mode="nearest")
    n_out = int(math.floor((T - 1) * target_hz / rate_hz + 1e-9)) + 1
    pos = np.arange(n_out) * (rate_hz / target_hz)  # target frame k in source frames
    i = np.minimum(np.floor(pos).astype(np.int64), T - 1)
    w = (pos - i)[:, None]
    return x[i] * (1.0 - w) + x[np.minimum(i + 1, T - 1)] * w


def animal_labels(ds: xr.Dataset) -> list[str] | None:
    """The neuron labels of a ``calcium_traces`` dataset, or None when it carries none.

    Parameters
    ----------
    ds : xarray.Dataset
        Processed or raw ``calcium_traces``.

    Returns
    -------
    list of str or None
        The ``label`` variable ("" unlabelled) when present; for simulated animals (attr ``source`` starting
        ``simulate:``) the cell ids, which are the planted neuron identities; else None.
    """
    if "label" in ds:
        return [str(v) for v in ds["label"].values]
    if str(ds.attrs.get("source", "")).startswith("simulate:"):
        return [str(c) for c in ds["cell"].values]
    return None


@dataclass
class Alignment:
    """How :func:`align_animals` put a study's animals on one clock and one set of identities.

    Parameters
    ----------
    frame_rate_hz : float
        The common frame rate.
    source_rates : list of float
        Each animal's recorded frame rate.
    resampled : list of bool
        Whether each animal was resampled.
    rate_tolerance : float
        Relative tolerance within which rates were taken as equal.
    handling : str
        One line: how the rates were handled.
    match_by : str
        ``label`` or ``index``: how neurons were matched.
    n_cells : list of int
        Cells each animal brought.
    n_neurons : list of int
        Neurons each animal contributes to the tensor (its labelled cells when matching by label).
    n_shared_neurons : int
        Neurons every animal has.
    n_shared_pairs : int
        Neuron pairs every animal has.
    n_pairs_two_or_more : int
        Neuron pairs at least two animals have (those the animals can be compared on).
    """

    frame_rate_hz: float
    source_rates: list[float]
    resampled: list[bool]
    rate_tolerance: float
    handling: str
    match_by: str
    n_cells: list[int]
    n_neurons: list[int]
    n_shared_neurons: int
    n_shared_pairs: int
    n_pairs_two_or_more: int

    def attrs(self) -> dict[str, Any]:
        """The dataset attributes that record the alignment.

        Returns
        -------
        dict
            ``frame_rate_handling``, ``rate_tolerance``, ``resample_method`` (when an animal was resampled),
            ``neuron_matching`` and the shared counts.
        """
        out = {
            "frame_rate_handling": self.handling,
            "rate_tolerance": float(self.rate_tolerance),
            "neuron_matching": self.match_by,
            "n_shared_neurons": int(self.n_shared_neurons),
            "n_shared_pairs": int(self.n_shared_pairs),
            "n_pairs_two_or_more": int(self.n_pairs_two_or_more),
        }
        if any(self.resampled):
            out["resample_method"] = RESAMPLE_METHOD
        return out

    def variables(self) -> dict[str, tuple]:
        """The per-animal variables that record the alignment (dim ``animal``).

        Returns
        -------
        dict
            ``animal_frame_rate_hz``, ``animal_resampled``, ``animal_n_cells``, ``animal_n_neurons``.
        """
        return {
            "animal_frame_rate_hz": (
                "animal",
                np.asarray(self.source_rates, dtype=np.float64),
                {"units": "Hz", "long_name": "frame rate of the animal's recording (before any resampling)"},
            ),
            "animal_resampled": (
                "animal",
                np.asarray(self.resampled, dtype=np.int8),
                {"long_name": "1 if the animal's traces were resampled to the common frame rate"},
            ),
            "animal_n_cells": (
                "animal",
                np.asarray(self.n_cells, dtype=np.int64),
                {"long_name": "cells in the animal's recording"},
            ),
            "animal_n_neurons": (
                "animal",
                np.asarray(self.n_neurons, dtype=np.int64),
                {"long_name": "neurons the animal contributes (its labelled cells when matched by label)"},
            ),
        }


def _rate_key(study: str, leaf: str) -> str:
    return f"calcium.connectome.studies.{study}.{leaf}"


def common_frame_rate(
    names: Sequence[str],
    rates: Sequence[float],
    target_rate_hz: float | None = None,
    rate_tolerance: float = 1e-3,
    study: str = "<study>",
) -> tuple[float, list[bool], str]:
    """The common frame rate of a study's animals, which of them to resample, and how the rates were handled.

    Parameters
    ----------
    names : sequence of str
        The animals (named in messages).
    rates : sequence of float
        Their frame rates.
    target_rate_hz : float, optional
        The common rate wanted (config ``target_rate_hz``); None: the median rate, if every rate is within
        ``rate_tolerance`` of it.
    rate_tolerance : float
        Relative difference within which two rates count as equal.
    study : str
        The study (named in messages).

    Returns
    -------
    rate : float
        The common frame rate.
    resample : list of bool
        True for the animals further than the tolerance from it.
    handling : str
        One line for the outputs and the report.
    """
    rates = [float(r) for r in rates]
    common = float(target_rate_hz) if target_rate_hz else float(np.median(rates))
    far = [abs(r - common) > rate_tolerance * common for r in rates]
    listed = ", ".join(f"{n} {r:g} Hz" for n, r in zip(names, rates, strict=True))
    if any(far) and not target_rate_hz:
        raise ConfigError(
            f"connectome study {study!r}: the animals' frame rates ({listed}) differ by more than rate_tolerance "
            f"{rate_tolerance:g} (relative); set {_rate_key(study, 'target_rate_hz')} to resample them to one rate"
        )
    if any(far):
        handling = (
            f"{sum(far)} of {len(rates)} animal(s) resampled to {common:g} Hz; rates: {listed} "
            f"(tolerance {rate_tolerance:g})"
        )
    elif len(set(rates)) == 1 and rates[0] == common:
        handling = f"all animals recorded at {common:g} Hz"
    else:
        handling = f"rates within tolerance {rate_tolerance:g} taken as {common:g} Hz: {listed}"
    return common, far, handling


def _matched(names, animals, match_by: str, study: str) -> tuple[str, list[np.ndarray], list[list[str]]]:
    """How neurons are matched (``label`` or ``index``), and per animal the cells kept and their identities."""
    key = _rate_key(study, "match_by")
    if match_by not in MATCH_BY:
        raise ConfigError(f"{key}: {match_by!r} is not one of {', '.join(MATCH_BY)}")
    unlabelled = [n for n, a in zip(names, animals, strict=True) if a.labels is None]
    labelled = [n for n in names if n not in unlabelled]
    if match_by == "auto" and not unlabelled:
        match_by = "label"
    elif match_by == "auto" and len(animals) == 1:
        match_by = "index"  # one animal: nothing to match
    elif match_by == "auto" and not labelled:
        raise InputError(
            f"connectome study {study!r}: no animal carries neuron labels ({', '.join(unlabelled)}), so neurons "
            "could only be paired by ROI index; give labels (an NWB ROI table label column, labels.tsv beside "
            f"suite2p's F.npy) or set {key}: index if each ROI index is the same neuron in every animal"
        )
    elif match_by == "auto":
        raise InputError(
            f"connectome study {study!r}: neuron labels in {', '.join(labelled)} but not in "
            f"{', '.join(unlabelled)}; give every animal labels, or set {key}: index to pair ROIs by index"
        )
    elif match_by == "label" and unlabelled:
        raise InputError(
            f"connectome study {study!r}: {key} is label but {', '.join(unlabelled)} carry no neuron labels; "
            f"give them labels or set {key}: index"
        )
    keep, ids = [], []
    for n, a in zip(names, animals, strict=True):
        if match_by == "index":
            keep.append(np.arange(len(a.cells)))
            ids.append([str(c) for c in a.cells])
            continue
        k = np.array([i for i, lab in enumerate(a.labels) if lab], dtype=np.int64)
        if k.size == 0:
            raise InputError(
                f"connectome study {study!r}: animal {n} has no labelled neuron; label its neurons or set "
                f"{key}: index"
            )
        keep.append(k)
        ids.append([a.labels[i] for i in k])
    return match_by, keep, ids


def _shared(cells: Sequence[Sequence[str]]) -> tuple[int, int, int]:
    """(neurons every animal has, pairs every animal has, pairs at least two animals have), counted by presence
    pattern (neurons seen by the same animals), so the cost does not grow with the number of pairs."""
    pattern: dict[str, int] = {}
    for k, cs in enumerate(cells):
        for c in cs:
            pattern[c] = pattern.get(c, 0) | (1 << k)
    sizes: dict[int, int] = {}
    for m in pattern.values():
        sizes[m] = sizes.get(m, 0) + 1
    everyone = (1 << len(cells)) - 1
    all_pairs = two = 0
    items = sorted(sizes.items())
    for u, (p, n_p) in enumerate(items):
        for q, n_q in items[u:]:
            n = n_p * (n_p - 1) // 2 if p == q else n_p * n_q
            both = p & q
            all_pairs += n if both == everyone else 0
            two += n if both.bit_count() >= 2 else 0
    return sizes.get(everyone, 0), all_pairs, two


def align_animals(
    animals: Sequence[AnimalTraces],
    target_rate_hz: float | None = None,
    rate_tolerance: float = 1e-3,
    match_by: str = "auto",
    study: str = "<study>",
) -> tuple[list[AnimalTraces], Alignment]:
    """Put a study's animals on one frame rate and one set of neuron identities (see the module docstring).

    Parameters
    ----------
    animals : sequence of AnimalTraces
        The recordings, with their labels where they carry them.
    target_rate_hz : float, optional
        The common frame rate (config ``calcium.connectome.studies.<study>.target_rate_hz``).
    rate_tolerance : float
        Relative difference within which frame rates count as equal (config ``rate_tolerance``).
    match_by : str
        ``auto`` (by label when every animal carries labels), ``label`` or ``index`` (config ``match_by``).
    study : str
        The study (named in messages).

    Returns
    -------
    animals : list of AnimalTraces
        The animals at the common rate, ``cells`` = the identities they are matched by.
    alignment : Alignment
        What was done, for the outputs and the report.

    Raises
    ------
    brainpipe.errors.ConfigError
        Rates further apart than the tolerance without ``target_rate_hz``.
    brainpipe.errors.InputError
        Labels in some animals and not others (unless ``match_by: index``), no labels with ``label``, an animal
        without a labelled neuron, or no neuron pair shared by two animals.
    """
    names = [a.name for a in animals]
    rate, far, handling = common_frame_rate(
        names, [a.frame_rate_hz for a in animals], target_rate_hz, rate_tolerance, study
    )
    how, keep, ids = _matched(names, animals, match_by, study)
    out = []
    for a, f, k, i in zip(animals, far, keep, ids, strict=True):
        x = np.asarray(a.dff)[:, k]
        x = resample_traces(x, a.frame_rate_hz, rate).astype(x.dtype) if f else x
        out.append(AnimalTraces(a.name, x, i, rate, None))
    n_shared, n_all, n_two = _shared([a.cells for a in out])
    if len(out) > 1 and n_two == 0:
        raise InputError(
            f"connectome study {study!r}: no neuron pair is shared by two animals (matched by {how}: "
            + "; ".join(
                f"{a.name} has {', '.join(sorted(a.cells)[:3])}{' ...' if len(a.cells) > 3 else ''}"
                for a in out
            )
            + "); check that the animals' labels name the same neurons"
        )
    alignment = Alignment(
        frame_rate_hz=rate,
        source_rates=[float(a.frame_rate_hz) for a in animals],
        resampled=list(far),
        rate_tolerance=float(rate_tolerance),
        handling=handling,
        match_by=how,
        n_cells=[len(a.cells) for a in animals],
        n_neurons=[len(a.cells) for a in out],
        n_shared_neurons=n_shared,
        n_shared_pairs=n_all,
        n_pairs_two_or_more=n_two,
    )
    return out, alignment
