"""Neuroformer's decoding baselines see the model's inputs (issue 15): with modality variables, the counts decoders
get them too and a decoder from them alone is added; without, neither. Hand-built data, no network: a second each."""

from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError
from brainpipe.evaluate import neuroformer as evn
from brainpipe.evaluate.neuroformer_baselines import (
    decoding_features,
    history_features,
    modality_features,
    window_features,
)
from brainpipe.models.neuroformer import SpikeTokenizer

N_UNITS, TRIAL_BINS, N_TRIALS = 4, 30, 30
CONTRAST = {"contrast": {"source": "stimulus", "variables": ["contrast"]}}


def _trials(seed=0):
    """Trials of 30 bins whose outcome depends on the stimulus contrast alone, and not linearly: correct (+1) when
    the contrast is far from 0.5 (0 or 1), wrong (-1) at 0.5; the spikes are noise."""
    rng = np.random.default_rng(seed)
    contrast = np.tile([0.0, 0.5, 1.0], N_TRIALS // 3)
    rng.shuffle(contrast)
    outcome = np.where(np.abs(contrast - 0.5) > 0.25, 1.0, -1.0)
    n = TRIAL_BINS * N_TRIALS
    trial = np.repeat(np.arange(N_TRIALS), TRIAL_BINS)
    flag = np.select(
        [trial < 18, trial < 24], [SPLIT_FLAGS["train"], SPLIT_FLAGS["validation"]], SPLIT_FLAGS["test"]
    )
    stim = np.stack([contrast[trial], outcome[trial]], axis=1)
    return xr.Dataset(
        {
            "counts": (("time", "unit"), rng.poisson(0.3, (n, N_UNITS)).astype(np.int64)),
            "split": ("time", flag.astype(np.int8)),
            "trial": ("time", trial.astype(np.int32)),
            "stimulus": (("time", "stimulus_var"), stim),
        },
        coords={
            "time": 0.005 + 0.01 * np.arange(n),
            "unit": [f"u{i}" for i in range(N_UNITS)],
            "stimulus_var": ["contrast", "feedback_type"],
        },
        attrs={"bin_width_s": 0.01},
    )


def _tokenizer(modalities):
    target = {"source": "stimulus", "variable": "feedback_type", "kind": "classification"}
    return SpikeTokenizer(
        window_s=0.02,
        past_window_s=0.04,
        block_size=16,
        past_block_size=24,
        modalities=modalities,
        target=target,
    )


def _finetune(counts):
    """A fine-tuning result as decoding_metrics reads it: one pretrained run with all labels, predicting perfectly."""
    tok = _tokenizer({}).fit(counts)
    win = tok.transform(counts)
    y = tok.classes_[win.target[:, 0].astype(int)]
    return xr.Dataset(
        {
            "target": ("window", y),
            "window_split": ("window", win.split),
            "prediction": (("run", "window"), y[None]),
        },
        coords={
            "run": ["pretrained_100pct"],
            "run_init": ("run", ["pretrained"]),
            "run_fraction": ("run", [1.0]),
        },
        attrs={
            "target_kind": "classification",
            "target_source": "stimulus",
            "target_variable": "feedback_type",
        },
    )


def test_modality_features_are_window_means_and_their_products():
    m = np.zeros((1, 6, 2))  # past 4 bins, current 2 bins, 2 variables
    m[0, :4] = [1.0, 10.0]
    m[0, 4:] = [[2.0, 3.0], [4.0, 5.0]]  # current means 3, 4
    X = modality_features(m, window_bins=2, past_bins=4)
    assert X.tolist() == [[3.0, 4.0, 1.0, 10.0, 9.0, 12.0, 16.0]]  # cur, past, cur_i * cur_j (i <= j)
    assert modality_features(np.zeros((5, 6, 0)), 2, 4).shape == (5, 0)
    with pytest.raises(
        ValueError, match=r"modality has shape \(1, 5, 2\), expected \(window, .* = 6, variable\)"
    ):
        modality_features(m[:, :5], 2, 4)


def test_decoding_features_add_the_modality_only_when_the_model_has_one():
    counts = _trials()
    y = counts["counts"].values
    for mods in ({}, CONTRAST):
        tok = _tokenizer(mods).fit(counts)
        win = tok.transform(counts)
        feats = decoding_features(y, win.start, win.modality, tok.window_bins_, tok.past_bins_, n_history=2)
        plain = window_features(y, win.start, 2, 4)
        hist = history_features(y, win.start, 2, 4, 2)
        if not mods:
            assert sorted(feats) == ["", "_history"]
            assert np.array_equal(feats[""], plain) and np.array_equal(feats["_history"], hist)
        else:
            mod = modality_features(win.modality, 2, 4)
            assert sorted(feats) == ["", "_history", "_history_inputs", "_inputs", "_modality"]
            assert mod.shape[1] == 3
            # the counts-only sets stay (more inputs must not weaken the validation-chosen best baseline)
            assert np.array_equal(feats[""], plain) and np.array_equal(feats["_history"], hist)
            assert np.array_equal(feats["_inputs"], np.hstack([plain, mod]))
            assert np.array_equal(feats["_history_inputs"], np.hstack([hist, mod]))
            assert np.array_equal(feats["_modality"], mod)
    with pytest.raises(ConfigError, match=r"^neuroformer decoding baselines: n_history=0 must be at least 1"):
        decoding_features(y, win.start, win.modality, 2, 4, n_history=0)
    with pytest.raises(
        ValueError, match=r"decoding_features: \d+ windows of modality values for 3 window starts"
    ):
        decoding_features(y, win.start[:3], win.modality, 2, 4)


@pytest.mark.parametrize("mods", [{}, CONTRAST], ids=["counts", "counts+contrast"])
def test_decoding_metrics_baselines_get_the_models_inputs(mods, monkeypatch):
    """The baseline decoders are fitted on the counts, and with a modality also on the counts with the model's
    modality variables and on these alone (spy on linear_decoder); here, where the outcome follows the contrast
    alone (not linearly), the modality-only decoder decodes every test window; the best baseline is chosen among
    all of them."""
    counts = _trials()
    widths, real = [], evn.linear_decoder

    def spy(X_tr, y_tr, X_va, y_va, X_te, kind, with_score=False):
        widths.append(X_tr.shape[1])
        return real(X_tr, y_tr, X_va, y_va, X_te, kind, with_score)

    monkeypatch.setattr(evn, "linear_decoder", spy)
    model = SimpleNamespace(tokenizer_=_tokenizer(mods))
    m = evn.decoding_metrics(_finetune(counts), counts, model, n_history=2)
    n_mod = 3 if mods else 0  # current mean, past mean, its square
    assert widths == [2 * N_UNITS, (2 + 2) * N_UNITS] + (
        [2 * N_UNITS + n_mod, (2 + 2) * N_UNITS + n_mod, n_mod] if mods else []
    )
    assert m["decode_bacc_pretrained_100pct"] == 1.0
    assert {"decode_bacc_logistic_100pct", "decode_bacc_logistic_history_100pct"} <= set(m)
    if mods:
        assert m["decode_bacc_logistic_modality_100pct"] == 1.0
        assert m["decode_bacc_baseline_100pct"] == pytest.approx(1.0)
        assert "logistic regression on the model's modality variables alone" in evn.describe(
            "decode_bacc_logistic_modality_100pct"
        )
    else:
        assert not any("modality" in k for k in m)
        assert m["decode_bacc_baseline_100pct"] < 0.8  # noise spikes: the outcome is not in them
    assert m["decode_bacc_pretrained_vs_baseline_100pct"] == pytest.approx(
        1.0 - m["decode_bacc_baseline_100pct"]
    )


def test_a_modality_holding_the_target_is_absent_for_the_baselines_too(monkeypatch):
    """The model's decoder sees a modality that holds its target as absent: the baselines must not read it."""
    counts = _trials()
    widths, real = [], evn.linear_decoder

    def spy(X_tr, y_tr, X_va, y_va, X_te, kind, with_score=False):
        widths.append(X_tr.shape[1])
        return real(X_tr, y_tr, X_va, y_va, X_te, kind, with_score)

    monkeypatch.setattr(evn, "linear_decoder", spy)
    outcome = {"outcome": {"source": "stimulus", "variables": ["feedback_type", "contrast"]}}
    tok = _tokenizer({**CONTRAST, **outcome}).fit(counts)
    win = tok.transform(counts)
    assert win.modality.shape[2] == 3 and np.array_equal(
        evn.decoder_modality(win.modality, tok), win.modality[..., :1]
    )
    m = evn.decoding_metrics(_finetune(counts), counts, SimpleNamespace(tokenizer_=tok), n_history=2)
    assert widths == [2 * N_UNITS, 4 * N_UNITS, 2 * N_UNITS + 3, 4 * N_UNITS + 3, 3]  # as with CONTRAST only
    assert m["decode_bacc_logistic_modality_100pct"] == 1.0
    widths.clear()
    evn.decoding_metrics(
        _finetune(counts), counts, SimpleNamespace(tokenizer_=_tokenizer(outcome)), n_history=2
    )
    assert widths == [2 * N_UNITS, 4 * N_UNITS]  # no modality left: no modality-only decoder


def test_verdict_names_the_baselines_inputs():
    from brainpipe.report.neuroformer import verdict

    v = {"decode_bacc_pretrained_100pct": 0.65, "decode_bacc_baseline_100pct": 0.60}
    assert "100% of labels: 0.650 vs the best linear decoder 0.600, beats it (+0.050)" in verdict("s", v)
    s = verdict("s", {**v, "decode_bacc_logistic_modality_100pct": 0.70})
    assert (
        "vs the best linear decoder (binned counts with or without the modality variables, or these alone) 0.600, "
        "beats it (+0.050)" in s
    )
    assert "vs the modality variables alone 0.700, does not beat it (-0.050)" in s
