"""Data-parallel training (brainpipe.training.distributed) on the CPU with gloo: 2 processes on one global batch
follow 1 process, a preempted distributed run resumes to the same weights bit for bit, and the bad inputs
(too many processes, a checkpoint of another world size, a SLURM job without its rendezvous variables).

One spawn of 2 ranks runs every distributed fit in sequence (about 5 s); the single-process references run here.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from brainpipe.errors import ConfigError, InputError
from brainpipe.training import TrainConfig, train
from brainpipe.training.checkpoint import Preempted
from brainpipe.training.distributed import (
    DistributedSettings,
    check_capacity,
    current,
    rendezvous,
    spawn,
    usable_cpus,
)
from neuroformer_tiny import TRAIN, tiny_params

# tolerance of the 1-process vs 2-process comparison: the global batch's gradient is the same sum of per-example
# gradients, added in another order (float32), so losses agree to ~1e-7 relative; 1e-5 leaves room for BLAS paths
RTOL = 1e-5
CFG = dict(
    max_epochs=4,
    batch_size=8,  # 29 examples: batches of 8, 8, 8 and 5 (the last split 3 + 2 over two ranks)
    lr=1e-2,
    patience=None,
    device="cpu",
    progress=False,
    checkpoint_every_s=1e9,
    seed=3,
)
KILL_AT_CALL = 7  # rank 1 gets SIGTERM in its 7th training step: epoch 1, batch 3 of 4 (mid-epoch)
_CALLS = {"n": 0, "kill": False}


def _data():
    g = torch.Generator().manual_seed(11)
    x = torch.randn(37, 6, generator=g)
    y = x @ torch.randn(6, 2, generator=g) + 0.1 * torch.randn(37, 2, generator=g)
    return (x[:29], y[:29]), (x[29:], y[29:])


def _model(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 2))


def _mse(model, batch):
    x, y = batch
    if model.training:
        _CALLS["n"] += 1
        if _CALLS["kill"] and _CALLS["n"] == KILL_AT_CALL:
            os.kill(os.getpid(), signal.SIGTERM)  # what SLURM sends before preempting: one rank gets it first
    return ((model(x) - y) ** 2).mean()


def _fit(dropout=0.0, checkpoint=None, kill=False, device="cpu"):
    (tr, va) = _data()
    model = _model(dropout)
    _CALLS.update(n=0, kill=kill)
    cfg = TrainConfig(**{**CFG, "device": device, "precision": "fp32"})
    res = train(model, tr, _mse, cfg, val_data=va, checkpoint=checkpoint)
    return model, res


def _worker(out: str, folder: str) -> None:
    """Every distributed fit of this file, on each of 2 ranks; rank 0 saves what the tests compare."""
    comm = current()
    found = {"world": comm.world, "backend": comm.backend}
    model, res = _fit()
    found["plain"] = {"history": res.history, "weights": model.state_dict(), "world": res.world_size}
    model, res = _fit()
    found["again"] = {"history": res.history, "weights": model.state_dict()}
    model, res = _fit(dropout=0.3, checkpoint=os.path.join(folder, "full.pt"))
    found["full"] = {"history": res.history, "weights": model.state_dict()}
    ckpt = os.path.join(folder, "cut.pt")
    try:
        _fit(dropout=0.3, checkpoint=ckpt, kill=comm.rank == 1)
        found["preempted"] = False
    except Preempted:
        found["preempted"] = True
    if comm.is_main:
        shutil.copy(ckpt, os.path.join(folder, "cut-world2.pt"))
    comm.barrier()
    model, res = _fit(dropout=0.3, checkpoint=ckpt)
    found["resumed"] = {
        "history": res.history,
        "weights": model.state_dict(),
        "from_step": res.resumed_from_step,
    }
    if comm.is_main:
        torch.save(found, out)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    out = folder / "found.pt"
    spawn(_worker, (str(out), str(folder)), processes=2, backend="gloo", device="cpu")
    return torch.load(out, weights_only=True), folder


def _close(a, b):
    return abs(a - b) <= RTOL * max(abs(a), abs(b), 1e-12)


def test_two_processes_follow_one_process_on_the_global_batch(two_ranks):
    found, _ = two_ranks
    assert found["world"] == 2 and found["backend"] == "gloo" and found["plain"]["world"] == 2
    model, res = _fit()
    assert res.world_size == 1 and res.backend == "none"
    two = found["plain"]["history"]
    assert len(two) == len(res.history) == CFG["max_epochs"]
    for r1, r2 in zip(res.history, two, strict=True):
        assert r1["step"] == r2["step"]
        assert _close(r1["train_loss"], r2["train_loss"]), (r1, r2)
        assert _close(r1["val_loss"], r2["val_loss"]), (r1, r2)
    assert res.history[-1]["train_loss"] < 0.8 * res.history[0]["train_loss"]  # it did learn
    for k, v in model.state_dict().items():
        torch.testing.assert_close(found["plain"]["weights"][k], v, rtol=RTOL, atol=1e-6)


def test_distributed_runs_are_deterministic_for_a_world_size(two_ranks):
    found, _ = two_ranks
    assert found["plain"]["history"] == found["again"]["history"]
    for k, v in found["plain"]["weights"].items():
        assert torch.equal(v, found["again"]["weights"][k])


def test_a_preempted_distributed_run_resumes_to_the_same_weights(two_ranks):
    found, _ = two_ranks
    assert found["preempted"]
    n_batches = 4
    step = found["resumed"]["from_step"]
    assert step == KILL_AT_CALL and step % n_batches != 0  # stopped mid-epoch, at the step rank 1 was told to
    assert found["resumed"]["history"] == found["full"]["history"]
    for k, v in found["full"]["weights"].items():
        assert torch.equal(v, found["resumed"]["weights"][k]), k
    # dropout draws differ per rank: the dropout run is not the plain one (the RNG streams were restored, not reset)
    assert found["full"]["history"] != found["plain"]["history"]


def test_a_checkpoint_of_another_world_size_is_refused_in_one_line(two_ranks):
    _, folder = two_ranks
    ckpt = folder / "cut-world2.pt"
    with pytest.raises(InputError, match=r"cut-world2\.pt: checkpoint of a run with 2 training process") as e:
        _fit(dropout=0.3, checkpoint=ckpt)
    assert "\n" not in str(e.value) and "training.distributed" in str(e.value)


def test_more_processes_than_devices_is_one_line_naming_key_and_count():
    n = usable_cpus()
    with pytest.raises(
        ConfigError, match=rf"training\.distributed\.processes_per_node = {n + 1}, but only {n} CPU"
    ):
        check_capacity(n + 1, "cpu")
    check_capacity(n, "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"processes_per_node = 2, but only 0 CUDA device"):
            check_capacity(2, "cuda")
    with pytest.raises(ConfigError, match=rf"processes_per_node = {n + 1}"):
        spawn(_worker, ("x", "y"), processes=n + 1, device="cpu")  # refused before any process starts


SLURM = {
    "SLURM_JOB_ID": "4242",
    "SLURM_NTASKS": "4",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURM_JOB_NODELIST": "gpu[07-08],cpu1",
}


def test_slurm_rendezvous_comes_from_the_slurm_environment():
    where = rendezvous(SLURM)
    assert where["rank"] == 3 and where["world_size"] == 4 and where["local_rank"] == 1
    assert where["master_addr"] in ("gpu07",) and 20000 <= where["master_port"] < 40000
    assert where["launcher"] == "slurm"
    assert rendezvous({}) == {}  # one ordinary process
    assert (
        rendezvous({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1234"})["rank"] == 1
    )


@pytest.mark.parametrize("missing", ["SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_JOB_NODELIST"])
def test_a_missing_slurm_rendezvous_variable_is_named(missing):
    env = {k: v for k, v in SLURM.items() if k != missing}
    with pytest.raises(InputError, match=missing) as e:
        rendezvous(env)
    assert "\n" not in str(e.value)


def test_distributed_settings_are_checked():
    s = DistributedSettings.from_dict({"processes_per_node": 2, "nodes": 3})
    assert s.world_size == 6 and s.enabled
    assert not DistributedSettings.from_dict(None).enabled
    with pytest.raises(ConfigError, match=r"training\.distributed: unknown key 'gpus'"):
        DistributedSettings.from_dict({"gpus": 2})
    with pytest.raises(ConfigError, match=r"training\.distributed\.nodes: 0 is not an integer >= 1"):
        DistributedSettings.from_dict({"nodes": 0})


NF_TRAIN = {**TRAIN, "max_epochs": 2}
NF_PARAMS = tiny_params(NF_TRAIN)


@pytest.mark.slow
def test_a_training_stage_runs_in_two_ranks_and_only_rank_0_writes(tmp_path):
    from brainpipe.data import make_provenance, provenance_of, read, write
    from brainpipe.preprocess import bin_spikes
    from brainpipe.simulate import simulate
    from brainpipe.stages import neuroformer_pretrain
    from brainpipe.training.distributed import run_stage

    sim = simulate(
        "hub_network", {"n_neurons": 5, "n_hubs": 1, "hub_out_degree": 2, "duration_s": 12.0}, seed=1
    )
    counts = tmp_path / "counts.nc"
    write(bin_spikes(sim.data, 0.01, n_blocks=2), counts, "spike_counts", make_provenance("test", {}))
    one, two = tmp_path / "one" / "pretrained.nc", tmp_path / "two" / "pretrained.nc"
    neuroformer_pretrain.run({"counts": counts}, {"model": one}, NF_PARAMS)
    log = tmp_path / "two" / "pretrain.log"
    params = {**NF_PARAMS, "checkpoint": str(tmp_path / "ck" / "pre.pt")}
    run_stage("neuroformer_pretrain", DistributedSettings(2), {"counts": counts}, {"model": two}, params, log)
    assert sorted(p.name for p in two.parent.iterdir()) == [
        "pretrain.log",
        "pretrain.log.rank-1",
        "pretrained.nc",
    ]
    assert not (tmp_path / "ck" / "pre.pt").exists()  # removed once the output was written
    d1, d2 = read(one, "model_fit"), read(two, "model_fit")
    assert provenance_of(d2)["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert "distributed" not in provenance_of(d1)
    # Neuroformer's loss is a mean over the batch's tokens, the ranks' shares are weighted by windows: close, not
    # equal (measured: within 1.5 % per epoch on this run)
    l1, l2 = d1["history_train_loss"].values, d2["history_train_loss"].values
    assert len(l1) == len(l2) == NF_TRAIN["max_epochs"]
    assert abs(l1 - l2).max() <= 0.05 * abs(l1).max(), (l1, l2)


def test_several_nodes_need_slurm_and_enough_tasks(monkeypatch, tmp_path, one_line):
    from brainpipe.training.distributed import run_stage

    outs = {"model": str(tmp_path / "m.nc")}
    for var in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_STEP_ID"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(
        ConfigError, match=r"training\.distributed\.nodes = 2: several nodes need a SLURM job"
    ):
        run_stage("neuroformer_pretrain", DistributedSettings(2, 2), {}, outs, {}, None)
    # in a batch script (no job step) SLURM_NTASKS is the job's (inside a step scontrol is asked: the SLURM test)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    with pytest.raises(
        ConfigError, match=r"4 processes \(2 per node x 2 nodes\), but this SLURM job has 2 task"
    ):
        run_stage("neuroformer_pretrain", DistributedSettings(2, 2), {}, outs, {}, None)
    # one node: a job of several tasks runs a rank per task, so it needs as many as processes_per_node
    with pytest.raises(
        ConfigError, match=r"3 processes \(3 per node x 1 nodes\), but this SLURM job has 2"
    ) as e:
        run_stage("neuroformer_pretrain", DistributedSettings(3), {}, outs, {}, None)
    assert "processes_per_node" in one_line(e)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_slurm_job_tasks_and_rule_resources():
    from brainpipe.training.distributed import distributed_tasks, slurm_job_tasks

    assert slurm_job_tasks({}) == 0
    assert slurm_job_tasks({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "3"}) == 3
    assert slurm_job_tasks({"SLURM_JOB_ID": "7"}) == 1
    assert distributed_tasks({}) == {}
    assert distributed_tasks({"training": {"distributed": {"processes_per_node": 1}}}) == {}
    on = {"training": {"distributed": {"processes_per_node": 2, "nodes": 3}}}
    assert distributed_tasks(on) == {"tasks": 6, "nodes": 3, "cpus_per_task": 1, "tasks_per_gpu": 1}


def test_an_srun_failure_is_the_first_rank_error_line():
    from brainpipe.training.checkpoint import Preempted
    from brainpipe.training.distributed import _srun_error

    missing = (
        "InputError: SLURM: SLURM_LOCALID is not set, so this task cannot meet the other ranks; launch ..."
    )
    text = f"{missing}\n{missing}\nsrun: error: vm: tasks 0-1: Exited with exit code 1\n"
    err = _srun_error(text, 1)
    assert isinstance(err, InputError) and str(err).startswith("SLURM: SLURM_LOCALID is not set")
    err = _srun_error("Traceback (most recent call last):\n  x\nValueError: bad\nsrun: error: task 1\n", 1)
    assert str(err) == "a training process failed: ValueError: bad"
    assert isinstance(_srun_error("Preempted: stopped at step 3\n", 1), Preempted)
    assert str(_srun_error("srun: error: Unable to create step\n", 1)).endswith("Unable to create step")
    assert str(_srun_error("", 137)) == "a training process failed: srun exited with status 137"


def test_from_snakemake_is_the_ordinary_entry_when_off(monkeypatch):
    from types import SimpleNamespace

    from brainpipe.stages import _runner, neuroformer_pretrain
    from brainpipe.training import distributed

    calls = []
    original = neuroformer_pretrain.run

    def entry(smk, name):
        calls.append((name, neuroformer_pretrain.run is original))
        neuroformer_pretrain.run({"counts": "c"}, {"model": "m"}, {"seed": 0}, None)

    monkeypatch.setattr(_runner, "from_snakemake", entry)
    monkeypatch.setattr(distributed, "run_stage", lambda *a: calls.append(("run_stage", a[1].world_size)))
    monkeypatch.setattr(neuroformer_pretrain, "run", lambda *a: calls.append(("stage", 1)))
    original = neuroformer_pretrain.run
    distributed.from_snakemake(SimpleNamespace(config={}), "neuroformer_pretrain")
    off = {"training": {"distributed": {"processes_per_node": 1, "nodes": 1, "backend": "auto"}}}
    distributed.from_snakemake(SimpleNamespace(config=off), "neuroformer_pretrain")
    assert calls == [("neuroformer_pretrain", True), ("stage", 1)] * 2
    calls.clear()
    on = {"training": {"distributed": {"processes_per_node": 2}}}
    distributed.from_snakemake(SimpleNamespace(config=on), "neuroformer_pretrain")
    assert calls == [("neuroformer_pretrain", False), ("run_stage", 2)]
    assert neuroformer_pretrain.run is original  # restored


def _nccl_worker(out: str, folder: str) -> None:
    comm = current()
    model, res = _fit(checkpoint=os.path.join(folder, "nccl.pt"), device="cuda")
    torch.save(
        {"history": res.history, "world": comm.world, "backend": comm.backend, "device": res.device},
        out,
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nccl_world_of_one_on_the_gpu_follows_one_process(tmp_path):
    out = tmp_path / "nccl.pt"
    spawn(_nccl_worker, (str(out), str(tmp_path)), processes=1, backend="nccl", device="cuda")
    found = torch.load(out, weights_only=True)
    assert found["world"] == 1 and found["backend"] == "nccl" and found["device"].startswith("cuda")
    assert (tmp_path / "nccl.pt").exists()  # rank 0 wrote the finished checkpoint (NCCL gather and barrier)
    _, res = _fit(device="cuda")
    for r1, r2 in zip(res.history, found["history"], strict=True):
        assert abs(r1["train_loss"] - r2["train_loss"]) <= 1e-4 * abs(r1["train_loss"]), (r1, r2)


def _slow_worker(folder: str) -> None:
    (tr, va) = _data()
    model = _model(0.3)

    def loss(m, batch):
        if m.training and not _CALLS.get("ready"):
            _CALLS["ready"] = True
            open(os.path.join(folder, f"ready-{current().rank}"), "w").close()
        return _mse(m, batch)

    cfg = TrainConfig(**{**CFG, "max_epochs": 60})
    res = train(model, tr, loss, cfg, val_data=va, checkpoint=os.path.join(folder, "slow.pt"))
    if current().is_main:
        with open(os.path.join(folder, "resumed_from"), "w") as fh:
            fh.write(str(res.resumed_from_step))


def _preempt_main(folder: str) -> None:
    """A job's process: 2 spawned ranks; SIGTERM to it reaches both, they checkpoint and stop."""
    from brainpipe.errors import BrainpipeError

    try:
        spawn(_slow_worker, (folder,), processes=2, backend="gloo", device="cpu")
    except BrainpipeError as err:
        print(f"brainpipe: error: {type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(1) from None


@pytest.mark.slow
def test_sigterm_to_the_job_reaches_every_rank_and_a_rerun_resumes(tmp_path):
    import subprocess
    import time

    script = (
        f"import sys; sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).parents[1])!r}]; "
        f"from test_distributed import _preempt_main; _preempt_main({str(tmp_path)!r})"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not all((tmp_path / f"ready-{r}").exists() for r in (0, 1)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 1
    assert "Preempted: stopped by SIGTERM; checkpoint written to" in err, err[-2000:]
    assert (tmp_path / "slow.pt").exists() and not (tmp_path / "resumed_from").exists()
    rerun = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    step = int((tmp_path / "resumed_from").read_text())
    assert 0 < step < 60 * 4  # resumed where it stopped, then finished
