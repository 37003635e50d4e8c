"""What every figure of the report shares: the off-screen backend, the style, PNG encoding and axis helpers.

Every figure function builds one matplotlib figure, saves it to PNG (:func:`to_png`, which closes it, so a report
over many datasets does not accumulate open figures) and returns the bytes; :func:`data_uri` turns them into a
``data:`` URI for embedding.
"""

from __future__ import annotations

import base64
import io

import matplotlib

from brainpipe._docs import fill_doc

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 100
MAX_LABELLED_UNITS = 30
CMAP = "RdBu_r"
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@fill_doc
def to_png(fig: Figure) -> bytes:
    """PNG bytes of ``fig``; the figure is closed whatever happens.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure (closed afterwards).

    %(png_returns)s
    """
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
        return buf.getvalue()
    finally:
        plt.close(fig)


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an ``<img src>``.

    Parameters
    ----------
    png : bytes
        PNG bytes.

    Returns
    -------
    str
        The URI.
    """
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def unit_ticks(ax, labels: list[str], axis: str) -> None:
    """Unit names as ticks on ``axis`` ("x" or "y") of ``ax``: all of them up to 30 units, else 10 spread out."""
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


def color_limit(*mats: np.ndarray) -> float:
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
