"""BrainMAE: the pieces (graph attention, masks, loss), learning against planted truth (reconstruction beats mean
filling, ROI embeddings recover the modules, shuffling them hurts), save/load without pickle, the GPU path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from brainpipe.errors import ConfigError, InputError
from brainpipe.evaluate import fmri as ev
from brainpipe.io.fmri import run_dataset
from brainpipe.models.brainmae import (
    BrainMAE,
    BrainMAEConfig,
    BrainMAENet,
    GraphAttention,
    masked_loss,
    random_mask,
    segment_features,
    split_kwargs,
)
from brainpipe.preprocess.fmri import assemble_cohort, clean_run
from brainpipe.simulate import simulate

SIM = {"n_subjects": 12, "rois_per_module": 4, "n_volumes": 150, "snr": 3.0, "high_motion_fraction": 0.0}
FAST = dict(
    d_model=16,
    n_layers=1,
    n_heads=2,
    max_epochs=150,
    patience=None,
    lr=5e-3,
    batch_size=32,
    warmup_steps=5,
    device="cpu",
    progress=False,
    seed=0,
)


@pytest.fixture(scope="module")
def cohort():
    sim = simulate("fmri_modular_cohort", SIM, seed=5)
    runs = []
    for i, sub in enumerate(sim.data["subject"].values):
        ds = run_dataset(
            sim.data["bold"].values[i],
            sim.data["roi"].values,
            1.0,
            source=f"sim/sub-{sub}",
            entities={"sub": str(sub)},
            confounds=sim.data["motion"].values[i],
            confound_names=list(sim.data["motion_param"].values),
        )
        runs.append(clean_run(ds, high_pass=None))
    return assemble_cohort(runs, 10.0, n_folds=4, seed=0), sim


@pytest.fixture(scope="module")
def fitted(cohort):
    ds, _ = cohort
    tr, va, _ = ev.pretrain_split(ds)
    X = ds["signal"].values
    torch.manual_seed(0)
    return BrainMAE(**FAST).fit(X[tr], X[va])


def test_graph_attention_comes_from_embeddings_without_self_loops():
    torch.manual_seed(0)
    ga = GraphAttention(8, 2, self_loops=False)
    emb = torch.randn(5, 8)
    a = ga.weights(emb)
    assert a.shape == (2, 5, 5)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 5))
    assert torch.all(torch.diagonal(a, dim1=1, dim2=2) == 0)
    assert torch.all(torch.diagonal(GraphAttention(8, 2, self_loops=True).weights(emb), dim1=1, dim2=2) > 0)
    # the attention does not depend on the data; hidden ROIs are no source
    h = torch.randn(3, 5, 8)
    hidden = torch.zeros(3, 5, dtype=torch.bool)
    hidden[:, 1] = True
    out1 = ga(h, emb, hidden)
    h2 = h.clone()
    h2[:, 1] = 100.0
    torch.testing.assert_close(out1, ga(h2, emb, hidden))


def test_masks_and_loss_weights():
    torch.manual_seed(0)
    m = random_mask(64, 10, 0.3, "cpu")
    assert m.shape == (64, 10) and torch.all(m.sum(1) == 3)
    cfg = BrainMAEConfig(d_model=8, n_heads=2, n_layers=1, masked_weight=0.75)
    net = BrainMAENet(10, 6, cfg)
    x = torch.randn(4, 6, 10)
    mask = random_mask(4, 10, 0.5, "cpu")
    out = masked_loss(net, x, mask)
    torch.testing.assert_close(out["loss"], 0.75 * out["mse_masked"] + 0.25 * out["mse_visible"])
    with torch.no_grad():
        pred = net(x, mask)
    err = (pred - x) ** 2
    mm = mask[:, None, :].expand_as(err)
    torch.testing.assert_close(out["mse_masked"], err[mm].mean())
    assert segment_features(torch.randn(2, 10, 8), "similarity").shape == (2, 45)


def test_brainmae_learns_the_planted_modules(cohort, fitted):
    ds, sim = cohort
    X = ds["signal"].values
    tr, _, te = ev.pretrain_split(ds)
    patterns, index = ev.eval_masks(int(te.sum()), X.shape[2], 0.5, 8, 0)
    masks = patterns[index]
    base = ev.reconstruction_baselines(X[tr], X[te], patterns, index)
    nmse = ev.nmse(X[te], fitted.reconstruct(X[te], masks), masks)
    assert nmse < 0.9 * base["nmse_mean_fill"] and nmse < base["nmse_ridge"] + 0.05, (nmse, base)
    shuffled = ev.nmse(X[te], fitted.reconstruct(X[te], masks, shuffle_embeddings=True, seed=1), masks)
    assert shuffled > nmse + 0.05
    modules = sim.truth["module"].sel(roi=ds["roi"].values).values
    assert ev.module_ari(fitted.roi_embeddings(), modules) >= 0.8
    assert fitted.score(X[te], masks) == pytest.approx(1 - nmse, rel=1e-6)
    assert fitted.history_[-1]["train_loss"] < fitted.history_[0]["train_loss"]


def test_untrained_model_does_not_recover_the_modules(cohort):
    ds, sim = cohort
    model = BrainMAE(**dict(FAST, max_epochs=1, lr=1e-9)).fit(ds["signal"].values[:8])
    modules = sim.truth["module"].sel(roi=ds["roi"].values).values
    assert ev.module_ari(model.roi_embeddings(), modules) < 0.5


def test_save_load_roundtrip_without_pickle(fitted, cohort, tmp_path):
    ds, _ = cohort
    X = ds["signal"].values[:5]
    mask = np.zeros((5, X.shape[2]), dtype=bool)
    mask[:, :3] = True
    p = fitted.save(tmp_path / "w.nc")  # a model_fit netCDF file: weights as variables, nothing pickled
    ds = xr.open_dataset(p, engine="h5netcdf")
    assert ds.attrs["model"] == "brainmae" and any(k.startswith("w__") for k in ds.data_vars)
    again = BrainMAE.load(p)
    np.testing.assert_allclose(again.reconstruct(X, mask), fitted.reconstruct(X, mask), rtol=1e-5, atol=1e-6)
    legacy = tmp_path / "w.pt"  # a single encoder in a torch weights file (weights_only) still loads
    torch.save({"meta": json.dumps(fitted._meta()), "state_dict": fitted._state()}, legacy)
    np.testing.assert_allclose(
        BrainMAE.load(legacy).reconstruct(X, mask), fitted.reconstruct(X, mask), rtol=1e-5
    )
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="bad.pt: cannot be opened as netCDF4"):
        BrainMAE.load(bad)


def test_probe_and_finetune_run_by_subject(fitted, cohort):
    ds, sim = cohort
    X = ds["signal"].values
    F = fitted.transform(X)
    S = ev.subject_means(F, ds["segment_subject"].values, ds.sizes["subject"])
    y = sim.truth["label"].values
    res = ev.cross_validate(lambda a, b: (S[a], S[b]), y, ds["fold"].values, "classification")
    assert 0 <= res["accuracy"] <= 1 and 0 <= res["auroc"] <= 1
    seg_y = y[ds["segment_subject"].values]
    net = fitted.finetune(X[:40], seg_y[:40], "classification", X[40:60], seg_y[40:60], max_epochs=2)
    out = fitted.predict_finetuned(net, X[:7])
    assert out.shape == (7, 2) and np.isfinite(out).all()


def test_bad_hyperparameters_are_one_line():
    with pytest.raises(ConfigError, match="unknown parameter\\(s\\) d_modle"):
        split_kwargs({"d_modle": 8})
    with pytest.raises(ConfigError, match="attention must be graph, self or both"):
        BrainMAEConfig(attention="cross")


@pytest.mark.parametrize(
    "variant",
    [
        {"attention": "self"},
        {"attention": "both"},
        {"roi_embedding": "fixed"},
        {"masking": False},
        {"self_loops": True},
        {"graph": "projected"},
    ],
)
def test_ablation_switches_train(variant, cohort):
    ds, _ = cohort
    model = BrainMAE(**dict(FAST, max_epochs=2, **variant)).fit(ds["signal"].values[:40])
    assert np.isfinite(model.history_[-1]["train_loss"])
    if variant.get("roi_embedding") == "fixed":
        assert not any(n == "roi_emb" for n, _ in model.net_.named_parameters())


@pytest.mark.gpu
def test_brainmae_on_cuda_outputs_on_the_input_device(cohort):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    ds, _ = cohort
    X = ds["signal"].values
    model = BrainMAE(**dict(FAST, max_epochs=2, device="cuda")).fit(X[:64], X[64:80])
    assert model.device_.startswith("cuda") and model.precision_ in ("bf16", "fp32")
    net = model.net_
    x = torch.as_tensor(X[:4], dtype=torch.float32, device="cuda")
    mask = random_mask(4, x.shape[2], 0.5, x.device)
    with torch.no_grad():
        out = net(x, mask)
        feats = segment_features(net.encode(x), "similarity")
    assert out.device == x.device and feats.device == x.device
    assert np.isfinite(model.reconstruct(X[:4], mask.cpu().numpy())).all()


# -- the cross-validation protocol as a library (brainpipe.evaluate.brainmae) ---------------------------------------
def _labelled(cohort):
    """The cohort with a class label and a phenotype per subject (the planted label, and a noisy copy of it)."""
    ds, sim = cohort
    y = sim.truth["label"].values.astype(np.int64)
    score = y + np.random.default_rng(0).normal(0, 0.5, y.size)
    return ds.assign(label=("subject", y), target=("subject", score))


class _Recorder:
    """A stand-in encoder for fold ``k``: records the rows it is fine-tuned and stopped on, and predicts each
    segment's class / value from the subject index planted in the segment itself."""

    def __init__(self, y):
        self.y, self.fitted_on, self.stopped_on = y, [], []

    def finetune(self, X, y, task, X_val, y_val, **kw):
        self.fitted_on.append(set(X[:, 0, 0].astype(int).tolist()))
        self.stopped_on.append(set(X_val[:, 0, 0].astype(int).tolist()))
        self.task = task
        self.scale = np.polyfit(
            self.y[X[:, 0, 0].astype(int)], y, 1
        )  # the fold's standardisation of the target
        return None

    def predict_finetuned(self, net, X):
        sub = X[:, 0, 0].astype(int)
        if self.task == "classification":
            return np.eye(2)[self.y[sub]] * 10.0
        return np.polyval(self.scale, self.y[sub])[:, None]


def test_finetune_cv_never_fits_on_the_test_fold(cohort):
    """Planted: every segment carries its subject index; encoder k is fine-tuned on none of fold k's subjects, stops
    early on fold k + 1 only, and the pooled out-of-fold predictions are the planted ones."""
    from brainpipe.evaluate.brainmae import cross_validate_finetune

    ds = _labelled(cohort)
    sub = ds["segment_subject"].values
    ds = ds.assign(signal=(ds["signal"].dims, np.broadcast_to(sub[:, None, None], ds["signal"].shape) * 1.0))
    folds = ds["fold"].values
    y = ds["label"].values
    models = [_Recorder(y) for _ in range(4)]
    res = cross_validate_finetune(models, ds, "classification", y, max_epochs=1, lr=1e-3)
    assert res["accuracy"] == 1.0 and res["auroc"] == 1.0
    for k, m in enumerate(models):
        (fitted,), (stopped,) = m.fitted_on, m.stopped_on
        assert fitted and not fitted & set(np.flatnonzero(folds == k)), f"encoder {k} fitted on its test fold"
        assert set(folds[sorted(fitted)]) == set(range(4)) - {k, (k + 1) % 4}
        assert stopped == set(np.flatnonzero(folds == (k + 1) % 4))
    target = ds["target"].values
    models = [_Recorder(target) for _ in range(4)]
    res = cross_validate_finetune(models, ds, "regression", target, max_epochs=1, lr=1e-3)
    assert res["r2"] == pytest.approx(1.0) and res["mae"] == pytest.approx(0.0, abs=1e-9)


def test_probe_cv_tests_fold_k_on_encoder_k(cohort, monkeypatch):
    """Each test fold's features, and its training subjects', come from that fold's encoder only."""
    from brainpipe.evaluate import brainmae as evb

    ds = _labelled(cohort)
    folds, y = ds["fold"].values, ds["label"].values
    feats = [np.random.default_rng(k).normal(0, 0.1, (len(y), 3)) + y[:, None] for k in range(4)]
    seen, real_cv = [], ev.cross_validate

    def spy(features, y, folds, task, seed=0):
        for k in np.unique(folds):
            tr, te = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
            Ftr, Fte = features(tr, te)
            np.testing.assert_array_equal(Ftr, feats[k][tr])
            np.testing.assert_array_equal(Fte, feats[k][te])
            seen.append(int(k))
        with pytest.raises(AssertionError, match="a test set spans folds"):
            features(np.arange(2), np.arange(len(y)))
        return real_cv(features, y, folds, task, seed=seed)

    monkeypatch.setattr(ev, "cross_validate", spy)
    res = evb.cross_validate_probe(feats, y, folds, "classification", seed=0)
    assert seen == [0, 1, 2, 3] and res["accuracy"] >= 0.9


def test_public_functions_give_the_stage_metrics(cohort, tmp_path):
    """pretrain_folds + score_encoders on a dataset in memory give the stages' outputs, number for number."""
    from brainpipe.data import make_provenance, read, write
    from brainpipe.evaluate.brainmae import folds_to_dataset, pretrain_folds, score_encoders
    from brainpipe.evaluate.metrics import metrics_dataset
    from brainpipe.stages import evaluate_brainmae, pretrain_brainmae

    ds = _labelled(cohort).isel(segment=slice(None, None, 2))
    prov = make_provenance("test", {})
    clean = write(ds, tmp_path / "clean.nc", "roi_segments", prov)
    ds = read(clean, "roi_segments")
    base = {"nmse_ridge": 0.5, "nmse_mean_fill": 1.0, "fc_tangent_accuracy": 0.5, "fc_correlation_r2": 0.1}
    write(metrics_dataset(base, {}, "fmri_baselines", "tiny"), tmp_path / "base.nc", "metrics", prov)
    model = dict(FAST, max_epochs=2)
    params = {"mask_ratio": 0.5, "n_patterns": 4, "seed": 0, "features": "similarity"}
    finetune = {"enabled": True, "max_epochs": 1, "lr": 1e-3, "patience": None}
    pretrain_brainmae.run({"clean": clean}, {"weights": tmp_path / "w.pt", "fit": tmp_path / "fit.nc"}, model)
    files = {
        "clean": clean,
        "weights": tmp_path / "w.pt",
        "fit": tmp_path / "fit.nc",
        "baselines": tmp_path / "base.nc",
    }
    evaluate_brainmae.run(files, {"metrics": tmp_path / "metrics.nc"}, dict(params, finetune=finetune))
    models = pretrain_folds(ds, model)
    stage_fit, fit = read(tmp_path / "fit.nc", "model_fit"), folds_to_dataset(models, ds)
    for v in ("fold_roi_embedding", "fold_train_subject", "graph_attention", "history_train_loss"):
        np.testing.assert_array_equal(fit[v].values, stage_fit[v].values)
    values = score_encoders(ds, models, baselines=base, finetune=finetune, **params)
    m = read(tmp_path / "metrics.nc", "metrics")
    stage_values = dict(zip(m["metric"].values.astype(str), m["value"].values, strict=True))
    assert stage_values.pop("pretrain_seconds") > 0
    assert {"probe_accuracy", "probe_r2", "finetune_accuracy", "finetune_r2", "masked_nmse_vs_ridge"} <= set(
        values
    )
    assert values == stage_values


def test_fold_protocol_bad_inputs(cohort):
    from brainpipe.evaluate.brainmae import pretrain_folds, score_encoders

    ds, _ = cohort
    two = ds.assign(segment_fold=ds["segment_fold"] % 2)
    with pytest.raises(
        InputError, match="clean.nc: outer fold 0 leaves no training segments .* raise fmri.clean"
    ):
        pretrain_folds(two, FAST, source="clean.nc")
    with pytest.raises(InputError, match="w.pt: 2 per-fold encoders but the roi_segments data has 4 folds"):
        score_encoders(ds, [BrainMAE(), BrainMAE()], mask_ratio=0.5, n_patterns=4, seed=0, source="w.pt")


def _lagged(n_seg: int, L: int, R: int, seed: int) -> np.ndarray:
    """Segments whose ROI ``r`` is ROI ``r - R/2`` one volume later (plus a little noise): only the visible ROIs'
    neighbouring volumes tell the hidden ones."""
    rng = np.random.default_rng(seed)
    h = R // 2
    src = rng.standard_normal((n_seg, L + 1, h))
    X = np.concatenate([src[:, 1:], src[:, :-1]], axis=2) + 0.1 * rng.standard_normal((n_seg, L, R))
    return X


def test_segment_ridge_uses_the_whole_segment_and_tunes_its_penalty():
    """The hidden half is the visible half one volume earlier: the same-volume ridge cannot see it, the segment
    ridge must; penalties and the PCA size come from inner CV on training groups (recorded)."""
    L, R = 6, 8
    X_tr, X_te = _lagged(240, L, R, 0), _lagged(60, L, R, 1)
    pat = np.zeros((1, R), bool)
    pat[0, R // 2 :] = True
    out = ev.reconstruction_baselines(X_tr, X_te, pat, np.zeros(60, int), np.arange(240) % 4)
    assert out["nmse_ridge_volume"] > 0.9 and out["nmse_ridge"] < 0.4, out
    assert out["nmse_best_baseline"] == min(
        out[k] for k in ("nmse_mean_fill", "nmse_ridge", "nmse_ridge_volume", "nmse_pca")
    )
    assert np.isfinite(out["ridge_log10_alpha"]) and out["pca_n_components"] >= 1


def test_pca_baseline_completes_low_rank_segments():
    """Rank-2 segments: the linear autoencoder recovers hidden ROIs from visible ones and picks a small size."""
    rng = np.random.default_rng(0)
    L, R = 5, 10
    W = rng.standard_normal((2, L * R))

    def make(n):
        return (rng.standard_normal((n, 2)) @ W).reshape(n, L, R) + 0.05 * rng.standard_normal((n, L, R))

    patterns, index = ev.eval_masks(40, R, 0.5, 4, 0)
    out = ev.reconstruction_baselines(make(200), make(40), patterns, index, np.arange(200) % 5)
    assert out["nmse_pca"] < 0.05 and out["pca_n_components"] <= 4, out


def test_inner_splits_hold_whole_groups_out():
    groups = np.repeat([3, 1, 2, 5], 5)
    for fit, held in ev.inner_splits(groups):
        assert not set(groups[fit]) & set(groups[held]) and held.any() and fit.any()
    one = ev.inner_splits(np.zeros(9, int))  # a single time block: contiguous blocks
    assert [np.flatnonzero(h).tolist() for _, h in one] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_fc_clustering_baseline_finds_planted_modules():
    rng = np.random.default_rng(0)
    modules = np.repeat([0, 1, 2], 4)
    latent = rng.standard_normal((50, 20, 3))
    X = latent[:, :, modules] + 0.7 * rng.standard_normal((50, 20, 12))
    out = ev.fc_clustering_ari(X, modules, seed=0)
    assert out["fc_kmeans_ari"] == 1.0 and out["fc_clustering_ari"] == 1.0
    noise = ev.fc_clustering_ari(rng.standard_normal((50, 20, 12)), modules, seed=0)
    assert noise["fc_clustering_ari"] < 0.5


def test_seeds_train_their_own_encoders_and_are_reported_over(cohort, tmp_path):
    """``seeds: [0, 1]``: the stage trains K encoders per seed (different weights), scores each seed, and reports
    the mean, the SD and the worst seed; the per-seed metrics are score_encoders' on that seed's encoders."""
    from brainpipe.data import make_provenance, read, write
    from brainpipe.evaluate.brainmae import by_seed, over_seeds, score_encoders
    from brainpipe.evaluate.metrics import metrics_dataset
    from brainpipe.models.brainmae import load_fold_models
    from brainpipe.stages import evaluate_brainmae, pretrain_brainmae

    ds = cohort[0].isel(segment=slice(None, None, 3))
    prov = make_provenance("test", {})
    clean = write(ds, tmp_path / "clean.nc", "roi_segments", prov)
    ds = read(clean, "roi_segments")
    base = {"nmse_ridge": 0.5, "nmse_mean_fill": 1.0, "nmse_best_baseline": 0.5}
    write(metrics_dataset(base, {}, "fmri_baselines", "tiny"), tmp_path / "base.nc", "metrics", prov)
    out = {"weights": tmp_path / "w.pt", "fit": tmp_path / "fit.nc"}
    pretrain_brainmae.run({"clean": clean}, out, dict(FAST, max_epochs=1, seeds=[0, 1]))
    groups = by_seed(load_fold_models(tmp_path / "w.pt"))
    assert list(groups) == [0, 1] and [len(g) for g in groups.values()] == [4, 4]
    assert not np.allclose(groups[0][0].roi_embeddings(), groups[1][0].roi_embeddings())
    assert read(tmp_path / "fit.nc", "model_fit").attrs["seeds"].tolist() == [0, 1]
    params = {"mask_ratio": 0.5, "n_patterns": 4, "seed": 0}
    evaluate_brainmae.run(
        dict(out, clean=clean, baselines=tmp_path / "base.nc"),
        {"metrics": tmp_path / "m.nc"},
        dict(params, bars={}),
    )
    m = read(tmp_path / "m.nc", "metrics")
    got = dict(zip(m["metric"].values.astype(str), m["value"].values, strict=True))
    runs = {s: score_encoders(ds, g, baselines=base, **params) for s, g in groups.items()}
    a, b = runs[0]["masked_nmse"], runs[1]["masked_nmse"]
    assert got["masked_nmse"] == pytest.approx((a + b) / 2) and got["masked_nmse_worst"] == pytest.approx(
        max(a, b)
    )
    assert got["masked_nmse_sd"] == pytest.approx(abs(a - b) / np.sqrt(2)) and got["n_seeds"] == 2
    assert got["nmse_ridge"] == 0.5 and "nmse_ridge_sd" not in got
    assert over_seeds({3: {"x": 1.0}}) == {"x": 1.0}


def test_bad_seeds_are_one_line():
    from brainpipe.models.brainmae import seeds, split_kwargs

    assert seeds(None, 4) == [4] and seeds([2, 0]) == [2, 0]
    for bad in ([], [1, 1], [-1], "0", [0.5]):
        with pytest.raises(ConfigError, match="seeds must be a non-empty list of distinct integers"):
            split_kwargs({"seeds": bad})


def test_variable_mask_ratio_per_segment():
    """mask_sampling uniform: each segment hides its own number of ROIs, U(0, mask_ratio) of them (at least 1)."""
    torch.manual_seed(0)
    m = random_mask(2000, 20, 0.8, "cpu", "uniform")
    k = m.sum(1)
    assert k.min() >= 1 and k.max() <= 16 and len(torch.unique(k)) >= 10
    assert abs(k.float().mean().item() - 8.0) < 0.5  # E[round(U(0, 0.8) * 20)] ~ 8
    assert BrainMAE(mask_sampling="uniform", mask_ratio=0.8)._net_config().mask_sampling == "uniform"
    with pytest.raises(ConfigError, match="mask_sampling must be fixed or uniform"):
        BrainMAEConfig(mask_sampling="beta")


# ---- the temporal encoder across segments (issue 15) ------------------------------------------------------------
TEMPORAL = dict(FAST, temporal_encoder="transformer", context=4)


def test_temporal_encoder_shapes_cls_and_padding():
    """Sequences (B, K, L, R) in, the same out; ROI tokens per segment and one [CLS] per sequence; padded segments
    change nothing; the per-segment model stays the default."""
    assert BrainMAEConfig().temporal_encoder == "none"
    torch.manual_seed(0)
    net = BrainMAENet(
        6, 5, BrainMAEConfig(d_model=8, n_heads=2, n_layers=1, temporal_encoder="transformer")
    ).eval()
    x = torch.randn(3, 4, 5, 6)
    valid = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        tok, cls = net.encode_sequences(x, None, valid)
        assert tok.shape == (3, 4, 6, 8) and cls.shape == (3, 8)
        assert net(x, None, valid=valid).shape == x.shape
        x2 = x.clone()
        x2[~valid] = 100.0  # padding content is never a source
        tok2, cls2 = net.encode_sequences(x2, None, valid)
        torch.testing.assert_close(tok2[valid], tok[valid])
        torch.testing.assert_close(cls2, cls)
        # the context is used: another segment of the sequence changes segment 0's tokens
        x3 = x.clone()
        x3[0, 3] += 1.0
        assert not torch.allclose(net.encode_sequences(x3, None, valid)[0][0, 0], tok[0, 0])
    with pytest.raises(ConfigError, match="temporal_encoder must be none or transformer"):
        BrainMAEConfig(temporal_encoder="lstm")
    with pytest.raises(ConfigError, match="context must be an integer >= 1"):
        BrainMAEConfig(context=0)


def test_temporal_masking_never_leaks_hidden_values():
    """The same ROIs hidden in every segment of a sequence (training default and evaluation): changing the hidden
    ROIs' values anywhere in the sequence changes no output (reconstruction of every ROI, [CLS])."""
    from brainpipe.models.brainmae import sequence_mask

    torch.manual_seed(0)
    cfg = BrainMAEConfig(d_model=8, n_heads=2, n_layers=2, temporal_encoder="transformer", attention="both")
    net = BrainMAENet(7, 5, cfg).eval()
    x = torch.randn(4, 3, 5, 7)
    mask = sequence_mask(cfg, 4, 3, 7, "cpu")
    assert mask.shape == (4, 3, 7) and bool((mask == mask[:, :1]).all())
    x2 = torch.where(mask[:, :, None, :], torch.randn_like(x) * 50, x)
    with torch.no_grad():
        torch.testing.assert_close(net(x2, mask), net(x, mask))
        torch.testing.assert_close(net.encode_sequences(x2, mask)[1], net.encode_sequences(x, mask)[1])
    ind = sequence_mask(BrainMAEConfig(sequence_mask="independent"), 200, 3, 7, "cpu")
    assert not bool((ind == ind[:, :1]).all())
    # the model's reconstruct with sequences: hidden values never reach the output
    X = np.random.default_rng(0).standard_normal((12, 5, 7)).astype("float32")
    model = BrainMAE(**dict(TEMPORAL, max_epochs=1, context=3)).fit(X)
    seqs = np.arange(12).reshape(4, 3)
    m = np.zeros((12, 7), bool)
    m[:, [1, 4]] = True
    X2 = X.copy()
    X2[:, :, [1, 4]] = 99.0
    np.testing.assert_array_equal(
        model.reconstruct(X2, m, sequences=seqs), model.reconstruct(X, m, sequences=seqs)
    )


def test_segment_sequences_are_ordered_non_overlapping_and_in_one_fold(cohort):
    from brainpipe.evaluate.brainmae import segment_sequences

    ds, _ = cohort
    seqs = segment_sequences(ds, 3)
    v = seqs >= 0
    assert sorted(seqs[v].tolist()) == list(range(ds.sizes["segment"]))  # every segment once
    start = ds["segment_start"].values
    length = ds["signal"].shape[1] * float(ds.attrs["repetition_time_s"])
    for key in ("segment_subject", "segment_fold"):
        k = ds[key].values[seqs.clip(0)]
        assert ((k == k[:, :1]) | ~v).all()
    for row in seqs:
        s = start[row[row >= 0]]
        assert (np.diff(s) >= length - 1e-6).all()
    # overlapping segments (step of 1/4 segment): interleaved chains, still no overlap inside a sequence
    n = 20
    over = xr.Dataset(
        {
            "signal": (("segment", "lag", "roi"), np.zeros((n, 8, 2))),
            "segment_subject": ("segment", np.zeros(n, int)),
            "segment_fold": ("segment", np.zeros(n, int)),
            "segment_start": ("segment", np.arange(n) * 2.0),
        },
        attrs={"repetition_time_s": 1.0},
    )
    seqs = segment_sequences(over, 8)
    assert seqs.shape == (4, 8) and seqs[0, :5].tolist() == [0, 4, 8, 12, 16]


def test_temporal_brainmae_learns_the_cohort(cohort):
    """Pretrained on sequences, the temporal model reconstructs held-out subjects' hidden ROIs (same ROIs hidden in
    the whole sequence) better than mean filling, and its [CLS] read-out is one vector per sequence."""
    from brainpipe.evaluate.brainmae import _reconstruct, segment_sequences

    ds, _ = cohort
    X = ds["signal"].values
    tr, va, te = ev.pretrain_split(ds)
    seqs = segment_sequences(ds, 4)
    torch.manual_seed(0)
    model = BrainMAE(**dict(TEMPORAL, max_epochs=110, batch_size=16)).fit(
        X, X, sequences=seqs[tr[seqs[:, 0]]], sequences_val=seqs[va[seqs[:, 0]]]
    )
    patterns, index = ev.eval_masks(int(te.sum()), X.shape[2], 0.5, 8, 0)
    base = ev.reconstruction_baselines(X[tr], X[te], patterns, index)
    nmse = ev.nmse(X[te], _reconstruct(model, ds, X, te, patterns, index), patterns[index])
    assert nmse < 0.9 * base["nmse_mean_fill"], (nmse, base)
    assert model.history_[-1]["train_loss"] < model.history_[0]["train_loss"]
    assert model.transform(X, "cls", sequences=seqs).shape == (len(seqs), 16)


def test_ablations_are_judged_against_the_base():
    """An ablation gets <metric>_vs_base (ablation minus base) with bars that the base wins, and none of the
    baselines' bars."""
    from brainpipe.evaluate.fmri import versus_base
    from brainpipe.evaluate.metrics import metrics_dataset

    base = {"masked_nmse": 0.78, "roi_embedding_ari": 1.0, "probe_accuracy": 0.9}
    abl = {
        "masked_nmse": 0.80,
        "roi_embedding_ari": 0.3,
        "probe_accuracy": 0.9,
        "masked_nmse_vs_best_baseline": 0.1,
    }
    values, bars = versus_base(abl, base)
    assert values["masked_nmse_vs_base"] == pytest.approx(0.02)
    assert values["roi_embedding_ari_vs_base"] == pytest.approx(-0.7)
    assert set(bars) == {"masked_nmse_vs_base", "roi_embedding_ari_vs_base", "probe_accuracy_vs_base"}
    m = metrics_dataset(values, bars, "brainmae/fixed_embeddings", "sim")
    passed = dict(zip(m["metric"].values.astype(str), m["passed"].values.tolist(), strict=True))
    assert passed["masked_nmse_vs_base"] == 1 and passed["roi_embedding_ari_vs_base"] == 1
    assert passed["probe_accuracy_vs_base"] == 0  # a tie: the base does not win
    assert passed["masked_nmse_vs_best_baseline"] == -1  # no baseline bar on an ablation
    assert versus_base(abl, base, {"masked_nmse_vs_base": 0.05})[1] == {"masked_nmse_vs_base": 0.05}


def test_probe_readout_is_chosen_on_the_validation_fold(monkeypatch):
    """With a grid of read-outs, each outer fold keeps the one that scores best on its validation fold (planted: only
    'good' carries the label) and predicts its test fold once, with the chosen read-out only."""
    from brainpipe.evaluate import brainmae as ebm

    rng = np.random.default_rng(0)
    n, K = 48, 4
    y = np.arange(n) % 2
    folds = np.repeat(np.arange(K), n // K)
    good = [y[:, None] * 2.0 + rng.standard_normal((n, 3)) for _ in range(K)]
    noise = [rng.standard_normal((n, 3)) for _ in range(K)]
    calls = []
    real = ev.fit_predict

    def spy(Ftr, ytr, Fte, task, seed=0):
        calls.append(len(Fte))
        return real(Ftr, ytr, Fte, task, seed)

    monkeypatch.setattr(ev, "fit_predict", spy)
    out = ebm.cross_validate_probe_select({"noise": noise, "good": good}, y, folds, "classification")
    assert out["readout_good"] == K and out["readout_noise"] == 0 and out["accuracy"] > 0.8
    assert len(calls) == 3 * K  # per fold: two validation fits, one test fit
    one = ebm.cross_validate_probe(noise, y, folds, "classification")
    assert one["accuracy"] < 0.8


def test_mask_sampling_chosen_on_the_validation_fold(cohort, tmp_path):
    """select: every candidate setting is pretrained per fold and the least validation NMSE is kept and recorded
    (the fit carries the grid, each candidate's validation NMSE and the choice); a bad grid is one line."""
    from brainpipe.data import make_provenance, read, write
    from brainpipe.evaluate.brainmae import folds_to_dataset, pretrain_folds

    ds, _ = cohort
    ds = ds.isel(segment=slice(None, None, 3))
    params = dict(FAST, max_epochs=2, select={"mask_sampling": ["fixed", "uniform"]})
    models = pretrain_folds(ds, params)
    for m in models:
        sel = m.selection_
        assert sel["grid"] == [{"mask_sampling": "fixed"}, {"mask_sampling": "uniform"}]
        best = sel["grid"][int(np.argmin(sel["validation_nmse"]))]
        assert sel["chosen"] == best and m.mask_sampling == best["mask_sampling"]
    fit = folds_to_dataset(models, ds)
    assert fit["fold_validation_nmse"].shape == (4, 2)
    write(fit, tmp_path / "fit.nc", "model_fit", make_provenance("test", {}))
    assert json.loads(read(tmp_path / "fit.nc", "model_fit").attrs["select_grid"])[1] == {
        "mask_sampling": "uniform"
    }
    for bad, msg in (
        ({"nope": [1]}, "select.nope must be a network setting"),
        ({"mask_sampling": []}, "non-empty"),
    ):
        with pytest.raises(ConfigError, match=msg):
            split_kwargs(dict(FAST, select=bad))
    with pytest.raises(ConfigError, match="mask_sampling must be fixed or uniform"):
        split_kwargs(dict(FAST, select={"mask_sampling": ["beta"]}))


def test_bad_sequences_are_one_line():
    X = np.random.default_rng(0).standard_normal((12, 5, 4)).astype("float32")
    model = BrainMAE(**dict(TEMPORAL, max_epochs=1, context=3))
    with pytest.raises(
        InputError, match=r"sequences must be \(sequence, context\) indices into the 12 segments"
    ):
        model.fit(X, sequences=np.array([[0, 20, -1]]))
    with pytest.raises(InputError, match="sequences must be"):
        model.fit(X, sequences=np.arange(12))
    model.fit(
        X, X, sequences=np.arange(12).reshape(4, 3), sequences_val=np.zeros((0, 3), int)
    )  # no validation
    assert model.best_epoch_ is not None or model.history_
