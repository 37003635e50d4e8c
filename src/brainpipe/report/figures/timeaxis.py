"""The time axis of the spike figures: bins of trials or test blocks drawn side by side, and which bins are shown."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.data.contracts import SPLIT_FLAGS


def break_at(x: np.ndarray, y: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert a NaN row before each index in ``starts`` (segment starts, 0 excluded): lines break there."""
    starts = starts[starts > 0]
    if starts.size == 0:
        return x, y
    return np.insert(x.astype(float), starts, np.nan), np.insert(y.astype(float), starts, np.nan, axis=0)


@dataclass
class JoinedAxis:
    """Bins drawn side by side: segments (trials, test blocks) joined with no empty stretch between them.

    ``t`` recording times of the bins, ``x`` their joined positions (one bin width apart), ``starts`` the index of
    each segment's first bin, ``joins`` the x positions of the boundaries between segments, ``trial`` the trial
    index of every bin (None without trials) and ``what`` a word for a segment ("trial" or "block").

    Parameters
    ----------
    t : numpy.ndarray
        Recording time of each bin.
    x : numpy.ndarray
        Joined position of each bin.
    bw : float
        Bin width (s).
    starts : numpy.ndarray
        Index of each segment's first bin.
    joins : numpy.ndarray
        Positions of the joins.
    trial : numpy.ndarray or None
        Trial of each bin.
    what : str
        ``"trial"`` or ``"block"``.
    """

    t: np.ndarray
    x: np.ndarray
    bw: float
    starts: np.ndarray
    joins: np.ndarray
    trial: np.ndarray | None
    what: str

    @property
    def n_segments(self) -> int:
        return int(self.starts.size)

    def set_xaxis(self, ax, n_ticks: int = 8) -> None:
        """Limits, tick labels (recording time, or trial index when many trials) and x label of ``ax``.

        Parameters
        ----------
        ax : matplotlib.axes.Axes
            The bottom axes.
        n_ticks : int
            About how many ticks.
        """
        if not self.t.size:
            ax.set_xlabel("recording time (s)")
            return
        ax.set_xlim(self.x[0] - self.bw / 2, self.x[-1] + self.bw / 2)
        join_txt = f"; dashed: join between {self.what}s" if self.joins.size else ""
        if self.n_segments > 4 and self.trial is not None:
            keep = self.starts[:: max(1, int(np.ceil(self.n_segments / n_ticks)))]
            ax.set_xticks(self.x[keep] - self.bw / 2, [str(int(self.trial[i])) for i in keep])
            seg_s = np.diff(np.r_[self.starts, self.t.size]) * self.bw
            ax.set_xlabel(
                f"trial (index at its start; {self.n_segments} trials of ~{np.median(seg_s):.2g} s "
                f"side by side{join_txt})"
            )
        elif self.n_segments > 4:
            keep = self.starts[:: max(1, int(np.ceil(self.n_segments / n_ticks)))]
            ax.set_xticks(self.x[keep] - self.bw / 2, [f"{self.t[i] - self.bw / 2:.5g}" for i in keep])
            ax.set_xlabel(f"recording time at each {self.what} start (s){join_txt}")
        else:
            ticks, labels = _segment_ticks(self.t, self.x, self.bw)
            ax.set_xticks(ticks, labels)
            ax.set_xlabel("recording time (s)" + join_txt)

    def draw_joins(self, *axes, color: str = "#8c959f") -> None:
        """A dashed line at each join between segments on every axes (fainter when there are many).

        Parameters
        ----------
        *axes : matplotlib.axes.Axes
            Axes to draw on.
        color : str
            Line colour.
        """
        many = self.joins.size > 12  # many short trials: fainter lines, or they hide the data
        for a in axes:
            for j in self.joins:
                a.axvline(
                    j, color=color, lw=0.5 if many else 0.8, ls="--", alpha=0.45 if many else 1.0, zorder=3
                )


@fill_doc
def joined_axis(counts: xr.Dataset, idx: np.ndarray) -> JoinedAxis:
    """The :class:`JoinedAxis` of bins ``idx`` of ``counts``: a new segment at every time gap or trial change.

    Parameters
    ----------
    %(counts)s
    idx : numpy.ndarray
        Indices of the bins drawn, in order.

    Returns
    -------
    JoinedAxis
        The axis of those bins.
    """
    t = np.asarray(counts["time"].values, dtype=np.float64)[idx]
    bw = float(counts.attrs["bin_width_s"])
    x = t[0] + bw * np.arange(t.size) if t.size else t
    trial = np.asarray(counts["trial"].values)[idx] if "trial" in counts else None
    brk = np.diff(t) > 1.5 * bw if t.size > 1 else np.zeros(0, dtype=bool)
    if trial is not None and t.size > 1:
        brk = brk | (trial[1:] != trial[:-1])
    starts = np.r_[0, np.flatnonzero(brk) + 1] if t.size else np.zeros(0, dtype=int)
    joins = x[starts[1:]] - bw / 2 if starts.size > 1 else np.zeros(0)
    what = "trial" if trial is not None and counts.attrs.get("observed") == "trials" else "block"
    return JoinedAxis(t, x, bw, starts.astype(int), joins, trial, what)


@fill_doc
def qc_window(counts: xr.Dataset, window_s: float = 10.0) -> tuple[np.ndarray, str]:
    """Indices of the bins shown in the raster: the first ``window_s`` seconds of test-split data.

    The test split is made of time blocks (or trials), so the bins may span gaps. Falls back to the first
    ``window_s`` seconds of the recording when there is no test split. Returns the indices and a label saying
    which split they come from.

    Parameters
    ----------
    %(counts)s
    window_s : float
        Seconds shown.

    Returns
    -------
    (numpy.ndarray, str)
        Bin indices and where they come from.
    """
    n = counts.sizes.get("time", 0)
    if n == 0:
        return np.array([], dtype=int), "no data"
    if "split" in counts and np.any(counts["split"].values == SPLIT_FLAGS["test"]):
        use = np.flatnonzero(np.asarray(counts["split"].values) == SPLIT_FLAGS["test"])
        label = "test split"
    else:
        use = np.arange(n)
        label = "all data (no test split)"
    n_bins = max(1, int(round(window_s / float(counts.attrs["bin_width_s"]))))
    return use[:n_bins], label


@fill_doc
def decode_window(
    counts: xr.Dataset,
    max_segments: int = 4,
    max_s: float = 80.0,
    min_s: float = 15.0,
    continuous_s: float = 60.0,
) -> np.ndarray:
    """Bins shown in the decoded-states figure: whole test sequences (trials or test blocks), in order.

    Up to ``max_segments`` sequences and at most ``max_s`` seconds; short trials are added beyond
    ``max_segments`` until ``min_s`` seconds are shown. Continuous data (test blocks, no trials): the first
    ``continuous_s`` seconds of test bins.

    Parameters
    ----------
    %(counts)s
    max_segments : int
        Sequences shown (more while under ``min_s``).
    max_s : float
        Most seconds shown.
    min_s : float
        Least seconds shown when trials are short.
    continuous_s : float
        Seconds shown of continuous data.

    Returns
    -------
    numpy.ndarray
        Bin indices.
    """
    from brainpipe.preprocess.spikes import segments

    n = counts.sizes.get("time", 0)
    if n == 0:
        return np.zeros(0, dtype=int)
    split = np.asarray(counts["split"].values)
    test = split == SPLIT_FLAGS["test"]
    use = np.flatnonzero(test) if test.any() else np.arange(n)
    bw = float(counts.attrs["bin_width_s"])
    if counts.attrs.get("observed") != "trials":
        return use[: max(1, int(round(continuous_s / bw)))]
    seg = segments(counts)[use]
    out: list[np.ndarray] = []
    total = 0
    for s in np.unique(seg):
        if out and (total * bw >= max_s or (len(out) >= max_segments and total * bw >= min_s)):
            break
        rows = use[seg == s]
        rows = rows[: max(1, int(round(max_s / bw)) - total)]
        out.append(rows)
        total += rows.size
    return np.concatenate(out)


def _segment_ticks(t: np.ndarray, x: np.ndarray, bw: float, n_ticks: int = 8) -> tuple[np.ndarray, list[str]]:
    """Ticks at round recording times within each contiguous stretch of ``t``, placed at their joined ``x``."""
    from matplotlib.ticker import MaxNLocator

    starts = np.r_[0, np.flatnonzero(np.diff(t) > 1.5 * bw) + 1]
    stops = np.r_[starts[1:], t.size]
    total = float(x[-1] - x[0]) or 1.0
    ticks, labels = [], []
    for a, b in zip(starts, stops, strict=True):
        lo, hi = t[a] - bw / 2, t[b - 1] + bw / 2
        nbins = max(1, int(round(n_ticks * (hi - lo) / total)))
        for v in MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi):
            if lo - 1e-9 <= v <= hi + 1e-9:
                ticks.append(x[a] + (v - t[a]))
                labels.append(f"{v:g}")
    merged_t: list[float] = []
    merged_l: list[str] = []
    for tk, lb in sorted(zip(ticks, labels, strict=True)):
        if merged_t and tk - merged_t[-1] < 0.03 * total:  # a block's end meets the next one's start
            merged_l[-1] = f"{merged_l[-1]} | {lb}"
        else:
            merged_t.append(tk)
            merged_l.append(lb)
    return np.asarray(merged_t), merged_l
