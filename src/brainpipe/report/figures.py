"""Figures of the study report, rendered off-screen (Agg) to PNG bytes.

Every function builds one matplotlib figure, saves it to PNG and closes it, so a report over many datasets
does not accumulate open figures. :func:`data_uri` turns the bytes into a ``data:`` URI for embedding.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from brainpipe.data.contracts import SPLIT_FLAGS  # noqa: E402

DPI = 100
MAX_LABELLED_UNITS = 30
_CMAP = "RdBu_r"
_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def to_png(fig: Figure) -> bytes:
    """PNG bytes of ``fig``; the figure is closed whatever happens."""
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
        return buf.getvalue()
    finally:
        plt.close(fig)


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _with_gaps(t: np.ndarray, y: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN rows where consecutive samples are more than 1.5 steps apart, so lines break at gaps."""
    if t.size < 2:
        return t, y
    breaks = np.flatnonzero(np.diff(t) > 1.5 * step) + 1
    if breaks.size == 0:
        return t, y
    t2 = np.insert(t.astype(float), breaks, np.nan)
    y2 = np.insert(y.astype(float), breaks, np.nan, axis=0)
    return t2, y2


def _break_at(x: np.ndarray, y: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
        """Limits, tick labels (recording time, or trial index when many trials) and x label of ``ax``."""
        if not self.t.size:
            ax.set_xlabel("recording time (s)")
            return
        ax.set_xlim(self.x[0] - self.bw / 2, self.x[-1] + self.bw / 2)
        join_txt = f"; dashed: join between {self.what}s" if self.joins.size else ""
        if self.n_segments > 4 and self.trial is not None:
            keep = self.starts[:: max(1, int(np.ceil(self.n_segments / n_ticks)))]
            ax.set_xticks(self.x[keep] - self.bw / 2, [str(int(self.trial[i])) for i in keep])
            seg_s = np.diff(np.r_[self.starts, self.t.size]) * self.bw
            ax.set_xlabel(f"trial (index at its start; {self.n_segments} trials of ~{np.median(seg_s):.2g} s "
                          f"side by side{join_txt})")
        elif self.n_segments > 4:
            keep = self.starts[:: max(1, int(np.ceil(self.n_segments / n_ticks)))]
            ax.set_xticks(self.x[keep] - self.bw / 2, [f"{self.t[i] - self.bw / 2:.5g}" for i in keep])
            ax.set_xlabel(f"recording time at each {self.what} start (s){join_txt}")
        else:
            ticks, labels = _segment_ticks(self.t, self.x, self.bw)
            ax.set_xticks(ticks, labels)
            ax.set_xlabel("recording time (s)" + join_txt)

    def draw_joins(self, *axes, color: str = "#8c959f") -> None:
        many = self.joins.size > 12  # many short trials: fainter lines, or they hide the data
        for a in axes:
            for j in self.joins:
                a.axvline(j, color=color, lw=0.5 if many else 0.8, ls="--", alpha=0.45 if many else 1.0, zorder=3)


def joined_axis(counts: xr.Dataset, idx: np.ndarray) -> JoinedAxis:
    """The :class:`JoinedAxis` of bins ``idx`` of ``counts``: a new segment at every time gap or trial change."""
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


def qc_window(counts: xr.Dataset, window_s: float = 10.0) -> tuple[np.ndarray, str]:
    """Indices of the bins shown in the raster: the first ``window_s`` seconds of test-split data.

    The test split is made of time blocks (or trials), so the bins may span gaps. Falls back to the first
    ``window_s`` seconds of the recording when there is no test split. Returns the indices and a label saying
    which split they come from.
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


def decode_window(
    counts: xr.Dataset, max_segments: int = 4, max_s: float = 80.0, min_s: float = 15.0, continuous_s: float = 60.0
) -> np.ndarray:
    """Bins shown in the decoded-states figure: whole test sequences (trials or test blocks), in order.

    Up to ``max_segments`` sequences and at most ``max_s`` seconds; short trials are added beyond
    ``max_segments`` until ``min_s`` seconds are shown. Continuous data (test blocks, no trials): the first
    ``continuous_s`` seconds of test bins.
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


def firing_rates_hz(counts: xr.Dataset) -> np.ndarray:
    """Mean firing rate of every unit over the whole recording, in Hz."""
    y = np.asarray(counts["counts"].values)
    bw = float(counts.attrs["bin_width_s"])
    n = max(y.shape[0], 1)
    return y.sum(axis=0, dtype=np.float64) / (n * bw)


def _covariate_panels(counts: xr.Dataset) -> list[tuple[str, str, str]]:
    """(variable, its dim, panel label) for each covariate block present: behaviour, then stimulus."""
    out = []
    for var, dim, label in (("behaviour", "behaviour_var", "behaviour"), ("stimulus", "stimulus_var", "stimulus")):
        if var in counts and counts.sizes.get(dim, 0) > 0:
            out.append((var, dim, label))
    return out


def data_qc_figure(counts: xr.Dataset, window_s: float = 10.0, max_units: int = 30) -> bytes:
    """Spike raster of the first ``window_s`` s of the test split (up to ``max_units`` units), the behaviour
    trace(s) and the stimulus covariates (step style) in the same window when present, and each shown unit's
    mean firing rate beside its raster row.

    Test blocks and trials are drawn side by side on one axis (tick labels give recording time, or the trial
    index when many trials are shown); a dashed line marks each join between them.
    """
    idx, where = qc_window(counts, window_s)
    ax_j = joined_axis(counts, idx)
    t, x, bw = ax_j.t, ax_j.x, ax_j.bw
    units = [str(u) for u in counts["unit"].values]
    n_show = min(len(units), max_units)
    y = np.asarray(counts["counts"].isel(time=idx, unit=slice(0, n_show)).values)
    rates = firing_rates_hz(counts)[:n_show]
    covs = _covariate_panels(counts)

    raster_h = float(np.clip(0.22 * n_show, 1.6, 6.0))
    heights = [raster_h] + [1.2] * len(covs)
    with plt.rc_context(_STYLE):
        fig = plt.figure(figsize=(10.0, sum(heights) + 0.9))
        gs = fig.add_gridspec(len(heights), 2, height_ratios=heights, width_ratios=[5, 1.2], hspace=0.12, wspace=0.05)
        ax = fig.add_subplot(gs[0, 0])
        positions = [x[y[:, k] > 0] for k in range(n_show)]
        ax.eventplot(positions, lineoffsets=np.arange(n_show), linelengths=0.75, linewidths=0.9, colors="#1f2328")
        ax.set_ylim(n_show - 0.5, -0.5)
        _unit_ticks(ax, units[:n_show], axis="y")
        ax.set_ylabel("unit")
        shown = f"{n_show} of {len(units)} units" if n_show < len(units) else f"{n_show} units"
        n_seg = ax_j.n_segments
        span = (f"{t.size * bw:.3g} s" + (f" from {n_seg} {ax_j.what}s" if n_seg > 1 else "")) if t.size else "empty"
        ax.set_title(f"Spike raster, {where} ({span}; {shown}; bin {bw * 1e3:g} ms)", loc="left")
        axes = [ax]
        for k, (var, dim, label) in enumerate(covs):
            axes[-1].tick_params(axis="x", labelbottom=False)
            axc = fig.add_subplot(gs[k + 1, 0], sharex=ax)
            vals = np.asarray(counts[var].isel(time=idx).values, dtype=np.float64)
            xb, vals = _break_at(x, vals, ax_j.starts)
            names = [str(v) for v in counts[dim].values]
            for j, name in enumerate(names):
                if var == "stimulus":  # per-trial values: constant within a trial, drawn as steps
                    # thinner lines on top of thicker ones, so variables with equal values stay visible
                    axc.step(xb, vals[:, j], where="mid", lw=2.8 - 2.0 * j / max(len(names) - 1, 1), label=name)
                else:
                    axc.plot(xb, vals[:, j], lw=1.0, label=name)
            axc.set_ylabel(label)
            axc.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False,
                       title=f"{label} variable" + ("s" if len(names) > 1 else ""), title_fontsize=8)
            axes.append(axc)
        ax_j.set_xaxis(axes[-1])
        ax_j.draw_joins(*axes)

        axr = fig.add_subplot(gs[0, 1], sharey=ax)
        axr.barh(np.arange(n_show), rates, height=0.7, color="#4c72b0")
        axr.set_xlabel("mean rate (Hz)")
        axr.tick_params(axis="y", labelleft=False)
        axr.set_title("firing rate (all splits)", loc="left")
        return to_png(fig)


def unit_qc_arrays(counts: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None:
    """Per-unit QC of a counts file (every input unit): rate (Hz), kept (bool), refractory-violation fraction
    (NaN where not assessable) and unit names; None when the file carries no QC variables."""
    if "qc_rate_hz" not in counts:
        return None
    rate = np.asarray(counts["qc_rate_hz"].values, dtype=np.float64)
    kept = np.asarray(counts["qc_kept"].values).astype(bool) if "qc_kept" in counts else np.ones(rate.size, bool)
    viol = (
        np.asarray(counts["qc_refractory_violation_fraction"].values, dtype=np.float64)
        if "qc_refractory_violation_fraction" in counts
        else np.full(rate.size, np.nan)
    )
    names = [str(u) for u in counts["qc_unit"].values] if "qc_unit" in counts.coords else [str(i) for i in range(rate.size)]
    return rate, kept, viol, names


def unit_qc_figure(counts: xr.Dataset, min_rate_hz: float | None = None) -> bytes | None:
    """Unit QC of a counts file that carries ``qc_*`` variables: every input unit's rate (sorted, kept vs
    dropped; log scale) and, where assessable, its refractory-violation fraction. None without QC variables.
    """
    arrays = unit_qc_arrays(counts)
    if arrays is None:
        return None
    rate, kept, viol, names = arrays
    order = np.argsort(-rate, kind="stable")
    has_viol = bool(np.isfinite(viol).any())
    colors = np.where(kept[order], "#4c72b0", "#b8c0c8")
    with plt.rc_context(_STYLE):
        n_panels = 2 if has_viol else 1
        fig, axes = plt.subplots(1, n_panels, figsize=(10.0 if has_viol else 6.5, 2.4), squeeze=False,
                                 gridspec_kw={"wspace": 0.25})
        ax = axes[0, 0]
        pos = np.arange(rate.size)
        pos_rates = rate[rate > 0]
        log = pos_rates.size > 1 and pos_rates.max() / pos_rates.min() > 20
        floor = pos_rates.min() / 2 if log else 0.0
        ax.bar(pos, np.maximum(rate[order], floor), width=0.85, color=colors, lw=0)
        if log:
            ax.set_yscale("log")
        ax.set_ylabel("mean rate (Hz)")
        ax.set_title(f"rate per unit ({int(kept.sum())} kept, {int((~kept).sum())} dropped)", loc="left")
        if min_rate_hz:
            ax.axhline(min_rate_hz, color="#cf222e", lw=0.9, ls="--", label=f"min rate {min_rate_hz:g} Hz")
        from matplotlib.patches import Patch

        handles = [Patch(color="#4c72b0", label="kept"), Patch(color="#b8c0c8", label="dropped")]
        if min_rate_hz:
            handles += ax.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="upper right", fontsize=8, frameon=False)
        if rate.size <= MAX_LABELLED_UNITS:
            ax.set_xticks(pos, [names[i] for i in order], rotation=90, fontsize=7)
        else:
            ax.set_xlabel("units, sorted by rate" + (" (silent units drawn at the floor)" if log and (rate <= 0).any() else ""))
            ax.set_xticks([])
        if has_viol:
            axv = axes[0, 1]
            v = viol[order]
            ok = np.isfinite(v)
            axv.bar(pos[ok], 100 * v[ok], width=0.85, color=colors[ok], lw=0)
            axv.set_ylabel("ISI violations (%)")
            axv.set_title("refractory violations (NaN: not assessable)", loc="left")
            if rate.size <= MAX_LABELLED_UNITS:
                axv.set_xticks(pos, [names[i] for i in order], rotation=90, fontsize=7)
            else:
                axv.set_xlabel("units, same order")
                axv.set_xticks([])
        return to_png(fig)


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


def _unit_ticks(ax, labels: list[str], axis: str) -> None:
    n = len(labels)
    if n <= MAX_LABELLED_UNITS:
        ticks, text = np.arange(n), labels
    else:
        ticks = np.linspace(0, n - 1, 10).round().astype(int)
        text = [labels[i] for i in ticks]
    size = 8 if n <= 15 else 6
    if axis == "y":
        ax.set_yticks(ticks, text, fontsize=size)
    else:
        ax.set_xticks(ticks, text, fontsize=size, rotation=90)


def coupling_matrix(ds: xr.Dataset) -> xr.DataArray | None:
    """The connectivity-like weights of a ``model_fit``: ``coupling``, else any (unit_post, unit_pre) variable."""
    if "coupling" in ds:
        return ds["coupling"]
    for var in ds.data_vars.values():
        if tuple(var.dims) == ("unit_post", "unit_pre"):
            return var
    return None


def aligned_couplings(fit: xr.Dataset, truth: xr.Dataset | None) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Fitted (and planted, when ``truth`` is given) weight matrices on the units both share."""
    wf = coupling_matrix(fit)
    if wf is None:
        raise ValueError("fit has no coupling matrix")
    units = [str(u) for u in wf["unit_post"].values]
    wt = coupling_matrix(truth) if truth is not None else None
    if wt is None:
        return units, np.asarray(wf.values, dtype=np.float64), None
    truth_units = {str(u) for u in wt["unit_post"].values} & {str(u) for u in wt["unit_pre"].values}
    common = [u for u in units if u in truth_units and u in {str(v) for v in wf["unit_pre"].values}]
    if len(common) < 2:  # nothing to compare against: show the fit alone
        return units, np.asarray(wf.values, dtype=np.float64), None
    wf = wf.assign_coords(unit_post=wf["unit_post"].astype(str), unit_pre=wf["unit_pre"].astype(str))
    wt = wt.assign_coords(unit_post=wt["unit_post"].astype(str), unit_pre=wt["unit_pre"].astype(str))
    fitted = np.asarray(wf.sel(unit_post=common, unit_pre=common).values, dtype=np.float64)
    planted = np.asarray(wt.sel(unit_post=common, unit_pre=common).values, dtype=np.float64)
    return common, fitted, planted


def _color_limit(*mats: np.ndarray) -> float:
    """Symmetric colour limit from the off-diagonal weights (the diagonal holds self-history weights)."""
    vals = []
    for m in mats:
        off = ~np.eye(m.shape[0], m.shape[1], dtype=bool)
        vals.append(np.abs(m[off]) if off.any() else np.abs(m).ravel())
    v = np.concatenate(vals) if vals else np.array([])
    v = v[np.isfinite(v)]
    lim = float(v.max()) if v.size else 0.0
    if lim <= 0:
        allv = np.concatenate([np.abs(m).ravel() for m in mats])
        allv = allv[np.isfinite(allv)]
        lim = float(allv.max()) if allv.size else 0.0
    return lim if lim > 0 else 1.0


def model_figure(fit: xr.Dataset, truth: xr.Dataset | None = None, connected: np.ndarray | None = None) -> bytes:
    """Fitted coupling heatmap; with ``truth``, the planted one beside it on the same symmetric colour scale
    and a scatter of fitted vs planted off-diagonal weights with the identity line.
    """
    units, fitted, planted = aligned_couplings(fit, truth)
    if planted is not None and connected is None and truth is not None and "connected" in truth:
        c = truth["connected"].assign_coords(
            unit_post=truth["unit_post"].astype(str), unit_pre=truth["unit_pre"].astype(str)
        )
        connected = np.asarray(c.sel(unit_post=units, unit_pre=units).values).astype(bool)
    mats = [fitted] + ([planted] if planted is not None else [])
    lim = _color_limit(*mats)
    clipped = any(bool(np.nanmax(np.abs(m)) > lim) for m in mats if m.size)
    n_panels = 3 if planted is not None else 1
    with plt.rc_context(_STYLE):
        fig = plt.figure(figsize=(4.4 * n_panels + 1.4, 4.2))
        if n_panels == 1:  # fitted | colour bar
            gs, cbar_col = fig.add_gridspec(1, 2, width_ratios=[1, 0.05], wspace=0.1), 1
        else:  # fitted | planted | colour bar | scatter
            gs, cbar_col = fig.add_gridspec(1, 5, width_ratios=[1, 1, 0.05, 0.3, 1.1], wspace=0.3), 2
        panels = [("fitted coupling", fitted)] + ([("planted coupling", planted)] if planted is not None else [])
        im = None
        for k, (name, m) in enumerate(panels):
            ax = fig.add_subplot(gs[0, k])
            im = ax.imshow(m, cmap=_CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_title(name, loc="left")
            _unit_ticks(ax, units, axis="y")
            _unit_ticks(ax, units, axis="x")
            if k == 0:
                ax.set_ylabel("post (target) unit")
            ax.set_xlabel("pre (source) unit")
            for s in ax.spines.values():
                s.set_visible(True)
        cax = fig.add_subplot(gs[0, cbar_col])
        cb = fig.colorbar(im, cax=cax, extend="both" if clipped else "neither")
        cb.set_label("weight" + (" (diagonal clipped)" if clipped else ""))
        if planted is not None:
            ax = fig.add_subplot(gs[0, 4])
            off = ~np.eye(len(units), dtype=bool)
            x, y = planted[off], fitted[off]
            is_conn = connected[off] if connected is not None else x != 0
            ax.scatter(x[~is_conn], y[~is_conn], s=14, c="#8c959f", alpha=0.8, label="absent", lw=0)
            ax.scatter(x[is_conn], y[is_conn], s=18, c="#cf222e", alpha=0.9, label="planted", lw=0)
            finite = np.isfinite(x) & np.isfinite(y)
            lo = float(min(x[finite].min(), y[finite].min())) if finite.any() else -1.0
            hi = float(max(x[finite].max(), y[finite].max())) if finite.any() else 1.0
            pad = 0.05 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="#1f2328", lw=0.8, ls="--", label="identity")
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_aspect("equal", adjustable="box")
            r = np.corrcoef(x[finite], y[finite])[0, 1] if finite.sum() > 1 and np.std(x[finite]) > 0 else np.nan
            ax.set_title(f"off-diagonal weights (r = {r:.3f})", loc="left")
            ax.set_xlabel("planted weight")
            ax.set_ylabel("fitted weight")
            ax.legend(loc="upper left", fontsize=8, frameon=False)
        return to_png(fig)


# ------------------------------------------------------------------------------------------- switching GLMs

STATE_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#ccb974", "#64b5cd")
_ADJ_COLORS = ("#2166ac", "#f6f8fa", "#b2182b")  # inh, none, exc


def state_color(k: int) -> str:
    return STATE_COLORS[k % len(STATE_COLORS)]


def posterior(fit: xr.Dataset, counts: xr.Dataset) -> np.ndarray | None:
    """The fit's posterior state probabilities on the bins of ``counts`` (n_bins, S); None when the fit has no
    posterior or its bins are not those of ``counts``."""
    if "posterior" not in fit:
        return None
    post = np.asarray(fit["posterior"].values, dtype=np.float64)
    n = counts.sizes.get("time", 0)
    if post.shape[0] == n and ("time" not in fit.coords or np.allclose(fit["time"].values, counts["time"].values)):
        return post
    if "time" not in fit.coords or post.shape[0] == 0:
        return None
    ft, ct = np.asarray(fit["time"].values), np.asarray(counts["time"].values)
    i = np.clip(np.searchsorted(ft, ct), 0, ft.size - 1)
    if not np.all(np.abs(ft[i] - ct) < 0.5 * float(counts.attrs["bin_width_s"])):
        return None
    return post[i]


def held_out_bins(counts: xr.Dataset) -> np.ndarray:
    """Indices of the test bins (all bins when there is no test split)."""
    split = np.asarray(counts["split"].values)
    test = np.flatnonzero(split == SPLIT_FLAGS["test"])
    return test if test.size else np.arange(split.size)


def planted_states(truth: xr.Dataset, counts: xr.Dataset, idx: np.ndarray) -> np.ndarray:
    """The planted state of bins ``idx`` of ``counts`` (the truth's state nearest in time)."""
    from brainpipe.evaluate.switching import truth_states_at

    return truth_states_at(truth, np.asarray(counts["time"].values)[idx])


def state_matching(post: np.ndarray, counts: xr.Dataset, truth: xr.Dataset | None = None,
                   reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Match a fit's states (posterior ``post``) to the planted states (``truth``), else to a reference fit's
    states (its posterior ``reference``), on the test bins by :func:`brainpipe.evaluate.switching.match_states`
    (Hungarian matching of posterior argmaxes, as in the metrics).

    Returns ``(perm, colour, accuracy)``: ``perm[k]`` the fitted state matched to reference state ``k`` (-1 if
    none), ``colour[j]`` the colour index of fitted state ``j`` (that of its matched reference state; unmatched
    states get the indices after the reference's), and the matched accuracy (NaN without truth or reference).
    """
    from brainpipe.evaluate.switching import match_states

    S = post.shape[1]
    idx = held_out_bins(counts)
    est = post[idx].argmax(1)
    if truth is not None:
        ref, n_ref = planted_states(truth, counts, idx), int(truth.sizes["state"])
    elif reference is not None:
        ref, n_ref = reference[idx].argmax(1), int(reference.shape[1])
    else:
        return np.arange(S), np.arange(S), float("nan")
    perm, acc = match_states(ref, est, n_ref, S)
    colour = np.full(S, -1, dtype=np.int64)
    for k, j in enumerate(perm):
        if j >= 0:
            colour[j] = k
    extra = n_ref
    for j in range(S):
        if colour[j] < 0:
            colour[j] = extra
            extra += 1
    return perm, colour, acc


def switching_states_figure(
    counts: xr.Dataset,
    fits: list[tuple[str, xr.Dataset]],
    truth: xr.Dataset | None = None,
    reference: str | None = None,
    labels: dict[str, str] | None = None,
) -> bytes:
    """Decoded states over time for a few test sequences (:func:`decode_window`): one row of stacked posterior
    bands per multi-state fit, with the planted states on top when ``truth`` is given. States are matched to the
    planted ones (else to the fit named ``reference``) so that one colour is one state in every row.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    idx = decode_window(counts)
    ax_j = joined_axis(counts, idx)
    x, bw = ax_j.x, ax_j.bw
    posts = [(name, posterior(fit, counts)) for name, fit in fits]
    posts = [(name, p) for name, p in posts if p is not None]
    ref_post = dict(posts).get(reference) if truth is None else None
    rows = (["planted"] if truth is not None else []) + [name for name, _ in posts]
    n_colours = int(truth.sizes["state"]) if truth is not None else 0
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(len(rows), 1, figsize=(10.0, 0.75 * len(rows) + 1.1), sharex=True, squeeze=False)
        axes = axes[:, 0]
        k = 0
        if truth is not None:
            z = planted_states(truth, counts, idx)
            S_true = int(truth.sizes["state"])
            cmap = ListedColormap([state_color(s) for s in range(S_true)])
            ext = (x[0] - bw / 2, x[-1] + bw / 2, 0, 1) if x.size else (0, 1, 0, 1)
            axes[0].imshow(z[None, :], aspect="auto", cmap=cmap, vmin=-0.5, vmax=S_true - 0.5, extent=ext,
                           interpolation="nearest")
            axes[0].set_yticks([])
            axes[0].set_ylabel("planted", rotation=0, ha="right", va="center")
            k = 1
        for name, post in posts:
            ax = axes[k]
            k += 1
            _, colour, _ = state_matching(post, counts, truth, ref_post if name != reference else None)
            n_colours = max(n_colours, int(colour.max()) + 1)
            ax.imshow(_posterior_bands(post[idx], colour), aspect="auto", interpolation="nearest", origin="lower",
                      extent=(x[0] - bw / 2, x[-1] + bw / 2, 0, 1) if x.size else (0, 1, 0, 1))
            ax.set_ylim(0, 1)
            ax.set_yticks([0, 1], ["0", "1"], fontsize=7)
            text = name + (f"\n{labels[name]}" if labels and name in labels else "")
            ax.set_ylabel(text, rotation=0, ha="right", va="center")
        for ax in axes:
            for s in ax.spines.values():
                s.set_visible(True)
        ax_j.set_xaxis(axes[-1])
        ax_j.draw_joins(*axes, color="#1f2328")
        what = "planted state" if truth is not None else "state"
        handles = [Patch(color=state_color(c), label=f"{what} {c}") for c in range(n_colours)]
        axes[0].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                       handlelength=1.2)
        axes[0].set_title(f"Decoded states, {idx.size * bw:.3g} s of test data (bands: posterior probability "
                          "of each state)", loc="left")
        fig.subplots_adjust(hspace=0.15)
        return to_png(fig)


def _posterior_bands(post: np.ndarray, colour: np.ndarray, height: int = 48) -> np.ndarray:
    """RGB image (height, n_bins, 3) of stacked posterior bands: in each column, state ``j`` fills a share
    ``post[:, j]`` of the height in the colour ``colour[j]`` (stacked in colour order, bottom up)."""
    from matplotlib.colors import to_rgb

    order = np.argsort(colour, kind="stable")
    cum = np.cumsum(post[:, order], axis=1)  # (n_bins, S) upper edge of each band
    cum[:, -1] = np.maximum(cum[:, -1], 1.0)
    levels = (np.arange(height) + 0.5) / height  # pixel centres, bottom up
    band = (levels[:, None, None] > cum[None, :, :]).sum(-1)  # (height, n_bins) index into order
    band = np.minimum(band, len(order) - 1)
    rgb = np.array([to_rgb(state_color(int(colour[j]))) for j in order])
    return rgb[band]


def switching_weights_figure(fit: xr.Dataset, truth: xr.Dataset, perm: np.ndarray, name: str = "") -> bytes:
    """Planted vs fitted coupling weights of every planted state (fitted state ``perm[k]`` beside planted
    state ``k``) on one symmetric colour scale, and planted vs fitted adjacency (inh / none / exc) with the
    fitted errors crossed out."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    units = [str(u) for u in fit["unit_post"].values]
    truth = truth.assign_coords(unit_post=truth["unit_post"].astype(str), unit_pre=truth["unit_pre"].astype(str))
    t = truth.sel(unit_post=units, unit_pre=units)
    S = int(truth.sizes["state"])
    Wt = np.asarray(t["weights"].values, dtype=np.float64)
    Wf_all = np.asarray(fit["weights"].values, dtype=np.float64)
    At = np.asarray(t["adjacency"].values)
    Af_all = np.asarray(fit["adjacency"].values) if "adjacency" in fit else None
    Wf = [Wf_all[j] if j >= 0 else None for j in perm]
    Af = [Af_all[j] if (j >= 0 and Af_all is not None) else None for j in perm]
    lim = _color_limit(*Wt, *[w for w in Wf if w is not None])
    off = ~np.eye(len(units), dtype=bool)
    adj_cmap = ListedColormap(_ADJ_COLORS)
    with plt.rc_context(_STYLE):
        size = 2.3
        fig = plt.figure(figsize=(size * S + 1.6, size * 4 + 0.6))
        gs = fig.add_gridspec(4, S + 1, width_ratios=[1] * S + [0.07], hspace=0.45, wspace=0.12)
        im = None
        for k in range(S):
            panels = [
                (0, f"planted state {k}: W", Wt[k], "w"),
                (1, f"fitted state {perm[k]}: W" if perm[k] >= 0 else "no matched fitted state", Wf[k], "w"),
                (2, f"planted state {k}: adjacency", At[k], "a"),
                (3, "fitted adjacency", Af[k], "a"),
            ]
            for row, title, m, kind in panels:
                ax = fig.add_subplot(gs[row, k])
                if m is None:
                    ax.axis("off")
                    ax.set_title(title, loc="left", fontsize=8)
                    continue
                if kind == "w":
                    im = ax.imshow(m, cmap=_CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
                else:
                    shown = np.where(off, m, 0)
                    ax.imshow(shown, cmap=adj_cmap, vmin=-1.5, vmax=1.5, interpolation="nearest")
                    if row == 3:
                        wrong = off & (m != At[k])
                        r, c = np.nonzero(wrong)
                        ax.plot(c, r, "x", color="#1f2328", ms=5, mew=1.2)
                        acc = float(np.mean(m[off] == At[k][off])) if off.any() else float("nan")
                        title = f"fitted adj. ({int(wrong.sum())} wrong, {acc:.0%})"
                ax.set_title(title, loc="left", fontsize=8)
                if k == 0:
                    _unit_ticks(ax, units, axis="y")
                    ax.set_ylabel("post unit")
                else:
                    ax.set_yticks([])
                if row == 3:
                    _unit_ticks(ax, units, axis="x")
                    ax.set_xlabel("pre unit")
                else:
                    ax.set_xticks([])
                for s in ax.spines.values():
                    s.set_visible(True)
        cax = fig.add_subplot(gs[0:2, S])
        clipped = any(bool(np.nanmax(np.abs(m)) > lim) for m in [*Wt, *[w for w in Wf if w is not None]] if m.size)
        cb = fig.colorbar(im, cax=cax, extend="both" if clipped else "neither")
        cb.set_label("weight" + (" (diagonal clipped)" if clipped else ""))
        lax = fig.add_subplot(gs[2:4, S])
        lax.axis("off")
        lax.legend(handles=[Patch(facecolor=c, edgecolor="#8c959f", label=lb)
                            for c, lb in zip(_ADJ_COLORS, ("inh", "none", "exc"), strict=True)]
                   + [plt.Line2D([], [], ls="", marker="x", color="#1f2328", label="wrong")],
                   loc="center left", fontsize=8, frameon=False)
        return to_png(fig)


def switching_summary_figure(
    variants: list[dict],
    oracle_bits: float | None = None,
) -> bytes:
    """Test bits/spike per variant (bars; the planted model's as a dashed line) and the EM objective per
    iteration of each variant. ``variants``: dicts with ``name``, ``n_states``, ``bits`` (may be NaN),
    ``objective`` (array, may be empty) and ``best`` (bool)."""
    with plt.rc_context(_STYLE):
        fig, (axb, axo) = plt.subplots(1, 2, figsize=(10.0, 0.35 * len(variants) + 2.2),
                                       gridspec_kw={"width_ratios": [1, 1.3], "wspace": 0.45})
        names = [v["name"] for v in variants]
        bits = np.array([v["bits"] for v in variants], dtype=np.float64)
        pos = np.arange(len(variants))
        colors = ["#8c959f" if v["n_states"] <= 1 else ("#1a7f37" if v.get("best") else "#4c72b0") for v in variants]
        axb.barh(pos, np.nan_to_num(bits), color=colors, height=0.6)
        for p, b in zip(pos, bits, strict=True):
            axb.text(b if np.isfinite(b) else 0, p, f" {b:.4g}" if np.isfinite(b) else " NaN", va="center",
                     ha="left" if not np.isfinite(b) or b >= 0 else "right", fontsize=8)
        axb.set_yticks(pos, names)
        axb.axvline(0, color="#1f2328", lw=0.8)
        if oracle_bits is not None and np.isfinite(oracle_bits):
            axb.axvline(oracle_bits, color="#cf222e", lw=1.0, ls="--", label=f"planted model ({oracle_bits:.4g})")
            axb.legend(loc="upper right", fontsize=8, frameon=False)
            axb.set_ylim(len(variants) - 0.4, -1.3)
        else:
            axb.set_ylim(len(variants) - 0.4, -0.6)
        finite = bits[np.isfinite(bits)]
        hi = max([0.0, *finite.tolist()] + ([oracle_bits] if oracle_bits is not None and np.isfinite(oracle_bits) else []))
        lo = min([0.0, *finite.tolist()])
        axb.set_xlim(lo - 0.05 * (hi - lo or 1), hi + 0.3 * (hi - lo or 1))
        axb.set_xlabel("test bits/spike (vs homogeneous Poisson)")
        axb.set_title("held-out fit per variant", loc="left")
        from matplotlib.ticker import MaxNLocator

        palette = ("#4c72b0", "#55a868", "#8172b3", "#dd8452", "#937860", "#64b5cd")
        k = 0
        for v in variants:
            obj = np.asarray(v.get("objective", []), dtype=np.float64)
            if v["n_states"] <= 1:
                color = "#8c959f"
            else:
                color, k = palette[k % len(palette)], k + 1
            if obj.size:
                axo.plot(np.arange(obj.size), obj, marker="o", ms=2.5, lw=1.2, color=color,
                         label=f"{v['name']} ({obj.size - 1} it.)")
        axo.xaxis.set_major_locator(MaxNLocator(integer=True))
        axo.set_xlabel("EM iteration")
        axo.set_ylabel("objective (train, nats)")
        axo.set_title("EM objective per iteration", loc="left")
        axo.legend(loc="lower right", fontsize=8, frameon=False)
        axo.ticklabel_format(axis="y", style="plain", useOffset=False)
        return to_png(fig)
