"""Stack the animals' dynamic pairwise affinities into a (pair, window, animal) tensor with a missing-pair mask.

params: ``affinity`` (``name``: softthresh_dcorr | pos_corr | coactivation; ``window_s``, ``stride_s``,
``smooth_frames``, ``null_z``), ``memory_mb`` (bound on the chunk in memory). Inputs: the processed calcium files
of the study's animals (in order). Output: an ``affinity_tensor`` zarr store, written window chunk by chunk.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from brainpipe.data import make_provenance, read
from brainpipe.data.affinity_tensor import write_tensor_zarr
from brainpipe.errors import InputError
from brainpipe.preprocess.affinity import AnimalTraces
from brainpipe.stages._runner import cli, stage

INPUTS = {"processed": "processed calcium_traces .nc of each animal"}
OUTPUTS = {"tensor": "affinity_tensor .zarr"}
log_ = logging.getLogger("brainpipe.stages.build_connectome_tensor")


@stage
def run(inputs, outputs, params, log):
    paths = inputs["processed"] if isinstance(inputs["processed"], list) else [inputs["processed"]]
    animals = []
    for p in paths:
        ds = read(p, "calcium_traces")
        if "dff" not in ds:
            raise InputError(f"{p}: has no 'dff'; run preprocess_calcium on it first")
        name = Path(p).parent.name
        animals.append(
            AnimalTraces(
                name,
                np.asarray(ds["dff"].values, dtype=np.float32),
                [str(c) for c in ds["cell"].values],
                float(ds.attrs["frame_rate_hz"]),
            )
        )
    aff = dict(params.get("affinity", {}))
    name = aff.pop("name", "softthresh_dcorr")
    window_s, stride_s = float(aff.pop("window_s", 5.0)), float(aff.pop("stride_s", 2.5))
    prov = make_provenance("build_connectome_tensor", params, paths)
    write_tensor_zarr(
        outputs["tensor"], animals, prov, name, aff, window_s, stride_s, float(params.get("memory_mb", 256))
    )
    log_.info("tensor of %d animals written to %s", len(animals), outputs["tensor"])


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
