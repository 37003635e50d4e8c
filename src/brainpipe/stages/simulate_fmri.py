"""Simulate an fMRI cohort with planted truth and write it as files: an fMRIPrep-like derivatives tree (4D NIfTI,
labels atlas, confounds, sidecars, participants.tsv) and ROI tables, plus the truth (model_fit, role truth).

params: ``generator`` (``fmri_modular_cohort``), ``seed``, ``params`` (the generator's parameters).
"""

from __future__ import annotations

import logging

from brainpipe.data import make_provenance, write
from brainpipe.data.atomic import atomic_output
from brainpipe.errors import ConfigError
from brainpipe.simulate import get_generator
from brainpipe.simulate.fmri import write_derivatives
from brainpipe.stages._runner import cli, stage

INPUTS: dict[str, str] = {}
OUTPUTS = {
    "source": "folder: derivatives/fmriprep, atlas/, tables/",
    "truth": "planted truth (model_fit .nc)",
}
log_ = logging.getLogger("brainpipe.stages.simulate_fmri")


@stage
def run(inputs, outputs, params, log):
    if "generator" not in params or "seed" not in params:
        raise ConfigError("stage simulate_fmri: params need 'generator' and 'seed'")
    gen = get_generator(params["generator"])
    if gen.modality != "fmri":
        raise ConfigError(f"stage simulate_fmri: simulator {gen.name!r} is not an fMRI simulator")
    seed = int(params["seed"])
    sim = gen(params.get("params", {}), seed)
    with atomic_output(outputs["source"], stage="simulate_fmri", folder=True) as tmp:
        write_derivatives(sim, tmp, seed)  # written beside, then renamed: never a half-written tree
    log_.info("simulated %s: %s", gen.name, dict(sim.data.sizes))
    prov = make_provenance("simulate_fmri", params, seed=seed, device="cpu")
    write(sim.truth, outputs["truth"], "model_fit", prov)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
