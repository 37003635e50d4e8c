"""Masked non-negative CP (HALS, torch) of the affinity tensor over ranks x restarts; rank by replicate stability
(or held-out fibres, or speckled cross-validation); weighted Louvain communities on each pair factor.

params: :class:`brainpipe.models.connectome.DynamicConnectome` hyperparameters (``ranks``, ``restarts``,
``stability_threshold``, ``stability_error_tol``, ``stability_of``, ``rank_selection``, ``heldout_fraction``,
``heldout_tol``, ``heldout_block_windows``, ``cv_folds``, ``cv_se``, ``n_iter_max``, ``tol``, ``n_inner``,
``dtype``, ``device``, ``resolution``, ``min_support``, ``seed``, ``time_mode``).
The fit carries over how the tensor's animals were aligned (frame rates, neuron matching, shared neurons and pairs:
:data:`ALIGNMENT_ATTRS`, the ``animal_*`` variables), for the report.
"""

from __future__ import annotations

import inspect
import logging

from brainpipe.data import make_provenance, read, write
from brainpipe.errors import ConfigError
from brainpipe.models.connectome import DynamicConnectome
from brainpipe.stages._runner import cli, stage

INPUTS = {"tensor": "affinity_tensor .zarr"}
OUTPUTS = {"fit": "model_fit .nc (connectome_ntf, role fit)"}
CONFIG = "calcium.connectome.model"
log_ = logging.getLogger("brainpipe.stages.fit_connectome")
_ALLOWED = set(inspect.signature(DynamicConnectome.__init__).parameters) - {"self"}
#: the tensor attributes copied into the fit (written by build_connectome_tensor)
ALIGNMENT_ATTRS = (
    "frame_rate_hz",
    "frame_rate_handling",
    "rate_tolerance",
    "resample_method",
    "neuron_matching",
    "n_shared_neurons",
    "n_shared_pairs",
    "n_pairs_two_or_more",
)


@stage
def run(inputs, outputs, params, log):
    unknown = sorted(set(params) - _ALLOWED)
    if unknown:
        raise ConfigError(
            f"connectome: unknown parameter(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_ALLOWED))})"
        )
    tensor = read(inputs["tensor"], "affinity_tensor").load()
    model = DynamicConnectome(**params).fit(tensor)
    log_.info(
        "selected rank %d; stability %s", model.rank_, {r: round(s, 3) for r, s in model.stability_.items()}
    )
    prov = make_provenance(
        "fit_connectome", params, [inputs["tensor"]], seed=model.seed, device=str(model.device_)
    )
    out = model.to_dataset(tensor)
    out.attrs.update({k: tensor.attrs[k] for k in ALIGNMENT_ATTRS if k in tensor.attrs})
    for v in tensor.data_vars:
        if str(v).startswith("animal_") and tensor[v].dims == ("animal",):
            out[v] = tensor[v].copy()
    write(out, outputs["fit"], "model_fit", prov)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
