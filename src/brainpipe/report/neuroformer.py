"""The Neuroformer section of the study report (branch hook: inputs named ``neuroformer__<key>``).

``files`` keys: ``metrics`` (one per dataset), ``connectivity`` (attention / cross-correlation / GLM matrices),
``pretrained`` (weights + loss history), ``finetune`` (decoding runs), ``truths`` (planted truth of simulated
datasets). A dataset is named by its metrics file's ``dataset`` attribute; the other files are matched to it by
their place in the layout (``results/spikes/<dataset>/...``, :mod:`brainpipe.layout`).
"""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

import xarray as xr

from brainpipe import layout
from brainpipe.report.base import BranchSection, Reader, attr, img
from brainpipe.report.headline import headline
from brainpipe.report.tables import metrics_table

#: a decoding score of the pretrained network with all labels (`r2` or `bacc`)
_DECODE = re.compile(r"decode_(\w+?)_pretrained_100pct")


def _folder(path: Path, result: str) -> str:
    """The dataset folder of a file that follows the layout, else the folder above its own (``<dataset>/x/f.nc``)."""
    hit = layout.match(result, path)
    return hit[1]["dataset"] if hit else path.parents[1].name


def _by_dataset(paths, result: str) -> dict[str, Path]:
    return {_folder(Path(p), result): Path(p) for p in paths}


def main_metric(names: list[str]) -> tuple[str, list[tuple[str, str]]] | None:
    """The headline metric of a Neuroformer metrics file and its baselines, from the metric names it has.

    Decoding with all labels (pretrained vs ridge/logistic on binned counts and vs the same network from scratch),
    else attention connectivity (vs lagged cross-correlation and the Poisson GLM), else generation F1 (vs the GLM).

    Parameters
    ----------
    names : list of str
        The file's metric names.

    Returns
    -------
    (str, list of (label, metric)) or None
    """
    for n in names:
        m = _DECODE.fullmatch(n)
        if m:
            s = m.group(1)
            return n, [
                (label, f"decode_{s}_{key}_100pct")
                for label, key in (
                    ("ridge", "ridge"),
                    ("logistic", "logistic"),
                    ("ridge + history bins", "ridge_history"),
                    ("logistic + history bins", "logistic_history"),
                    ("ridge + modality variables", "ridge_inputs"),
                    ("logistic + modality variables", "logistic_inputs"),
                    ("ridge + history bins + modality variables", "ridge_history_inputs"),
                    ("logistic + history bins + modality variables", "logistic_history_inputs"),
                    ("ridge, modality variables alone", "ridge_modality"),
                    ("logistic, modality variables alone", "logistic_modality"),
                    ("from scratch (converged)", "scratch"),
                )
            ]
    if "connectivity_auroc" in names:
        return "connectivity_auroc", [
            ("lagged cross-correlation", "connectivity_auroc_xcorr"),
            ("Poisson GLM", "connectivity_auroc_glm"),
            ("cross-correlation after the modality covariates", "connectivity_auroc_xcorr_resid"),
        ]
    if "generation_f1" in names:
        return "generation_f1", [("Poisson GLM", "generation_f1_glm")]
    return None


def verdict(name: str, values: dict[str, float]) -> str:
    """One sentence per comparison: does Neuroformer beat its best baseline on this dataset, and by how much.

    Decoding at each label fraction against the validation-chosen linear baseline (and the converged from-scratch
    network where it ran), connectivity against lagged cross-correlation, hubs against the firing-rate rule. The
    default study runs one pretraining seed; the spread over seeds comes from ``bench/neuroformer_seeds.py``.

    Parameters
    ----------
    name : str
        The dataset's name.
    values : dict
        Its metrics (name -> value).

    Returns
    -------
    str
        The sentences (empty when there is nothing to compare).
    """

    def cmp(what: str, a: str, b: str, against: str) -> str | None:
        if a not in values or b not in values:
            return None
        va, vb = float(values[a]), float(values[b])
        if va != va or vb != vb:  # NaN
            return None
        word = "beats" if va > vb else ("ties" if va == vb else "does not beat")
        return f"{what}: {va:.3f} vs {against} {vb:.3f}, {word} it ({va - vb:+.3f})"

    out = []
    pcts = sorted(
        {k.rsplit("_", 1)[1] for k in values if k.startswith("decode_") and "_pretrained_" in k},
        key=lambda p: float(p[:-3]),
    )
    for pct in pcts:
        for score in ("r2", "bacc"):
            pre = f"decode_{score}_pretrained_{pct}"
            mod = next(
                (m for m in ("ridge_modality", "logistic_modality") if f"decode_{score}_{m}_{pct}" in values),
                None,
            )
            best = "the best linear decoder" + (
                " (binned counts with or without the modality variables, or these alone)" if mod else ""
            )
            others = [("baseline", best), ("scratch", "converged scratch")]
            for other, label in others + ([(mod, "the modality variables alone")] if mod else []):
                c = cmp(
                    f"decoding {score} at {pct[:-3]}% of labels", pre, f"decode_{score}_{other}_{pct}", label
                )
                if c:
                    out.append(c)
    for what, a, b, label in (
        ("connectivity AUROC", "connectivity_auroc", "connectivity_auroc_xcorr", "lagged cross-correlation"),
        (
            "direction accuracy",
            "connectivity_direction",
            "connectivity_direction_xcorr",
            "lagged cross-correlation",
        ),
        ("hub recall", "hub_recall", "hub_recall_rate", "the firing-rate rule"),
        ("generation F1", "generation_f1", "generation_f1_glm", "the Poisson GLM"),
    ):
        c = cmp(what, a, b, label)
        if c:
            out.append(c)
    if not out:
        return ""
    return (
        f"{name} (one pretraining seed; spread over seeds: bench/neuroformer_seeds.py): "
        + "; ".join(out)
        + "."
    )


def choices(pre: xr.Dataset | None, conn: xr.Dataset | None, ft: xr.Dataset | None = None) -> str:
    """One sentence on what the validation split chose for a dataset: the contrastive weight, the attention read-out,
    the fine-tuning option of each start and label fraction.

    Parameters
    ----------
    pre : xarray.Dataset or None
        The pretrained ``model_fit`` (``contrastive_grid`` and ``contrastive_grid_val_token_loss`` attrs after a grid).
    conn : xarray.Dataset or None
        The connectivity ``model_fit`` (``attention_readout`` and its candidates' validation AUROCs).
    ft : xarray.Dataset, optional
        The fine-tuning runs' ``model_fit`` (``finetune_selection`` attr, with two or more ``finetune_options``).

    Returns
    -------
    str
        The sentence, ``""`` when nothing was chosen.
    """
    bits = []
    if pre is not None and pre.attrs.get("contrastive_grid"):
        grid = json.loads(str(pre.attrs["contrastive_grid"]))
        by_decoding = pre.attrs.get("contrastive_select") == "decoding"
        key = "contrastive_grid_val_decoding_score" if by_decoding else "contrastive_grid_val_token_loss"
        per_weight = json.loads(str(pre.attrs.get(key, "[]")))
        pairs = ", ".join(f"{w:g}: {v:.4f}" for w, v in zip(grid, per_weight, strict=False))
        what = (
            "a linear probe's validation decoding score per weight"
            if by_decoding
            else "validation next-token loss per weight, nats"
        )
        bits.append(
            f"contrastive weight {float(pre.attrs.get('contrastive_weight', float('nan'))):g} ({what}: {pairs})"
        )
    cands = json.loads(str(conn.attrs.get("attention_readout_candidates", "[]"))) if conn is not None else []
    aucs = (
        json.loads(str(conn.attrs.get("attention_readout_validation_auroc", "[]")))
        if conn is not None
        else []
    )
    if len(cands) > 1 and aucs:
        pairs = ", ".join(f"{c}: {a:.3f}" for c, a in zip(cands, aucs, strict=False))
        bits.append(
            f"attention read-out {conn.attrs.get('attention_readout')} (validation AUROC per read-out: {pairs})"
        )
    sel = json.loads(str(ft.attrs.get("finetune_selection", "{}"))) if ft is not None else {}
    if len(json.loads(str(ft.attrs.get("finetune_options", "[]"))) if ft is not None else []) > 1 and sel:
        draws = int(ft.attrs.get("label_draws", 1))
        runs = ", ".join(
            f"{k.replace('pct', '%').replace('_', ' ')}: {v['chosen']} ("
            + ", ".join(f"{o} {loss:.4f}" for o, loss in v["val_loss"].items())
            + ")"
            for k, v in sel.items()
        )
        bits.append(
            "fine-tuning option per start and label fraction (validation behaviour loss per option"
            + (f", mean over up to {draws} label draws" if draws > 1 else "")
            + f": {runs})"
        )
    return ("Chosen on the validation split: " + "; ".join(bits) + ".") if bits else ""


def sections(files: dict[str, list[Path]]) -> list[BranchSection]:
    """The Neuroformer section (``id="neuroformer"``); none without metrics.

    Parameters
    ----------
    files : dict
        ``metrics``, ``connectivity``, ``pretrained``, ``finetune``, ``truths``: lists of paths.

    Returns
    -------
    list of BranchSection
        One section with a headline per dataset (see :func:`main_metric`).
    """
    from brainpipe.report import figures

    reader = Reader()
    metrics = [Path(p) for p in files.get("metrics", [])]
    if not metrics:
        return []
    conns = _by_dataset(files.get("connectivity", []), "neuroformer_connectivity")
    pres = _by_dataset(files.get("pretrained", []), "neuroformer_pretrained")
    fines = _by_dataset(files.get("finetune", []), "neuroformer_finetune")
    truths = {}
    for p in files.get("truths", []):
        hit = layout.match("spike_truth", p)
        truths[hit[1]["dataset"] if hit else Path(p).parent.name] = Path(p)
    parts = [
        '<section id="neuroformer"><h2>Neuroformer</h2>',
        "<p>Generative pretraining over spike tokens (neuron ID + time offset in a current window, a past window "
        "through cross-attention, configured modalities), then behaviour decoding fine-tuned with a fraction of the "
        "labelled train windows (pretrained vs the same network from scratch vs ridge/logistic regression on "
        "binned counts), connectivity from attention rollout (current -> past tokens) scored against planted "
        "connections beside lagged cross-correlation and a coupled Poisson GLM, and spike generation scored by the "
        "per-window F1 of the sampled neuron set. Test windows are scored once; every split is a time block.</p>",
        metrics_table(metrics, reader=reader),
    ]
    heads = []
    inputs: list[tuple[str, str, Path, str]] = []
    for mp in metrics:
        folder = _folder(mp, "neuroformer_metrics")
        m = reader(mp, "metrics")
        name = attr(m, "dataset", folder)
        anchor = f"neuroformer-{name}"
        inputs.append((name, "metrics", mp, "metrics"))
        for role, table in (
            ("connectivity", conns),
            ("pretrained", pres),
            ("finetune", fines),
            ("truth", truths),
        ):
            if folder in table:
                inputs.append((name, role, table[folder], "model_fit"))
        conn = reader(conns[folder], "model_fit") if folder in conns else None
        pre = reader(pres[folder], "model_fit") if folder in pres else None
        truth = reader(truths[folder], "model_fit") if folder in truths else None
        figure = ""
        if conn is not None:
            png = figures.neuroformer_figure(name, m, conn, pre, truth)
            stats = {k[len("tokens_") :]: v for k, v in m.attrs.items() if k.startswith("tokens_")}
            caption = (
                f"{name}: pretraining loss; decoding score against the label fraction; connectivity matrices "
                f"(post x pre, diagonal blank). Tokeniser on all windows: "
                + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats.items())
            )
            figure = img(figures.data_uri(png), f"Neuroformer on {name}", caption)
            parts.append(f'<h3 id="{escape(anchor)}">{escape(name)}</h3>' + figure)
        values = dict(zip(m["metric"].values.astype(str), m["value"].values.astype(float), strict=True))
        sentence = verdict(name, values)
        if sentence:
            parts.append(f"<p>{escape(sentence)}</p>")
        ft = reader(fines[folder], "model_fit") if folder in fines else None
        chosen = choices(pre, conn, ft)
        if chosen:
            parts.append(f"<p>{escape(chosen)}</p>")
        spec = main_metric([str(x) for x in m["metric"].values])
        if spec is not None:
            h = headline(
                m, spec[0], spec[1], True, anchor=anchor if conn is not None else "neuroformer", figure=figure
            )
            if h is not None:
                heads.append(h)
    parts.append("</section>")
    return [
        BranchSection(
            "neuroformer", "Neuroformer", "".join(parts), metrics=metrics, headlines=heads, inputs=inputs
        )
    ]
