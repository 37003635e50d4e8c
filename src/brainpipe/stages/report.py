"""Build the study report: one self-contained HTML page from the metrics, fits, truths and counts of a study.

Metrics and fits are parallel lists (one entry per dataset and model); counts are matched by dataset folder
(or parallel to the metrics); truths exist for simulated datasets only and are matched by dataset folder
(``results/spikes/{dataset}/truth.nc``). Switching GLMs come as two more parallel lists, ``switching_metrics``
and ``switching_fits`` (one entry per dataset and variant, ``results/spikes/{dataset}/switching_glm/{variant}/``);
the counts must include their datasets'.

params: ``title`` (page title), ``benchmarks_dir`` (folder of Snakemake benchmark TSVs, default ``benchmarks``;
``<rule>/<dataset>.tsv`` or ``<rule>/<dataset>/<variant>.tsv``), ``config`` (optional study config, shown as YAML).
"""

from __future__ import annotations

import logging
from pathlib import Path

from brainpipe.report import DEFAULT_TITLE, write_report
from brainpipe.stages._runner import cli, stage

INPUTS = {
    "metrics": "optional: metrics .nc files, one per dataset and model (none: a page saying so)",
    "fits": "optional: model_fit .nc files (role fit), parallel to metrics",
    "truths": "optional: planted truth model_fit .nc files (simulated datasets only), matched by dataset folder",
    "counts": "optional: spike_counts .nc files of every dataset reported (matched by folder), or parallel to metrics",
    "switching_metrics": "optional: switching-GLM metrics .nc files, one per dataset and variant",
    "switching_fits": "optional: switching-GLM model_fit .nc files, parallel to switching_metrics",
}
# Inputs named ``<branch>__<key>`` (e.g. ``calcium__metrics``) go to that branch's report module
# (brainpipe.report.<branch>.sections) as files[key]; see brainpipe.report.html.BranchSection.
OUTPUTS = {"html": "self-contained HTML report (e.g. results/report/index.html)"}
log_ = logging.getLogger("brainpipe.stages.report")


def _as_list(value) -> list[Path]:
    if value is None:
        return []
    return [Path(v) for v in value] if isinstance(value, (list, tuple)) else [Path(value)]


def _branches(inputs) -> dict[str, dict[str, list[Path]]]:
    out: dict[str, dict[str, list[Path]]] = {}
    for key in inputs.keys():
        if "__" in key:
            branch, name = key.split("__", 1)
            out.setdefault(branch, {})[name] = _as_list(inputs.get(key))
    return out


@stage
def run(inputs, outputs, params, log):
    metrics = _as_list(inputs.get("metrics"))
    switching = _as_list(inputs.get("switching_metrics"))
    path = write_report(
        outputs["html"],
        metrics,
        _as_list(inputs.get("fits")),
        _as_list(inputs.get("counts")),
        _as_list(inputs.get("truths")),
        title=str(params.get("title") or DEFAULT_TITLE),
        benchmarks_dir=params.get("benchmarks_dir", "benchmarks"),
        config=params.get("config"),
        switching_metrics=switching,
        switching_fits=_as_list(inputs.get("switching_fits")),
        branches=_branches(inputs),
    )
    log_.info(
        "wrote %s (%d metrics file(s), %d switching metrics file(s), %.0f kB)",
        path,
        len(metrics),
        len(switching),
        path.stat().st_size / 1024,
    )


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
