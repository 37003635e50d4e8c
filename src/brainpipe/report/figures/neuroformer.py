"""Figure of a Neuroformer run: pretraining loss, decoding against the label fraction, connectivity matrices."""

from __future__ import annotations

import numpy as np

from brainpipe._docs import fill_doc
from brainpipe.report.figures.base import STYLE, plt, to_png


@fill_doc
def neuroformer_figure(name: str, metrics, conn, pre, truth) -> bytes:
    """Pretraining loss, decoding score against the label fraction, and the connectivity matrices (attention
    rollout, lagged cross-correlation, Poisson-GLM coupling, planted weights when there is a truth).

    Parameters
    ----------
    name : str
        The dataset (the figure's title).
    metrics : xarray.Dataset
        Its Neuroformer metrics (the ``decode_*`` values are drawn).
    conn : xarray.Dataset
        Its connectivity file (``attention``, ``xcorr``, ``glm``).
    pre : xarray.Dataset or None
        The pretrained model (loss histories), or None.
    truth : xarray.Dataset or None
        The planted truth (``weights``), or None.

    %(png_returns)s
    """
    vals = {str(k): float(v) for k, v in zip(metrics["metric"].values, metrics["value"].values, strict=True)}
    mats = [
        ("attention rollout (lift)", conn["attention"].values),
        ("lagged cross-correlation", conn["xcorr"].values),
        ("Poisson-GLM coupling", conn["glm"].values),
    ]
    if truth is not None and "weights" in truth:
        units = [str(u) for u in conn["unit_post"].values]
        t = truth.assign_coords(
            unit_post=truth["unit_post"].astype(str), unit_pre=truth["unit_pre"].astype(str)
        )
        mats.append(("planted weights", np.asarray(t["weights"].sel(unit_post=units, unit_pre=units).values)))
    n = 2 + len(mats)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, n, figsize=(3.1 * n, 3.0))
        ax = axes[0]
        if pre is not None and "history_train_loss" in pre:
            ep = np.arange(pre.sizes["epoch"])
            ax.plot(ep, pre["history_train_loss"].values, label="train")
            if "history_val_loss" in pre:
                ax.plot(ep, pre["history_val_loss"].values, label="validation")
            ax.legend(fontsize=7)
        ax.set(title="pretraining loss", xlabel="epoch", ylabel="ID + dt cross-entropy (nats)")
        ax = axes[1]
        for model, style in (
            ("pretrained", "o-"),
            ("scratch", "s--"),
            ("ridge", "^:"),
            ("logistic", "^:"),
            ("ridge_history", "v:"),
            ("logistic_history", "v:"),
        ):
            pts = sorted(
                (float(k.rsplit("_", 1)[1][:-3]), v)
                for k, v in vals.items()
                if k.startswith("decode_") and k.split("_", 2)[2].rsplit("_", 1)[0] == model
            )
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=model)
        if any(k.startswith("decode_") for k in vals):
            ax.set_xscale("log")
            ax.legend(fontsize=7)
        score = "balanced accuracy" if any(k.startswith("decode_bacc") for k in vals) else "R2"
        ax.set(title="behaviour decoding (test)", xlabel="% of labelled train windows", ylabel=score)
        for ax, (title, M) in zip(axes[2:], mats, strict=True):
            M = np.array(M, dtype=float)
            np.fill_diagonal(M, np.nan)
            off = M[np.isfinite(M)]
            centre = 1.0 if title.startswith("attention") else 0.0
            lim = float(np.nanmax(np.abs(off - centre))) if off.size else 1.0
            im = ax.imshow(M, cmap="RdBu_r", vmin=centre - lim, vmax=centre + lim)
            ax.set(title=title, xlabel="pre (past)", ylabel="post")
            fig.colorbar(im, ax=ax, fraction=0.046)
        fig.suptitle(name)
        fig.tight_layout()
    return to_png(fig)
