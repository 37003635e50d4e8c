"""The study page: every branch's sections assembled through one interface, results first.

Order of the page: header and navigation; the results (a headline per dataset and model with the key figures,
:mod:`brainpipe.report.headline`); the table of every metric, folded, with a filter
(:mod:`brainpipe.report.tables`); each branch's sections in :data:`BRANCH_ORDER` (the spike branch's one per
dataset); provenance (:mod:`brainpipe.report.provenance`). Figures are embedded as base64 PNG ``data:`` URIs and
the CSS and the one script are inline, so the page opens offline and can be mailed as one file.

After a run in which jobs failed, the page is built from what finished (:class:`Partial`): a banner says the
results are partial, a "failed" panel lists each failed job (dataset, rule, the one-line error from its log) and
the results section names the model results that are missing, so none of them reads as passing.
"""

from __future__ import annotations

import datetime as _dt
import importlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from html import escape
from pathlib import Path
from typing import Any

import brainpipe
from brainpipe import layout
from brainpipe._docs import fill_doc
from brainpipe.data.atomic import atomic_output
from brainpipe.data.provenance import git_sha
from brainpipe.errors import InputError
from brainpipe.report.base import DEFAULT_TITLE, BranchSection, PathLike, Reader, as_list
from brainpipe.report.headline import headline_section
from brainpipe.report.provenance import provenance_section, short_sha
from brainpipe.report.style import CSS, SCRIPT
from brainpipe.report.tables import all_metrics_section, row_source

#: branches in page order; any other branch follows, by name
BRANCH_ORDER = ("spikes", "fmri", "calcium", "neuroformer")

#: wildcards naming what a job worked on, in the order the failed panel looks for its 'dataset'
DATASET_WILDCARDS = ("dataset", "fmri_dataset", "cadataset", "study")

#: results that hold a model's metrics (brainpipe.layout) -> the model's name on the page when one is missing
MODEL_RESULTS = {
    "poisson_glm_metrics": "poisson_glm",
    "switching_metrics": "switching_glm",
    "brainmae_metrics": "brainmae",
    "fmri_baselines": "fmri baselines",
    "connectome_metrics": "connectome",
    "neuroformer_metrics": "neuroformer",
}


@dataclass(frozen=True)
class Failure:
    """One job of the run that failed: its rule, its wildcards, the one-line error from its log, the log's path.

    Parameters
    ----------
    rule : str
        The workflow rule (e.g. ``ingest_spikes``).
    wildcards : mapping
        The job's wildcards (e.g. ``{"dataset": "session2"}``).
    error : str
        The one-line error (:func:`brainpipe.stages.report.error_line` reads it from the job's log).
    log : str, optional
        The job's log file.
    """

    rule: str
    wildcards: Mapping[str, str] = field(default_factory=dict)
    error: str = ""
    log: str | None = None

    @property
    def _dataset_key(self) -> str | None:
        return next((k for k in DATASET_WILDCARDS if self.wildcards.get(k)), None)

    @property
    def dataset(self) -> str:
        """What the job worked on: its first wildcard of :data:`DATASET_WILDCARDS` (``"—"`` when none)."""
        key = self._dataset_key
        return "—" if key is None else str(self.wildcards[key])

    @property
    def job(self) -> str:
        """The rule with its other wildcards (e.g. ``fit_switching_glm (variant=none)``)."""
        rest = [f"{k}={v}" for k, v in self.wildcards.items() if k != self._dataset_key]
        return self.rule + (f" ({', '.join(rest)})" if rest else "")


@dataclass(frozen=True)
class Partial:
    """What a run that failed did not finish; the page shows it in a banner, a failed panel and the results.

    Parameters
    ----------
    failures : sequence of Failure
        The jobs that failed.
    missing : mapping
        Report input (path) -> why it is not on the page (e.g. ``"failed"``, ``"not run: ingest_spikes failed on
        session2"``); only the models' metrics files among them are named on the page.
    keep_going : bool
        Whether the run went on with everything else after the first failure (``--keep-going``); when not, the
        banner says that other results may be missing only because they were not attempted.
    snakemake_log : str, optional
        Snakemake's own log of the run.
    """

    failures: Sequence[Failure] = ()
    missing: Mapping[str, str] = field(default_factory=dict)
    keep_going: bool = True
    snakemake_log: str | None = None

    def missing_models(self) -> list[tuple[str, str, str]]:
        """The models whose metrics are missing, as (dataset, model, why), sorted.

        Returns
        -------
        list of (str, str, str)
            One entry per missing metrics file (the model named as in :data:`MODEL_RESULTS`, with its variant).
        """
        out = []
        for path, why in self.missing.items():
            for name, model in MODEL_RESULTS.items():
                hit = layout.match(name, path)
                if hit is None:
                    continue
                values = [hit[1][f] for f in layout.fields(name)]
                out.append((values[0], "/".join([model, *values[1:]]), why))
                break
        return sorted(out)


def branch_sections(branches: Mapping[str, Mapping[str, Iterable[PathLike]]] | None) -> list[BranchSection]:
    """Every branch's sections, in :data:`BRANCH_ORDER` (others after, by name).

    Parameters
    ----------
    branches : mapping
        Branch name -> its named file lists (``{"calcium": {"metrics": [...], ...}}``); each is rendered by
        ``brainpipe.report.<branch>.sections``. A branch whose lists are all empty adds nothing.

    Returns
    -------
    list of BranchSection
        The sections, branch by branch.

    Raises
    ------
    brainpipe.errors.InputError
        For a branch without a report module.
    """
    out: list[BranchSection] = []
    names = sorted(
        branches or {}, key=lambda b: (BRANCH_ORDER.index(b) if b in BRANCH_ORDER else len(BRANCH_ORDER), b)
    )
    for name in names:
        files = {k: as_list(v) for k, v in branches[name].items()}
        if not any(files.values()):
            continue
        try:
            module = importlib.import_module(f"brainpipe.report.{name}")
        except ModuleNotFoundError:
            raise InputError(
                f"report: no report module for branch {name!r} (expected brainpipe.report.{name}); name report "
                "inputs <branch>__<key> after an existing branch"
            ) from None
        out.extend(module.sections(files))
    return out


def _key_figures_once(sections: list[BranchSection]) -> list[BranchSection]:
    """Show each key figure once: with its headline at the top of the page, and a link to it where its section had
    it (a section's own HTML keeps its figures, so a section stands alone)."""
    out = []
    n = 0
    for s in sections:
        html, heads = s.html, []
        for h in s.headlines:
            if h.figure and h.figure in html:
                n += 1
                anchor = f"key-figure-{n}"
                html = html.replace(
                    h.figure,
                    f'<p class="note keyref">Figure: <a href="#{anchor}">shown with the results at the top of the '
                    f"page</a> ({escape(h.dataset)} · {escape(h.model)}).</p>",
                    1,
                )
                h = replace(h, figure=f'<div class="keyfig" id="{anchor}">{h.figure}</div>')
            heads.append(h)
        out.append(replace(s, html=html, headlines=heads))
    return out


def stale_section(paths: Iterable[PathLike]) -> str:
    """A warning listing the files on the page whose inputs changed (or went) since they were written.

    After a rerun failed upstream (say a recording replaced by a corrupted copy), the previous run's downstream
    results are still on disk; this says which ones no longer follow from their inputs
    (:func:`brainpipe.data.stale.stale_files`). Empty when every file is up to date.

    Parameters
    ----------
    paths : iterable of path-like
        The files the page reports.

    Returns
    -------
    str
        HTML (an empty string when nothing is stale).
    """
    from brainpipe.data.stale import stale_files

    stale = stale_files(dict.fromkeys(Path(p) for p in paths))
    if not stale:
        return ""
    items = "".join(
        f"<li><code>{escape(p)}</code>: {escape('; '.join(r))}</li>" for p, r in sorted(stale.items())
    )
    return (
        '<section id="stale" class="stale"><h2>Stale results</h2><p>These files no longer follow from their inputs '
        "(an input changed or is gone since they were written, probably by a rerun that failed): their numbers "
        f"below are from the earlier run. Re-run the workflow.</p><ul>{items}</ul></section>"
    )


def partial_section(partial: Partial | None) -> str:
    """The banner of a page built after a run in which jobs failed, with the failed panel (``id="failed"``).

    Parameters
    ----------
    partial : Partial or None
        What the run did not finish (None: the run finished; nothing is shown).

    Returns
    -------
    str
        HTML (an empty string for a finished run).
    """
    if partial is None:
        return ""
    n, models = len(partial.failures), partial.missing_models()
    rows = "".join(
        f"<tr><td>{escape(f.dataset)}</td><td><code>{escape(f.job)}</code></td><td>{escape(f.error)}</td>"
        f"<td>{f'<code>{escape(f.log)}</code>' if f.log else '—'}</td></tr>"
        for f in sorted(partial.failures, key=lambda f: (f.dataset, f.rule, f.job))
    )
    stopped = (
        ""
        if partial.keep_going
        else " The run stopped at the first failure, so some results are missing only because they were not "
        "attempted; <code>snakemake --keep-going</code> finishes every result that does not depend on a failed job."
    )
    log = (
        f" Snakemake's log of the run: <code>{escape(partial.snakemake_log)}</code>."
        if partial.snakemake_log
        else ""
    )
    what = f"{n} job(s) failed" if n else "the run was stopped before it finished"
    table = (
        '<table class="failed"><thead><tr><th>dataset</th><th>rule</th><th>error</th><th>log</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
        if n
        else ""
    )
    return (
        '<section id="failed" class="stale partial"><h2>Partial results: '
        f"{what}</h2><p><strong>This run did not finish.</strong> The page shows only the results that "
        f"finished; {len(models)} model result(s) are missing (named in the results below) and the failed jobs are "
        "listed here with the error from their log. Fix the cause and run the workflow again: finished results are "
        f"kept, and this page is rebuilt.{stopped}{log}</p>{table}</section>"
    )


def _with_missing_models(results: str, partial: Partial | None) -> str:
    """The results section, led by the models whose results are missing (so a partial page never reads as if every
    model had run)."""
    models = partial.missing_models() if partial is not None else []
    if not models:
        return results
    items = "".join(f"<li>{escape(d)} · <code>{escape(m)}</code>: {escape(why)}</li>" for d, m, why in models)
    note = (
        f'<div class="missed"><strong>{len(models)} model result(s) missing</strong> (not counted below; see '
        f'<a href="#failed">failed</a>):<ul>{items}</ul></div>'
    )
    head = '<section id="results"><h2>Results</h2>'
    return results.replace(head, head + note, 1) if results.startswith(head) else note + results


@fill_doc
def build_report(
    branches: Mapping[str, Mapping[str, Iterable[PathLike]]] | None,
    title: str = DEFAULT_TITLE,
    benchmarks_dir: PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    partial: Partial | None = None,
) -> str:
    """The report page (HTML text) for existing results; models are not re-run.

    Parameters
    ----------
    %(report_page)s

    Returns
    -------
    str
        The page.

    Raises
    ------
    brainpipe.errors.InputError
        A missing or unmatched file, or an unknown branch.
    brainpipe.errors.ContractError
        A file that breaks its contract.

    Examples
    --------
    The page of every result the workflow wrote under ``results/`` (:func:`brainpipe.layout.discover`):

    >>> from brainpipe import layout
    >>> from brainpipe.report import branch_files, build_report
    >>> inputs = layout.report_inputs(layout.discover("results"))  # doctest: +SKIP
    >>> html = build_report(branch_files(inputs), title="My study")  # doctest: +SKIP

    A study without results yet still gets a page, which says so:

    >>> html = build_report({}, title="My study")
    >>> html.startswith("<!DOCTYPE html>"), "<title>My study</title>" in html, "no model results yet" in html
    (True, True, True)
    """
    reader = Reader()
    sections = _key_figures_once(branch_sections(branches))
    rows = [row_source(reader(Path(p), "metrics")) for s in sections for p in s.metrics]
    sha = git_sha()
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    nav = " ".join(
        (['<a href="#failed">Failed</a>'] if partial is not None else [])
        + ['<a href="#results">Results</a>', '<a href="#summary">All metrics</a>']
        + [f'<a href="#{escape(s.anchor)}">{escape(s.title)}</a>' for s in sections]
        + ['<a href="#provenance">Provenance</a>']
    )
    body = [
        "<header>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">brainpipe <code>{escape(brainpipe.__version__)}</code> · git '
        f'<code title="{escape(sha or "")}">{escape(short_sha(sha))}</code> · created <code>{escape(created)}</code></p>',
        f"<nav>{nav}</nav>",
        "</header>",
        partial_section(partial),
        stale_section(
            [*(p for s in sections for p in s.metrics), *(i[2] for s in sections for i in s.inputs)]
        ),
        _with_missing_models(headline_section([h for s in sections for h in s.headlines]), partial),
        all_metrics_section(rows),
        *(s.html for s in sections),
        provenance_section([i for s in sections for i in s.inputs], reader, benchmarks_dir, config),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="generator" content="brainpipe {escape(brainpipe.__version__)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>\n{CSS}\n</style></head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>\n{SCRIPT}\n</script>\n</body></html>\n"
    )


@fill_doc
def write_report(
    path: PathLike,
    branches: Mapping[str, Mapping[str, Iterable[PathLike]]] | None,
    title: str = DEFAULT_TITLE,
    benchmarks_dir: PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    partial: Partial | None = None,
) -> Path:
    """Build the report (:func:`build_report`) and write it atomically to ``path``.

    The page is built in memory first and written through :func:`brainpipe.data.atomic.atomic_output`: a failure
    never leaves a partial or half-updated page, and a file brainpipe did not write is never replaced.

    Parameters
    ----------
    path : path-like
        The page (e.g. ``results/report/index.html``).
    %(report_page)s

    Returns
    -------
    Path
        ``path``.
    """
    text = build_report(branches, title, benchmarks_dir, config, partial)
    out = Path(path)
    with atomic_output(out, stage="report") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out
