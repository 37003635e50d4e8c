"""Figures of a calcium connectome study: rank diagnostics, the selected factors, and a dF/F + events excerpt."""

from __future__ import annotations

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.report.figures.base import plt, to_png


@fill_doc
def rank_figure(fit: xr.Dataset) -> bytes:
    """Fit error and replicate stability per rank of a connectome fit (threshold dashed, selected rank in red).

    Parameters
    ----------
    fit : xarray.Dataset
        A connectome ``model_fit`` (``rank_error``, ``rank_stability``, attrs ``selected_rank``).

    %(png_returns)s
    """
    ranks = fit["rank"].values
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 2.6))
    axes[0].plot(ranks, fit["rank_error"].values, "o-", color="#333")
    axes[0].set(xlabel="rank", ylabel="relative error", title="fit error (best restart)")
    axes[1].plot(ranks, fit["rank_stability"].values, "o-", color="#1f77b4")
    thr = float(fit.attrs.get("stability_threshold", np.nan))
    axes[1].axhline(thr, ls="--", color="#999", lw=1)
    axes[1].axvline(int(fit.attrs["selected_rank"]), color="#d62728", lw=1)
    axes[1].set(
        xlabel="rank", ylabel="replicate stability", title="stability (selected rank in red)", ylim=(0, 1.05)
    )
    for ax in axes:
        ax.set_xticks(ranks)
    fig.tight_layout()
    return to_png(fig)


@fill_doc
def factors_figure(fit: xr.Dataset) -> bytes:
    """Time and animal factors of the selected fit, and each component's pair factor as a neuron x neuron matrix
    ordered by its Louvain community.

    Parameters
    ----------
    fit : xarray.Dataset
        A connectome ``model_fit``.

    %(png_returns)s
    """
    R = fit.sizes["component"]
    neurons = fit.sizes["neuron"]
    fig = plt.figure(figsize=(2.4 * R + 3.0, 5.2))
    gs = fig.add_gridspec(2, R + 1, height_ratios=[1, 1.6])
    ax_t = fig.add_subplot(gs[0, :R])
    t = fit["time"].values
    for r in range(R):
        ax_t.plot(t, fit["time_factor"].values[:, r], lw=1, label=f"component {r}")
    ax_t.set(xlabel="time (s)", ylabel="time factor")
    ax_t.legend(fontsize=7, loc="upper right")
    ax_a = fig.add_subplot(gs[0, R])
    ax_a.imshow(fit["animal_factor"].values, aspect="auto", cmap="viridis", vmin=0)
    ax_a.set(title="animal factor", xlabel="component", ylabel="animal", xticks=range(R))
    ax_a.set_yticks(range(fit.sizes["animal"]), [str(a) for a in fit["animal"].values], fontsize=6)
    pi, pj = fit["pair_i"].values, fit["pair_j"].values
    for r in range(R):
        W = np.zeros((neurons, neurons))
        W[pi, pj] = fit["pair_factor"].values[:, r]
        W = W + W.T
        order = np.argsort(fit["membership"].values[r], kind="stable")
        ax = fig.add_subplot(gs[1, r])
        ax.imshow(W[np.ix_(order, order)], cmap="magma", vmin=0)
        ax.set(title=f"component {r}: pair factor", xticks=[], yticks=[])
        ax.set_xlabel(f"{int(fit['in_community'].values[r].sum())} neurons in its community", fontsize=7)
    fig.tight_layout()
    return to_png(fig)


@fill_doc
def traces_figure(
    ds: xr.Dataset,
    n_cells: int = 8,
    window_s: float = 120.0,
    title: str = "dF/F (scaled) and inferred events (red)",
) -> bytes:
    """dF/F (each cell scaled to its range) and inferred events of the first cells over the first seconds.

    Parameters
    ----------
    ds : xarray.Dataset
        Processed ``calcium_traces`` (``dff``, ``events``).
    n_cells : int
        Cells shown.
    window_s : float
        Seconds shown from the start.
    title : str
        The figure's title (what ``dff`` holds: dF/F, or denoised or deconvolved activity).

    %(png_returns)s
    """
    t = ds["time"].values
    keep = t <= t[0] + window_s
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    n = min(n_cells, ds.sizes["cell"])
    for k in range(n):
        y = ds["dff"].values[keep, k]
        off = 1.5 * k
        ax.plot(t[keep], y / max(np.ptp(y), 1e-9) + off, lw=0.6, color="#333")
        ev = np.flatnonzero(ds["events"].values[keep, k] > 0)
        ax.plot(t[keep][ev], np.full(ev.size, off - 0.15), "|", color="#d62728", ms=4)
    ax.set(xlabel="time (s)", yticks=[1.5 * k for k in range(n)])
    ax.set_yticklabels([str(c) for c in ds["cell"].values[:n]], fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return to_png(fig)
