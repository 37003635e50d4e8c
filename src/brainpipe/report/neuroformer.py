"""The Neuroformer section of the study report (branch hook: inputs named ``neuroformer__<key>``).

``files`` keys: ``metrics`` (one per dataset), ``connectivity`` (attention / cross-correlation / GLM matrices),
``pretrained`` (weights + loss history), ``finetune`` (decoding runs), ``truths`` (planted truth of simulated
datasets). All are matched by dataset folder (``results/spikes/<dataset>/...``).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np

from brainpipe.data import read
from brainpipe.report.html import BranchSection, _img, metrics_table


def _by_dataset(paths, level: int = 2) -> dict[str, Path]:
    """``results/spikes/<dataset>/neuroformer/x.nc`` (level 2) or ``.../<dataset>/truth.nc`` (level 1)."""
    return {Path(p).parents[level - 1].name: Path(p) for p in paths}


def _figure(name: str, metrics, conn, pre, truth) -> bytes:
    import matplotlib.pyplot as plt

    from brainpipe.report import figures

    vals = {str(k): float(v) for k, v in zip(metrics["metric"].values, metrics["value"].values, strict=True)}
    mats = [("attention rollout (lift)", conn["attention"].values), ("lagged cross-correlation", conn["xcorr"].values),
            ("Poisson-GLM coupling", conn["glm"].values)]
    if truth is not None and "weights" in truth:
        units = [str(u) for u in conn["unit_post"].values]
        t = truth.assign_coords(unit_post=truth["unit_post"].astype(str), unit_pre=truth["unit_pre"].astype(str))
        mats.append(("planted weights", np.asarray(t["weights"].sel(unit_post=units, unit_pre=units).values)))
    n = 2 + len(mats)
    with plt.rc_context(figures._STYLE):
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
        for model, style in (("pretrained", "o-"), ("scratch", "s--"), ("ridge", "^:"), ("logistic", "^:")):
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
    return figures.to_png(fig)


def sections(files: dict[str, list[Path]]) -> list[BranchSection]:
    from brainpipe.report import figures

    metrics = list(files.get("metrics", []))
    if not metrics:
        return []
    conns = _by_dataset(files.get("connectivity", []))
    pres = _by_dataset(files.get("pretrained", []))
    truths = _by_dataset(files.get("truths", []), level=1)
    parts = [
        '<section id="neuroformer"><h2>Neuroformer</h2>',
        "<p>Generative pretraining over spike tokens (neuron ID + time offset in a current window, a past window "
        "through cross-attention, configured modalities), then behaviour decoding fine-tuned with a fraction of the "
        "labelled train windows (pretrained vs the same network from scratch vs ridge/logistic regression on "
        "binned counts), connectivity from attention rollout (current -> past tokens) scored against planted "
        "connections beside lagged cross-correlation and a coupled Poisson GLM, and spike generation scored by the "
        "per-window F1 of the sampled neuron set. Test windows are scored once; every split is a time block.</p>",
        metrics_table(metrics),
    ]
    for mp in metrics:
        name = mp.parents[1].name
        m = read(mp, "metrics")
        conn = read(conns[name], "model_fit") if name in conns else None
        pre = read(pres[name], "model_fit") if name in pres else None
        truth = read(truths[name], "model_fit") if name in truths else None
        if conn is None:
            continue
        png = _figure(name, m, conn, pre, truth)
        stats = {k[len("tokens_"):]: v for k, v in m.attrs.items() if k.startswith("tokens_")}
        caption = (
            f"{name}: pretraining loss; decoding score against the label fraction; connectivity matrices "
            f"(post x pre, diagonal blank). Tokeniser on all windows: "
            + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats.items())
        )
        parts.append(f"<h3>{escape(name)}</h3>" + _img(figures.data_uri(png), f"Neuroformer on {name}", caption))
    parts.append("</section>")
    return [BranchSection("neuroformer", "Neuroformer", "".join(parts), metrics=metrics)]
