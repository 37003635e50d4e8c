"""Workflow tests without a real run: dry runs over a config matrix, lint, bad configs and the check-config
command, the run command's pass-through, the SLURM profile's resources, ruff (a file of its own so that a parallel
test run can put it beside the tiny real run of test_workflow.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_workflow import REPO, SNAKEMAKE, TINY, job_counts, snakemake, tiny_config

pytestmark = pytest.mark.workflow

MATRIX = {
    "default": (
        None,
        {
            "simulate_spikes": 4,
            "ingest_spikes": 3,
            "bin_spikes": 7,
            "fit_poisson_glm": 8,
            "fit_switching_glm": 19,
            "evaluate_switching_glm": 19,
            "report": 1,
            "metrics_table": 1,
            "simulate_calcium": 3,
            "preprocess_calcium": 3,
            "build_connectome_tensor": 1,
            "fit_connectome": 1,
            "evaluate_connectome": 1,
            "calcium_counts": 1,
            "simulate_fmri": 1,
            "ingest_fmri": 2,
            "clean_fmri": 2,
            "fmri_baselines": 2,
            "pretrain_brainmae": 4,
            "evaluate_brainmae": 4,
            "neuroformer_pretrain": 3,
            "neuroformer_finetune": 3,
            "neuroformer_evaluate": 3,
        },
    ),
    "tiny": (
        "tiny",
        {
            "simulate_spikes": 2,
            "ingest_spikes": 2,
            "bin_spikes": 4,
            "fit_poisson_glm": 5,
            "fit_switching_glm": 4,
            "evaluate_switching_glm": 4,
            "simulate_calcium": 2,
            "preprocess_calcium": 2,
            "build_connectome_tensor": 1,
            "fit_connectome": 1,
            "evaluate_connectome": 1,
            "calcium_counts": 1,
            "simulate_fmri": 1,
            "ingest_fmri": 1,
            "clean_fmri": 1,
            "fmri_baselines": 1,
            "pretrain_brainmae": 2,
            "evaluate_brainmae": 2,
            "neuroformer_pretrain": 3,
            "neuroformer_finetune": 2,
            "neuroformer_evaluate": 3,
        },
    ),
    "neuroformer_off": ({"neuroformer.enabled": False}, {"bin_spikes": 4, "fit_switching_glm": 4}),
    "neuroformer_no_target": (
        {"neuroformer.datasets.tinysim.target": None},
        {"neuroformer_pretrain": 3, "neuroformer_finetune": 1, "neuroformer_evaluate": 3},
    ),
    "brainmae_off": ({"fmri.brainmae.enabled": False}, {"clean_fmri": 1, "fmri_baselines": 1}),
    "fmri_tables": (
        {"fmri.datasets.tinycohort.simulate.source": "tables"},
        {"ingest_fmri": 1, "pretrain_brainmae": 2},
    ),
    "glm_off": (
        {"spikes.poisson_glm.enabled": False},
        {"simulate_spikes": 2, "bin_spikes": 4, "fit_switching_glm": 4},
    ),
    "switching_off": ({"spikes.switching_glm.enabled": False}, {"bin_spikes": 4, "fit_poisson_glm": 5}),
    "table_only": (
        {
            "spikes.datasets.tinysim": None,
            "spikes.datasets.tinyswitch": None,
            "spikes.datasets.stein": None,
            "spikes.datasets.tinyca": None,
            "spikes.switching_glm.datasets": {},
            "calcium": {},
            "neuroformer.datasets": {},
        },
        {"ingest_spikes": 1, "fit_poisson_glm": 1},
    ),
    "no_datasets": (
        {
            "spikes.datasets": {},
            "spikes.switching_glm.datasets": {},
            "calcium": {},
            "fmri.datasets": {},
            "neuroformer.datasets": {},
        },
        {"report": 1},
    ),
    "calcium_only": (
        {
            "spikes.datasets": {"tinyca": {"from_calcium": "tinyca_a1"}},
            "spikes.switching_glm.datasets": {},
            "neuroformer.datasets": {"tinyca": TINY["neuroformer"]["datasets"]["tinyca"]},
        },
        {
            "simulate_calcium": 2,
            "preprocess_calcium": 2,
            "fit_connectome": 1,
            "calcium_counts": 1,
            "fit_poisson_glm": 1,
            "neuroformer_pretrain": 1,
            "neuroformer_evaluate": 1,
        },
    ),
    "connectome_off": ({"calcium.connectome.enabled": False}, {"preprocess_calcium": 2, "calcium_counts": 1}),
    "calcium_from_file": (
        {
            "calcium.datasets.arr": {"path": str(REPO / "tests" / "data" / "calcium_traces.npy")},
            "calcium.connectome.studies.filestudy": {"datasets": ["arr", "tinyca_a1"]},
        },
        {
            "ingest_calcium": 1,
            "simulate_calcium": 2,
            "preprocess_calcium": 3,
            "fit_connectome": 2,
            "evaluate_connectome": 2,
        },
    ),
}


@pytest.mark.parametrize("name", list(MATRIX))
def test_dry_run_matrix(name, tmp_path):
    changes, expected = MATRIX[name]
    if changes is None:  # the default study reads bundled recordings relative to the working folder
        (tmp_path / "resources").symlink_to(REPO / "resources")
        proc = snakemake(tmp_path, None, "-n", "--configfile", str(REPO / "config" / "config.yaml"))
    else:
        proc = snakemake(tmp_path, tiny_config(**({} if changes == "tiny" else changes)), "-n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = job_counts(proc.stdout + proc.stderr)
    for rule, n in expected.items():
        assert jobs.get(rule) == n, (rule, jobs)
    if name == "glm_off":
        assert "fit_poisson_glm" not in jobs
    if name in ("switching_off", "table_only"):
        assert "fit_switching_glm" not in jobs
    if name in ("neuroformer_off", "table_only", "no_datasets"):
        assert not any(r.startswith("neuroformer_") for r in jobs), jobs
    if name == "no_datasets":
        assert "bin_spikes" not in jobs
    if name == "brainmae_off":
        assert "pretrain_brainmae" not in jobs and "evaluate_brainmae" not in jobs
    if name in ("table_only", "no_datasets"):
        assert not any("calcium" in r or "connectome" in r for r in jobs)
    if name == "connectome_off":
        assert "fit_connectome" not in jobs and "build_connectome_tensor" not in jobs
    if name == "calcium_only":
        assert "bin_spikes" not in jobs  # counts from calcium events, not from binning spikes


def test_lint_is_clean(tmp_path):
    proc = subprocess.run(SNAKEMAKE + ["--lint"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


# -- bad config: one line naming the key and what is allowed; nothing written -----------------------------
BAD_CONFIGS = {
    "unknown_key": (
        {"spikes.bin.binwidth": 0.01},
        r"unknown key 'spikes\.bin\.binwidth' \(allowed keys here: bin_width_s, qc, split\); did you mean 'bin_width_s'\?",
    ),
    "wrong_type": (
        {"spikes.bin.bin_width_s": "ten ms"},
        r"key 'spikes\.bin\.bin_width_s': 'ten ms' is invalid \(allowed: number > 0",
    ),
    "out_of_range": (
        {"spikes.bin.bin_width_s": -0.01},
        r"key 'spikes\.bin\.bin_width_s': -0\.01 is invalid \(allowed: number > 0",
    ),
    "bad_enum": (
        {"spikes.datasets.tinysim.simulate.generator": "lif"},
        r"'lif' is not allowed \(allowed values: poisson_glm_network, switching_glm_network, hub_network\)",
    ),
    "bad_sim_param": (
        {"spikes.datasets.tinysim.simulate.params.n_neuron": 3},
        r"unknown parameter\(s\) n_neuron \(allowed: .*n_neurons",
    ),
    "bad_fractions": (
        {"spikes.bin.split.fractions": {"train": 0.5, "validation": 0.2, "test": 0.2}},
        r"sums to 0\.9",
    ),
    "fmri_unknown_key": (
        {"fmri.clean.segment_sec": 15},
        r"unknown key 'fmri\.clean\.segment_sec' \(allowed keys here: .*\); did you mean 'segment_s'\?",
    ),
    "fmri_needs_atlas": (
        {"fmri.datasets.real": {"path": "resources/fmri/nitime/fmri1.nii.gz"}},
        r"key 'fmri\.datasets\.real\.atlas' is needed for format 'auto'",
    ),
    "fmri_table_needs_tr": (
        {"fmri.datasets.real": {"path": "resources/fmri/nitime/fmri_timeseries.csv", "format": "table"}},
        r"key 'fmri\.datasets\.real\.repetition_time_s' is needed for ROI tables",
    ),
    "fmri_bad_variant": (
        {"fmri.brainmae.variants.odd": {"attention": "cross"}},
        r"key 'fmri\.brainmae\.variants\.odd\.attention': 'cross' is not allowed \(allowed values: graph, self, both\)",
    ),
    "nf_unknown_modality": (
        {"neuroformer.datasets.tinysim.modalities": ["speeed"]},
        r"key 'neuroformer\.datasets\.tinysim\.modalities': unknown modality 'speeed' \(defined in neuroformer\.modalities: none\)",
    ),
    "missing_path": (
        {"spikes.datasets.table.path": "no/such/spikes.csv"},
        r"key 'spikes\.datasets\.table\.path' points to 'no/such/spikes\.csv', which does not exist",
    ),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_one_line(name, tmp_path):
    changes, pattern = BAD_CONFIGS[name]
    proc = snakemake(tmp_path, tiny_config(**changes), "-n")
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if re.search(pattern, ln)]
    assert lines, proc.stdout + proc.stderr
    assert "study.yaml" in lines[0]  # names the config file
    assert not (tmp_path / "results").exists()


def test_check_config_cli(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(**{"report.titel": "x"})))
    proc = subprocess.run(
        [sys.executable, "-m", "brainpipe.cli", "check-config", str(cfg)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "unknown key 'report.titel'" in proc.stderr and "did you mean 'title'" in proc.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "brainpipe.cli", "check-config"], capture_output=True, text=True, cwd=REPO
    )
    assert ok.returncode == 0, ok.stderr


def test_brainpipe_run_passes_args_through(tmp_path):
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    proc = subprocess.run(
        [sys.executable, "-m", "brainpipe.cli", "run", "-n", "-d", str(tmp_path), "--configfile", str(cfg)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--cores all" in proc.stderr and "simulate_spikes" in proc.stdout + proc.stderr


# -- the cluster profile: a dry run shows what each job will ask SLURM for ----------------------------------
def test_slurm_profile_dry_run_shows_resources(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    cfg = tiny_config(**{"spikes.switching_glm.model.device": "auto"})
    proc = snakemake(tmp_path, cfg, "-n", "--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    blocks = re.split(r"\n(?=\s*(?:rule|localrule) \w+:)", out)
    fits = [b for b in blocks if re.match(r"\s*rule fit_switching_glm:", b)]
    assert fits
    for b in fits:
        res = re.search(r"resources: (.*)", b).group(1)
        # mem_mb scales with the input's size: <TBD> until the input exists
        # runtime may also show <TBD> in a fresh folder (attempt-scaled expressions are evaluated at submission)
        assert "gpu=1" in res and "cpus_per_gpu=2" in res and re.search(r"runtime=(120|<TBD>)", res), res
        assert "mem_mb=" in res, res
    evals = [b for b in blocks if re.match(r"\s*rule evaluate_poisson_glm:", b)]
    assert evals and all("mem_mb=" in b and re.search(r"runtime=(20|<TBD>)", b) for b in evals)
    assert "group spikes_eval" in out or "spikes_eval" in out  # small steps are grouped into shared jobs
    cpu = snakemake(
        tmp_path, tiny_config(), "-n", "--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm")
    )
    fit_cpu = [
        b for b in re.split(r"\n(?=\s*rule \w+:)", cpu.stdout + cpu.stderr) if "rule fit_switching_glm:" in b
    ]
    assert fit_cpu and all("gpu=0" in re.search(r"resources: (.*)", b).group(1) for b in fit_cpu)


def test_code_is_linted_and_formatted():
    """`make lint`'s Python half: ruff's checks and its formatting, over the package, tests, shims and benchmarks."""
    ruff = Path(sys.executable).with_name("ruff")
    paths = ["src", "tests", "workflow/scripts", "bench"]
    for args in (["check", *paths], ["format", "--check", *paths]):
        proc = subprocess.run([str(ruff), *args], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 0, f"ruff {args[0]}: " + proc.stdout[-3000:] + proc.stderr[-1000:]
