"""Figures of the switching GLMs of a dataset: decoded states, per-state couplings, held-out fit and EM objective."""

from __future__ import annotations

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.report.figures.base import CMAP, STYLE, color_limit, plt, to_png, unit_ticks
from brainpipe.report.figures.timeaxis import decode_window, joined_axis

STATE_COLORS = (
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#c44e52",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#ccb974",
    "#64b5cd",
)
_ADJ_COLORS = ("#2166ac", "#f6f8fa", "#b2182b")  # inh, none, exc


def state_color(k: int) -> str:
    """The colour of state ``k`` (the palette repeats after nine states).

    Parameters
    ----------
    k : int
        State index.

    Returns
    -------
    str
        A colour.
    """
    return STATE_COLORS[k % len(STATE_COLORS)]


def posterior(fit: xr.Dataset, counts: xr.Dataset) -> np.ndarray | None:
    """The fit's posterior state probabilities on the bins of ``counts`` (n_bins, S); None when the fit has no
    posterior or its bins are not those of ``counts``.

    Parameters
    ----------
    fit : xarray.Dataset
        A switching-GLM fit.
    counts : xarray.Dataset
        The counts it was fitted on.

    Returns
    -------
    numpy.ndarray or None
    """
    if "posterior" not in fit:
        return None
    post = np.asarray(fit["posterior"].values, dtype=np.float64)
    n = counts.sizes.get("time", 0)
    if post.shape[0] == n and (
        "time" not in fit.coords or np.allclose(fit["time"].values, counts["time"].values)
    ):
        return post
    if "time" not in fit.coords or post.shape[0] == 0:
        return None
    ft, ct = np.asarray(fit["time"].values), np.asarray(counts["time"].values)
    i = np.clip(np.searchsorted(ft, ct), 0, ft.size - 1)
    if not np.all(np.abs(ft[i] - ct) < 0.5 * float(counts.attrs["bin_width_s"])):
        return None
    return post[i]


@fill_doc
def held_out_bins(counts: xr.Dataset) -> np.ndarray:
    """Indices of the test bins (all bins when there is no test split).

    %(counts_parameters)s

    Returns
    -------
    numpy.ndarray
        Bin indices, in time order.
    """
    split = np.asarray(counts["split"].values)
    test = np.flatnonzero(split == SPLIT_FLAGS["test"])
    return test if test.size else np.arange(split.size)


@fill_doc
def planted_states(truth: xr.Dataset, counts: xr.Dataset, idx: np.ndarray) -> np.ndarray:
    """The planted state of bins ``idx`` of ``counts`` (the truth's state nearest in time).

    Parameters
    ----------
    truth : xarray.Dataset
        The planted switching network.
    %(counts)s
    idx : numpy.ndarray
        Bin indices.

    Returns
    -------
    numpy.ndarray
    """
    from brainpipe.evaluate.switching import truth_states_at

    return truth_states_at(truth, np.asarray(counts["time"].values)[idx])


@fill_doc
def state_matching(
    post: np.ndarray, counts: xr.Dataset, truth: xr.Dataset | None = None, reference: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Match a fit's states (posterior ``post``) to the planted states (``truth``), else to a reference fit's
    states (its posterior ``reference``), on the test bins by :func:`brainpipe.evaluate.switching.match_states`
    (Hungarian matching of posterior argmaxes, as in the metrics).

    Returns ``(perm, colour, accuracy)``: ``perm[k]`` the fitted state matched to reference state ``k`` (-1 if
    none), ``colour[j]`` the colour index of fitted state ``j`` (that of its matched reference state; unmatched
    states get the indices after the reference's), and the matched accuracy (NaN without truth or reference).

    Parameters
    ----------
    post : numpy.ndarray
        The fit's posterior (bins x states).
    %(counts)s
    truth : xarray.Dataset, optional
        The planted truth.
    reference : numpy.ndarray, optional
        A reference fit's posterior.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, float)
        ``perm``, ``colour`` and the matched accuracy.
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


@fill_doc
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

    Parameters
    ----------
    %(counts)s
    fits : list of (str, xarray.Dataset)
        Named switching-GLM fits.
    truth : xarray.Dataset, optional
        The planted truth.
    reference : str, optional
        The fit other fits are matched to without a truth.
    labels : dict, optional
        Text beside each fit's row.

    %(png_returns)s
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
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            len(rows), 1, figsize=(10.0, 0.75 * len(rows) + 1.1), sharex=True, squeeze=False
        )
        axes = axes[:, 0]
        k = 0
        if truth is not None:
            z = planted_states(truth, counts, idx)
            S_true = int(truth.sizes["state"])
            cmap = ListedColormap([state_color(s) for s in range(S_true)])
            ext = (x[0] - bw / 2, x[-1] + bw / 2, 0, 1) if x.size else (0, 1, 0, 1)
            axes[0].imshow(
                z[None, :],
                aspect="auto",
                cmap=cmap,
                vmin=-0.5,
                vmax=S_true - 0.5,
                extent=ext,
                interpolation="nearest",
            )
            axes[0].set_yticks([])
            axes[0].set_ylabel("planted", rotation=0, ha="right", va="center")
            k = 1
        for name, post in posts:
            ax = axes[k]
            k += 1
            _, colour, _ = state_matching(post, counts, truth, ref_post if name != reference else None)
            n_colours = max(n_colours, int(colour.max()) + 1)
            ax.imshow(
                _posterior_bands(post[idx], colour),
                aspect="auto",
                interpolation="nearest",
                origin="lower",
                extent=(x[0] - bw / 2, x[-1] + bw / 2, 0, 1) if x.size else (0, 1, 0, 1),
            )
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
        axes[0].legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            frameon=False,
            handlelength=1.2,
        )
        axes[0].set_title(
            f"Decoded states, {idx.size * bw:.3g} s of test data (bands: posterior probability "
            "of each state)",
            loc="left",
        )
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


@fill_doc
def switching_weights_figure(fit: xr.Dataset, truth: xr.Dataset, perm: np.ndarray, name: str = "") -> bytes:
    """Planted vs fitted coupling weights of every planted state (fitted state ``perm[k]`` beside planted
    state ``k``) on one symmetric colour scale, and planted vs fitted adjacency (inh / none / exc) with the
    fitted errors crossed out.

    Parameters
    ----------
    fit : xarray.Dataset
        The fit.
    truth : xarray.Dataset
        The planted truth.
    perm : numpy.ndarray
        Fitted state matched to each planted state (-1: none).
    name : str
        The variant (unused in the drawing).

    %(png_returns)s
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    units = [str(u) for u in fit["unit_post"].values]
    truth = truth.assign_coords(
        unit_post=truth["unit_post"].astype(str), unit_pre=truth["unit_pre"].astype(str)
    )
    t = truth.sel(unit_post=units, unit_pre=units)
    S = int(truth.sizes["state"])
    Wt = np.asarray(t["weights"].values, dtype=np.float64)
    Wf_all = np.asarray(fit["weights"].values, dtype=np.float64)
    At = np.asarray(t["adjacency"].values)
    Af_all = np.asarray(fit["adjacency"].values) if "adjacency" in fit else None
    Wf = [Wf_all[j] if j >= 0 else None for j in perm]
    Af = [Af_all[j] if (j >= 0 and Af_all is not None) else None for j in perm]
    lim = color_limit(*Wt, *[w for w in Wf if w is not None])
    off = ~np.eye(len(units), dtype=bool)
    adj_cmap = ListedColormap(_ADJ_COLORS)
    with plt.rc_context(STYLE):
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
                    im = ax.imshow(m, cmap=CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
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
                    unit_ticks(ax, units, axis="y")
                    ax.set_ylabel("post unit")
                else:
                    ax.set_yticks([])
                if row == 3:
                    unit_ticks(ax, units, axis="x")
                    ax.set_xlabel("pre unit")
                else:
                    ax.set_xticks([])
                for s in ax.spines.values():
                    s.set_visible(True)
        cax = fig.add_subplot(gs[0:2, S])
        clipped = any(
            bool(np.nanmax(np.abs(m)) > lim) for m in [*Wt, *[w for w in Wf if w is not None]] if m.size
        )
        cb = fig.colorbar(im, cax=cax, extend="both" if clipped else "neither")
        cb.set_label("weight" + (" (diagonal clipped)" if clipped else ""))
        lax = fig.add_subplot(gs[2:4, S])
        lax.axis("off")
        lax.legend(
            handles=[
                Patch(facecolor=c, edgecolor="#8c959f", label=lb)
                for c, lb in zip(_ADJ_COLORS, ("inh", "none", "exc"), strict=True)
            ]
            + [plt.Line2D([], [], ls="", marker="x", color="#1f2328", label="wrong")],
            loc="center left",
            fontsize=8,
            frameon=False,
        )
        return to_png(fig)


@fill_doc
def switching_summary_figure(
    variants: list[dict],
    oracle_bits: float | None = None,
) -> bytes:
    """Test bits/spike per variant (bars; the planted model's as a dashed line) and the EM objective per
    iteration of each variant. ``variants``: dicts with ``name``, ``n_states``, ``bits`` (may be NaN),
    ``objective`` (array, may be empty) and ``best`` (bool).

    Parameters
    ----------
    variants : list of dict
        One per variant.
    oracle_bits : float, optional
        The planted model's test bits/spike.

    %(png_returns)s
    """
    with plt.rc_context(STYLE):
        fig, (axb, axo) = plt.subplots(
            1,
            2,
            figsize=(10.0, 0.35 * len(variants) + 2.2),
            gridspec_kw={"width_ratios": [1, 1.3], "wspace": 0.45},
        )
        names = [v["name"] for v in variants]
        bits = np.array([v["bits"] for v in variants], dtype=np.float64)
        pos = np.arange(len(variants))
        colors = [
            "#8c959f" if v["n_states"] <= 1 else ("#1a7f37" if v.get("best") else "#4c72b0") for v in variants
        ]
        axb.barh(pos, np.nan_to_num(bits), color=colors, height=0.6)
        for p, b in zip(pos, bits, strict=True):
            axb.text(
                b if np.isfinite(b) else 0,
                p,
                f" {b:.4g}" if np.isfinite(b) else " NaN",
                va="center",
                ha="left" if not np.isfinite(b) or b >= 0 else "right",
                fontsize=8,
            )
        axb.set_yticks(pos, names)
        axb.axvline(0, color="#1f2328", lw=0.8)
        if oracle_bits is not None and np.isfinite(oracle_bits):
            axb.axvline(
                oracle_bits, color="#cf222e", lw=1.0, ls="--", label=f"planted model ({oracle_bits:.4g})"
            )
            axb.legend(loc="upper right", fontsize=8, frameon=False)
            axb.set_ylim(len(variants) - 0.4, -1.3)
        else:
            axb.set_ylim(len(variants) - 0.4, -0.6)
        finite = bits[np.isfinite(bits)]
        hi = max(
            [0.0, *finite.tolist()]
            + ([oracle_bits] if oracle_bits is not None and np.isfinite(oracle_bits) else [])
        )
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
                axo.plot(
                    np.arange(obj.size),
                    obj,
                    marker="o",
                    ms=2.5,
                    lw=1.2,
                    color=color,
                    label=f"{v['name']} ({obj.size - 1} it.)",
                )
        axo.xaxis.set_major_locator(MaxNLocator(integer=True))
        axo.set_xlabel("EM iteration")
        axo.set_ylabel("objective (train, nats)")
        axo.set_title("EM objective per iteration", loc="left")
        axo.legend(loc="lower right", fontsize=8, frameon=False)
        axo.ticklabel_format(axis="y", style="plain", useOffset=False)
        return to_png(fig)


@fill_doc
def switching_task_figure(tables: list[dict], name: str = "") -> bytes:
    """State occupancy per task-variable category: one heat map per variable, P(state | category) on the test
    bins, each cell annotated; the title carries the mutual information against its shuffled null.
    ``tables``: dicts with ``variable``, ``categories`` (list of str), ``occupancy`` ((n_categories, S) array)
    and ``mi``, ``null``, ``p`` (floats).

    Parameters
    ----------
    tables : list of dict
        One per task variable.
    name : str
        The variant shown (in the first title).

    %(png_returns)s
    """
    with plt.rc_context(STYLE):
        n = len(tables)
        S = max(np.asarray(t["occupancy"]).shape[1] for t in tables)
        fig, axes = plt.subplots(
            1,
            n,
            figsize=(max(3.2, 0.55 * S + 1.8) * n, 0.32 * max(len(t["categories"]) for t in tables) + 1.6),
            squeeze=False,
        )
        for ax, t in zip(axes[0], tables, strict=True):
            occ = np.asarray(t["occupancy"], dtype=np.float64)
            ax.imshow(np.nan_to_num(occ), cmap="Greys", vmin=0, vmax=1, aspect="auto")
            for (i, k), v in np.ndenumerate(occ):
                if np.isfinite(v):
                    ax.text(
                        k, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v > 0.5 else "k"
                    )
            ax.set_xticks(range(occ.shape[1]), [f"s{k}" for k in range(occ.shape[1])])
            for k, lab in enumerate(ax.get_xticklabels()):
                lab.set_color(state_color(k))
            ax.set_yticks(range(len(t["categories"])), t["categories"])
            ax.set_title(
                f"{t['variable']}: MI {t['mi']:.3f} bits\n(null {t['null']:.3f}, p = {t['p']:.3g})",
                loc="left",
                fontsize=8,
            )
            ax.set_xlabel("decoded state" + (f" ({name})" if name and ax is axes[0][0] else ""))
        fig.tight_layout()
        return to_png(fig)
