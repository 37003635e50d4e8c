"""Gather every metrics file of a study into one table (TSV): dataset, model, metric, value, bar, pass/miss.

The table is what ``snakemake --report`` shows next to the study page; the numbers are the files' own.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from brainpipe.data import read
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
            rows.append({
                "dataset": ds.attrs["dataset"], "model": ds.attrs["model"], "metric": name,
                "value": float(ds["value"].values[i]), "bar_op": op[i], "bar": float(bar[i]),
                "status": STATUS[int(passed[i])], "file": str(p),
            })
    cols = ["dataset", "model", "metric", "value", "bar_op", "bar", "status", "file"]
    return pd.DataFrame(rows, columns=cols)


@stage
def run(inputs, outputs, params, log):
    metrics = inputs.get("metrics") or []
    frame = metrics_frame(metrics if isinstance(metrics, list) else [metrics])
    out = Path(outputs["table"])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.10g")
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
