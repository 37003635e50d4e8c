"""The one reader registry (brainpipe.io): formats per modality, detection, options from the signature, the one-line
error when nothing matches, the schema's format enums, and what brainpipe.io / brainpipe.preprocess export."""

from __future__ import annotations

import copy
import inspect
import logging
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import brainpipe.io
import brainpipe.preprocess
from brainpipe.config import load_schema
from brainpipe.errors import ConfigError, InputError
from brainpipe.io import (
    MODALITIES,
    _registry,
    detect,
    formats,
    has_suffix,
    iter_runs,
    read,
    read_calcium,
    read_spikes,
    readers,
    register,
)

REPO = Path(__file__).resolve().parents[2]
CALCIUM_ARRAY = REPO / "tests" / "data" / "calcium_traces.npy"  # with a .npy.json frame-rate sidecar
SPIKE_TABLE = REPO / "tests" / "data" / "spike_table.csv"
STEINMETZ = REPO / "resources" / "spikes" / "steinmetz2019" / "session1.npz"
PHY = REPO / "resources" / "spikes" / "phy" / "nelpy_linear_track"


def _one_line(err: pytest.ExceptionInfo, path) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: "), msg
    return msg


def _roi_table(path: Path, seed: int = 0, n_t: int = 30) -> Path:
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((n_t, 3))
    path.write_text(
        "a,b,c,motion\n"
        + "".join(",".join(f"{v:.6f}" for v in row) + f",{k % 3}\n" for k, row in enumerate(values))
    )
    return path


# -- the schema's format enums are the registry's names -------------------------------------------------------------
@pytest.mark.parametrize("modality", list(MODALITIES))
def test_schema_format_enum_is_the_registry(modality):
    """spikes: config.schema.yaml; calcium, fmri: <branch>.schema.yaml (merged by load_schema)."""
    entry = load_schema()["properties"][modality]["properties"]["datasets"]["additionalProperties"]
    assert entry["properties"]["format"]["enum"] == ["auto", *formats(modality)]


def test_every_modality_has_readers():
    assert set(MODALITIES) == {"spikes", "calcium", "fmri"}
    assert formats("spikes") == ("nwb", "phy", "trialized_npz", "binned", "table", "matclust")
    assert formats("calcium") == ("suite2p", "nwb", "npy", "csv", "hdf5")
    assert formats("fmri") == ("fmriprep", "nifti", "table")
    assert len(readers()) == sum(len(formats(m)) for m in MODALITIES)
    with pytest.raises(ValueError, match="unknown modality 'eeg'"):
        formats("eeg")


# -- exports ----------------------------------------------------------------------------------------------------------
def test_io_exports_every_reader_and_the_registry():
    for reader in readers():
        name = reader.function.__name__
        assert name in brainpipe.io.__all__ and getattr(brainpipe.io, name) is reader.function, name
    for name in (
        "read",
        "detect",
        "formats",
        "readers",
        "register",
        "register_modality",
        "Reader",
        "MODALITIES",
    ):
        assert name in brainpipe.io.__all__ and hasattr(brainpipe.io, name)
    for name in ("read_spikes", "read_calcium", "iter_runs"):
        assert name in brainpipe.io.__all__
    assert all(hasattr(brainpipe.io, n) for n in brainpipe.io.__all__)


@pytest.mark.parametrize("modality", ["fmri", "calcium", "spikes"])
def test_preprocess_exports_every_modality(modality):
    module = getattr(brainpipe.preprocess, modality)
    public = {
        n
        for n, f in inspect.getmembers(module, inspect.isfunction)
        if f.__module__ == module.__name__ and not n.startswith("_")
    }
    assert public and public <= set(brainpipe.preprocess.__all__), sorted(
        public - set(brainpipe.preprocess.__all__)
    )
    for n in public:
        assert getattr(brainpipe.preprocess, n) is getattr(module, n)


# -- detection --------------------------------------------------------------------------------------------------------
def test_detect_each_format(tmp_path):
    assert detect(STEINMETZ, "spikes") == "trialized_npz"
    assert detect(PHY, "spikes") == "phy"
    assert detect(SPIKE_TABLE, "spikes") == "table"
    assert detect(CALCIUM_ARRAY, "calcium") == "npy"
    plane = tmp_path / "plane0"
    plane.mkdir()
    assert detect(plane, "calcium") == "suite2p"
    for name, fmt in (("x.nwb", "nwb"), ("x.csv", "csv"), ("x.h5", "hdf5"), ("x.HDF5", "hdf5")):
        (tmp_path / name).write_bytes(b"")
        assert detect(tmp_path / name, "calcium") == fmt, name
    func = tmp_path / "deriv" / "sub-01" / "func"
    func.mkdir(parents=True)
    (func / "sub-01_task-rest_desc-preproc_bold.nii.gz").write_bytes(b"")
    assert detect(tmp_path / "deriv", "fmri") == "fmriprep"
    assert detect(func / "sub-01_task-rest_desc-preproc_bold.nii.gz", "fmri") == "nifti"
    assert detect(func, "fmri") == "fmriprep"  # the fMRIPrep layout is tried first
    images = tmp_path / "images"
    images.mkdir()
    (images / "run1.nii").write_bytes(b"")
    assert detect(images, "fmri") == "nifti"
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "participants.tsv").write_text("participant_id\nsub-01\n")
    (tables / "sub-01.1D").write_text("1 2\n")
    assert detect(tables, "fmri") == "table" and detect(tables / "sub-01.1D", "fmri") == "table"


def test_detection_order_and_hints(tmp_path):
    """The first registered reader that matches wins; a detector gets the reader options it names."""
    both = tmp_path / "both.npz"
    np.savez(both, spks=np.zeros((1, 2, 3)), unit=np.array(["a"]), time=np.array([0.1]))
    assert detect(both, "spikes") == "trialized_npz"  # registered before table
    other_key = tmp_path / "k.npz"
    np.savez(other_key, counts=np.zeros((1, 2, 3)), time=np.zeros((1, 3)))
    assert detect(other_key, "spikes", counts_key="counts") == "trialized_npz"
    with pytest.raises(InputError):
        detect(other_key, "spikes")  # 'spks' is the default counts key


@pytest.mark.parametrize("modality", list(MODALITIES))
def test_detection_failure_is_one_line_naming_formats_and_fix(tmp_path, modality):
    odd = tmp_path / "recording.xyz"
    odd.write_text("something")
    with pytest.raises(InputError) as err:
        detect(odd, modality)
    msg = _one_line(err, odd)
    assert "is a '.xyz' file, which matches none of the" in msg
    for reader in readers(modality):
        assert f"{reader.name}: {reader.looks_for}" in msg
    assert f"set 'format:' for this dataset to one of {', '.join(formats(modality))}" in msg
    missing = tmp_path / "missing.dat"
    with pytest.raises(InputError) as err:
        detect(missing, modality)
    assert "data path does not exist; check the path" in _one_line(err, missing)


def test_detection_failure_describes_a_folder(tmp_path):
    folder = tmp_path / "stuff"
    folder.mkdir()
    (folder / "notes.txt").write_text("")
    (folder / "sub").mkdir()
    with pytest.raises(InputError) as err:
        read_spikes(folder)
    assert "is a folder holding notes.txt, sub/, which matches none of the spike formats" in _one_line(
        err, folder
    )


# -- read: one entry, options from the signature ------------------------------------------------------------------------
def test_read_is_each_modality_entry(tmp_path):
    xr.testing.assert_identical(read(SPIKE_TABLE, "spikes"), read_spikes(SPIKE_TABLE))
    xr.testing.assert_identical(read(CALCIUM_ARRAY, "calcium"), read_calcium(CALCIUM_ARRAY))
    xr.testing.assert_identical(
        read(CALCIUM_ARRAY, "calcium", "npy", frame_rate_hz=7.5), read_calcium(CALCIUM_ARRAY, "npy", 7.5)
    )
    table = _roi_table(tmp_path / "sub-01_task-rest.csv")
    a = list(read(table, "fmri", repetition_time_s=2.0, confound_columns=["motion"]))
    b = list(iter_runs(table, "table", repetition_time_s=2.0, confound_columns=["motion"]))
    assert len(a) == 1 and a[0].attrs["subject"] == "01"
    xr.testing.assert_identical(a[0], b[0])
    assert list(a[0]["roi"].values) == ["a", "b", "c"] and list(a[0]["confound"].values) == ["motion"]


@pytest.mark.parametrize("modality", list(MODALITIES))
def test_unknown_format_names_the_choices(modality, tmp_path):
    with pytest.raises(InputError) as err:
        read(tmp_path / "x", modality, format="bogus")
    msg = _one_line(err, tmp_path / "x")
    assert f"unknown {MODALITIES[modality]} data format 'bogus'" in msg
    assert f"one of auto, {', '.join(formats(modality))}" in msg


def test_unknown_option_is_named_for_every_modality(tmp_path):
    with pytest.raises(ConfigError, match=r"calcium reader 'npy' .* has no option\(s\) bogus; its options: "):
        read_calcium(CALCIUM_ARRAY, options={"bogus": 1})
    with pytest.raises(ConfigError) as err:
        read_calcium(CALCIUM_ARRAY, options={"series": "x"})  # an NWB option on an array
    assert "has no option(s) series; its options: frame_rate_hz, key, neuropil_key, drop_bad_cells" in str(
        err.value
    )
    with pytest.raises(ConfigError, match=r"spike reader 'table' .* has no option\(s\) groups"):
        read_spikes(SPIKE_TABLE, groups=["good"])
    table = _roi_table(tmp_path / "t.csv")
    with pytest.raises(ConfigError, match=r"fMRI reader 'table' .* has no option\(s\) atlass; its options: "):
        iter_runs(table, repetition_time_s=1.0, atlass="a.nii.gz")


def test_fmri_options_of_another_format_are_left_out(tmp_path, caplog):
    """fMRI datasets give every reader's options as flat keys: another format's are skipped (logged), not refused."""
    table = _roi_table(tmp_path / "t.csv")
    plain = list(iter_runs(table, repetition_time_s=1.0))
    with caplog.at_level(logging.INFO, logger="brainpipe.io"):
        extra = list(iter_runs(table, repetition_time_s=1.0, atlas="atlas.nii.gz", task="rest"))
    xr.testing.assert_identical(plain[0], extra[0])
    assert "option(s) atlas, task do not apply to format 'table'; left out" in caplog.text


def test_missing_required_option(tmp_path):
    image = tmp_path / "sub-01_bold.nii.gz"
    image.write_bytes(b"")
    with pytest.raises(InputError) as err:
        iter_runs(image)
    msg = _one_line(err, image)
    assert "format 'nifti' needs atlas; set atlas for this dataset" in msg


def test_calcium_bad_cells_are_checked_for_every_reader(tmp_path):
    """The calcium finishing step (check_cells) runs whatever the reader; drop_bad_cells is its option."""
    F = np.random.default_rng(0).standard_normal((50, 3)) + 10
    F[:, 1] = 4.0
    for suffix in (".npy", ".csv"):
        path = tmp_path / f"F{suffix}"
        if suffix == ".npy":
            np.save(path, F)
        else:
            np.savetxt(path, F, delimiter=",", header="x,y,z", comments="")
        with pytest.raises(InputError, match="are constant"):
            read(path, "calcium", frame_rate_hz=10.0)
        ds = read(path, "calcium", frame_rate_hz=10.0, drop_bad_cells=True)
        assert ds.sizes["cell"] == 2


# -- adding a reader: one function + one registration -------------------------------------------------------------------
@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test are undone afterwards."""
    monkeypatch.setattr(_registry, "_READERS", copy.copy(_registry._READERS))
    for m in MODALITIES:
        _registry._READERS[m] = dict(_registry._READERS[m])


def test_register_a_new_reader(tmp_path, scratch_registry):
    def read_toy(path, scale: float = 1.0, labels: tuple = ("u0",)):
        t = np.loadtxt(path, ndmin=1) * scale
        return xr.Dataset(
            {"spike_time": ("spike", t), "spike_unit": ("spike", np.zeros(t.size, np.int32))},
            coords={"unit": ("unit", np.array(labels))},
            attrs={"format": "toy"},
        )

    assert (
        register(read_toy, name="toy", modality="spikes", detect=has_suffix(".toy"), looks_for="a .toy file")
        is read_toy
    )
    assert formats("spikes")[-1] == "toy" and _registry.get_reader("x", "spikes", "toy").options == (
        "scale",
        "labels",
    )
    path = tmp_path / "a.toy"
    path.write_text("0.5 1.5\n")
    assert detect(path, "spikes") == "toy"
    np.testing.assert_allclose(read_spikes(path, scale=2.0)["spike_time"].values, [1.0, 3.0])
    with pytest.raises(
        ConfigError, match=r"spike reader 'toy' .* has no option\(s\) bogus; its options: scale, labels"
    ):
        read(path, "spikes", bogus=1)
    with pytest.raises(ValueError, match="already registered"):
        register(read_toy, name="toy", modality="spikes", detect=has_suffix(".toy"), looks_for="")
    with pytest.raises(ValueError, match="reserved"):
        register(read_toy, name="auto", modality="calcium", detect=has_suffix(".toy"), looks_for="")


def test_register_refuses_unnamed_options(scratch_registry):
    def read_any(path, **options):
        return options

    with pytest.raises(TypeError, match="named options only"):
        register(read_any, name="any", modality="calcium", detect=has_suffix(".any"), looks_for="")
    assert "any" not in formats("calcium")

    def read_clash(path, drop_bad_cells: bool = False):
        return path

    with pytest.raises(ValueError, match="drop_bad_cells belong to the modality"):
        register(read_clash, name="clash", modality="calcium", detect=has_suffix(".c"), looks_for="")
