"""Neuroformer's modality dropout (issue 15): a learned absent embedding per modality, dropped per window in
pretraining, so that one pretrained model reads connectivity with every modality and decodes a modality's variable
with that modality absent. The network without the option is unchanged; the target never reaches a decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from brainpipe.config import validate_config
from brainpipe.errors import ConfigError
from brainpipe.models.neuroformer import Neuroformer, NeuroformerNet, SpikeTokenizer, pretrain_loss
from brainpipe.training.neuroformer import finetune_neuroformer

TRAIN = {"max_epochs": 1, "batch_size": 32, "lr": 3e-3, "patience": None, "device": "cpu", "progress": False}
MODS = {
    "flash": {"source": "behaviour", "variables": ["flash"]},
    "speed": {"source": "behaviour", "variables": ["speed"]},
}
SPEED = {"source": "behaviour", "variable": "speed"}


def _net(p: float = 0.0, **kw) -> NeuroformerNet:
    torch.manual_seed(0)
    return NeuroformerNet(
        n_id=8, n_dt=7, block_size=10, past_block_size=6, modality_dims=[1, 2], modality_len=5, d_model=16,
        n_heads=2, n_layers=1, dropout=0.0, contrastive_dim=8, modality_dropout=p, **kw,
    )  # fmt: skip


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randint(0, 5, (6, 10), generator=g),
        torch.randint(0, 4, (6, 10), generator=g),
        torch.randint(0, 5, (6, 6), generator=g),
        torch.randint(0, 4, (6, 6), generator=g),
        torch.randn(6, 5, 3, generator=g),
        torch.zeros(6, 1),
    )


def _fwd(net, b, **kw):
    with torch.no_grad():
        return net(b[0][:, :-1], b[1][:, :-1], b[2], b[3], b[4], **kw)


def test_without_dropout_the_network_is_the_previous_one():
    plain, drop = _net(0.0), _net(0.3)
    sd0, sd1 = plain.state_dict(), drop.state_dict()
    assert "mod_absent" not in sd0 and set(sd1) - set(sd0) == {"mod_absent"}  # old checkpoints still load
    for k, v in sd0.items():  # the absent embedding is drawn after every other weight: the rest is the same
        assert torch.equal(v, sd1[k]), k
    b = _batch()
    o0, o1 = _fwd(plain.eval(), b), _fwd(drop.eval(), b)
    for k in ("id_logits", "dt_logits", "behaviour", "z_modality"):
        assert torch.equal(o0[k], o1[k]), k  # nothing absent: bit for bit
    torch.manual_seed(5)
    l0 = pretrain_loss(plain.train(), b, contrastive_weight=0.5)["loss"]
    state = torch.get_rng_state()
    torch.manual_seed(5)
    assert torch.equal(l0, pretrain_loss(plain.train(), b, contrastive_weight=0.5)["loss"])
    torch.manual_seed(5)
    pretrain_loss(plain.train(), b)
    assert torch.equal(torch.get_rng_state(), state)  # no draw without the option


def test_absent_path_differs_and_never_reads_the_values():
    net, b = _net(0.3).eval(), _batch()
    other = list(b)
    other[4] = b[4] + 10.0  # other modality values
    absent = torch.zeros(6, 2, dtype=torch.bool)
    absent[:3, 1] = True  # the second modality of the first three windows
    present = _fwd(net, b)["id_logits"]
    dropped = _fwd(net, b, absent=absent)["id_logits"]
    assert not torch.allclose(present[:3], dropped[:3]) and torch.equal(present[3:], dropped[3:])
    moved = _fwd(net, other, absent=torch.ones(6, 2, dtype=torch.bool))["id_logits"]
    assert torch.equal(moved, _fwd(net, b, absent=torch.ones(6, 2, dtype=torch.bool))["id_logits"])
    net.absent = (1,)  # always absent: the same as dropping it in every window, values unread
    every = torch.zeros(6, 2, dtype=torch.bool)
    every[:, 1] = True
    assert torch.equal(_fwd(net, b)["id_logits"], _fwd(net, b, absent=every)["id_logits"])
    speed_moved = [*b[:4], b[4].clone().index_fill_(2, torch.tensor([1, 2]), 7.0), b[5]]
    assert torch.equal(_fwd(net, b)["id_logits"], _fwd(net, speed_moved)["id_logits"])
    cache = net.init_cache(b[2], b[3], b[4])  # generation uses the same memory
    step = net.step(b[0][:, 0], b[1][:, 0], cache)["id_logits"]
    assert torch.allclose(step, _fwd(net, b)["id_logits"][:, 0], atol=1e-5)


def test_modality_dropout_is_seeded_and_keeps_the_contrastive_term_finite():
    net, b = _net(0.5).train(), _batch()
    losses = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        out = pretrain_loss(net, b, contrastive_weight=0.5)
        assert torch.isfinite(out["loss"])
        losses.append(float(out["loss"].detach()))
    assert losses[0] == losses[1] != losses[2]
    out["loss"].backward()
    assert net.mod_absent.grad is not None and net.mod_absent.grad.abs().sum() > 0


def _counts(n_t: int = 3000, n_u: int = 4, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    speed = np.convolve(rng.normal(size=n_t), np.ones(50) / 50, "same")
    flash = (rng.random(n_t) < 0.05).astype(float)
    y = rng.poisson(0.1 * np.exp(speed[:, None] * np.linspace(0, 2, n_u)[None, :]))
    split = np.repeat([0, 1, 2], n_t // 3)
    return xr.Dataset(
        {
            "counts": (("time", "unit"), y.astype(np.uint8)),
            "split": ("time", split.astype(np.int8)),
            "behaviour": (("time", "behaviour_var"), np.stack([speed, flash], 1)),
        },
        coords={
            "time": (np.arange(n_t) + 0.5) * 0.01,
            "unit": [f"u{i}" for i in range(n_u)],
            "behaviour_var": ["speed", "flash"],
        },
        attrs={"bin_width_s": 0.01},
    )


def _model(p: float) -> Neuroformer:
    tok = SpikeTokenizer(
        window_s=0.02, past_window_s=0.04, block_size=12, past_block_size=16, modalities=MODS
    )
    return Neuroformer(tok, d_model=16, n_heads=2, n_layers=1, dropout=0.0, modality_dropout=p, train=TRAIN)


def test_the_target_never_reaches_a_decoder(monkeypatch):
    counts = _counts(1200, 3)
    pre = _model(0.5).fit(counts)
    assert pre.net_.absent == ()  # pretraining and the connectivity read-outs see every modality
    seen = []
    orig = NeuroformerNet.modality_memory

    def spy(self, modality, dtype, absent=None):
        seen.append(self.absent)
        return orig(self, modality, dtype, absent)

    monkeypatch.setattr(NeuroformerNet, "modality_memory", spy)
    ds, decoder = finetune_neuroformer(
        counts, pre.to_dataset(), SPEED, TRAIN, fractions=[1.0], scratch=True, min_epoch_windows=8
    )
    assert seen and all(a == (1,) for a in seen)  # every forward of both starts, training and decoding
    assert list(ds["run"].values) == ["pretrained_100pct", "scratch_100pct"]
    again = Neuroformer.from_dataset(ds, counts)  # the saved decoder too (its target is in its attrs)
    assert again.net_.absent == (1,)
    scrambled = counts.copy(deep=True)
    scrambled["behaviour"].values[:, 0] = np.random.default_rng(9).normal(size=counts.sizes["time"]) * 5
    win, win2 = again.labelled_windows(counts, "test"), again.labelled_windows(scrambled, "test")
    assert not np.allclose(win.modality[..., 1], win2.modality[..., 1])
    np.testing.assert_array_equal(again.decode(win)[0], again.decode(win2)[0])


def test_a_target_inside_a_modality_needs_modality_dropout():
    counts = _counts(600, 3)
    pre = _model(0.0).fit(counts)
    with pytest.raises(
        ConfigError, match="part of input modality 'speed' of a model pretrained without modality"
    ):
        pre.set_target(counts, SPEED)
    with pytest.raises(ConfigError, match="modality_dropout must be in"):
        _model(1.0).fit(counts)
    cfg = {
        "spikes": {"datasets": {"sim": {"simulate": {"generator": "hub_network"}}}},
        "neuroformer": {
            "modalities": MODS,
            "datasets": {"sim": {"modalities": ["flash", "speed"], "target": SPEED}},
        },
    }
    with pytest.raises(ConfigError, match="or set model.modality_dropout > 0"):
        validate_config(cfg)
    cfg["neuroformer"]["datasets"]["sim"]["model"] = {"modality_dropout": 0.3}
    validate_config(cfg)
    cfg["neuroformer"]["datasets"]["sim"]["model"] = {"modality_dropout": 1.0}
    with pytest.raises(ConfigError, match="modality_dropout"):
        validate_config(cfg)


def test_residual_cross_correlation_removes_a_shared_covariate():
    from brainpipe.evaluate.neuroformer import xcorr_connectivity, xcorr_residual_connectivity

    rng = np.random.default_rng(0)
    n_t = 20000
    speed = np.convolve(rng.normal(size=n_t), np.ones(200) / 14, "same")  # slow, shared by units 0 and 1
    y = np.zeros((n_t, 3))
    y[:, 0] = rng.poisson(0.1 * np.exp(speed))
    y[:, 1] = rng.poisson(0.1 * np.exp(speed))
    y[:, 2] = rng.poisson(0.1, n_t)
    y[1:, 2] += y[:-1, 0]  # the one planted connection: 0 -> 2 at lag 1
    split = np.zeros(n_t, np.int8)
    plain = xcorr_connectivity(y, split, 3)
    res = xcorr_residual_connectivity(y, split, 3, speed[:, None])
    assert plain[1, 0] > 0.5 and abs(res[1, 0]) < 0.2 * plain[1, 0]  # the shared drive is (mostly) gone
    assert res[2, 0] > 0.2  # the connection stays
    np.testing.assert_array_equal(xcorr_residual_connectivity(y, split, 3, np.zeros((n_t, 0))), plain)
