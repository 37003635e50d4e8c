"""Build the study report: one self-contained HTML page from the metrics, fits, truths and counts of a study.

Metrics, fits and counts are parallel lists (one entry per dataset and model); truths exist for simulated
datasets only and are matched by dataset folder (``results/spikes/{dataset}/truth.nc``).

params: ``title`` (page title), ``benchmarks_dir`` (folder of Snakemake benchmark TSVs, default ``benchmarks``;
``<rule>/<dataset>.tsv``), ``config`` (optional study config, shown as YAML).
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
    "counts": "optional: spike_counts .nc files, parallel to metrics",
}
OUTPUTS = {"html": "self-contained HTML report (e.g. results/report/index.html)"}
log_ = logging.getLogger("brainpipe.stages.report")


def _as_list(value) -> list[Path]:
    if value is None:
        return []
    return [Path(v) for v in value] if isinstance(value, (list, tuple)) else [Path(value)]


@stage
def run(inputs, outputs, params, log):
    metrics = _as_list(inputs["metrics"])
    path = write_report(
        outputs["html"],
        metrics,
        _as_list(inputs["fits"]),
        _as_list(inputs["counts"]),
        _as_list(inputs.get("truths")),
        title=str(params.get("title") or DEFAULT_TITLE),
        benchmarks_dir=params.get("benchmarks_dir", "benchmarks"),
        config=params.get("config"),
    )
    log_.info("wrote %s (%d metrics file(s), %.0f kB)", path, len(metrics), path.stat().st_size / 1024)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
