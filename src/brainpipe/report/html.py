"""The study report as one self-contained HTML page, built from existing results files.

Layout of the results this reads (``{dataset}`` is a folder name)::

    results/spikes/{dataset}/counts.nc                 spike_counts
    results/spikes/{dataset}/truth.nc                  planted truth (simulated datasets only)
    results/spikes/{dataset}/{model}/fit.nc            model_fit (role fit)
    results/spikes/{dataset}/{model}/metrics.nc        metrics
    results/spikes/{dataset}/switching_glm/{variant}/{fit,metrics}.nc   switching GLMs, one folder per variant

Metrics, fits and counts are parallel lists (one entry per dataset and model); truths may be fewer and are
matched by dataset name. Switching-GLM metrics and fits are two more parallel lists (one entry per dataset and
variant); their counts and truths are matched by dataset folder. Figures are embedded as base64 PNG ``data:`` URIs and the CSS is inline, so the page
opens offline and can be mailed as one file.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import xarray as xr

import brainpipe
from brainpipe.data import provenance_of, read
from brainpipe.data.atomic import atomic_output
from brainpipe.data.provenance import git_sha
from brainpipe.errors import InputError

PathLike = str | os.PathLike
DEFAULT_TITLE = "brainpipe study report"

# Files that sit directly in a dataset's folder; other files sit one level deeper, in a model's folder.
_DATASET_LEVEL_KINDS = ("counts", "truth", "spikes", "data")
_MODEL_LEVEL_KINDS = ("fit", "metrics")
_STATUS = {1: ("pass", "PASS"), 0: ("miss", "MISS"), -1: ("nobar", "no bar")}


def dataset_name(path: PathLike, kind: str | None = None) -> str:
    """The dataset a results file belongs to, from its folder.

    ``kind`` says where the file sits: ``"counts"``/``"truth"`` directly in the dataset folder
    (``results/spikes/{dataset}/counts.nc``), ``"fit"``/``"metrics"`` in a model folder below it
    (``results/spikes/{dataset}/{model}/fit.nc``). Without ``kind`` the file name decides (``counts.nc``,
    ``truth.nc``, ``spike_times.nc`` are dataset-level; anything else model-level).
    """
    p = Path(path)
    if kind is None:
        kind = "counts" if p.stem in ("counts", "truth", "spike_times") else "fit"
    if kind in _DATASET_LEVEL_KINDS:
        folder = p.parent
    elif kind in _MODEL_LEVEL_KINDS:
        folder = p.parent.parent
    else:
        raise ValueError(f"unknown file kind {kind!r}; expected one of {_DATASET_LEVEL_KINDS + _MODEL_LEVEL_KINDS}")
    return folder.name or str(folder)


def model_name(path: PathLike) -> str:
    """The model folder of a fit or metrics file (``results/spikes/{dataset}/{model}/fit.nc`` -> model)."""
    return Path(path).parent.name


def switching_location(path: PathLike) -> tuple[str, str]:
    """(dataset folder, variant) of a switching-GLM fit or metrics file:
    ``results/spikes/{dataset}/switching_glm/{variant}/metrics.nc`` -> (dataset, variant). Without the
    ``switching_glm`` level (``{dataset}/{variant}/metrics.nc``) the dataset is the folder above the variant."""
    p = Path(path)
    variant = p.parent.name
    up = p.parent.parent
    folder = up.parent if up.name == "switching_glm" else up
    return folder.name or str(folder), variant


# --------------------------------------------------------------------------------------------------- inputs


@dataclass
class Entry:
    """One (dataset, model) pair of the study and the files that describe it."""

    dataset: str  # display name: the metrics file's ``dataset`` attr, or the folder name
    folder: str  # the dataset's folder name (how files are matched)
    model: str
    metrics_path: Path
    fit_path: Path
    counts_path: Path
    truth_path: Path | None
    metrics: xr.Dataset = field(repr=False)
    variant: str | None = None  # switching GLMs: the variant folder (single, none, gaussian, onehot, ...)

    @property
    def switching(self) -> bool:
        return self.variant is not None


def _as_list(paths: PathLike | Iterable[PathLike] | None) -> list[Path]:
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths]


class _Reader:
    """Read each file once, validated against its contract."""

    def __init__(self):
        self._cache: dict[tuple[Path, str], xr.Dataset] = {}

    def __call__(self, path: Path, kind: str) -> xr.Dataset:
        key = (Path(path), kind)
        if key not in self._cache:
            self._cache[key] = read(path, kind)
        return self._cache[key]


def _pick(candidates: Sequence[Path], i: int, n: int, folder: str, what: str, kind: str, model: str | None = None) -> Path:
    """The file of list ``candidates`` for entry ``i`` of ``n``: by dataset (and model) folder, else by position."""
    if model is not None:
        named = [p for p in candidates if dataset_name(p, kind) == folder and model_name(p) == model]
    else:
        named = [p for p in candidates if dataset_name(p, kind) == folder]
    if len({os.fspath(p) for p in named}) == 1:
        return named[0]
    if len(candidates) == n:
        return candidates[i]
    raise InputError(
        f"report: cannot match a {what} file to dataset '{folder}' (got {len(candidates)} {what} file(s) for "
        f"{n} metrics file(s); give parallel lists or use the results/<modality>/<dataset>/ layout)"
    )


def collect(
    metrics_paths: Iterable[PathLike],
    fit_paths: Iterable[PathLike],
    count_paths: Iterable[PathLike],
    truth_paths: Iterable[PathLike] = (),
    reader: _Reader | None = None,
    allow_empty: bool = False,
) -> list[Entry]:
    """Pair every metrics file with its fit, counts and (when there is one) truth file."""
    reader = reader or _Reader()
    metrics, fits, counts, truths = map(_as_list, (metrics_paths, fit_paths, count_paths, truth_paths))
    if not metrics:
        if allow_empty:
            return []
        raise InputError("report: no metrics files given (nothing to report)")
    n = len(metrics)
    truth_by_folder: dict[str, Path] = {}
    for p in truths:
        truth_by_folder.setdefault(dataset_name(p, "truth"), p)
    entries = []
    for i, mp in enumerate(metrics):
        ds = reader(mp, "metrics")
        folder = dataset_name(mp, "metrics")
        label = str(ds.attrs.get("dataset", "") or "").strip() or folder
        model = str(ds.attrs.get("model", "") or "").strip() or model_name(mp)
        fit = _pick(fits, i, n, folder, "fit", "fit", model_name(mp))
        cnt = _pick(counts, i, n, folder, "counts", "counts")
        truth = truth_by_folder.get(folder, truth_by_folder.get(label))
        entries.append(Entry(label, folder, model, Path(mp), fit, cnt, truth, ds))
    _unique_labels(entries)
    return entries


def _unique_labels(entries: Sequence[Entry]) -> None:
    """Two folders must not be shown under one name (e.g. a metrics attr that is not a dataset name)."""
    by_label: dict[str, set[str]] = {}
    for e in entries:
        by_label.setdefault(e.dataset, set()).add(e.folder)
    for e in entries:
        if len(by_label[e.dataset]) > 1:
            e.dataset = e.folder


# Variants in this order first (baseline, then priors of growing strength), any others after them by name.
VARIANT_ORDER = ("single", "none", "gaussian", "onehot")


def _variant_rank(variant: str | None) -> tuple[int, str]:
    v = variant or ""
    return (VARIANT_ORDER.index(v) if v in VARIANT_ORDER else len(VARIANT_ORDER), v)


def collect_switching(
    metrics_paths: Iterable[PathLike],
    fit_paths: Iterable[PathLike],
    count_paths: Iterable[PathLike],
    truth_paths: Iterable[PathLike] = (),
    reader: _Reader | None = None,
) -> list[Entry]:
    """Pair every switching-GLM metrics file (``results/spikes/{dataset}/switching_glm/{variant}/metrics.nc``)
    with its fit (same dataset and variant folder, else the same position: parallel lists), the dataset's
    counts (by dataset folder) and truth (by dataset folder, when there is one)."""
    reader = reader or _Reader()
    metrics, fits, counts, truths = map(_as_list, (metrics_paths, fit_paths, count_paths, truth_paths))
    n = len(metrics)
    if len(fits) != n:
        raise InputError(
            f"report: {n} switching metrics file(s) but {len(fits)} switching fit file(s); give parallel lists"
        )
    truth_by_folder: dict[str, Path] = {}
    for p in truths:
        truth_by_folder.setdefault(dataset_name(p, "truth"), p)
    entries = []
    fit_at = [switching_location(p) for p in fits]
    for i, mp in enumerate(metrics):
        ds = reader(mp, "metrics")
        folder, variant = switching_location(mp)
        label = str(ds.attrs.get("dataset", "") or "").strip() or folder
        model = str(ds.attrs.get("model", "") or "").strip() or f"switching_glm/{variant}"
        named = {os.fspath(p) for p, at in zip(fits, fit_at, strict=True) if at == (folder, variant)}
        fit = Path(named.pop()) if len(named) == 1 else fits[i]  # by folders, else by position (parallel lists)
        named_counts = sorted({os.fspath(p) for p in counts if dataset_name(p, "counts") == folder})
        if len(named_counts) != 1:
            raise InputError(
                f"report: cannot match a counts file to switching metrics {mp} (dataset folder '{folder}'; "
                f"{len(named_counts)} counts file(s) named so): pass results/spikes/{folder}/counts.nc in the counts"
            )
        truth = truth_by_folder.get(folder, truth_by_folder.get(label))
        entries.append(Entry(label, folder, model, Path(mp), fit, Path(named_counts[0]), truth, ds, variant=variant))
    return entries


def read_benchmarks(folder: PathLike | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Snakemake benchmark TSVs under ``folder`` (``<rule>/<dataset>.tsv`` or, for rules with more wildcards,
    ``<rule>/<dataset>/<variant>.tsv``): one row per file.

    Each row has ``rule``, ``dataset``, ``variant`` (the rest of the path below the dataset folder; "" for
    ``<rule>/<dataset>.tsv``), ``runs``, ``s`` (mean wall seconds over repeats) and ``max_rss``
    (largest MB over repeats; NaN when not measured). Files that cannot be read are skipped and named in the
    second list, so a half-written or foreign TSV never breaks the report.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    if folder is None or not Path(folder).is_dir():
        return rows, skipped
    root = Path(folder)
    for f in sorted(root.rglob("*.tsv")):
        rel = f.relative_to(root)
        try:
            df = pd.read_csv(f, sep="\t")
        except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError, UnicodeDecodeError, ValueError) as err:
            skipped.append(f"{rel}: {type(err).__name__}")
            continue
        cols = {str(c).strip(): c for c in df.columns}
        if df.empty or not ({"s", "max_rss"} & set(cols)):
            skipped.append(f"{rel}: no 's' or 'max_rss' column")
            continue

        def col(name: str, df=df, cols=cols) -> np.ndarray:
            if name not in cols:
                return np.full(len(df), np.nan)
            return pd.to_numeric(df[cols[name]], errors="coerce").to_numpy(dtype=np.float64)

        s, rss = col("s"), col("max_rss")
        folders = rel.parent.parts  # <rule>/<dataset>.tsv, or <rule>/<dataset>/<variant>.tsv (wildcard folders)
        rows.append(
            {
                "rule": folders[0] if folders else "-",
                "dataset": folders[1] if len(folders) > 1 else rel.stem,
                "variant": "/".join([*folders[2:], rel.stem]) if len(folders) > 1 else "",
                "runs": int(len(df)),
                "s": float(np.nanmean(s)) if np.isfinite(s).any() else float("nan"),
                "max_rss": float(np.nanmax(rss)) if np.isfinite(rss).any() else float("nan"),
            }
        )
    return rows, skipped


# ------------------------------------------------------------------------------------------------ rendering

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --zebra:#f6f8fa; --accent:#0969da;
        --pass:#1a7f37; --pass-bg:#dafbe1; --miss:#cf222e; --miss-bg:#ffebe9; --nobar:#59636e; --nobar-bg:#eff2f5; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1180px; padding: 24px 28px 64px; color: var(--fg); line-height: 1.45;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 26px; margin: 0 0 6px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.meta { color: var(--muted); font-size: 13px; margin: 0 0 8px; }
.meta code { color: var(--fg); }
nav { font-size: 14px; margin: 10px 0 0; }
nav a { margin-right: 14px; }
.note { color: var(--muted); font-size: 13px; margin: 6px 0; }
.summary { font-size: 14px; margin: 4px 0 12px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; margin: 6px 0 12px; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #fff; border-bottom: 2px solid var(--line); font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) { background: var(--zebra); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.desc { color: var(--muted); font-size: 13px; }
td.pass, td.miss, td.nobar { font-weight: 600; text-align: center; white-space: nowrap; font-size: 13px; }
td.pass { color: var(--pass); background: var(--pass-bg); }
td.miss { color: var(--miss); background: var(--miss-bg); }
td.nobar { color: var(--nobar); background: var(--nobar-bg); font-weight: 400; }
table.prov { font-size: 12px; }
table.prov td { white-space: nowrap; }
table.prov td.wrap { white-space: normal; overflow-wrap: anywhere; }
table.prov td.file { white-space: normal; }
table.prov tbody tr { background: none; }
table.prov tbody:nth-of-type(even) tr { background: var(--zebra); }
table.prov tr:first-child td { border-bottom: none; padding-bottom: 0; }
table.prov tr.params td { padding-top: 2px; color: var(--muted); }
table.prov span.label { color: var(--muted); font-size: 11px; margin-right: 4px; }
table.prov details { margin: 0; font-size: 12px; }
table.prov details > code { display: block; margin: 4px 0 0 16px; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12px; }
pre { background: var(--zebra); border: 1px solid var(--line); padding: 10px 12px; overflow-x: auto; }
figure { margin: 10px 0 18px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 14px; margin: 6px 0 12px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
h3.sub { font-size: 15px; color: var(--fg); margin-top: 26px; }
table.variants { width: auto; min-width: 55%; }
table.variants th { white-space: normal; vertical-align: bottom; }
table.metrics td.rep { color: #afb8c1; }
table.metrics tr.group td { border-top: 2px solid var(--line); }
table.variants td.num.pass, table.variants td.num.miss { text-align: right; font-weight: 600; font-size: 14px; }
table.variants tr.best td:first-child { font-weight: 600; }
span.tag { font-size: 11px; color: var(--pass); border: 1px solid var(--pass); border-radius: 8px; padding: 0 6px;
           margin-left: 6px; font-weight: 600; white-space: nowrap; }
.missed { font-size: 14px; margin: 4px 0 12px; color: var(--miss); }
details { font-size: 13px; margin: 4px 0 10px; }
details summary { cursor: pointer; color: var(--muted); }
details p { margin: 4px 0 0 16px; overflow-wrap: anywhere; }
""".strip()


def _fmt(value: Any) -> str:
    """Numbers with 4 significant digits; NaN as 'NaN'; None as an em dash."""
    if value is None:
        return "—"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "NaN"
    return f"{v:.4g}"


def _exact(value: Any) -> str:
    """repr-precision text of a float: ``float(_exact(v)) == v`` (and 'nan' for NaN)."""
    return repr(float(value))


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-zA-Z0-9_-]+", "-", text).strip("-").lower() or "dataset"
    slug, k = f"ds-{base}", 1
    while slug in used:
        k += 1
        slug = f"ds-{base}-{k}"
    used.add(slug)
    return slug


def _metric_rows(entries: Sequence[Entry]) -> tuple[list[str], dict[int, int]]:
    """Table rows of every metric of ``entries``, in order. A dataset or model name repeated from the row
    above is greyed (class ``rep``), and each new model starts a row group (class ``group``)."""
    rows, tally = [], {1: 0, 0: 0, -1: 0}
    prev: tuple[str, str] | None = None
    for e in entries:
        new_dataset = prev is None or prev[0] != e.dataset
        first_of_entry = True
        prev = (e.dataset, e.model)
        m = e.metrics
        n = m.sizes.get("metric", 0)
        names = [str(x) for x in m["metric"].values]
        values = np.asarray(m["value"].values, dtype=np.float64)
        bars = np.asarray(m["bar"].values, dtype=np.float64) if "bar" in m else np.full(n, np.nan)
        ops = [str(x) for x in m["bar_op"].values] if "bar_op" in m else [""] * n
        passed = [int(x) for x in m["passed"].values] if "passed" in m else [-1] * n
        descs = [str(x) for x in m["description"].values] if "description" in m else [""] * n
        for name, value, bar, op, ok, desc in zip(names, values, bars, ops, passed, descs, strict=True):
            if np.isnan(bar):
                ok = -1
            cls, label = _STATUS.get(ok, _STATUS[-1])
            tally[ok if ok in tally else -1] += 1
            bar_txt = "—" if np.isnan(bar) else f"{op} {_fmt(bar)}".strip()
            bar_attr = "" if np.isnan(bar) else f' data-bar="{escape(_exact(bar))}"'
            tr_cls = ' class="group"' if first_of_entry and new_dataset and rows else ""
            ds_cls = "" if first_of_entry and new_dataset else ' class="rep"'
            model_cls = "" if first_of_entry else ' class="rep"'
            first_of_entry = False
            rows.append(
                f'<tr{tr_cls} data-dataset="{escape(e.dataset)}" data-model="{escape(e.model)}" '
                f'data-metric="{escape(name)}">'
                f"<td{ds_cls}>{escape(e.dataset)}</td><td{model_cls}>{escape(e.model)}</td>"
                f'<td title="{escape(desc)}"><code>{escape(name)}</code></td>'
                f'<td class="num" data-value="{escape(_exact(value))}">{escape(_fmt(value))}</td>'
                f'<td class="num"{bar_attr}>{escape(bar_txt)}</td>'
                f'<td class="{cls}">{escape(label)}</td>'
                f'<td class="desc">{escape(desc)}</td></tr>'
            )
    return rows, tally


def _summary_section(entries: Sequence[Entry]) -> str:
    rows, tally = _metric_rows(entries)
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
        '<section id="summary"><h2>Summary metrics</h2>'
        f'<p class="summary">{len(rows)} metrics over {len(datasets)} dataset(s): {verdict}. '
        "Rows are grouped by dataset, then model; values are shown to 4 significant digits; hover a metric name "
        "for its description.</p>"
        + missed_txt
        + "<table class=\"metrics\"><thead><tr><th>dataset</th><th>model</th><th>metric</th><th>value</th>"
        "<th>bar</th><th>status</th><th>description</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _img(uri: str, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="{escape(uri)}" alt="{escape(alt)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _facts(items: Sequence[tuple[str, str]]) -> str:
    return '<dl class="facts">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items) + "</dl>"


def _var_names(ds: xr.Dataset, var: str, dim: str) -> list[str]:
    return [str(v) for v in ds[dim].values] if var in ds and dim in ds.coords else []


def _qc_params(counts: xr.Dataset) -> dict[str, Any]:
    """The ``qc`` params the counts were made with (from their provenance), or {}."""
    try:
        qc = provenance_of(counts).get("params", {}).get("qc", {})
    except (KeyError, ValueError, AttributeError):
        return {}
    return qc if isinstance(qc, Mapping) else {}


def _unit_qc_part(counts: xr.Dataset, name: str) -> str:
    """Unit QC of a counts file with ``qc_*`` variables: facts, a rate/violation figure, the dropped units."""
    from brainpipe.report import figures

    arrays = figures.unit_qc_arrays(counts)
    if arrays is None:
        return ""
    qc = _qc_params(counts)
    rate, kept, viol, units = arrays
    min_rate = qc.get("min_rate_hz")
    rules = []
    if min_rate:
        rules.append(f"rate ≥ {_fmt(min_rate)} Hz")
    if qc.get("max_units"):
        rules.append(f"the {qc['max_units']} most active")
    kept_txt = f"{int(kept.sum())} of {rate.size}" + (f" ({'; '.join(rules)})" if rules else " (no selection rule)")
    kr = rate[kept]
    rate_txt = (
        f"{_fmt(kr.min())} – {_fmt(kr.max())} Hz (median {_fmt(np.median(kr))})" if kr.size else "—"
    )
    refr = qc.get("refractory_s")
    isi = f"ISIs < {float(refr) * 1e3:g} ms" if refr else "ISIs below the refractory period"
    ok = np.isfinite(viol)
    if not ok.any():
        viol_txt = "not assessable (the data's time resolution is coarser than the refractory period)"
    else:
        kv = np.where(kept & ok, viol, np.nan)
        worst = int(np.nanargmax(kv)) if np.isfinite(kv).any() else int(np.nanargmax(viol))
        viol_txt = (
            f"median {100 * np.median(viol[ok]):.2g}% of {isi}; worst kept unit {units[worst]} "
            f"{100 * viol[worst]:.2g}%"
            + (f"; {int((~ok).sum())} unit(s) not assessable" if (~ok).any() else "")
            + " — reported, not used to drop units"
        )
    parts = [
        "<h3>Unit QC</h3>",
        _facts([("units kept", kept_txt), ("rate of kept units", rate_txt), ("refractory violations", viol_txt)]),
    ]
    png = figures.unit_qc_figure(counts, float(min_rate) if min_rate else None)
    if png is not None:
        parts.append(
            _img(
                figures.data_uri(png),
                f"unit QC of {name}",
                "Every recorded unit's mean rate, sorted (blue: kept, grey: dropped; dashed: the minimum rate)"
                + (", and the fraction of its inter-spike intervals shorter than the refractory period" if ok.any() else "")
                + ". Look for: dropped units that are not clearly below the kept ones; violation fractions of a few "
                "percent or more suggest multi-unit activity.",
            )
        )
    dropped = [f"{u} ({_fmt(r)} Hz)" for u, r, k in zip(units, rate, kept, strict=True) if not k]
    if dropped:
        parts.append(
            f"<details><summary>{len(dropped)} dropped unit(s)</summary><p>{escape(', '.join(dropped))}</p></details>"
        )
    else:
        parts.append('<p class="note">No unit was dropped.</p>')
    return "".join(parts)


def _is_switching_truth(truth: xr.Dataset | None) -> bool:
    return truth is not None and "true_state" in truth and "weights" in truth and "state" in truth.dims


def _metric_values(m: xr.Dataset) -> dict[str, tuple[float, float, str, int]]:
    """metric -> (value, bar, bar_op, passed) of a metrics file (bar NaN and passed -1 without a bar)."""
    n = m.sizes.get("metric", 0)
    names = [str(x) for x in m["metric"].values]
    values = np.asarray(m["value"].values, dtype=np.float64)
    bars = np.asarray(m["bar"].values, dtype=np.float64) if "bar" in m else np.full(n, np.nan)
    ops = [str(x) for x in m["bar_op"].values] if "bar_op" in m else [""] * n
    passed = [int(x) for x in m["passed"].values] if "passed" in m else [-1] * n
    return {
        k: (float(v), float(b), op, -1 if np.isnan(b) else ok)
        for k, v, b, op, ok in zip(names, values, bars, ops, passed, strict=True)
    }


def _metric_cell(vals: Mapping[str, tuple[float, float, str, int]], metric: str) -> str:
    if metric not in vals:
        return '<td class="num">—</td>'
    value, bar, op, ok = vals[metric]
    cls, title = "num", metric
    if not np.isnan(bar):
        cls = "num " + _STATUS.get(ok, _STATUS[-1])[0]
        title = f"{metric}: bar {op} {_fmt(bar)}, {_STATUS.get(ok, _STATUS[-1])[1]}"
    return (
        f'<td class="{escape(cls)}" data-metric="{escape(metric)}" data-value="{escape(_exact(value))}" '
        f'title="{escape(title)}">{escape(_fmt(value))}</td>'
    )


# ---- branch sections ---------------------------------------------------------------------------------------
# Branches other than the spike branch (fMRI, calcium, Neuroformer, ...) add their part of the page through a module
# ``brainpipe.report.<branch>`` with a function ``sections(files: dict[str, list[Path]]) -> list[BranchSection]``.
# The report stage passes it every input named ``<branch>__<key>`` (e.g. ``calcium__metrics``) as ``files[key]``.
BRANCH_ORDER = ("fmri", "calcium", "neuroformer")


@dataclass
class BranchSection:
    """One section of the page contributed by a branch: ``anchor`` (HTML id), ``title`` (navigation label), ``html``
    (a complete ``<section id=anchor>...</section>``) and the metrics files it reports (they join the summary table)."""

    anchor: str
    title: str
    html: str
    metrics: list[Path] = field(default_factory=list)


def metrics_table(paths: Sequence[PathLike], labels: Sequence[str] | None = None) -> str:
    """An HTML table of every metric of the given metrics files (value, bar, status, description), one row group per
    file labelled by ``labels`` (default: the file's ``dataset`` · ``model`` attrs). For branch sections."""
    entries = []
    for i, p in enumerate(paths):
        m = read(p, "metrics")
        label = labels[i] if labels else None
        entries.append(_metrics_row_source(p, m, label))
    rows, _ = _metric_rows(entries)
    return (
        '<table class="metrics"><thead><tr><th>dataset</th><th>model</th><th>metric</th><th>value</th>'
        "<th>bar</th><th>status</th><th>description</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _metrics_row_source(path: PathLike, m: xr.Dataset, label: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        dataset=str(m.attrs.get("dataset", Path(path).parent.name)),
        model=label or str(m.attrs.get("model", "model")),
        metrics=m,
    )


def branch_sections(branches: Mapping[str, Mapping[str, Iterable[PathLike]]] | None) -> list[BranchSection]:
    """Every branch's sections, in :data:`BRANCH_ORDER` (others after, by name)."""
    import importlib

    out: list[BranchSection] = []
    names = sorted(branches or {}, key=lambda b: (BRANCH_ORDER.index(b) if b in BRANCH_ORDER else len(BRANCH_ORDER), b))
    for name in names:
        files = {k: _as_list(v) for k, v in branches[name].items()}
        if not any(files.values()):
            continue
        try:
            module = importlib.import_module(f"brainpipe.report.{name}")
        except ModuleNotFoundError:
            raise InputError(f"report: no report module for branch {name!r} (expected brainpipe.report.{name})") from None
        out.extend(module.sections(files))
    return out


# (column header, metric) of the variant comparison table; the truth columns only where some file has them.
_VARIANT_COLUMNS = (("test bits/spike", "test_bits_per_spike"), ("bits vs single", "bits_vs_single"))
_TRUTH_COLUMNS = (
    ("bits vs planted", "bits_vs_oracle"),
    ("state accuracy", "state_accuracy"),
    ("weight r", "weight_corr"),
    ("adjacency BA", "adjacency_balanced_accuracy"),
)


def _switching_part(slug: str, name: str, entries: Sequence[Entry], counts: xr.Dataset, reader: _Reader) -> str:
    """The "Switching GLM" subsection of a dataset: variant table, decoded states, per-state couplings against
    the planted ones (simulated data), held-out fit and EM objective per variant."""
    from brainpipe.report import figures

    entries = sorted(entries, key=lambda e: _variant_rank(e.variant))
    fits = {e.variant: reader(e.fit_path, "model_fit") for e in entries}
    vals = {e.variant: _metric_values(e.metrics) for e in entries}
    truth_path = next((e.truth_path for e in entries if e.truth_path), None)
    truth = reader(truth_path, "model_fit") if truth_path else None
    truth = truth if _is_switching_truth(truth) else None

    def n_states(e: Entry) -> int:
        return int(fits[e.variant].sizes.get("state", e.metrics.attrs.get("n_states", 1)))

    def bits(e: Entry) -> float:
        return vals[e.variant].get("test_bits_per_spike", (float("nan"),))[0]

    multi = [e for e in entries if n_states(e) > 1]
    ranked = [e for e in multi if np.isfinite(bits(e))]
    best = max(ranked, key=bits) if ranked else None
    columns = list(_VARIANT_COLUMNS) + [c for c in _TRUTH_COLUMNS if any(c[1] in v for v in vals.values())]

    rows = []
    for e in entries:
        fit = fits[e.variant]
        prior = str(e.metrics.attrs.get("prior", "") or fit.attrs.get("prior", "")) or "—"
        n_it = fit.sizes.get("em_iteration", 0) - 1 if "em_iteration" in fit.dims else fit.attrs.get("n_iter", "—")
        is_best = best is not None and e is best
        tag = '<span class="tag">best</span>' if is_best else ""
        rows.append(
            f'<tr data-variant="{escape(e.variant or "")}"' + (' class="best"' if is_best else "") + ">"
            f"<td>{escape(e.variant or '')}{tag}</td><td>{escape(prior)}</td>"
            f'<td class="num">{n_states(e)}</td><td class="num">{escape(str(n_it))}</td>'
            + "".join(_metric_cell(vals[e.variant], m) for _, m in columns)
            + "</tr>"
        )
    parts = [
        f'<h3 class="sub" id="{escape(slug)}-switching">Switching GLM</h3>',
        f'<p class="note">{len(entries)} variant(s) fitted on the train split and scored on the test split. '
        "Coloured cells have a bar (green met, red missed; hover for the bar); bits are held-out log-likelihood "
        "gains over a homogeneous Poisson model, per spike. "
        + ("“best”: the multi-state variant with the highest test bits/spike." if best is not None else "")
        + "</p>",
        '<table class="variants"><thead><tr><th>variant</th><th>prior</th><th>states</th><th>EM iterations</th>'
        + "".join(f"<th>{escape(h)}</th>" for h, _ in columns)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>",
    ]
    oracle = next((v["oracle_test_bits_per_spike"][0] for v in vals.values() if "oracle_test_bits_per_spike" in v), None)
    oracle_acc = next((v["oracle_state_accuracy"][0] for v in vals.values() if "oracle_state_accuracy" in v), None)
    if oracle is not None:
        parts.append(
            f'<p class="note">Planted model on the same test data: {escape(_fmt(oracle))} bits/spike'
            + (f", state accuracy {escape(_fmt(oracle_acc))}" if oracle_acc is not None else "")
            + " (the ceiling a fit can reach).</p>"
        )

    with_post = [e for e in multi if "posterior" in fits[e.variant]]
    if with_post:
        labels = {}
        for e in with_post:
            v = vals[e.variant]
            if truth is not None and "state_accuracy" in v:
                labels[e.variant] = f"acc {v['state_accuracy'][0]:.3f}"
            elif "test_bits_per_spike" in v:
                labels[e.variant] = f"{v['test_bits_per_spike'][0]:.3g} b/sp"
        ref = best.variant if best is not None else with_post[0].variant
        png = figures.switching_states_figure(
            counts, [(e.variant, fits[e.variant]) for e in with_post], truth, reference=ref, labels=labels
        )
        trials = counts.attrs.get("observed") == "trials"
        where = "whole test sequences (trials), side by side" if trials else "the first 60 s of the test split"
        matched = (
            "the planted states (top strip)" if truth is not None else f"those of the best variant ({ref})"
        )
        parts.append(
            _img(
                figures.data_uri(png),
                f"decoded states of {name}",
                f"Posterior probability of each state over {where}, one row of stacked bands per multi-state "
                f"variant (a solid colour: one confident state). States are matched to {matched} by Hungarian "
                "matching on the test bins, as for the state accuracy, so a colour is the same state in every row; "
                + ("beside each row its state accuracy. " if truth is not None else "beside each row its test bits/spike. ")
                + "Look for: bands that switch where the "
                + ("planted strip switches" if truth is not None else "other variants switch")
                + "; mixed or flickering bands mean the states are not identifiable.",
            )
        )
    if truth is not None and best is not None:
        post = figures.posterior(fits[best.variant], counts)
        if post is not None:
            perm, _, _ = figures.state_matching(post, counts, truth)
            png = figures.switching_weights_figure(fits[best.variant], truth, perm, best.variant)
            parts.append(
                _img(
                    figures.data_uri(png),
                    f"per-state couplings of {best.variant} on {name}",
                    f"Best variant ({best.variant}): planted (row 1) and fitted (row 2) coupling weights of every "
                    "planted state, its matched fitted state below it (rows = post-synaptic, columns = pre-synaptic "
                    "unit; one symmetric colour scale set by the off-diagonal weights, the diagonal holds "
                    "self-history). Rows 3–4: planted and fitted adjacency (blue inhibitory, red excitatory; "
                    "× = fitted category wrong). Look for: the same pattern in each column.",
                )
            )
    summary = [
        {
            "name": e.variant or e.model,
            "n_states": n_states(e),
            "bits": bits(e),
            "objective": np.asarray(fits[e.variant]["objective"].values) if "objective" in fits[e.variant] else [],
            "best": best is not None and e is best,
        }
        for e in entries
    ]
    png = figures.switching_summary_figure(summary, oracle)
    priors = {str(e.metrics.attrs.get("prior", "") or fits[e.variant].attrs.get("prior", "")) for e in entries}
    parts.append(
        _img(
            figures.data_uri(png),
            f"held-out fit and EM objective per variant on {name}",
            "Left: test bits/spike per variant (grey: single-state baseline, green: best multi-state variant"
            + ("; dashed red: the planted model" if oracle is not None else "")
            + "); higher is better. Right: the training objective (log-likelihood + log prior, nats) per EM "
            "iteration; it should rise and flatten."
            + (" Priors differ, so the curves are not on one scale." if len(priors - {""}) > 1 else "")
            + (" The one-hot curve covers only its final exact-EM polish, after the relaxation phase."
               if "onehot" in priors else ""),
        )
    )
    return "".join(parts)


def _dataset_section(slug: str, name: str, group: Sequence[Entry], reader: _Reader) -> str:
    from brainpipe.data.contracts import SPLIT_FLAGS
    from brainpipe.report import figures

    first = group[0]
    counts = reader(first.counts_path, "spike_counts")
    bw = float(counts.attrs["bin_width_s"])
    n_bins = counts.sizes.get("time", 0)
    split = np.asarray(counts["split"].values) if "split" in counts else np.array([], dtype=int)
    split_txt = ", ".join(f"{k} {np.count_nonzero(split == v) * bw:.4g} s" for k, v in SPLIT_FLAGS.items())
    truth_path = next((e.truth_path for e in group if e.truth_path), None)
    truth = reader(truth_path, "model_fit") if truth_path else None
    truth_txt = (
        f"planted {truth.attrs.get('model', '')} ({truth_path})".replace("  ", " ")
        if truth is not None
        else "none (no planted ground truth)"
    )
    beh = _var_names(counts, "behaviour", "behaviour_var")
    stim = _var_names(counts, "stimulus", "stimulus_var")
    rates = figures.firing_rates_hz(counts)
    trials = ""
    if "trial" in counts:
        tr = np.asarray(counts["trial"].values)
        n_tr = np.unique(tr[tr >= 0]).size
        trials = f"{n_tr} trial(s)" + (" (only the trials were recorded)" if counts.attrs.get("observed") == "trials" else "")
    facts = [
        ("units", f"{counts.sizes.get('unit', 0)} (mean rate {_fmt(rates.mean() if rates.size else np.nan)} Hz)"),
        ("duration", f"{n_bins * bw:.4g} s in {n_bins} bins of {bw * 1e3:g} ms"),
        ("split", split_txt + (f" ({counts.attrs['split_rule']})" if counts.attrs.get("split_rule") else "")),
    ]
    if trials:
        facts.append(("trials", trials))
    facts += [
        ("behaviour", ", ".join(beh) or "none"),
        ("stimulus", ", ".join(stim) or "none"),
        ("source", str(counts.attrs.get("source", "")) or "—"),
        ("truth", truth_txt),
        ("counts file", str(first.counts_path)),
    ]
    parts = [f'<section id="{escape(slug)}"><h2>Dataset: {escape(name)}</h2>', _facts(facts), "<h3>Data quality</h3>"]
    qc = figures.data_uri(figures.data_qc_figure(counts))
    covs = " and ".join(x for x in ("behaviour" if beh else "", "stimulus (per trial, steps)" if stim else "") if x)
    joined = "trials" if counts.attrs.get("observed") == "trials" else "test blocks"
    parts.append(
        _img(
            qc,
            f"data QC of {name}",
            "Spike raster of the first 10 s of the test split (up to 30 units; a tick marks a bin with ≥ 1 spike)"
            + (f", {covs} in the same window" if covs else "")
            + f", and each shown unit's mean firing rate over the whole recording. {joined.capitalize()} are drawn "
            "side by side (dashed lines at the joins). Look for: silent or saturated units, and bursts shared "
            "by all units (artefacts).",
        )
    )
    parts.append(_unit_qc_part(counts, name))
    for e in (e for e in group if not e.switching):
        fit = reader(e.fit_path, "model_fit")
        glm_truth = truth if truth is not None and "coupling" in truth else None
        parts.append(f"<h3>Model: {escape(e.model)}</h3>")
        if figures.coupling_matrix(fit) is None:
            parts.append(f'<p class="note">{escape(str(e.fit_path))} has no coupling matrix to show.</p>')
            continue
        uri = figures.data_uri(figures.model_figure(fit, glm_truth))
        if glm_truth is not None and figures.coupling_matrix(glm_truth) is not None:
            cap = (
                "Fitted (left) and planted (middle) coupling weights, rows = post-synaptic unit, columns = "
                "pre-synaptic unit, on one symmetric colour scale set by the off-diagonal weights (the diagonal "
                "holds self-history weights). Right: fitted vs planted off-diagonal weights; dashed = identity."
            )
        elif truth is not None:
            cap = (
                "Fitted coupling weights (rows = post-synaptic, columns = pre-synaptic unit). The planted truth "
                f"of this dataset is a {truth.attrs.get('model', 'different model')}, not one coupling matrix, "
                "so it is not compared here"
                + (" (see Switching GLM below)." if any(x.switching for x in group) else ".")
            )
        else:
            cap = "Fitted coupling weights (rows = post-synaptic, columns = pre-synaptic unit). No planted truth."
        parts.append(_img(uri, f"coupling of {e.model} on {name}", cap))
    switching = [e for e in group if e.switching]
    if switching:
        parts.append(_switching_part(slug, name, switching, counts, reader))
    parts.append("</section>")
    return "".join(parts)


def _short(sha: Any) -> str:
    if not sha:
        return "—"
    sha = str(sha)
    return sha[:10] + ("-dirty" if sha.endswith("-dirty") else "")


def _params_cell(params: str, limit: int = 150) -> str:
    """A stage's params as code; long ones folded behind their first characters (``<details>``, no script)."""
    if len(params) <= limit:
        return f'<span class="label">params</span> <code>{escape(params)}</code>'
    return (
        f'<details><summary><span class="label">params</span> <code>{escape(params[:limit - 40])}…</code></summary>'
        f"<code>{escape(params)}</code></details>"
    )


def _provenance_section(entries: Sequence[Entry], reader: _Reader, benchmarks_dir, config) -> str:
    files: list[tuple[str, str, Path, str]] = []  # (dataset, role, path, kind)
    seen: set[str] = set()
    for e in entries:
        for role, p, kind in (
            ("counts", e.counts_path, "spike_counts"),
            ("truth", e.truth_path, "model_fit"),
            ("fit", e.fit_path, "model_fit"),
            ("metrics", e.metrics_path, "metrics"),
        ):
            if p is None or os.fspath(p) in seen:
                continue
            seen.add(os.fspath(p))
            files.append((e.dataset, role, p, kind))
    rows = []
    software: dict[tuple[str, str], set[str]] = {}  # (package, version) -> stages that ran with it
    for dataset, role, p, kind in files:
        try:
            rec = provenance_of(reader(p, kind))
        except (KeyError, ValueError) as err:
            rec = {"stage": f"(unreadable provenance: {err})"}
        stage_name = str(rec.get("stage", "?"))
        for pkg, ver in {"python": rec.get("python"), "brainpipe": rec.get("version"), **rec.get("packages", {})}.items():
            if ver:
                software.setdefault((pkg, str(ver)), set()).add(stage_name)
        params = json.dumps(rec.get("params", {}), sort_keys=True, default=str)
        sha = rec.get("git_sha")
        seed = rec.get("seed")
        rows.append(
            "<tbody><tr>"
            f'<td class="file"><code>{escape(str(p)).replace("/", "/<wbr>")}</code></td><td>{escape(dataset)}</td>'
            f"<td>{escape(role)}</td>"
            f"<td>{escape(str(rec.get('stage', '—')))}</td><td>{escape(str(rec.get('version', '—')))}</td>"
            f'<td title="{escape(str(sha or ""))}"><code>{escape(_short(sha))}</code></td>'
            f"<td>{escape('—' if seed is None else str(seed))}</td><td>{escape(str(rec.get('device', '—')))}</td>"
            f"<td>{escape(str(rec.get('created', '—')))}</td></tr>"
            f'<tr class="params"><td colspan="9" class="wrap">{_params_cell(params)}</td></tr></tbody>'
        )
    parts = [
        '<section id="provenance"><h2>Provenance</h2>',
        "<h3>Input files</h3>",
        '<p class="note">Every input file of the page, with the stage that wrote it; the params of that stage are '
        "on the line below each file (long ones folded: click to open).</p>",
        '<table class="prov"><thead><tr><th>file</th><th>dataset</th><th>role</th><th>stage</th><th>version</th>'
        "<th>git sha</th><th>seed</th><th>device</th><th>created</th></tr></thead>",
        *rows,
        "</table>",
    ]
    if software:
        parts.append("<h3>Software</h3>")
        parts.append('<p class="note">Versions recorded in the files\' provenance (a package listed twice was not the '
                     "same version for every stage).</p>")
        parts.append('<table class="software"><thead><tr><th>package</th><th>version</th><th>stages</th></tr></thead><tbody>')
        for (pkg, ver), stages in sorted(software.items()):
            parts.append(f"<tr><td>{escape(pkg)}</td><td><code>{escape(ver)}</code></td>"
                         f"<td>{escape(', '.join(sorted(stages)))}</td></tr>")
        parts.append("</tbody></table>")
    bench, skipped = read_benchmarks(benchmarks_dir)
    parts.append("<h3>Run times</h3>")
    if bench:
        parts.append(
            "<table class=\"bench\"><thead><tr><th>rule</th><th>dataset</th><th>variant</th><th>runs</th>"
            "<th>wall time (s)</th><th>max RSS (MB)</th></tr></thead><tbody>"
        )
        for b in bench:
            parts.append(
                f"<tr><td>{escape(b['rule'])}</td><td>{escape(b['dataset'])}</td>"
                f"<td>{escape(b.get('variant') or '—')}</td><td class=\"num\">{b['runs']}</td>"
                f'<td class="num">{escape(_fmt(b["s"]))}</td><td class="num">{escape(_fmt(b["max_rss"]))}</td></tr>'
            )
        parts.append("</tbody></table>")
    else:
        where = f" in {benchmarks_dir}" if benchmarks_dir is not None else ""
        parts.append(f'<p class="note">No benchmark files{escape(where)}.</p>')
    if skipped:
        parts.append(f'<p class="note">Skipped unreadable benchmark files: {escape("; ".join(skipped))}.</p>')
    if config:
        import yaml

        text = yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=False, allow_unicode=True)
        parts += ["<h3>Study configuration</h3>", f"<pre>{escape(text)}</pre>"]
    parts.append("</section>")
    return "".join(parts)


def build_report(
    metrics_paths: Iterable[PathLike],
    fit_paths: Iterable[PathLike],
    count_paths: Iterable[PathLike],
    truth_paths: Iterable[PathLike] = (),
    title: str = DEFAULT_TITLE,
    benchmarks_dir: PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    switching_metrics: Iterable[PathLike] = (),
    switching_fits: Iterable[PathLike] = (),
    branches: Mapping[str, Mapping[str, Iterable[PathLike]]] | None = None,
) -> str:
    """The report page (HTML text) for existing results; models are not re-run.

    ``metrics_paths`` and ``fit_paths`` list one file per dataset and model (parallel lists); ``count_paths``
    the counts of every dataset (matched by folder; or parallel to the metrics); ``truth_paths`` the planted
    truths there are, matched to datasets by folder name. ``switching_metrics`` and ``switching_fits`` list one
    switching-GLM file per dataset and variant (parallel lists, ``{dataset}/switching_glm/{variant}/``); their
    datasets' counts must be among ``count_paths``. ``branches`` maps a branch name to its named file lists
    (``{"calcium": {"metrics": [...], ...}}``), rendered by ``brainpipe.report.<branch>.sections`` (see
    :class:`BranchSection`); their metrics join the summary table. Raises
    :class:`~brainpipe.errors.InputError` for a missing or unmatched file and
    :class:`~brainpipe.errors.ContractError` for a file that breaks its contract.
    """
    reader = _Reader()
    entries = collect(metrics_paths, fit_paths, count_paths, truth_paths, reader, allow_empty=True)
    entries += collect_switching(switching_metrics, switching_fits, count_paths, truth_paths, reader)
    _unique_labels(entries)
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.dataset, []).append(e)
    for g in groups.values():  # within a dataset: the GLMs as given, then switching variants in VARIANT_ORDER
        g.sort(key=lambda e: (e.switching, _variant_rank(e.variant) if e.switching else (0, "")))
    ordered = [e for g in groups.values() for e in g]
    extra = branch_sections(branches)
    summary_rows = ordered + [_metrics_row_source(p, reader(Path(p), "metrics")) for b in extra for p in b.metrics]
    used: set[str] = set()
    slugs = {name: _slug(name, used) for name in groups}
    sha = git_sha()
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    nav = " ".join(
        ['<a href="#summary">Summary</a>']
        + [f'<a href="#{escape(slugs[n])}">{escape(n)}</a>' for n in groups]
        + [f'<a href="#{escape(b.anchor)}">{escape(b.title)}</a>' for b in extra]
        + ['<a href="#provenance">Provenance</a>']
    )
    body = [
        "<header>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">brainpipe <code>{escape(brainpipe.__version__)}</code> · git '
        f'<code title="{escape(sha or "")}">{escape(_short(sha))}</code> · created <code>{escape(created)}</code></p>',
        f"<nav>{nav}</nav>",
        "</header>",
        _summary_section(summary_rows)
        if summary_rows
        else '<section id="summary"><h2>Summary metrics</h2><p>This study has no model results yet: '
        "no dataset has a model enabled in the config.</p></section>",
        *(_dataset_section(slugs[n], n, g, reader) for n, g in groups.items()),
        *(b.html for b in extra),
        _provenance_section(ordered, reader, benchmarks_dir, config),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="brainpipe {escape(brainpipe.__version__)}">'
        f"<title>{escape(title)}</title><style>\n{CSS}\n</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_report(
    path: PathLike,
    metrics_paths: Iterable[PathLike],
    fit_paths: Iterable[PathLike],
    count_paths: Iterable[PathLike],
    truth_paths: Iterable[PathLike] = (),
    title: str = DEFAULT_TITLE,
    benchmarks_dir: PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    switching_metrics: Iterable[PathLike] = (),
    switching_fits: Iterable[PathLike] = (),
    branches: Mapping[str, Mapping[str, Iterable[PathLike]]] | None = None,
) -> Path:
    """Build the report (:func:`build_report`) and write it atomically to ``path``; returns the path.

    The page is built in memory first and written to a temporary file in the same folder, then renamed over
    ``path``: a failure never leaves a partial or half-updated page.
    """
    text = build_report(
        metrics_paths,
        fit_paths,
        count_paths,
        truth_paths,
        title,
        benchmarks_dir,
        config,
        switching_metrics=switching_metrics,
        switching_fits=switching_fits,
        branches=branches,
    )
    out = Path(path)
    with atomic_output(out, stage="report") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out
