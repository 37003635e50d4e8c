"""Fixtures shared by every test folder: a seeded rng, minimal valid datasets for every contract
(:mod:`contract_data`), and one tiny simulation on disk for the whole session."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest
import xarray as xr

from brainpipe.data import make_provenance, stamp, write
from brainpipe.preprocess import bin_spikes
from brainpipe.simulate import simulate
from contract_data import BUILDERS, prov_record

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two worker processes on the 2 cores: one torch thread each, or the workers' thread pools
    # oversubscribe the cores (a 30 s training test took 85 s in one run)
    import torch

    torch.set_num_threads(1)

# A tiny network: 6 neurons, 60 s (6000 steps of 10 ms). Simulating it takes well under a second.
TINY_SIM = {"n_neurons": 6, "duration_s": 60.0}
TINY_SEED = 3

#: set by the stand-in below: the folder whose ``scontrol`` answers at once (tests/workflow/test_slurm.py takes it
#: off PATH while its real cluster runs)
SCONTROL_STUB_ENV = "BRAINPIPE_TEST_SCONTROL_STUB"


@pytest.fixture(scope="session", autouse=True)
def _scontrol_answers_at_once(tmp_path_factory):
    """Every ``snakemake`` start imports the SLURM executor plugin, which runs ``scontrol show config`` (for its
    MinJobAge); where SLURM is installed but no controller runs (this machine after the SLURM test, CI while its
    cluster is down) that waits 9 s for its timeout, in every workflow test's every snakemake call. A stand-in
    ``scontrol`` that fails at once goes first on PATH (the plugin then takes no MinJobAge, as where SLURM is
    absent; brainpipe falls back to its own node-list parser)."""
    stub = tmp_path_factory.mktemp("scontrol_stub")
    exe = stub / "scontrol"
    exe.write_text("#!/bin/sh\nexit 1\n")
    exe.chmod(0o755)
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{stub}{os.pathsep}{old}"
    os.environ[SCONTROL_STUB_ENV] = str(stub)
    yield
    os.environ["PATH"] = old
    os.environ.pop(SCONTROL_STUB_ENV, None)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture
def make_valid() -> Callable[..., xr.Dataset]:
    """``make_valid(kind, stamped=True)``: a fresh minimal valid dataset of contract ``kind``."""

    def make(kind: str, stamped: bool = True) -> xr.Dataset:
        ds = BUILDERS[kind]()
        return stamp(ds, kind, prov_record()) if stamped else ds

    return make


@pytest.fixture
def one_line() -> Callable[..., str]:
    """``one_line(excinfo)``: the error text of a ``pytest.raises`` result, checked to be a single line."""

    def check(err) -> str:
        text = str(err.value)
        assert "\n" not in text, f"not one line: {text!r}"
        return text

    return check


@pytest.fixture
def provenance() -> Callable[..., dict]:
    """``provenance(stage, params=..., inputs=..., seed=...)``: a provenance record."""
    return prov_record


# -- tiny simulation, shared by the whole session (never mutate these objects) -------------------------------
@pytest.fixture(scope="session")
def tiny_spec() -> dict:
    """How the tiny simulation is made: ``{"params": ..., "seed": ...}`` (a fresh copy each session)."""
    return {"params": dict(TINY_SIM), "seed": TINY_SEED}


@pytest.fixture(scope="session")
def tiny_sim(tiny_spec):
    return simulate("poisson_glm_network", tiny_spec["params"], seed=tiny_spec["seed"])


@pytest.fixture(scope="session")
def tiny_counts(tiny_sim) -> xr.Dataset:
    return bin_spikes(tiny_sim.data, 0.01, {"train": 0.6, "validation": 0.2, "test": 0.2}, 3)


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory, tiny_spec, tiny_sim, tiny_counts) -> dict:
    """The tiny simulation written to disk as contract files: spikes, truth, counts."""
    d = tmp_path_factory.mktemp("tiny")
    prov = make_provenance("conftest", {"sim": tiny_spec["params"]}, seed=tiny_spec["seed"])
    return {
        "spikes": write(tiny_sim.data, d / "spikes.nc", "spike_times", prov),
        "truth": write(tiny_sim.truth, d / "truth.nc", "model_fit", prov),
        "counts": write(tiny_counts, d / "counts.nc", "spike_counts", prov),
    }
