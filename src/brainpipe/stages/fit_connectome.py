"""Masked non-negative CP (HALS, torch) of the affinity tensor over ranks x restarts; rank by replicate stability;
weighted Louvain communities on each pair factor.

params: :class:`brainpipe.models.connectome.DynamicConnectome` hyperparameters (``ranks``, ``restarts``,
``stability_threshold``, ``n_iter_max``, ``tol``, ``n_inner``, ``dtype``, ``device``, ``resolution``, ``seed``).
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
    write(model.to_dataset(tensor), outputs["fit"], "model_fit", prov)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
