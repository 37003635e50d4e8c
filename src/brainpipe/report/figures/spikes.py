"""Coupling figures of a spike model: fitted weights, and planted ones beside them when there is a truth."""

from __future__ import annotations

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.report.figures.base import CMAP, STYLE, color_limit, plt, to_png, unit_ticks


def coupling_matrix(ds: xr.Dataset) -> xr.DataArray | None:
    """The connectivity-like weights of a ``model_fit``: ``coupling``, else any (unit_post, unit_pre) variable.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``model_fit``.

    Returns
    -------
    xarray.DataArray or None
    """
    if "coupling" in ds:
        return ds["coupling"]
    for var in ds.data_vars.values():
        if tuple(var.dims) == ("unit_post", "unit_pre"):
            return var
    return None


def aligned_couplings(
    fit: xr.Dataset, truth: xr.Dataset | None
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Fitted (and planted, when ``truth`` is given) weight matrices on the units both share.

    Parameters
    ----------
    fit : xarray.Dataset
        The fit.
    truth : xarray.Dataset or None
        The planted truth.

    Returns
    -------
    (list of str, numpy.ndarray, numpy.ndarray or None)
        Unit names, fitted and planted weights.
    """
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


@fill_doc
def model_figure(
    fit: xr.Dataset, truth: xr.Dataset | None = None, connected: np.ndarray | None = None
) -> bytes:
    """Fitted coupling heatmap; with ``truth``, the planted one beside it on the same symmetric colour scale
    and a scatter of fitted vs planted off-diagonal weights with the identity line.

    Parameters
    ----------
    fit : xarray.Dataset
        The fit.
    truth : xarray.Dataset, optional
        The planted truth.
    connected : numpy.ndarray, optional
        Planted connections (default: the truth's ``connected``, else non-zero weights).

    %(png_returns)s
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
        panels = [("fitted coupling", fitted)] + (
            [("planted coupling", planted)] if planted is not None else []
        )
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
            ax.plot(
                [lo - pad, hi + pad], [lo - pad, hi + pad], color="#1f2328", lw=0.8, ls="--", label="identity"
            )
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_aspect("equal", adjustable="box")
            r = (
                np.corrcoef(x[finite], y[finite])[0, 1]
                if finite.sum() > 1 and np.std(x[finite]) > 0
                else np.nan
            )
            ax.set_title(f"off-diagonal weights (r = {r:.3f})", loc="left")
            ax.set_xlabel("planted weight")
            ax.set_ylabel("fitted weight")
            ax.legend(loc="upper left", fontsize=8, frameon=False)
        return to_png(fig)
