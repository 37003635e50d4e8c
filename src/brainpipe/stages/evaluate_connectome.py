"""Metrics of a dynamic-connectome fit: rank diagnostics, and against the planted communities when the animals
were simulated (factor match score, rank choice, community Jaccard, epoch peaks), with bars; when the animals'
recordings carry behaviour, every time course related to every behaviour variable per animal, against circular
shifts and the baselines (:mod:`brainpipe.evaluate.connectome_behaviour`).

params: ``bars`` (metric -> bar), ``study`` (its name).
"""

from __future__ import annotations

import logging
from pathlib import Path

from brainpipe.data import make_provenance, read, write
from brainpipe.evaluate.connectome import (
    animal_behaviour,
    connectome_metrics,
    connectome_metrics_dataset,
    merge_truths,
)
from brainpipe.stages._runner import cli, stage

INPUTS = {
    "fit": "model_fit .nc (connectome_ntf)",
    "tensor": "affinity_tensor .zarr",
    "truths": "optional: planted truth of each animal (simulated studies)",
    "processed": "optional: each animal's calcium_traces .nc (its behaviour, if any)",
}
OUTPUTS = {"metrics": "metrics .nc"}
log_ = logging.getLogger("brainpipe.stages.evaluate_connectome")


@stage
def run(inputs, outputs, params, log):
    fit = read(inputs["fit"], "model_fit")
    tensor = read(inputs["tensor"], "affinity_tensor")
    truth_paths = inputs.get("truths") or []
    truth_paths = truth_paths if isinstance(truth_paths, list) else [truth_paths]
    truth = merge_truths([read(p, "model_fit") for p in truth_paths]) if truth_paths else None
    processed = inputs.get("processed") or []
    processed = processed if isinstance(processed, list) else [processed]
    behaviour = None
    if processed:
        by_name = {Path(p).parent.name: p for p in processed}
        names = [str(a) for a in tensor["animal"].values]
        if set(names) <= set(by_name):  # else the tensor's animals are not named by their folders
            behaviour = [animal_behaviour(read(by_name[a], "calcium_traces")) for a in names]
        else:
            log_.warning("animals %s not among the recordings %s: no behaviour read", names, sorted(by_name))
    values = connectome_metrics(fit, tensor, truth, behaviour=behaviour)
    log_.info("metrics: %s", {k: round(v, 4) for k, v in values.items()})
    m = connectome_metrics_dataset(values, params.get("bars", {}), str(params.get("study", "connectome")))
    ins = [inputs["fit"], inputs["tensor"], *truth_paths, *(processed if behaviour else [])]
    write(m, outputs["metrics"], "metrics", make_provenance("evaluate_connectome", params, ins))


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
