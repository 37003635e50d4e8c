"""Pairwise affinities of calcium traces over sliding windows, and the (pair x window x animal) affinity tensor.

After Dyballa et al. (ICLR 2024, "Learning dynamic representations of the functional connectome in
neurobiological networks"). Their exact "differential affinity" could not be read here; the default affinity
(``softthresh_dcorr``) is a documented stand-in, and every affinity is a plug-in of :data:`AFFINITIES`.

Order of operations
-------------------
1. per animal, an :class:`Affinity`: its ``transform`` on the whole ``dff(time, cell)`` (e.g. smoothed
   derivatives), then its ``window`` map -> affinities per window for the animal's cell pairs (default:
   soft-thresholded correlation of smoothed derivatives).
2. :func:`build_tensor` (in memory) / :func:`tensor_chunks` (window chunk by window chunk, for
   :func:`brainpipe.data.affinity_tensor.write_tensor_zarr`): every animal's affinities placed on the union of
   neuron identities (pairs = upper triangle, ``i < j``); pairs an animal lacks are masked
   (``mask(pair, animal) = 0``) and hold 0.

Before step 1, :func:`~brainpipe.preprocess.alignment.align_animals` puts the animals of a study on one clock and
one set of neuron identities (:mod:`brainpipe.preprocess.alignment`; its names are importable from here too).

The tensor is factorised by :class:`brainpipe.models.connectome.DynamicConnectome`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy.ndimage import gaussian_filter1d

from brainpipe._docs import fill_doc
from brainpipe.errors import ConfigError, InputError
from brainpipe.preprocess.alignment import (
    MATCH_BY,
    RESAMPLE_METHOD,
    Alignment,
    AnimalTraces,
    align_animals,
    animal_labels,
    common_frame_rate,
    resample_traces,
)

#: the public names (:mod:`brainpipe.preprocess` and :mod:`brainpipe.models.connectome` export them all)
__all__ = [
    "AFFINITIES",
    "MATCH_BY",
    "RESAMPLE_METHOD",
    "Affinity",
    "Alignment",
    "AnimalTraces",
    "align_animals",
    "animal_labels",
    "build_tensor",
    "common_frame_rate",
    "get_affinity",
    "pair_index",
    "register_affinity",
    "resample_traces",
    "smoothed_derivative",
    "tensor_chunks",
    "tensor_dataset",
    "window_frames",
]


# ---- affinities --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Affinity:
    """A pluggable affinity between the cells of a recording, window by window.

    ``transform(x, params)`` is applied once to a whole (time, n) dF/F recording (so window chunks see the same
    signal), then ``window(w, params)`` maps a stack of windows (n_windows, window, n) of the transformed signal to
    non-negative (n_windows, n, n) affinities with a zero diagonal.

    Parameters
    ----------
    name : str
        The name the config uses (``calcium.connectome.affinity.name``).
    transform : callable
        ``transform(x, params)``: (time, n) dF/F -> (time, n) signal.
    window : callable
        ``window(w, params)``: (n_windows, window, n) -> (n_windows, n, n).
    description : str
        One line for the report.
    """

    name: str
    transform: Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]
    window: Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]
    description: str


AFFINITIES: dict[str, Affinity] = {}


def register_affinity(name: str, transform, window, description: str) -> None:
    """Add an affinity to :data:`AFFINITIES` (replacing one of the same name).

    Parameters
    ----------
    name : str
        The name the config uses (``calcium.connectome.affinity.name``).
    transform : callable
        ``transform(x, params)``: (time, n) dF/F -> (time, n) signal, applied once per recording.
    window : callable
        ``window(w, params)``: (n_windows, window, n) -> non-negative (n_windows, n, n), zero diagonal.
    description : str
        One line for the report and the docs.
    """
    AFFINITIES[name] = Affinity(name, transform, window, description)


def _windows(x: np.ndarray, window: int, stride: int) -> np.ndarray:
    """(n_windows, window, n) strided view of the rows of x."""
    v = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)[::stride]  # (nw, n, window)
    return np.moveaxis(v, 2, 1)


def _corr(w: np.ndarray) -> np.ndarray:
    """Pearson correlation of the columns within each window: (n_windows, n, n); 0 where a column is flat."""
    w = w.astype(np.float64)
    w = w - w.mean(axis=1, keepdims=True)
    sd = np.sqrt((w**2).mean(axis=1, keepdims=True))
    z = np.divide(w, sd, out=np.zeros_like(w), where=sd > 1e-12)
    return np.einsum("wti,wtj->wij", z, z) / w.shape[1]


def _zero_diag(a: np.ndarray) -> np.ndarray:
    idx = np.arange(a.shape[1])
    a[:, idx, idx] = 0.0
    return a


def smoothed_derivative(x: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """First difference of each trace, smoothed by a Gaussian of ``smooth_frames`` frames (0: none).

    Parameters
    ----------
    x : numpy.ndarray
        (time, n) traces.
    params : mapping
        ``smooth_frames`` (default 2.0): the Gaussian's sigma in frames.

    Returns
    -------
    numpy.ndarray
        (time, n) float64; the first row's difference is 0.
    """
    sigma = float(params.get("smooth_frames", 2.0))
    d = np.diff(np.asarray(x, dtype=np.float64), axis=0, prepend=x[:1])
    return gaussian_filter1d(d, sigma, axis=0, mode="nearest") if sigma > 0 else d


def _softthresh(w: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    r0 = min(float(params.get("null_z", 3.0)) / math.sqrt(w.shape[1]), 0.99)
    return _zero_diag(np.clip((_corr(w) - r0) / (1.0 - r0), 0.0, None))


register_affinity(
    "softthresh_dcorr",
    smoothed_derivative,
    _softthresh,
    "stand-in for the paper's differential affinity: d_i = Gaussian-smoothed (smooth_frames) first difference of "
    "dF/F_i; per window the Pearson r_ij of d_i, d_j; a_ij = max(0, (r_ij - r0) / (1 - r0)), r0 = null_z / sqrt(window)",
)
register_affinity(
    "pos_corr",
    lambda x, p: np.asarray(x, dtype=np.float64),
    lambda w, p: _zero_diag(np.clip(_corr(w), 0.0, None)),
    "positive part of the windowed Pearson correlation of dF/F (no derivative, no threshold)",
)


def _rectified_z(x: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    d = smoothed_derivative(x, params)
    sd = d.std(axis=0)
    return np.clip(np.divide(d - d.mean(axis=0), sd, out=np.zeros_like(d), where=sd > 1e-12), 0.0, None)


register_affinity(
    "coactivation",
    _rectified_z,
    lambda w, p: _zero_diag(np.einsum("wti,wtj->wij", w, w) / w.shape[1]),
    "the instantaneous variant averaged per window: mean of max(0, z'_i) max(0, z'_j), z' the smoothed derivative "
    "z-scored over the whole recording (high when both rise together)",
)


def get_affinity(name: str) -> Affinity:
    """The registered affinity of that name.

    Parameters
    ----------
    name : str
        A key of :data:`AFFINITIES`.

    Returns
    -------
    Affinity
        Its transform, window map and description; a one-line ConfigError naming the allowed ones otherwise.
    """
    if name not in AFFINITIES:
        raise ConfigError(f"unknown affinity {name!r} (allowed: {', '.join(sorted(AFFINITIES))})")
    return AFFINITIES[name]


def window_frames(
    frame_rate_hz: float, window_s: float, stride_s: float, n_frames: int, where: str = ""
) -> tuple[int, int]:
    """Window and stride in frames; an error when the window is longer than the recording.

    Parameters
    ----------
    frame_rate_hz : float
        Frames per second.
    window_s, stride_s : float
        Window length and stride in seconds (rounded to at least 2 and 1 frames).
    n_frames : int
        Frames in the recording.
    where : str
        What the recording is called in the error message.

    Returns
    -------
    tuple of int
        (window, stride) in frames.
    """
    w = max(2, int(round(window_s * frame_rate_hz)))
    s = max(1, int(round(stride_s * frame_rate_hz)))
    if w > n_frames:
        raise InputError(
            f"{where or 'recording'}: affinity window {window_s} s ({w} frames) is longer than the recording "
            f"({n_frames} frames at {frame_rate_hz} Hz); set calcium.connectome.affinity.window_s below "
            f"{n_frames / frame_rate_hz:.4g} s"
        )
    return w, s


def pair_index(neurons: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Upper-triangle pairs (i < j) of a neuron list, as two index arrays.

    Parameters
    ----------
    neurons : sequence of str
        Neuron identities.

    Returns
    -------
    tuple of numpy.ndarray
        ``(i, j)`` indices into ``neurons``, row-major over the upper triangle.
    """
    return np.triu_indices(len(neurons), k=1)


# ---- the tensor ----------------------------------------------------------------------------------------
def _layout(animals: Sequence[AnimalTraces], window_s: float, stride_s: float):
    fr = {a.frame_rate_hz for a in animals}
    if len(fr) != 1:
        raise InputError(
            f"connectome: animals have different frame rates ({', '.join(f'{a.name}={a.frame_rate_hz}' for a in animals)}); "
            "put them on one rate first (align_animals; config calcium.connectome.studies.<study>.target_rate_hz)"
        )
    rate = fr.pop()
    spans = []
    for a in animals:
        spans.append(window_frames(rate, window_s, stride_s, a.dff.shape[0], where=a.name))
    w, s = spans[0]
    n_frames = min(a.dff.shape[0] for a in animals)
    n_windows = (n_frames - w) // s + 1
    neurons = sorted({c for a in animals for c in a.cells})
    return rate, w, s, n_windows, neurons


@fill_doc
def tensor_chunks(
    animals: Sequence[AnimalTraces],
    affinity: str,
    params: Mapping[str, Any],
    window_s: float,
    stride_s: float,
    chunk_windows: int | None = None,
    memory_mb: float = 256.0,
) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
    """The affinity tensor, window chunk by window chunk.

    Parameters
    ----------
    %(animals)s
    %(affinity_name)s
    params : mapping
        The affinity's parameters.
    %(windows_s)s
    chunk_windows : int, optional
        Windows per chunk; by default as many as fit in about ``memory_mb``.
    memory_mb : float
        Memory budget of one chunk (with the per-window affinity matrices).

    Yields
    ------
    tuple
        ``(meta, windows, chunk)``: the layout (frame rate, window and stride frames, number of windows, neurons,
        pair indices, mask), the chunk's window indices, and its (pair, window, animal) float32 affinities.
    """
    rate, w, s, n_windows, neurons = _layout(animals, window_s, stride_s)
    aff = get_affinity(affinity)
    # whole-recording transform, kept in float32 (time x cells per animal: small next to the tensor it feeds)
    signals = [aff.transform(a.dff, params).astype(np.float32) for a in animals]
    ii, jj = pair_index(neurons)
    n_pairs = ii.size
    pos = {n: k for k, n in enumerate(neurons)}
    mask = np.zeros((n_pairs, len(animals)), dtype=np.int8)
    lookup = np.full((len(neurons), len(neurons)), -1, dtype=np.int64)
    lookup[ii, jj] = np.arange(n_pairs)
    maps = []
    for k, a in enumerate(animals):
        g = np.array([pos[c] for c in a.cells])
        order = np.argsort(g)
        g = g[order]
        ai, aj = np.triu_indices(g.size, k=1)
        dest = lookup[g[ai], g[aj]]
        mask[dest, k] = 1
        maps.append((order, ai, aj, dest))
    if chunk_windows is None:
        per_window = n_pairs * len(animals) * 4 + sum(len(a.cells) ** 2 * 8 * 3 for a in animals)
        chunk_windows = max(1, int(memory_mb * 2**20 // max(per_window, 1)))
    meta = {
        "frame_rate_hz": rate,
        "window_frames": w,
        "stride_frames": s,
        "n_windows": n_windows,
        "neurons": neurons,
        "pair_i": ii,
        "pair_j": jj,
        "mask": mask,
    }
    for lo in range(0, n_windows, chunk_windows):
        hi = min(n_windows, lo + chunk_windows)
        out = np.zeros((n_pairs, hi - lo, len(animals)), dtype=np.float32)
        for k in range(len(animals)):
            order, ai, aj, dest = maps[k]
            seg = signals[k][lo * s : (hi - 1) * s + w][:, order]
            a_win = aff.window(_windows(seg, w, s), params)  # (n_win, n, n)
            out[dest, :, k] = a_win[:, ai, aj].T
        yield meta, np.arange(lo, hi), out


def tensor_dataset(meta, windows: np.ndarray, chunk: np.ndarray, animal_names, attrs) -> xr.Dataset:
    """One chunk of :func:`tensor_chunks` as an ``affinity_tensor`` dataset (without the file attributes).

    Parameters
    ----------
    meta : dict
        The layout yielded with the chunk.
    windows : numpy.ndarray
        The chunk's window indices.
    chunk : numpy.ndarray
        (pair, window, animal) affinities.
    animal_names : sequence of str
        One name per animal.
    attrs : mapping
        Attributes to add (affinity, window_s, stride_s).

    Returns
    -------
    xarray.Dataset
        ``affinity``, ``window_start_s``, ``pair_i``, ``pair_j``, ``mask`` with their coordinates.
    """
    rate, w, s = meta["frame_rate_hz"], meta["window_frames"], meta["stride_frames"]
    neurons = np.asarray(meta["neurons"])
    t0 = (windows * s) / rate
    ds = xr.Dataset(
        {
            "affinity": (
                ("pair", "window", "animal"),
                chunk,
                {"units": "1", "long_name": "pairwise affinity"},
            ),
            "window_start_s": (("window",), t0.astype(np.float64), {"units": "s"}),
        },
        coords={
            "window": ("window", windows.astype(np.int64)),
            "pair": ("pair", np.arange(meta["pair_i"].size, dtype=np.int64)),
            "animal": ("animal", np.asarray(animal_names)),
            "neuron": ("neuron", neurons),
            "time": (
                "window",
                (t0 + 0.5 * w / rate).astype(np.float64),
                {"units": "s", "long_name": "window centre"},
            ),
        },
        attrs={**attrs, "frame_rate_hz": rate, "window_frames": w, "stride_frames": s},
    )
    ds["pair_i"] = (
        "pair",
        meta["pair_i"].astype(np.int64),
        {"long_name": "index into 'neuron' of the first neuron"},
    )
    ds["pair_j"] = (
        "pair",
        meta["pair_j"].astype(np.int64),
        {"long_name": "index into 'neuron' of the second neuron"},
    )
    ds["mask"] = (
        ("pair", "animal"),
        meta["mask"],
        {"long_name": "1 if the animal has both neurons of the pair"},
    )
    return ds


@fill_doc
def build_tensor(
    animals: Sequence[AnimalTraces],
    affinity: str = "softthresh_dcorr",
    params: Mapping[str, Any] | None = None,
    window_s: float = 5.0,
    stride_s: float = 2.5,
) -> xr.Dataset:
    """Build the whole (pair, window, animal) affinity tensor in memory.

    It is an ``affinity_tensor`` dataset without the file attributes. For large data use
    :func:`brainpipe.data.affinity_tensor.write_tensor_zarr`.

    Parameters
    ----------
    %(animals)s
    %(affinity_name)s
    params : mapping, optional
        The affinity's parameters.
    %(windows_s)s

    Returns
    -------
    xarray.Dataset
        See :func:`tensor_dataset`.
    """
    parts = list(tensor_chunks(animals, affinity, params or {}, window_s, stride_s, chunk_windows=10**9))
    meta, win, chunk = parts[0]
    attrs = {"affinity": affinity, "window_s": float(window_s), "stride_s": float(stride_s)}
    return tensor_dataset(meta, win, chunk, [a.name for a in animals], attrs)
