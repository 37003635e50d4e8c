"""Simulate a dataset with planted ground truth: writes the data file and the truth file beside it.

params: ``generator`` (a name from ``brainpipe.simulate.GENERATORS``), ``seed`` (int), ``params`` (the
generator's parameters; unknown names are an error).
"""

from __future__ import annotations

import logging

from brainpipe.data import make_provenance, write
from brainpipe.errors import ConfigError
from brainpipe.simulate import get_generator
from brainpipe.stages._runner import cli, stage

INPUTS: dict[str, str] = {}
OUTPUTS = {
    "data": "simulated data (.nc; contract depends on the generator)",
    "truth": "planted truth (model_fit .nc)",
}
log_ = logging.getLogger("brainpipe.stages.simulate")


@stage
def run(inputs, outputs, params, log):
    if "generator" not in params or "seed" not in params:
        raise ConfigError("stage simulate: params need 'generator' and 'seed'")
    gen = get_generator(params["generator"])
    sim = gen(params.get("params", {}), int(params["seed"]))
    prov = make_provenance("simulate", params, seed=int(params["seed"]), device="cpu")
    log_.info("simulated %s: %s", gen.name, dict(sim.data.sizes))
    write(sim.data, outputs["data"], sim.data_kind, prov)
    write(sim.truth, outputs["truth"], sim.truth_kind, prov)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
