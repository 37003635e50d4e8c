"""Neuroformer fine-tuning options (issue 15): linear probe, probe then fine-tune, learning-rate factors, chosen per
start and label fraction on the validation windows, over several label draws (tiny sizes, a few seconds each)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError
from brainpipe.models.neuroformer import Neuroformer, label_subset
from neuroformer_tiny import TRAIN, tiny_params, tiny_pretrained

PARAMS = tiny_params(
    TRAIN,
    modalities={},
    target={"source": "behaviour", "variable": "speed"},
)


@pytest.fixture(scope="module")
def pretrained():
    return tiny_pretrained(PARAMS)


def test_label_draws_are_shifted_evenly_spaced_grids():
    idx = np.arange(1000) * 3
    draws = [label_subset(idx, 0.02, draw=d, n_draws=3) for d in range(3)]
    assert draws[0].tolist() == label_subset(idx, 0.02).tolist()  # draw 0: the grid of one draw
    assert all(d.size == 20 and np.unique(d).size == 20 and np.isin(d, idx).all() for d in draws)
    assert not set(draws[0]) & set(draws[1]) and not set(draws[1]) & set(draws[2])
    gaps = np.diff(draws[2])
    assert gaps.min() >= 3 * 49 and gaps.max() <= 3 * 51  # evenly spread over the train windows
    assert label_subset(idx, 1.0, draw=2, n_draws=3).tolist() == idx.tolist()
    with pytest.raises(ConfigError, match=r"label draw 3 must be in \[0, n_draws=3\)"):
        label_subset(idx, 0.1, draw=3, n_draws=3)


def test_probe_fits_the_head_alone_on_validation_chosen_penalty(pretrained):
    counts, pre = pretrained
    model = Neuroformer.from_dataset(pre, counts)
    model.set_target(counts, PARAMS["target"])
    before = {k: v.clone() for k, v in model.net_.state_dict().items()}
    model.fit_behaviour(counts, 0.5, mode="probe", min_epoch_windows=64)
    after = model.net_.state_dict()
    changed = {k for k in before if not np.array_equal(before[k].numpy(), after[k].numpy())}
    assert changed == {"head_behaviour.1.weight", "head_behaviour.1.bias"}  # the network is frozen
    assert model.finetune_history_ == [] and model.finetune_result_.steps == 0
    assert model.probe_["alpha"] in np.logspace(-2, 4, 7)
    # the probe's own validation loss (numpy) is the network's behaviour loss with the fitted head
    assert model.validation_loss_ == pytest.approx(model.probe_["val_loss"], rel=1e-4)
    with pytest.raises(ConfigError, match=r"mode='linear' is not one of full, probe, lpft"):
        model.fit_behaviour(counts, 0.5, mode="linear")


def test_options_are_chosen_per_start_on_validation_and_scored_over_draws(pretrained, monkeypatch):
    from brainpipe.evaluate.neuroformer import decoding_metrics, r2_score
    from brainpipe.training.neuroformer import finetune_neuroformer, parse_option, run_labels

    counts, pre = pretrained
    seen_splits = []
    real = Neuroformer._behaviour_val_loss

    def spy(self, win, kind, cw):
        seen_splits.extend(np.unique(win.split).tolist())
        return real(self, win, kind, cw)

    monkeypatch.setattr(Neuroformer, "_behaviour_val_loss", spy)
    cfg = {**TRAIN, "max_epochs": 1}
    ft, decoder = finetune_neuroformer(
        counts,
        pre,
        PARAMS["target"],
        cfg,
        [0.2, 1.0],
        [0.2],
        min_epoch_windows=32,
        options=["probe", "lpft/0.5"],
        label_draws=2,
    )
    assert seen_splits and set(seen_splits) == {
        SPLIT_FLAGS["validation"]
    }  # the choice never sees test windows
    assert list(ft["run"].values) == run_labels([0.2, 1.0], [0.2], ["probe", "lpft/0.5"], 2)
    assert (
        ft["run"].values[0] == "pretrained_20pct_probe_d0"
        and ft["run"].values[-1] == "pretrained_100pct_lpftx0.5_d0"
    )
    sel = json.loads(ft.attrs["finetune_selection"])
    for key, (init, frac) in {
        "pretrained_20pct": ("pretrained", 0.2),
        "scratch_20pct": ("scratch", 0.2),
    }.items():
        rows = (ft["run_init"].values == init) & (ft["run_fraction"].values == frac)
        means = {
            o: ft["run_val_loss"].values[rows & (ft["run_option"].values == o)].mean()
            for o in ("probe", "lpft/0.5")
        }
        best = min(means, key=means.get)
        assert sel[key]["chosen"] == best
        assert (ft["run_chosen"].values[rows] == (ft["run_option"].values[rows] == best)).all()
        assert sorted(ft["run_draw"].values[rows & (ft["run_option"].values == best)].tolist()) == [0, 1]
    # the decoder kept is the chosen option's pretrained run with all labels; the metric is the mean over draws
    assert decoder.validation_loss_ == pytest.approx(
        float(
            ft["run_val_loss"].values[(ft["run_chosen"].values == 1) & (ft["run_fraction"].values == 1.0)][0]
        )
    )
    te = ft["window_split"].values == SPLIT_FLAGS["test"]
    y = ft["target"].values[te]
    rows = (ft["run_chosen"].values == 1) & (ft["run_init"].values == "scratch")
    expect = np.mean([r2_score(y, p[te]) for p in ft["prediction"].values[rows]])
    m = decoding_metrics(ft, counts, Neuroformer.from_dataset(pre, counts))
    assert m["decode_r2_scratch_20pct"] == pytest.approx(expect)
    assert {"decode_r2_pretrained_vs_scratch_20pct", "decode_r2_baseline_20pct"} <= set(m)
    assert parse_option("full") == ("full", 1.0) and parse_option("lpft/0.1") == ("lpft", 0.1)
    for bad in ("linear", "full/0", "full/x"):
        with pytest.raises(ConfigError, match=r"finetune.options: .* is not <mode>\[/<lr factor>\]"):
            parse_option(bad)
    with pytest.raises(ConfigError, match=r"finetune.options: \['full', 'full'\] must list"):
        finetune_neuroformer(counts, pre, PARAMS["target"], cfg, [1.0], False, options=["full", "full"])
