"""The fMRI section of the study report: BrainMAE variants against the baselines, per dataset.

Fed by the report rule's inputs ``fmri__metrics`` / ``fmri__fits`` (one per dataset and variant,
``results/fmri/<dataset>/brainmae/<variant>/``), ``fmri__baselines``, ``fmri__clean`` and ``fmri__truths``.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np

from brainpipe.data import read
from brainpipe.report.html import BranchSection, metrics_table

COLUMNS = (
    ("masked NMSE", "masked_nmse"),
    ("vs ridge", "masked_nmse_vs_ridge"),
    ("shuffled emb.", "masked_nmse_shuffled_embeddings"),
    ("ROI-emb. ARI", "roi_embedding_ari"),
    ("probe acc.", "probe_accuracy"),
    ("probe AUROC", "probe_auroc"),
    ("probe R2", "probe_r2"),
    ("fine-tune acc.", "finetune_accuracy"),
    ("fine-tune R2", "finetune_r2"),
    ("pretrain s", "pretrain_seconds"),
)
BASELINES = (
    ("mean filling NMSE", "nmse_mean_fill"),
    ("ridge NMSE", "nmse_ridge"),
    ("FC corr. acc.", "fc_correlation_accuracy"),
    ("FC tangent acc.", "fc_tangent_accuracy"),
    ("FC corr. R2", "fc_correlation_r2"),
    ("FC tangent R2", "fc_tangent_r2"),
)


def _where(path: Path) -> tuple[str, str]:
    """(dataset, variant) of ``results/fmri/<dataset>/brainmae/<variant>/<file>``."""
    return path.parent.parent.parent.name, path.parent.name


def _values(path: Path) -> dict[str, tuple[float, int]]:
    m = read(path, "metrics")
    passed = m["passed"].values if "passed" in m else np.full(m.sizes["metric"], -1)
    return {
        str(k): (float(v), int(p))
        for k, v, p in zip(m["metric"].values, m["value"].values, passed, strict=True)
    }


def _cell(vals: dict[str, tuple[float, int]], key: str) -> str:
    if key not in vals or not np.isfinite(vals[key][0]):
        return "<td>—</td>"
    v, p = vals[key]
    mark = {1: ' class="pass"', 0: ' class="miss"'}.get(p, "")
    return f"<td{mark}>{v:.3f}{' ✓' if p == 1 else ' ✗' if p == 0 else ''}</td>"


def _figure(fit_path: Path, truth_path: Path | None, title: str) -> str:
    from brainpipe.report import figures

    fit = read(fit_path, "model_fit")
    E = fit["roi_embedding"].values
    En = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    order = np.arange(E.shape[0])
    if truth_path is not None:
        truth = read(truth_path, "model_fit")
        if "module" in truth:
            order = np.argsort(truth["module"].sel(roi=fit["roi"].values).values, kind="stable")
    with figures.plt.rc_context(figures._STYLE):
        n = 3 if "graph_attention" in fit else 2
        fig, axes = figures.plt.subplots(1, n, figsize=(4.6 * n, 3.8), constrained_layout=True)
        sim = (En @ En.T)[np.ix_(order, order)]
        im = axes[0].imshow(sim, cmap=figures._CMAP, vmin=-1, vmax=1)
        axes[0].set_title("ROI-embedding cosine similarity")
        axes[0].set_xlabel("ROI (by planted module)" if truth_path else "ROI")
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
        uri = figures.data_uri(figures.to_png(fig))
    return f'<figure><img src="{uri}" alt="{escape(title)}"><figcaption>{escape(title)}</figcaption></figure>'


def sections(files: dict[str, list[Path]]) -> list[BranchSection]:
    metrics = [Path(p) for p in files.get("metrics", [])]
    fits = {_where(Path(p)): Path(p) for p in files.get("fits", [])}
    baselines = {Path(p).parent.parent.name: Path(p) for p in files.get("baselines", [])}
    truths = {Path(p).parent.name: Path(p) for p in files.get("truths", [])}
    clean = {Path(p).parent.name: Path(p) for p in files.get("clean", [])}
    datasets = sorted({_where(p)[0] for p in metrics} | set(baselines))
    parts = [
        '<section id="fmri"><h2>fMRI: BrainMAE</h2>',
        "<p>Masked pretraining of BrainMAE (region-aware graph attention from learned ROI embeddings; hidden-ROI "
        "reconstruction loss 0.75 x MSE(masked) + 0.25 x MSE(visible)) pooled over the training subjects, one "
        "encoder per outer fold (encoder k never sees fold k's subjects); reconstruction by encoder 0 "
        "scored on held-out subjects (fold 0) against mean filling and ridge regression on the same masks; "
        "downstream tasks by subject-wise k-fold cross-validation (test fold k: encoder k) against "
        "functional connectivity "
        "(correlation, tangent) with logistic/ridge regression. Variants are the ablations named in the config. "
        "A dataset without subjects or labels (nitime) is split by time blocks and has no downstream task.</p>",
    ]
    for d in datasets:
        parts.append(f"<h3>{escape(d)}</h3>")
        if d in clean:
            c = read(clean[d], "roi_segments")
            parts.append(
                f"<p>{c.sizes['subject']} subject(s), {c.sizes['roi']} ROIs, {c.sizes['segment']} segments of "
                f"{c.attrs['segment_length_s']:g} s ({c.sizes['lag']} volumes at TR {c.attrs['repetition_time_s']:g} s), "
                f"split by {escape(str(c.attrs.get('split_by', 'subject')))}.</p>"
            )
        rows = [p for p in metrics if _where(p)[0] == d]
        head = "".join(f"<th>{escape(h)}</th>" for h, _ in COLUMNS)
        body = ""
        for p in sorted(rows, key=lambda p: (_where(p)[1] != "base", _where(p)[1])):
            vals = _values(p)
            body += (
                f"<tr><td>{escape(_where(p)[1])}</td>" + "".join(_cell(vals, k) for _, k in COLUMNS) + "</tr>"
            )
        if d in baselines:
            bv = _values(baselines[d])
            text = "; ".join(
                f"{escape(h)} {bv[k][0]:.3f}" for h, k in BASELINES if k in bv and np.isfinite(bv[k][0])
            )
            body += f'<tr><td><em>baselines</em></td><td colspan="{len(COLUMNS)}">{text}</td></tr>'
        parts.append(
            f'<table class="metrics"><thead><tr><th>variant</th>{head}</tr></thead><tbody>{body}</tbody></table>'
        )
        fit = fits.get((d, "base")) or next((f for (dd, _), f in sorted(fits.items()) if dd == d), None)
        if fit is not None:
            parts.append(_figure(fit, truths.get(d), f"{d} · BrainMAE {_where(fit)[1]}"))
    all_metrics = [baselines[d] for d in datasets if d in baselines] + metrics
    if all_metrics:
        parts.append("<h3>All fMRI metrics</h3>" + metrics_table(all_metrics))
    parts.append("</section>")
    return [BranchSection("fmri", "fMRI", "".join(parts), metrics=all_metrics)]
