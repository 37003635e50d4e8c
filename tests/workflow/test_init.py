"""brainpipe init (brainpipe.scan): datasets found in folders, what their files say, and the study written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from brainpipe.cli import main
from brainpipe.config import load_study, validate_config
from brainpipe.errors import InputError
from brainpipe.io.fmri import find_tables
from brainpipe.scan import NAME_PATTERN, _schema_has, check_study, scan, study_yaml

REPO = Path(__file__).resolve().parents[2]
SHARED = Path("/work/shared/data")
ROIS = ["L_V1", "R_V1", "L_M1", "R_M1", "L_PFC", "R_PFC"]


# ---- fixture folders ----------------------------------------------------------------------------------------------
def _phy(folder: Path, rng, groups=("good", "good", "good", "mua", "good")) -> Path:
    folder.mkdir(parents=True)
    t = np.sort(rng.integers(0, 30000 * 60, 3000)).astype(np.int64)
    np.save(folder / "spike_times.npy", t[:, None])
    np.save(folder / "spike_clusters.npy", rng.integers(0, len(groups), t.size).astype(np.int32))
    (folder / "params.py").write_text("sample_rate = 30000.0\ndtype = 'int16'\n")
    (folder / "cluster_group.tsv").write_text(
        "cluster_id\tgroup\n" + "".join(f"{i}\t{g}\n" for i, g in enumerate(groups))
    )
    return folder


def _suite2p(
    plane: Path, rng, rate: float | None, n_rois: int = 8, n_frames: int = 600, labels: bool = False
) -> Path:
    plane.mkdir(parents=True)
    F = rng.normal(100, 5, (n_rois, n_frames)).astype(np.float32)
    np.save(plane / "F.npy", F)
    np.save(plane / "Fneu.npy", F * 0.5)
    np.save(plane / "iscell.npy", np.c_[np.r_[np.ones(n_rois - 1), 0], np.full(n_rois, 0.9)])
    if labels:  # identified neurons: the same names in every animal
        rows = "".join(f"{i}\tN{i}\n" for i in range(n_rois))
        (plane / "labels.tsv").write_text("roi\tlabel\n" + rows)
    if rate is not None:
        (plane / "frame_rate.json").write_text(json.dumps({"frame_rate_hz": rate}))
    return plane


def _roi_tables(folder: Path, rng, n_subjects: int = 6, tr: float | None = 2.0) -> Path:
    folder.mkdir(parents=True)
    for i in range(1, n_subjects + 1):
        x = rng.normal(size=(80, len(ROIS)))
        rows = "\n".join(",".join(f"{v:.4f}" for v in r) for r in x)
        (folder / f"sub-{i:02d}_task-rest_timeseries.csv").write_text(",".join(ROIS) + "\n" + rows + "\n")
        if tr is not None:
            (folder / f"sub-{i:02d}_task-rest_timeseries.json").write_text(json.dumps({"RepetitionTime": tr}))
    (folder / "participants.tsv").write_text(
        "participant_id\tgroup\tage\tsite\n"
        + "".join(
            f"sub-{i:02d}\t{'patient' if i % 2 else 'control'}\t{20 + 3 * i}\t{'a' if i <= n_subjects // 2 else 'b'}\n"
            for i in range(1, n_subjects + 1)
        )
    )
    return folder


def _nifti(folder: Path, rng) -> Path:
    import nibabel as nib

    (folder / "bold").mkdir(parents=True)
    (folder / "atlas").mkdir()
    for sub in ("01", "02"):
        img = nib.Nifti1Image(rng.normal(100, 1, (4, 4, 4, 30)).astype(np.float32), np.eye(4))
        img.header.set_zooms((3.0, 3.0, 3.0, 2.5))
        img.header.set_xyzt_units("mm", "sec")
        nib.save(img, folder / "bold" / f"sub-{sub}_task-rest_bold.nii.gz")
    labels = np.repeat(np.arange(1, 5), 16).reshape(4, 4, 4).astype(np.int16)
    nib.save(nib.Nifti1Image(labels, np.eye(4)), folder / "atlas" / "atlas.nii.gz")
    (folder / "atlas" / "atlas.tsv").write_text("index\tname\n1\tA\n2\tB\n3\tC\n4\tD\n")
    return folder


def _study_folder(root: Path) -> Path:
    """One folder of every kind but NWB (tests of their own below): spikes, calcium of two animals, fMRI."""
    rng = np.random.default_rng(0)
    _phy(root / "ephys" / "mouseA_phy", rng)
    spks = rng.poisson(0.3, (20, 6, 30)).astype(np.uint8)
    time = np.arange(20)[:, None] * 5.0 + 0.005 + 0.01 * np.arange(30)[None, :]
    np.savez(
        root / "ephys" / "session3.npz",
        spks=spks,
        time=time,
        feedback_type=rng.choice([-1.0, 1.0], 20),
        contrast_left=rng.choice([0.0, 0.5, 1.0], 20),
    )
    times = np.sort(rng.uniform(0, 100, 2000))
    (root / "ephys" / "tetrode_units.csv").write_text(
        "unit,time\n" + "".join(f"u{rng.integers(0, 4)},{t:.4f}\n" for t in times)
    )
    _suite2p(root / "imaging" / "m1" / "suite2p" / "plane0", rng, 30.0, labels=True)
    _suite2p(root / "imaging" / "m2" / "suite2p" / "plane0", rng, 15.0, labels=True)
    _roi_tables(root / "rest", rng)
    (root / "rest" / "README.txt").write_text(
        "Resting-state ROI time series of six subjects from two sites.\n"
    )
    _nifti(root / "task", rng)
    (root / ".DS_Store").write_text("x")
    (root / "notes.md").write_text("# notes\n")
    return root


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory) -> Path:
    return _study_folder(tmp_path_factory.mktemp("init") / "data")


def _by_name(found) -> dict:
    return {f.name: f for f in found}


# ---- what is found, and what the files say ---------------------------------------------------------------------
def test_scan_finds_each_format_and_what_its_files_say(study_folder):
    found = scan([study_folder])
    by = _by_name(found)
    assert {(n, f.modality, f.format) for n, f in by.items()} == {
        ("mouseA_phy", "spikes", "phy"),
        ("ephys_session3", "spikes", "trialized_npz"),
        ("tetrode_units", "spikes", "table"),
        ("m1", "calcium", "suite2p"),
        ("m2", "calcium", "suite2p"),
        ("rest", "fmri", "table"),
        ("task", "fmri", "nifti"),
    }
    phy = by["mouseA_phy"].facts
    assert phy["sample_rate_hz"] == 30000.0 and phy["units"] == 4  # the four 'good' clusters of five
    assert phy["clusters"] == {"good": 4, "mua": 1}
    npz = by["ephys_session3"].facts
    assert (npz["trials"], npz["units"], npz["bin_width_s"]) == (20, 6, 0.01)
    assert set(npz["stimulus"]) == {"feedback_type", "contrast_left"}
    assert by["tetrode_units"].facts["units"] == 4
    assert by["m1"].facts["frame_rate_hz"] == 30.0 and by["m2"].facts["frame_rate_hz"] == 15.0
    assert by["m1"].facts["cells"] == 7 and by["m1"].facts["frames"] == 600  # iscell marks 7 of 8
    assert by["m1"].group == by["m2"].group == str(study_folder / "imaging")
    rest = by["rest"]
    assert (rest.facts["rois"], rest.facts["runs"], rest.facts["volumes"]) == (6, 6, 80)
    assert rest.facts["subjects"] == [f"{i:02d}" for i in range(1, 7)]
    assert rest.keys["repetition_time_s"] == 2.0  # from the sidecars
    assert rest.keys["participants"] == str(study_folder / "rest" / "participants.tsv")
    assert (rest.keys["classification"], rest.keys["regression"]) == ("group", "age")  # site: a nuisance
    assert any("site" in n for n in rest.notes)
    task = by["task"]
    assert task.path == study_folder / "task" / "bold"
    assert (task.facts["runs"], task.facts["tr_s"]) == (2, 2.5)
    assert task.keys["atlas"].endswith("atlas.nii.gz") and task.keys["atlas_labels"].endswith("atlas.tsv")
    skipped = {p.name: why for p, why in found.skipped}
    assert skipped[".DS_Store"] == "hidden" and skipped["notes.md"] == "documentation"
    assert skipped["README.txt"] == "documentation"
    assert "frame_rate.json" not in skipped  # read with its suite2p plane


def test_written_study_validates_and_enables_the_models(study_folder, tmp_path, monkeypatch):
    (study_folder / "rest" / "README.txt").unlink(missing_ok=True) if _reader_takes_readme(
        study_folder
    ) else None
    monkeypatch.chdir(tmp_path)
    found = scan([study_folder])
    text = study_yaml(found, name="fixture")
    assert check_study(text) == []
    cfg = yaml.safe_load(text)
    validate_config(cfg)
    (tmp_path / "s.yaml").write_text(text)
    study = load_study(tmp_path / "s.yaml")
    names = [f.name for f in found]
    assert len(set(names)) == len(names) and all(NAME_PATTERN.match(n) for n in names)
    spikes = {"mouseA_phy", "ephys_session3", "tetrode_units"}
    assert set(cfg["spikes"]["switching_glm"]["datasets"]) == spikes
    assert cfg["spikes"]["poisson_glm"]["enabled"] is True
    # Neuroformer where there is something to decode: the trial outcome of the trialized session
    assert cfg["neuroformer"]["datasets"] == {
        "ephys_session3": {
            "target": {"source": "stimulus", "variable": "feedback_type", "kind": "classification"}
        }
    }
    assert cfg["spikes"]["datasets"]["ephys_session3"]["bin"] == {"bin_width_s": 0.01}
    assert cfg["calcium"]["connectome"]["studies"] == {"imaging": {"datasets": ["m1", "m2"]}}
    assert "the animals differ (m1 30 Hz, m2 15 Hz)" in text  # the frame-rate question, commented
    if _schema_has(
        "calcium", "connectome", "studies", "*", "target_rate_hz"
    ):  # the stage needs the rate then
        (q,) = [q for f in found for q in f.missing]
        assert q.full_key == "calcium.connectome.studies.imaging.target_rate_hz"
        assert "        # target_rate_hz: <Hz>  # could not determine: one frame rate" in text
    if _schema_has("calcium", "datasets", "*", "kind"):
        assert cfg["calcium"]["datasets"]["m1"]["kind"] == "raw_with_neuropil"
    assert cfg["fmri"]["datasets"]["rest"]["classification"] == "group"
    assert study.brainmae_variants("rest") == ["base"]
    assert cfg["fmri"]["datasets"]["task"]["format"] == "nifti"


def _reader_takes_readme(folder: Path) -> bool:
    return any(f.name == "README.txt" for f in find_tables(folder / "rest"))


def test_a_readme_the_reader_would_take_as_a_table_is_a_question(study_folder):
    rest = _by_name(scan([study_folder / "rest"]))["rest"]
    asked = [q for q in rest.missing if q.key == "path"]
    if _reader_takes_readme(study_folder):
        assert asked and "README.txt" in asked[0].hint
    else:
        assert not asked


# ---- what could not be determined ----------------------------------------------------------------------------------
def test_unknowns_are_commented_placeholders_naming_the_key(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(1)
    _suite2p(tmp_path / "data" / "m7" / "suite2p" / "plane0", rng, None)  # no frame rate anywhere
    _roi_tables(tmp_path / "data" / "rest", rng, n_subjects=3, tr=None)  # tables carry no TR
    monkeypatch.chdir(tmp_path)
    found = scan(["data"])
    by = _by_name(found)
    assert [q.key for q in by["m7"].missing] == ["frame_rate_hz"]
    assert [q.key for q in by["rest"].missing] == ["repetition_time_s"]
    text = study_yaml(found)
    assert re.search(r"^      # frame_rate_hz: <Hz>  # could not determine: .*frame rate", text, re.M)
    assert re.search(
        r"^      # repetition_time_s: <seconds>  # could not determine: ROI tables carry no TR", text, re.M
    )
    assert "repetition_time_s: 2" not in text and "frame_rate_hz: 30" not in text  # nothing made up
    rc = main(["init", "data", "--out", "s.yaml"])
    out = capsys.readouterr().out
    assert rc == 1 and (tmp_path / "s.yaml").is_file()  # written, and said incomplete
    assert "s.yaml: key 'calcium.datasets.m7.frame_rate_hz': could not determine" in out
    assert "s.yaml: key 'fmri.datasets.rest.repetition_time_s': could not determine" in out


def test_suite2p_default_rate_is_flagged_not_trusted(tmp_path):
    plane = _suite2p(tmp_path / "a" / "suite2p" / "plane0", np.random.default_rng(2), None)
    (plane / "ops_summary.json").write_text(json.dumps({"fs": 1.0, "nplanes": 1}))
    (f,) = scan([tmp_path])
    assert f.facts["frame_rate_hz"] == 1.0 and not f.missing  # the reader runs on it ...
    assert any(
        q.key == "frame_rate_hz" and "suite2p's default" in q.hint for q in f.questions
    )  # ... but asks


def test_ambiguous_array_is_undecided_with_its_choices(tmp_path, monkeypatch):
    np.save(tmp_path / "traces.npy", np.random.default_rng(3).normal(size=(100, 5)))
    (f,) = scan([tmp_path])
    assert f.modality is None and set(f.choices) == {("calcium", "npy"), ("fmri", "table")}
    text = study_yaml([f])
    assert (
        "could not determine: calcium.datasets with format: npy or fmri.datasets with format: table" in text
    )
    # a sidecar decides it
    (tmp_path / "traces.npy.json").write_text(json.dumps({"frame_rate_hz": 20.0}))
    (f,) = scan([tmp_path])
    assert (f.modality, f.format, f.facts["frame_rate_hz"]) == ("calcium", "npy", 20.0)


def test_csv_is_decided_by_its_header(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 4))
    body = "".join(",".join(f"{v:.3f}" for v in r) + "\n" for r in x)
    (tmp_path / "rois.csv").write_text("WM,Vent,LAmy,RAmy\n" + body)
    (tmp_path / "cells.csv").write_text("cell1,cell2,cell3,cell4\n" + body)
    (tmp_path / "units.csv").write_text("unit,time\na,0.5\nb,0.7\na,1.2\n")
    by = {f.path.name: f for f in scan([tmp_path])}
    assert (by["rois.csv"].modality, by["rois.csv"].format) == ("fmri", "table")
    assert by["rois.csv"].keys["confound_columns"] == ["WM", "Vent"] and by["rois.csv"].facts["rois"] == 2
    assert (by["cells.csv"].modality, by["cells.csv"].format) == ("calcium", "csv")
    assert (by["units.csv"].modality, by["units.csv"].format) == ("spikes", "table")


def test_binned_counts_npz_and_csv_with_sidecar(tmp_path):
    rng = np.random.default_rng(9)
    counts = rng.poisson(1.0, (500, 8))
    np.savez(tmp_path / "reach.npz", counts=counts, bin_width_s=0.02, hand_x=rng.normal(size=500))
    rows = "".join(
        f"{a},{b},{c},{x:.3f}\n" for (a, b, c), x in zip(counts[:, :3], rng.normal(size=500), strict=True)
    )
    (tmp_path / "reach2.csv").write_text("u1,u2,u3,hand_x\n" + rows)
    (tmp_path / "reach2.json").write_text(json.dumps({"bin_width_s": 0.02}))
    by = _by_name(scan([tmp_path]))
    assert (by["reach"].format, by["reach"].facts["units"], by["reach"].facts["bin_width_s"]) == (
        "binned",
        8,
        0.02,
    )
    assert by["reach2"].keys["options"] == {"behaviour_keys": ["hand_x"]} and by["reach2"].facts["units"] == 3
    cfg = yaml.safe_load(study_yaml(list(by.values())))
    assert cfg["spikes"]["datasets"]["reach2"]["bin"] == {"bin_width_s": 0.02}
    assert cfg["neuroformer"]["datasets"]["reach"]["target"] == {"source": "behaviour", "variable": "hand_x"}
    validate_config(cfg)


def test_names_are_sanitised_and_unique(tmp_path):
    rng = np.random.default_rng(5)
    _phy(tmp_path / "my rec!", rng)
    _phy(tmp_path / "my_rec", rng)
    _phy(tmp_path / "x" / "session1", rng)
    _phy(tmp_path / "y" / "session1", rng)
    names = sorted(f.name for f in scan([tmp_path]))
    assert len(set(names)) == 4 and all(NAME_PATTERN.match(n) for n in names)
    assert "x_session1" in names and "y_session1" in names  # 'session1' alone says little


def test_missing_path_is_one_line(tmp_path, capsys):
    with pytest.raises(InputError, match=r"nope: does not exist; give folders or files"):
        scan([tmp_path / "nope"])
    assert main(["init", str(tmp_path / "nope"), "--out", str(tmp_path / "s.yaml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    assert not (tmp_path / "s.yaml").exists()


def test_init_refuses_to_overwrite_without_force(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(6)
    _phy(tmp_path / "data" / "r1", rng)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("# mine\n")
    assert main(["init", "data", "--out", "s.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s.yaml exists; pass --force" in err[0]
    assert (tmp_path / "s.yaml").read_text() == "# mine\n"
    assert main(["init", "data", "--out", "s.yaml", "--force"]) == 0
    out = capsys.readouterr().out
    assert "r1" in out and "phy" in out and "s.yaml: ok" in out
    assert yaml.safe_load((tmp_path / "s.yaml").read_text())["study"]["name"] == "s"


# ---- NWB: units, ophys, or both ------------------------------------------------------------------------------------
def _nwb(path: Path, units: bool, ophys: bool) -> Path:
    pynwb = pytest.importorskip("pynwb")
    from datetime import datetime, timezone

    from pynwb.behavior import Position

    from nwb_data import add_ophys

    rng = np.random.default_rng(7)
    nwb = pynwb.NWBFile("test", "id-1", datetime(2020, 1, 1, tzinfo=timezone.utc))
    if units:
        for _ in range(3):
            nwb.add_unit(spike_times=np.sort(rng.uniform(0, 60, 200)))
        beh = nwb.create_processing_module("behavior", "position")
        pos = Position()
        pos.create_spatial_series(
            name="position",
            data=rng.uniform(0, 100, (600, 1)),
            timestamps=np.arange(600) / 10.0,
            reference_frame="track start",
        )
        beh.add(pos)
    if ophys:
        add_ophys(nwb, 100 + rng.normal(size=(300, 4)), rate=30.0)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def test_nwb_is_looked_inside_units_ophys_or_both(tmp_path):
    _nwb(tmp_path / "ephys.nwb", units=True, ophys=False)
    _nwb(tmp_path / "both.nwb", units=True, ophys=True)
    found = scan([tmp_path])
    got = sorted((f.path.name, f.modality, f.format, f.name) for f in found)
    assert got == [
        ("both.nwb", "calcium", "nwb", "both_calcium"),
        ("both.nwb", "spikes", "nwb", "both_spikes"),
        ("ephys.nwb", "spikes", "nwb", "ephys"),
    ]
    by = _by_name(found)
    assert by["ephys"].facts["units"] == 3 and by["ephys"].facts["behaviour"]
    assert (by["both_calcium"].facts["cells"], by["both_calcium"].facts["frame_rate_hz"]) == (4, 30.0)
    cfg = yaml.safe_load(study_yaml(found))
    assert cfg["neuroformer"]["datasets"]["ephys"]["target"]["source"] == "behaviour"
    validate_config(cfg)


# ---- the real recordings -------------------------------------------------------------------------------------------
def test_bundled_recordings(monkeypatch):
    monkeypatch.chdir(REPO)
    found = scan(["resources/"])
    by = {(str(f.path), f.format): f for f in found}
    mat = by[("resources/spikes/nelpy-linear-track/spikes.mat", "matclust")]
    assert mat.keys["options"]["position"].endswith("trajectory.videoPositionTracking")
    assert mat.facts["units"] == 37 and mat.facts["behaviour"] == ["x", "y"]  # 6 of the 37 have no spikes
    phy = by[("resources/spikes/phy/nelpy_linear_track", "phy")]
    assert (phy.facts["units"], phy.facts["sample_rate_hz"]) == (31, 30000.0)
    npz = by[("resources/spikes/steinmetz2019/session1.npz", "trialized_npz")]
    assert (npz.facts["trials"], npz.facts["units"], npz.facts["bin_width_s"]) == (214, 178, 0.01)
    nwb = by[("resources/spikes/nwb/steinmetz2019_session1.nwb", "nwb")]
    assert nwb.modality == "spikes" and nwb.facts["units"] == 178 and nwb.facts["trials"] == 214
    table = by[("resources/fmri/nitime/fmri_timeseries.csv", "table")]
    assert table.keys["confound_columns"] == ["WM", "Vent"] and table.facts["rois"] == 28
    (tr,) = table.missing
    assert tr.key == "repetition_time_s" and "README.md says 'TR 1.89 s'" in tr.hint
    nifti = by[("resources/fmri/nitime", "nifti")]
    assert nifti.facts["tr_s"] == 1.35 and [q.key for q in nifti.missing] == ["atlas"]
    skipped = {str(p): why for p, why in found.skipped}
    assert "not an ROI table" in skipped["resources/fmri/nitime/event_related_fmri.csv"]
    assert (
        "as options.position"
        in skipped["resources/spikes/nelpy-linear-track/trajectory.videoPositionTracking"]
    )
    assert len(found) == 7


@pytest.mark.skipif(not SHARED.is_dir(), reason="/work/shared/data is not here")
def test_shared_recordings():
    found = scan([SHARED])
    got = {(f.path.relative_to(SHARED).as_posix(), f.modality, f.format) for f in found}
    assert {
        ("calcium/fissa-suite2p/suite2p/plane0", "calcium", "suite2p"),
        ("formats/nwb/nelpy_linear_track.nwb", "spikes", "nwb"),
        ("formats/nwb/steinmetz2019_session1.nwb", "spikes", "nwb"),
        ("formats/phy/nelpy_linear_track", "spikes", "phy"),
        ("spikes/nelpy-linear-track/spikes.mat", "spikes", "matclust"),
        ("spikes/steinmetz2019/session1.npz", "spikes", "trialized_npz"),
    } <= got
    fissa = next(f for f in found if f.format == "suite2p")
    assert (fissa.facts["cells"], fissa.facts["frames"]) <= (23, 864)
    assert any("suite2p's default" in q.hint for q in fissa.questions)
    nelpy = next(f for f in found if f.path.name == "nelpy_linear_track.nwb")
    assert nelpy.facts["units"] == 31 and nelpy.facts["behaviour"]
    assert len({f.name for f in found}) == len(found)


# ---- the workflow on a written study -------------------------------------------------------------------------------
@pytest.mark.workflow
def test_snakemake_dry_run_on_an_initialised_study(tmp_path):
    rng = np.random.default_rng(8)
    data = tmp_path / "data"
    _phy(data / "ephys" / "r1", rng)
    _suite2p(data / "imaging" / "m1" / "suite2p" / "plane0", rng, 30.0, labels=True)
    _suite2p(data / "imaging" / "m2" / "suite2p" / "plane0", rng, 30.0, labels=True)
    _roi_tables(data / "rest", rng)
    out = tmp_path / "study.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "brainpipe.cli", "init", str(data), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    work = tmp_path / "work"  # a folder without config/config.yaml: the study alone
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(work),
            "-n",
            "--configfile",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert jobs["ingest_spikes"] == "1" and jobs["ingest_calcium"] == "2" and jobs["ingest_fmri"] == "1"
    assert (
        jobs["fit_switching_glm"] == "3"
        and jobs["fit_connectome"] == "1"
        and jobs["pretrain_brainmae"] == "1"
    )


@pytest.mark.parametrize("labelled", [(True, True), (True, False), (False, False)])
def test_animals_without_neuron_labels_ask_how_to_match(tmp_path, labelled):
    rng = np.random.default_rng(11)
    for i, lab in enumerate(labelled):
        _suite2p(tmp_path / "imaging" / f"m{i}" / "suite2p" / "plane0", rng, 30.0, labels=lab)
    found = scan([tmp_path / "imaging"])
    assert [f.facts["neuron_labels"] for f in sorted(found, key=lambda f: f.name)] == list(labelled)
    questions = [q for f in found for q in f.questions if q.key == "match_by"]
    text = study_yaml(found, name="cells")
    if all(labelled):
        assert not questions and "match_by" not in text  # matched by label, the default
    else:
        assert len(questions) == 1 and questions[0].required
        assert questions[0].full_key == "calcium.connectome.studies.imaging.match_by"
        assert ("only" in questions[0].hint) == any(labelled)
        assert "# match_by: index  # could not determine:" in text
