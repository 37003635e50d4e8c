"""Metric tables of the page: rows of metrics files (value, bar, status), the table of every metric of the study
(collapsed, with a filter) and the cells of per-branch comparison tables.

Every row names its dataset and model from the metrics file's own ``dataset`` and ``model`` attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from types import SimpleNamespace

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.evaluate.metrics import metric_records
from brainpipe.report.base import STATUS, PathLike, Reader, attr, exact, fmt

_HEAD = (
    "<thead><tr><th>dataset</th><th>model</th><th>metric</th><th>value</th><th>bar</th><th>status</th>"
    "<th>description</th></tr></thead>"
)


def row_source(m: xr.Dataset, model: str | None = None) -> SimpleNamespace:
    """A metrics file as a row source: ``dataset`` and ``model`` from its attributes (``model`` may be overridden)."""
    return SimpleNamespace(
        dataset=attr(m, "dataset", "?"), model=model or attr(m, "model", "model"), metrics=m
    )


def metric_rows(entries: Sequence) -> tuple[list[str], dict[int, int]]:
    """Table rows of every metric of ``entries`` (objects with ``dataset``, ``model`` and ``metrics``), in order.

    A dataset or model name repeated from the row above is greyed (class ``rep``), and each new dataset starts a
    row group (class ``group``). Returns the rows and the count of metrics per status (1 pass, 0 miss, -1 no bar).
    """
    rows, tally = [], {1: 0, 0: 0, -1: 0}
    prev: tuple[str, str] | None = None
    for e in entries:
        new_dataset = prev is None or prev[0] != e.dataset
        first_of_entry = True
        prev = (e.dataset, e.model)
        m = e.metrics
        records = metric_records(m)
        descs = [str(x) for x in m["description"].values] if "description" in m else [""] * len(records)
        for (name, value, bar, op, ok), desc in zip(records, descs, strict=True):
            cls, label = STATUS.get(ok, STATUS[-1])
            tally[ok if ok in tally else -1] += 1
            bar_txt = "—" if np.isnan(bar) else f"{op} {fmt(bar)}".strip()
            bar_attr = "" if np.isnan(bar) else f' data-bar="{escape(exact(bar))}"'
            tr_cls = ' class="group"' if first_of_entry and new_dataset and rows else ""
            ds_cls = "" if first_of_entry and new_dataset else ' class="rep"'
            model_cls = "" if first_of_entry else ' class="rep"'
            first_of_entry = False
            rows.append(
                f'<tr{tr_cls} data-dataset="{escape(e.dataset)}" data-model="{escape(e.model)}" '
                f'data-metric="{escape(name)}">'
                f"<td{ds_cls}>{escape(e.dataset)}</td><td{model_cls}>{escape(e.model)}</td>"
                f'<td title="{escape(desc)}"><code>{escape(name)}</code></td>'
                f'<td class="num" data-value="{escape(exact(value))}">{escape(fmt(value))}</td>'
                f'<td class="num"{bar_attr}>{escape(bar_txt)}</td>'
                f'<td class="{cls}">{escape(label)}</td>'
                f'<td class="desc">{escape(desc)}</td></tr>'
            )
    return rows, tally


def metrics_table(
    paths: Sequence[PathLike], labels: Sequence[str] | None = None, reader: Reader | None = None
) -> str:
    """An HTML table of every metric of the given metrics files (value, bar, status, description).

    Parameters
    ----------
    paths : sequence of path-like
        Metrics files, one row group each.
    labels : sequence of str, optional
        Model labels, one per file (default: each file's ``model`` attribute).
    reader : Reader, optional
        A shared file cache.

    Returns
    -------
    str
        ``<table class="metrics">...</table>``.
    """
    reader = reader or Reader()
    entries = [row_source(reader(p, "metrics"), labels[i] if labels else None) for i, p in enumerate(paths)]
    rows, _ = metric_rows(entries)
    return f'<table class="metrics">{_HEAD}<tbody>' + "".join(rows) + "</tbody></table>"


def all_metrics_section(entries: Sequence) -> str:
    """The table of every metric of the study (``id="summary"``): a verdict line and the missed bars in view, the
    table itself folded (``<details>``) with a text filter (inline script; the table is complete without it)."""
    if not entries:
        return (
            '<section id="summary"><h2>All metrics</h2><p>This study has no model results yet: '
            "no dataset has a model enabled in the config.</p></section>"
        )
    rows, tally = metric_rows(entries)
    with_bar = tally[1] + tally[0]
    verdict = (
        f"{tally[1]} of {with_bar} bars met" + (f", <strong>{tally[0]} missed</strong>" if tally[0] else "")
        if with_bar
        else "no metric has a bar"
    )
    datasets = sorted({e.dataset for e in entries})
    missed = []
    for e in entries:
        m = e.metrics
        if "passed" not in m or "bar" not in m:
            continue
        for name, ok, bar in zip(m["metric"].values, m["passed"].values, m["bar"].values, strict=True):
            if int(ok) == 0 and np.isfinite(float(bar)):
                missed.append(f"{escape(e.dataset)} · {escape(e.model)} · <code>{escape(str(name))}</code>")
    missed_txt = f'<p class="missed">Missed: {"; ".join(missed)}.</p>' if missed else ""
    return (
        '<section id="summary"><h2>All metrics</h2>'
        f'<p class="summary">{len(rows)} metrics over {len(datasets)} dataset(s): {verdict}.</p>'
        + missed_txt
        + f'<details id="all-metrics"><summary>Show all {len(rows)} metrics</summary>'
        '<p class="note">Rows are grouped by dataset, then model; values are shown to 4 significant digits; hover a '
        "metric name for its description. Type in the box to keep the rows that contain the text (e.g. a dataset, "
        "a model, a metric or MISS).</p>"
        '<p class="filter"><input type="search" id="metric-filter" placeholder="filter rows" '
        'aria-label="filter the metrics table"> <span id="metric-count"></span></p>'
        f'<table class="metrics">{_HEAD}<tbody>' + "".join(rows) + "</tbody></table></details></section>"
    )


@fill_doc
def metric_values(m: xr.Dataset) -> dict[str, tuple[float, float, str, int]]:
    """metric -> (value, bar, bar_op, passed) of a metrics file (bar NaN and passed -1 without a bar).

    Parameters
    ----------
    %(metrics_m)s

    Returns
    -------
    dict
        See :func:`metric_records`.
    """
    return {name: tuple(rest) for name, *rest in metric_records(m)}


def metric_cell(vals: Mapping[str, tuple[float, float, str, int]], metric: str) -> str:
    """A numeric ``<td>`` of ``metric`` coloured by its bar (pass/miss), with the exact value as ``data-value``."""
    if metric not in vals:
        return '<td class="num">—</td>'
    value, bar, op, ok = vals[metric]
    cls, title = "num", metric
    if not np.isnan(bar):
        cls = "num " + STATUS.get(ok, STATUS[-1])[0]
        title = f"{metric}: bar {op} {fmt(bar)}, {STATUS.get(ok, STATUS[-1])[1]}"
    return (
        f'<td class="{escape(cls)}" data-metric="{escape(metric)}" data-value="{escape(exact(value))}" '
        f'title="{escape(title)}">{escape(fmt(value))}</td>'
    )
