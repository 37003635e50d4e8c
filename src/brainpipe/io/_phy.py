"""phy / Kilosort output folder reader."""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.io._common import LOG, assemble, check_train, fail, load_npy, require_dir, short, window

# Label files, weakest first: later ones override earlier ones cluster by cluster.
_LABEL_FILES = ("cluster_KSLabel.tsv", "cluster_info.tsv", "cluster_group.tsv")
UNLABELLED = "unsorted"  # phy's group of a cluster no label file names


def _load_npy(path: Path, kinds: str = "iuf") -> np.ndarray:
    return load_npy(
        path, f"phy {path.name}", kinds, "re-export the phy folder (sample numbers / cluster ids)"
    )


def params_value(path: Path, name: str):
    """The literal assigned to ``name`` in a phy ``params.py``, read as text (never executed); None if absent."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as err:
        raise fail(
            path,
            f"cannot be parsed as Python text ({type(err).__name__}: {' '.join(str(err).split())})",
            "fix params.py (plain name = value lines)",
        ) from None
    if not tree.body and path.stat().st_size == 0:
        raise fail(path, "is empty (0 bytes)", f"write '{name} = ...' in it, or copy the phy folder again")
    value = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                raise fail(
                    path,
                    f"'{name}' is not a literal value",
                    f"write it as a plain literal, e.g. {name} = 30000.0",
                ) from None
    return value


def _sample_rate(folder: Path, sample_rate) -> float:
    params = folder / "params.py"
    from_file = params_value(params, "sample_rate") if params.is_file() else None
    if sample_rate is not None:
        if from_file is not None and not np.isclose(float(from_file), float(sample_rate)):
            LOG.warning(
                "%s: sample_rate=%s given, params.py says %s; using the argument",
                folder,
                sample_rate,
                from_file,
            )
        fs = sample_rate
    elif from_file is not None:
        fs = from_file
    else:
        where = "params.py has no sample_rate" if params.is_file() else "there is no params.py"
        raise fail(
            folder,
            f"no sample rate: {where}",
            "pass sample_rate (Hz), or add 'sample_rate = <Hz>' to params.py",
        )
    try:
        fs = float(fs)
    except (TypeError, ValueError):
        fs = float("nan")
    if not (np.isfinite(fs) and fs > 0):
        raise fail(
            folder,
            f"sample rate {fs!r} is not a positive number of Hz",
            "fix sample_rate in params.py or pass it",
        )
    return fs


def _labels(folder: Path) -> dict[int, str] | None:
    """Cluster id -> group from the label files (None when there is none)."""
    out: dict[int, str] | None = None
    for name in _LABEL_FILES:
        p = folder / name
        if not p.is_file():
            continue
        if p.stat().st_size == 0:
            raise fail(p, "is empty (0 bytes)", "re-export it from phy, or remove it")
        try:
            df = pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)
        except (OSError, ValueError, pd.errors.ParserError) as err:
            raise fail(
                p, f"cannot be read as a TSV table ({' '.join(str(err).split())})", "re-export it from phy"
            ) from None
        id_col = next((c for c in ("cluster_id", "id") if c in df.columns), None)
        group_cols = [c for c in ("group", "KSLabel") if c in df.columns]
        if id_col is None or not group_cols:
            raise fail(
                p,
                f"missing column(s) {'cluster_id ' if id_col is None else ''}{'' if group_cols else 'group/KSLabel'}".strip()
                + f" (found {', '.join(df.columns) or 'none'})",
                "a phy label table needs columns cluster_id and group (or KSLabel)",
            )
        try:
            ids = df[id_col].astype(np.int64).to_numpy()
        except ValueError:
            raise fail(
                p, f"column '{id_col}' holds non-integer cluster ids", "cluster ids are integers"
            ) from None
        group = df[group_cols[0]].str.strip()
        if len(group_cols) > 1:  # cluster_info.tsv: 'group' is empty until curated; fall back to KSLabel
            group = group.where(group != "", df[group_cols[1]].str.strip())
        out = {} if out is None else out
        for i, g in zip(ids.tolist(), group.tolist(), strict=True):
            if g != "":
                out[i] = g
    return out


def _dat_duration(folder: Path, fs: float) -> float | None:
    """Duration of the raw recording from params.py (dat_path, n_channels_dat, dtype, offset), if it exists."""
    params = folder / "params.py"
    if not params.is_file():
        return None
    dat, n_ch = params_value(params, "dat_path"), params_value(params, "n_channels_dat")
    dtype, offset = params_value(params, "dtype") or "int16", params_value(params, "offset") or 0
    if dat is None or not n_ch:
        return None
    paths = [dat] if isinstance(dat, str) else list(dat)
    files = [(folder / d) if not Path(d).is_absolute() else Path(d) for d in paths]
    if not files or not all(f.is_file() for f in files):
        return None
    try:
        n_bytes = sum(f.stat().st_size - int(offset) for f in files)
        n_samples = n_bytes // (int(n_ch) * np.dtype(dtype).itemsize)
    except (TypeError, ValueError, OSError):
        return None
    return n_samples / fs if n_samples > 0 else None


@fill_doc
def read_phy(
    folder: str | os.PathLike,
    groups: Sequence[str] | None = ("good",),
    sample_rate: float | None = None,
    t_start_s: float | None = None,
    t_stop_s: float | None = None,
) -> xr.Dataset:
    """Read a phy/Kilosort output folder into a ``spike_times`` dataset.

    ``spike_times.npy`` holds spike times in samples, shape (n,) or (n, 1), sorted ascending (phy requires it), and
    ``spike_clusters.npy`` (or ``spike_templates.npy`` when there are no clusters) the cluster of each; both are
    loaded with ``allow_pickle=False``. Cluster groups come from ``cluster_KSLabel.tsv`` (KSLabel), overridden by
    ``cluster_info.tsv`` (group, else KSLabel), overridden by ``cluster_group.tsv`` (group or KSLabel); a cluster
    no file names is ``"unsorted"``. Labelled clusters without spikes are kept with zero spikes (logged). Unit
    labels are the cluster ids as strings, in numeric order; spike times are samples / sample rate (s). Attrs:
    ``t_start_s``, ``t_stop_s``, ``source``, ``format = "phy"``, ``observed = "continuous"``, ``sample_rate_hz``,
    ``time_resolution_s`` (1 / sample rate), ``groups`` (kept groups, "all" for None).

    Parameters
    ----------
    folder : str or os.PathLike
        The phy/Kilosort output folder.
    groups : sequence of str or None, default ("good",)
        The cluster groups kept (None: every cluster, labelled or not).
    sample_rate : float, optional
        The sample rate in Hz (None: the literal assigned to ``sample_rate`` in ``params.py``, found by parsing the
        file as text with ``ast``; params.py is never executed).
    t_start_s, t_stop_s : float, optional
        The observation window in seconds (None: 0 .. the raw recording's duration when the ``dat_path`` of
        params.py exists, else from the first to just after the last spike of all clusters); always widened to
        hold every kept spike.

    %(spike_times_returns)s

    %(reader_raises)s
    """
    folder = require_dir(folder, "phy folder")
    st_path = folder / "spike_times.npy"
    if not st_path.is_file():
        raise fail(folder, "has no spike_times.npy", "give a phy/Kilosort output folder")
    samples = _load_npy(st_path)
    if samples.ndim == 2 and samples.shape[1] == 1:
        samples = samples[:, 0]
    if samples.ndim != 1 or samples.dtype.kind not in "iuf":
        raise fail(
            st_path,
            f"has shape {samples.shape} and dtype {samples.dtype}",
            "spike_times.npy holds (n,) or (n, 1) sample numbers",
        )
    if samples.size == 0:
        raise fail(
            folder,
            f"holds no spikes ({st_path.name} has shape {samples.shape})",
            "give the output of a sorting that found spikes",
        )
    cl_path = folder / "spike_clusters.npy"
    if not cl_path.is_file():
        cl_path = folder / "spike_templates.npy"
        if not cl_path.is_file():
            raise fail(
                folder,
                "has neither spike_clusters.npy nor spike_templates.npy",
                "give a complete phy/Kilosort folder",
            )
        LOG.warning("%s: no spike_clusters.npy; using the Kilosort templates as units", folder)
    clusters = _load_npy(cl_path, "iu")
    clusters = clusters.reshape(-1) if clusters.ndim == 2 and clusters.shape[1] == 1 else clusters
    if clusters.ndim != 1 or clusters.dtype.kind not in "iu":
        raise fail(
            cl_path,
            f"has shape {clusters.shape} and dtype {clusters.dtype}",
            "it must hold one integer cluster id per spike",
        )
    if clusters.size != samples.size:
        raise fail(
            folder,
            f"spike_times.npy has {samples.size} spikes but {cl_path.name} has {clusters.size}",
            "both files must have one entry per spike; re-export the sorting",
        )
    fs = _sample_rate(folder, sample_rate)
    if samples.size and samples.dtype.kind == "f" and not np.all(np.isfinite(samples)):
        raise fail(st_path, "has non-finite sample times", "re-export the sorting")
    if samples.size and samples.min() < 0:
        raise fail(
            st_path, f"has negative sample times (min {samples.min()})", "spike times are samples >= 0"
        )
    back = samples[1:] < samples[:-1]  # not np.diff: Kilosort writes uint64, whose differences wrap around
    if back.any():
        n_bad = int(np.count_nonzero(back))
        raise fail(
            st_path,
            f"is not sorted ({n_bad} place(s) where the time goes back)",
            "phy needs spike_times.npy sorted ascending; re-export the sorting",
        )
    labels = _labels(folder)
    if groups is not None and labels is None:
        raise fail(
            folder,
            "has no cluster labels (no cluster_group.tsv, cluster_info.tsv or cluster_KSLabel.tsv)",
            "pass groups=None to keep every cluster",
        )
    groups_set = None if groups is None else {groups} if isinstance(groups, str) else set(groups)
    present = np.unique(clusters)
    candidates = sorted(set(present.tolist()) | set((labels or {}).keys()))
    kept = [c for c in candidates if groups_set is None or (labels or {}).get(c, UNLABELLED) in groups_set]
    if not kept:
        found = sorted(
            set((labels or {}).values())
            | ({UNLABELLED} if set(present.tolist()) - set(labels or {}) else set())
        )
        raise fail(
            folder,
            f"no cluster is in group(s) {short(sorted(groups_set))} (groups found: {short(found) or 'none'})",
            "choose other groups, or groups=None for all",
        )
    t = samples.astype(np.float64) / fs
    order = np.argsort(clusters, kind="stable")
    sc = clusters[order]
    trains = []
    for c in kept:
        a, b = np.searchsorted(sc, c, "left"), np.searchsorted(sc, c, "right")
        trains.append(check_train(folder, str(c), t[order[a:b]], require_sorted=True))
    dropped = len(candidates) - len(kept)
    if dropped:
        LOG.info("%s: %d cluster(s) outside group(s) %s left out", folder, dropped, sorted(groups_set or []))
    lo, hi = t_start_s, t_stop_s
    if lo is None and hi is None:
        dur = _dat_duration(folder, fs)
        if dur is not None:
            lo, hi = 0.0, dur
    if lo is None and t.size:
        lo = float(t.min())
    if hi is None and t.size:
        hi = float(np.nextafter(t.max(), np.inf))
    t0, t1 = window(folder, np.concatenate(trains), lo, hi)
    attrs = {
        "sample_rate_hz": fs,
        "time_resolution_s": 1.0 / fs,
        "groups": "all" if groups_set is None else ",".join(sorted(groups_set)),
    }
    return assemble(
        folder,
        trains,
        [str(c) for c in kept],
        fmt="phy",
        t_start=t0,
        t_stop=t1,
        observed="continuous",
        attrs=attrs,
    )
