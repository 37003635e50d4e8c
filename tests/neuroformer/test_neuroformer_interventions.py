"""Neuroformer's interventional connectivity read-outs: past-token edits in the tokeniser's order, the expected
counts, and a planted one-way coupling found by a briefly trained tiny model (a few seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from brainpipe.errors import ConfigError
from brainpipe.evaluate.neuroformer import format_readout, parse_readout, score_neuroformer
from brainpipe.models.neuroformer import (
    Neuroformer,
    NeuroformerNet,
    SpikeTokenizer,
    aggregate_lags,
    expected_counts,
    insert_past_spike,
    remove_past_unit,
    split_batch,
)

TRAIN = {"max_epochs": 2, "batch_size": 64, "lr": 3e-3, "patience": None, "device": "cpu", "progress": False}


def _counts(y: np.ndarray, split: np.ndarray) -> xr.Dataset:
    n_t, n_u = y.shape
    return xr.Dataset(
        {"counts": (("time", "unit"), y.astype(np.uint8)), "split": ("time", split.astype(np.int8))},
        coords={"time": (np.arange(n_t) + 0.5) * 0.01, "unit": [f"u{i}" for i in range(n_u)]},
        attrs={"bin_width_s": 0.01},
    )


def _tokenizer(y: np.ndarray) -> SpikeTokenizer:
    tok = SpikeTokenizer(dt_s=0.01, window_s=0.02, past_window_s=0.04, block_size=12, past_block_size=8)
    return tok.fit(_counts(y, np.zeros(len(y))))


def test_past_edits_equal_tokenising_the_edited_counts():
    rng = np.random.default_rng(0)
    y = rng.poisson(0.4, (200, 3))
    tok = _tokenizer(y)
    n_id, sp = tok.vocab["id"], tok.special()
    win = tok.transform(_counts(y, np.zeros(len(y))))
    pid, pdt = torch.as_tensor(win.past_id), torch.as_tensor(win.past_dt)
    P = tok.past_bins_
    for unit, lag in ((0, 1), (2, 4), (1, 2)):
        got = insert_past_spike(pid, pdt, unit, P - lag, sp["pad"], n_id)
        rid, rdt = remove_past_unit(pid, pdt, unit, sp["pad"], sp["pad_dt"], n_id)
        for w, t0 in enumerate(win.start[:60]):
            block = y[t0 - P : t0].copy()
            block[P - lag, unit] += 1
            ids, dts = tok._tokens(block, 1)
            ids, dts = ids[-(tok.past_block_size - 1) :], dts[-(tok.past_block_size - 1) :]  # the latest kept
            np.testing.assert_array_equal(got[0][w, 1 : ids.size + 1].numpy(), ids)
            np.testing.assert_array_equal(got[1][w, 1 : ids.size + 1].numpy(), dts)
            assert (got[0][w, ids.size + 1 :] == sp["pad"]).all()
            if y[t0 - P : t0].sum() > tok.past_block_size - 1:
                continue  # a truncated past: its dropped spikes are not in the tokens to remove from
            block = y[t0 - P : t0].copy()
            block[:, unit] = 0
            ids, dts = tok._tokens(block, 1)
            ids = ids[-(tok.past_block_size - 1) :]
            np.testing.assert_array_equal(rid[w, 1 : ids.size + 1].numpy(), ids)
            assert (rid[w, ids.size + 1 :] == sp["pad"]).all() and (
                rdt[w, ids.size + 1 :] == sp["pad_dt"]
            ).all()


def test_expected_counts_ignore_trailing_pad_positions():
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    y = rng.poisson(0.3, (120, 4))
    tok = _tokenizer(y)
    win = tok.transform(_counts(y, np.zeros(len(y))))
    net = NeuroformerNet(tok.vocab["id"], tok.vocab["dt"], 12, 8, d_model=16, n_heads=2, n_layers=1).eval()
    x_id, x_dt, y_id, _, past_id, past_dt, mod, _ = split_batch(win.tensors())
    with torch.no_grad():
        full = expected_counts(net, x_id, x_dt, y_id, past_id, past_dt, mod, 4)
        L = int((y_id != net.pad_id).sum(1).max())
        P = int((past_id != net.pad_id).sum(1).max())
        cut = expected_counts(
            net, x_id[:, :L], x_dt[:, :L], y_id[:, :L], past_id[:, :P], past_dt[:, :P], mod, 4
        )
    np.testing.assert_allclose(cut.numpy(), full.numpy(), rtol=1e-5, atol=1e-6)
    # the expected count of a window: between 0 and its number of predicted real tokens
    assert (full >= 0).all() and (full.sum(1) <= (y_id != net.pad_id).sum(1) + 1e-4).all()


def test_planted_drive_is_the_top_edge_of_the_interventional_read_outs():
    # 4 neurons at 10 Hz; neuron 0 drives neuron 2 (rate x 8 for the two bins after each of its spikes)
    rng = np.random.default_rng(0)
    n_t = 6000
    y = (rng.random((n_t, 4)) < 0.1).astype(int)
    for lag in (1, 2):
        y[lag:, 2] |= (y[:-lag, 0] > 0) & (rng.random(n_t - lag) < 0.35)
    split = np.repeat(np.array([0, 1, 2], np.int8), [4000, 1000, 1000])
    counts = _counts(y, split)
    tok = SpikeTokenizer(dt_s=0.01, window_s=0.02, past_window_s=0.04, block_size=12, past_block_size=12)
    m = Neuroformer(tok, d_model=16, n_heads=2, n_layers=1, dropout=0.0, train=TRAIN, seed=0)
    m.fit(counts)
    off = ~np.eye(4, dtype=bool)
    for kw in ({"method": "remove"}, {"method": "insert", "lags": "range"}, {"method": "insert"}):
        M = m.connectivity(counts, "train", max_windows=300, **kw)
        assert M.shape == (4, 4) and np.isfinite(M).all()
        top = np.unravel_index(np.argmax(np.where(off, M, -np.inf)), M.shape)
        assert top == (2, 0), (kw, np.round(np.log(M), 3))
        assert np.argmax(m.attention_received_) == 0  # the driver is the hub
    assert m.lag_effect_.shape == (4, 4, 4)  # (lag, post, pre): lags 1-4 of the 40 ms past window
    np.testing.assert_allclose(np.log(M), m.lag_effect_.sum(0))
    assert m.lag_effect_[:2, 2, 0].min() > m.lag_effect_[2:, 2, 0].max()  # the drive acts at lags 1-2
    C = m.connectivity(counts, "train", max_windows=300, method="remove", centre_rows=True)
    np.testing.assert_allclose(np.where(off, np.log(C), 0).sum(1), 0.0, atol=1e-9)
    # as the study's read-out: named in the connectivity file, scored against the planted edge
    units = [f"u{i}" for i in range(4)]
    conn = np.zeros((4, 4), bool)
    conn[2, 0] = True
    truth = xr.Dataset(
        {"connected": (("unit_post", "unit_pre"), conn)}, coords={"unit_post": units, "unit_pre": units}
    )
    part = counts.isel(time=slice(3000, 6000))  # a little of each split: a cheap GLM baseline
    values, cds = score_neuroformer(
        part,
        m,
        truth=truth,
        n_samples=1,
        max_windows=10,
        connectivity_windows=100,
        connectivity_readouts=["insert_range/target"],
    )
    assert cds.attrs["attention_readout"] == "insert_range/target" and values["connectivity_auroc"] == 1.0


def test_bad_read_out_arguments_are_one_line():
    with pytest.raises(ConfigError, match=r"lag aggregate 'mean' is not one of sum, dominant, range"):
        aggregate_lags(np.zeros((2, 3, 3)), "mean")
    with pytest.raises(ConfigError, match=r"'insert_mean/target' is not <method>/<by>\[/rows\]"):
        parse_readout("insert_mean/target")
    r = parse_readout("insert_range/target/rows")
    assert r == {"method": "insert", "by": "target", "centre_rows": True, "lags": "range"}
    assert format_readout(r) == "insert_range/target/rows"
    assert format_readout(parse_readout("insert/target")) == "insert/target"
    assert parse_readout("remove/target") == {"method": "remove", "by": "target", "centre_rows": False}
