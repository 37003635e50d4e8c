"""The resources a training rule asks SLURM for: the GPUs counted over every node, the ranks spread evenly over the
nodes; checked on the sbatch line the SLURM executor plugin builds from them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from brainpipe.training.resources import training_resources


def _config(**distributed) -> dict:
    return {"training": {"distributed": distributed}} if distributed else {}


def test_one_process_asks_for_one_gpu_or_none():
    res = training_resources(_config(), lambda w: 1)
    assert set(res) == {"gpu"} and res["gpu"](None) == 1
    assert training_resources(_config(), lambda w: 0)["gpu"](None) == 0


def test_gpus_are_counted_over_every_node():
    one_node = training_resources(_config(processes_per_node=2), lambda w: 1)
    assert one_node["gpu"](None) == 2 and one_node["tasks"] == 2 and "slurm_extra" not in one_node
    two_nodes = training_resources(_config(processes_per_node=2, nodes=3), lambda w: 1)
    assert two_nodes["gpu"](None) == 6 and two_nodes["tasks"] == 6 and two_nodes["nodes"] == 3
    assert two_nodes["slurm_extra"](None) == "--gpus-per-node=2"
    cpu = training_resources(_config(processes_per_node=2, nodes=3), lambda w: 0)
    assert cpu["gpu"](None) == 0 and cpu["slurm_extra"](None) == "--ntasks-per-node=2"


class _Resources(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _sbatch(resources: dict) -> str:
    """The sbatch line the SLURM executor plugin writes for a job with these (evaluated) resources."""
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm")
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command

    job = SimpleNamespace(
        resources=_Resources({"runtime": 60, "mem_mb": 4000, **resources}),
        threads=1,
        name="train",
        is_group=lambda: False,
    )
    params = {
        "run_uuid": "u",
        "slurm_logfile": "log",
        "comment_str": "c",
        "account": "",
        "partition": "",
        "workdir": "",
    }
    return get_submit_command(job, params) + plugin.set_gres_string(job)


@pytest.mark.parametrize("gpus", [1, 0])
def test_the_sbatch_line_of_a_two_node_job(gpus):
    res = training_resources(_config(processes_per_node=2, nodes=2), lambda w: gpus)
    line = _sbatch({k: v(None) if callable(v) else v for k, v in res.items()})
    assert "--nodes=2" in line
    if gpus:  # 4 GPUs in all, 2 a node, a task each: 4 ranks, 2 a node
        assert "--gpus=4" in line and "--gpus-per-node=2" in line and "--ntasks-per-gpu=1" in line, line
        assert "--ntasks-per-node" not in line, line  # SLURM refuses it beside --ntasks-per-gpu
    else:
        assert "--ntasks=4" in line and "--ntasks-per-node=2" in line and "--cpus-per-task=1" in line, line
        assert "--gpus" not in line, line
