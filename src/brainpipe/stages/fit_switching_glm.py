"""Fit a switching Poisson GLM (HMM-GLM; no prior, Gaussian or one-hot prior) on the train split of binned counts.

params: the :class:`brainpipe.models.SwitchingGLM` hyperparameters (``n_states``, ``prior``, ``link``,
``history_bins``, ``n_iter``, ...; see config/README.md), plus ``seed`` and ``device`` ("auto", "cpu", "cuda"),
optionally ``select`` (hyperparameter name -> candidate values: each combination is fitted on the train split and
the best on the validation split kept, :func:`brainpipe.models.switching_glm.select.fit_select`; the scores are
stored as ``selection_*`` variables), and optionally ``checkpoint``: a file the fit checkpoints to (every ``BRAINPIPE_CHECKPOINT_EVERY_S`` seconds,
default 60, between phases and on SIGTERM); a rerun with the same params and input resumes from it, and it is
removed once the output is written.
The output holds the fitted parameters, the EM objective per iteration, and the posterior state probabilities
and Viterbi path for every bin of the input (train, validation and test).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from brainpipe.data import make_provenance, read, write
from brainpipe.errors import ConfigError
from brainpipe.models.switching_glm import SwitchingGLM
from brainpipe.models.switching_glm.select import fit_select
from brainpipe.stages._runner import cli, stage
from brainpipe.training import checkpoint_every_s, stage_fingerprint
from brainpipe.training.device import resolve_device

INPUTS = {"counts": "spike_counts .nc"}
OUTPUTS = {"fit": "model_fit .nc (switching GLM, role fit)"}
CONFIG = "spikes.switching_glm.model"
log_ = logging.getLogger("brainpipe.stages.fit_switching_glm")
_ALLOWED = set(inspect.signature(SwitchingGLM.__init__).parameters) - {"self"}


def build_model(params: dict) -> SwitchingGLM:
    unknown = sorted(set(params) - _ALLOWED)
    if unknown:
        raise ConfigError(
            f"switching GLM: unknown parameter(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_ALLOWED))})"
        )
    kw = dict(params)
    for k in ("onehot_prior_mean",):
        if k in kw:
            kw[k] = tuple(kw[k])
    return SwitchingGLM(**kw)


@stage
def run(inputs, outputs, params, log):
    params = dict(params)
    ckpt = params.pop("checkpoint", None)
    grid = params.pop("select", None) or {}
    counts = read(inputs["counts"], "spike_counts")
    device = resolve_device(build_model(params).device)
    log_.info("fitting %s on %s (grid %s)", {k: v for k, v in params.items()}, device, grid)
    fingerprint = stage_fingerprint("fit_switching_glm", params, [inputs["counts"]]) if ckpt else None
    model, table = fit_select(
        params,
        grid,
        counts,
        build_model,
        {"checkpoint": ckpt, "fingerprint": fingerprint, "checkpoint_every_s": checkpoint_every_s()},
    )
    log_.info(
        "EM: %d iterations, objective %.3f -> %.3f", model.n_iter_, model.objective_[0], model.objective_[-1]
    )
    ds = model.to_dataset(counts)
    if table.sizes:
        ds = ds.merge(table)
        ds.attrs.update({k: table.attrs[k] for k in ("selected", "selected_params")})
    prov = make_provenance(
        "fit_switching_glm",
        dict(params, select=grid),
        [inputs["counts"]],
        seed=model.seed,
        device=str(device),
    )
    write(ds, outputs["fit"], "model_fit", prov)
    if ckpt:
        Path(ckpt).unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
