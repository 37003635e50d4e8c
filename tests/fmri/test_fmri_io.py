"""fMRI readers, cleaning and segments: every ingest path, the bundled nitime data, and each bad input (one line
naming the file and the fix, no partial output)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainpipe.data import check
from brainpipe.errors import ConfigError, InputError
from brainpipe.io.fmri import bids_entities, iter_runs, read_table
from brainpipe.preprocess.fmri import assemble_cohort, check_length, clean_run, segment_length
from brainpipe.simulate import simulate
from brainpipe.simulate.fmri import write_derivatives

REPO = Path(__file__).resolve().parents[2]
NITIME = REPO / "resources" / "fmri" / "nitime"
TINY = {
    "n_subjects": 6,
    "rois_per_module": 3,
    "n_volumes": 60,
    "voxels_per_roi_side": 1,
    "high_motion_fraction": 0.5,
    "n_high_motion_volumes": 3,
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    sim = simulate("fmri_modular_cohort", TINY, seed=2)
    root = tmp_path_factory.mktemp("fmrisim")
    write_derivatives(sim, root, seed=2)
    return {
        "root": root,
        "sim": sim,
        "fmriprep": root / "derivatives" / "fmriprep",
        "atlas": root / "atlas" / "atlas.nii.gz",
        "labels": root / "atlas" / "atlas.tsv",
        "tables": root / "tables",
    }


def copy_tree(tree, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(tree["root"], dst)
    return dst


def one_line(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text
    return text


# ---- the ingest paths -----------------------------------------------------------------------------------------
def test_fmriprep_tree_reads_with_tr_confounds_scrubbing_and_participants(tree):
    runs = list(iter_runs(tree["fmriprep"], atlas=tree["atlas"], atlas_labels=tree["labels"]))
    sim = tree["sim"]
    assert len(runs) == 6
    for ds, sub in zip(runs, sim.data["subject"].values, strict=True):
        assert check(ds, "roi_timeseries", require_provenance=False) == []
        assert (
            ds.attrs["subject"] == sub and ds.attrs["task"] == "rest" and ds.attrs["repetition_time_s"] == 1.0
        )
        assert list(ds["roi"].values) == list(sim.data["roi"].values)
        assert {"trans_x", "rot_z", "white_matter", "csf"} <= set(ds["confound"].values.tolist())
        # the ROI signal is the mean of the ROI's voxels: it follows the simulated ROI signal
        truth = sim.data["bold"].sel(subject=sub).values
        r = [np.corrcoef(ds["signal"].values[:, k], truth[:, k])[0, 1] for k in range(truth.shape[1])]
        assert min(r) > 0.9
        # scrubbing: every planted high-motion volume is masked out
        hm = sim.data["high_motion"].sel(subject=sub).values
        assert not ds["sample_mask"].values[hm].any()
        part = json.loads(ds.attrs["participant"])
        assert part["group"] in ("control", "patient") and float(part["score"]) == pytest.approx(
            float(sim.truth["phenotype"].sel(subject=sub)), abs=1e-5
        )


def test_confound_strategy_is_configurable(tree):
    ds = next(
        iter_runs(tree["fmriprep"], atlas=tree["atlas"], confounds={"strategy": ["motion"], "motion": "full"})
    )
    assert ds.sizes["confound"] == 24 and "sample_mask" in ds and bool(ds["sample_mask"].all())
    assert list(ds["roi"].values)[:2] == ["roi-1", "roi-2"]  # no labels table: names from the label values


def test_nifti_and_tables_paths_agree(tree):
    bold = sorted(tree["fmriprep"].rglob("*_bold.nii.gz"))[0]
    a = next(iter_runs(bold, "nifti", atlas=tree["atlas"], atlas_labels=tree["labels"]))
    t = list(
        iter_runs(tree["tables"], repetition_time_s=1.0, participants=tree["tables"] / "participants.tsv")
    )
    assert len(t) == 6 and t[0].attrs["subject"] == "01" and json.loads(t[0].attrs["participant"])["group"]
    assert a.attrs["repetition_time_s"] == 1.0 and list(a["roi"].values) == list(t[0]["roi"].values)
    r = np.corrcoef(a["signal"].values[:, 0], t[0]["signal"].values[:, 0])[0, 1]
    assert r > 0.9


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".1D", ".npy"])
def test_table_formats(tmp_path, suffix, rng):
    x = rng.standard_normal((30, 4))
    p = tmp_path / f"sub-07_task-x_timeseries{suffix}"
    if suffix == ".npy":
        np.save(p, x)
    elif suffix == ".1D":
        np.savetxt(p, x, header="afni", comments="# ")
    else:
        pd.DataFrame(x, columns=list("abcd")).to_csv(p, sep="\t" if suffix == ".tsv" else ",", index=False)
    ds = read_table(p, 2.0)
    assert ds.sizes == {"time": 30, "roi": 4} and ds.attrs["subject"] == "07"
    np.testing.assert_allclose(ds["signal"].values, x, rtol=1e-9)
    assert ds["time"].values[-1] == 58.0


def test_bundled_nitime_reads():
    ds = read_table(
        NITIME / "fmri_timeseries.csv", 1.89, confound_columns=["WM", "Vent"], drop_columns=["Brain"]
    )
    assert ds.sizes["time"] == 250 and ds.sizes["roi"] == 28 and ds.sizes["confound"] == 2
    assert ds["roi"].values[0] == "LCau" and ds.attrs["repetition_time_s"] == 1.89
    ev = read_table(NITIME / "event_related_fmri.csv", 2.0, drop_columns=["events"])
    assert ev.sizes == {"time": 3360, "roi": 1}
    img = nib.load(NITIME / "fmri1.nii.gz")
    assert img.shape == (10, 10, 18, 40)
    assert (NITIME / "LICENSE").read_text().startswith("Copyright (c) 2006-2011, NIPY Developers")


def test_bundled_nitime_nifti_with_an_atlas(tmp_path):
    img = nib.load(NITIME / "fmri1.nii.gz")
    atlas = np.zeros(img.shape[:3], dtype=np.int16)
    atlas[:5, :, :9], atlas[5:, :, :9], atlas[:, :, 9:] = 1, 2, 3
    ap = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(atlas, img.affine), ap)
    ds = next(iter_runs(NITIME / "fmri1.nii.gz", atlas=ap))
    assert ds.sizes == {"time": 40, "roi": 3}
    assert ds.attrs["repetition_time_s"] == pytest.approx(
        1.35
    )  # from the header: the nitime image has no sidecar
    data = np.asarray(img.dataobj, dtype=np.float64)
    np.testing.assert_allclose(ds["signal"].values[:, 2], data[:, :, 9:].reshape(-1, 40).mean(0), rtol=1e-6)


def test_bids_entities():
    assert bids_entities("sub-01_ses-a_task-rest_run-2_space-MNI_desc-preproc_bold.nii.gz") == {
        "sub": "01",
        "ses": "a",
        "task": "rest",
        "run": "2",
        "space": "MNI",
    }


# ---- cleaning and segments ------------------------------------------------------------------------------------------
def test_cleaning_removes_motion_and_drift_and_scrubbed_volumes(tree):
    raw = next(iter_runs(tree["fmriprep"], atlas=tree["atlas"], atlas_labels=tree["labels"]))
    out = clean_run(raw)
    keep = raw["sample_mask"].values
    assert out.sizes["time"] == keep.sum() and np.allclose(out["time"].values, raw["time"].values[keep])
    y = out["signal"].values
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-8)
    np.testing.assert_allclose(y.std(0, ddof=1), 1, atol=1e-6)
    from scipy.signal import detrend

    mot = detrend(raw["confounds"].sel(confound=["trans_x", "trans_y", "trans_z"]).values[keep], axis=0)
    y = clean_run(raw, high_pass=None)["signal"].values  # without the filter the projection is exact
    resid = np.abs(np.corrcoef(np.hstack([y, mot]).T)[: y.shape[1], y.shape[1] :])
    assert resid.max() < 1e-6  # motion regressed out
    no_conf = clean_run(raw, use_confounds=False, high_pass=None)["signal"].values
    assert np.abs(np.corrcoef(np.hstack([no_conf, mot]).T)[: y.shape[1], y.shape[1] :]).max() > 0.3


def test_segments_in_seconds_use_each_tr_and_skip_scrubbed_gaps(tree):
    assert (
        segment_length(15.0, 1.0) == 15
        and segment_length(15.0, 1.89) == 8
        and segment_length(15.0, 0.72) == 21
    )
    runs = [
        clean_run(r) for r in iter_runs(tree["fmriprep"], atlas=tree["atlas"], atlas_labels=tree["labels"])
    ]
    coh = assemble_cohort(runs, 10.0, "group", "score", n_folds=3, seed=0)
    assert check(coh, "roi_segments", require_provenance=False) == []
    assert coh.sizes["lag"] == 10 and coh.attrs["split_by"] == "subject"
    assert set(np.unique(coh["fold"].values)) == {0, 1, 2}
    sim = tree["sim"]
    assert list(coh["label"].values) == list(sim.truth["label"].values)
    assert coh.attrs["classes"] == "control,patient"
    for i, run in enumerate(runs):  # no segment spans a scrubbed volume
        starts = coh["segment_start"].values[coh["segment_subject"].values == i]
        t = run["time"].values
        for s in starts:
            j = int(np.searchsorted(t, s))
            assert t[j + 9] - t[j] == pytest.approx(9.0)


# ---- bad input: one line, naming the file and the fix ------------------------------------------------------------
def _bad(fn, *match):
    with pytest.raises((InputError, ConfigError)) as info:
        fn()
    text = one_line(info.value)
    for m in match:
        assert m in text, text
    return text


def test_atlas_and_bold_with_different_grids(tree, tmp_path):
    a = nib.load(tree["atlas"])
    data = np.asarray(a.dataobj)
    shape_bad, aff_bad = tmp_path / "shape.nii.gz", tmp_path / "affine.nii.gz"
    nib.save(nib.Nifti1Image(data[:-1], a.affine), shape_bad)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), aff_bad)
    bold = sorted(tree["fmriprep"].rglob("*_bold.nii.gz"))[0]
    _bad(lambda: next(iter_runs(bold, atlas=shape_bad)), str(bold), "voxel grid", "resample")
    _bad(lambda: next(iter_runs(bold, atlas=aff_bad)), str(bold), "affine differs", "same space")


def test_missing_tr(tree, tmp_path):
    bold = sorted(tree["fmriprep"].rglob("*_bold.nii.gz"))[0]
    img = nib.load(bold)
    bad = tmp_path / "sub-01_bold.nii.gz"
    hdr = img.header.copy()
    hdr["pixdim"][4] = 0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, hdr), bad)
    _bad(
        lambda: next(iter_runs(bad, atlas=tree["atlas"])),
        str(bad),
        "repetition time (TR) is missing",
        "repetition_time_s",
    )
    _bad(
        lambda: read_table(NITIME / "fmri_timeseries.csv", None),
        "fmri_timeseries.csv",
        "TR) is missing",
        "repetition_time_s",
    )


def test_confound_rows_differ_from_volumes(tree, tmp_path):
    root = copy_tree(tree, tmp_path)
    conf = sorted((root / "derivatives/fmriprep/sub-02").rglob("*confounds_timeseries.tsv"))[0]
    df = pd.read_csv(conf, sep="\t")
    df.iloc[:-3].to_csv(conf, sep="\t", index=False, na_rep="n/a")
    text = _bad(
        lambda: list(iter_runs(root / "derivatives/fmriprep", atlas=root / "atlas/atlas.nii.gz")),
        str(conf),
        "57 rows",
        "60 volumes",
    )
    assert "one row per volume" in text


def test_nan_and_constant_roi(tmp_path, rng):
    x = rng.standard_normal((20, 3))
    x[4, 1] = np.nan
    p = tmp_path / "nan.csv"
    pd.DataFrame(x, columns=["a", "b", "c"]).to_csv(p, index=False)
    _bad(lambda: read_table(p, 2.0), str(p), "ROI b has NaN", "fix the input")
    x[4, 1] = 0.0
    x[:, 2] = 5.0
    q = tmp_path / "const.npy"
    np.save(q, x)
    _bad(lambda: read_table(q, 2.0, roi_names=["a", "b", "c"]), str(q), "ROI c is constant", "drop it")


def test_run_shorter_than_one_segment(tree):
    run = read_table(NITIME / "event_related_fmri.csv", 2.0, drop_columns=["events"]).isel(time=slice(0, 6))
    _bad(lambda: check_length(run, 15.0), "event_related_fmri.csv", "shorter than one segment", "segment_s")
    _bad(
        lambda: assemble_cohort([run], 15.0),
        "event_related_fmri.csv",
        "shorter than one segment",
        "segment_s",
    )
    _bad(lambda: clean_run(run), "event_related_fmri.csv", "cannot be band-passed", "high_pass")


def test_participant_label_missing(tree, tmp_path):
    root = copy_tree(tree, tmp_path)
    part = root / "tables" / "participants.tsv"
    df = pd.read_csv(part, sep="\t", dtype=str)
    df.loc[df["participant_id"] == "sub-03", "group"] = "n/a"
    df.to_csv(part, sep="\t", index=False)
    runs = [clean_run(r) for r in iter_runs(root / "tables", repetition_time_s=1.0, participants=part)]
    _bad(
        lambda: assemble_cohort(runs, 10.0, classification="group"),
        "sub-03",
        "no 'group' value",
        "participants.tsv",
    )
    assemble_cohort(runs, 10.0, regression="score")  # the regression task does not need it


def test_atlas_label_without_voxels(tree, tmp_path):
    labels = tmp_path / "labels.tsv"
    df = pd.read_csv(tree["labels"], sep="\t")
    pd.concat([df, pd.DataFrame({"index": [99], "name": ["ghost"]})]).to_csv(labels, sep="\t", index=False)
    bold = sorted(tree["fmriprep"].rglob("*_bold.nii.gz"))[0]
    _bad(
        lambda: next(iter_runs(bold, atlas=tree["atlas"], atlas_labels=labels)),
        "atlas.nii.gz",
        "ghost (label 99)",
        "has no voxels",
        "remove it",
    )


def test_single_subject_split_by_time_blocks_without_shared_volumes():
    run = clean_run(
        read_table(
            NITIME / "fmri_timeseries.csv", 1.89, confound_columns=["WM", "Vent"], drop_columns=["Brain"]
        )
    )
    plain = assemble_cohort([run], 15.0)
    assert plain.attrs["split_by"] == "time" and plain.sizes["segment"] == 31 and plain.sizes["lag"] == 8
    over = assemble_cohort([run], 15.0, segment_step_s=1.89)
    assert check(over, "roi_segments", require_provenance=False) == []
    start, fold = over["segment_start"].values, over["segment_fold"].values
    assert over.sizes["segment"] > 5 * plain.sizes["segment"]
    assert start[fold == 0].min() > start[fold != 0].max()  # the held-out block is the last one
    span = 8 * 1.89
    for f in np.unique(fold):
        a, b = start[fold == f], start[fold != f]
        assert np.min(np.abs(a[:, None] - b[None, :])) >= span - 1e-6  # no volume in two folds
