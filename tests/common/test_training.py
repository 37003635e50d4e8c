"""The shared torch training loop: learns, stops early on validation, resumes bit-identically after SIGTERM or
kill -9, ignores checkpoints of other runs, and refuses unreadable ones in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from brainpipe.errors import ConfigError, InputError
from brainpipe.training import Preempted, TrainConfig, fingerprint_of, load_checkpoint, save_checkpoint, train


def _data(seed=0, n=256, d=8):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, 1, generator=g)
    x = torch.randn(n, d, generator=g)
    y = x @ w + 0.05 * torch.randn(n, 1, generator=g)
    return x, y, w


class _Net(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.drop = nn.Dropout(0.1)  # randomness from torch's global RNG: must be restored on resume
        self.lin = nn.Linear(d, 1)

    def forward(self, x):
        return self.lin(self.drop(x))


def _mse(model, batch):
    x, y = batch
    mask = torch.rand(x.shape[0]) > 0.1  # random masking inside the loss, as the masked models do
    return {"loss": ((model(x) - y) ** 2)[mask].mean(), "masked_fraction": 1 - mask.float().mean()}


CFG = dict(
    max_epochs=12,
    batch_size=32,
    lr=0.05,
    weight_decay=0.0,
    seed=3,
    device="cpu",
    progress=False,
    patience=None,
)


def test_loop_recovers_planted_weights_and_logs_history():
    x, y, w = _data()
    model = _Net()
    torch.manual_seed(0)
    res = train(model, (x[:200], y[:200]), _mse, TrainConfig(**CFG), val_data=(x[200:], y[200:]))
    got = model.lin.weight.detach().ravel()
    assert torch.corrcoef(torch.stack([got, w.ravel()]))[0, 1] > 0.99
    assert res.history[-1]["val_loss"] < 0.1 * res.history[0]["val_loss"]
    assert res.steps == 12 * 7 and res.epochs_run == 12 and res.device == "cpu" and res.precision == "fp32"
    assert "masked_fraction" in res.history[0] and 0 < res.history[0]["masked_fraction"] < 0.3


def test_early_stopping_restores_the_best_weights():
    x, y, _ = _data()
    scores = iter([3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    snapshots = []

    def val_fn(model):
        snapshots.append(model.lin.weight.detach().clone())
        return next(scores)

    model = _Net()
    res = train(model, (x, y), _mse, TrainConfig(**(CFG | {"patience": 2})), val_fn=val_fn)
    assert res.stopped_early and res.epochs_run == 5 and res.best_epoch == 2 and res.best_val == 1.0
    assert torch.equal(model.lin.weight, snapshots[2])


def _run(tmp_path, stop_at=None, fingerprint=None, workers=0):
    x, y, _ = _data()
    torch.manual_seed(5)  # the caller seeds the initial weights; the loop seeds everything after
    model = _Net()
    torch.rand(int(torch.randint(1, 100, (1,))))  # whatever the caller draws next must not matter
    calls = {"n": 0}

    def loss(m, b):
        calls["n"] += 1
        if stop_at is not None and calls["n"] == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)  # what SLURM sends before preempting a job
        return _mse(m, b)

    res = train(
        model,
        (x[:200], y[:200]),
        loss,
        TrainConfig(**(CFG | {"checkpoint_every_s": 1e9, "num_workers": workers})),
        val_data=(x[200:], y[200:]),
        checkpoint=tmp_path / "ckpt.pt",
        fingerprint=fingerprint or {"a": 1},
    )
    return model, res


def test_sigterm_checkpoints_and_a_rerun_resumes_bit_identically(tmp_path):
    ref, ref_res = _run(tmp_path / "ref")
    with pytest.raises(Preempted, match="rerun the same command to resume"):
        _run(
            tmp_path / "cut", stop_at=30
        )  # 7 train + 2 validation calls per epoch: call 30 is epoch 3, batch 3
    assert (tmp_path / "cut" / "ckpt.pt").exists()
    model, res = _run(tmp_path / "cut")
    assert res.resumed_from_step == 24
    assert torch.equal(model.lin.weight, ref.lin.weight) and torch.equal(model.lin.bias, ref.lin.bias)
    assert [r["val_loss"] for r in res.history] == [r["val_loss"] for r in ref_res.history]
    again, res2 = _run(tmp_path / "cut")  # a finished checkpoint returns the final model at once
    assert res2.resumed_from_step == res.steps and torch.equal(again.lin.weight, ref.lin.weight)


def test_a_run_with_worker_processes_resumes_to_the_in_process_result(tmp_path):
    # DataLoader workers read ahead; the order is drawn in the training process, so the result is the same
    ref, ref_res = _run(tmp_path / "ref")
    with pytest.raises(Preempted):
        _run(tmp_path / "cut", stop_at=30, workers=2)
    model, res = _run(tmp_path / "cut", workers=2)
    assert res.resumed_from_step == 24
    assert torch.equal(model.lin.weight, ref.lin.weight) and torch.equal(model.lin.bias, ref.lin.bias)
    assert [r["val_loss"] for r in res.history] == [r["val_loss"] for r in ref_res.history]


def test_checkpoint_of_another_run_is_ignored(tmp_path):
    with pytest.raises(Preempted):
        _run(tmp_path, stop_at=20, fingerprint={"a": 1})
    _, res = _run(tmp_path, fingerprint={"a": 2})
    assert res.resumed_from_step is None


def test_unreadable_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "ckpt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"ckpt.pt: not a readable brainpipe checkpoint .*delete it"):
        load_checkpoint(bad)
    torch.save({"something": torch.zeros(2)}, bad)
    with pytest.raises(InputError, match="not a brainpipe checkpoint"):
        load_checkpoint(bad)
    save_checkpoint(bad, {"x": torch.ones(1)}, fingerprint_of({"a": 1}))
    assert load_checkpoint(bad, fingerprint_of({"a": 2})) is None
    assert torch.equal(load_checkpoint(bad, fingerprint_of({"a": 1}))["x"], torch.ones(1))


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    from test_training import _Net, _data, _mse, CFG
    from brainpipe.training import TrainConfig, train
    kill_at = int(sys.argv[2])
    x, y, _ = _data()
    torch.manual_seed(5)
    model = _Net()
    calls = {{"n": 0}}
    def loss(m, b):
        calls["n"] += 1
        if calls["n"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no handler, no last checkpoint: only the periodic ones survive
        return _mse(m, b)
    train(model, (x[:200], y[:200]), loss, TrainConfig(**(CFG | {{"checkpoint_every_s": 0.0}})),
          val_data=(x[200:], y[200:]), checkpoint=sys.argv[1], fingerprint={{"a": 1}})
    torch.save(model.state_dict(), sys.argv[1] + ".final")
    """
)


def test_kill_9_then_rerun_resumes_from_the_last_periodic_checkpoint(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(tests=os.path.dirname(__file__)))
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def run(ckpt, kill_at):
        return subprocess.run(
            [sys.executable, str(script), str(ckpt), str(kill_at)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    ref = run(tmp_path / "ref.pt", 0)
    assert ref.returncode == 0, ref.stderr[-2000:]
    killed = run(tmp_path / "cut.pt", 40)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "cut.pt").exists() and not (tmp_path / "cut.pt.final").exists()
    loop = load_checkpoint(tmp_path / "cut.pt")["loop"]
    assert (loop["epoch"], loop["batch"], loop["step"]) == (
        4,
        3,
        31,
    )  # call 40 = epoch 4, batch 4: died inside it
    resumed = run(tmp_path / "cut.pt", 0)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "ref.pt.final", weights_only=True)
    b = torch.load(tmp_path / "cut.pt.final", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"learning_rate": 1.0}, "unknown training key 'learning_rate'"),
        ({"batch_size": 0}, "must be >= 1"),
        ({"precision": "bf16", "device": "cpu"}, "needs a CUDA device"),
    ],
)
def test_bad_training_config_is_one_line(change, message):
    x, y, _ = _data()
    with pytest.raises(ConfigError, match=message):
        train(_Net(), (x, y), _mse, CFG | change)


def test_empty_training_data_is_one_line():
    with pytest.raises(InputError, match="training data is empty"):
        train(_Net(), (torch.zeros(0, 8), torch.zeros(0, 1)), _mse, CFG)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_training_uses_bf16_and_learns(tmp_path):
    x, y, w = _data()
    model = _Net()
    res = train(
        model, (x, y), _mse, CFG | {"device": "auto", "precision": "auto"}, checkpoint=tmp_path / "c.pt"
    )
    assert res.device.startswith("cuda") and res.precision == "bf16"
    assert next(model.parameters()).device.type == "cuda"
    got = model.lin.weight.detach().float().cpu().ravel()
    assert torch.corrcoef(torch.stack([got, w.ravel()]))[0, 1] > 0.98


# -- distinct GPUs for concurrent local jobs ------------------------------------------------------------------
HOLD_SCRIPT = "from brainpipe.training.gpus import claim_gpus; import sys, time; print(claim_gpus(1), flush=True); time.sleep(60)"


def test_concurrent_jobs_claim_distinct_gpus(tmp_path, monkeypatch):
    from brainpipe.training.gpus import claim_gpus, release_gpus

    monkeypatch.setenv("BRAINPIPE_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    env = dict(os.environ)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "['0']"
        assert claim_gpus(1, wait_s=0) == ["1"] and os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        release_gpus()
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
        assert claim_gpus(2, wait_s=0) == [
            "0",
            "1",
        ]  # both busy-or-taken: shares after the wait, with a warning
        release_gpus()
        holder.kill()  # kill -9 releases its lock
        holder.wait()
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
        assert claim_gpus(2, wait_s=0) == ["0", "1"]
    finally:
        release_gpus()
        if holder.poll() is None:
            holder.kill()


def test_gpu_claim_leaves_slurm_allocations_alone(monkeypatch):
    from brainpipe.training.gpus import claim_gpus

    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert claim_gpus(1) is None and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert claim_gpus(1) is None  # no GPU visible: nothing to do


def test_gpu_lock_dir_is_the_users_own(tmp_path, monkeypatch):
    from brainpipe.training.gpus import lock_dir

    monkeypatch.delenv("BRAINPIPE_GPU_LOCK_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    d = lock_dir()
    assert d == tmp_path / "run" / "brainpipe-gpu-locks"
    assert d.stat().st_mode & 0o777 == 0o700 and d.stat().st_uid == os.getuid()
    # a runtime folder that cannot be written: the next folder of the user's own
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "ro"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if os.getuid() != 0:  # root writes anywhere
        assert lock_dir() == tmp_path / "home" / ".cache" / "brainpipe" / "gpu-locks"
    monkeypatch.setenv("BRAINPIPE_GPU_LOCK_DIR", str(tmp_path / "mine"))
    assert lock_dir() == tmp_path / "mine"
