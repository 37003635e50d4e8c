"""Stages: outputs pass their contracts and carry provenance; failures leave nothing; the CLI speaks one line."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import brainpipe
from brainpipe.config import merged, section_defaults
from brainpipe.data import provenance_of, read, sha256_file
from brainpipe.errors import ConfigError, ContractError, InputError
from brainpipe.stages import STAGES
from brainpipe.stages import bin_spikes as bin_stage
from brainpipe.stages import evaluate_poisson_glm as eval_stage
from brainpipe.stages import fit_poisson_glm as fit_stage
from brainpipe.stages import ingest_spikes as ingest_stage
from brainpipe.stages import simulate as sim_stage
from brainpipe.stages._runner import cli

CLI_STAGES = list(STAGES)  # every stage is a command (report's own page checks are in test_report.py)


def _inputs_ok(rec, paths):
    """The provenance 'inputs' list names ``paths`` with their current sha256."""
    assert [i["path"] for i in rec["inputs"]] == [str(p) for p in paths]
    for inp, p in zip(rec["inputs"], paths, strict=True):
        assert inp["sha256"] == sha256_file(p)


def _log_lines(log, stage):
    text = log.read_text()
    assert f"stage {stage} (brainpipe {brainpipe.__version__}) params=" in text
    return text


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_spec):
    """simulate -> bin_spikes -> fit_poisson_glm -> evaluate_poisson_glm on the tiny network, once per module."""
    d = tmp_path_factory.mktemp("chain")
    p = {
        "simulate": {"generator": "poisson_glm_network", "seed": 5, "params": tiny_spec["params"]},
        "bin_spikes": {
            "bin_width_s": 0.02,
            "split": {"fractions": {"train": 0.6, "validation": 0.2, "test": 0.2}, "n_blocks": 2},
        },
        "fit_poisson_glm": {"history_tau_s": 0.02, "alpha": 1e-3, "use_behaviour": True, "max_iter": 200},
        "evaluate_poisson_glm": {
            "bars": {"coupling_corr": 0.0, "history_weight_mae": 1e-9},
            "dataset": "tiny",
        },
    }
    f = {k: d / f"{k}.nc" for k in ("spikes", "truth", "counts", "fit", "metrics")}
    logs = {k: d / "logs" / f"{k}.log" for k in p}
    sim_stage.run({}, {"data": f["spikes"], "truth": f["truth"]}, p["simulate"], logs["simulate"])
    bin_stage.run({"spikes": f["spikes"]}, {"counts": f["counts"]}, p["bin_spikes"], logs["bin_spikes"])
    fit_stage.run({"counts": f["counts"]}, {"fit": f["fit"]}, p["fit_poisson_glm"], logs["fit_poisson_glm"])
    eval_stage.run(
        {"fit": f["fit"], "counts": f["counts"], "truth": f["truth"]},
        {"metrics": f["metrics"]},
        p["evaluate_poisson_glm"],
        logs["evaluate_poisson_glm"],
    )
    return {"dir": d, "files": f, "params": p, "logs": logs}


# -- each stage's output -----------------------------------------------------------------------------------------
def test_simulate_stage(chain, tiny_spec):
    f, p = chain["files"], chain["params"]["simulate"]
    data, truth = read(f["spikes"], "spike_times"), read(f["truth"], "model_fit")
    assert data.sizes["unit"] == tiny_spec["params"]["n_neurons"] and truth.attrs["role"] == "truth"
    for ds in (data, truth):
        rec = provenance_of(ds)
        assert rec["stage"] == "simulate" and rec["seed"] == 5 and rec["params"] == p
        assert rec["inputs"] == [] and rec["device"] == "cpu" and rec["version"] == brainpipe.__version__
    # the stage writes exactly what the simulator makes with that seed
    from brainpipe.simulate import simulate

    sim = simulate("poisson_glm_network", tiny_spec["params"], seed=5)
    xr.testing.assert_identical(data.drop_attrs(), sim.data.drop_attrs())
    xr.testing.assert_identical(truth.drop_attrs(), sim.truth.drop_attrs())
    text = _log_lines(chain["logs"]["simulate"], "simulate")
    assert "simulated poisson_glm_network" in text and "stage simulate done in" in text


def test_bin_spikes_stage(chain):
    f, p = chain["files"], chain["params"]["bin_spikes"]
    counts = read(f["counts"], "spike_counts")
    spikes = read(f["spikes"], "spike_times")
    assert counts.attrs["bin_width_s"] == 0.02 and counts.sizes["time"] == 3000
    assert int(counts["counts"].sum()) == spikes.sizes["spike"]
    assert counts.attrs["split_n_blocks"] == 2
    assert np.count_nonzero(np.diff(counts["split"].values)) == 5  # 2 blocks x (train, val, test) = 6 runs
    rec = provenance_of(counts)
    # the parameters as run: the ones given over the schema's defaults of spikes.bin
    assert rec["stage"] == "bin_spikes" and rec["params"] == merged(section_defaults("spikes.bin"), p)
    assert rec["seed"] is None
    _inputs_ok(rec, [f["spikes"]])
    assert "stage bin_spikes done in" in _log_lines(chain["logs"]["bin_spikes"], "bin_spikes")


def test_fit_stage(chain):
    f, p = chain["files"], chain["params"]["fit_poisson_glm"]
    fit = read(f["fit"], "model_fit")
    assert fit.attrs["role"] == "fit" and fit.attrs["model"] == "poisson_glm"
    assert fit.attrs["alpha"] == 1e-3 and fit.attrs["bin_width_s"] == 0.02 and fit.attrs["max_iter"] == 200
    assert np.isfinite(fit.attrs["train_ll_per_spike"]) and np.isfinite(fit.attrs["validation_ll_per_spike"])
    assert fit.sizes["unit_post"] == 6 and fit.sizes["behaviour_var"] == 1
    rec = provenance_of(fit)
    defaults = {k: v for k, v in section_defaults("spikes.poisson_glm").items() if k != "enabled"}
    assert rec["stage"] == "fit_poisson_glm" and rec["params"] == merged(defaults, p)
    _inputs_ok(rec, [f["counts"]])
    text = _log_lines(chain["logs"]["fit_poisson_glm"], "fit_poisson_glm")
    assert "alpha=0.001" in text and "stage fit_poisson_glm done in" in text


def test_evaluate_stage(chain):
    f, p = chain["files"], chain["params"]["evaluate_poisson_glm"]
    m = read(f["metrics"], "metrics")
    assert m.attrs["model"] == "poisson_glm" and m.attrs["dataset"] == "tiny"
    names = list(m["metric"].values)
    assert (
        "test_bits_per_spike" in names and "coupling_corr" in names and "oracle_test_bits_per_spike" in names
    )
    passed = dict(zip(names, m["passed"].values.tolist(), strict=True))
    value = dict(zip(names, m["value"].values.tolist(), strict=True))
    assert passed["coupling_corr"] == int(value["coupling_corr"] >= 0.0)
    assert passed["history_weight_mae"] == 0  # a fitted weight is never exactly the planted one
    assert passed["test_bits_per_spike"] == -1  # no bar
    rec = provenance_of(m)
    assert rec["stage"] == "evaluate_poisson_glm" and rec["params"] == p
    _inputs_ok(rec, [f["fit"], f["counts"], f["truth"]])
    text = _log_lines(chain["logs"]["evaluate_poisson_glm"], "evaluate_poisson_glm")
    assert "coupling_corr = " in text and "stage evaluate_poisson_glm done in" in text


def test_evaluate_without_truth(chain, tmp_path):
    f = chain["files"]
    out = tmp_path / "m.nc"
    eval_stage.run({"fit": f["fit"], "counts": f["counts"], "truth": None}, {"metrics": out}, {})
    m = read(out, "metrics")
    assert list(m["metric"].values) == ["test_bits_per_spike"]
    ref = read(f["metrics"], "metrics").sel(metric="test_bits_per_spike")
    assert float(m["value"][0]) == pytest.approx(float(ref["value"]))
    _inputs_ok(provenance_of(m), [f["fit"], f["counts"]])
    assert isinstance(m.attrs["dataset"], str)


# -- ingest ------------------------------------------------------------------------------------------------------
TABLE = [("b", 0.50), ("a", 0.10), ("c", 1.25), ("a", 0.75), ("b", 0.10), ("c", 0.30)]


@pytest.mark.parametrize(("suffix", "sep"), [(".csv", ","), (".tsv", "\t")])
def test_ingest_table(tmp_path, suffix, sep):
    table = tmp_path / f"spikes{suffix}"
    table.write_text(f"time{sep}unit{sep}quality\n" + "".join(f"{t}{sep}{u}{sep}good\n" for u, t in TABLE))
    out, log = tmp_path / "out" / "spikes.nc", tmp_path / "ingest.log"
    ingest_stage.run({"source": table}, {"spikes": out}, {}, log)
    ds = read(out, "spike_times")
    assert list(ds["unit"].values) == ["a", "b", "c"]
    np.testing.assert_array_equal(ds["spike_time"].values, [0.10, 0.10, 0.30, 0.50, 0.75, 1.25])
    np.testing.assert_array_equal(ds["spike_unit"].values, [0, 1, 2, 1, 0, 2])  # ties broken by unit
    assert ds.attrs["t_start_s"] == 0.10
    assert 1.25 < ds.attrs["t_stop_s"] < 1.25 + 1e-12
    assert ds.attrs["source"] == str(table)
    rec = provenance_of(ds)
    assert rec["stage"] == "ingest_spikes" and rec["params"] == {}
    _inputs_ok(rec, [table])
    assert "stage ingest_spikes done in" in _log_lines(log, "ingest_spikes")


def test_ingest_window_and_numeric_labels(tmp_path):
    table = tmp_path / "s.csv"
    table.write_text("unit,time\n10,0.5\n2,1.5\n10,2.5\n")
    out = tmp_path / "s.nc"
    ingest_stage.run({"source": table}, {"spikes": out}, {"t_start_s": 0.0, "t_stop_s": 3.0})
    ds = read(out, "spike_times")
    assert list(ds["unit"].values) == ["10", "2"]  # labels stay strings
    assert ds.attrs["t_start_s"] == 0.0 and ds.attrs["t_stop_s"] == 3.0
    np.testing.assert_array_equal(ds["spike_unit"].values, [0, 1, 0])


def test_ingest_table_without_time_column(tmp_path):
    table = tmp_path / "bad.csv"
    table.write_text("unit,t\na,0.1\n")
    out, log = tmp_path / "out" / "spikes.nc", tmp_path / "ingest.log"
    with pytest.raises(InputError) as info:
        ingest_stage.run({"source": table}, {"spikes": out}, {}, log)
    msg = str(info.value)
    assert str(table) in msg and "missing column(s) time" in msg and "\n" not in msg
    assert not out.exists() and not (tmp_path / "out").exists()
    text = log.read_text()
    assert "stage ingest_spikes failed:" in text and "missing column(s) time" in text
    assert "done in" not in text


def test_ingest_spikes_outside_explicit_window(tmp_path):
    table = tmp_path / "s.csv"
    table.write_text("unit,time\na,0.5\na,4.0\n")
    out = tmp_path / "s.nc"
    with pytest.raises(ContractError, match="outside the window"):
        ingest_stage.run({"source": table}, {"spikes": out}, {"t_stop_s": 3.0})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]


def test_ingest_non_numeric_time(tmp_path):
    table = tmp_path / "s.csv"
    table.write_text("unit,time\na,0.5\na,soon\n")
    with pytest.raises(InputError, match="column 'time' must hold finite numbers"):
        ingest_stage.run({"source": table}, {"spikes": tmp_path / "s.nc"}, {})
    assert not (tmp_path / "s.nc").exists()


# -- failures ----------------------------------------------------------------------------------------------------
def test_missing_input_path(tmp_path):
    missing = tmp_path / "nowhere" / "spikes.nc"
    out = tmp_path / "counts.nc"
    with pytest.raises(InputError) as info:
        bin_stage.run({"spikes": missing}, {"counts": out}, {}, tmp_path / "bin.log")
    msg = str(info.value)
    assert msg.startswith(f"{missing}: ") and "input 'spikes' of stage bin_spikes does not exist" in msg
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name != "bin.log"] == []  # the log may record the failure


def test_required_input_and_output_must_be_given(tmp_path, chain):
    with pytest.raises(InputError, match="input 'counts'"):
        fit_stage.run({}, {"fit": tmp_path / "f.nc"}, {})
    with pytest.raises(InputError, match="output 'fit'"):
        fit_stage.run({"counts": chain["files"]["counts"]}, {}, {})
    assert list(tmp_path.iterdir()) == []


def test_input_with_wrong_contract(tmp_path, chain):
    out = tmp_path / "fit.nc"
    with pytest.raises(ContractError) as info:
        fit_stage.run({"counts": chain["files"]["spikes"]}, {"fit": out}, {})
    assert str(chain["files"]["spikes"]) in str(info.value)
    assert not out.exists()


def test_simulate_needs_generator_and_seed(tmp_path):
    outs = {"data": tmp_path / "d.nc", "truth": tmp_path / "t.nc"}
    with pytest.raises(ConfigError, match="'generator' and 'seed'"):
        sim_stage.run({}, outs, {"generator": "poisson_glm_network"})
    with pytest.raises(ConfigError, match="unknown parameter"):
        sim_stage.run({}, outs, {"generator": "poisson_glm_network", "seed": 1, "params": {"neurons": 3}})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", ["fewer-units", "other-labels"])
def test_evaluate_with_other_units_fails_and_leaves_no_output(chain, tmp_path, how, provenance):
    from brainpipe.data import write

    counts = read(chain["files"]["counts"], "spike_counts")
    if how == "fewer-units":
        other = counts.isel(unit=slice(0, 4))
    else:
        other = counts.assign_coords(
            unit=("unit", [f"z{i}" for i in range(counts.sizes["unit"])], counts["unit"].attrs)
        )
    other_path = write(other, tmp_path / "other.nc", "spike_counts", provenance("test"))
    out = (
        tmp_path / "metrics.nc"
    )  # (a file there that brainpipe did not write is refused: test_output_safety.py)
    log = tmp_path / "eval.log"
    with pytest.raises(InputError, match="units"):
        eval_stage.run({"fit": chain["files"]["fit"], "counts": other_path}, {"metrics": out}, {}, log)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.log", "other.nc"]
    assert "stage evaluate_poisson_glm failed:" in log.read_text()


def test_simulate_failing_after_first_output_removes_it(tmp_path, monkeypatch, tiny_spec):
    real_write = sim_stage.write
    calls = []

    def flaky_write(ds, path, kind, prov):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(ds, path, kind, prov)

    monkeypatch.setattr(sim_stage, "write", flaky_write)
    outs = {"data": tmp_path / "d.nc", "truth": tmp_path / "t.nc"}
    params = {"generator": "poisson_glm_network", "seed": 1, "params": {"n_neurons": 3, "duration_s": 1.0}}
    with pytest.raises(OSError, match="disk full"):
        sim_stage.run({}, outs, params, tmp_path / "sim.log")
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim.log"]
    text = (tmp_path / "sim.log").read_text()
    assert "stage simulate failed: OSError: disk full" in text and "Traceback" in text


# -- command line ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Run the command-line checks as subprocesses: the error cases and one ``--help`` each as ``python -m``, the
    other stages' ``--help`` in one more process that runs each module as ``python -m`` does (``runpy`` with
    ``__main__``), so the 27 stages pay the import cost once instead of 27 times."""
    d = tmp_path_factory.mktemp("cli")
    bad_table = d / "bad.csv"
    bad_table.write_text("unit,t\na,0.1\n")
    cmds = {f"help:{CLI_STAGES[0]}": [f"brainpipe.stages.{CLI_STAGES[0]}", "--help"]}
    cmds["missing-input"] = [
        "brainpipe.stages.bin_spikes",
        "--spikes",
        str(d / "missing.nc"),
        "--counts-out",
        str(d / "c.nc"),
    ]
    cmds["bad-table"] = [
        "brainpipe.stages.ingest_spikes",
        "--source",
        str(bad_table),
        "--spikes-out",
        str(d / "s.nc"),
    ]

    def one(args):
        p = subprocess.run(
            [sys.executable, "-m", *args], capture_output=True, text=True, cwd=d, timeout=300, check=False
        )
        return p.returncode, p.stdout, p.stderr

    def helps(names):
        p = subprocess.run(
            [sys.executable, "-c", _HELP_ALL, *names],
            capture_output=True,
            text=True,
            cwd=d,
            timeout=600,
            check=True,
        )
        return {f"help:{k}": tuple(v) for k, v in json.loads(p.stdout).items()}

    # a few at a time: each imports brainpipe (the model stages import torch, ~350 MB each)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        rest = pool.submit(helps, CLI_STAGES[1:])
        out = dict(zip(cmds, pool.map(one, cmds.values()), strict=True))
        out.update(rest.result())
    return d, out


# every stage's --help run as `python -m brainpipe.stages.<name> --help` would, in one process: (rc, stdout, stderr)
_HELP_ALL = """
import contextlib, io, json, runpy, sys
out = {}
for name in sys.argv[1:]:
    o, e = io.StringIO(), io.StringIO()
    sys.argv = [name, "--help"]
    rc = 0
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            runpy.run_module(f"brainpipe.stages.{name}", run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            rc = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    out[name] = [rc, o.getvalue(), e.getvalue()]
print(json.dumps(out))
"""


def test_stages_lists_every_stage_module():
    """STAGES names each public module of brainpipe/stages, and each has its Snakemake shim in workflow/scripts."""
    root = Path(__file__).parents[2]
    modules = {
        p.stem for p in (root / "src" / "brainpipe" / "stages").glob("*.py") if not p.stem.startswith("_")
    }
    assert set(STAGES) == modules and len(STAGES) == len(modules)
    shims = {p.stem for p in (root / "workflow" / "scripts").glob("*.py") if not p.stem.startswith("_")}
    assert shims == modules, (
        f"stage without a shim: {sorted(modules - shims)}; shim without a stage: {sorted(shims - modules)}"
    )


@pytest.mark.parametrize("name", CLI_STAGES)
def test_stage_help(cli_runs, name):
    rc, stdout, stderr = cli_runs[1][f"help:{name}"]
    assert rc == 0, stderr
    assert f"usage: python -m brainpipe.stages.{name}" in stdout
    module = importlib.import_module(f"brainpipe.stages.{name}")
    for k in module.INPUTS:
        assert "--" + ".".join(p.replace("_", "-") for p in k.split("__")) in stdout
    for k in module.OUTPUTS:
        assert f"--{k.replace('_', '-')}-out" in stdout
    assert "--params" in stdout and "--log" in stdout


@pytest.mark.parametrize(
    ("key", "fragment", "output"),
    [
        ("missing-input", "missing.nc: input 'spikes' of stage bin_spikes does not exist", "c.nc"),
        ("bad-table", "bad.csv: missing column(s) time", "s.nc"),
    ],
)
def test_cli_error_is_one_line(cli_runs, key, fragment, output):
    d, runs = cli_runs
    rc, stdout, stderr = runs[key]
    assert rc == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("brainpipe: error: ") and fragment in lines[0]
    assert stdout == ""
    assert not (d / output).exists()


def test_cli_in_process(tmp_path, capsys):
    table = tmp_path / "s.tsv"
    table.write_text("unit\ttime\nu1\t0.2\nu0\t0.4\n")
    out, log = tmp_path / "s.nc", tmp_path / "s.log"
    params = tmp_path / "p.yaml"
    params.write_text("t_start_s: 0.0\nt_stop_s: 1.0\n")
    argv = ["--source", str(table), "--spikes-out", str(out), "--params", str(params), "--log", str(log)]
    assert cli("brainpipe.stages.ingest_spikes", argv) == 0
    ds = read(out, "spike_times")
    assert ds.attrs["t_stop_s"] == 1.0 and list(ds["unit"].values) == ["u0", "u1"]
    assert provenance_of(ds)["params"] == {"t_start_s": 0.0, "t_stop_s": 1.0}
    assert "stage ingest_spikes done in" in log.read_text()

    argv[argv.index("--params") + 1] = json.dumps({"t_stop_s": 2.0})
    assert cli("brainpipe.stages.ingest_spikes", argv) == 0
    assert read(out).attrs["t_stop_s"] == 2.0

    argv[argv.index("--params") + 1] = "{not json"
    capsys.readouterr()
    assert cli("brainpipe.stages.ingest_spikes", argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("brainpipe: error: --params")


def test_bin_stage_defaults_match_library(tiny_files, tiny_sim, tmp_path):
    from brainpipe.preprocess import bin_spikes

    out = tmp_path / "counts.nc"
    bin_stage.run({"spikes": tiny_files["spikes"]}, {"counts": out}, {})
    got = read(out, "spike_counts")
    expected = bin_spikes(tiny_sim.data, 0.01, None, 5)  # the stage's defaults
    qc_vars = [v for v in got.data_vars if str(v).startswith("qc_")]
    assert sorted(qc_vars) == ["qc_kept", "qc_rate_hz", "qc_refractory_violation_fraction"]
    assert got["qc_kept"].values.all()  # default QC keeps every unit
    xr.testing.assert_identical(got.drop_vars(qc_vars + ["qc_unit"]).drop_attrs(), expected.drop_attrs())
    for k, v in expected.attrs.items():
        assert got.attrs[k] == v
    _inputs_ok(provenance_of(got), [tiny_files["spikes"]])
