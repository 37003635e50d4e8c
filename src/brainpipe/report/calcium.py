"""The calcium branch's report section: per connectome study the metrics, rank diagnostics (error and replicate
stability per rank), the selected factors (time factor, animal factor, each pair factor as a neuron x neuron
matrix ordered by community), how the study's animals were aligned (frame rates: recorded, common, resampled or
taken as equal within the tolerance; neurons matched by label or index, how many each animal contributes and how
many neurons and pairs they share), the factors related to the recordings' behaviour (when they carry it), and a
dF/F + events excerpt of each calcium dataset (with what its traces are).

Fed by the report stage with ``files`` = {"metrics": [...], "fits": [...], "processed": [...]} (inputs named
``calcium__metrics`` etc.; paths: :mod:`brainpipe.layout`); the metrics join the table of all metrics. A study is
named by its metrics file's ``dataset`` attribute; its fit is the one in the same folder (else at the same position).
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from brainpipe import layout
from brainpipe.evaluate.connectome_baselines import BASELINES
from brainpipe.report.base import BranchSection, Reader, attr, facts, fmt, img
from brainpipe.report.figures import data_uri, factors_figure, rank_figure, traces_figure
from brainpipe.report.headline import headline
from brainpipe.report.tables import metrics_table

#: the headline of a connectome study: recovery of the planted factors (no baseline model)
MAIN = "factor_match_score"
#: the traces figure's title for the kinds of trace whose ``dff`` is not dF/F (the others keep the figure's own)
TRACE_TITLES = {
    "denoised": "denoised traces minus baseline (scaled) and inferred events (red)",
    "deconvolved": "deconvolved activity (scaled) and events (red)",
}


def _img(png: bytes, alt: str, caption: str, anchor: str = "") -> str:
    return img(data_uri(png), alt, caption, anchor)


def _name(path: Path, result: str, field: str) -> str:
    hit = layout.match(result, path)
    return hit[1][field] if hit else path.parent.name


def alignment_html(fit) -> str:
    """How a connectome fit's animals were put on one frame rate and one set of neurons (empty for a fit made
    before this was recorded).

    Parameters
    ----------
    fit : xarray.Dataset
        A connectome ``model_fit`` with the tensor's alignment attributes and ``animal_*`` variables
        (:mod:`brainpipe.stages.fit_connectome`).

    Returns
    -------
    str
        HTML: a fact list (frame-rate handling, neuron matching, shared neurons and pairs) and a table of the
        animals (recorded frame rate, resampled, cells, neurons contributed).
    """
    if "frame_rate_handling" not in fit.attrs:
        return ""
    how = attr(fit, "neuron_matching", "?")
    items = [
        ("frame rate", f"{fmt(fit.attrs.get('frame_rate_hz'))} Hz: {attr(fit, 'frame_rate_handling')}"),
        (
            "neurons matched by",
            "label (identities shared across animals)" if how == "label" else "ROI index (as the study asks)",
        ),
        (
            "shared",
            f"{int(fit.attrs.get('n_shared_neurons', 0))} neurons and {int(fit.attrs.get('n_shared_pairs', 0))} "
            f"pairs in every animal; {int(fit.attrs.get('n_pairs_two_or_more', 0))} pairs in two or more",
        ),
    ]
    if "resample_method" in fit.attrs:
        items.append(("resampling", attr(fit, "resample_method")))
    rows = []
    for k, a in enumerate(fit["animal"].values):
        cells = [
            escape(str(a)),
            fmt(fit["animal_frame_rate_hz"].values[k]) if "animal_frame_rate_hz" in fit else "—",
            ("yes" if int(fit["animal_resampled"].values[k]) else "no") if "animal_resampled" in fit else "—",
            str(int(fit["animal_n_cells"].values[k])) if "animal_n_cells" in fit else "—",
            str(int(fit["animal_n_neurons"].values[k])) if "animal_n_neurons" in fit else "—",
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = (
        '<table class="alignment"><thead><tr><th>animal</th><th>frame rate (Hz)</th><th>resampled</th>'
        "<th>cells</th><th>neurons in the tensor</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    return facts(items) + table


def _val(m, name: str) -> float | None:
    if m is None or name not in m["metric"].values:
        return None
    v = float(m["value"].sel(metric=name))
    return v if v == v else None


def verdict_html(m, fit) -> str:
    """One sentence on the NTF against its best baseline, and the fit's honest diagnostics.

    Parameters
    ----------
    m : xarray.Dataset or None
        The study's ``metrics`` (with ``*_vs_best_baseline`` when the animals were simulated).
    fit : xarray.Dataset
        The study's connectome fit.

    Returns
    -------
    str
        HTML paragraphs: whether the NTF beats the best baseline (static Louvain, windowed Louvain, NMF mean-filled or masked) on
        community recovery and epoch detection and by how much; a warning line when no rank was stable or when
        the affinity tensor is almost all zeros.
    """
    out = []
    d_jac = _val(m, "community_jaccard_mean_vs_best_baseline")
    d_ep = _val(m, "epoch_peak_fraction_vs_best_baseline")
    if d_jac is not None and d_ep is not None:
        best = max(
            BASELINES,
            key=lambda b: _val(m, f"{b}_community_jaccard_mean") or 0.0,
        )
        word = "beats" if d_jac > 0 else ("is level with" if d_jac == 0 else "loses to")
        out.append(
            f"<p class='verdict'>The NTF {word} the best baseline ({best.replace('_', ' ')}) on community recovery: "
            f"mean Jaccard {fmt(_val(m, 'community_jaccard_mean'))} vs {fmt(_val(m, f'{best}_community_jaccard_mean'))} "
            f"({d_jac:+.3f}); epoch detection {d_ep:+.3f} against the best baseline.</p>"
        )
    heldout = "held-out" in str(fit.attrs.get("rank_selection", ""))
    if int(fit.attrs.get("rank_is_stable", 1)) == 0 and heldout:
        cv = "cross-validation" in str(fit.attrs.get("rank_selection", ""))
        what = "cross-validated held-out entries" if cv else "held-out (pair, animal) fibres"
        out.append(
            f"<p class='warning'>The rank chosen on {what} ({fit.attrs['selected_rank']}) "
            f"is below the stability threshold {fmt(fit.attrs.get('stability_threshold'))}: its factors are not "
            "reproducible across restarts.</p>"
        )
    elif int(fit.attrs.get("rank_is_stable", 1)) == 0:
        out.append(
            f"<p class='warning'>No candidate rank reached the stability threshold "
            f"{fmt(fit.attrs.get('stability_threshold'))}: the smallest rank ({fit.attrs['selected_rank']}) is "
            "shown, and its factors are not reproducible across restarts.</p>"
        )
    if int(fit.attrs.get("affinity_zero_warning", 0)):
        out.append(
            f"<p class='warning'>{100 * float(fit.attrs['affinity_zero_fraction']):.1f} % of the observed "
            "affinities are 0: the affinity threshold leaves little to factorise (lower null_z or lengthen "
            "window_s).</p>"
        )
    return "".join(out)


def behaviour_html(m) -> str:
    """A table: per behaviour variable, the NTF component most related to it and the strongest baseline's.

    Parameters
    ----------
    m : xarray.Dataset or None
        The study's ``metrics`` (``behaviour_<var>_<stat>_*`` when its recordings carry behaviour:
        :mod:`brainpipe.evaluate.connectome_behaviour`).

    Returns
    -------
    str
        HTML (empty without behaviour metrics): variable, statistic, NTF component, its value and shift p-value,
        the strongest baseline (name, value, p), and the NTF's strength minus that baseline's.
    """
    if m is None:
        return ""
    rows = []
    for name in (str(n) for n in m["metric"].values):
        hit = re.fullmatch(r"behaviour_(?P<var>.+)_(?P<stat>r|auroc)_ntf", name)
        if not hit:
            continue
        key = name[: -len("_ntf")]
        stat = hit["stat"]

        def strength(v, stat=stat):
            return abs(2 * v - 1) if stat == "auroc" else abs(v)

        base = [(b, _val(m, f"{key}_{b}")) for b in BASELINES]
        base = [(b, v) for b, v in base if v is not None]
        top = max(base, key=lambda bv: strength(bv[1]))[0] if base else "—"
        cells = [
            escape(hit["var"]),
            "AUROC" if stat == "auroc" else "Pearson r",
            str(int(_val(m, f"{key}_ntf_factor") or 0)),
            fmt(_val(m, name)),
            fmt(_val(m, f"{key}_ntf_p")),
            escape(top.replace("_", " ")),
            fmt(_val(m, f"{key}_best_baseline")),
            fmt(_val(m, f"{key}_best_baseline_p")),
            f"{_val(m, f'{key}_ntf_vs_best_baseline') or 0.0:+.3f}",
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not rows:
        return ""
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "behaviour",
            "statistic",
            "NTF component",
            "NTF",
            "p (shifts)",
            "best baseline",
            "baseline",
            "p (shifts)",
            "NTF − baseline strength",
        )
    )
    return (
        "<p>Factors and behaviour: each time course against each behaviour variable, averaged per window in each "
        "animal (the shared time factor, or each animal's own with per-animal time modes), mean over the animals; "
        "p from circular shifts of the behaviour; strength |r| or |2 AUROC − 1|.</p>"
        f'<table class="behaviour"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def sections(files: dict[str, list[Path]]) -> list[BranchSection]:
    """The calcium section (``id="calcium"``).

    Parameters
    ----------
    files : dict
        ``metrics`` and ``fits`` (one per connectome study) and ``processed`` (one per calcium dataset).

    Returns
    -------
    list of BranchSection
        One section, with a headline per study (its factor match score).
    """
    reader = Reader()
    metrics = [Path(p) for p in files.get("metrics", [])]
    fits = [Path(p) for p in files.get("fits", [])]
    processed = [Path(p) for p in files.get("processed", [])]
    parts = [
        '<section id="calcium"><h2>Calcium: dynamic functional connectomes</h2>',
        "<p>Pairwise affinities of neuron pairs per time window, stacked over animals, factorised by masked "
        "non-negative CP (HALS); the rank is the largest whose restarts agree (replicate stability), or with "
        "rank_selection heldout the one that best predicts hidden (pair, animal) fibres; each "
        "component's pair factor is split into communities by weighted Louvain.</p>",
    ]
    if metrics:
        parts.append(metrics_table(metrics, reader=reader))
    by_folder = {p.parent: p for p in metrics}
    heads = []
    inputs: list[tuple[str, str, Path, str]] = []
    for i, f in enumerate(fits):
        fit = reader(f, "model_fit")
        mp = by_folder.get(f.parent) or (metrics[i] if len(metrics) == len(fits) else None)
        m = reader(mp, "metrics") if mp is not None else None
        study = attr(m, "dataset", "?") if m is not None else _name(f, "connectome_fit", "study")
        anchor = f"calcium-{study}"
        parts.append(f'<h3 id="{escape(anchor)}">{escape(study)}</h3>')
        parts.append(verdict_html(m, fit))
        parts.append(behaviour_html(m))
        parts.append(
            _img(
                rank_figure(fit),
                f"{study} rank diagnostics",
                f"Selected rank {fit.attrs['selected_rank']} of {', '.join(map(str, fit['rank'].values))} "
                f"({fit.attrs.get('restarts')} restarts each; affinity {fit.attrs.get('affinity')}).",
            )
        )
        figure = _img(
            factors_figure(fit),
            f"{study} factors",
            "Time and animal factors of the selected fit; each pair factor as a neuron x neuron matrix, "
            "neurons ordered by their Louvain community."
            + (
                " Per-animal time modes: the time factor is the animals' summed time course and the animal factor "
                "each animal's share (each animal's own course: animal_time_factor in the fit)."
                if fit.attrs.get("time_mode") == "per_animal"
                else ""
            ),
        )
        parts.append(figure)
        parts.append(alignment_html(fit))
        inputs.append((study, "fit", f, "model_fit"))
        if m is not None:
            inputs.append((study, "metrics", mp, "metrics"))
            h = headline(m, MAIN, (), True, anchor=anchor, figure=figure)
            if h is not None:
                heads.append(h)
    for p in processed[:3]:
        ds = reader(p, "calcium_traces")
        name = _name(p, "calcium_processed", "cadataset")
        kind = attr(ds, "trace_kind")
        what = f" (traces: {kind})" if kind else ""
        title = TRACE_TITLES.get(kind)
        png = traces_figure(ds, title=title) if title else traces_figure(ds)
        parts.append(_img(png, f"{name} traces", f"{name}: first cells, first 120 s{what}."))
    for p in processed:
        inputs.append((_name(p, "calcium_processed", "cadataset"), "traces", p, "calcium_traces"))
    parts.append("</section>")
    return [
        BranchSection("calcium", "Calcium", "".join(parts), metrics=metrics, headlines=heads, inputs=inputs)
    ]
