"""Figure of a BrainMAE fit: ROI-embedding similarity (by planted module), graph attention and the loss history."""

from __future__ import annotations

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.report.figures.base import CMAP, STYLE, plt, to_png


@fill_doc
def brainmae_figure(fit: xr.Dataset, truth: xr.Dataset | None, title: str) -> bytes:
    """ROI-embedding cosine similarity (ROIs ordered by planted module when ``truth`` has them), the mean graph
    attention when the fit has it, and the masked-pretraining loss per epoch.

    Parameters
    ----------
    fit : xarray.Dataset
        A BrainMAE ``model_fit`` (``roi_embedding``, ``epoch``, loss histories, optionally ``graph_attention``).
    truth : xarray.Dataset or None
        The planted truth of a simulated cohort (``module`` per ROI), or None.
    title : str
        The figure's title.

    %(png_returns)s
    """
    E = fit["roi_embedding"].values
    En = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    order = np.arange(E.shape[0])
    if truth is not None and "module" in truth:
        order = np.argsort(truth["module"].sel(roi=fit["roi"].values).values, kind="stable")
    with plt.rc_context(STYLE):
        n = 3 if "graph_attention" in fit else 2
        fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.8), constrained_layout=True)
        sim = (En @ En.T)[np.ix_(order, order)]
        im = axes[0].imshow(sim, cmap=CMAP, vmin=-1, vmax=1)
        axes[0].set_title("ROI-embedding cosine similarity")
        axes[0].set_xlabel("ROI (by planted module)" if truth is not None else "ROI")
        fig.colorbar(im, ax=axes[0], fraction=0.046)
        k = 1
        if "graph_attention" in fit:
            a = fit["graph_attention"].values[np.ix_(order, order)]
            im = axes[1].imshow(a, cmap="viridis")
            axes[1].set_title("graph attention (mean of layers, heads)")
            fig.colorbar(im, ax=axes[1], fraction=0.046)
            k = 2
        ep = fit["epoch"].values
        for name in ("history_train_loss", "history_val_loss"):
            if name in fit:
                axes[k].plot(ep, fit[name].values, label=name.replace("history_", "").replace("_", " "))
        axes[k].set_xlabel("epoch")
        axes[k].set_ylabel("masked-pretraining loss")
        axes[k].legend(frameon=False)
        fig.suptitle(title)
        return to_png(fig)
