"""The provenance part of the page: every input file with the stage that wrote it (version, git sha, seed, device,
params), the software versions recorded in the files, the run times of the rules and the study configuration."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from brainpipe.data import provenance_of
from brainpipe.report.base import PathLike, Reader, fmt


def read_benchmarks(folder: PathLike | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Read the Snakemake benchmark TSVs under a folder, one row per file.

    The files are ``<rule>/<dataset>.tsv`` or, for rules with more wildcards, ``<rule>/<dataset>/<variant>.tsv``.
    Each row has ``rule``, ``dataset``, ``variant`` (the rest of the path below the dataset folder; "" for
    ``<rule>/<dataset>.tsv``), ``runs``, ``s`` (mean wall seconds over repeats) and ``max_rss``
    (largest MB over repeats; NaN when not measured). Files that cannot be read are skipped and named in the
    second list, so a half-written or foreign TSV never breaks the report.

    Parameters
    ----------
    folder : path-like or None
        The benchmarks folder (None or a missing folder: no rows).

    Returns
    -------
    (list of dict, list of str)
        The rows, and the skipped files with the reason.
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
        except (
            pd.errors.EmptyDataError,
            pd.errors.ParserError,
            OSError,
            UnicodeDecodeError,
            ValueError,
        ) as err:
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
        folders = (
            rel.parent.parts
        )  # <rule>/<dataset>.tsv, or <rule>/<dataset>/<variant>.tsv (wildcard folders)
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


def short_sha(sha: Any) -> str:
    if not sha:
        return "—"
    sha = str(sha)
    return sha[:10] + ("-dirty" if sha.endswith("-dirty") else "")


def _params_cell(params: str, limit: int = 150) -> str:
    """A stage's params as code; long ones folded behind their first characters (``<details>``, no script)."""
    if len(params) <= limit:
        return f'<span class="label">params</span> <code>{escape(params)}</code>'
    return (
        f'<details><summary><span class="label">params</span> <code>{escape(params[: limit - 40])}…</code></summary>'
        f"<code>{escape(params)}</code></details>"
    )


def provenance_section(
    inputs: Sequence[tuple[str, str, Path, str]],
    reader: Reader,
    benchmarks_dir: PathLike | None,
    config: Mapping[str, Any] | None,
) -> str:
    """The provenance section (``id="provenance"``).

    Parameters
    ----------
    inputs : sequence of (dataset, role, path, contract kind)
        Every file the page was built from, in page order (a path listed twice is shown once).
    reader : Reader
        The page's file cache.
    benchmarks_dir : path-like or None
        Folder of Snakemake benchmark TSVs (:func:`read_benchmarks`).
    config : mapping or None
        The study configuration, shown as YAML.

    Returns
    -------
    str
    """
    files: list[tuple[str, str, Path, str]] = []
    seen: set[str] = set()
    for dataset, role, p, kind in inputs:
        if p is None or os.fspath(p) in seen:
            continue
        seen.add(os.fspath(p))
        files.append((dataset, role, Path(p), kind))
    rows = []
    software: dict[tuple[str, str], set[str]] = {}  # (package, version) -> stages that ran with it
    for dataset, role, p, kind in files:
        try:
            rec = provenance_of(reader(p, kind))
        except (KeyError, ValueError) as err:
            rec = {"stage": f"(unreadable provenance: {err})"}
        stage_name = str(rec.get("stage", "?"))
        for pkg, ver in {
            "python": rec.get("python"),
            "brainpipe": rec.get("version"),
            **rec.get("packages", {}),
        }.items():
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
            f'<td title="{escape(str(sha or ""))}"><code>{escape(short_sha(sha))}</code></td>'
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
        parts.append(
            '<p class="note">Versions recorded in the files\' provenance (a package listed twice was not the '
            "same version for every stage).</p>"
        )
        parts.append(
            '<table class="software"><thead><tr><th>package</th><th>version</th><th>stages</th></tr></thead><tbody>'
        )
        for (pkg, ver), stages in sorted(software.items()):
            parts.append(
                f"<tr><td>{escape(pkg)}</td><td><code>{escape(ver)}</code></td>"
                f"<td>{escape(', '.join(sorted(stages)))}</td></tr>"
            )
        parts.append("</tbody></table>")
    bench, skipped = read_benchmarks(benchmarks_dir)
    parts.append("<h3>Run times</h3>")
    if bench:
        parts.append(
            '<table class="bench"><thead><tr><th>rule</th><th>dataset</th><th>variant</th><th>runs</th>'
            "<th>wall time (s)</th><th>max RSS (MB)</th></tr></thead><tbody>"
        )
        for b in bench:
            parts.append(
                f"<tr><td>{escape(b['rule'])}</td><td>{escape(b['dataset'])}</td>"
                f'<td>{escape(b.get("variant") or "—")}</td><td class="num">{b["runs"]}</td>'
                f'<td class="num">{escape(fmt(b["s"]))}</td><td class="num">{escape(fmt(b["max_rss"]))}</td></tr>'
            )
        parts.append("</tbody></table>")
    else:
        where = f" in {benchmarks_dir}" if benchmarks_dir is not None else ""
        parts.append(f'<p class="note">No benchmark files{escape(where)}.</p>')
    if skipped:
        parts.append(f'<p class="note">Skipped unreadable benchmark files: {escape("; ".join(skipped))}.</p>')
    if config:
        import yaml

        text = yaml.safe_dump(
            json.loads(json.dumps(config, default=str)), sort_keys=False, allow_unicode=True
        )
        parts += ["<h3>Study configuration</h3>", f"<pre>{escape(text)}</pre>"]
    parts.append("</section>")
    return "".join(parts)
