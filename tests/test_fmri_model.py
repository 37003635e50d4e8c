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
