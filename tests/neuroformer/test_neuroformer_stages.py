"""Neuroformer stages: pretrain -> finetune -> evaluate on a tiny simulated hub network; outputs under their
contracts with provenance; the report section; bad input stops a stage with one line and leaves nothing."""

from __future__ import annotations

import numpy as np
import pytest

from brainpipe.data import make_provenance, provenance_of, read, write
from brainpipe.errors import ConfigError, InputError
from brainpipe.preprocess import bin_spikes
from brainpipe.simulate import simulate
from brainpipe.stages import neuroformer_evaluate, neuroformer_finetune, neuroformer_pretrain

TRAIN = {"max_epochs": 2, "batch_size": 32, "lr": 0.003, "patience": None, "device": "cpu", "progress": False}
PARAMS = {
    "tokenizer": {
        "dt_s": 0.01,
        "window_s": 0.02,
        "past_window_s": 0.04,
        "block_size": 16,
        "past_block_size": 24,
    },
    "model": {"d_model": 16, "n_heads": 2, "n_layers": 1, "dropout": 0.0},
    "pretrain": TRAIN,
    "finetune": {**TRAIN, "fractions": [0.1, 1.0], "scratch": True, "max_steps": 15},
    "evaluate": {"n_samples": 2, "max_windows": 40},
    "modalities": {"flash": {"source": "behaviour", "variables": ["flash"]}},
    "target": {"source": "behaviour", "variable": "speed"},
    "bars": {"connectivity_auroc_xcorr": 0.5},
    "seed": 0,
    "dataset": "hub",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("nf") / "hub"
    sim = simulate(
        "hub_network",
        {
            "n_neurons": 6,
            "n_hubs": 1,
            "hub_out_degree": 3,
            "n_other_connections": 1,
            "duration_s": 40.0,
            # rate-matched hubs no longer lift their targets' rates: a strong speed drive keeps it decodable
            "behaviour_fraction": 0.8,
            "stimulus_fraction": 0.0,
            "behaviour_weight_min": 1.0,
            "behaviour_weight_max": 1.5,
            "rate_min_hz": 10.0,
            "rate_max_hz": 20.0,
        },
        seed=0,
    )
    prov = make_provenance("test", {})
    write(bin_spikes(sim.data, 0.01, n_blocks=2), d / "counts.nc", "spike_counts", prov)
    write(sim.truth, d / "truth.nc", "model_fit", prov)
    nf = d / "neuroformer"
    neuroformer_pretrain.run(
        {"counts": d / "counts.nc"},
        {"model": nf / "pretrained.nc"},
        {**PARAMS, "checkpoint": str(d / "ck" / "pre.pt")},
    )
    neuroformer_finetune.run(
        {"counts": d / "counts.nc", "pretrained": nf / "pretrained.nc"},
        {"finetune": nf / "finetune.nc"},
        {**PARAMS, "checkpoint": str(d / "ck" / "ft.pt")},
    )
    neuroformer_evaluate.run(
        {
            "counts": d / "counts.nc",
            "pretrained": nf / "pretrained.nc",
            "finetune": nf / "finetune.nc",
            "truth": d / "truth.nc",
        },
        {"metrics": nf / "metrics.nc", "connectivity": nf / "connectivity.nc"},
        PARAMS,
    )
    return d


def test_outputs_validate_with_provenance(run_dir):
    nf = run_dir / "neuroformer"
    pre = read(nf / "pretrained.nc", "model_fit")
    assert pre.attrs["model"] == "neuroformer" and pre.attrs["vocab_id"] == 9 and "history_val_loss" in pre
    assert pre.attrs["tokens_n_windows"] > 0 and provenance_of(pre)["stage"] == "neuroformer_pretrain"
    assert not list((run_dir / "ck").glob("*.pt"))  # checkpoints removed on success
    ft = read(nf / "finetune.nc", "model_fit")
    assert list(ft["run"].values) == [
        "pretrained_10pct",
        "scratch_10pct",
        "pretrained_100pct",
        "scratch_100pct",
    ]
    assert set(np.unique(ft["window_split"].values)) == {1, 2}
    conn = read(nf / "connectivity.nc", "model_fit")
    assert conn["attention"].dims == ("unit_post", "unit_pre") and conn.sizes["unit_post"] == 6
    m = read(nf / "metrics.nc", "metrics")
    names = set(m["metric"].values)
    expected = {
        "connectivity_auroc",
        "connectivity_auroc_xcorr",
        "connectivity_auroc_glm",
        "hub_recall",
        "generation_f1",
        "generation_f1_glm",
        "decode_r2_pretrained_10pct",
        "decode_r2_scratch_100pct",
        "decode_r2_ridge_10pct",
        "decode_r2_ridge_history_10pct",
        "decode_r2_baseline_100pct",
        "decode_r2_pretrained_vs_scratch_10pct",
        "connectivity_direction",
        "connectivity_auroc_vs_xcorr",
        "hub_recall_rate",
        "hub_recall_vs_rate",
        "pretrain_test_loss",
    }
    assert expected <= names
    assert int(m["passed"].sel(metric="connectivity_auroc_xcorr")) == 1  # a bar from params
    assert all(d for d in m["description"].values)
    # planted lags are there to find (the shared speed drive adds correlations: 0.80 at this size)
    assert float(m["value"].sel(metric="connectivity_auroc_xcorr")) > 0.7
    assert float(m["value"].sel(metric="decode_r2_ridge_100pct")) > 0.2


def test_report_section(run_dir):
    from brainpipe.report.neuroformer import sections

    nf = run_dir / "neuroformer"
    secs = sections(
        {
            "metrics": [nf / "metrics.nc"],
            "connectivity": [nf / "connectivity.nc"],
            "pretrained": [nf / "pretrained.nc"],
            "finetune": [nf / "finetune.nc"],
            "truths": [run_dir / "truth.nc"],
        }
    )
    assert len(secs) == 1 and secs[0].anchor == "neuroformer" and secs[0].metrics == [nf / "metrics.nc"]
    assert "data:image/png;base64," in secs[0].html and "connectivity_auroc" in secs[0].html


def test_finetune_on_other_units_names_both_vocabulary_sizes_and_leaves_nothing(run_dir, tmp_path):
    sim = simulate(
        "hub_network",
        {"n_neurons": 8, "n_hubs": 1, "hub_out_degree": 3, "n_other_connections": 1, "duration_s": 20.0},
        seed=1,
    )
    other = write(
        bin_spikes(sim.data, 0.01, n_blocks=2),
        tmp_path / "o" / "counts.nc",
        "spike_counts",
        make_provenance("t", {}),
    )
    out = tmp_path / "o" / "neuroformer" / "finetune.nc"
    with pytest.raises(
        InputError,
        match=r"vocabulary mismatch: the checkpoint's ID vocabulary has 9 tokens \(6 units \+ 3 special\) but the data give 11 \(8 units",
    ):
        neuroformer_finetune.run(
            {"counts": other, "pretrained": run_dir / "neuroformer" / "pretrained.nc"},
            {"finetune": out},
            PARAMS,
        )
    assert not out.exists()


def test_unknown_model_key_and_missing_target(run_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"neuroformer model: unknown key\(s\) d_modle"):
        neuroformer_pretrain.run(
            {"counts": run_dir / "counts.nc"},
            {"model": tmp_path / "p.nc"},
            {**PARAMS, "model": {"d_modle": 8}},
        )
    with pytest.raises(ConfigError, match="has no decoding target"):
        neuroformer_finetune.run(
            {"counts": run_dir / "counts.nc", "pretrained": run_dir / "neuroformer" / "pretrained.nc"},
            {"finetune": tmp_path / "f.nc"},
            {**PARAMS, "target": None},
        )
    assert not (tmp_path / "p.nc").exists() and not (tmp_path / "f.nc").exists()


def test_modality_missing_from_the_counts_is_one_line(run_dir, tmp_path):
    params = {**PARAMS, "modalities": {"speed2": {"source": "stimulus", "variables": ["contrast"]}}}
    with pytest.raises(
        InputError,
        match=r"counts.nc: modality 'speed2' needs variable 'stimulus', which this counts file does not have",
    ):
        neuroformer_pretrain.run({"counts": run_dir / "counts.nc"}, {"model": tmp_path / "p.nc"}, params)


def test_verdict_says_whether_it_beats_each_baseline_and_by_how_much():
    from brainpipe.report.neuroformer import verdict

    v = {
        "decode_r2_pretrained_1pct": 0.30,
        "decode_r2_scratch_1pct": 0.40,
        "decode_r2_baseline_1pct": 0.20,
        "connectivity_auroc": 0.9,
        "connectivity_auroc_xcorr": 0.95,
        "hub_recall": float("nan"),
        "hub_recall_rate": 0.3,
    }
    s = verdict("sim", v)
    assert "1% of labels: 0.300 vs the best linear decoder 0.200, beats it (+0.100)" in s
    assert "converged scratch 0.400, does not beat it (-0.100)" in s
    assert "lagged cross-correlation 0.950, does not beat it (-0.050)" in s
    assert "hub recall" not in s and s.startswith("sim (one pretraining seed")
    assert verdict("sim", {"generation_f1": 0.5}) == ""


def test_report_states_what_the_validation_split_chose():
    import xarray as xr

    from brainpipe.report.neuroformer import choices

    pre = xr.Dataset(
        attrs={
            "contrastive_grid": "[0.0, 0.2]",
            "contrastive_grid_val_token_loss": "[3.14, 3.15]",
            "contrastive_weight": 0.0,
        }
    )
    conn = xr.Dataset(
        attrs={
            "attention_readout": "rollout/target/rows",
            "attention_readout_candidates": '["rollout/target", "rollout/target/rows"]',
            "attention_readout_validation_auroc": "[0.845, 0.872]",
        }
    )
    s = choices(pre, conn)
    assert "contrastive weight 0 (validation next-token loss per weight, nats: 0: 3.1400, 0.2: 3.1500)" in s
    assert "attention read-out rollout/target/rows (validation AUROC per read-out: rollout/target: 0.845" in s
    assert choices(xr.Dataset(), None) == ""
    ft = xr.Dataset(
        attrs={
            "finetune_options": '["full", "probe"]',
            "label_draws": 3,
            "finetune_selection": '{"pretrained_1pct": {"chosen": "probe", "val_loss": {"full": 0.49, "probe": 0.44}}}',
        }
    )
    s = choices(None, None, ft)
    assert s == (
        "Chosen on the validation split: fine-tuning option per start and label fraction (validation behaviour "
        "loss per option, mean over up to 3 label draws: pretrained 1%: probe (full 0.4900, probe 0.4400))."
    )
    assert choices(None, None, ft.assign_attrs(finetune_options='["full"]')) == ""
