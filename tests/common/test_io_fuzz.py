"""Every reader fuzzed (issue 18): a damaged input ends in one line naming the file and the likely cause.

For each supported format a small valid input is built once from the repository's own files (``tests/data``,
``resources/``) and the simulators (:mod:`brainpipe.simulate`). Hypothesis then damages a copy of it: cuts a file
at a random point, flips bytes, empties it, or rewrites it with other shapes (zero ROIs, frames, units) or dtypes
(object arrays). Each read must either succeed with a dataset that passes its contract, or raise one
:class:`~brainpipe.errors.InputError` (:class:`~brainpipe.errors.ConfigError` for an option,
:class:`~brainpipe.errors.ContractError` for our own intermediates) whose message is one line naming the file and,
for a cut or emptied binary file, saying so. Any other exception fails the test with its traceback. No pickle is
ever loaded: an object array whose unpickling would create a marker folder is refused and the marker stays absent.

Each format runs a bounded number of examples (``deadline=None``; a few seconds per format).
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainpipe.data import check, write
from brainpipe.data import read as read_intermediate
from brainpipe.errors import ConfigError, ContractError, InputError
from brainpipe.io import read

REPO = Path(__file__).resolve().parents[2]
RES = REPO / "resources"
DATA = REPO / "tests" / "data"

#: Words a message uses for a file that was cut short or emptied.
CUT_WORDS = ("truncated", "empty (0 bytes)", "cut short", "ends early")

#: Multiplies every example count (``BRAINPIPE_FUZZ_SCALE=20`` for a long hunt; the default keeps the file well
#: under a minute on two cores).
SCALE = float(os.environ.get("BRAINPIPE_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    """Bounded Hypothesis settings: ``examples`` (times :data:`SCALE`), no deadline, no example database.

    At the default scale the examples are derandomized (the same every run), so CI is reproducible; a scaled-up hunt
    draws new ones.
    """
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        derandomize=SCALE == 1,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# -- the formats ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """A file of a format's input that the fuzzer damages."""

    rel: str  # path relative to the fixture root
    strict_cut: bool  # a cut or emptied copy must be reported as such (binary formats whose size is known)


@dataclass(frozen=True)
class Format:
    """One readable format: how to build a valid input, read it, and which files to damage."""

    name: str
    build: Callable[[Path], str]  # writes a valid input under the root; returns the path to read (relative)
    read: Callable[[Path, Path], object]  # (root, input path) -> the read result
    kind: str  # the contract the result must pass
    members: tuple[Member, ...]
    errors: tuple[type[Exception], ...] = (InputError, ConfigError)
    examples: int = 20  # damaged copies per run (fMRI reads are slower: fewer)


def _spikes(root: Path, path: Path, **options):
    return read(path, "spikes", **options)


def _calcium(root: Path, path: Path, **options):
    return read(path, "calcium", **options)


def _fmri(root: Path, path: Path, **options) -> list:
    return list(read(path, "fmri", **options))  # the readers stream: read every run


def _tiny_spikes():
    from brainpipe.simulate import simulate

    return simulate("poisson_glm_network", {"n_neurons": 4, "duration_s": 5.0}, seed=0).data


def build_nwb_units(root: Path) -> str:
    import pynwb

    ds = _tiny_spikes()
    f = pynwb.NWBFile("fuzz", "fuzz-units", dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    t, u = ds["spike_time"].values, ds["spike_unit"].values
    for k in range(ds.sizes["unit"]):
        f.add_unit(spike_times=t[u == k].tolist(), obs_intervals=[[0.0, 5.0]])
    f.add_trial_column("stim", "stimulus")
    for a in range(4):
        f.add_trial(start_time=a * 1.0, stop_time=a * 1.0 + 0.8, stim=float(a))
    mod = f.create_processing_module("behavior", "behaviour")
    bt = ds["behaviour_time"].values
    mod.add(pynwb.TimeSeries(name="speed", data=ds["behaviour"].values[:, 0], unit="cm/s", timestamps=bt))
    with pynwb.NWBHDF5IO(str(root / "units.nwb"), "w") as io:
        io.write(f)
    return "units.nwb"


def build_nwb_ophys(root: Path) -> str:
    from nwb_data import ophys_nwb

    traces = np.load(DATA / "calcium_traces.npy", allow_pickle=False)[:120].astype(np.float64)
    ophys_nwb(root / "ophys.nwb", traces, rate=10.0, ids=[10 + k for k in range(traces.shape[1])])
    return "ophys.nwb"


def _phy_arrays(n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    src = RES / "spikes" / "phy" / "nelpy_linear_track"
    return np.load(src / "spike_times.npy")[:n], np.load(src / "spike_clusters.npy")[:n]


def build_phy(root: Path) -> str:
    src = RES / "spikes" / "phy" / "nelpy_linear_track"
    d = root / "phy"
    d.mkdir()
    times, clusters = _phy_arrays()
    np.save(d / "spike_times.npy", times)
    np.save(d / "spike_clusters.npy", clusters)
    shutil.copy(src / "cluster_group.tsv", d / "cluster_group.tsv")
    (d / "params.py").write_text("dtype = 'int16'\nsample_rate = 30000.0\n")
    return "phy"


def build_kilosort(root: Path) -> str:
    """A Kilosort folder: templates instead of clusters, KSLabel labels, from the nelpy phy files."""
    d = root / "ks"
    d.mkdir()
    times, clusters = _phy_arrays()
    ids = np.unique(clusters)
    np.save(d / "spike_times.npy", times.astype(np.uint64))
    np.save(d / "spike_templates.npy", clusters.astype(np.uint32))
    labels = pd.DataFrame({"cluster_id": ids, "KSLabel": np.where(ids % 3 == 0, "mua", "good")})
    labels.to_csv(d / "cluster_KSLabel.tsv", sep="\t", index=False)
    (d / "params.py").write_text("sample_rate = 30000.0\n")
    return "ks"


def _suite2p_arrays() -> tuple[np.ndarray, np.ndarray]:
    traces = np.load(DATA / "calcium_traces.npy", allow_pickle=False)  # (time, neuron)
    F = traces.T.astype(np.float32)
    return F, (0.7 * F + 5.0).astype(np.float32)


def build_suite2p(root: Path) -> str:
    d = root / "plane0"
    d.mkdir()
    F, Fneu = _suite2p_arrays()
    np.save(d / "F.npy", F)
    np.save(d / "Fneu.npy", Fneu)
    iscell = np.ones((F.shape[0], 2))
    iscell[1] = [0, 0.2]
    np.save(d / "iscell.npy", iscell)
    np.save(d / "spks.npy", np.abs(np.diff(F, axis=1, prepend=F[:, :1])).astype(np.float32))
    (d / "frame_rate.json").write_text(json.dumps({"fs": 10.0}))
    return "plane0"


def _steinmetz_small() -> dict[str, np.ndarray]:
    with np.load(RES / "spikes" / "steinmetz2019" / "session1.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    out = {k: (v[:6] if v.ndim and v.shape[0] == arrays["spks"].shape[0] else v) for k, v in arrays.items()}
    out["spks"] = out["spks"][:, :12]
    return out


def build_trialized(root: Path) -> str:
    np.savez(root / "trials.npz", **_steinmetz_small())
    return "trials.npz"


def build_table_csv(root: Path) -> str:
    shutil.copy(DATA / "spike_table.csv", root / "spikes.csv")
    return "spikes.csv"


def build_table_tsv(root: Path) -> str:
    pd.read_csv(DATA / "spike_table.csv", dtype={"unit": str}).to_csv(
        root / "spikes.tsv", sep="\t", index=False
    )
    return "spikes.tsv"


def build_table_npz(root: Path) -> str:
    df = pd.read_csv(DATA / "spike_table.csv", dtype={"unit": str})
    np.savez(root / "spikes.npz", unit=df["unit"].to_numpy(dtype=str), time=df["time"].to_numpy())
    return "spikes.npz"


def build_matclust(root: Path) -> str:
    src = RES / "spikes" / "nelpy-linear-track"
    shutil.copy(src / "spikes.mat", root / "spikes.mat")
    raw = (src / "trajectory.videoPositionTracking").read_bytes()
    end = raw.find(b"<End settings>") + len(b"<End settings>\n")
    (root / "pos.videoPositionTracking").write_bytes(raw[: end + 12 * 400])  # the header and 400 records
    return "spikes.mat"


def _matclust(root: Path, path: Path):
    return read(path, "spikes", position=root / "pos.videoPositionTracking")


def _fmri_tree(root: Path) -> Path:
    """A tiny simulated fMRIPrep tree (4 subjects, 4 ROIs, 24 volumes)."""
    from brainpipe.simulate import simulate
    from brainpipe.simulate.fmri import write_derivatives

    params = {"n_subjects": 4, "rois_per_module": 1, "n_volumes": 24, "voxels_per_roi_side": 1}
    write_derivatives(simulate("fmri_modular_cohort", params, seed=1), root, seed=1)
    return root


def _one_subject(root: Path) -> Path:
    """Copy one subject of the simulated tree (and the atlas) under ``root``."""
    if not _FMRI_SRC:
        _FMRI_SRC.append(_fmri_tree(Path(tempfile.mkdtemp(prefix="bp-fuzz-fmri-"))))
    src = _FMRI_SRC[0]
    shutil.copytree(src / "atlas", root / "atlas")
    func = src / "derivatives" / "fmriprep" / "sub-01" / "func"
    dst = root / "fmriprep" / func.parent.name / "func"
    dst.mkdir(parents=True)
    for f in func.iterdir():
        shutil.copy(f, dst / f.name)
    return dst


def build_fmriprep(root: Path) -> str:
    _one_subject(root)
    return "fmriprep"


def build_nifti_gz(root: Path) -> str:
    func = _one_subject(root)
    bold = next(func.glob("*_bold.nii.gz"))
    shutil.move(bold, root / "bold.nii.gz")
    return "bold.nii.gz"


def build_nifti(root: Path) -> str:
    import nibabel as nib

    func = _one_subject(root)
    img = nib.load(next(func.glob("*_bold.nii.gz")))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header), root / "bold.nii")
    return "bold.nii"


def _atlas(root: Path, path: Path):
    return _fmri(root, path, atlas=root / "atlas" / "atlas.nii.gz", atlas_labels=root / "atlas" / "atlas.tsv")


def _fmriprep(root: Path, path: Path):
    return _fmri(root, path, atlas=root / "atlas" / "atlas.nii.gz", atlas_labels=root / "atlas" / "atlas.tsv")


def _nitime_rows() -> pd.DataFrame:
    return pd.read_csv(RES / "fmri" / "nitime" / "fmri_timeseries.csv").iloc[:60, :6]


def build_roi_csv(root: Path) -> str:
    _nitime_rows().to_csv(root / "rois.csv", index=False)
    return "rois.csv"


def build_roi_tsv(root: Path) -> str:
    _nitime_rows().to_csv(root / "rois.tsv", sep="\t", index=False)
    return "rois.tsv"


def build_roi_1d(root: Path) -> str:
    np.savetxt(root / "rois.1D", _nitime_rows().to_numpy(), header="nitime ROIs")
    return "rois.1D"


def build_roi_npy(root: Path) -> str:
    np.save(root / "rois.npy", _nitime_rows().to_numpy())
    return "rois.npy"


def _roi_table(root: Path, path: Path):
    return _fmri(root, path, repetition_time_s=2.0)


def build_calcium_npy(root: Path) -> str:
    shutil.copy(DATA / "calcium_traces.npy", root / "traces.npy")
    shutil.copy(DATA / "calcium_traces.npy.json", root / "traces.npy.json")
    return "traces.npy"


def build_calcium_csv(root: Path) -> str:
    traces = np.load(DATA / "calcium_traces.npy", allow_pickle=False)
    pd.DataFrame(traces, columns=[f"c{k}" for k in range(traces.shape[1])]).to_csv(
        root / "traces.csv", index=False
    )
    (root / "traces.csv.json").write_text(json.dumps({"frame_rate_hz": 10.0}))
    return "traces.csv"


def build_calcium_h5(root: Path) -> str:
    import h5py

    traces = np.load(DATA / "calcium_traces.npy", allow_pickle=False)
    with h5py.File(root / "traces.h5", "w") as fh:
        fh["F"] = traces
    (root / "traces.h5.json").write_text(json.dumps({"frame_rate_hz": 10.0}))
    return "traces.h5"


def _intermediate(kind: str, suffix: str = ".nc") -> Callable[[Path], str]:
    def build(root: Path) -> str:
        from contract_data import BUILDERS, prov_record

        write(BUILDERS[kind](), root / f"{kind}{suffix}", kind, prov_record())
        return f"{kind}{suffix}"

    build.__name__ = f"build_{kind}"
    return build


def _read_intermediate(kind: str):
    return lambda root, path: read_intermediate(path, kind)


_FMRI_SRC: list[Path] = []  # the simulated tree, written once at the first fMRI format

S, C, F = "spike_times", "calcium_traces", "roi_timeseries"
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("nwb_units", build_nwb_units, _spikes, S, (Member("units.nwb", True),)),
        Format("nwb_ophys", build_nwb_ophys, _calcium, C, (Member("ophys.nwb", True),)),
        Format(
            "phy",
            build_phy,
            lambda r, p: _spikes(r, p),
            S,
            (
                Member("phy/spike_times.npy", True),
                Member("phy/spike_clusters.npy", True),
                Member("phy/cluster_group.tsv", False),
                Member("phy/params.py", False),
            ),
        ),
        Format(
            "kilosort",
            build_kilosort,
            lambda r, p: _spikes(r, p),
            S,
            (
                Member("ks/spike_times.npy", True),
                Member("ks/spike_templates.npy", True),
                Member("ks/cluster_KSLabel.tsv", False),
            ),
        ),
        Format(
            "suite2p",
            build_suite2p,
            _calcium,
            C,
            (
                Member("plane0/F.npy", True),
                Member("plane0/Fneu.npy", True),
                Member("plane0/iscell.npy", True),
                Member("plane0/spks.npy", True),
                Member("plane0/frame_rate.json", False),
            ),
        ),
        Format("trialized_npz", build_trialized, _spikes, S, (Member("trials.npz", True),)),
        Format("table_csv", build_table_csv, _spikes, S, (Member("spikes.csv", False),)),
        Format("table_tsv", build_table_tsv, _spikes, S, (Member("spikes.tsv", False),)),
        Format("table_npz", build_table_npz, _spikes, S, (Member("spikes.npz", True),)),
        Format(
            "matclust",
            build_matclust,
            _matclust,
            S,
            (Member("spikes.mat", True), Member("pos.videoPositionTracking", False)),
        ),
        Format(
            "nifti_gz",
            build_nifti_gz,
            _atlas,
            F,
            (
                Member("bold.nii.gz", True),
                Member("atlas/atlas.nii.gz", True),
                Member("atlas/atlas.tsv", False),
            ),
            examples=12,
        ),
        Format("nifti", build_nifti, _atlas, F, (Member("bold.nii", True),), examples=8),
        Format(
            "fmriprep",
            build_fmriprep,
            _fmriprep,
            F,
            tuple(
                Member(f"fmriprep/sub-01/func/{n}", strict)
                for n, strict in (
                    ("sub-01_task-rest_space-sim_desc-preproc_bold.nii.gz", True),
                    ("sub-01_task-rest_space-sim_desc-preproc_bold.json", False),
                    ("sub-01_task-rest_desc-confounds_timeseries.tsv", False),
                )
            ),
            examples=12,
        ),
        Format("roi_csv", build_roi_csv, _roi_table, F, (Member("rois.csv", False),), examples=8),
        Format("roi_tsv", build_roi_tsv, _roi_table, F, (Member("rois.tsv", False),), examples=8),
        Format("roi_1d", build_roi_1d, _roi_table, F, (Member("rois.1D", False),), examples=8),
        Format("roi_npy", build_roi_npy, _roi_table, F, (Member("rois.npy", True),), examples=8),
        Format(
            "calcium_npy",
            build_calcium_npy,
            _calcium,
            C,
            (Member("traces.npy", True), Member("traces.npy.json", False)),
        ),
        Format("calcium_csv", build_calcium_csv, _calcium, C, (Member("traces.csv", False),)),
        Format("calcium_h5", build_calcium_h5, _calcium, C, (Member("traces.h5", True),)),
        *(
            Format(
                f"netcdf_{k}",
                _intermediate(k),
                _read_intermediate(k),
                k,
                (Member(f"{k}.nc", True),),
                (InputError, ContractError),
            )
            for k in ("calcium_traces", "roi_timeseries", "spike_times", "spike_counts", "metrics")
        ),
    )
}
ZARR = Format(
    "zarr_affinity_tensor",
    _intermediate("affinity_tensor", ".zarr"),
    _read_intermediate("affinity_tensor"),
    "affinity_tensor",
    (),
    (InputError, ContractError),
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Iterator[Callable[[Format], tuple[Path, str]]]:
    """``pristine(fmt)``: (root, input path) of the format's valid input, built once and read cleanly first."""
    built: dict[str, tuple[Path, str]] = {}

    def get(fmt: Format) -> tuple[Path, str]:
        if fmt.name not in built:
            root = tmp_path_factory.mktemp(fmt.name)
            rel = fmt.build(root)
            _assert_valid(fmt, fmt.read(root, root / rel))  # the fixture itself reads and passes its contract
            built[fmt.name] = (root, rel)
        return built[fmt.name]

    yield get
    for d in _FMRI_SRC:
        shutil.rmtree(d, ignore_errors=True)
    _FMRI_SRC.clear()


def _assert_valid(fmt: Format, result) -> None:
    for ds in result if isinstance(result, list) else [result]:
        problems = check(ds, fmt.kind, require_provenance=fmt.name.startswith(("netcdf", "zarr")))
        assert not problems, f"{fmt.name}: a read that did not fail gave an invalid {fmt.kind}: {problems}"


@dataclass
class Copy:
    root: Path
    path: Path

    @classmethod
    def of(cls, pristine, fmt: Format, scratch: Path) -> Copy:
        src_root, rel = pristine(fmt)
        root = scratch / "in"
        shutil.copytree(src_root, root)
        return cls(root, root / rel)


@pytest.fixture
def scratch() -> Iterator[Callable[[], Path]]:
    """A fresh empty folder per call (Hypothesis runs many examples in one test call)."""
    made: list[tempfile.TemporaryDirectory] = []

    def new() -> Path:
        made.append(tempfile.TemporaryDirectory(prefix="bp-fuzz-"))
        return Path(made[-1].name)

    yield new
    for d in made:
        d.cleanup()


#: The longest a read of a damaged copy may take (it runs in a forked child that is killed past it).
READ_LIMIT_S = 60.0


def _read_in_child(fmt: Format, copy: Copy, send) -> None:
    """The child's side of :func:`outcome`: read, and send back what happened as plain strings."""
    try:
        result = fmt.read(copy.root, copy.path)
        runs = result if isinstance(result, list) else [result]
        problems = [
            p
            for ds in runs
            for p in check(ds, fmt.kind, require_provenance=fmt.name.startswith(("netcdf", "zarr")))
        ]
        send(("read", problems))
    except fmt.errors as err:
        send(("error", str(err)))
    except BaseException:  # noqa: BLE001 - any other exception is the failure this test looks for
        send(("crash", traceback.format_exc()))


def outcome(fmt: Format, copy: Copy, named: list[Path]) -> str | None:
    """Read the damaged copy: None when it reads (and passes its contract), else the one-line message.

    The read runs in a forked child, so that a read that never ends (a library spinning on a damaged file) fails
    the example after :data:`READ_LIMIT_S` instead of hanging the run. Any exception but the format's one-line
    errors fails the test with the child's traceback.
    """
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_read_in_child, args=(fmt, copy, send.send), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(READ_LIMIT_S):
            pytest.fail(f"{fmt.name}: reading the damaged copy did not end within {READ_LIMIT_S:.0f} s")
        what, detail = receive.recv()
    except EOFError:
        pytest.fail(f"{fmt.name}: the reading process died (exit code {child.exitcode}) without an answer")
    finally:
        if child.is_alive():
            child.kill()
        child.join()
    if what == "crash":
        pytest.fail(f"{fmt.name}: a damaged copy raised an exception that is not one line:\n{detail}")
    if what == "read":
        assert not detail, f"{fmt.name}: a read that did not fail gave an invalid {fmt.kind}: {detail}"
        return None
    msg = detail
    assert "\n" not in msg, msg
    assert any(str(p) in msg for p in named), f"the message names none of {named}: {msg}"
    return msg


# -- mutations --------------------------------------------------------------------------------------------------------
@st.composite
def damage(draw, fmt: Format):
    """(member, mutation, argument): cut at a fraction of the size, flip bytes, or empty the file."""
    member = draw(st.sampled_from(fmt.members))
    how = draw(st.sampled_from(("cut", "cut", "flip", "flip", "empty")))
    if how == "cut":
        return member, how, draw(st.floats(0.0, 0.999))
    if how == "flip":
        return (
            member,
            how,
            draw(st.lists(st.tuples(st.floats(0.0, 0.999), st.integers(1, 255)), min_size=1, max_size=4)),
        )
    return member, how, None


def apply(target: Path, how: str, arg) -> None:
    raw = target.read_bytes()
    if how == "cut":
        target.write_bytes(raw[: int(arg * len(raw))])
    elif how == "empty":
        target.write_bytes(b"")
    else:
        buf = bytearray(raw)
        for where, mask in arg:
            buf[int(where * len(buf))] ^= mask
        target.write_bytes(bytes(buf))


def _fuzz_one(pristine, scratch, fmt: Format, member: Member, how: str, arg) -> None:
    copy = Copy.of(pristine, fmt, scratch())
    target = copy.root / member.rel
    apply(target, how, arg)
    named = [target, copy.path]
    if fmt.name == "fmriprep":  # a run's files are named by its bold image
        named.append(next(target.parent.glob("*_bold.nii.gz")))
    msg = outcome(fmt, copy, named)
    if how == "cut" and member.strict_cut:
        assert msg is not None, f"{fmt.name}: a cut {member.rel} was read as if whole"
        assert any(w in msg for w in CUT_WORDS), f"{fmt.name}: a cut {member.rel} gave another cause: {msg}"
    if how == "empty":
        assert msg is not None and str(target) in msg and "empty" in msg, (
            f"{fmt.name}: emptied {member.rel}: {msg}"
        )


@pytest.mark.parametrize("name", list(FORMATS))
def test_damaged_file_is_one_line(name, pristine, scratch):
    fmt = FORMATS[name]
    pristine(fmt)

    @fuzz_settings(fmt.examples)
    @given(damage(fmt))
    def run(case):
        _fuzz_one(pristine, scratch, fmt, *case)

    run()


def test_damaged_zarr_store_is_one_line(pristine, scratch):
    src_root, rel = pristine(ZARR)
    files = sorted(str(p.relative_to(src_root)) for p in (src_root / rel).rglob("*") if p.is_file())
    fmt = Format(
        ZARR.name, ZARR.build, ZARR.read, ZARR.kind, tuple(Member(f, False) for f in files), ZARR.errors
    )

    @fuzz_settings(20)
    @given(damage(fmt))
    def run(case):
        member, how, arg = case
        copy = Copy.of(pristine, fmt, scratch())
        apply(copy.root / member.rel, how, arg)
        outcome(fmt, copy, [copy.path])

    run()


# -- shapes and dtypes ------------------------------------------------------------------------------------------------
class Bomb:
    """Pickles as a call that creates ``marker`` (a folder): unpickling it would leave the marker behind."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker, 0o777, True))


def _objects(marker: Path, n: int) -> np.ndarray:
    arr = np.empty(n, dtype=object)
    for k in range(n):
        arr[k] = Bomb(marker)
    return arr


def _save_objects(path: Path, marker: Path, n: int) -> None:
    np.save(path, _objects(marker, n), allow_pickle=True)


def _shape_case(root: Path, case: str, n: int) -> tuple[Callable[[], object], Path, str]:
    """Write one shape/dtype variant under ``root``; (read it, the file named, the expected fragment)."""
    marker = root / "unpickled"
    F, Fneu = _suite2p_arrays()
    if case.startswith("suite2p"):
        d = root / "plane0"
        d.mkdir()
        (d / "frame_rate.json").write_text(json.dumps({"fs": 10.0}))
        F = {"suite2p_zero_rois": F[:0, :n], "suite2p_zero_frames": F[:n, :0]}.get(case, F[:n])
        np.save(d / "Fneu.npy", F)
        if case == "suite2p_object_F":
            _save_objects(d / "F.npy", marker, n)
            return lambda: read(d, "calcium"), d / "F.npy", "holds Python objects"
        np.save(d / "F.npy", F)
        np.save(d / "iscell.npy", np.ones((F.shape[0], 2)))
        frag = "holds no ROIs" if case == "suite2p_zero_rois" else "holds no frames"
        return lambda: read(d, "calcium"), d / "F.npy", frag
    if case.startswith("calcium_npy"):
        p = root / "traces.npy"
        traces = np.load(DATA / "calcium_traces.npy", allow_pickle=False)
        if case == "calcium_npy_object":
            _save_objects(p, marker, n)
            return lambda: read(p, "calcium", frame_rate_hz=10.0), p, "holds Python objects"
        zero_rois = case == "calcium_npy_zero_rois"
        np.save(p, traces[:n, :0] if zero_rois else traces[:0, :n])
        return (
            lambda: read(p, "calcium", frame_rate_hz=10.0),
            p,
            "holds no ROIs" if zero_rois else "holds no frames",
        )
    if case.startswith("calcium_h5"):
        import h5py

        p = root / "traces.h5"
        traces = np.load(DATA / "calcium_traces.npy", allow_pickle=False)
        with h5py.File(p, "w") as fh:
            if case == "calcium_h5_strings":
                fh["F"] = np.array([[f"x{k}"] * 5 for k in range(n)], dtype="S4")
            else:
                fh["F"] = traces[:0, :n]
        frag = "holds |S4 values, not numbers" if case == "calcium_h5_strings" else "holds no frames"
        return lambda: read(p, "calcium", frame_rate_hz=10.0), p, frag
    if case == "matclust_zero_units":
        import scipy.io

        p = root / "spikes.mat"
        cells = np.empty((1, n), dtype=object)
        cells[0, :] = [np.zeros((0, 0)) for _ in range(n)]  # tetrodes with nothing sorted
        scipy.io.savemat(p, {"spikes": cells})
        return lambda: read(p, "spikes"), p, "holds no units"
    if case == "calcium_csv_zero_frames":
        p = root / "traces.csv"
        p.write_text(",".join(f"c{k}" for k in range(n)) + "\n")
        return lambda: read(p, "calcium", frame_rate_hz=10.0), p, "holds no frames"
    if case.startswith("phy"):
        d = root / "phy"
        d.mkdir()
        (d / "params.py").write_text("sample_rate = 30000.0\n")
        times, clusters = _phy_arrays(n)
        if case == "phy_object_times":
            _save_objects(d / "spike_times.npy", marker, n)
            np.save(d / "spike_clusters.npy", clusters)
            return lambda: read(d, "spikes", groups=None), d / "spike_times.npy", "holds Python objects"
        np.save(d / "spike_times.npy", times[:0])
        np.save(d / "spike_clusters.npy", clusters[:0])
        return lambda: read(d, "spikes", groups=None), d, "holds no spikes"
    if case.startswith("trialized"):
        p = root / "trials.npz"
        arrays = _steinmetz_small()
        if case == "trialized_object_spks":
            arrays["spks"] = _objects(marker, n)
            np.savez(p, **arrays)
            return lambda: read(p, "spikes", format="trialized_npz"), p, "holds Python objects"
        axis = {"trialized_zero_trials": 0, "trialized_zero_units": 1, "trialized_zero_bins": 2}[case]
        arrays["spks"] = np.take(arrays["spks"], np.arange(0), axis=axis)
        if axis != 1:
            arrays["time"] = np.take(arrays["time"], np.arange(0), axis=axis // 2 if axis else 0)
        np.savez(p, **arrays)
        frag = {0: "holds no trials", 1: "holds no units", 2: "holds no bins"}[axis]
        return lambda: read(p, "spikes", format="trialized_npz"), p, frag
    if case.startswith("table_npz"):
        p = root / "spikes.npz"
        if case == "table_npz_object_unit":
            np.savez(p, unit=_objects(marker, n), time=np.linspace(0, 1, n))
            return lambda: read(p, "spikes"), p, "holds Python objects"
        np.savez(p, unit=np.zeros(0, dtype=str), time=np.zeros(0))
        return lambda: read(p, "spikes"), p, "has no spikes"
    if case == "table_csv_zero_units":
        p = root / "spikes.csv"
        p.write_text("unit,time\n")
        return lambda: read(p, "spikes"), p, "has no spikes"
    if case == "nwb_zero_units":
        import pynwb

        p = root / "none.nwb"
        f = pynwb.NWBFile("fuzz", "no-units", dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
        with pynwb.NWBHDF5IO(str(p), "w") as io:
            io.write(f)
        return lambda: read(p, "spikes"), p, "has no Units table"
    if case.startswith("roi"):
        p = root / ("rois.npy" if "npy" in case else "rois.csv")
        rows = _nitime_rows().iloc[:n]
        if case == "roi_npy_object":
            _save_objects(p, marker, n)
        elif case == "roi_npy_zero_frames":
            np.save(p, rows.to_numpy()[:0])
        elif case == "roi_csv_zero_frames":
            rows.iloc[:0].to_csv(p, index=False)
        elif case == "roi_csv_zero_rois":
            p.write_text("".join("\n" for _ in range(n)))
        frag = {
            "roi_npy_object": "holds Python objects",
            "roi_csv_zero_rois": "cannot be read as a table",
        }.get(case, "has no rows")
        return lambda: list(read(p, "fmri", repetition_time_s=2.0)), p, frag
    if case == "nifti_zero_volumes":
        import nibabel as nib

        atlas = root / "atlas.nii.gz"
        grid = np.zeros((4, 4, 4), dtype=np.int16)
        grid[:2], grid[2:] = 1, 2
        nib.save(nib.Nifti1Image(grid, np.eye(4)), atlas)
        p = root / "bold.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 0), dtype=np.float32), np.eye(4)), p)
        return lambda: list(read(p, "fmri", atlas=atlas, repetition_time_s=2.0)), p, "holds no volumes"
    raise AssertionError(case)


SHAPE_CASES = (
    "suite2p_zero_rois",
    "suite2p_zero_frames",
    "suite2p_object_F",
    "calcium_npy_object",
    "calcium_npy_zero_rois",
    "calcium_npy_zero_frames",
    "calcium_csv_zero_frames",
    "calcium_h5_zero_frames",
    "calcium_h5_strings",
    "matclust_zero_units",
    "phy_zero_spikes",
    "phy_object_times",
    "trialized_zero_trials",
    "trialized_zero_units",
    "trialized_zero_bins",
    "trialized_object_spks",
    "table_npz_object_unit",
    "table_npz_zero_units",
    "table_csv_zero_units",
    "nwb_zero_units",
    "roi_npy_object",
    "roi_npy_zero_frames",
    "roi_csv_zero_frames",
    "nifti_zero_volumes",
)


@pytest.mark.parametrize("case", SHAPE_CASES)
def test_shapes_and_dtypes_name_the_cause(case, scratch):
    @fuzz_settings(3)
    @given(st.integers(1, 40))
    def run(n):
        root = scratch()
        do, named, fragment = _shape_case(root, case, n)
        with pytest.raises((InputError, ConfigError)) as err:
            do()
        msg = str(err.value)
        assert "\n" not in msg and str(named) in msg and fragment in msg, msg
        assert not (root / "unpickled").exists(), "an object array was unpickled"

    run()


def test_object_arrays_would_unpickle():
    """The bomb works: loading it with pickle allowed does create the marker (so its absence above means something)."""
    with tempfile.TemporaryDirectory() as d:
        path, marker = Path(d) / "obj.npy", Path(d) / "unpickled"
        _save_objects(path, marker, 2)
        np.load(path, allow_pickle=True)
        assert marker.is_dir()
