"""Build the study report: one self-contained HTML page from every branch's results.

Inputs are named ``<branch>__<key>`` and go to that branch's report module (``brainpipe.report.<branch>.sections``)
as ``files[key]`` (see :class:`brainpipe.report.BranchSection`); the workflow's report rule and ``brainpipe report``
both name them with :func:`brainpipe.layout.report_inputs`. Branches: ``spikes`` (``metrics``/``fits``: Poisson
GLMs, parallel; ``switching_metrics``/``switching_fits``: switching GLMs, parallel; ``counts``; ``truths``),
``fmri``, ``calcium``, ``neuroformer``.

params: ``title`` (page title), ``benchmarks_dir`` (folder of Snakemake benchmark TSVs, default ``benchmarks``;
``<rule>/<dataset>.tsv`` or ``<rule>/<dataset>/<variant>.tsv``), ``study`` (optional: the whole study config, shown
as YAML; the workflow passes it).
"""

from __future__ import annotations

import logging

from brainpipe import layout
from brainpipe.report import DEFAULT_TITLE, branch_files, write_report
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


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
