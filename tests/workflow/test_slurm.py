"""SLURM integration (opt-in: BRAINPIPE_TEST_SLURM=1, which .ci/run sets): the tiny study submitted through a real
single-node SLURM (tests/slurm/cluster.sh, Debian's packages, as root) with the project's cluster profile, checked
against a local run of the same study. Skipped (with the reason) elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import xarray as xr
import yaml
from test_workflow import REPO, SNAKEMAKE, tiny_config

from brainpipe.data import provenance_of

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "workflow" / "profiles" / "slurm"


@pytest.fixture(scope="module")
def cluster():
    if os.environ.get("BRAINPIPE_TEST_SLURM") != "1":
        pytest.skip("SLURM integration test is opt-in: set BRAINPIPE_TEST_SLURM=1 (as root; .ci/run does)")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("the single-node SLURM needs root and apt-get (Debian)")
    was_up = subprocess.run([str(CLUSTER), "status"], capture_output=True).returncode == 0
    proc = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    yield
    if not was_up:  # stop only what this test started
        subprocess.run([str(CLUSTER), "stop"], capture_output=True, timeout=120)


def _study(workdir: Path) -> Path:
    # device auto: the switching fits request gpu=1 and land on the node's (stand-in) GPU resource, then run on
    # the CPU because no CUDA device is present; the report is left out (it embeds run times and creation dates)
    cfg = tiny_config(**{"spikes.switching_glm.model.device": "auto"})
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_tiny_study_runs_through_slurm_and_matches_a_local_run(cluster, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "slurm"
    targets = ["results/report/metrics.tsv"]
    for wd in (local, remote):
        _study(wd)
    proc = subprocess.run(
        SNAKEMAKE + ["-d", str(local), "--configfile", str(local / "study.yaml"), "--cores", "2", *targets],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cmd = [
        "timeout",
        "-s",
        "INT",
        "-k",
        "30",
        "1200",
        *SNAKEMAKE,
        "-d",
        str(remote),
        "--configfile",
        str(remote / "study.yaml"),
        "--workflow-profile",
        str(PROFILE),
        "--jobs",
        "4",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-keep-successful-logs",
        *targets,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=1300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Job stats" in proc.stdout + proc.stderr

    files = sorted(p.relative_to(local) for p in (local / "results").rglob("*.nc"))
    assert len(files) >= 15
    squeue = subprocess.run(
        ["squeue", "-t", "all", "-h", "-o", "%i %T"], capture_output=True, text=True
    ).stdout
    jobs = {line.split()[0]: line.split()[1:] for line in squeue.splitlines() if line.strip()}
    seen_ids = set()
    for rel in files:
        a = xr.load_dataset(local / rel)
        b = xr.load_dataset(remote / rel)
        # wall-clock measurements (pretrain_seconds metrics, fold_train_seconds variables) differ between any runs
        clock = [v for v in a.data_vars if str(v).endswith("_seconds")]
        a, b = a.drop_vars(clock), b.drop_vars(clock)
        if "metric" in a.dims:
            timed = [m for m in a["metric"].values if str(m).endswith("_seconds")]
            a, b = a.drop_sel(metric=timed), b.drop_sel(metric=timed)
        xr.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
        prov = provenance_of(b)
        assert prov["slurm_job_id"], f"{rel} was not made inside a SLURM job"
        assert provenance_of(a)["slurm_job_id"] is None
        seen_ids.add(prov["slurm_job_id"])
    # every job that made an output is in SLURM's records, and finished
    assert seen_ids <= set(jobs), (seen_ids, squeue)
    assert all(jobs[i][0] == "COMPLETED" for i in seen_ids), squeue
    # grouping: small per-dataset steps shared cluster jobs, so there are fewer jobs than rules run
    assert len(seen_ids) < len(files)
    # the switching fits asked for a GPU and got the node's gpu resource
    fits = [
        provenance_of(xr.load_dataset(remote / r))["slurm_job_id"]
        for r in files
        if r.name == "fit.nc" and "switching_glm" in r.parts
    ]
    assert fits
    for i in fits:
        info = subprocess.run(["scontrol", "show", "job", i], capture_output=True, text=True).stdout
        assert "TresPerJob=gres:gpu:1" in info, info

    def table(root):  # the metrics table, less wall-clock rows
        rows = (root / "results" / "report" / "metrics.tsv").read_text().splitlines()
        return [r for r in rows if not r.split("\t")[2].endswith("_seconds")]

    assert table(remote) == table(local)
