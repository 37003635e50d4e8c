"""Figures of the study report, rendered off-screen (Agg) to PNG bytes.

Every function builds one matplotlib figure, saves it to PNG and closes it, so a report over many datasets
does not accumulate open figures. :func:`data_uri` turns the bytes into a ``data:`` URI for embedding.
"""

from __future__ import annotations

import base64
import io

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


def qc_window(counts: xr.Dataset, window_s: float = 10.0) -> tuple[np.ndarray, str]:
    """Indices of the bins shown in the raster: the first ``window_s`` seconds of test-split data.

    The test split is made of time blocks, so the bins may span a gap between blocks. Falls back to the first
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


def firing_rates_hz(counts: xr.Dataset) -> np.ndarray:
    """Mean firing rate of every unit over the whole recording, in Hz."""
    y = np.asarray(counts["counts"].values)
    bw = float(counts.attrs["bin_width_s"])
    n = max(y.shape[0], 1)
    return y.sum(axis=0, dtype=np.float64) / (n * bw)


def data_qc_figure(counts: xr.Dataset, window_s: float = 10.0, max_units: int = 30) -> bytes:
    """Spike raster of the first ``window_s`` s of the test split (up to ``max_units`` units), the behaviour
    trace(s) in the same window when present, and each shown unit's mean firing rate beside its raster row.

    Test blocks are drawn side by side on one axis (tick labels give recording time); a dashed line marks
    each join between blocks.
    """
    idx, where = qc_window(counts, window_s)
    t = np.asarray(counts["time"].values, dtype=np.float64)[idx]
    bw = float(counts.attrs["bin_width_s"])
    x = t[0] + bw * np.arange(t.size) if t.size else t  # blocks joined: no empty stretch between them
    joins = x[1:][np.diff(t) > 1.5 * bw] - bw / 2 if t.size > 1 else np.array([])
    units = [str(u) for u in counts["unit"].values]
    n_show = min(len(units), max_units)
    y = np.asarray(counts["counts"].isel(time=idx, unit=slice(0, n_show)).values)
    rates = firing_rates_hz(counts)[:n_show]
    has_beh = "behaviour" in counts and counts.sizes.get("behaviour_var", 0) > 0

    raster_h = float(np.clip(0.22 * n_show, 1.6, 6.0))
    heights = [raster_h] + ([1.2] if has_beh else [])
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
        span = f"{t.size * bw:.3g} s" + (f" from {len(joins) + 1} blocks" if len(joins) else "") if t.size else "empty"
        ax.set_title(f"Spike raster, {where} ({span}; {shown}; bin {bw * 1e3:g} ms)", loc="left")
        axes = [ax]
        if has_beh:
            ax.tick_params(axis="x", labelbottom=False)
            axb = fig.add_subplot(gs[1, 0], sharex=ax)
            beh = np.asarray(counts["behaviour"].isel(time=idx).values, dtype=np.float64)
            xb, beh = _with_gaps(t, beh, bw)
            xb = np.where(np.isnan(xb), np.nan, np.interp(xb, t, x)) if t.size else xb
            for j, name in enumerate(counts["behaviour_var"].values):
                axb.plot(xb, beh[:, j], lw=1.0, label=str(name))
            axb.set_ylabel("behaviour")
            axb.legend(loc="lower left", bbox_to_anchor=(1.01, 0.0), fontsize=8, frameon=False)
            axes.append(axb)
        if t.size:
            ax.set_xlim(x[0] - bw / 2, x[-1] + bw / 2)
            ticks, labels = _segment_ticks(t, x, bw)
            axes[-1].set_xticks(ticks, labels)
        axes[-1].set_xlabel("recording time (s)" + ("; dashed: join between test blocks" if len(joins) else ""))
        for a in axes:
            for j in joins:
                a.axvline(j, color="#8c959f", lw=0.9, ls="--")

        axr = fig.add_subplot(gs[0, 1], sharey=ax)
        axr.barh(np.arange(n_show), rates, height=0.7, color="#4c72b0")
        axr.set_xlabel("mean rate (Hz)")
        axr.tick_params(axis="y", labelleft=False)
        axr.set_title("firing rate (all splits)", loc="left")
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
