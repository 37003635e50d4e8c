"""The study report as one self-contained HTML page, built from existing results files.

Layout of the results this reads (``{dataset}`` is a folder name)::

    results/spikes/{dataset}/counts.nc                 spike_counts
    results/spikes/{dataset}/truth.nc                  planted truth (simulated datasets only)
    results/spikes/{dataset}/{model}/fit.nc            model_fit (role fit)
    results/spikes/{dataset}/{model}/metrics.nc        metrics

Metrics, fits and counts are parallel lists (one entry per dataset and model); truths may be fewer and are
matched by dataset name. Figures are embedded as base64 PNG ``data:`` URIs and the CSS is inline, so the page
opens offline and can be mailed as one file.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import brainpipe
from brainpipe.data import provenance_of, read
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
) -> list[Entry]:
    """Pair every metrics file with its fit, counts and (when there is one) truth file."""
    reader = reader or _Reader()
    metrics, fits, counts, truths = map(_as_list, (metrics_paths, fit_paths, count_paths, truth_paths))
    if not metrics:
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
    # Two folders must not be shown under one name (e.g. a metrics attr that is not a dataset name).
    by_label: dict[str, set[str]] = {}
    for e in entries:
        by_label.setdefault(e.dataset, set()).add(e.folder)
    for e in entries:
        if len(by_label[e.dataset]) > 1:
            e.dataset = e.folder
    return entries


def read_benchmarks(folder: PathLike | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Snakemake benchmark TSVs under ``folder`` (``<rule>/<dataset>.tsv``): one row per file.

    Each row has ``rule``, ``dataset``, ``runs``, ``s`` (mean wall seconds over repeats) and ``max_rss``
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
        rows.append(
            {
                "rule": "/".join(rel.parent.parts) or "-",
                "dataset": rel.stem,
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
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12px; }
pre { background: var(--zebra); border: 1px solid var(--line); padding: 10px 12px; overflow-x: auto; }
figure { margin: 10px 0 18px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 14px; margin: 6px 0 12px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
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
    rows, tally = [], {1: 0, 0: 0, -1: 0}
    for e in entries:
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
            rows.append(
                f'<tr data-dataset="{escape(e.dataset)}" data-model="{escape(e.model)}" data-metric="{escape(name)}">'
                f"<td>{escape(e.dataset)}</td><td>{escape(e.model)}</td>"
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
    return (
        '<section id="summary"><h2>Summary metrics</h2>'
        f'<p class="summary">{len(rows)} metrics over {len(datasets)} dataset(s): {verdict}. '
        "Values are shown to 4 significant digits; hover a metric name for its description.</p>"
        "<table class=\"metrics\"><thead><tr><th>dataset</th><th>model</th><th>metric</th><th>value</th>"
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


def _dataset_section(slug: str, name: str, group: Sequence[Entry], reader: _Reader) -> str:
    from brainpipe.data.contracts import SPLIT_FLAGS
    from brainpipe.report import figures

    first = group[0]
    counts = reader(first.counts_path, "spike_counts")
    bw = float(counts.attrs["bin_width_s"])
    n_bins = counts.sizes.get("time", 0)
    split = np.asarray(counts["split"].values) if "split" in counts else np.array([], dtype=int)
    split_txt = ", ".join(f"{k} {np.count_nonzero(split == v) * bw:.4g} s" for k, v in SPLIT_FLAGS.items())
    truth_txt = f"planted ({first.truth_path})" if first.truth_path else "none (no planted ground truth)"
    beh = [str(v) for v in counts["behaviour_var"].values] if "behaviour" in counts and "behaviour_var" in counts.coords else []
    rates = figures.firing_rates_hz(counts)
    facts = [
        ("units", f"{counts.sizes.get('unit', 0)} (mean rate {_fmt(rates.mean() if rates.size else np.nan)} Hz)"),
        ("duration", f"{n_bins * bw:.4g} s in {n_bins} bins of {bw * 1e3:g} ms"),
        ("split", split_txt),
        ("behaviour", ", ".join(beh) or "none"),
        ("source", str(counts.attrs.get("source", "")) or "—"),
        ("truth", truth_txt),
        ("counts file", str(first.counts_path)),
    ]
    parts = [f'<section id="{escape(slug)}"><h2>Dataset: {escape(name)}</h2>', _facts(facts), "<h3>Data quality</h3>"]
    qc = figures.data_uri(figures.data_qc_figure(counts))
    parts.append(
        _img(
            qc,
            f"data QC of {name}",
            "Spike raster of the first 10 s of the test split (up to 30 units; a tick marks a bin with ≥ 1 spike)"
            + (", behaviour in the same window" if beh else "")
            + ", and each shown unit's mean firing rate over the whole recording.",
        )
    )
    for e in group:
        fit = reader(e.fit_path, "model_fit")
        truth = reader(e.truth_path, "model_fit") if e.truth_path else None
        parts.append(f"<h3>Model: {escape(e.model)}</h3>")
        if figures.coupling_matrix(fit) is None:
            parts.append(f'<p class="note">{escape(str(e.fit_path))} has no coupling matrix to show.</p>')
            continue
        uri = figures.data_uri(figures.model_figure(fit, truth))
        if truth is not None and figures.coupling_matrix(truth) is not None:
            cap = (
                "Fitted (left) and planted (middle) coupling weights, rows = post-synaptic unit, columns = "
                "pre-synaptic unit, on one symmetric colour scale set by the off-diagonal weights (the diagonal "
                "holds self-history weights). Right: fitted vs planted off-diagonal weights; dashed = identity."
            )
        else:
            cap = "Fitted coupling weights (rows = post-synaptic, columns = pre-synaptic unit). No planted truth."
        parts.append(_img(uri, f"coupling of {e.model} on {name}", cap))
    parts.append("</section>")
    return "".join(parts)


def _short(sha: Any) -> str:
    if not sha:
        return "—"
    sha = str(sha)
    return sha[:10] + ("-dirty" if sha.endswith("-dirty") else "")


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
    for dataset, role, p, kind in files:
        try:
            rec = provenance_of(reader(p, kind))
        except (KeyError, ValueError) as err:
            rec = {"stage": f"(unreadable provenance: {err})"}
        params = json.dumps(rec.get("params", {}), sort_keys=True, default=str)
        sha = rec.get("git_sha")
        seed = rec.get("seed")
        rows.append(
            "<tr>"
            f'<td class="wrap"><code>{escape(str(p))}</code></td><td>{escape(dataset)}</td>'
            f"<td>{escape(role)}</td>"
            f"<td>{escape(str(rec.get('stage', '—')))}</td><td>{escape(str(rec.get('version', '—')))}</td>"
            f'<td title="{escape(str(sha or ""))}"><code>{escape(_short(sha))}</code></td>'
            f"<td>{escape('—' if seed is None else str(seed))}</td><td>{escape(str(rec.get('device', '—')))}</td>"
            f"<td>{escape(str(rec.get('created', '—')))}</td>"
            f'<td class="wrap"><code>{escape(params)}</code></td>'
            "</tr>"
        )
    parts = [
        '<section id="provenance"><h2>Provenance</h2>',
        "<h3>Input files</h3>",
        '<table class="prov"><thead><tr><th>file</th><th>dataset</th><th>role</th><th>stage</th><th>version</th>'
        "<th>git sha</th><th>seed</th><th>device</th><th>created</th><th>params</th></tr></thead><tbody>",
        *rows,
        "</tbody></table>",
    ]
    bench, skipped = read_benchmarks(benchmarks_dir)
    parts.append("<h3>Run times</h3>")
    if bench:
        parts.append(
            "<table class=\"bench\"><thead><tr><th>rule</th><th>dataset</th><th>runs</th><th>wall time (s)</th>"
            "<th>max RSS (MB)</th></tr></thead><tbody>"
        )
        for b in bench:
            parts.append(
                f"<tr><td>{escape(b['rule'])}</td><td>{escape(b['dataset'])}</td><td class=\"num\">{b['runs']}</td>"
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
) -> str:
    """The report page (HTML text) for existing results; models are not re-run.

    ``metrics_paths``, ``fit_paths`` and ``count_paths`` list one file per dataset and model (parallel lists);
    ``truth_paths`` lists the planted truths there are, matched to datasets by folder name. Raises
    :class:`~brainpipe.errors.InputError` for a missing or unmatched file and
    :class:`~brainpipe.errors.ContractError` for a file that breaks its contract.
    """
    reader = _Reader()
    entries = collect(metrics_paths, fit_paths, count_paths, truth_paths, reader)
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.dataset, []).append(e)
    used: set[str] = set()
    slugs = {name: _slug(name, used) for name in groups}
    sha = git_sha()
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    nav = " ".join(
        ['<a href="#summary">Summary</a>']
        + [f'<a href="#{escape(slugs[n])}">{escape(n)}</a>' for n in groups]
        + ['<a href="#provenance">Provenance</a>']
    )
    body = [
        "<header>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">brainpipe <code>{escape(brainpipe.__version__)}</code> · git '
        f'<code title="{escape(sha or "")}">{escape(_short(sha))}</code> · created <code>{escape(created)}</code></p>',
        f"<nav>{nav}</nav>",
        "</header>",
        _summary_section(entries),
        *(_dataset_section(slugs[n], n, g, reader) for n, g in groups.items()),
        _provenance_section(entries, reader, benchmarks_dir, config),
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
) -> Path:
    """Build the report (:func:`build_report`) and write it atomically to ``path``; returns the path.

    The page is built in memory first and written to a temporary file in the same folder, then renamed over
    ``path``: a failure never leaves a partial or half-updated page.
    """
    text = build_report(metrics_paths, fit_paths, count_paths, truth_paths, title, benchmarks_dir, config)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
