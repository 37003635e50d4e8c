"""The top of the page: per dataset and model its main metric, the best baseline, the difference and pass/miss,
with the key figures of the dataset.

Each branch picks its models' main metric and baselines (:func:`headline`); this module only computes and draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

import xarray as xr

from brainpipe.report.base import STATUS, Headline, attr, fmt
from brainpipe.report.tables import metric_values


def headline(
    m: xr.Dataset,
    main: str,
    baselines: Sequence[tuple[str, str | float]] = (),
    higher_better: bool = True,
    model: str | None = None,
    anchor: str = "",
    figure: str = "",
    extra: Mapping[str, float] | None = None,
) -> Headline | None:
    """The headline of a metrics file: ``main`` against the best of ``baselines``.

    Parameters
    ----------
    m : xarray.Dataset
        A ``metrics`` file (dataset and model from its attributes).
    main : str
        The main metric; None is returned when the file does not have it.
    baselines : sequence of (label, metric name or number)
        Candidate baselines: a metric of the same file (or of ``extra``), or a constant (e.g. 0 bits/spike for a
        homogeneous Poisson model). Missing or NaN ones are skipped; the best (by ``higher_better``) is kept.
    higher_better : bool
        Direction of the main metric.
    model : str, optional
        Model label (default: the file's ``model`` attribute).
    anchor : str
        Id of the part of the page with the details.
    figure : str
        HTML of the key figure (``""``: none).
    extra : mapping, optional
        Values from other files of the same dataset (e.g. another model's score), by name.

    Returns
    -------
    Headline or None
    """
    vals = metric_values(m)
    if main not in vals:
        return None
    value, bar, op, ok = vals[main]
    others = {**{k: v[0] for k, v in vals.items()}, **(extra or {})}
    best: tuple[str, float] | None = None
    for label, source in baselines:
        b = float(source) if isinstance(source, (int, float)) else others.get(source)
        if b is None or math.isnan(b):
            continue
        if best is None or (b > best[1] if higher_better else b < best[1]):
            best = (label, float(b))
    return Headline(
        dataset=attr(m, "dataset", "?"),
        model=model or attr(m, "model", "model"),
        metric=main,
        value=value,
        higher_better=higher_better,
        baseline=best[0] if best else None,
        baseline_value=best[1] if best else None,
        bar_text="" if math.isnan(bar) else f"{op} {fmt(bar)}".strip(),
        passed=ok,
        figure=figure,
        anchor=anchor,
    )


def _row(h: Headline) -> str:
    cls, label = STATUS.get(h.passed, STATUS[-1])
    status = label + (f" ({h.bar_text})" if h.bar_text else "")
    beats = h.beats_baseline
    diff_cls = "num" if beats is None else ("num better" if beats else "num worse")
    diff_txt = "—" if h.difference is None else f"{h.difference:+.4g}"
    word = "" if beats is None else (" better" if beats else " worse")
    model = f'<a href="#{escape(h.anchor)}">{escape(h.model)}</a>' if h.anchor else escape(h.model)
    direction = "higher is better" if h.higher_better else "lower is better"
    return (
        f'<tr data-dataset="{escape(h.dataset)}" data-model="{escape(h.model)}" data-metric="{escape(h.metric)}">'
        f"<td>{model}</td>"
        f'<td title="{escape(direction)}"><code>{escape(h.metric)}</code></td>'
        f'<td class="num">{escape(fmt(h.value))}</td>'
        f"<td>{escape(h.baseline or '—')}</td>"
        f'<td class="num">{escape(fmt(h.baseline_value))}</td>'
        f'<td class="{diff_cls}">{escape(diff_txt + word)}</td>'
        f'<td class="{cls}">{escape(status)}</td></tr>'
    )


def headline_section(headlines: Sequence[Headline]) -> str:
    """The results at the top of the page (``id="results"``): one card per dataset, in page order, with a row per
    model and the dataset's key figures.

    Parameters
    ----------
    headlines : sequence of Headline
        Every branch's headlines, in page order.

    Returns
    -------
    str
        ``<section id="results">...</section>``.
    """
    if not headlines:
        return (
            '<section id="results"><h2>Results</h2><p class="note">No model has a main metric to show; see all '
            "metrics below.</p></section>"
        )
    by_dataset: dict[str, list[Headline]] = {}
    for h in headlines:
        by_dataset.setdefault(h.dataset, []).append(h)
    met = sum(h.passed == 1 for h in headlines)
    missed = sum(h.passed == 0 for h in headlines)
    better = sum(h.beats_baseline is True for h in headlines)
    compared = sum(h.beats_baseline is not None for h in headlines)
    parts = [
        '<section id="results"><h2>Results</h2>',
        f'<p class="summary">{len(headlines)} model result(s) on {len(by_dataset)} dataset(s): main metric '
        f"better than the best baseline in {better} of {compared} comparison(s); main-metric bars: {met} met"
        + (f", <strong>{missed} missed</strong>" if missed else "")
        + ".</p>",
        '<p class="note">Per dataset and model: its main metric, the best baseline on the same data (constant '
        "baselines are what the metric is measured against, e.g. 0 bits/spike for a homogeneous Poisson model), "
        "the difference (main − baseline; green when the model is better) and the main metric's bar. The model "
        "name links to its details below.</p>",
    ]
    head = (
        "<thead><tr><th>model</th><th>main metric</th><th>value</th><th>best baseline</th><th>baseline value</th>"
        "<th>difference</th><th>bar</th></tr></thead>"
    )
    for dataset, group in by_dataset.items():
        parts.append(f'<div class="card"><h3>{escape(dataset)}</h3>')
        parts.append(
            f'<table class="headline">{head}<tbody>' + "".join(_row(h) for h in group) + "</tbody></table>"
        )
        figs = [h.figure for h in group if h.figure]
        if figs:
            parts.append('<div class="keyfigs">' + "".join(figs) + "</div>")
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)
