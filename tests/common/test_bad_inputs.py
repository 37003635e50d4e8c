"""The catalog of bad inputs (``tests/common/bad_inputs.tsv``): each row builds one bad input and checks its one-line message.

The table has one row per (case, entry point): ``case`` names a builder in :data:`CASES` (a function of a scratch
folder returning a :class:`Case`), ``entry`` names how the input is read (a key of :data:`ENTRY_POINTS`), and
``expected`` is a fragment of the message, with ``{file}`` standing for the file the message must name.

* ``api``: the Python reader (:func:`brainpipe.io.read` for a modality, :func:`brainpipe.data.read` for our own
  intermediates); it must raise one :class:`~brainpipe.errors.BrainpipeError` whose message is one line.
* ``cli``: ``python -m brainpipe.stages.ingest_<modality>``; stderr must be exactly one line
  ``brainpipe: error: ...``, the exit code 1, and no output left behind.

To add a case: write a builder, decorate it with ``@case("name")``, and add its rows to the table. To add an entry
point (e.g. config checks): add a function to :data:`ENTRY_POINTS` taking ``(Case, scratch folder)`` and returning
the one-line message.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from brainpipe.errors import BrainpipeError

REPO = Path(__file__).resolve().parents[2]
TABLE = Path(__file__).with_name("bad_inputs.tsv")
DATA = REPO / "tests" / "data"
RES = REPO / "resources"


@dataclass
class Case:
    """A built bad input.

    Attributes
    ----------
    source : Path
        What is given to the reader (a file or folder).
    modality : str
        ``spikes``, ``calcium``, ``fmri`` (:func:`brainpipe.io.read`) or ``data`` (:func:`brainpipe.data.read`).
    file : Path
        The file the message must name (``{file}`` in the table).
    options : dict
        Reader options (``format`` included).
    """

    source: Path
    modality: str
    file: Path
    options: dict[str, Any] = field(default_factory=dict)


CASES: dict[str, Callable[[Path], Case]] = {}


def case(name: str):
    """Register a case builder under ``name`` (the ``case`` column of the table)."""

    def register(fn: Callable[[Path], Case]) -> Callable[[Path], Case]:
        assert name not in CASES, f"two builders for case {name!r}"
        CASES[name] = fn
        return fn

    return register


# -- calcium ----------------------------------------------------------------------------------------------------------
def _traces() -> np.ndarray:
    return np.load(DATA / "calcium_traces.npy", allow_pickle=False)  # (400 frames, 5 cells) float32


def _suite2p(tmp: Path, F: np.ndarray | None = None) -> Path:
    d = tmp / "plane0"
    d.mkdir(parents=True)
    F = _traces().T if F is None else F
    np.save(d / "F.npy", F)
    np.save(d / "Fneu.npy", F)
    (d / "frame_rate.json").write_text(json.dumps({"fs": 10.0}))
    return d


@case("suite2p_empty_F")
def _(tmp):
    d = _suite2p(tmp)
    (d / "F.npy").write_bytes(b"")
    return Case(d, "calcium", d / "F.npy")


@case("suite2p_zero_rois")
def _(tmp):
    d = _suite2p(tmp, _traces().T[:0])
    return Case(d, "calcium", d / "F.npy")


@case("suite2p_zero_frames")
def _(tmp):
    d = _suite2p(tmp, _traces().T[:, :0])
    return Case(d, "calcium", d / "F.npy")


@case("suite2p_truncated_F")
def _(tmp):
    d = _suite2p(tmp)
    raw = (d / "F.npy").read_bytes()
    (d / "F.npy").write_bytes(raw[:4064])  # the 128-byte header and 3936 of the 8000 data bytes
    return Case(d, "calcium", d / "F.npy")


class _Bomb:
    """Unpickling it creates the folder ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker, 0o777, True))


def _objects(tmp: Path, n: int = 3) -> np.ndarray:
    arr = np.empty(n, dtype=object)
    arr[:] = [_Bomb(tmp / "unpickled") for _ in range(n)]
    return arr


@case("suite2p_object_F")
def _(tmp):
    d = _suite2p(tmp)
    np.save(d / "F.npy", _objects(tmp), allow_pickle=True)
    return Case(d, "calcium", d / "F.npy")


@case("suite2p_is_a_file")
def _(tmp):
    p = tmp / "F.npy"
    np.save(p, _traces().T)
    return Case(p, "calcium", p, {"format": "suite2p"})


@case("calcium_folder_for_file")
def _(tmp):
    d = tmp / "traces.npy"
    d.mkdir()
    return Case(d, "calcium", d, {"format": "npy", "frame_rate_hz": 10.0})


@case("calcium_csv_header_only")
def _(tmp):
    p = tmp / "traces.csv"
    p.write_text("a,b,c,d,e\n")
    return Case(p, "calcium", p, {"frame_rate_hz": 10.0})


@case("calcium_sidecar_empty")
def _(tmp):
    p = tmp / "traces.npy"
    np.save(p, _traces())
    (tmp / "traces.npy.json").write_bytes(b"")
    return Case(p, "calcium", tmp / "traces.npy.json")


@case("calcium_negative_raw")
def _(tmp):  # denoised (CNMF-E-like, background removed) traces declared as raw fluorescence
    p = tmp / "denoised.npy"
    np.save(p, _traces() - _traces().mean(axis=0))
    return Case(p, "calcium", p, {"format": "npy", "frame_rate_hz": 10.0, "kind": "raw"})


def _cut(path: Path, keep: float = 0.5, n_bytes: int | None = None) -> None:
    """Keep the first ``n_bytes`` bytes of ``path`` (default: the fraction ``keep``)."""
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep) if n_bytes is None else n_bytes])


@case("calcium_h5_truncated")
def _(tmp):
    import h5py

    p = tmp / "traces.h5"
    with h5py.File(p, "w") as fh:
        fh["F"] = _traces()
    _cut(p)
    return Case(p, "calcium", p, {"frame_rate_hz": 10.0})


@case("nwb_ophys_truncated")
def _(tmp):
    from test_io_fuzz import build_nwb_ophys

    p = tmp / build_nwb_ophys(tmp)
    _cut(p, 0.9)
    return Case(p, "calcium", p)


# -- fMRI -------------------------------------------------------------------------------------------------------------
def _nifti(tmp: Path, n_volumes: int = 40, name: str = "bold.nii.gz") -> tuple[Path, Path]:
    """A small 4D image (3x3x3 voxels, float32) and a two-label atlas on its grid."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    data = (100 + rng.standard_normal((3, 3, 3, n_volumes))).astype(np.float32)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = 2.0
    bold = tmp / name
    nib.save(img, bold)
    grid = np.zeros((3, 3, 3), dtype=np.int16)
    grid[0], grid[2] = 1, 2
    atlas = tmp / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(grid, np.eye(4)), atlas)
    return bold, atlas


@case("nifti_gz_truncated")
def _(tmp):
    bold, atlas = _nifti(tmp)
    _cut(bold)
    return Case(bold, "fmri", bold, {"atlas": atlas})


@case("nifti_more_volumes_than_stored")
def _(tmp):
    bold, atlas = _nifti(tmp, name="bold.nii")  # 352-byte header + 27 voxels x 40 volumes x 4 bytes
    _cut(bold, n_bytes=352 + 27 * 4 * 20)  # 20 of the 40 volumes the header claims
    return Case(bold, "fmri", bold, {"atlas": atlas})


@case("nifti_zero_volumes")
def _(tmp):
    bold, atlas = _nifti(tmp, n_volumes=0)
    return Case(bold, "fmri", bold, {"atlas": atlas, "repetition_time_s": 2.0})


@case("atlas_folder_for_file")
def _(tmp):
    bold, _ = _nifti(tmp)
    folder = tmp / "atlas_folder.nii.gz"
    folder.mkdir()
    return Case(bold, "fmri", folder, {"atlas": folder})


@case("confounds_empty")
def _(tmp):
    from brainpipe.simulate import simulate
    from brainpipe.simulate.fmri import write_derivatives

    params = {"n_subjects": 4, "rois_per_module": 1, "n_volumes": 24, "voxels_per_roi_side": 1}
    write_derivatives(simulate("fmri_modular_cohort", params, seed=1), tmp, seed=1)
    root = tmp / "derivatives" / "fmriprep"
    conf = root / "sub-01" / "func" / "sub-01_task-rest_desc-confounds_timeseries.tsv"
    conf.write_bytes(b"")
    return Case(root, "fmri", conf, {"atlas": tmp / "atlas" / "atlas.nii.gz"})


@case("roi_table_header_only")
def _(tmp):
    p = tmp / "rois.csv"
    p.write_text("V1,M1,PFC\n")
    return Case(p, "fmri", p, {"repetition_time_s": 2.0})


def _sidecar_table(tmp: Path, tr: float = 1.89) -> Path:
    """A folder with one ROI table and its BIDS sidecar (TR ``tr``)."""
    d = tmp / "tables"
    d.mkdir()
    rng = np.random.default_rng(0)
    rows = "".join(",".join(f"{v:.4f}" for v in r) + "\n" for r in rng.standard_normal((20, 3)))
    (d / "sub-01_timeseries.csv").write_text("V1,M1,PFC\n" + rows)
    (d / "sub-01_timeseries.json").write_text(json.dumps({"RepetitionTime": tr}))
    return d


@case("roi_folder_stray_text")
def _(tmp):
    d = _sidecar_table(tmp)
    (d / "scan_protocol.txt").write_text("Site B used a multiband sequence.\n")
    return Case(d, "fmri", d / "scan_protocol.txt")


@case("roi_sidecar_disagrees")
def _(tmp):
    d = _sidecar_table(tmp)
    return Case(d, "fmri", d / "sub-01_timeseries.json", {"repetition_time_s": 2.0})


# -- spikes -----------------------------------------------------------------------------------------------------------
@case("spike_table_object_unit")
def _(tmp):
    p = tmp / "spikes.npz"
    np.savez(p, unit=_objects(tmp), time=np.array([0.1, 0.2, 0.3]))
    return Case(p, "spikes", p)


@case("spike_table_npz_truncated")
def _(tmp):
    p = tmp / "spikes.npz"
    np.savez(p, unit=np.array(["a", "b"]), time=np.array([0.1, 0.2]))
    _cut(p)
    return Case(p, "spikes", p, {"format": "table"})


@case("spike_table_csv_empty")
def _(tmp):
    p = tmp / "spikes.csv"
    p.write_bytes(b"")
    return Case(p, "spikes", p)


@case("trialized_zero_trials")
def _(tmp):
    p = tmp / "trials.npz"
    np.savez(p, spks=np.zeros((0, 3, 5), dtype=np.uint8), time=np.zeros((0, 5)))
    return Case(p, "spikes", p)


def _phy(tmp: Path, times: np.ndarray, clusters: np.ndarray) -> Path:
    d = tmp / "phy"
    d.mkdir()
    np.save(d / "spike_times.npy", times)
    np.save(d / "spike_clusters.npy", clusters)
    (d / "params.py").write_text("sample_rate = 30000.0\n")
    return d


@case("phy_zero_spikes")
def _(tmp):
    d = _phy(tmp, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32))
    return Case(d, "spikes", d, {"groups": None})


@case("phy_object_times")
def _(tmp):
    d = _phy(tmp, np.zeros(0, dtype=np.int64), np.arange(3, dtype=np.int32))
    np.save(d / "spike_times.npy", _objects(tmp), allow_pickle=True)
    return Case(d, "spikes", d / "spike_times.npy", {"groups": None})


@case("phy_empty_params")
def _(tmp):
    d = _phy(tmp, np.arange(3, dtype=np.int64), np.zeros(3, dtype=np.int32))
    (d / "params.py").write_bytes(b"")
    return Case(d, "spikes", d / "params.py", {"groups": None})


@case("nwb_units_truncated")
def _(tmp):
    from test_io_fuzz import build_nwb_units

    p = tmp / build_nwb_units(tmp)
    _cut(p, 0.7)
    return Case(p, "spikes", p)


@case("nwb_units_not_hdf5")
def _(tmp):
    p = tmp / "units.nwb"
    p.write_bytes(gzip.compress(b"not an HDF5 file"))
    return Case(p, "spikes", p)


@case("spike_table_unknown_option")
def _(tmp):
    p = tmp / "spikes.csv"
    p.write_text("unit,time\na,0.5\n")
    return Case(p, "spikes", p, {"colour": "red"})


@case("matclust_empty")
def _(tmp):
    p = tmp / "spikes.mat"
    p.write_bytes(b"")
    return Case(p, "spikes", p)


@case("binned_without_bin_width")
def _(tmp):
    p = tmp / "counts.npz"
    np.savez(p, counts=np.ones((50, 3), dtype=np.uint8))
    return Case(p, "spikes", p)


# -- our own intermediates --------------------------------------------------------------------------------------------
def _intermediate(tmp: Path, kind: str, suffix: str = ".nc") -> Path:
    from brainpipe.data import write
    from contract_data import BUILDERS, prov_record

    return write(BUILDERS[kind](), tmp / f"{kind}{suffix}", kind, prov_record())


@case("netcdf_truncated")
def _(tmp):
    p = _intermediate(tmp, "calcium_traces")
    _cut(p)
    return Case(p, "data", p)


@case("netcdf_empty")
def _(tmp):
    p = _intermediate(tmp, "spike_times")
    p.write_bytes(b"")
    return Case(p, "data", p)


@case("zarr_damaged_chunk")
def _(tmp):
    p = _intermediate(tmp, "affinity_tensor", ".zarr")
    chunk = next(f for f in sorted((p / "affinity").rglob("*")) if f.is_file() and f.name != "zarr.json")
    _cut(chunk)
    return Case(p, "data", p)


# -- entry points -----------------------------------------------------------------------------------------------------
def run_api(c: Case, tmp: Path) -> str:
    """Read with the Python API; the one-line message of the error it must raise."""
    from brainpipe.data import read as read_intermediate
    from brainpipe.io import read

    with pytest.raises(BrainpipeError) as err:
        if c.modality == "data":
            read_intermediate(c.source)
        else:
            result = read(c.source, c.modality, **c.options)
            if c.modality == "fmri":
                list(result)  # the fMRI readers stream their runs
    assert not (tmp / "unpickled").exists(), "an object array was unpickled"
    msg = str(err.value)
    assert "\n" not in msg
    return msg


_STAGES = {
    "calcium": ("ingest_calcium", "--traces-out"),
    "spikes": ("ingest_spikes", "--spikes-out"),
    "fmri": ("ingest_fmri", "--roi-out"),
}


def _stage_params(c: Case) -> dict[str, Any]:
    opts = dict(c.options)
    params = {"format": opts.pop("format", "auto")}
    if c.modality == "fmri":
        return {**params, **{k: str(v) if isinstance(v, Path) else v for k, v in opts.items()}}
    if c.modality == "calcium" and "frame_rate_hz" in opts:
        params["frame_rate_hz"] = opts.pop("frame_rate_hz")
    return {**params, "options": opts}


def run_cli(c: Case, tmp: Path) -> str:
    """Run ``python -m brainpipe.stages.ingest_<modality>``; stderr must be one ``brainpipe: error:`` line, exit 1."""
    stage, flag = _STAGES[c.modality]
    out = tmp / "out" / "result.nc"
    cmd = [
        sys.executable,
        "-m",
        f"brainpipe.stages.{stage}",
        "--source",
        str(c.source),
        flag,
        str(out),
        "--params",
        json.dumps(_stage_params(c)),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("brainpipe: error: "), proc.stderr
    assert not out.exists(), "a failed stage left its output behind"
    assert not (tmp / "unpickled").exists(), "an object array was unpickled"
    return lines[0].removeprefix("brainpipe: error: ")


# -- study configs (entry points ``config``: brainpipe.config.load_config; ``check-config``: the command) -------------
def _study(tmp: Path, change: Callable[[dict], None]) -> Case:
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    change(cfg)
    f = tmp / "my-study.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return Case(f, "config", f)


def _sim_params(**values) -> Callable[[dict], None]:
    return lambda c: c["spikes"]["datasets"]["simglm"]["simulate"]["params"].update(values)


@case("config_count_as_yaml_text")
def _(tmp):  # n_neurons: 1e7 (YAML reads it as the text '1e7')
    return _study(tmp, _sim_params(n_neurons="1e7"))


@case("config_count_not_whole")
def _(tmp):
    return _study(tmp, _sim_params(n_neurons=2.5))


@case("config_simulation_too_big")
def _(tmp):
    return _study(tmp, _sim_params(n_neurons=10_000_000))


@case("config_number_as_yaml_text")
def _(tmp):  # tol: 1e-6 (YAML text)
    return _study(tmp, lambda c: c["spikes"]["switching_glm"]["model"].__setitem__("tol", "1e-6"))


@case("config_bad_dataset_override")
def _(tmp):  # a dataset's own split that does not sum to 1
    fr = {"train": 0.5, "validation": 0.3, "test": 0.3}
    return _study(
        tmp, lambda c: c["spikes"]["datasets"]["nelpy"].__setitem__("bin", {"split": {"fractions": fr}})
    )


@case("config_sticky_kappa_negative")
def _(tmp):
    return _study(tmp, lambda c: c["spikes"]["switching_glm"]["model"].__setitem__("sticky_kappa", -1))


@case("config_modality_dropout_too_high")
def _(tmp):  # dropping a modality from (almost) every window leaves nothing to learn it from
    return _study(tmp, lambda c: c["neuroformer"]["model"].__setitem__("modality_dropout", 1.5))


@case("config_contrastive_select_unknown")
def _(tmp):  # the contrastive grid's rule: next_token or decoding
    return _study(tmp, lambda c: c["neuroformer"]["model"].__setitem__("contrastive_select", "probe"))


@case("config_target_in_an_input_modality")
def _(tmp):  # speed both decoded and given as an input, without modality dropout
    def change(c):
        c["neuroformer"]["modalities"]["speed"] = {"source": "behaviour", "variables": ["speed"]}
        c["neuroformer"]["datasets"]["simhub"]["modalities"] = ["flash", "speed"]

    return _study(tmp, change)


@case("config_ntf_tol_negative")
def _(tmp):
    return _study(tmp, lambda c: c["calcium"]["connectome"]["model"].__setitem__("tol", -1e-8))


@case("config_ntf_cv_folds_one")
def _(tmp):  # rank_selection cv needs at least two folds
    return _study(tmp, lambda c: c["calcium"]["connectome"]["model"].__setitem__("cv_folds", 1))


@case("config_past_attention_unknown")
def _(tmp):  # the past cross-attention: softmax or sigmoid
    return _study(tmp, lambda c: c["neuroformer"]["model"].__setitem__("past_attention", "linear"))


@case("config_shared_event_times_not_bool")
def _(tmp):  # the calcium simulator's shared_event_times is true or false
    return _study(
        tmp,
        lambda c: c["calcium"]["datasets"]["simca_a1"]["simulate"]["params"].__setitem__(
            "shared_event_times", "yes"
        ),
    )


@case("config_contrastive_decoding_without_target")
def _(tmp):  # the contrastive grid chosen by decoding a target the dataset does not have
    def change(c):
        entry = c["neuroformer"]["datasets"]["simhub"]
        entry.pop("target")
        entry.pop("finetune", None)
        c["neuroformer"]["model"]["contrastive_select"] = "decoding"

    return _study(tmp, change)


def run_config(c: Case, tmp: Path) -> str:
    """:func:`brainpipe.config.load_config` on the study file (paths relative to the repository)."""
    from brainpipe.config import load_config

    with pytest.raises(BrainpipeError) as err:
        load_config(c.source, REPO / "workflow" / "schemas" / "config.schema.yaml", base_dir=REPO)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def run_check_config(c: Case, tmp: Path) -> str:
    """``brainpipe check-config FILE`` (from the repository): one ``brainpipe: error:`` line on stderr, exit 1."""
    cmd = [sys.executable, "-m", "brainpipe.cli", "check-config", str(c.source)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    lines = proc.stderr.splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("brainpipe: error: "), proc.stderr
    return lines[0].removeprefix("brainpipe: error: ")


ENTRY_POINTS: dict[str, Callable[[Case, Path], str]] = {
    "api": run_api,
    "cli": run_cli,
    "config": run_config,
    "check-config": run_check_config,
}


def _rows() -> list[dict[str, str]]:
    with open(TABLE, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


ROWS = _rows()


def test_table_is_well_formed():
    assert ROWS and all(set(r) == {"case", "entry", "expected"} for r in ROWS)
    assert all(
        r["case"] in CASES and r["entry"] in ENTRY_POINTS and "{file}" in r["expected"] for r in ROWS
    ), [
        r
        for r in ROWS
        if r["case"] not in CASES or r["entry"] not in ENTRY_POINTS or "{file}" not in r["expected"]
    ]
    assert len({(r["case"], r["entry"]) for r in ROWS}) == len(ROWS), "a (case, entry) row repeats"
    assert set(CASES) <= {r["case"] for r in ROWS}, "a builder without a row in the table"


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['case']}-{r['entry']}" for r in ROWS])
def test_bad_input(row, tmp_path):
    c = CASES[row["case"]](tmp_path)
    msg = ENTRY_POINTS[row["entry"]](c, tmp_path)
    expected = row["expected"].format(file=c.file)
    assert expected in msg, f"expected {expected!r} in {msg!r}"
