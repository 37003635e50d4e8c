"""Neuroformer: tokeniser rules, network, save/load, bad input, and learning on planted truth (tiny sizes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from brainpipe.config import validate_config
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError, InputError
from brainpipe.evaluate.metrics import auroc
from brainpipe.evaluate.neuroformer import (
    connectivity_scores,
    direction_accuracy,
    history_features,
    linear_decoder,
    rate_hub_recall,
    set_f1,
    xcorr_connectivity,
)
from brainpipe.models.neuroformer import (
    Neuroformer,
    NeuroformerNet,
    SpikeTokenizer,
    align_modality,
    filter_logits,
    label_subset,
    pretrain_loss,
)
from brainpipe.preprocess import bin_spikes
from brainpipe.simulate import simulate
from neuroformer_tiny import TRAIN, tiny_params

TINY_TRAIN = {
    "max_epochs": 3,
    "batch_size": 32,
    "lr": 3e-3,
    "patience": None,
    "device": "cpu",
    "progress": False,
}


def counts_ds(y: np.ndarray, bw: float = 0.01, split=None, behaviour=None) -> xr.Dataset:
    """A minimal spike_counts dataset from a (time, unit) array."""
    n_t, n_u = y.shape
    ds = xr.Dataset(
        {
            "counts": (("time", "unit"), y.astype(np.uint8), {"units": "1"}),
            "split": ("time", np.zeros(n_t, np.int8) if split is None else np.asarray(split, np.int8)),
        },
        coords={
            "time": ("time", (np.arange(n_t) + 0.5) * bw, {"units": "s"}),
            "unit": [f"u{i}" for i in range(n_u)],
        },
        attrs={"bin_width_s": bw},
    )
    if behaviour is not None:
        b = np.asarray(behaviour, float).reshape(n_t, -1)
        ds["behaviour"] = (("time", "behaviour_var"), b)
        ds = ds.assign_coords(behaviour_var=[f"b{i}" for i in range(b.shape[1])])
    return ds


# ---- tokeniser --------------------------------------------------------------------------------------------------
def test_tokens_time_then_neuron_with_repeats_and_specials():
    y = np.zeros((6, 3), int)
    y[4, 2] = 1
    y[4, 0] = 2  # two spikes of unit 0 in one bin: two tokens
    y[5, 1] = 1
    y[1, 1] = 1  # in the past window
    tok = SpikeTokenizer(dt_s=0.01, window_s=0.02, past_window_s=0.04, block_size=8, past_block_size=4).fit(
        counts_ds(y)
    )
    win = tok.transform(counts_ds(y))
    assert len(win) == 1 and win.start[0] == 4
    sp = tok.special()
    assert (sp["sos"], sp["eos"], sp["pad"]) == (3, 4, 5) and tok.vocab == {
        "id": 6,
        "dt": 4 + 3,
        "n_units": 3,
    }
    assert win.cur_id[0].tolist() == [3, 0, 0, 2, 1, 4, 5, 5]
    assert win.cur_dt[0].tolist() == [sp["sos_dt"], 0, 0, 0, 1, sp["eos_dt"], sp["pad_dt"], sp["pad_dt"]]
    assert (
        win.past_id[0].tolist() == [3, 1, 5, 5] and win.past_dt[0, 1] == 1
    )  # bin 1 of the past window (bins 0..3)
    assert win.window_counts[0].tolist() == [2, 1, 1]


def test_truncation_keeps_earliest_and_is_counted_and_empty_windows_are_sos_eos():
    y = np.zeros((20, 2), int)
    y[5:10] = 3  # 30 spikes in the window of bins 5..9
    tok = SpikeTokenizer(dt_s=0.01, window_s=0.05, past_window_s=0.05, block_size=10, past_block_size=4)
    win = tok.fit(counts_ds(y)).transform(counts_ds(y))
    assert len(win) == 3  # windows start at bins 5, 10, 15
    assert tok.stats_["n_truncated_windows"] == 1 and tok.stats_["n_dropped_spikes"] == 30 - 9
    assert win.cur_id[0, 1:].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0]  # the earliest 9 spikes, no EOS
    assert win.cur_dt[0, 1:].tolist() == [0] * 6 + [1] * 3
    sp = tok.special()
    assert (
        win.cur_id[2, :3].tolist() == [sp["sos"], sp["eos"], sp["pad"]] and tok.stats_["n_empty_windows"] == 2
    )
    # the past of window 2 (bins 10..14) is empty; of window 1 (bins 5..9): 30 spikes, the latest 3 kept
    assert win.past_id[2].tolist() == [sp["sos"], sp["pad"], sp["pad"], sp["pad"]]
    assert tok.stats_["n_past_truncated_windows"] == 1 and win.past_dt[1, 1:].tolist() == [4, 4, 4]


def test_windows_stay_inside_split_blocks():
    rng = np.random.default_rng(0)
    split = np.repeat([0, 1, 0, 2], 25)
    y = rng.poisson(0.3, (100, 4))
    tok = SpikeTokenizer(dt_s=0.01, window_s=0.03, past_window_s=0.05, block_size=32, past_block_size=32)
    win = tok.fit(counts_ds(y, split=split)).transform(counts_ds(y, split=split))
    for s0, sp in zip(win.start, win.split, strict=True):
        assert np.all(split[s0 - 5 : s0 + 3] == sp)  # past + current inside one block
    assert set(win.split.tolist()) == {0, 1, 2}


def test_rebin_by_integer_factor_and_clear_error_otherwise():
    y = np.zeros((12, 2), int)
    y[8, 0] = y[11, 1] = 1
    tok = SpikeTokenizer(dt_s=0.02, window_s=0.04, past_window_s=0.08, block_size=6, past_block_size=4)
    win = tok.fit(counts_ds(y)).transform(counts_ds(y))
    assert tok.rebin_ == 2 and win.cur_dt[0, 1:3].tolist() == [0, 1]  # bins 8 and 11 -> dt 0 and 1 (20 ms)
    with pytest.raises(
        ConfigError, match=r"dt_s=0.015 s is not an integer multiple of the counts' bin width 0.01 s"
    ):
        SpikeTokenizer(dt_s=0.015, window_s=0.03, past_window_s=0.03).fit(counts_ds(y))


def test_label_subset_is_evenly_spaced_train_windows():
    idx = np.r_[0:50, 60:110]
    sub = label_subset(idx, 0.1)
    assert sub.size == 10 and set(sub) <= set(idx) and sub[0] == 0 and sub[-1] == 109
    assert np.all(np.diff(sub) >= 10)
    assert label_subset(idx, 1.0).tolist() == idx.tolist() and label_subset(idx, 0.01).size == 8


# ---- bad input ------------------------------------------------------------------------------------------------
def test_modality_not_covering_the_spikes_is_one_line():
    t_bins = np.arange(0, 100) * 0.01 + 0.005
    speed = xr.DataArray(np.ones((50, 1)), dims=("t", "var"), coords={"t": np.arange(50) * 0.01})
    with pytest.raises(
        InputError, match=r"modality 'speed' covers 0.000-0.490 s but the spike data span 0.005-0.995 s"
    ):
        align_modality(speed, t_bins, "speed", "beh.nc")
    ok = xr.DataArray(np.arange(120.0)[:, None], dims=("t", "var"), coords={"t": np.arange(120) * 0.01})
    assert np.allclose(align_modality(ok, t_bins, "speed")[:, 0], t_bins * 100)
    bad = ok.copy()
    bad[3, 0] = np.nan
    with pytest.raises(InputError, match="modality 'speed' has NaN"):
        align_modality(bad, t_bins, "speed")


def test_behaviour_with_nans_is_one_line():
    y = np.ones((40, 2), int)
    beh = np.ones(40)
    beh[7] = np.nan
    tok = SpikeTokenizer(window_s=0.02, past_window_s=0.02, target={"source": "behaviour", "variable": "b0"})
    with pytest.raises(
        InputError, match=r"x.nc: target \(behaviour b0\) has NaN or infinite values in 1 bin"
    ):
        tok.fit(counts_ds(y, behaviour=beh), "x.nc")
    tok = SpikeTokenizer(
        window_s=0.02, past_window_s=0.02, modalities={"speed": {"source": "behaviour", "variables": ["b9"]}}
    )
    with pytest.raises(
        InputError, match=r"modality 'speed' names behaviour variable\(s\) b9 not in the file \(it has b0\)"
    ):
        tok.fit(counts_ds(y, behaviour=np.ones(40)), "x.nc")


def _cfg(**nf):
    return {
        "spikes": {
            "datasets": {"sim": {"simulate": {"generator": "hub_network", "params": {"n_neurons": 12}}}}
        },
        "neuroformer": {"modalities": {"flash": {"source": "behaviour", "variables": ["flash"]}}, **nf},
    }


def test_config_cross_checks():
    validate_config(
        _cfg(
            datasets={
                "sim": {"modalities": ["flash"], "target": {"source": "behaviour", "variable": "speed"}}
            }
        )
    )
    with pytest.raises(
        ConfigError,
        match=r"neuroformer.datasets.sim.modalities': unknown modality 'speeed' \(defined in neuroformer.modalities: flash\)",
    ):
        validate_config(_cfg(datasets={"sim": {"modalities": ["speeed"]}}))
    with pytest.raises(ConfigError, match=r"no spike dataset named 'other' \(allowed: sim\)"):
        validate_config(_cfg(datasets={"other": {}}))
    with pytest.raises(
        ConfigError, match="is also in input modality 'flash', so the decoder would see its own target"
    ):
        validate_config(
            _cfg(
                datasets={
                    "sim": {"modalities": ["flash"], "target": {"source": "behaviour", "variable": "flash"}}
                }
            )
        )
    with pytest.raises(ConfigError, match=r"unknown key 'neuroformer.model.d_modle'"):
        validate_config(_cfg(model={"d_modle": 3}))


# ---- network, save/load, vocabulary ----------------------------------------------------------------------------
def _sim_counts(n=6, duration=40.0, seed=0, **params):
    sim = simulate(
        "hub_network",
        {
            "n_neurons": n,
            "n_hubs": 1,
            "hub_out_degree": 3,
            "n_other_connections": 1,
            "duration_s": duration,
            **params,
        },
        seed=seed,
    )
    return bin_spikes(sim.data, 0.01, n_blocks=2), sim.truth


def _tiny(**kw):
    tok = SpikeTokenizer(
        window_s=0.02,
        past_window_s=0.04,
        block_size=16,
        past_block_size=24,
        modalities={"flash": {"source": "behaviour", "variables": ["flash"]}},
        target=kw.pop("target", None),
    )
    return Neuroformer(
        tok, d_model=16, n_heads=2, n_layers=1, dropout=0.0, train=TINY_TRAIN, finetune=TINY_TRAIN, **kw
    )


def test_zero_spike_windows_give_finite_loss():
    y = np.zeros((60, 3), int)
    ds = counts_ds(y, split=np.repeat([0, 1, 2], 20), behaviour=np.zeros(60))
    m = _tiny()
    m.tokenizer.modalities = {}
    m.tokenizer_ = m.tokenizer.fit(ds)
    net = m._build()
    win = m.tokenizer_.transform(ds)
    assert m.tokenizer_.stats_["n_empty_windows"] == len(win) > 0
    out = pretrain_loss(net, win.tensors())
    assert torch.isfinite(out["loss"])


def test_save_load_roundtrip_and_vocabulary_mismatch_names_both_sizes(tmp_path):
    counts, _ = _sim_counts()
    m = _tiny()
    m.tokenizer_ = m.tokenizer.fit(counts)
    m.net_ = m._build().eval()
    ds = m.to_dataset()
    path = tmp_path / "m.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    back = Neuroformer.from_dataset(xr.open_dataset(path, engine="h5netcdf").load(), counts)
    win = m.tokenizer_.transform(counts)
    b = [t[:4] for t in win.tensors()]
    with torch.no_grad():
        a1 = m.net_(b[0][:, :-1], b[1][:, :-1], b[2], b[3], b[4])["id_logits"]
        a2 = back.net_(b[0][:, :-1], b[1][:, :-1], b[2], b[3], b[4])["id_logits"]
    assert torch.equal(a1, a2)
    other, _ = _sim_counts(n=7)
    with pytest.raises(
        InputError,
        match=r"m.nc: vocabulary mismatch: the checkpoint's ID vocabulary has 9 tokens \(6 units \+ 3 special\) but the data give 10 \(7 units \+ 3\)",
    ):
        Neuroformer.from_dataset(ds, other, source=str(path))
    renamed = counts.assign_coords(unit=[f"x{i}" for i in range(6)])
    with pytest.raises(InputError, match="same size \\(9 ID tokens\\) but different units"):
        Neuroformer.from_dataset(ds, renamed)


def test_sdpa_matches_explicit_attention():
    torch.manual_seed(0)
    net = NeuroformerNet(
        n_id=8,
        n_dt=7,
        block_size=10,
        past_block_size=6,
        modality_dims=[2],
        modality_len=5,
        d_model=16,
        n_heads=2,
        n_layers=2,
        dropout=0.0,
    ).eval()
    ids = torch.randint(0, 5, (3, 9))
    dts = torch.randint(0, 4, (3, 9))
    pid = torch.randint(0, 5, (3, 6))
    pid[:, 4:] = 7  # PAD
    pdt = torch.randint(0, 4, (3, 6))
    mod = torch.randn(3, 5, 2)
    with torch.no_grad():
        a = net(ids, dts, pid, pdt, mod)
        b = net(ids, dts, pid, pdt, mod, need_weights=True)
    assert torch.allclose(a["id_logits"], b["id_logits"], atol=1e-5)
    past = b["attention"]["past"][0]
    assert past.shape == (3, 2, 9, 6) and torch.all(past[..., 4:] == 0)  # PAD keys get no attention
    assert torch.allclose(b["attention"]["self"][0].triu(1), torch.zeros(1))  # causal


def test_cached_decoding_gives_the_forward_logits_and_top_k_top_p():
    torch.manual_seed(0)
    net = NeuroformerNet(
        8, 6, 9, 6, modality_dims=[2], modality_len=5, d_model=16, n_heads=2, n_layers=2
    ).eval()
    ids, dts = torch.randint(0, 7, (3, 8)), torch.randint(0, 5, (3, 8))
    pid, pdt = torch.randint(0, 7, (3, 6)), torch.randint(0, 5, (3, 6))
    pid[1, 3:] = 7  # PAD keys are masked in both paths
    mod = torch.randn(3, 5, 2)
    with torch.no_grad():
        full = net(ids, dts, pid, pdt, mod)
        cache = net.init_cache(pid, pdt, mod)
        steps = [net.step(ids[:, t], dts[:, t], cache) for t in range(8)]
    for key in ("id_logits", "dt_logits"):
        cached = torch.stack([o[key] for o in steps], 1)
        assert torch.allclose(cached, full[key], atol=1e-5), key
    assert cache["self"][0]["k"].shape == (3, 2, 8, 8)  # (batch, head, position, d_head)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.1)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_logits(logits)).all()


# ---- learning on planted truth ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    # a strong speed drive on most non-hubs, so that a 60 ms window carries the speed (ridge R2 about 0.84)
    counts, truth = _sim_counts(
        n=6,
        duration=60.0,
        behaviour_fraction=0.8,
        stimulus_fraction=0.0,
        behaviour_weight_min=1.0,
        behaviour_weight_max=1.5,
        rate_min_hz=10,
        rate_max_hz=20,
    )
    m = _tiny(target={"source": "behaviour", "variable": "speed"})
    m.train = {**TINY_TRAIN, "max_epochs": 4}
    m.fit(counts)
    return m, counts, truth


def test_pretraining_beats_the_unigram_and_finds_connections(trained):
    m, counts, truth = trained
    win = m.tokenizer_.transform(counts)
    te = win.select(win.split == SPLIT_FLAGS["test"])
    tr = win.select(win.split == SPLIT_FLAGS["train"])
    with torch.no_grad():
        loss = pretrain_loss(m.net_, te.tensors())
    # unigram baseline: token frequencies of the train windows (ID and dt), cross-entropy on the test windows
    ce = 0.0
    for x_tr, x_te, pad in ((tr.cur_id, te.cur_id, m.net_.pad_id), (tr.cur_dt, te.cur_dt, m.net_.pad_dt)):
        t, s = x_tr[:, 1:].ravel(), x_te[:, 1:].ravel()
        p = np.bincount(t[t != pad], minlength=pad + 1) + 1.0
        p /= p.sum()
        ce += -np.mean(np.log(p[s[s != pad]]))
    assert float(loss["loss_id"] + loss["loss_dt"]) < ce - 0.05
    A = m.connectivity(counts, "test")
    auc, _ = connectivity_scores(A, truth["connected"].values, None)
    assert auc > 0.7
    # the other read-outs: cross-attention alone, gradient x input (they too find the planted connections)
    for method in ("cross", "grad"):
        M = m.connectivity(counts, "test", method=method, max_windows=200)
        assert M.shape == (6, 6) and np.isfinite(M).all() and not np.allclose(M, A)
        assert connectivity_scores(M, truth["connected"].values, None)[0] > 0.6, method
    # ablation (interventional) and row-centred lift: each post neuron's off-diagonal log-lift averages 0
    D = m.connectivity(counts, "test", method="ablation", max_windows=100)
    assert D.shape == (6, 6) and np.isfinite(D).all() and m.attention_received_.shape == (6,)
    off = ~np.eye(6, dtype=bool)
    C = m.connectivity(counts, "test", centre_rows=True)
    np.testing.assert_allclose(np.where(off, np.log(C), 0).sum(1), 0.0, atol=1e-9)
    shift = np.log(C) - np.log(A)  # a per-row shift of the log-lift
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1], shift.shape), atol=1e-9)
    with pytest.raises(ConfigError, match=r"method='rolout' is not one of rollout, cross, grad"):
        m.connectivity(counts, "test", method="rolout")


def test_finetuned_decoder_recovers_speed(trained):
    m, counts, _ = trained
    m.set_target(counts, {"source": "behaviour", "variable": "speed"})
    m.fit_behaviour(counts, 1.0)
    assert m.score(counts, "test") > 0.5
    win = m.tokenizer_.transform(counts).select(np.arange(10))
    sampled = m.generate(win, n_samples=2)
    assert sampled.shape == (2, 10, 6) and sampled.sum() > 0
    np.testing.assert_array_equal(m.generate(win, n_samples=2, use_cache=False), sampled)  # same draws
    greedy = m.generate(win, n_samples=2, top_k=1, seed=1)
    np.testing.assert_array_equal(greedy[0], greedy[1])  # top-1: deterministic
    with pytest.raises(ConfigError, match="top_p=1.5 must be in"):
        m.generate(win, top_p=1.5)


# ---- evaluation helpers ---------------------------------------------------------------------------------------
def test_set_f1_and_xcorr_on_planted_lag():
    true = np.array([[1, 0, 2], [0, 0, 0]])
    assert set_f1(true, np.array([[[1, 0, 1], [0, 0, 0]]])) == 1.0
    assert set_f1(true, np.array([[[0, 1, 1], [1, 0, 0]]])) == pytest.approx((0.5 + 0.0) / 2)
    rng = np.random.default_rng(1)
    x = rng.poisson(0.3, 5000)
    y = np.stack([x, np.r_[0, 0, x[:-2]] + rng.poisson(0.1, 5000), rng.poisson(0.3, 5000)], 1)
    C = xcorr_connectivity(y, np.zeros(5000, np.int8), 3)
    assert np.argmax(C[1]) == 0 and C[1, 0] > 5 * abs(C[0, 1])  # 1 follows 0, not the reverse


def test_direction_accuracy_and_rate_hub_recall():
    conn = np.zeros((3, 3), int)
    conn[1, 0] = conn[2, 1] = 1  # 0 -> 1 -> 2
    M = np.array([[0.0, 0.1, 0.0], [0.9, 0.0, 0.2], [0.0, 0.2, 0.0]])
    assert direction_accuracy(M, conn) == pytest.approx((1.0 + 0.5) / 2)  # right, tie
    assert direction_accuracy(M.T, conn) == pytest.approx((0.0 + 0.5) / 2)  # a transposed matrix: wrong
    assert direction_accuracy(-M, conn, signed=False) == pytest.approx(0.75)
    conn[0, 1] = 1  # two-way pairs are left out
    assert direction_accuracy(M, conn) == 0.5
    assert np.isnan(direction_accuracy(M, np.zeros((3, 3))))
    y = np.array([[3, 0, 1], [2, 0, 1], [9, 9, 9]])
    split = np.array([SPLIT_FLAGS["train"], SPLIT_FLAGS["train"], SPLIT_FLAGS["test"]])
    assert rate_hub_recall(y, split, np.array([1, 0, 0])) == 1.0  # the test bin is not read
    assert rate_hub_recall(y, split, np.array([0, 1, 0])) == 0.0


def test_history_baseline_features_and_validation_choice():
    y = np.arange(40).reshape(10, 4)
    X = history_features(y, np.array([6]), 2, 4, n_history=2)  # bins 6, 7; past chunks 2-3 and 4-5
    want = np.concatenate([y[6], y[7], y[2:4].sum(0), y[4:6].sum(0)])
    np.testing.assert_allclose(X[0], np.sqrt(want))
    assert history_features(y, np.array([], int), 2, 4).shape == (0, 24)
    # the history features carry a lag-3 signal the window sums do not; the validation score says so
    rng = np.random.default_rng(0)
    yc = rng.poisson(1.0, (3000, 2))
    starts = np.arange(8, 2990, 3)
    target = yc[starts - 4, 0] - yc[starts - 1, 0] + 0.1 * rng.normal(size=starts.size)
    tr, va, te = np.split(np.arange(starts.size), [600, 800])
    for feats, want_high in ((history_features(yc, starts, 2, 4), True), (np.sqrt(yc[starts]), False)):
        p, val = linear_decoder(feats[tr], target[tr], feats[va], target[va], feats[te], "regression", True)
        r2 = 1 - np.mean((p - target[te]) ** 2) / np.var(target[te])
        assert (val > 0.8) == want_high and abs(val - r2) < 0.1


def test_scratch_at_some_fractions_only():
    from brainpipe.training.neuroformer import run_labels

    assert run_labels([1.0, 0.01], [0.01]) == ["pretrained_1pct", "scratch_1pct", "pretrained_100pct"]
    assert run_labels([0.5], True) == ["pretrained_50pct", "scratch_50pct"]
    assert run_labels([0.5], False) == ["pretrained_50pct"]


def test_hub_network_hubs_are_rate_matched():
    """A firing-rate ranking finds rate-matched hubs at chance only; without the calibration it does not."""

    def rate_auc(**kw):
        hub, rate, rec = [], [], []
        for seed in range(8):
            sim = simulate("hub_network", {"duration_s": 30.0, "calibration_s": 30.0, **kw}, seed=seed)
            r = np.bincount(sim.data["spike_unit"].values, minlength=20) / 30.0
            h = sim.truth["is_hub"].values.astype(bool)
            hub.append(h)
            rate.append(r)
            rec.append(h[np.argsort(-r)[:3]].mean())
            if kw.get("rate_matched", True):  # the realised rates are the drawn ones
                rel = r / sim.truth["target_rate_hz"].values - 1
                assert np.median(np.abs(rel)) < 0.15
        return auroc(np.concatenate(hub), np.concatenate(rate)), float(np.mean(rec))

    auc, rec = rate_auc()
    assert 0.3 < auc < 0.7 and rec < 0.35  # chance: 0.5 and 3/20
    auc_off, _ = rate_auc(rate_matched=False)  # hubs' targets fire faster than the hubs
    assert auc_off < 0.3
    with pytest.raises(ConfigError, match="hub_rate_hz to null"):
        simulate("hub_network", {"hub_rate_hz": 20.0}, seed=0)


@pytest.mark.gpu
def test_tiny_model_trains_on_cuda_and_outputs_come_back_on_the_inputs_device():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    counts, _ = _sim_counts(n=5, duration=20.0)
    m = _tiny()
    m.train = {**TINY_TRAIN, "device": "cuda", "max_epochs": 1, "max_steps": 5}
    m.fit(counts)
    assert next(m.net_.parameters()).device.type == "cuda"
    win = m.tokenizer_.transform(counts)
    b = [t[:4].cuda() for t in win.tensors()]
    out = m.net_(b[0][:, :-1], b[1][:, :-1], b[2], b[3], b[4])
    assert out["id_logits"].device == b[0].device
    assert m.connectivity(counts, "test").shape == (5, 5)


def test_calcium_like_events_at_frame_rate():
    """Integer events inferred from calcium (30 Hz frames, int32 counts up to 3) tokenise like spikes."""
    rng = np.random.default_rng(2)
    y = rng.poisson(0.4, (300, 4)).astype(np.int32)
    ds = counts_ds(y, bw=1 / 30)
    ds["counts"] = ds["counts"].astype(np.int32)
    tok = SpikeTokenizer(
        dt_s=1 / 30, window_s=2 / 30, past_window_s=4 / 30, block_size=32, past_block_size=32
    ).fit(ds)
    win = tok.transform(ds)
    assert tok.rebin_ == 1 and len(win) == (300 - 4) // 2
    assert np.array_equal(win.window_counts, np.stack([y[s : s + 2].sum(0) for s in win.start]))
    ids = win.cur_id[0][(win.cur_id[0] < 4)]
    assert np.array_equal(np.bincount(ids, minlength=4), y[win.start[0] : win.start[0] + 2].sum(0))


def test_contrastive_term_aligns_neural_and_modality_embeddings():
    torch.manual_seed(0)
    net = NeuroformerNet(
        n_id=8,
        n_dt=7,
        block_size=10,
        past_block_size=6,
        modality_dims=[2],
        modality_len=5,
        d_model=16,
        n_heads=2,
        n_layers=1,
        dropout=0.0,
        contrastive_dim=8,
    )
    batch = (
        torch.randint(0, 5, (6, 10)),
        torch.randint(0, 4, (6, 10)),
        torch.randint(0, 5, (6, 6)),
        torch.randint(0, 4, (6, 6)),
        torch.randn(6, 5, 2),
        torch.zeros(6, 1),
    )
    out = pretrain_loss(net, batch, contrastive_weight=0.5)
    assert "loss_contrastive" in out and out["loss_contrastive"] > 0
    out["loss"].backward()
    assert net.proj_modality.weight.grad.abs().sum() > 0 and net.mod_enc[0][0].weight.grad.abs().sum() > 0


def test_pretraining_resumes_from_its_checkpoint(tmp_path):
    """The stages hand the training loop a checkpoint and a fingerprint: a rerun of the same run resumes (here from
    the finished checkpoint: at once, with identical weights); another fingerprint starts afresh."""
    counts, _ = _sim_counts(n=5, duration=20.0)
    ck = tmp_path / "ck.pt"
    runs = []
    for fp in ({"run": 1}, {"run": 1}, {"run": 2}):
        m = _tiny()
        m.train = {**TINY_TRAIN, "max_epochs": 1, "max_steps": 6}
        m.fit(counts, checkpoint=str(ck), fingerprint=fp)
        runs.append(
            (m.train_result_.resumed_from_step, {k: v.clone() for k, v in m.net_.state_dict().items()})
        )
    assert runs[0][0] in (None, 0) and runs[1][0] == 6 and runs[2][0] in (None, 0)
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_binning_refuses_behaviour_that_does_not_cover_the_spikes():
    """In the workflow, modalities come from the counts file: binning must not extrapolate a behaviour that stops
    early (it used to fill the rest with its last value)."""
    sim = simulate(
        "hub_network",
        {"n_neurons": 5, "n_hubs": 1, "hub_out_degree": 2, "n_other_connections": 1, "duration_s": 10.0},
        seed=0,
    )
    half = sim.data.isel(behaviour_time=slice(0, 500))  # behaviour for the first 5 s of 10
    with pytest.raises(
        InputError,
        match=r"simulate:hub_network: behaviour covers 0.005-4.995 s but the spikes are binned over 0.000-10.000 s",
    ):
        bin_spikes(half, 0.01)
    bin_spikes(sim.data.isel(behaviour_time=slice(1, -1)), 0.01)  # a sample short at either end is fine


# ---- the training runs and the scoring as a library (training.neuroformer, evaluate.neuroformer) ------------------
NF_TRAIN = TRAIN
NF_PARAMS = tiny_params(
    NF_TRAIN,
    finetune={**NF_TRAIN, "fractions": [0.5, 1.0], "scratch": True, "max_steps": 4, "min_epoch_windows": 64},
    evaluate={"n_samples": 2, "max_windows": 30},
    modalities={"flash": {"source": "behaviour", "variables": ["flash"]}},
    target={"source": "behaviour", "variable": "speed"},
)


def test_finetune_never_trains_on_test_windows(monkeypatch):
    """Planted: the target is 999 in every test bin; no fine-tuning run trains or stops early on a window that sees
    it, nor does the ridge baseline, and the test windows are the ones scored."""
    import brainpipe.training
    from brainpipe.evaluate import neuroformer as evn
    from brainpipe.training.neuroformer import finetune_neuroformer, pretrain_neuroformer, pretrained_dataset

    counts, _ = _sim_counts(duration=30.0)
    test_bins = counts["split"].values == SPLIT_FLAGS["test"]
    speed = counts["behaviour"].sel(behaviour_var="speed")
    counts["behaviour"].loc[{"behaviour_var": "speed"}] = xr.where(test_bins, 999.0, speed)
    pre = pretrained_dataset(pretrain_neuroformer(counts, NF_PARAMS))
    real_train, real_decoder, seen = brainpipe.training.train, evn.linear_decoder, []

    def spy_train(model, data, loss, cfg, val_data=None, **kw):
        # targets are standardised on the labelled train windows: a planted window would stand out by far
        seen.append((float(data[-1].abs().max()), float(val_data[-1].abs().max())))
        return real_train(model, data, loss, cfg, val_data=val_data, **kw)

    def spy_decoder(X_tr, y_tr, X_va, y_va, X_te, kind, with_score=False):
        seen.append((float(np.abs(y_tr).max()), float(np.abs(y_va).max())))
        return real_decoder(X_tr, y_tr, X_va, y_va, X_te, kind, with_score)

    monkeypatch.setattr(brainpipe.training, "train", spy_train)
    monkeypatch.setattr(evn, "linear_decoder", spy_decoder)
    ft, decoder = finetune_neuroformer(
        counts, pre, NF_PARAMS["target"], {**NF_TRAIN, "max_steps": 2}, [0.5, 1.0]
    )
    assert list(ft["run"].values) == [
        "pretrained_50pct",
        "scratch_50pct",
        "pretrained_100pct",
        "scratch_100pct",
    ]
    assert decoder.n_labelled_ == int(ft["run_n_labelled"].values[2])
    test = ft["window_split"].values == SPLIT_FLAGS["test"]
    assert (
        test.any() and np.all(ft["target"].values[test] == 999.0) and np.all(ft["target"].values[~test] < 999)
    )
    evn.decoding_metrics(ft, counts, Neuroformer.from_dataset(pre, counts))
    # 4 runs, 2 fractions x 5 linear baselines (counts, history bins, each with the flash modality, flash alone)
    assert len(seen) == 14 and max(max(s) for s in seen) < 50, seen


def test_public_functions_give_the_stage_outputs(tmp_path):
    """pretrain_neuroformer, finetune_neuroformer and score_neuroformer give the stages' outputs exactly."""
    from brainpipe.data import make_provenance, read, write
    from brainpipe.evaluate.neuroformer import score_neuroformer
    from brainpipe.stages import neuroformer_evaluate, neuroformer_finetune, neuroformer_pretrain
    from brainpipe.training.neuroformer import (
        finetune_neuroformer,
        pretrain_neuroformer,
        pretrained_dataset,
        train_config,
    )

    counts, truth = _sim_counts(duration=30.0)
    prov = make_provenance("test", {})
    files = {"counts": write(counts, tmp_path / "counts.nc", "spike_counts", prov)}
    files["truth"] = write(truth, tmp_path / "truth.nc", "model_fit", prov)
    counts, truth = read(files["counts"], "spike_counts"), read(files["truth"], "model_fit")
    files["pretrained"], files["finetune"] = tmp_path / "pre.nc", tmp_path / "ft.nc"
    neuroformer_pretrain.run({"counts": files["counts"]}, {"model": files["pretrained"]}, NF_PARAMS)
    neuroformer_finetune.run(
        {k: files[k] for k in ("counts", "pretrained")}, {"finetune": files["finetune"]}, NF_PARAMS
    )
    outs = {"metrics": tmp_path / "m.nc", "connectivity": tmp_path / "c.nc"}
    neuroformer_evaluate.run(files, outs, NF_PARAMS)

    pre = pretrained_dataset(pretrain_neuroformer(counts, NF_PARAMS))
    stage_pre = read(files["pretrained"], "model_fit")
    for v in stage_pre.data_vars:
        np.testing.assert_array_equal(pre[v].values, stage_pre[v].values, err_msg=v)
    ft_params = NF_PARAMS["finetune"]
    ft, _ = finetune_neuroformer(
        counts,
        pre,
        NF_PARAMS["target"],
        train_config(NF_PARAMS, "finetune"),
        ft_params["fractions"],
        ft_params["scratch"],
        min_epoch_windows=ft_params["min_epoch_windows"],
    )
    stage_ft = read(files["finetune"], "model_fit")
    for v in ("prediction", "target", "window_split", "run_best_val_loss"):
        np.testing.assert_array_equal(ft[v].values, stage_ft[v].values, err_msg=v)
    model = Neuroformer.from_dataset(pre, counts)
    values, conn = score_neuroformer(counts, model, ft, truth, seed=0, n_samples=2, max_windows=30)
    m = read(outs["metrics"], "metrics")
    assert values == dict(zip(m["metric"].values.astype(str), m["value"].values, strict=True))
    assert {"connectivity_auroc_glm", "generation_f1_vs_glm", "decode_r2_pretrained_vs_scratch_50pct"} <= set(
        values
    )
    stage_conn = read(outs["connectivity"], "model_fit")
    for v in ("attention", "xcorr", "glm", "attention_received"):
        np.testing.assert_array_equal(conn[v].values, stage_conn[v].values, err_msg=v)


def test_training_config_bad_keys_are_one_line(tmp_path):
    from brainpipe.training.neuroformer import build_neuroformer, run_checkpoint, train_config

    with pytest.raises(
        ConfigError, match=r"neuroformer finetune: unknown key\(s\) lrr \(allowed: max_epochs"
    ):
        train_config({"finetune": {"lrr": 1.0, "fractions": [1.0]}}, "finetune")
    with pytest.raises(ConfigError, match=r"neuroformer tokenizer: unknown key\(s\) window"):
        build_neuroformer({"tokenizer": {"window": 0.02}})
    assert run_checkpoint(None, "x") is None
    assert run_checkpoint(str(tmp_path / "ck" / "ft.pt"), "scratch_10pct") == str(
        tmp_path / "ck" / "ft.scratch_10pct.pt"
    )
    assert (tmp_path / "ck").is_dir()


def test_pretrained_and_scratch_runs_stop_by_the_same_rule():
    """Fair fine-tuning: the step cap binds the from-scratch run exactly as the pretrained one (scratch was once
    exempt), and each run's steps, best epoch and stopping reason are in the output."""
    from brainpipe.training.neuroformer import finetune_neuroformer, pretrain_neuroformer, pretrained_dataset

    counts, _ = _sim_counts(duration=30.0)
    pre = pretrained_dataset(pretrain_neuroformer(counts, NF_PARAMS))
    cfg = {**NF_TRAIN, "max_epochs": 4, "max_steps": 3}
    ft, _ = finetune_neuroformer(counts, pre, NF_PARAMS["target"], cfg, [1.0], min_epoch_windows=64)
    assert list(ft["run_init"].values) == ["pretrained", "scratch"]
    assert ft["run_steps"].values.tolist() == [3, 3]
    assert ft["run_stopped_early"].values.tolist() == [0, 0]
    assert np.all(ft["run_best_epoch"].values >= 0) and np.all(ft["run_epochs"].values <= 4)
    # the same validation interval at every fraction: a large labelled set is sampled, 64 windows per epoch
    cfg = {**NF_TRAIN, "max_epochs": 2, "batch_size": 16}
    ft, _ = finetune_neuroformer(
        counts, pre, NF_PARAMS["target"], cfg, [1.0], False, min_epoch_windows=32, max_epoch_windows=64
    )
    assert int(ft["run_n_labelled"].values[0]) > 64 and ft["run_steps"].values.tolist() == [8]
    with pytest.raises(ConfigError, match=r"max_epoch_windows=16 is below min_epoch_windows=32"):
        finetune_neuroformer(
            counts, pre, NF_PARAMS["target"], cfg, [1.0], False, min_epoch_windows=32, max_epoch_windows=16
        )


def test_contrastive_weight_is_chosen_on_the_validation_windows(monkeypatch, tmp_path):
    """A contrastive grid pretrains one model per weight and keeps the lowest validation next-token loss; only the
    validation windows are scored; the grid and losses are recorded; without a modality there is no grid."""
    import json

    from brainpipe.training.neuroformer import (
        contrastive_grid,
        pretrain_checkpoints,
        pretrain_neuroformer,
        pretrained_dataset,
    )

    counts, _ = _sim_counts(duration=30.0)
    params = {
        **NF_PARAMS,
        "model": {**NF_PARAMS["model"], "contrastive_dim": 4, "contrastive_grid": [0.5, 0.0]},
    }
    splits, real = [], Neuroformer.token_loss

    def spy(self, c, split="test", source="counts"):
        splits.append(split)
        return real(self, c, split, source)

    monkeypatch.setattr(Neuroformer, "token_loss", spy)
    ds = pretrained_dataset(pretrain_neuroformer(counts, params))
    grid, losses = (
        json.loads(ds.attrs["contrastive_grid"]),
        json.loads(ds.attrs["contrastive_grid_val_token_loss"]),
    )
    assert grid == [0.0, 0.5] and len(losses) == 2 and splits == ["validation", "validation"]
    assert ds.attrs["contrastive_weight"] == grid[int(np.argmin(losses))]
    assert pretrain_checkpoints(str(tmp_path / "pre.pt"), params) == [
        str(tmp_path / "pre.cw0.pt"),
        str(tmp_path / "pre.cw0.5.pt"),
    ]
    no_mod = {**params, "modalities": {}}
    assert contrastive_grid(no_mod) == [0.0] and pretrain_checkpoints(None, no_mod) == []
    no_mod_attrs = pretrained_dataset(pretrain_neuroformer(counts, no_mod)).attrs
    assert "contrastive_grid" not in no_mod_attrs and no_mod_attrs["contrastive_weight"] == 0.0
    with pytest.raises(ConfigError, match=r"neuroformer model.contrastive_grid: .* negative weight"):
        contrastive_grid({**params, "model": {"contrastive_grid": [-1.0, 0.2]}})


def test_connectivity_readout_is_chosen_on_the_validation_windows(monkeypatch):
    """Each candidate read-out is scored on the validation windows; only the chosen one is computed on the test
    windows (once), and the choice is recorded; a malformed read-out name is one line."""
    import json

    from brainpipe.evaluate.neuroformer import parse_readout, score_neuroformer
    from brainpipe.training.neuroformer import pretrain_neuroformer

    counts, truth = _sim_counts(duration=30.0)
    model = pretrain_neuroformer(counts, NF_PARAMS)
    calls, real = [], Neuroformer.connectivity

    def spy(self, c, split="test", **kw):
        calls.append((split, kw.get("method"), kw.get("centre_rows")))
        return real(self, c, split, **kw)

    monkeypatch.setattr(Neuroformer, "connectivity", spy)
    cands = ["rollout/target", "rollout/target/rows", "cross/target"]
    values, conn = score_neuroformer(
        counts, model, None, truth, n_samples=1, max_windows=20, connectivity_readouts=cands
    )
    assert [c[0] for c in calls] == ["validation"] * 3 + ["test"]
    val = json.loads(conn.attrs["attention_readout_validation_auroc"])
    assert conn.attrs["attention_readout"] == cands[int(np.argmax(val))]
    assert values["connectivity_auroc_validation"] == pytest.approx(max(val), abs=1e-6)
    assert parse_readout(cands[1]) == {"method": "rollout", "by": "target", "centre_rows": True}
    with pytest.raises(ConfigError, match=r"'rollout/next' is not <method>/<by>\[/rows\]"):
        parse_readout("rollout/next")


def test_behaviour_head_readouts_fine_tune_and_round_trip():
    """The decoding head's read-outs: mean_past doubles the head's width, last and mean_past decode differently
    from mean, the read-out survives to_dataset/from_dataset, and an unknown one is one line."""
    from brainpipe.training.neuroformer import finetune_neuroformer, pretrain_neuroformer, pretrained_dataset

    counts, _ = _sim_counts(duration=30.0)
    pre = pretrained_dataset(pretrain_neuroformer(counts, NF_PARAMS))
    cfg = {**NF_TRAIN, "max_steps": 3}
    preds = {}
    for readout in ("mean", "last", "mean_past"):
        ft, dec = finetune_neuroformer(
            counts, pre, NF_PARAMS["target"], cfg, [1.0], False, min_epoch_windows=32, readout=readout
        )
        width = dec.net_.head_behaviour[-1].in_features
        assert width == (32 if readout == "mean_past" else 16) and dec.net_.readout == readout
        back = Neuroformer.from_dataset(ft, counts)
        assert back.readout == readout
        np.testing.assert_allclose(
            back.decode(back.labelled_windows(counts))[0],
            dec.decode(dec.labelled_windows(counts))[0],
            rtol=1e-5,
        )
        preds[readout] = ft["prediction"].values[0]
    assert not np.allclose(preds["mean"], preds["last"]) and not np.allclose(
        preds["mean"], preds["mean_past"]
    )
    with pytest.raises(
        ConfigError, match=r"neuroformer model.readout: 'max' is not one of mean, last, mean_past"
    ):
        finetune_neuroformer(counts, pre, NF_PARAMS["target"], cfg, [1.0], False, readout="max")
