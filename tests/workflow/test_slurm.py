"""SLURM integration (opt-in: BRAINPIPE_TEST_SLURM=1, which .ci/run sets): the tiny study submitted through a real
single-node SLURM (tests/slurm/cluster.sh, Debian's packages, as root) with the project's cluster profile, checked
against a local run of the same study. Skipped (with the reason) elsewhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
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
    # the real scontrol, not the suite's stand-in (tests/conftest.py), for the cluster, the plugin and the jobs
    stub, path = os.environ.get("BRAINPIPE_TEST_SCONTROL_STUB"), os.environ.get("PATH", "")
    if stub:
        os.environ["PATH"] = os.pathsep.join(p for p in path.split(os.pathsep) if p != stub)
    try:
        was_up = subprocess.run([str(CLUSTER), "status"], capture_output=True).returncode == 0
        proc = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        yield
        if not was_up:  # stop only what this test started
            subprocess.run([str(CLUSTER), "stop"], capture_output=True, timeout=120)
    finally:
        os.environ["PATH"] = path


def _study(workdir: Path, **changes) -> Path:
    # device auto: the switching fits request gpu=1 and land on the node's (stand-in) GPU resource, then run on
    # the CPU because no CUDA device is present; the report is left out (it embeds run times and creation dates)
    cfg = tiny_config(**{"spikes.switching_glm.model.device": "auto", **changes})
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _local(workdir: Path, *targets: str) -> None:
    proc = subprocess.run(
        SNAKEMAKE
        + ["-d", str(workdir), "--configfile", str(workdir / "study.yaml"), "--cores", "2", *targets],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _on_slurm(workdir: Path, *targets: str) -> list[str]:
    """The snakemake command that submits ``targets`` of the study in ``workdir`` through the SLURM profile."""
    return [
        "timeout",
        "-s",
        "INT",
        "-k",
        "30",
        "1200",
        *SNAKEMAKE,
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "study.yaml"),
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


def _data(path: Path) -> xr.Dataset:
    """An output less its wall-clock measurements (pretrain_seconds metrics, fold_train_seconds variables): they
    differ between any two runs."""
    ds = xr.load_dataset(path)
    ds = ds.drop_vars([v for v in ds.data_vars if str(v).endswith("_seconds")])
    if "metric" in ds.dims:
        ds = ds.drop_sel(metric=[m for m in ds["metric"].values if str(m).endswith("_seconds")])
    return ds


# the distributed job: Neuroformer pretraining of one spike dataset (the cheapest training job of the tiny study)
# with training.distributed.processes_per_node 2, in a study of its own (training.distributed is study-wide)
DIST_TARGET = "results/spikes/tinysim/neuroformer/pretrained.nc"
DIST_LOG = "logs/neuroformer_pretrain/tinysim.log"
# 1 vs 2 processes: Neuroformer's loss is a mean over a batch's tokens and the ranks' shares are weighted by windows,
# so the curves are close, not equal: the tolerance tests/common/test_distributed.py states for this stage (5 % of
# the largest loss)
NF_LOSS_TOL = 0.05


def test_tiny_study_runs_through_slurm_and_matches_a_local_run(cluster, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "slurm"
    dist_local, dist_remote = tmp_path / "dist-local", tmp_path / "dist-slurm"
    targets = ["results/report/metrics.tsv"]
    for wd in (local, remote):
        _study(wd)
    for wd in (dist_local, dist_remote):
        _study(wd, **{"training.distributed.processes_per_node": 2})
    _local(local, *targets)
    _local(dist_local, DIST_TARGET)  # two spawned ranks
    # the distributed job is submitted beside the study (its own snakemake, its own workdir): one SLURM job of two
    # tasks, one srun task per rank
    dist_log = tmp_path / "dist-slurm.out"
    with dist_log.open("w") as out:
        dist = subprocess.Popen(
            _on_slurm(dist_remote, DIST_TARGET), stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO
        )
        try:
            proc = subprocess.run(
                _on_slurm(remote, *targets), capture_output=True, text=True, cwd=REPO, timeout=1300
            )
            dist.wait(timeout=1300)
        finally:
            if dist.poll() is None:
                dist.kill()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Job stats" in proc.stdout + proc.stderr
    assert dist.returncode == 0, dist_log.read_text()[-5000:]

    files = sorted(p.relative_to(local) for p in (local / "results").rglob("*.nc"))
    assert len(files) >= 15
    squeue = subprocess.run(
        ["squeue", "-t", "all", "-h", "-o", "%i %T"], capture_output=True, text=True
    ).stdout
    jobs = {line.split()[0]: line.split()[1:] for line in squeue.splitlines() if line.strip()}
    seen_ids = set()
    for rel in files:
        a, b = _data(local / rel), _data(remote / rel)
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

    # the distributed job: one SLURM job of 2 tasks, finished, trained by 2 gloo ranks (rank 1 logged beside the
    # stage's log), the same result as the 2 spawned ranks of the local run and close to the one-process run
    prov = provenance_of(xr.load_dataset(dist_remote / DIST_TARGET))
    assert prov["distributed"] == {"world_size": 2, "backend": "gloo"}, prov
    job = prov["slurm_job_id"]
    assert job and jobs.get(job, [None])[0] == "COMPLETED", (job, squeue)
    info = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert "NumTasks=2 " in info and "NumNodes=1 " in info, info
    assert (dist_remote / f"{DIST_LOG}.rank-1").is_file()
    assert provenance_of(xr.load_dataset(dist_local / DIST_TARGET))["distributed"] == prov["distributed"]
    two, two_local = _data(dist_remote / DIST_TARGET), _data(dist_local / DIST_TARGET)
    xr.testing.assert_allclose(two, two_local, rtol=1e-6, atol=1e-9)
    one = _data(local / DIST_TARGET)["history_train_loss"].values
    loss = two["history_train_loss"].values
    assert len(one) == len(loss) and abs(one - loss).max() <= NF_LOSS_TOL * abs(one).max(), (one, loss)


def _in_job(*cmd: str, tasks: int = 2, step: int = 1) -> subprocess.CompletedProcess:
    """``cmd`` in a fresh SLURM job of ``tasks`` tasks, in a step of ``step`` tasks (1: as the SLURM executor runs a
    rule)."""
    return subprocess.run(
        ["salloc", "-n", str(tasks), "-c", "1", "--mem", "1000", "-t", "5", "srun", f"-n{step}", *cmd],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_more_processes_than_the_jobs_tasks_is_one_line(cluster, tmp_path):
    # the job's task count comes from scontrol inside a step (SLURM_NTASKS there is the step's: 1)
    out = tmp_path / "out" / "pretrained.nc"
    code = (
        "from brainpipe.training.distributed import DistributedSettings, run_stage\n"
        f"run_stage('neuroformer_pretrain', DistributedSettings(3), {{}}, {{'model': {str(out)!r}}}, {{}}, None)"
    )
    proc = _in_job(sys.executable, "-c", code)
    assert proc.returncode != 0
    last = [ln for ln in proc.stderr.splitlines() if "Error" in ln][-1]
    assert re.fullmatch(
        r"brainpipe\.errors\.ConfigError: training\.distributed: 3 processes \(3 per node x 1 nodes\), "
        r"but this SLURM job has 2 task\(s\): .*processes_per_node",
        last,
    ), proc.stderr[-2000:]
    assert not out.parent.exists()  # refused before anything was written


def test_a_missing_rendezvous_variable_under_srun_is_one_line_naming_it(cluster, tmp_path):
    from brainpipe.errors import InputError
    from brainpipe.training.distributed import _srun_error

    # the ranks' entry (what run_stage starts with srun, one task per rank) in tasks that lack SLURM_LOCALID
    spec = tmp_path / "spec.json"
    args = ["neuroformer_pretrain", {}, {"model": str(tmp_path / "m.nc")}, {}, None]
    spec.write_text(json.dumps({"args": args, "backend": "gloo", "device": "cpu"}))
    cmd = ["env", "-u", "SLURM_LOCALID", sys.executable, "-m", "brainpipe.training.distributed", str(spec)]
    proc = _in_job(*cmd, step=2)
    assert proc.returncode != 0
    err = _srun_error(proc.stderr, proc.returncode)
    assert isinstance(err, InputError), proc.stderr[-2000:]
    assert str(err).startswith("SLURM: SLURM_LOCALID is not set") and "\n" not in str(err)
    assert not (tmp_path / "m.nc").exists()


# one rank per srun task (run_stage in a 2-task job), Neuroformer pretraining long enough to be requeued mid-run,
# checkpointing every 0.2 s (the small model of tests/common/test_distributed.py)
PREEMPTIBLE = """
import sys
import time
sys.path[:0] = [{common!r}, {tests!r}]
from test_distributed import NF_PARAMS
from brainpipe.training.distributed import DistributedSettings, run_stage
folder, counts = sys.argv[1], sys.argv[2]
train = {{**NF_PARAMS["pretrain"], "max_epochs": 40, "checkpoint_every_s": 0.2}}
params = {{**NF_PARAMS, "pretrain": train, "checkpoint": folder + "/ck/pre.pt"}}
outs = {{"model": folder + "/out/pretrained.nc"}}
run_stage("neuroformer_pretrain", DistributedSettings(2), {{"counts": counts}}, outs, params, folder + "/out/log")
"""


def _job_state(job: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job, "-o", "%T"], capture_output=True, text=True
    ).stdout.strip()


def _wait_for(condition, timeout_s: float, what: str, job_folder: Path | None = None, job: str = "") -> None:
    """Poll ``condition``; if the job in ``job_folder`` ended before it held (a failed import, a crash), fail at once
    with the job's output instead of waiting out ``timeout_s``."""
    t0 = time.monotonic()
    while not condition():
        ended = job and _job_state(job) in (
            "FAILED",
            "COMPLETED",
            "CANCELLED",
            "TIMEOUT",
            "NODE_FAIL",
            "OUT_OF_MEMORY",
        )
        if ended or time.monotonic() - t0 >= timeout_s:
            output = (
                "".join(p.read_text()[-3000:] for p in sorted(job_folder.glob("slurm-*.out")))
                if job_folder
                else ""
            )
            state = _job_state(job) if job else ""
            pytest.fail(
                f"{'job ' + job + ' ended (' + state + ')' if ended else 'timed out'} waiting for {what}\n{output}"
            )
        time.sleep(0.2)


def test_a_requeued_distributed_job_resumes_to_the_uninterrupted_result(cluster, tmp_path):
    from brainpipe.data import make_provenance, write
    from brainpipe.preprocess import bin_spikes
    from brainpipe.simulate import simulate

    sim = simulate(
        "hub_network", {"n_neurons": 5, "n_hubs": 1, "hub_out_degree": 2, "duration_s": 12.0}, seed=1
    )
    counts = tmp_path / "counts.nc"
    write(bin_spikes(sim.data, 0.01, n_blocks=2), counts, "spike_counts", make_provenance("test", {}))
    script = tmp_path / "pretrain.py"
    script.write_text(PREEMPTIBLE.format(common=str(REPO / "tests" / "common"), tests=str(REPO / "tests")))
    ids = {}
    for name in (
        "whole",
        "requeued",
    ):  # the same 2-task job twice, at once: one runs through, one is requeued
        (tmp_path / name).mkdir()
        ids[name] = subprocess.run(
            ["sbatch", "--parsable", "--requeue", "-n2", "-c1", "--mem", "1000", "-t", "10"]
            + ["-o", str(tmp_path / name / "slurm-%j.out")]
            + ["--wrap", f"srun -n1 {sys.executable} {script} {tmp_path / name} {counts}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    job, ckpt = ids["requeued"], tmp_path / "requeued" / "ck" / "pre.pt"
    _wait_for(ckpt.exists, 300, "the first checkpoint", tmp_path / "requeued", job)
    # what preemption with requeue does: SIGTERM to every task (the ranks checkpoint and stop), then the job queues
    # again; SLURM delays a requeued job's start (BeginTime), which is lifted here to keep the test short
    subprocess.run(["scontrol", "requeue", job], check=True)
    _wait_for(lambda: _job_state(job) == "PENDING", 120, "the requeued job to queue again")
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    _wait_for(lambda: all(_job_state(i) in ("COMPLETED", "FAILED") for i in ids.values()), 600, "both jobs")
    info = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert "JobState=COMPLETED" in info and "Restarts=1" in info, info
    assert _job_state(ids["whole"]) == "COMPLETED"
    log = (tmp_path / "requeued" / "out" / "log").read_text()
    step = re.search(r"resumed at epoch \d+, batch \d+ \(step (\d+)\)", log)
    assert step is not None and int(step.group(1)) > 0, log[-2000:]
    assert not ckpt.exists()  # removed once the output was written
    whole, requeued = (_data(tmp_path / n / "out" / "pretrained.nc") for n in ("whole", "requeued"))
    assert len(whole["history_train_loss"]) == 40
    xr.testing.assert_allclose(requeued, whole, rtol=1e-6, atol=1e-9)
