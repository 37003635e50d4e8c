"""Figures of a spike dataset: data QC (raster, covariates, rates), unit QC, and fitted vs planted couplings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.report.figures.base import (
    CMAP,
    MAX_LABELLED_UNITS,
    STYLE,
    color_limit,
    plt,
    to_png,
    unit_ticks,
)


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
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(10.0, sum(heights) + 0.9))
        gs = fig.add_gridspec(len(heights), 2, height_ratios=heights, width_ratios=[5, 1.2], hspace=0.12, wspace=0.05)
        ax = fig.add_subplot(gs[0, 0])
        positions = [x[y[:, k] > 0] for k in range(n_show)]
        ax.eventplot(positions, lineoffsets=np.arange(n_show), linelengths=0.75, linewidths=0.9, colors="#1f2328")
        ax.set_ylim(n_show - 0.5, -0.5)
        unit_ticks(ax, units[:n_show], axis="y")
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
    with plt.rc_context(STYLE):
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
    lim = color_limit(*mats)
    clipped = any(bool(np.nanmax(np.abs(m)) > lim) for m in mats if m.size)
    n_panels = 3 if planted is not None else 1
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(4.4 * n_panels + 1.4, 4.2))
        if n_panels == 1:  # fitted | colour bar
            gs, cbar_col = fig.add_gridspec(1, 2, width_ratios=[1, 0.05], wspace=0.1), 1
        else:  # fitted | planted | colour bar | scatter
            gs, cbar_col = fig.add_gridspec(1, 5, width_ratios=[1, 1, 0.05, 0.3, 1.1], wspace=0.3), 2
        panels = [("fitted coupling", fitted)] + ([("planted coupling", planted)] if planted is not None else [])
        im = None
        for k, (name, m) in enumerate(panels):
            ax = fig.add_subplot(gs[0, k])
            im = ax.imshow(m, cmap=CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_title(name, loc="left")
            unit_ticks(ax, units, axis="y")
            unit_ticks(ax, units, axis="x")
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
