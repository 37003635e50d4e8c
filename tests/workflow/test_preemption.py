"""Preemption through the workflow: kill -9 a running switching-GLM fit halfway (the whole Snakemake run dies with
it), rerun, and the fit resumes from its last checkpoint and ends with exactly the metrics of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest
import yaml
from test_workflow import REPO, SNAKEMAKE, tiny_config

from brainpipe.data import read
from brainpipe.training import load_checkpoint

pytestmark = pytest.mark.workflow
TARGET = "results/spikes/tinyswitch/switching_glm/none/metrics.nc"
CKPT = "checkpoints/fit_switching_glm/tinyswitch/none.pt"
N_ITER = 60


def _setup(workdir):
    cfg = tiny_config(
        **{"spikes.switching_glm.model.n_iter": N_ITER, "spikes.switching_glm.model.tol": 1e-15}
    )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "study.yaml").write_text(yaml.safe_dump(cfg))
    return SNAKEMAKE + ["-d", str(workdir), "--configfile", str(workdir / "study.yaml"), "--cores", "2"]


def _env():
    return dict(
        os.environ, BRAINPIPE_CHECKPOINT_EVERY_S="0", OMP_NUM_THREADS="1"
    )  # checkpoint every iteration


def test_kill_9_halfway_then_rerun_resumes_with_identical_metrics(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    proc = subprocess.run(
        _setup(ref) + [TARGET], capture_output=True, text=True, cwd=REPO, env=_env(), timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (ref / CKPT).exists()  # removed once the fit's output is written

    cmd = _setup(cut) + [TARGET]
    run = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    done_at_kill = None
    deadline = time.monotonic() + 300
    while run.poll() is None and time.monotonic() < deadline:
        try:
            state = load_checkpoint(cut / CKPT)
        except Exception:  # noqa: BLE001 - not written yet
            state = None
        if state is not None and len(state["objs"]) - 1 >= N_ITER // 3:
            os.killpg(run.pid, signal.SIGKILL)  # the fit, and Snakemake with it
            done_at_kill = len(state["objs"]) - 1
            break
        time.sleep(0.02)
    run.wait(timeout=60)
    assert done_at_kill is not None, "the fit finished before it could be killed halfway"
    assert done_at_kill < N_ITER and not (cut / TARGET).exists()
    assert not (cut / "results/spikes/tinyswitch/switching_glm/none/fit.nc").exists()

    subprocess.run(
        _setup(cut) + ["--unlock"], capture_output=True, cwd=REPO, timeout=300
    )  # kill -9 left the lock
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (cut / "logs/fit_switching_glm/tinyswitch/none.log").read_text()
    assert "resuming from checkpoint" in log
    assert not (cut / CKPT).exists()

    a = read(ref / TARGET, "metrics")
    b = read(cut / TARGET, "metrics")
    assert list(a["metric"].values) == list(b["metric"].values)
    np.testing.assert_array_equal(a["value"].values, b["value"].values)
    fa = read(ref / "results/spikes/tinyswitch/switching_glm/none/fit.nc", "model_fit")
    fb = read(cut / "results/spikes/tinyswitch/switching_glm/none/fit.nc", "model_fit")
    np.testing.assert_array_equal(fa["weights"].values, fb["weights"].values)
    np.testing.assert_array_equal(fa["objective"].values, fb["objective"].values)
    assert fb.sizes["em_iteration"] == N_ITER + 1
