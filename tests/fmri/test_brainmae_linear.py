"""BrainMAE's linear path (``linear_path: volume``, issue 15): the hidden ROIs' Gaussian conditional mean given the
visible ROIs of the same volume (a per-volume ridge), which the network sees and corrects; its penalty chosen on the
validation segments; its statistics from the training segments only; bad settings one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainpipe.errors import ConfigError
from brainpipe.evaluate.brainmae import pretrain_folds
from brainpipe.models.brainmae import LINEAR_ALPHAS, BrainMAE, BrainMAEConfig

FAST = {"d_model": 8, "n_heads": 2, "n_layers": 1, "max_epochs": 2, "batch_size": 8, "device": "cpu"}


def _segments(n=40, L=6, R=5, noise=0.3, seed=0):
    """ROI 1 is ROI 0 plus noise; the others independent."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, L, R))
    X[:, :, 1] = X[:, :, 0] + noise * rng.standard_normal((n, L))
    return X.astype(np.float32)


def test_linear_fill_is_the_per_volume_ridge_and_hidden_values_never_leak():
    X = _segments()
    model = BrainMAE(**FAST, linear_path="volume", linear_alpha=0.5, progress=False)
    model.fit(X[:30], X[30:])
    assert model.linear_alpha_ == 0.5
    net = model.net_
    mask = np.zeros((10, 5), bool)
    mask[:, [1, 3]] = True
    out = net.linear_fill(torch.as_tensor(X[30:]), torch.as_tensor(mask)).numpy()
    v = X[:30].reshape(-1, 5).astype(np.float64)
    mu, S = v.mean(0), np.cov(v, rowvar=False)
    vis, hid = np.array([0, 2, 4]), np.array([1, 3])
    W = np.linalg.solve(S[np.ix_(vis, vis)] + 0.5 * np.eye(3), S[np.ix_(vis, hid)])
    ref = mu[hid] + (X[30:][:, :, vis] - mu[vis]) @ W
    np.testing.assert_allclose(out[:, :, hid], ref, atol=1e-4)
    np.testing.assert_array_equal(out[:, :, vis], X[30:][:, :, vis])  # visible ROIs untouched
    # the hidden ROIs' own values never reach the reconstruction (the fill and the tokens use the visible ROIs only)
    other = X[30:].copy()
    other[:, :, [1, 3]] = 100.0
    np.testing.assert_allclose(model.reconstruct(X[30:], mask), model.reconstruct(other, mask), atol=1e-5)
    assert not np.allclose(model.reconstruct(X[30:], mask), out, atol=1e-3)  # the network corrects the fill


def test_linear_penalty_is_chosen_on_the_validation_segments():
    """Strongly coupled ROIs: a small penalty wins; independent ROIs and few training volumes (a fill from them
    only overfits): a large one."""
    coupled = _segments(noise=0.05)
    m = BrainMAE(**FAST, linear_path="volume", progress=False).fit(coupled[:30], coupled[30:])
    assert m.linear_alpha_ in LINEAR_ALPHAS and m.linear_alpha_ < 0.1
    noise = np.random.default_rng(1).standard_normal((43, 6, 5)).astype(np.float32)
    m = BrainMAE(**FAST, linear_path="volume", progress=False).fit(noise[:3], noise[3:])
    assert m.linear_alpha_ >= 1.0


def test_linear_path_learns_from_training_segments_only_with_the_temporal_encoder():
    X = _segments(n=24)
    X[12:] += 100.0  # segments outside the sequences must not move the statistics
    seqs = np.arange(8).reshape(2, 4)
    m = BrainMAE(
        **FAST,
        linear_path="volume",
        linear_alpha=1.0,
        temporal_encoder="transformer",
        context=4,
        progress=False,
    )
    m.fit(X, X, sequences=seqs, sequences_val=np.arange(8, 12).reshape(1, 4))
    np.testing.assert_allclose(m.net_.lin_mean.numpy(), X[:8].reshape(-1, 5).mean(0), atol=1e-5)


def test_linear_path_bad_settings_are_one_line():
    with pytest.raises(ConfigError, match="linear_path must be none or volume"):
        BrainMAEConfig(linear_path="ridge")
    for bad in (0.0, -1.0, "1"):
        with pytest.raises(ConfigError, match="linear_alpha must be a number > 0 or null"):
            BrainMAEConfig(linear_alpha=bad)
    X = _segments()
    with pytest.raises(
        ConfigError, match="linear_alpha: null chooses the linear path's penalty on validation"
    ):
        BrainMAE(**FAST, linear_path="volume", progress=False).fit(X)


def test_linear_path_refuses_streaming():
    import xarray as xr

    X = _segments(n=32)
    ds = xr.Dataset(
        {"signal": (("segment", "lag", "roi"), X), "segment_fold": ("segment", np.arange(32) % 4)},
        attrs={"repetition_time_s": 2.0},
    )
    with pytest.raises(ConfigError, match=r"streaming: the linear path \(linear_path: volume\) needs"):
        pretrain_folds(ds, dict(FAST, linear_path="volume", streaming={"enabled": True}))


def test_linear_path_chosen_per_encoder_on_its_validation_fold():
    """The default study's nitime choice (select: {linear_path: [none, volume]}): with two coupled ROI pairs and a
    2-epoch network, every encoder keeps the linear path, its validation NMSE well under the network's alone."""
    import xarray as xr

    X = _segments(n=48, R=6, noise=0.1)
    X[:, :, 3] = X[:, :, 2] + 0.1 * X[:, :, 4]
    ds = xr.Dataset(
        {"signal": (("segment", "lag", "roi"), X), "segment_fold": ("segment", np.arange(48) % 4)},
        attrs={"repetition_time_s": 2.0},
    )
    models = pretrain_folds(ds, dict(FAST, progress=False, select={"linear_path": ["none", "volume"]}))
    for m in models:
        assert m.selection_["chosen"] == {"linear_path": "volume"} and m.linear_alpha_ in LINEAR_ALPHAS
        none, volume = m.selection_["validation_nmse"]
        assert volume < 0.8 * none
