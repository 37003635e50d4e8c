"""The fMRI section of the study report: BrainMAE variants against the baselines, per dataset.

Fed by the report rule's inputs ``fmri__metrics`` / ``fmri__fits`` (parallel, one per dataset and variant,
``results/fmri/<dataset>/brainmae/<variant>/``), ``fmri__baselines``, ``fmri__clean`` and ``fmri__truths`` (paths:
:mod:`brainpipe.layout`). Datasets and variants are named by the metrics files' ``dataset`` and ``model``
(``brainmae/<variant>``) attributes; cleaned segments and truths are matched to a dataset by their place in the
layout.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np

from brainpipe import layout
from brainpipe.report.base import BranchSection, Reader, attr, img
from brainpipe.report.headline import headline
from brainpipe.report.tables import metrics_table

COLUMNS = (
    ("masked NMSE", "masked_nmse"),
    ("vs best baseline", "masked_nmse_vs_best_baseline"),
    ("shuffled emb.", "masked_nmse_shuffled_embeddings"),
    ("ROI-emb. ARI", "roi_embedding_ari"),
    ("ARI vs FC clustering", "roi_embedding_ari_vs_fc_clustering"),
    ("probe acc.", "probe_accuracy"),
    ("probe acc. vs FC", "probe_accuracy_vs_fc"),
    ("probe AUROC", "probe_auroc"),
    ("probe R2", "probe_r2"),
    ("fine-tune acc.", "finetune_accuracy"),
    ("fine-tune R2", "finetune_r2"),
    ("NMSE vs base", "masked_nmse_vs_base"),
    ("ARI vs base", "roi_embedding_ari_vs_base"),
    ("probe acc. vs base", "probe_accuracy_vs_base"),
    ("pretrain s", "pretrain_seconds"),
)
BASELINES = (
    ("mean filling NMSE", "nmse_mean_fill"),
    ("segment ridge NMSE", "nmse_ridge"),
    ("volume ridge NMSE", "nmse_ridge_volume"),
    ("PCA NMSE", "nmse_pca"),
    ("FC clustering ARI", "fc_clustering_ari"),
    ("FC corr. acc.", "fc_correlation_accuracy"),
    ("FC tangent acc.", "fc_tangent_accuracy"),
    ("FC corr. R2", "fc_correlation_r2"),
    ("FC tangent R2", "fc_tangent_r2"),
)
#: the headline of a BrainMAE variant: masked-ROI reconstruction error against the best reconstruction baseline
MAIN = (
    "masked_nmse",
    (
        ("segment ridge", "nmse_ridge"),
        ("same-volume ridge", "nmse_ridge_volume"),
        ("linear autoencoder (PCA)", "nmse_pca"),
        ("mean filling", "nmse_mean_fill"),
    ),
    False,
)


def _variant(m) -> str:
    """The variant of a BrainMAE metrics file, from its ``model`` attribute (``brainmae/<variant>``)."""
    model = attr(m, "model", "brainmae")
    return model.split("/", 1)[1] if "/" in model else model


def _dataset_of(name: str, path: Path) -> str:
    """The dataset folder of a file that follows the layout (result ``name``), else its parent folder's name."""
    hit = layout.match(name, path)
    return hit[1]["fmri_dataset"] if hit else path.parent.name


def _values(m) -> dict[str, tuple[float, int]]:
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


#: the comparisons the verdict sentence states: (what, BrainMAE - best baseline metric, the baseline's name, lower is
#: better)
VERDICTS = (
    ("masked-ROI NMSE", "masked_nmse_vs_best_baseline", "the best reconstruction baseline", True),
    ("ROI-embedding ARI", "roi_embedding_ari_vs_fc_clustering", "FC clustering", False),
    ("probe accuracy", "probe_accuracy_vs_fc", "the best FC + logistic baseline", False),
    ("probe R2", "probe_r2_vs_fc", "the best FC + ridge baseline", False),
)


def verdict(vals: dict[str, tuple[float, int]]) -> str:
    """One sentence per comparison of a BrainMAE run against its best baseline: beats, ties or loses, by how much,
    with the spread over training seeds when there are several (and a note when the worst seed loses); with the
    linear path (``linear_path: volume``), what the path alone scores and what the network's correction adds.

    Parameters
    ----------
    vals : dict
        Metric name -> (value, passed) of a BrainMAE metrics file.

    Returns
    -------
    str
        The sentences (empty when the file has none of the comparisons).
    """
    out = []
    n = int(vals["n_seeds"][0]) if "n_seeds" in vals else 1
    for what, key, base, lower in VERDICTS:
        if key not in vals or not np.isfinite(vals[key][0]):
            continue
        d = vals[key][0]
        gain = -d if lower else d
        word = "beats" if gain > 1e-9 else "ties" if abs(gain) <= 1e-9 else "loses to"
        spread = ""
        if n > 1 and f"{key}_sd" in vals:
            spread = f" (mean of {n} seeds, SD {vals[key + '_sd'][0]:.3f}, worst seed {vals[key + '_worst'][0]:+.3f})"
        by = "" if word == "ties" else f" by {abs(d):.3f}"
        out.append(f"{what}: BrainMAE {word} {base}{by} (difference {d:+.3f}){spread}.")
        worst = vals.get(f"{key}_worst", (np.nan, -1))[0] if n > 1 else np.nan
        if word == "beats" and np.isfinite(worst) and (worst > 0 if lower else worst < 0):
            out.append("The worst seed loses, so this is no win at every seed.")
        if key == "masked_nmse_vs_best_baseline" and "masked_nmse_vs_linear_path" in vals:
            out.append(
                f"Its linear path (a per-volume ridge) alone scores {vals['masked_nmse_linear_path'][0]:.3f}; the "
                f"network's correction changes the NMSE by {vals['masked_nmse_vs_linear_path'][0]:+.3f}."
            )
    return " ".join(out)


#: an ablation against the base variant: (what, ablation - base metric, lower is better)
ABLATION_VERDICTS = (
    ("masked-ROI NMSE", "masked_nmse_vs_base", True),
    ("ROI-embedding ARI", "roi_embedding_ari_vs_base", False),
    ("probe accuracy", "probe_accuracy_vs_base", False),
)


def ablation_verdict(name: str, vals: dict[str, tuple[float, int]]) -> str:
    """One sentence per comparison of an ablation with the base variant: whether the base is better, and by how much.

    Parameters
    ----------
    name : str
        The ablation (variant name).
    vals : dict
        Metric name -> (value, passed) of the ablation's metrics file (``<metric>_vs_base``: ablation minus base).

    Returns
    -------
    str
        The sentence (empty when the file has no ``_vs_base`` metric).
    """
    parts = []
    for what, key, lower in ABLATION_VERDICTS:
        if key not in vals or not np.isfinite(vals[key][0]):
            continue
        d = vals[key][0]
        base_gain = d if lower else -d
        if abs(base_gain) <= 1e-9:
            parts.append(f"{what}: ties (the base does not win)")
        else:
            parts.append(f"{what}: the base is {'better' if base_gain > 0 else 'worse'} by {abs(d):.3f}")
    return f"Ablation {name} against the base: " + "; ".join(parts) + "." if parts else ""


def sections(files: dict[str, list[Path]]) -> list[BranchSection]:
    """The fMRI section (``id="fmri"``): per dataset its segments, a table of the variants against the baselines
    and the figure of one fit; all its metrics.

    Parameters
    ----------
    files : dict
        ``metrics``, ``fits`` (parallel), ``baselines``, ``clean``, ``truths``: lists of paths.

    Returns
    -------
    list of BranchSection
        One section, with a headline per BrainMAE variant.
    """
    from brainpipe.report import figures

    reader = Reader()
    metrics = [Path(p) for p in files.get("metrics", [])]
    fit_paths = [Path(p) for p in files.get("fits", [])]
    by_metrics = {p: reader(p, "metrics") for p in metrics}
    # a fit belongs to the metrics file at its position (parallel lists), else to the one in its folder
    fit_of = {}
    for i, p in enumerate(metrics):
        if len(fit_paths) == len(metrics):
            fit_of[p] = fit_paths[i]
        else:
            fit_of[p] = next((f for f in fit_paths if f.parent == p.parent), None)
    baselines = {attr(reader(p, "metrics"), "dataset", "?"): Path(p) for p in files.get("baselines", [])}
    # folder -> dataset name: the metrics files say which folder is which dataset
    name_of = {_dataset_of("brainmae_metrics", p): attr(m, "dataset", "?") for p, m in by_metrics.items()}
    name_of.update({_dataset_of("fmri_baselines", p): d for d, p in baselines.items()})
    truths = {
        name_of.get(_dataset_of("fmri_truth", Path(p)), _dataset_of("fmri_truth", Path(p))): Path(p)
        for p in files.get("truths", [])
    }
    clean = {
        name_of.get(_dataset_of("fmri_clean", Path(p)), _dataset_of("fmri_clean", Path(p))): Path(p)
        for p in files.get("clean", [])
    }
    datasets = sorted({attr(m, "dataset", "?") for m in by_metrics.values()} | set(baselines))
    parts = [
        '<section id="fmri"><h2>fMRI: BrainMAE</h2>',
        "<p>Masked pretraining of BrainMAE (region-aware graph attention from learned ROI embeddings; hidden-ROI "
        "reconstruction loss 0.75 x MSE(masked) + 0.25 x MSE(visible)) pooled over the training subjects, one "
        "encoder per outer fold (encoder k never sees fold k's subjects); reconstruction by encoder 0 "
        "scored on held-out subjects (fold 0) against mean filling, ridge regression (same volume; whole segment) and "
        "a linear autoencoder (PCA), each fitted on the training folds with its hyperparameters chosen by inner "
        "cross-validation there, on the same masks; ROI embeddings against k-means/spectral clustering of FC; "
        "downstream tasks by subject-wise k-fold cross-validation (test fold k: encoder k) against "
        "functional connectivity "
        "(correlation, tangent) with logistic/ridge regression. Variants are the ablations named in the config. "
        "A dataset without subjects or labels (nitime) is split by time blocks and has no downstream task.</p>",
    ]
    heads = []
    inputs: list[tuple[str, str, Path, str]] = []
    for d in datasets:
        anchor = f"fmri-{d}"
        parts.append(f"<h3>{escape(d)}</h3>")
        if d in clean:
            c = reader(clean[d], "roi_segments")
            inputs.append((d, "segments", clean[d], "roi_segments"))
            parts.append(
                f"<p>{c.sizes['subject']} subject(s), {c.sizes['roi']} ROIs, {c.sizes['segment']} segments of "
                f"{c.attrs['segment_length_s']:g} s ({c.sizes['lag']} volumes at TR {c.attrs['repetition_time_s']:g} s), "
                f"split by {escape(str(c.attrs.get('split_by', 'subject')))}.</p>"
            )
        if d in truths:
            inputs.append((d, "truth", truths[d], "model_fit"))
        rows = sorted(
            (p for p, m in by_metrics.items() if attr(m, "dataset", "?") == d),
            key=lambda p: (_variant(by_metrics[p]) != "base", _variant(by_metrics[p])),
        )
        head = "".join(f"<th>{escape(h)}</th>" for h, _ in COLUMNS)
        body = ""
        for p in rows:
            vals = _values(by_metrics[p])
            body += (
                f"<tr><td>{escape(_variant(by_metrics[p]))}</td>"
                + "".join(_cell(vals, k) for _, k in COLUMNS)
                + "</tr>"
            )
        if d in baselines:
            bv = _values(reader(baselines[d], "metrics"))
            text = "; ".join(
                f"{escape(h)} {bv[k][0]:.3f}" for h, k in BASELINES if k in bv and np.isfinite(bv[k][0])
            )
            body += f'<tr><td><em>baselines</em></td><td colspan="{len(COLUMNS)}">{text}</td></tr>'
            inputs.append((d, "metrics", baselines[d], "metrics"))
        parts.append(
            f'<table class="metrics" id="{escape(anchor)}"><thead><tr><th>variant</th>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>"
        )
        base_run = next((p for p in rows if _variant(by_metrics[p]) == "base"), None)
        if base_run is not None and verdict(_values(by_metrics[base_run])):
            parts.append(f'<p class="verdict">{escape(verdict(_values(by_metrics[base_run])))}</p>')
        for p in rows:
            said = ablation_verdict(_variant(by_metrics[p]), _values(by_metrics[p]))
            if said and _variant(by_metrics[p]) != "base":
                parts.append(f'<p class="verdict">{escape(said)}</p>')
        shown = next((p for p in rows if _variant(by_metrics[p]) == "base" and fit_of.get(p)), None)
        shown = shown or next(
            (p for p in sorted(rows, key=lambda p: _variant(by_metrics[p])) if fit_of.get(p)), None
        )
        figure = ""
        if shown is not None:
            title = f"{d} · BrainMAE {_variant(by_metrics[shown])}"
            truth = reader(truths[d], "model_fit") if d in truths else None
            png = figures.brainmae_figure(reader(fit_of[shown], "model_fit"), truth, title)
            figure = img(figures.data_uri(png), title, title)
            parts.append(figure)
        for p in rows:
            main, base, higher = MAIN
            h = headline(
                by_metrics[p], main, base, higher, anchor=anchor, figure=figure if p == shown else ""
            )
            if h is not None:
                heads.append(h)
            inputs.append((d, "metrics", p, "metrics"))
            if fit_of.get(p):
                inputs.append((d, "fit", fit_of[p], "model_fit"))
    all_metrics = [baselines[d] for d in datasets if d in baselines] + metrics
    if all_metrics:
        parts.append("<h3>All fMRI metrics</h3>" + metrics_table(all_metrics, reader=reader))
    parts.append("</section>")
    return [
        BranchSection("fmri", "fMRI", "".join(parts), metrics=all_metrics, headlines=heads, inputs=inputs)
    ]
