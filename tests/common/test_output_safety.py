"""Output safety: a stage never replaces or removes what it did not write, whichever way it is called.

Entry points: the Python API (``stage.run``, ``brainpipe.data.write``, model ``save``), the command line
(``python -m brainpipe.stages.X``) and the Snakemake shim (``from_snakemake``). For each, an output path that
holds a user's folder or file is refused with one line before anything runs, and the user's data is untouched;
a stage's own earlier output is replaced; a failing run removes only what it wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from brainpipe.data import read, write
from brainpipe.data.atomic import ANY_STAGE, MARKER, atomic_output, check_replaceable, owner
from brainpipe.errors import BrainpipeError, InputError, OutputError
from brainpipe.stages import _runner
from brainpipe.stages import bin_spikes as bin_stage
from brainpipe.stages import metrics_table as table_stage
from brainpipe.stages import simulate as sim_stage

SIM = {"generator": "poisson_glm_network", "seed": 1, "params": {"n_neurons": 3, "duration_s": 2.0}}


def _user_folder(root: Path) -> Path:
    d = root / "my_results"
    (d / "sub").mkdir(parents=True)
    (d / "notes.txt").write_text("three months of annotations\n")
    (d / "sub" / "data.bin").write_bytes(b"\x00\x01" * 10)
    return d


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def spikes_file(tmp_path) -> Path:
    data, truth = tmp_path / "in" / "spikes.nc", tmp_path / "in" / "truth.nc"
    sim_stage.run({}, {"data": data, "truth": truth}, SIM)
    return data


# -- owner: what counts as a brainpipe output -------------------------------------------------------------------
def test_owner_recognises_brainpipe_outputs_only(tmp_path, spikes_file, make_valid, provenance):
    assert owner(spikes_file) == "simulate"
    assert owner(tmp_path / "absent.nc") is None
    (tmp_path / "user.nc").write_bytes(b"CDF\x01" + b"\x00" * 100)  # a netCDF3 file of the user's
    assert owner(tmp_path / "user.nc") is None
    (tmp_path / "user.tsv").write_text("a\tb\n1\t2\n")
    assert owner(tmp_path / "user.tsv") is None
    (tmp_path / "user.html").write_text("<html><head><title>mine</title></head></html>")
    assert owner(tmp_path / "user.html") is None
    assert owner(_user_folder(tmp_path)) is None
    # an HDF5 file without brainpipe's contract attribute is not ours
    import h5py

    with h5py.File(tmp_path / "plain.h5", "w") as fh:
        fh.attrs["title"] = "not brainpipe"
        fh["x"] = np.arange(3)
    assert owner(tmp_path / "plain.h5") is None
    # a contract file, and a zarr store
    write(make_valid("metrics"), tmp_path / "m.nc", "metrics")
    assert owner(tmp_path / "m.nc") == "unit-test"
    write(
        make_valid("affinity_tensor"),
        tmp_path / "t.zarr",
        "affinity_tensor",
        provenance("build_connectome_tensor"),
    )
    assert owner(tmp_path / "t.zarr") == "build_connectome_tensor"
    # a truncated file is unreadable, hence not recognised
    raw = spikes_file.read_bytes()
    (tmp_path / "cut.nc").write_bytes(raw[: len(raw) // 3])
    assert owner(tmp_path / "cut.nc") is None


def test_owner_of_torch_files_reads_no_pickle(tmp_path):
    torch = pytest.importorskip("torch")
    from brainpipe.training.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "c.pt", {"w": torch.zeros(2)})
    assert owner(tmp_path / "c.pt") == ANY_STAGE
    torch.save({"w": torch.zeros(2)}, tmp_path / "user.pt")  # someone else's torch file
    assert owner(tmp_path / "user.pt") is None


# -- the Python API ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("inputs_ok", [False, True], ids=["missing-input", "valid-input"])
def test_stage_refuses_user_folder_and_file(tmp_path, spikes_file, inputs_ok):
    folder = _user_folder(tmp_path)
    before = _tree(folder)
    user_file = tmp_path / "counts.nc"
    user_file.write_bytes(b"my own bytes")
    spikes = spikes_file if inputs_ok else tmp_path / "missing.nc"
    for out in (folder, user_file):
        with pytest.raises((OutputError, InputError)) as err:
            bin_stage.run({"spikes": spikes}, {"counts": out}, {"bin_width_s": 0.01})
        assert str(out) in str(err.value) or "missing.nc" in str(err.value)
        if inputs_ok:
            assert isinstance(err.value, OutputError) and "brainpipe did not write" in str(err.value)
    assert _tree(folder) == before
    assert user_file.read_bytes() == b"my own bytes"


def test_stage_replaces_its_own_output_but_not_another_stages(tmp_path, spikes_file):
    out = tmp_path / "counts.nc"
    bin_stage.run({"spikes": spikes_file}, {"counts": out}, {"bin_width_s": 0.01})
    assert read(out, "spike_counts").sizes["time"] == 200
    bin_stage.run({"spikes": spikes_file}, {"counts": out}, {"bin_width_s": 0.02})  # a rerun: its own file
    assert read(out, "spike_counts").sizes["time"] == 100
    with pytest.raises(OutputError, match="written by stage simulate, not bin_spikes"):
        bin_stage.run({"spikes": spikes_file}, {"counts": spikes_file}, {"bin_width_s": 0.01})
    assert owner(spikes_file) == "simulate"


def test_failed_run_removes_only_what_it_wrote(tmp_path, spikes_file, monkeypatch):
    """A stage's own earlier output stays when the rerun fails before replacing it; a new one is removed."""
    out = tmp_path / "counts.nc"
    bin_stage.run({"spikes": spikes_file}, {"counts": out}, {"bin_width_s": 0.01})
    old = out.read_bytes()
    with pytest.raises(
        BrainpipeError
    ):  # fails before writing: the earlier output is not this run's, so it stays
        bin_stage.run({"spikes": spikes_file}, {"counts": out}, {"bin_width_s": -1.0})
    assert out.read_bytes() == old

    real_write = sim_stage.write
    calls = []

    def flaky_write(ds, path, kind, prov):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(ds, path, kind, prov)

    monkeypatch.setattr(sim_stage, "write", flaky_write)
    data, truth = tmp_path / "d.nc", tmp_path / "t.nc"
    with pytest.raises(OSError):
        sim_stage.run({}, {"data": data, "truth": truth}, SIM)
    assert not data.exists() and not truth.exists()  # the new data file of the failed run is gone
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_write_refuses_user_file_and_folder(tmp_path, make_valid):
    user = tmp_path / "x.nc"
    user.write_text("not mine to replace")
    with pytest.raises(OutputError, match="brainpipe did not write"):
        write(make_valid("metrics"), user, "metrics")
    assert user.read_text() == "not mine to replace"
    folder = _user_folder(tmp_path)
    before = _tree(folder)
    with pytest.raises(OutputError):
        write(make_valid("metrics"), folder, "metrics")
    with pytest.raises(OutputError):
        write(make_valid("affinity_tensor"), folder, "affinity_tensor")
    assert _tree(folder) == before
    # a brainpipe zarr store is replaced by a new one (folder over folder)
    z = tmp_path / "t.zarr"
    write(make_valid("affinity_tensor"), z, "affinity_tensor")
    write(make_valid("affinity_tensor"), z, "affinity_tensor")
    assert owner(z) == "unit-test"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_model_save_refuses_user_file(tmp_path):
    pytest.importorskip("torch")
    from brainpipe.models.brainmae import BrainMAE

    rng = np.random.default_rng(0)
    model = BrainMAE(d_model=8, n_heads=2, n_layers=1, max_epochs=1, batch_size=4, seed=0, device="cpu")
    model.fit(rng.standard_normal((8, 10, 4)).astype(np.float32))
    user = tmp_path / "weights.pt"
    user.write_bytes(b"someone's weights")
    with pytest.raises(OutputError):
        model.save(user)
    assert user.read_bytes() == b"someone's weights"
    model.save(tmp_path / "ours.pt")
    model.save(tmp_path / "ours.pt")  # its own file: replaced


def test_folder_outputs_carry_a_marker_and_are_replaced_whole(tmp_path):
    target = tmp_path / "derivs"
    with atomic_output(target, stage="simulate_fmri", folder=True) as tmp:
        (tmp / "a.txt").write_text("1")
    assert json.loads((target / MARKER).read_text())["stage"] == "simulate_fmri"
    with atomic_output(target, stage="simulate_fmri", folder=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == [
        MARKER,
        "b.txt",
    ]  # nothing of the old tree is mixed in
    with pytest.raises(OutputError, match="written by stage simulate_fmri, not ingest_fmri"):
        check_replaceable(target, "ingest_fmri")
    with pytest.raises(RuntimeError), atomic_output(target, stage="simulate_fmri", folder=True) as tmp:
        (tmp / "c.txt").write_text("3")
        raise RuntimeError("crash mid-write")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "b.txt"]  # a crash leaves the old one whole
    assert [p.name for p in tmp_path.iterdir()] == ["derivs"]


def test_metrics_table_and_report_recognised(tmp_path, make_valid, provenance):
    m = tmp_path / "m.nc"
    write(make_valid("metrics"), m, "metrics", provenance("evaluate_poisson_glm"))
    table = tmp_path / "metrics.tsv"
    table_stage.run({"metrics": [m]}, {"table": table}, {})
    assert owner(table) == "metrics_table"
    table_stage.run({"metrics": [m]}, {"table": table}, {})
    user = tmp_path / "user.tsv"
    user.write_text("mine\n")
    with pytest.raises(OutputError):
        table_stage.run({"metrics": [m]}, {"table": user}, {})
    assert user.read_text() == "mine\n"


# -- the command line and the Snakemake shim -------------------------------------------------------------------
def test_cli_refuses_and_keeps_user_data(tmp_path, spikes_file):
    folder = _user_folder(tmp_path)
    before = _tree(folder)
    user_file = tmp_path / "mine.nc"
    user_file.write_text("keep me")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for spikes in (tmp_path / "missing.nc", spikes_file):  # the reported case, then a valid input
        for out in (folder, user_file):
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "brainpipe.stages.bin_spikes",
                    "--spikes",
                    str(spikes),
                    "--counts-out",
                    str(out),
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            assert proc.returncode == 1
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("brainpipe: error: "), proc.stderr
    assert _tree(folder) == before
    assert user_file.read_text() == "keep me"


def test_snakemake_shim_refuses_and_keeps_user_data(tmp_path, spikes_file, capsys):
    folder = _user_folder(tmp_path)
    before = _tree(folder)

    class _Named(dict):
        def __getattr__(self, k):
            try:
                return self[k]
            except KeyError:
                raise AttributeError(k) from None

        def keys(self):
            return list(super().keys())

    smk = SimpleNamespace(
        input=_Named(spikes=str(spikes_file)),
        output=_Named(counts=str(folder)),
        params=_Named(config={"bin_width_s": 0.01}),
        log=[str(tmp_path / "bin.log")],
        threads=1,
        resources=SimpleNamespace(gpu=0),
    )
    with pytest.raises(SystemExit) as exc:
        _runner.from_snakemake(smk, "bin_spikes")
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "brainpipe did not write" in err[0] and str(folder) in err[0]
    assert _tree(folder) == before


# -- stale results: downstream files of an input that changed ---------------------------------------------------
def test_stale_results_are_flagged_through_the_chain(tmp_path, spikes_file):
    import time

    from brainpipe.data.stale import stale_files, stale_reasons
    from brainpipe.stages import fit_poisson_glm as fit_stage

    counts, fit = tmp_path / "counts.nc", tmp_path / "fit.nc"
    bin_stage.run({"spikes": spikes_file}, {"counts": counts}, {"bin_width_s": 0.01})
    fit_stage.run({"counts": counts}, {"fit": fit}, {"max_iter": 20})
    assert stale_reasons(fit) == [] and stale_reasons(counts) == []
    assert stale_reasons(tmp_path / "not-brainpipe.txt") == []
    time.sleep(0.05)
    # the upstream file is replaced (a rerun of the simulation with another seed), the downstream ones are not
    sim_stage.run({}, {"data": spikes_file, "truth": spikes_file.with_name("truth.nc")}, {**SIM, "seed": 2})
    assert stale_reasons(counts) == [f"input {spikes_file} changed after this file was written"]
    assert stale_reasons(fit) == [
        f"input {counts} is stale (input {spikes_file} changed after this file was written)"
    ]
    assert set(stale_files([counts, fit, spikes_file])) == {str(counts), str(fit)}
    spikes_file.unlink()
    assert stale_reasons(counts) == [f"input {spikes_file} is gone"]


def test_stale_inputs_found_from_another_folder(tmp_path, spikes_file, monkeypatch):
    """Provenance records input paths relative to where the workflow ran: checked from elsewhere, they still resolve."""
    from brainpipe.data.stale import stale_reasons

    monkeypatch.chdir(tmp_path)
    rel = spikes_file.relative_to(tmp_path)
    bin_stage.run({"spikes": rel}, {"counts": "out/counts.nc"}, {"bin_width_s": 0.01})
    monkeypatch.chdir(spikes_file.parent)  # somewhere else
    assert stale_reasons(tmp_path / "out" / "counts.nc") == []
