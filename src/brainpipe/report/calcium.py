"""The calcium branch's report section: per connectome study the metrics, rank diagnostics (error and replicate
stability per rank), the selected factors (time factor, animal factor, each pair factor as a neuron x neuron
matrix ordered by community), and a dF/F + events excerpt of each calcium dataset.

Fed by the report stage with ``files`` = {"metrics": [...], "fits": [...], "processed": [...]} (inputs named
``calcium__metrics`` etc.; paths: :mod:`brainpipe.layout`); the metrics join the table of all metrics. A study is
named by its metrics file's ``dataset`` attribute; its fit is the one in the same folder (else at the same position).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from brainpipe import layout
from brainpipe.report.base import BranchSection, Reader, attr, img
from brainpipe.report.figures import data_uri, factors_figure, rank_figure, traces_figure
from brainpipe.report.headline import headline
from brainpipe.report.tables import metrics_table

#: the headline of a connectome study: recovery of the planted factors (no baseline model)
MAIN = "factor_match_score"


def _img(png: bytes, alt: str, caption: str, anchor: str = "") -> str:
    return img(data_uri(png), alt, caption, anchor)


def _name(path: Path, result: str, field: str) -> str:
    hit = layout.match(result, path)
    return hit[1][field] if hit else path.parent.name


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
        "non-negative CP (HALS); the rank is the largest whose restarts agree (replicate stability); each "
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
            "neurons ordered by their Louvain community.",
        )
        parts.append(figure)
        inputs.append((study, "fit", f, "model_fit"))
        if m is not None:
            inputs.append((study, "metrics", mp, "metrics"))
            h = headline(m, MAIN, (), True, anchor=anchor, figure=figure)
            if h is not None:
                heads.append(h)
    for p in processed[:3]:
        ds = reader(p, "calcium_traces")
        name = _name(p, "calcium_processed", "cadataset")
        parts.append(_img(traces_figure(ds), f"{name} traces", f"{name}: first cells, first 120 s."))
    for p in processed:
        inputs.append((_name(p, "calcium_processed", "cadataset"), "traces", p, "calcium_traces"))
    parts.append("</section>")
    return [
        BranchSection("calcium", "Calcium", "".join(parts), metrics=metrics, headlines=heads, inputs=inputs)
    ]
