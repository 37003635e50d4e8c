"""Calcium stages end to end in process (simulate -> preprocess -> tensor -> fit -> evaluate; events -> counts), the
config cross-checks of the calcium branch, and failures that leave no output."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from brainpipe.config import validate_config
from brainpipe.data import provenance_of, read
from brainpipe.errors import ConfigError, InputError
from brainpipe.stages import (
    build_connectome_tensor,
    calcium_counts,
    evaluate_connectome,
    fit_connectome,
    preprocess_calcium,
    simulate,
)

REPO = Path(__file__).resolve().parents[2]
TINY = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
SIM = {"n_animals": 2, "n_neurons": 12, "n_communities": 2, "community_size": 4, "n_frames": 1200}


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("calcium")
    out = []
    for a in range(2):
        d = root / f"ca{a}"
        simulate.run(
            {},
            {"data": d / "traces.nc", "truth": d / "truth.nc"},
            {"generator": "calcium_communities", "seed": 2, "params": {**SIM, "animal": a}},
            None,
        )
        preprocess_calcium.run(
            {"traces": d / "traces.nc"},
            {"processed": d / "processed.nc"},
            {"baseline": {"window_s": 20.0}},
            None,
        )
        out.append(d)
    return out


def test_stages_chain_to_metrics(processed, tmp_path):
    ds = read(processed[0] / "processed.nc", "calcium_traces")
    assert {"dff", "events", "baseline"} <= set(ds.data_vars)
    assert provenance_of(ds)["stage"] == "preprocess_calcium"
    tensor = tmp_path / "tensor.zarr"
    build_connectome_tensor.run(
        {"processed": [d / "processed.nc" for d in processed]},
        {"tensor": tensor},
        {"affinity": {"name": "softthresh_dcorr", "window_s": 5.0, "stride_s": 2.5}},
        None,
    )
    fit = tmp_path / "fit.nc"
    fit_connectome.run(
        {"tensor": tensor}, {"fit": fit}, {"ranks": [1, 2, 3], "restarts": 3, "device": "cpu"}, None
    )
    f = read(fit, "model_fit")
    assert f.attrs["selected_rank"] == 2 and f.attrs["device"] == "cpu"
    metrics = tmp_path / "metrics.nc"
    evaluate_connectome.run(
        {"fit": fit, "tensor": tensor, "truths": [d / "truth.nc" for d in processed]},
        {"metrics": metrics},
        {"bars": {"factor_match_score": 0.8}, "study": "s"},
        None,
    )
    m = read(metrics, "metrics")
    assert int(m["passed"].sel(metric="factor_match_score")) == 1
    assert float(m["value"].sel(metric="community_jaccard_min")) >= 0.75
    assert len(provenance_of(m)["inputs"]) == 4


def test_events_to_counts_stage(processed, tmp_path):
    out = tmp_path / "counts.nc"
    calcium_counts.run(
        {"processed": processed[0] / "processed.nc"},
        {"counts": out},
        {
            "bin_width_s": 0.2,
            "split": {"fractions": {"train": 0.6, "validation": 0.2, "test": 0.2}, "n_blocks": 3},
        },
        None,
    )
    c = read(out, "spike_counts")
    assert c.sizes["time"] == 600 and float(c.attrs["bin_width_s"]) == pytest.approx(0.2)


def test_window_longer_than_recording_leaves_nothing(processed, tmp_path):
    tensor = tmp_path / "tensor.zarr"
    with pytest.raises(
        InputError, match=r"affinity window 500\.0 s \(5000 frames\) is longer than the recording"
    ):
        build_connectome_tensor.run(
            {"processed": [d / "processed.nc" for d in processed]},
            {"tensor": tensor},
            {"affinity": {"window_s": 500.0}},
            None,
        )
    assert list(tmp_path.iterdir()) == []


def test_unknown_fit_parameter_is_one_line(processed, tmp_path):
    with pytest.raises(ConfigError, match=r"connectome: unknown parameter\(s\) rank "):
        fit_connectome.run(
            {"tensor": processed[0] / "processed.nc"}, {"fit": tmp_path / "f.nc"}, {"rank": 3}, None
        )


# ---- config cross-checks -----------------------------------------------------------------------------------
def _cfg(**changes):
    cfg = copy.deepcopy(TINY)
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


BAD = {
    "from_calcium_unknown": (
        {"spikes.datasets.tinyca.from_calcium": "nope"},
        r"key 'spikes\.datasets\.tinyca\.from_calcium': no calcium dataset named 'nope' \(allowed: tinyca_a1, tinyca_a2\)",
    ),
    "two_sources": (
        {"spikes.datasets.tinyca.path": "x.csv"},
        r"key 'spikes\.datasets\.tinyca' needs exactly one of 'simulate', 'path' or 'from_calcium'",
    ),
    "study_member": (
        {"calcium.connectome.studies.tinyconn.datasets": ["tinyca_a1", "tinyca_a9"]},
        r"key 'calcium\.connectome\.studies\.tinyconn\.datasets': no calcium dataset named 'tinyca_a9'",
    ),
    "calcium_path": (
        {"calcium.datasets.rec": {"path": "no/such/plane0"}},
        r"key 'calcium\.datasets\.rec\.path' points to 'no/such/plane0', which does not exist",
    ),
    "sim_param": (
        {"calcium.datasets.tinyca_a1.simulate.params.n_neuron": 3},
        r"key 'calcium\.datasets\.tinyca_a1\.simulate\.params': .*unknown parameter\(s\) n_neuron",
    ),
    "sim_and_rate": (
        {"calcium.datasets.tinyca_a1.frame_rate_hz": 30},
        r"'format', 'options' and 'frame_rate_hz' go with 'path', not 'simulate'",
    ),
    "affinity_name": (
        {"calcium.connectome.affinity.name": "granger"},
        r"key 'calcium\.connectome\.affinity\.name': 'granger' is not allowed \(allowed values: softthresh_dcorr, pos_corr, coactivation\)",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_calcium_config_is_one_line(name):
    changes, pattern = BAD[name]
    with pytest.raises(ConfigError, match=pattern) as err:
        validate_config(
            _cfg(**changes),
            REPO / "workflow" / "schemas" / "config.schema.yaml",
            source="study.yaml",
            base_dir=REPO,
            check_paths=name == "calcium_path",
        )
    assert "\n" not in str(err.value) and str(err.value).startswith("study.yaml: ")


def test_defaults_fill_in():
    cfg = validate_config({"calcium": {"datasets": {}}}, REPO / "workflow" / "schemas" / "config.schema.yaml")
    ca = cfg["calcium"]
    assert ca["preprocess"]["neuropil_coef"] == 0.7 and ca["preprocess"]["baseline"]["percentile"] == 10.0
    assert (
        ca["connectome"]["model"]["ranks"] == [2, 3, 4, 5]
        and ca["connectome"]["affinity"]["name"] == "softthresh_dcorr"
    )
