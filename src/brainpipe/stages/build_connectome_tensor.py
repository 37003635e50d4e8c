"""Stack the animals' dynamic pairwise affinities into a (pair, window, animal) tensor with a missing-pair mask.

params: ``affinity`` (``name``: softthresh_dcorr | pos_corr | coactivation; ``window_s``, ``stride_s``,
``smooth_frames``, ``null_z``), ``memory_mb`` (bound on the chunk in memory), ``study`` (its name, for messages),
``target_rate_hz`` (the common frame rate; null: the animals' own, which must agree within ``rate_tolerance``),
``rate_tolerance`` (relative), ``match_by`` (auto | label | index). Inputs: the processed calcium files of the
study's animals (in order). Output: an ``affinity_tensor`` zarr store, written window chunk by chunk, with how the
animals were aligned (:func:`brainpipe.preprocess.affinity.align_animals`: original and common frame rates, neurons
matched by label or index, neurons and pairs shared).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from brainpipe.data import make_provenance, read
from brainpipe.data.affinity_tensor import write_tensor_zarr
from brainpipe.errors import InputError
from brainpipe.preprocess.affinity import AnimalTraces, align_animals, animal_labels
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
                animal_labels(ds),
            )
        )
    study = str(params.get("study") or Path(outputs["tensor"]).parent.parent.name)
    animals, alignment = align_animals(
        animals,
        params.get("target_rate_hz"),
        float(params.get("rate_tolerance", 1e-3)),
        str(params.get("match_by", "auto")),
        study,
    )
    log_.info(
        "%s; neurons matched by %s: %s; %d neuron(s) and %d pair(s) in every animal, %d pair(s) in two or more",
        alignment.handling,
        alignment.match_by,
        ", ".join(f"{a.name} {n}" for a, n in zip(animals, alignment.n_neurons, strict=True)),
        alignment.n_shared_neurons,
        alignment.n_shared_pairs,
        alignment.n_pairs_two_or_more,
    )
    aff = dict(params.get("affinity", {}))
    name = aff.pop("name", "softthresh_dcorr")
    window_s, stride_s = float(aff.pop("window_s", 5.0)), float(aff.pop("stride_s", 2.5))
    prov = make_provenance("build_connectome_tensor", params, paths)
    write_tensor_zarr(
        outputs["tensor"],
        animals,
        prov,
        name,
        aff,
        window_s,
        stride_s,
        float(params.get("memory_mb", 256)),
        alignment,
    )
    log_.info("tensor of %d animals written to %s", len(animals), outputs["tensor"])


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
