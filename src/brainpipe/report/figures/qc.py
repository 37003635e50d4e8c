"""Data and unit QC figures of a spike dataset: raster with covariates and rates, per-unit rate and refractory
violations."""

from __future__ import annotations

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.report.figures.base import MAX_LABELLED_UNITS, STYLE, plt, to_png, unit_ticks
from brainpipe.report.figures.timeaxis import break_at, joined_axis, qc_window


@fill_doc
def firing_rates_hz(counts: xr.Dataset) -> np.ndarray:
    """Mean firing rate of every unit over the whole recording, in Hz.

    %(counts_parameters)s

    Returns
    -------
    numpy.ndarray
        One rate per unit.
    """
    y = np.asarray(counts["counts"].values)
    bw = float(counts.attrs["bin_width_s"])
    n = max(y.shape[0], 1)
    return y.sum(axis=0, dtype=np.float64) / (n * bw)


def _covariate_panels(counts: xr.Dataset) -> list[tuple[str, str, str]]:
    """(variable, its dim, panel label) for each covariate block present: behaviour, then stimulus."""
    out = []
    for var, dim, label in (
        ("behaviour", "behaviour_var", "behaviour"),
        ("stimulus", "stimulus_var", "stimulus"),
    ):
        if var in counts and counts.sizes.get(dim, 0) > 0:
            out.append((var, dim, label))
    return out


@fill_doc
def data_qc_figure(counts: xr.Dataset, window_s: float = 10.0, max_units: int = 30) -> bytes:
    """Spike raster of the first ``window_s`` s of the test split (up to ``max_units`` units), the behaviour
    trace(s) and the stimulus covariates (step style) in the same window when present, and each shown unit's
    mean firing rate beside its raster row.

    Test blocks and trials are drawn side by side on one axis (tick labels give recording time, or the trial
    index when many trials are shown); a dashed line marks each join between them.

    Parameters
    ----------
    %(counts)s
    window_s : float
        Seconds of the raster.
    max_units : int
        Units shown.

    %(png_returns)s
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
        gs = fig.add_gridspec(
            len(heights), 2, height_ratios=heights, width_ratios=[5, 1.2], hspace=0.12, wspace=0.05
        )
        ax = fig.add_subplot(gs[0, 0])
        positions = [x[y[:, k] > 0] for k in range(n_show)]
        ax.eventplot(
            positions, lineoffsets=np.arange(n_show), linelengths=0.75, linewidths=0.9, colors="#1f2328"
        )
        ax.set_ylim(n_show - 0.5, -0.5)
        unit_ticks(ax, units[:n_show], axis="y")
        ax.set_ylabel("unit")
        shown = f"{n_show} of {len(units)} units" if n_show < len(units) else f"{n_show} units"
        n_seg = ax_j.n_segments
        span = (
            (f"{t.size * bw:.3g} s" + (f" from {n_seg} {ax_j.what}s" if n_seg > 1 else ""))
            if t.size
            else "empty"
        )
        ax.set_title(f"Spike raster, {where} ({span}; {shown}; bin {bw * 1e3:g} ms)", loc="left")
        axes = [ax]
        for k, (var, dim, label) in enumerate(covs):
            axes[-1].tick_params(axis="x", labelbottom=False)
            axc = fig.add_subplot(gs[k + 1, 0], sharex=ax)
            vals = np.asarray(counts[var].isel(time=idx).values, dtype=np.float64)
            xb, vals = break_at(x, vals, ax_j.starts)
            names = [str(v) for v in counts[dim].values]
            for j, name in enumerate(names):
                if var == "stimulus":  # per-trial values: constant within a trial, drawn as steps
                    # thinner lines on top of thicker ones, so variables with equal values stay visible
                    axc.step(
                        xb, vals[:, j], where="mid", lw=2.8 - 2.0 * j / max(len(names) - 1, 1), label=name
                    )
                else:
                    axc.plot(xb, vals[:, j], lw=1.0, label=name)
            axc.set_ylabel(label)
            axc.legend(
                loc="center left",
                bbox_to_anchor=(1.01, 0.5),
                fontsize=8,
                frameon=False,
                title=f"{label} variable" + ("s" if len(names) > 1 else ""),
                title_fontsize=8,
            )
            axes.append(axc)
        ax_j.set_xaxis(axes[-1])
        ax_j.draw_joins(*axes)

        axr = fig.add_subplot(gs[0, 1], sharey=ax)
        axr.barh(np.arange(n_show), rates, height=0.7, color="#4c72b0")
        axr.set_xlabel("mean rate (Hz)")
        axr.tick_params(axis="y", labelleft=False)
        axr.set_title("firing rate (all splits)", loc="left")
        return to_png(fig)


@fill_doc
def unit_qc_arrays(counts: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None:
    """Per-unit QC of a counts file (every input unit): rate (Hz), kept (bool), refractory-violation fraction
    (NaN where not assessable) and unit names; None when the file carries no QC variables.

    %(counts_parameters)s

    Returns
    -------
    tuple or None
        ``(rate, kept, violation, names)``.
    """
    if "qc_rate_hz" not in counts:
        return None
    rate = np.asarray(counts["qc_rate_hz"].values, dtype=np.float64)
    kept = (
        np.asarray(counts["qc_kept"].values).astype(bool) if "qc_kept" in counts else np.ones(rate.size, bool)
    )
    viol = (
        np.asarray(counts["qc_refractory_violation_fraction"].values, dtype=np.float64)
        if "qc_refractory_violation_fraction" in counts
        else np.full(rate.size, np.nan)
    )
    names = (
        [str(u) for u in counts["qc_unit"].values]
        if "qc_unit" in counts.coords
        else [str(i) for i in range(rate.size)]
    )
    return rate, kept, viol, names


def unit_qc_figure(counts: xr.Dataset, min_rate_hz: float | None = None) -> bytes | None:
    """Unit QC of a counts file that carries ``qc_*`` variables: every input unit's rate (sorted, kept vs
    dropped; log scale) and, where assessable, its refractory-violation fraction. None without QC variables.

    Parameters
    ----------
    counts : xarray.Dataset
        Spike counts with ``qc_*`` variables.
    min_rate_hz : float, optional
        The selection's minimum rate (a dashed line).

    Returns
    -------
    bytes or None
        PNG.
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
        fig, axes = plt.subplots(
            1, n_panels, figsize=(10.0 if has_viol else 6.5, 2.4), squeeze=False, gridspec_kw={"wspace": 0.25}
        )
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
            ax.set_xlabel(
                "units, sorted by rate"
                + (" (silent units drawn at the floor)" if log and (rate <= 0).any() else "")
            )
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
