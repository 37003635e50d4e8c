"""Gather every metrics file of a study into one table (TSV): dataset, model, metric, value, bar, pass/miss.

The table is what ``snakemake --report`` shows next to the study page; the numbers are the files' own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainpipe.data import read
from brainpipe.data.atomic import METRICS_TABLE_HEADER, atomic_output
from brainpipe.stages._runner import cli, stage

INPUTS = {"metrics": "optional: metrics .nc files"}
OUTPUTS = {"table": "TSV with one row per metric"}
STATUS = {1: "pass", 0: "miss", -1: "no bar"}


def metrics_frame(paths) -> pd.DataFrame:
    rows = []
    for p in paths:
        ds = read(p, "metrics")
        n = ds.sizes["metric"]
        bar = ds["bar"].values if "bar" in ds else np.full(n, np.nan)
        op = ds["bar_op"].values.astype(str) if "bar_op" in ds else np.full(n, "")
        passed = ds["passed"].values if "passed" in ds else np.full(n, -1)
        for i, name in enumerate(ds["metric"].values.astype(str)):
            rows.append(
                {
                    "dataset": ds.attrs["dataset"],
                    "model": ds.attrs["model"],
                    "metric": name,
                    "value": float(ds["value"].values[i]),
                    "bar_op": op[i],
                    "bar": float(bar[i]),
                    "status": STATUS[int(passed[i])],
                    "file": str(p),
                }
            )
    cols = METRICS_TABLE_HEADER.split("\t")
    return pd.DataFrame(rows, columns=cols)


@stage
def run(inputs, outputs, params, log):
    metrics = inputs.get("metrics") or []
    frame = metrics_frame(metrics if isinstance(metrics, list) else [metrics])
    with atomic_output(outputs["table"], stage="metrics_table") as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.10g")


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
