"""Gather every metrics file of a study into one table (TSV): dataset, model, metric, value, bar, pass/miss.

The table is what ``snakemake --report`` shows next to the study page; the numbers are the files' own
(:func:`brainpipe.evaluate.metrics.metrics_table`).
"""

from __future__ import annotations

from brainpipe.data.atomic import atomic_output
from brainpipe.evaluate.metrics import metrics_table
from brainpipe.stages._runner import cli, stage

INPUTS = {"metrics": "optional: metrics .nc files"}
OUTPUTS = {"table": "TSV with one row per metric"}


@stage
def run(inputs, outputs, params, log):
    metrics = inputs.get("metrics") or []
    frame = metrics_table(metrics if isinstance(metrics, list) else [metrics])
    with atomic_output(outputs["table"], stage="metrics_table") as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.10g")


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
