"""fMRI stages end to end on a tiny simulated cohort (contract outputs, provenance, no partial outputs on bad
input) and the fMRI config cross-checks."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
import yaml

from brainpipe.config import validate_config
from brainpipe.data import provenance_of, read
from brainpipe.errors import ConfigError, InputError
from brainpipe.evaluate import fmri as ev
from brainpipe.models.brainmae import BrainMAE, load_fold_models
from brainpipe.stages import (
    clean_fmri,
    evaluate_brainmae,
    fmri_baselines,
    ingest_fmri,
    pretrain_brainmae,
    simulate_fmri,
)

SIM = {
    "generator": "fmri_modular_cohort",
    "seed": 4,
    "params": {"n_subjects": 8, "rois_per_module": 3, "n_volumes": 60, "voxels_per_roi_side": 1},
}
EVAL = {"mask_ratio": 0.5, "n_patterns": 4, "seed": 0, "features": "similarity"}
MODEL = {
    "d_model": 16,
    "n_layers": 1,
    "n_heads": 2,
    "max_epochs": 3,
    "patience": None,
    "device": "cpu",
    "progress": False,
}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    d = tmp_path_factory.mktemp("fmri_chain")
    simulate_fmri.run({}, {"source": d / "source", "truth": d / "truth.nc"}, SIM)
    src = d / "source"
    ingest_fmri.run(
        {"source": src / "derivatives/fmriprep"},
        {"roi": d / "roi"},
        {
            "format": "fmriprep",
            "atlas": str(src / "atlas/atlas.nii.gz"),
            "atlas_labels": str(src / "atlas/atlas.tsv"),
        },
    )
    clean_fmri.run(
        {"roi": d / "roi"},
        {"clean": d / "clean.nc"},
        {"segment_s": 10.0, "n_folds": 4, "classification": "group", "regression": "score"},
    )
    fmri_baselines.run(
        {"clean": d / "clean.nc", "truth": d / "truth.nc"},
        {"metrics": d / "baselines.nc"},
        dict(EVAL, dataset="tiny"),
    )
    ckpt = d / "ckpt" / "pre.pt"
    pretrain_brainmae.run(
        {"clean": d / "clean.nc"},
        {"weights": d / "w.pt", "fit": d / "fit.nc"},
        dict(MODEL, checkpoint=str(ckpt)),
    )
    evaluate_brainmae.run(
        {
            "clean": d / "clean.nc",
            "weights": d / "w.pt",
            "fit": d / "fit.nc",
            "baselines": d / "baselines.nc",
            "truth": d / "truth.nc",
        },
        {"metrics": d / "metrics.nc"},
        dict(
            EVAL,
            finetune={"enabled": True, "max_epochs": 1, "lr": 1e-3, "patience": None},
            bars={"roi_embedding_ari": -1.0},
            dataset="tiny",
            variant="base",
            checkpoint=str(d / "ckpt" / "eval.pt"),
        ),
    )
    return d


def test_chain_outputs_follow_their_contracts(chain):
    runs = sorted((chain / "roi").glob("*.nc"))
    assert [r.name for r in runs][:2] == ["sub-01_task-rest.nc", "sub-02_task-rest.nc"] and len(runs) == 8
    roi = read(runs[0], "roi_timeseries")
    prov = provenance_of(roi)
    assert prov["stage"] == "ingest_fmri" and prov["inputs"][0]["path"].endswith("_desc-preproc_bold.nii.gz")
    clean = read(chain / "clean.nc", "roi_segments")
    assert clean.sizes["subject"] == 8 and clean.sizes["roi"] == 12 and clean.sizes["lag"] == 10
    truth = read(chain / "truth.nc", "model_fit")
    assert list(clean["label"].values) == list(truth["label"].values)
    base = read(chain / "baselines.nc", "metrics")
    assert {
        "nmse_ridge",
        "nmse_ridge_volume",
        "nmse_pca",
        "nmse_best_baseline",
        "nmse_mean_fill",
        "ridge_log10_alpha",
        "pca_n_components",
        "fc_clustering_ari",
        "fc_tangent_accuracy",
        "fc_correlation_r2",
    } <= set(base["metric"].values.tolist())
    assert any(p["path"].endswith("truth.nc") for p in provenance_of(base)["inputs"])
    fit = read(chain / "fit.nc", "model_fit")
    assert fit["roi_embedding"].shape == (12, 16) and fit.sizes["epoch"] == 3
    assert fit["fold_roi_embedding"].shape == (4, 12, 16) and fit.attrs["n_folds"] == 4
    np.testing.assert_array_equal(fit["roi_embedding"].values, fit["fold_roi_embedding"].values[0])
    m = read(chain / "metrics.nc", "metrics")
    names = set(m["metric"].values.tolist())
    assert {
        "masked_nmse",
        "masked_nmse_vs_ridge",
        "masked_nmse_vs_pca",
        "masked_nmse_vs_best_baseline",
        "roi_embedding_ari",
        "roi_embedding_ari_vs_fc_clustering",
        "probe_accuracy",
        "probe_accuracy_vs_fc",
        "finetune_accuracy",
        "finetune_r2",
    } <= names
    assert int(m["passed"].sel(metric="roi_embedding_ari")) == 1 and m.attrs["model"] == "brainmae/base"
    assert not list((chain / "ckpt").glob("*.pt"))  # checkpoints removed on success


def test_encoder_of_fold_k_never_trained_on_fold_k(chain):
    """One encoder per outer fold: encoder k trained on neither fold k (its test fold) nor fold k + 1 (its
    early-stopping set), and every one of the K encoders is stored and differs from the others."""
    clean = read(chain / "clean.nc", "roi_segments")
    fit = read(chain / "fit.nc", "model_fit")
    folds = clean["fold"].sel(subject=fit["subject"].values).values
    K = int(clean["segment_fold"].max()) + 1
    assert K == 4 and fit.sizes["fold"] == K
    for k in range(K):
        trained = fit["fold_train_subject"].sel(fold=k).values.astype(bool)
        val = fit["fold_validation_subject"].sel(fold=k).values.astype(bool)
        assert trained.any() and not (trained & (folds == k)).any(), f"encoder {k} trained on its test fold"
        assert set(folds[val].tolist()) == {(k + 1) % K} and not (trained & val).any()
        assert set(folds[trained].tolist()) == set(range(K)) - {k, (k + 1) % K}
        assert int(fit["fold_n_train_segments"].sel(fold=k)) == int(
            np.isin(clean["segment_fold"].values, sorted(set(range(K)) - {k, (k + 1) % K})).sum()
        )
    models = load_fold_models(chain / "w.pt")
    assert len(models) == K
    for k, m in enumerate(models):
        np.testing.assert_allclose(m.roi_embeddings(), fit["fold_roi_embedding"].values[k], rtol=1e-6)
    assert not np.allclose(models[0].roi_embeddings(), models[1].roi_embeddings())
    with pytest.raises(InputError, match="holds 4 per-fold BrainMAE encoders, not one"):
        BrainMAE.load(chain / "w.pt")
    single = models[0].save(chain / "single.nc")
    with pytest.raises(InputError, match="a single BrainMAE encoder .*re-run pretrain_brainmae"):
        load_fold_models(single)


def test_pretrain_resumes_at_the_fold_it_was_in(chain, tmp_path, monkeypatch):
    """Killed while fitting encoder 2: folds 0 and 1 keep their finished checkpoints, the rerun returns them at once,
    trains folds 2 and 3 afresh, ends with the uninterrupted run's encoders and removes every checkpoint."""
    ckpt = tmp_path / "ck" / "pre.pt"
    outs = {"weights": tmp_path / "w.pt", "fit": tmp_path / "fit.nc"}
    real_fit = BrainMAE.fit
    calls: list[str] = []

    def killed_at_fold_2(self, X, X_val=None, checkpoint=None, **kw):
        calls.append(str(checkpoint))
        if len(calls) == 3:
            raise KeyboardInterrupt("preempted")
        return real_fit(self, X, X_val, checkpoint=checkpoint, **kw)

    monkeypatch.setattr(BrainMAE, "fit", killed_at_fold_2)
    with pytest.raises(KeyboardInterrupt):
        pretrain_brainmae.run({"clean": chain / "clean.nc"}, outs, dict(MODEL, checkpoint=str(ckpt)))
    assert sorted(p.name for p in ckpt.parent.glob("*.pt")) == ["pre.pt.fold-0.pt", "pre.pt.fold-1.pt"]
    assert not outs["weights"].exists() and not outs["fit"].exists()
    resumed: list = []

    def spy(self, *a, **kw):
        out = real_fit(self, *a, **kw)
        resumed.append(self.resumed_from_step_)
        return out

    monkeypatch.setattr(BrainMAE, "fit", spy)
    pretrain_brainmae.run({"clean": chain / "clean.nc"}, outs, dict(MODEL, checkpoint=str(ckpt)))
    assert resumed[0] is not None and resumed[1] is not None and resumed[2:] == [None, None]
    assert not list(ckpt.parent.glob("*.pt"))
    again, ref = read(outs["fit"], "model_fit"), read(chain / "fit.nc", "model_fit")
    np.testing.assert_array_equal(again["fold_roi_embedding"].values, ref["fold_roi_embedding"].values)


def test_evaluate_fine_tunes_encoder_k_without_fold_k(chain, tmp_path, monkeypatch):
    """Fine-tuning for test fold k starts from encoder k and sees none of fold k's segments; the probe's features
    for fold k come from encoder k."""
    clean = read(chain / "clean.nc", "roi_segments")
    X = np.asarray(clean["signal"].values, dtype=np.float32)
    seg_fold = np.asarray(clean["segment_fold"].values)
    seen: list[tuple[int, set, set]] = []
    transformed: list[int] = []
    models = load_fold_models(chain / "w.pt")
    for k, m in enumerate(models):
        m.tag = k

    def folds_of(rows):
        hit = (np.asarray(rows)[:, None] == X[None]).all(axis=(2, 3))
        assert (hit.sum(axis=1) >= 1).all()
        return set(seg_fold[hit.any(axis=0)].tolist())

    real_finetune, real_transform = BrainMAE.finetune, BrainMAE.transform

    def spy_finetune(self, Xtr, y, task, Xva=None, yva=None, **kw):
        seen.append((self.tag, folds_of(Xtr), folds_of(Xva)))
        return real_finetune(self, Xtr, y, task, Xva, yva, **kw)

    def spy_transform(self, Xs, features="similarity"):
        transformed.append(self.tag)
        return real_transform(self, Xs, features)

    probed: list[int] = []
    real_cv = ev.cross_validate

    def spy_cv(features, y, folds, task, seed=0):
        expected = [
            ev.subject_means(real_transform(m, X, "similarity"), clean["segment_subject"].values, len(folds))
            for m in models
        ]
        for k in np.unique(folds):
            tr, te = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
            Ftr, Fte = features(tr, te)
            np.testing.assert_allclose(Fte, expected[k][te], rtol=1e-5)
            np.testing.assert_allclose(Ftr, expected[k][tr], rtol=1e-5)
            probed.append(int(k))
        return real_cv(features, y, folds, task, seed=seed)

    monkeypatch.setattr(ev, "cross_validate", spy_cv)
    monkeypatch.setattr(evaluate_brainmae, "load_fold_models", lambda path: models)
    monkeypatch.setattr(BrainMAE, "finetune", spy_finetune)
    monkeypatch.setattr(BrainMAE, "transform", spy_transform)
    evaluate_brainmae.run(
        {
            "clean": chain / "clean.nc",
            "weights": chain / "w.pt",
            "fit": chain / "fit.nc",
            "baselines": chain / "baselines.nc",
        },
        {"metrics": tmp_path / "metrics.nc"},
        dict(EVAL, finetune={"enabled": True, "max_epochs": 1, "lr": 1e-3, "patience": None}, dataset="tiny"),
    )
    assert sorted(transformed) == [0, 1, 2, 3] and probed == [0, 1, 2, 3] * 2
    assert len(seen) == 8  # 4 folds x (classification, regression)
    for k, train_folds, val_folds in seen:
        assert k not in train_folds and k not in val_folds and val_folds == {(k + 1) % 4}
    assert sorted(k for k, _, _ in seen) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_ingest_bad_atlas_leaves_no_output(chain, tmp_path):
    src = chain / "source"
    a = nib.load(src / "atlas/atlas.nii.gz")
    bad = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(a.dataobj), np.diag([2.0, 2.0, 2.0, 1.0])), bad)
    out = tmp_path / "roi"
    with pytest.raises(InputError, match="affine differs from atlas atlas.nii.gz"):
        ingest_fmri.run(
            {"source": src / "derivatives/fmriprep"}, {"roi": out}, {"format": "fmriprep", "atlas": str(bad)}
        )
    assert not out.exists()


def test_clean_missing_label_leaves_no_output(chain, tmp_path):
    roi = tmp_path / "roi"
    shutil.copytree(chain / "roi", roi)
    out = tmp_path / "clean.nc"
    with pytest.raises(InputError, match="has no 'diagnosis' value in participants.tsv"):
        clean_fmri.run({"roi": roi}, {"clean": out}, {"segment_s": 10.0, "classification": "diagnosis"})
    assert not out.exists()
    with pytest.raises(InputError, match="shorter than one segment"):
        clean_fmri.run({"roi": roi}, {"clean": out}, {"segment_s": 120.0})
    assert not out.exists()


FMRI_CFG = {
    "fmri": {
        "datasets": {"sim": {"simulate": {"generator": "fmri_modular_cohort", "params": {"n_subjects": 8}}}},
        "brainmae": {"variants": {"base": {}, "nomask": {"masking": False}}},
    }
}


def _cfg(**changes):
    cfg = yaml.safe_load(yaml.safe_dump(FMRI_CFG))
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def test_fmri_config_defaults_and_cross_checks():
    cfg = validate_config(_cfg())
    assert cfg["fmri"]["clean"]["segment_s"] == 15.0 and cfg["fmri"]["brainmae"]["finetune"]["variants"] == [
        "base"
    ]
    assert cfg["fmri"]["datasets"]["sim"]["simulate"]["source"] == "fmriprep"
    bad = {
        "fmri.datasets.sim.simulate.params": ({"n_subject": 3}, "unknown parameter\\(s\\) n_subject"),
        "fmri.datasets.sim.path": ("x.csv", "needs exactly one of 'simulate' or 'path'"),
        "fmri.brainmae.variants": (
            {"base": {"d_model": 6, "n_heads": 4}},
            "d_model must be >= 4 and divisible by n_heads",
        ),
        "fmri.brainmae.datasets": ({"other": {}}, "no fMRI dataset named 'other'"),
        "fmri.brainmae.finetune": ({"variants": ["big"]}, "'big' is not a variant"),
    }
    for key, (value, pattern) in bad.items():
        with pytest.raises(ConfigError, match=pattern) as info:
            validate_config(_cfg(**{key: value}), source="study.yaml")
        assert "\n" not in str(info.value) and str(info.value).startswith("study.yaml: ")


def test_report_section(chain, tmp_path):
    from brainpipe.report.fmri import sections

    d = tmp_path / "results" / "fmri" / "tiny"
    (d / "brainmae" / "base").mkdir(parents=True)
    (d / "baselines").mkdir()
    for src, dst in (
        ("metrics.nc", "brainmae/base/metrics.nc"),
        ("fit.nc", "brainmae/base/fit.nc"),
        ("baselines.nc", "baselines/metrics.nc"),
        ("clean.nc", "clean.nc"),
        ("truth.nc", "truth.nc"),
    ):
        shutil.copy(chain / src, d / dst)
    out = sections(
        {
            "metrics": [d / "brainmae/base/metrics.nc"],
            "fits": [d / "brainmae/base/fit.nc"],
            "baselines": [d / "baselines/metrics.nc"],
            "clean": [d / "clean.nc"],
            "truths": [d / "truth.nc"],
        }
    )
    assert len(out) == 1 and out[0].anchor == "fmri"
    html = out[0].html
    assert (
        html.startswith('<section id="fmri">')
        and "<h3>tiny</h3>" in html
        and "data:image/png;base64," in html
    )
    assert "8 subject(s), 12 ROIs" in html and "ridge NMSE" in html and "PCA NMSE" in html
    assert '<p class="verdict">masked-ROI NMSE: BrainMAE ' in html and "ROI-embedding ARI: BrainMAE " in html
    assert len(out[0].metrics) == 2


def test_verdict_sentences_say_win_tie_loss_and_spread():
    from brainpipe.report.fmri import verdict

    one = verdict({"masked_nmse_vs_best_baseline": (0.26, 0), "roi_embedding_ari_vs_fc_clustering": (0.0, 1)})
    assert one == (
        "masked-ROI NMSE: BrainMAE loses to the best reconstruction baseline by 0.260 (difference +0.260). "
        "ROI-embedding ARI: BrainMAE ties FC clustering (difference +0.000)."
    )
    three = verdict(
        {
            "probe_accuracy_vs_fc": (0.01, 1),
            "probe_accuracy_vs_fc_sd": (0.02, -1),
            "probe_accuracy_vs_fc_worst": (-0.025, -1),
            "n_seeds": (3.0, -1),
        }
    )
    assert three.startswith("probe accuracy: BrainMAE beats the best FC + logistic baseline by 0.010")
    assert "(mean of 3 seeds, SD 0.020, worst seed -0.025)" in three and verdict({}) == ""
    assert three.endswith("The worst seed loses, so this is no win at every seed.")
    lin = verdict(
        {
            "masked_nmse_vs_best_baseline": (-0.001, -1),
            "masked_nmse_linear_path": (0.618, -1),
            "masked_nmse_vs_linear_path": (-0.0005, -1),
        }
    )
    assert lin.endswith(
        "linear path (a per-volume ridge) alone scores 0.618; the network's correction changes the "
        "NMSE by -0.001."
    )


@pytest.mark.parametrize("standardize", ["zscore_sample", "psc"])
def test_cleaning_fitted_on_training_blocks_never_sees_the_test_block(standardize):
    """Time-block folds: whatever the held-out block holds, the cleaned training volumes are the same (trend,
    confound weights, standardisation fitted without it; the filter does not cross into it)."""
    from brainpipe.preprocess.fmri import clean_fitted

    rng = np.random.default_rng(0)
    T = 200
    x = 100 + rng.standard_normal((T, 5)) + np.linspace(0, 3, T)[:, None]
    conf = rng.standard_normal((T, 2))
    fit = np.arange(T) < 150
    other = x.copy()
    other[~fit] = 1e3 * rng.standard_normal((T - 150, 5)) + 500
    a = clean_fitted(x, fit, True, standardize, conf, 0.01, 0.2, 1.0)
    b = clean_fitted(other, fit, True, standardize, conf, 0.01, 0.2, 1.0)
    np.testing.assert_allclose(a[fit], b[fit])
    assert not np.allclose(a[~fit], b[~fit])
    if standardize == "zscore_sample":
        np.testing.assert_allclose(a[fit].mean(0), 0, atol=1e-9)
        np.testing.assert_allclose(a[fit].std(0, ddof=1), 1, atol=1e-9)
    with pytest.raises(ValueError, match="only 2 volumes to fit the cleaning on"):
        clean_fitted(x, np.arange(T) < 2, True, standardize, conf, None, None, 1.0)


def test_clean_stage_on_time_blocks_fits_without_the_test_block(tmp_path):
    """nitime (one subject: time-block folds): replacing the test block's raw volumes changes no training
    segment of the stage's output, and the output says how the cleaning was fitted."""
    from pathlib import Path

    from brainpipe.data import make_provenance, write
    from brainpipe.io.fmri import read_table

    csv = Path(__file__).resolve().parents[2] / "resources/fmri/nitime/fmri_timeseries.csv"
    raw = read_table(csv, 1.89, confound_columns=["WM", "Vent"], drop_columns=["Brain"])
    params = {
        "detrend": True,
        "standardize": "zscore_sample",
        "high_pass": 0.01,
        "low_pass": None,
        "use_confounds": True,
        "scrub": True,
        "segment_s": 15.0,
        "segment_step_s": None,
        "common_tr_s": None,
        "n_folds": 4,
        "seed": 0,
    }
    out = []
    for name, ds in (("a", raw), ("b", raw.copy(deep=True))):
        if name == "b":
            ds["signal"][-40:] = 1e3 * np.random.default_rng(0).standard_normal(ds["signal"][-40:].shape)
        (tmp_path / name).mkdir()
        write(ds, tmp_path / name / "run.nc", "roi_timeseries", make_provenance("test", {}))
        clean_fmri.run({"roi": tmp_path / name}, {"clean": tmp_path / f"{name}.nc"}, params)
        out.append(read(tmp_path / f"{name}.nc", "roi_segments"))
    a, b = out
    assert "test block (fold 0) never seen" in a.attrs["cleaning_fit"]
    test = a["segment_fold"].values == 0
    assert (
        a["segment_start"].values[test].min() <= raw["time"].values[-40]
    )  # the change is inside the test block
    np.testing.assert_allclose(a["signal"].values[~test], b["signal"].values[~test], rtol=1e-5, atol=1e-5)
    assert not np.allclose(a["signal"].values[test], b["signal"].values[test])


def test_ablation_is_judged_against_the_base_and_readout_chosen_on_validation(chain, tmp_path):
    """An ablation's evaluation (input ``base``: the base variant's metrics) reports <metric>_vs_base with bars that
    the base wins and none of the baselines' bars; a read-out grid records each outer fold's choice."""
    d = chain
    evaluate_brainmae.run(
        {
            "clean": d / "clean.nc",
            "weights": d / "w.pt",
            "fit": d / "fit.nc",
            "baselines": d / "baselines.nc",
            "truth": d / "truth.nc",
            "base": d / "metrics.nc",
        },
        {"metrics": tmp_path / "metrics.nc"},
        dict(
            EVAL,
            features=["similarity", "cls"],
            finetune={"enabled": False},
            bars={"masked_nmse_vs_best_baseline": 0.0, "roi_embedding_ari": -1.0},
            dataset="tiny",
            variant="fixed_embeddings",
        ),
    )
    m = read(tmp_path / "metrics.nc", "metrics")
    vals = dict(zip(m["metric"].values.astype(str), m["value"].values, strict=True))
    passed = dict(zip(m["metric"].values.astype(str), m["passed"].values.tolist(), strict=True))
    assert vals["masked_nmse_vs_base"] == pytest.approx(0.0, abs=1e-6)  # the same encoders as the base
    assert passed["masked_nmse_vs_base"] == 0  # a tie: the base does not win
    assert passed["masked_nmse_vs_best_baseline"] == -1 and passed["roi_embedding_ari"] == -1
    assert vals["probe_accuracy_readout_similarity"] + vals["probe_accuracy_readout_cls"] == 4


def test_ablation_verdict_says_whether_the_base_is_better():
    from brainpipe.report.fmri import ablation_verdict

    said = ablation_verdict(
        "fixed_embeddings",
        {
            "masked_nmse_vs_base": (0.02, 1),
            "roi_embedding_ari_vs_base": (-0.9, 1),
            "probe_accuracy_vs_base": (0.0, 0),
        },
    )
    assert said == (
        "Ablation fixed_embeddings against the base: masked-ROI NMSE: the base is better by 0.020; "
        "ROI-embedding ARI: the base is better by 0.900; probe accuracy: ties (the base does not win)."
    )
    assert ablation_verdict("x", {"masked_nmse": (0.8, -1)}) == ""
