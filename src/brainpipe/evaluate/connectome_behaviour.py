"""Dynamic-connectome time courses related to behaviour variables, per animal, against a null and the baselines.

For each behaviour variable and each method (the NTF and every baseline of
:mod:`brainpipe.evaluate.connectome_baselines`), every time course (an NTF component; a baseline community or NMF
component) is related to the variable in each animal that carries it: the variable averaged over each tensor window
(on its own clock), then Pearson r (continuous variables) or the AUROC of the time course for windows where a 0/1
variable is mostly 1. The NTF's time course in an animal is the shared time factor (``time_mode: shared``) or that
animal's own (``per_animal``); the baselines' are per animal (:func:`baseline_communities` with ``per_animal``).
The values are averaged over the animals, and the component with the largest strength (``|r|``, or
``|2 AUROC - 1|``) is reported.

Null: the behaviour circularly shifted within each animal's session (a uniform shift between 10 % and 90 % of the
session; the same shifts for every method), the best strength recomputed each time (so the choice of the best
component is part of the null); p = (1 + shifts at least as strong) / (1 + shifts).

Metrics (``behaviour_<var>_<stat>_<who>``, stat ``r`` or ``auroc``): ``ntf`` (best component's value), ``ntf_factor``
(its index), ``ntf_p``, one per baseline, ``best_baseline`` (the strongest baseline's value), ``best_baseline_p`` and
``ntf_vs_best_baseline`` (the NTF's strength minus the strongest baseline's). No bar is set by default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from brainpipe.evaluate.connectome_baselines import BASELINES
from brainpipe.evaluate.metrics import METRIC_PATTERNS

__all__ = ["WHO", "behaviour_metrics", "window_means"]

#: the suffixes of a behaviour metric's name, after ``behaviour_<var>_<stat>_``
WHO = ("ntf", "ntf_factor", "ntf_p", *BASELINES, "best_baseline", "best_baseline_p", "ntf_vs_best_baseline")
_TEXT = {
    "ntf": "the NTF component most related to the variable (mean over animals)",
    "ntf_factor": "index of that NTF component",
    "ntf_p": "p-value of the NTF's best strength against circular shifts of the behaviour",
    "best_baseline": "the strongest baseline's best time course (mean over animals)",
    "best_baseline_p": "p-value of the strongest baseline's best strength against circular shifts",
    "ntf_vs_best_baseline": "NTF strength (|r| or |2 AUROC - 1|) minus the strongest baseline's",
}
METRIC_PATTERNS.extend(
    (
        re.compile(rf"behaviour_(?P<var>.+)_(?P<stat>r|auroc)_{who}"),
        "<=" if who.endswith("_p") else ">=",
        "behaviour {var} ({stat}): "
        + _TEXT.get(who, f"baseline {who}'s best time course (mean over animals)"),
    )
    for who in WHO
)


def window_means(
    window_start_s: np.ndarray, window_s: float, behaviour_time_s: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """Each variable averaged over each window (NaN where the window holds no behaviour sample).

    Parameters
    ----------
    window_start_s : numpy.ndarray
        (W,) window starts (s).
    window_s : float
        Window length (s).
    behaviour_time_s : numpy.ndarray
        (T,) increasing sample times (s).
    values : numpy.ndarray
        (T,) or (T, V) samples.

    Returns
    -------
    numpy.ndarray
        (W,) or (W, V) means.
    """
    t = np.asarray(behaviour_time_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ws = np.asarray(window_start_s, dtype=np.float64)
    lo = np.searchsorted(t, ws, side="left")
    hi = np.searchsorted(t, ws + float(window_s), side="left")
    csum = np.concatenate([np.zeros((1, *v.shape[1:])), np.cumsum(v, axis=0)])
    n = (hi - lo).reshape(-1, *([1] * (v.ndim - 1)))
    return np.where(n > 0, (csum[hi] - csum[lo]) / np.maximum(n, 1), np.nan)


def _prepared(tc: np.ndarray, ok: np.ndarray, binary: bool) -> np.ndarray:
    """Per component, the time course over the usable windows: ranks (binary) or z-scores (continuous)."""
    x = tc[:, ok]
    if binary:
        return np.array([rankdata(row) for row in x]).reshape(x.shape)
    sd = x.std(1, keepdims=True)
    return np.where(sd > 0, (x - x.mean(1, keepdims=True)) / np.where(sd > 0, sd, 1.0), np.nan)


def _relate(prep: np.ndarray, y: np.ndarray, binary: bool) -> np.ndarray:
    """(K,) Pearson r or AUROC of each prepared time course against the window means ``y`` (NaN if undefined)."""
    if binary:
        pos = y > 0.5
        n1, n0 = int(pos.sum()), int((~pos).sum())
        if not (n1 and n0):
            return np.full(prep.shape[0], np.nan)
        return (prep[:, pos].sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    sd = y.std()
    if not sd > 0:
        return np.full(prep.shape[0], np.nan)
    return (prep * ((y - y.mean()) / sd)).mean(1)


def _strength(v: np.ndarray, binary: bool) -> np.ndarray:
    return np.abs(2 * v - 1) if binary else np.abs(v)


def behaviour_metrics(
    time_courses: Mapping[str, np.ndarray],
    window_start_s: np.ndarray,
    window_s: float,
    behaviours: Sequence[Mapping | None],
    n_shifts: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """Relate every method's time courses to every behaviour variable, per animal (module docstring).

    Parameters
    ----------
    time_courses : mapping
        Method (``"ntf"`` and baseline names) -> (K, window, animal) time courses (K may differ by method).
    window_start_s : numpy.ndarray
        (window,) window starts (s) on the animals' clock.
    window_s : float
        Window length (s).
    behaviours : sequence
        Per animal (tensor order), None or ``{"time": (T,), "values": (T, V), "names": [V]}``.
    n_shifts : int
        Circular shifts in the null.
    seed : int
        Seed of the shifts.

    Returns
    -------
    dict
        Metric name -> value (``behaviour_<var>_<stat>_<who>``); empty when no animal carries behaviour.
    """
    names: list[str] = []
    for b in behaviours:
        for n in b["names"] if b is not None else ():
            if n not in names:
                names.append(str(n))
    rng = np.random.default_rng([int(seed), 16])
    out: dict[str, float] = {}
    for var in names:
        per_animal = []  # (animal, window means, binary)
        for a, b in enumerate(behaviours):
            if b is None or var not in list(b["names"]):
                continue
            col = np.asarray(b["values"], dtype=np.float64)[:, list(b["names"]).index(var)]
            per_animal.append((a, np.asarray(b["time"], dtype=np.float64), col))
        binary = all(set(np.unique(c)) <= {0.0, 1.0} for _, _, c in per_animal)
        stat = "auroc" if binary else "r"
        shifts = [
            rng.integers(int(0.1 * c.size), max(int(0.9 * c.size), int(0.1 * c.size) + 1), n_shifts)
            for _, _, c in per_animal
        ]
        windows = []  # per animal: usable windows, window means, the shifted window means
        for (_, t, col), sh in zip(per_animal, shifts, strict=True):
            y = window_means(window_start_s, window_s, t, col)
            ok = np.isfinite(y)
            ys = window_means(window_start_s, window_s, t, np.stack([np.roll(col, int(k)) for k in sh], 1))
            windows.append((ok, y[ok], ys[ok].T))
        best: dict[str, tuple[float, float, int, float]] = {}  # method -> (value, strength, index, p)
        for method, tc_all in time_courses.items():
            tc_all = np.asarray(tc_all, dtype=np.float64)
            if tc_all.shape[0] == 0:
                continue
            obs, null = [], []
            for (a, _, _), (ok, y, ys) in zip(per_animal, windows, strict=True):
                prep = _prepared(tc_all[:, :, a], ok, binary)
                obs.append(_relate(prep, y, binary))
                null.append(np.stack([_relate(prep, yy, binary) for yy in ys]))  # (shift, K)
            mean = np.nanmean(np.stack(obs), 0) if obs else np.array([np.nan])
            s = _strength(mean, binary)
            if not np.isfinite(s).any():
                continue
            k = int(np.nanargmax(s))
            null_best = np.nanmax(_strength(np.nanmean(np.stack(null), 0), binary), axis=1)
            p = (1 + int(np.sum(null_best >= s[k] - 1e-12))) / (1 + n_shifts)
            best[method] = (float(mean[k]), float(s[k]), k, float(p))
        key = f"behaviour_{var}_{stat}"
        if "ntf" in best:
            v, _, k, p = best["ntf"]
            out.update({f"{key}_ntf": v, f"{key}_ntf_factor": float(k), f"{key}_ntf_p": p})
        bases = [m for m in BASELINES if m in best]
        for m in bases:
            out[f"{key}_{m}"] = best[m][0]
        if bases:
            top = max(bases, key=lambda m: best[m][1])
            out[f"{key}_best_baseline"] = best[top][0]
            out[f"{key}_best_baseline_p"] = best[top][3]
            if "ntf" in best:
                out[f"{key}_ntf_vs_best_baseline"] = best["ntf"][1] - best[top][1]
    return out
