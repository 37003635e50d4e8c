"""Build the study report: one self-contained HTML page from every branch's results.

Inputs are named ``<branch>__<key>`` and go to that branch's report module (``brainpipe.report.<branch>.sections``)
as ``files[key]`` (see :class:`brainpipe.report.BranchSection`); the workflow's report rule and ``brainpipe report``
both name them with :func:`brainpipe.layout.report_inputs`. Branches: ``spikes`` (``metrics``/``fits``: Poisson
GLMs, parallel; ``switching_metrics``/``switching_fits``: switching GLMs, parallel; ``counts``; ``truths``),
``fmri``, ``calcium``, ``neuroformer``.

params: ``title`` (page title), ``benchmarks_dir`` (folder of Snakemake benchmark TSVs, default ``benchmarks``;
``<rule>/<dataset>.tsv`` or ``<rule>/<dataset>/<variant>.tsv``), ``study`` (optional: the whole study config, shown
as YAML; the workflow passes it).

After a run in which jobs failed, the workflow's ``onerror`` handler (``workflow/rules/report.smk``) builds the
page from the results that finished with :func:`write_partial`: :func:`finished_inputs` picks them,
:func:`error_line` reads each failed job's one-line error from its log.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from brainpipe import layout
from brainpipe.report import DEFAULT_TITLE, branch_files, write_report
from brainpipe.report.page import Partial
from brainpipe.stages._runner import cli, stage

_SPIKES = {
    "spikes__metrics": "optional: Poisson-GLM metrics .nc files, one per dataset (none at all: a page saying so)",
    "spikes__fits": "optional: Poisson-GLM model_fit .nc files, parallel to spikes__metrics",
    "spikes__counts": "optional: spike_counts .nc files of every spike dataset reported",
    "spikes__truths": "optional: planted-truth model_fit .nc files of the simulated spike datasets",
    "spikes__switching_metrics": "optional: switching-GLM metrics .nc files, one per dataset and variant",
    "spikes__switching_fits": "optional: switching-GLM model_fit .nc files, parallel to spikes__switching_metrics",
}
# every input the workflow gives the page (brainpipe.layout.report_inputs); the runner also passes any other input
# named <branch>__<key>
INPUTS = {
    k: _SPIKES.get(k, f"optional: {k.split('__')[0]} report input '{k.split('__')[1]}' (.nc files)")
    for k in layout.report_inputs(layout.StudyRuns())
}
OUTPUTS = {"html": "self-contained HTML report (e.g. results/report/index.html)"}
log_ = logging.getLogger("brainpipe.stages.report")


@stage
def run(inputs, outputs, params, log):
    files = branch_files({k: v for k, v in inputs.items() if v is not None})
    path = write_report(
        outputs["html"],
        files,
        title=str(params.get("title") or DEFAULT_TITLE),
        benchmarks_dir=params.get("benchmarks_dir", "benchmarks"),
        config=params.get("study"),
    )
    n = {b: sum(len(v) for k, v in f.items() if k.endswith("metrics")) for b, f in files.items()}
    log_.info(
        "wrote %s (metrics files: %s; %.0f kB)",
        path,
        ", ".join(f"{b} {k}" for b, k in n.items()) or "none",
        path.stat().st_size / 1024,
    )


#: the line the stage runner writes to a job's log when its stage fails (brainpipe.stages._runner.stage)
_FAILED_LINE = re.compile(r"\bstage \S+ failed: (.+)$")
_LOG_TAIL = 256 * 1024  # bytes of a log read for its error (the error line is at the end, before a traceback)
_NO_LOG_LINE = "no error line in its log: the job failed before its stage started, or was killed (out of memory, time limit); see snakemake's output"


def error_line(log: str | os.PathLike | None, since: float | None = None) -> str:
    """The one-line error of a failed job, read from its log.

    Parameters
    ----------
    log : path-like or None
        The job's log file.
    since : float, optional
        When the run started (seconds since the epoch): a log last written before it is from an earlier run, and
        says nothing about this failure.

    Returns
    -------
    str
        The error the stage logged (``stage <name> failed: <error>``), else the log's last line, else a sentence
        saying why there is none.
    """
    if log is None:
        return "the job has no log; see snakemake's output"
    p = Path(log)
    try:
        if since is not None and p.stat().st_mtime < since:
            return f"{_NO_LOG_LINE} (its log is from an earlier run)"
        with open(p, "rb") as fh:
            fh.seek(max(0, p.stat().st_size - _LOG_TAIL))
            lines = [
                ln.strip() for ln in fh.read().decode("utf-8", errors="replace").splitlines() if ln.strip()
            ]
    except OSError:
        return f"{_NO_LOG_LINE} (no log was written)"
    for line in reversed(lines):
        m = _FAILED_LINE.search(line)
        if m:
            return m.group(1).strip()
    return lines[-1][:500] if lines else _NO_LOG_LINE


def finished_inputs(
    inputs: Mapping[str, Any],
    unfinished: Iterable[str | os.PathLike] = (),
    root: str | os.PathLike = layout.RESULTS,
) -> dict[str, list[str]]:
    """The report inputs of the results that finished: those of ``inputs`` that exist and are not ``unfinished``.

    What a model contributes follows :func:`brainpipe.layout.discover` (a model counts when its metrics file
    finished, with the files it reads beside it), so the page gets a consistent subset of the study's inputs.

    Parameters
    ----------
    inputs : mapping
        The study's report inputs (``<branch>__<key>`` -> path or paths; :func:`brainpipe.layout.report_inputs`).
    unfinished : iterable of path-like
        Outputs of the jobs the run did not finish (an older copy on disk is not this run's result).
    root : path-like
        The results folder.

    Returns
    -------
    dict
        ``<branch>__<key>`` -> the paths of finished results.
    """
    skip = {Path(p) for p in unfinished}
    done = {
        Path(p)
        for v in inputs.values()
        for p in ([v] if isinstance(v, (str, os.PathLike)) else list(v or []))
        if Path(p) not in skip and Path(p).exists()
    }
    expected = layout.report_inputs(layout.discover(root, files=done), root=root)
    return {k: [p for p in v if Path(p) in done] for k, v in expected.items()}


def write_partial(
    page: str | os.PathLike,
    inputs: Mapping[str, Any],
    partial: Partial,
    unfinished: Iterable[str | os.PathLike] = (),
    params: Mapping[str, Any] | None = None,
    root: str | os.PathLike = layout.RESULTS,
) -> Path:
    """Write the page of a run in which jobs failed: what finished, a banner and the failed panel.

    The page is dated to the epoch (its modification time), so the next run of the workflow rebuilds it from
    every input whatever happens in between (snakemake reruns a job whose inputs are newer than its output).

    Parameters
    ----------
    page : path-like
        The page (``results/report/index.html``).
    inputs : mapping
        The study's report inputs (all of them; :func:`finished_inputs` picks those that finished).
    partial : Partial
        The failed jobs and the missing results.
    unfinished : iterable of path-like
        Outputs of the jobs the run did not finish.
    params : mapping, optional
        The report rule's params (``title``, ``benchmarks_dir``, ``study``).
    root : path-like
        The results folder.

    Returns
    -------
    Path
        ``page``.
    """
    params = dict(params or {})
    files = branch_files(finished_inputs(inputs, unfinished, root))
    path = write_report(
        page,
        files,
        title=str(params.get("title") or DEFAULT_TITLE),
        benchmarks_dir=params.get("benchmarks_dir", "benchmarks"),
        config=params.get("study"),
        partial=partial,
    )
    os.utime(path, (0, 0))
    return path


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
