"""Score a Neuroformer (:func:`brainpipe.evaluate.neuroformer.score_neuroformer`): behaviour decoding (pretrained
vs scratch vs ridge/logistic on binned counts, per label fraction), attention connectivity (vs planted
connections, lagged cross-correlation and a coupled Poisson GLM) and spike generation (per-window F1 vs a
Poisson-GLM generator), on the test windows, once.

params: the dataset's resolved neuroformer config (see :mod:`brainpipe.stages._neuroformer`), of which this stage
reads ``evaluate`` (``n_samples``, ``max_windows``, ``connectivity_windows``, ``temperature``, ``connectivity_by``,
``glm_alpha``, ``glm_history_tau_s``, ``top_k``, ``top_p``), ``pretrain.device``, ``bars``, ``seed``, ``dataset``. Outputs: ``metrics``
and ``connectivity`` (a ``model_fit`` with the three neuron x neuron matrices ``attention``, ``xcorr``, ``glm`` on
(unit_post, unit_pre)).
"""

from __future__ import annotations

import logging

from brainpipe.data import make_provenance, read, write
from brainpipe.evaluate.neuroformer import neuroformer_metrics_dataset, score_neuroformer
from brainpipe.models.neuroformer import Neuroformer
from brainpipe.stages._runner import cli, stage
from brainpipe.training import resolve_device

INPUTS = {
    "counts": "spike_counts .nc",
    "pretrained": "model_fit .nc (pretrained neuroformer)",
    "finetune": "optional: model_fit .nc (fine-tuning runs' predictions); no decoding metrics without it",
    "truth": "optional: planted truth (model_fit .nc with weights/connected on unit_post, unit_pre)",
}
OUTPUTS = {"metrics": "metrics .nc", "connectivity": "model_fit .nc (attention, xcorr and GLM connectivity)"}
log_ = logging.getLogger("brainpipe.stages.neuroformer_evaluate")
EVALUATE_KEYS = (
    "n_samples",
    "max_windows",
    "connectivity_windows",
    "connectivity_by",
    "temperature",
    "glm_alpha",
    "glm_history_tau_s",
    "top_k",
    "top_p",
    "connectivity_readouts",
)


@stage
def run(inputs, outputs, params, log):
    counts = read(inputs["counts"], "spike_counts")
    pre = read(inputs["pretrained"], "model_fit")
    ft = read(inputs["finetune"], "model_fit") if inputs.get("finetune") else None
    truth = read(inputs["truth"], "model_fit") if inputs.get("truth") else None
    seed = int(params.get("seed", 0))
    model = Neuroformer.from_dataset(pre, counts, source=str(inputs["pretrained"]))
    dev = resolve_device(str(params.get("pretrain", {}).get("device", "auto")))
    model.net_.to(dev)
    ev = {k: v for k, v in dict(params.get("evaluate", {})).items() if k in EVALUATE_KEYS}
    values, conn = score_neuroformer(counts, model, ft, truth, seed=seed, source=str(inputs["counts"]), **ev)
    for k, v in values.items():
        log_.info("%s = %.4f", k, v)
    dataset = str(params.get("dataset") or inputs["counts"].parent.name)
    m = neuroformer_metrics_dataset(values, params.get("bars", {}), dataset)
    m.attrs.update({f"tokens_{k}": int(v) for k, v in model.tokenizer_.stats_.items()})
    conn.attrs["dataset"] = dataset
    used = [inputs[k] for k in ("counts", "pretrained", "finetune", "truth") if inputs.get(k)]
    prov = make_provenance("neuroformer_evaluate", params, used, seed=seed, device=str(dev))
    write(conn, outputs["connectivity"], "model_fit", prov)
    write(m, outputs["metrics"], "metrics", prov)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
