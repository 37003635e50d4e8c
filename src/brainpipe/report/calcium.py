"""The calcium branch's report section: per connectome study the metrics, rank diagnostics (error and replicate
stability per rank), the selected factors (time factor, animal factor, each pair factor as a neuron x neuron
matrix ordered by community), and a dF/F + events excerpt of each calcium dataset.

Fed by the report stage with ``files`` = {"metrics": [...], "fits": [...], "processed": [...]} (inputs named
``calcium__metrics`` etc.); the metrics join the study summary table.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from brainpipe.data import read
from brainpipe.report.figures import data_uri, to_png
from brainpipe.report.html import BranchSection, metrics_table


def _img(png: bytes, alt: str, caption: str) -> str:
    return f'<figure><img src="{escape(data_uri(png))}" alt="{escape(alt)}"><figcaption>{escape(caption)}</figcaption></figure>'


def rank_figure(fit: xr.Dataset) -> bytes:
    ranks = fit["rank"].values
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 2.6))
    axes[0].plot(ranks, fit["rank_error"].values, "o-", color="#333")
    axes[0].set(xlabel="rank", ylabel="relative error", title="fit error (best restart)")
    axes[1].plot(ranks, fit["rank_stability"].values, "o-", color="#1f77b4")
    thr = float(fit.attrs.get("stability_threshold", np.nan))
    axes[1].axhline(thr, ls="--", color="#999", lw=1)
    axes[1].axvline(int(fit.attrs["selected_rank"]), color="#d62728", lw=1)
    axes[1].set(xlabel="rank", ylabel="replicate stability", title="stability (selected rank in red)", ylim=(0, 1.05))
    for ax in axes:
        ax.set_xticks(ranks)
    fig.tight_layout()
    return to_png(fig)


def factors_figure(fit: xr.Dataset) -> bytes:
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


def traces_figure(ds: xr.Dataset, n_cells: int = 8, window_s: float = 120.0) -> bytes:
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
    ax.set_title("dF/F (scaled) and inferred events (red)", fontsize=9)
    fig.tight_layout()
    return to_png(fig)


def sections(files: dict[str, list[Path]]) -> list[BranchSection]:
    metrics = list(files.get("metrics", []))
    fits = list(files.get("fits", []))
    processed = list(files.get("processed", []))
    parts = ['<section id="calcium"><h2>Calcium: dynamic functional connectomes</h2>',
             "<p>Pairwise affinities of neuron pairs per time window, stacked over animals, factorised by masked "
             "non-negative CP (HALS); the rank is the largest whose restarts agree (replicate stability); each "
             "component's pair factor is split into communities by weighted Louvain.</p>"]
    if metrics:
        parts.append(metrics_table(metrics))
    for f in fits:
        fit = read(f, "model_fit")
        study = Path(f).parent.parent.name
        parts.append(f"<h3>{escape(study)}</h3>")
        parts.append(_img(rank_figure(fit), f"{study} rank diagnostics",
                          f"Selected rank {fit.attrs['selected_rank']} of {', '.join(map(str, fit['rank'].values))} "
                          f"({fit.attrs.get('restarts')} restarts each; affinity {fit.attrs.get('affinity')})."))
        parts.append(_img(factors_figure(fit), f"{study} factors",
                          "Time and animal factors of the selected fit; each pair factor as a neuron x neuron matrix, "
                          "neurons ordered by their Louvain community."))
    for p in processed[:3]:
        ds = read(p, "calcium_traces")
        name = Path(p).parent.name
        parts.append(_img(traces_figure(ds), f"{name} traces", f"{name}: first cells, first 120 s."))
    parts.append("</section>")
    return [BranchSection("calcium", "Calcium", "".join(parts), metrics=metrics)]
