"""Readers of outside spike formats (brainpipe.io.spikes): bundled real data, cross-format agreement, bad input."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from brainpipe.data import check
from brainpipe.errors import ConfigError, InputError
from brainpipe.io import (
    FORMATS,
    detect,
    read_matclust,
    read_nwb,
    read_phy,
    read_spike_table,
    read_spikes,
    read_trialized_npz,
)
from brainpipe.io.spikes import read_position_tracking

ROOT = Path(__file__).parents[2]
RES = ROOT / "resources" / "spikes"
STEINMETZ = RES / "steinmetz2019"
NELPY = RES / "nelpy-linear-track"
PHY = RES / "phy" / "nelpy_linear_track"
NWB_S1 = RES / "nwb" / "steinmetz2019_session1.nwb"
# The 3.3 MB nelpy NWB is not bundled: use the developer data folder shared/ (in the checkout or beside it).
_SHARED_NWB = [
    d / "shared" / "data" / "formats" / "nwb" / "nelpy_linear_track.nwb" for d in (ROOT, ROOT.parent)
]
NELPY_NWB = next((p for p in _SHARED_NWB if p.is_file()), _SHARED_NWB[0])
needs_shared = pytest.mark.skipif(
    not NELPY_NWB.is_file(), reason="shared/data/formats/nwb (nelpy NWB) not present"
)

TICK = 1.0 / 30000.0
STEINMETZ_SESSIONS = {  # session: (trials, units, spikes, units without spikes)
    "session1": (214, 178, 63049, 1),
    "session2": (251, 533, 178062, 4),
}


def _valid(ds):
    problems = check(ds, "spike_times", require_provenance=False)
    assert problems == []
    t, u = ds["spike_time"].values, ds["spike_unit"].values
    assert ds["spike_time"].dtype == np.float64 and ds["spike_time"].attrs["units"] == "s"
    assert ds["spike_unit"].dtype == np.int32
    assert ds["unit"].dtype.kind == "U"
    assert np.all((np.diff(t) > 0) | ((np.diff(t) == 0) & (np.diff(u) >= 0)))  # by time, ties by unit
    assert ds.attrs["observed"] in ("trials", "continuous")
    assert ds.attrs["format"] in FORMATS
    assert "provenance" not in ds.attrs
    return ds


def _trains(ds) -> dict[str, np.ndarray]:
    t, u = ds["spike_time"].values, ds["spike_unit"].values
    return {str(lab): np.sort(t[u == i]) for i, lab in enumerate(ds["unit"].values)}


def _one_line(err: pytest.ExceptionInfo, path) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: "), msg
    assert "; " in msg, msg  # what is wrong; what to do
    return msg


# -- bundled files: documented counts and the contract ---------------------------------------------------------------
@pytest.mark.parametrize("session", sorted(STEINMETZ_SESSIONS))
def test_steinmetz_npz(session, caplog):
    n_trials, n_units, n_spikes, n_silent = STEINMETZ_SESSIONS[session]
    path = STEINMETZ / f"{session}.npz"
    with caplog.at_level(logging.WARNING, logger="brainpipe.io.spikes"):
        ds = _valid(read_trialized_npz(path))
    raw = np.load(path, allow_pickle=False)
    assert ds.sizes == {"spike": n_spikes, "unit": n_units, "trial": n_trials}
    assert int(raw["spks"].sum()) == n_spikes
    assert ds["unit"].values[0] == "u000" and ds["unit"].values[-1] == f"u{n_units - 1:03d}"
    assert np.count_nonzero(np.bincount(ds["spike_unit"].values, minlength=n_units) == 0) == n_silent
    assert f"{n_silent} of {n_units} unit(s) have no spikes" in caplog.text
    assert ds.attrs["observed"] == "trials" and ds.attrs["format"] == "trialized_npz"
    assert ds.attrs["time_resolution_s"] == 0.01 and ds.attrs["time_base"] == "bin centres"
    assert ds.attrs["mouse_name"] == "Cori" and ds.attrs["date_exp"] == str(raw["date_exp"])
    # time holds bin centres: trials span [first centre - 5 ms, last centre + 5 ms], 0.39 s
    np.testing.assert_allclose(ds["trial_start"].values, raw["time"][:, 0] - 0.005, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ds["trial_stop"] - ds["trial_start"], 0.39, rtol=0, atol=1e-9)
    assert (
        ds.attrs["t_start_s"] == ds["trial_start"].values[0]
        and ds.attrs["t_stop_s"] == ds["trial_stop"].values[-1]
    )
    assert np.all(ds["trial_start"].values[1:] >= ds["trial_stop"].values[:-1])  # trials do not overlap
    for key in ("contrast_left", "contrast_right", "feedback_type"):
        assert ds[f"trial_{key}"].dtype == np.float64
        np.testing.assert_array_equal(ds[f"trial_{key}"].values, raw[key])
    assert set(np.unique(ds["trial_feedback_type"])) == {-1.0, 1.0}
    # every spike sits at a bin centre of its trial; re-binning gives spks exactly
    np.testing.assert_array_equal(_rebin(ds, raw["spks"].shape[2]), raw["spks"])


def _rebin(ds, n_bins: int, bin_width: float = 0.01) -> np.ndarray:
    t, u = ds["spike_time"].values, ds["spike_unit"].values
    start, stop = ds["trial_start"].values, ds["trial_stop"].values
    k = np.searchsorted(start, t, side="right") - 1
    assert np.all(k >= 0) and np.all(t < stop[k])  # every spike inside a trial
    b = np.floor((t - start[k]) / bin_width).astype(int)
    assert b.min() >= 0 and b.max() < n_bins
    out = np.zeros((start.size, ds.sizes["unit"], n_bins), dtype=np.int64)
    np.add.at(out, (k, u, b), 1)
    return out


def test_steinmetz_nwb_bundled():
    ds = _valid(read_nwb(NWB_S1))
    assert ds.sizes == {"spike": 63049, "unit": 178, "trial": 214}
    assert list(ds["unit"].values[:3]) == ["0", "1", "2"]
    assert ds.attrs["observed"] == "trials"  # obs_intervals are the 214 trial windows
    assert ds.attrs["format"] == "nwb" and ds.attrs["identifier"] == "steinmetz2019-session1"
    assert ds.attrs["time_resolution_s"] == 0.01
    assert sorted(v for v in ds.data_vars if v.startswith("trial_")) == [
        "trial_contrast_left",
        "trial_contrast_right",
        "trial_feedback_type",
        "trial_start",
        "trial_stop",
    ]
    assert 65.27 < ds.attrs["t_start_s"] < 65.28 and 1127.9 < ds.attrs["t_stop_s"] < 1128.0
    assert "behaviour" not in ds


def test_steinmetz_nwb_matches_npz():
    import pynwb

    nwb = read_nwb(NWB_S1)
    npz = read_trialized_npz(STEINMETZ / "session1.npz")
    with pynwb.NWBHDF5IO(str(NWB_S1), "r", load_namespaces=True) as io:
        source_index = np.asarray(io.read().units["source_index"].data[:])
    a, b = _trains(nwb), _trains(npz)
    for label, idx in zip(nwb["unit"].values, source_index, strict=True):
        np.testing.assert_allclose(a[label], b[f"u{idx:03d}"], rtol=0, atol=1e-9)
    for var in ("trial_start", "trial_stop"):
        np.testing.assert_allclose(nwb[var].values, npz[var].values, rtol=0, atol=1e-9)
    for var in ("trial_contrast_left", "trial_contrast_right", "trial_feedback_type"):
        np.testing.assert_array_equal(nwb[var].values, npz[var].values)
    raw = np.load(STEINMETZ / "session1.npz", allow_pickle=False)["spks"]
    np.testing.assert_array_equal(_rebin(nwb, 39)[:, np.argsort(source_index)], raw)


def test_phy_bundled():
    ds = _valid(read_phy(PHY))
    assert ds.sizes == {"spike": 28829, "unit": 31}
    assert list(ds["unit"].values) == [str(i) for i in range(31)]
    assert np.all(np.bincount(ds["spike_unit"].values) > 0)
    t = ds["spike_time"].values
    assert 4397.0 < t[0] < 4397.01 and 6365.1 < t[-1] < 6365.2
    assert ds.attrs["sample_rate_hz"] == 30000.0 and ds.attrs["observed"] == "continuous"
    assert ds.attrs["t_start_s"] == t[0] and t[-1] < ds.attrs["t_stop_s"] < t[-1] + 1e-9
    samples = np.load(PHY / "spike_times.npy", allow_pickle=False)[:, 0]
    np.testing.assert_array_equal(t, samples / 30000.0)


def test_matclust_bundled(caplog):
    with caplog.at_level(logging.WARNING, logger="brainpipe.io.spikes"):
        ds = _valid(read_matclust(NELPY / "spikes.mat", position=NELPY / "trajectory.videoPositionTracking"))
    counts = np.bincount(ds["spike_unit"].values, minlength=ds.sizes["unit"])
    assert ds.sizes["spike"] == 28829 and ds.sizes["unit"] == 37  # 31 units with spikes + 6 empty ones
    assert np.count_nonzero(counts) == 31
    assert sorted(ds["unit"].values[counts == 0]) == sorted(
        ["t1u21", "t10u4", "t10u7", "t10u9", "t10u19", "t10u22"]
    )
    assert "6 of 37 unit(s) have no spikes" in caplog.text
    assert "1 position record(s) with a repeated or earlier timestamp dropped" in caplog.text
    assert ds.attrs["t_start_s"] == 4396.9975 and ds.attrs["t_stop_s"] == 6365.2707  # MatClust timerange
    t = ds["spike_time"].values
    assert 4397.0 < t[0] and t[-1] < 6365.2
    # behaviour: 118,964 frames (one exact repeat dropped) at ~60 Hz, pixels of a 640 x 480 frame
    assert ds["behaviour"].shape == (118964, 2) and list(ds["behaviour_var"].values) == ["x", "y"]
    assert ds["behaviour"].attrs["units"] == "px" and ds["behaviour_time"].attrs["units"] == "s"
    bt = ds["behaviour_time"].values
    assert 4397.03 < bt[0] < 4397.04 and 6379.45 < bt[-1] < 6379.46
    assert np.median(np.diff(bt)) == pytest.approx(1 / 60, abs=1e-4)
    beh = ds["behaviour"].values
    assert (
        beh[:, 0].min() == 133 and beh[:, 0].max() == 554 and beh[:, 1].min() == 1 and beh[:, 1].max() == 479
    )
    assert ds.attrs["format"] == "matclust" and ds.attrs["observed"] == "continuous"


def test_phy_matches_matclust():
    phy, mc = _trains(read_phy(PHY)), _trains(read_matclust(NELPY / "spikes.mat"))
    # phy cluster ids are the MatClust units with spikes, in MatClust order (tetrode, then cell)
    nonempty = [lab for lab, t in mc.items() if t.size]
    assert len(nonempty) == len(phy) == 31
    tetrode = np.loadtxt(PHY / "cluster_tetrode.tsv", skiprows=1, dtype=int)
    for (cid, tet), lab in zip(tetrode, nonempty, strict=True):
        assert lab.startswith(f"t{tet}u")
        assert phy[str(cid)].size == mc[lab].size
        np.testing.assert_allclose(phy[str(cid)], mc[lab], rtol=0, atol=TICK)


@needs_shared
def test_nelpy_nwb_matches_matclust_and_phy():
    import pynwb

    nwb = _valid(read_nwb(NELPY_NWB))
    assert nwb.sizes == {"spike": 28829, "unit": 31, "behaviour_time": 118964, "behaviour_var": 2}
    assert nwb.attrs["observed"] == "continuous" and "trial_start" not in nwb
    assert nwb.attrs["t_start_s"] == 4396.9975 and nwb.attrs["t_stop_s"] == 6365.2707
    assert list(nwb["behaviour_var"].values) == ["position_x", "position_y"]
    with pynwb.NWBHDF5IO(str(NELPY_NWB), "r", load_namespaces=True) as io:
        units = io.read().units
        tet, cell = units["tetrode"].data[:], units["matclust_cell"].data[:]
    mc_ds = read_matclust(NELPY / "spikes.mat", position=NELPY / "trajectory.videoPositionTracking")
    a, mc, phy = _trains(nwb), _trains(mc_ds), _trains(read_phy(PHY))
    for label, t, c in zip(nwb["unit"].values, tet, cell, strict=True):
        np.testing.assert_allclose(a[label], mc[f"t{t}u{c}"], rtol=0, atol=TICK)
        np.testing.assert_allclose(a[label], phy[label], rtol=0, atol=TICK)
    np.testing.assert_allclose(
        nwb["behaviour_time"].values, mc_ds["behaviour_time"].values, rtol=0, atol=TICK
    )
    np.testing.assert_array_equal(nwb["behaviour"].values, mc_ds["behaviour"].values)


# -- dispatch ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "fmt", "options"),
    [
        (NWB_S1, "nwb", {}),
        (PHY, "phy", {}),
        (STEINMETZ / "session1.npz", "trialized_npz", {}),
        (NELPY / "spikes.mat", "matclust", {"position": NELPY / "trajectory.videoPositionTracking"}),
    ],
    ids=["nwb", "phy", "trialized_npz", "matclust"],
)
def test_read_spikes_auto(path, fmt, options):
    assert detect(path, "spikes") == fmt
    ds = _valid(read_spikes(path, **options))
    assert ds.attrs["format"] == fmt and ds.attrs["source"] == str(path)
    same = read_spikes(path, format=fmt, **options)
    np.testing.assert_array_equal(ds["spike_time"].values, same["spike_time"].values)


@needs_shared
def test_read_spikes_auto_shared_nwb():
    assert read_spikes(NELPY_NWB).attrs["format"] == "nwb"


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".npz"])
def test_read_spikes_auto_table(tmp_path, suffix):
    units, times = ["b", "a", "c", "a"], [0.5, 0.1, 1.25, 0.75]
    path = tmp_path / f"s{suffix}"
    if suffix == ".npz":
        np.savez(path, unit=np.array(units), time=np.array(times))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        path.write_text(
            f"unit{sep}time\n" + "".join(f"{u}{sep}{t}\n" for u, t in zip(units, times, strict=True))
        )
    assert detect(path, "spikes") == "table"
    ds = _valid(read_spikes(path))
    assert list(ds["unit"].values) == ["a", "b", "c"]
    np.testing.assert_array_equal(ds["spike_time"].values, [0.1, 0.5, 0.75, 1.25])
    np.testing.assert_array_equal(ds["spike_unit"].values, [0, 1, 0, 2])
    assert ds.attrs["format"] == "table" and ds.attrs["observed"] == "continuous"


def test_read_spikes_unknown_option(tmp_path):
    with pytest.raises(
        ConfigError, match=r"spike reader 'phy' .* has no option\(s\) bogus; its options: groups"
    ):
        read_spikes(PHY, bogus=1)


# -- phy details ---------------------------------------------------------------------------------------------------------
def _phy(
    folder: Path, samples, clusters, params: str | None = "sample_rate = 1000.0\n", groups: str | None = None
):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "spike_times.npy", np.asarray(samples))
    if clusters is not None:
        np.save(folder / "spike_clusters.npy", np.asarray(clusters, dtype=np.int32))
    if params is not None:
        (folder / "params.py").write_text(params)
    if groups is not None:
        (folder / "cluster_group.tsv").write_text(groups)
    return folder


def test_phy_groups_labels_and_params_not_executed(tmp_path, caplog):
    marker = tmp_path / "executed"
    params = (
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\ndtype = 'int16'\nsample_rate = 1e3\n"
    )
    groups = "cluster_id\tgroup\n0\tgood\n3\tmua\n5\tnoise\n7\tgood\n"
    folder = _phy(tmp_path / "p", [[10], [20], [20], [40], [55]], [3, 0, 5, 0, 9], params, groups)
    with caplog.at_level(logging.WARNING, logger="brainpipe.io.spikes"):
        ds = _valid(read_phy(folder))
    assert not marker.exists()  # params.py is parsed, never run
    assert list(ds["unit"].values) == ["0", "7"]  # cluster 7 is 'good' but has no spikes: kept, logged
    assert "1 of 2 unit(s) have no spikes (7)" in caplog.text
    np.testing.assert_array_equal(ds["spike_time"].values, [0.02, 0.04])
    assert ds.attrs["t_start_s"] == 0.01 and 0.055 < ds.attrs["t_stop_s"] < 0.0551  # all clusters' spikes
    every = read_phy(folder, groups=None)
    assert list(every["unit"].values) == ["0", "3", "5", "7", "9"]  # 9 has no label: 'unsorted'
    assert list(read_phy(folder, groups=("mua", "unsorted"))["unit"].values) == ["3", "9"]
    assert read_phy(folder, sample_rate=2000.0).attrs["sample_rate_hz"] == 2000.0


def test_phy_cluster_info_and_templates(tmp_path):
    folder = _phy(tmp_path / "p", np.array([5, 6, 7], dtype=np.uint64), None)
    np.save(folder / "spike_templates.npy", np.array([2, 1, 2], dtype=np.uint32))
    (folder / "cluster_info.tsv").write_text("id\tKSLabel\tgroup\tch\n1\tgood\t\t4\n2\tmua\tgood\t5\n")
    ds = _valid(read_phy(folder))
    assert list(ds["unit"].values) == ["1", "2"]  # 2: curated 'good' overrides KSLabel 'mua'
    np.testing.assert_array_equal(ds["spike_unit"].values, [1, 0, 1])


# -- NWB details ---------------------------------------------------------------------------------------------------------
def _nwb(path: Path, units, obs=None, trials=None, series=()):
    import pynwb
    from pynwb.behavior import Position, SpatialSeries

    f = pynwb.NWBFile("test", "test-file", dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    for k, times in enumerate(units):
        kw = {"obs_intervals": obs[k]} if obs is not None else {}
        f.add_unit(spike_times=list(times), **kw)
    if trials is not None:
        f.add_trial_column("stim", "stimulus")
        f.add_trial_column("label", "a string column (skipped)")
        for a, b, s in trials:
            f.add_trial(start_time=a, stop_time=b, stim=s, label="x")
    if series:
        mod = f.create_processing_module("behavior", "behaviour")
        pos = Position(name="Position")
        mod.add(pos)
        for name, data, kw in series:
            if name == "position":
                pos.add_spatial_series(
                    SpatialSeries(name=name, data=data, reference_frame="corner", unit="px", **kw)
                )
            else:
                mod.add(pynwb.TimeSeries(name=name, data=data, unit="cm/s", **kw))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


def test_nwb_obs_intervals_as_trials_and_behaviour_clocks(tmp_path, caplog):
    obs = [[[0.0, 1.0], [2.0, 3.0]], [[0.0, 1.0], [2.0, 3.0]]]
    t_pos = np.arange(0.0, 3.0, 0.1)
    pos = np.column_stack([t_pos, 2 * t_pos])
    series = [
        ("position", pos, {"timestamps": t_pos}),
        ("speed", np.arange(16.0), {"rate": 5.0, "starting_time": 0.0}),  # 0..3 s: interpolated onto position
        ("short", np.arange(3.0), {"timestamps": [1.0, 1.5, 2.0]}),  # does not span the clock: skipped
    ]
    path = _nwb(tmp_path / "a.nwb", [[0.5, 2.5], [0.1, 2.9]], obs=obs, series=series)
    with caplog.at_level(logging.WARNING, logger="brainpipe.io.spikes"):
        ds = _valid(read_nwb(path))
    assert ds.attrs["observed"] == "trials"
    np.testing.assert_array_equal(ds["trial_start"].values, [0.0, 2.0])
    np.testing.assert_array_equal(ds["trial_stop"].values, [1.0, 3.0])
    assert ds.attrs["t_start_s"] == 0.0 and ds.attrs["t_stop_s"] == 3.0
    assert list(ds["behaviour_var"].values) == ["position_x", "position_y", "speed"]
    np.testing.assert_array_equal(ds["behaviour_time"].values, t_pos)
    np.testing.assert_allclose(ds["behaviour"].sel(behaviour_var="speed").values, 5 * t_pos, atol=1e-12)
    assert ds["behaviour"].attrs["units"] == "mixed"
    assert "'short'" in caplog.text and "skipped" in caplog.text
    only = read_nwb(path, behaviour="speed", trials=False)
    assert list(only["behaviour_var"].values) == ["speed"] and only.sizes["behaviour_time"] == 16


def test_nwb_trials_table_continuous(tmp_path):
    path = _nwb(tmp_path / "b.nwb", [[0.5, 1.5], []], trials=[(0.0, 1.0, 0.25), (1.2, 2.0, 1.0)])
    ds = _valid(read_nwb(path))
    assert ds.attrs["observed"] == "continuous"  # no obs_intervals: recorded throughout
    np.testing.assert_array_equal(ds["trial_stim"].values, [0.25, 1.0])
    assert "trial_label" not in ds
    assert ds.attrs["t_start_s"] == 0.0 and ds.attrs["t_stop_s"] == 2.0
    assert list(ds["unit"].values) == ["0", "1"]
    assert "trial_start" not in read_nwb(path, trials=False)


# -- MatClust / position details --------------------------------------------------------------------------------------------
def test_matclust_layouts(tmp_path):
    def unit(times):
        return {"time": np.asarray(times, dtype=float).reshape(-1, 1), "timerange": np.array([[0.0, 10.0]])}

    tet1 = np.empty((1, 2), dtype=object)
    tet1[0, 0], tet1[0, 1] = unit([1.0, 2.0]), np.zeros((1, 0))
    tet2 = np.empty((1, 2), dtype=object)
    tet2[0, 0], tet2[0, 1] = np.zeros((1, 0)), unit([0.5])
    spikes = np.empty((1, 3), dtype=object)
    spikes[0, 0], spikes[0, 1], spikes[0, 2] = tet1, np.zeros((1, 0)), tet2
    path = tmp_path / "spikes.mat"
    scipy.io.savemat(path, {"spikes": spikes})
    ds = _valid(read_matclust(path))
    assert list(ds["unit"].values) == ["t1u1", "t3u2"]
    np.testing.assert_array_equal(ds["spike_time"].values, [0.5, 1.0, 2.0])
    assert ds.attrs["t_start_s"] == 0.0 and ds.attrs["t_stop_s"] == 10.0


def _position_file(path: Path, records, header=b"<Start settings>\nclockrate: 30000\n<End settings>\n"):
    rec = np.zeros(
        len(records), dtype=[("t", "<u4"), ("x", "<u2"), ("y", "<u2"), ("x2", "<u2"), ("y2", "<u2")]
    )
    for k, r in enumerate(records):
        rec[k] = r
    path.write_bytes(header + rec.tobytes())
    return path


def test_position_tracking(tmp_path, caplog):
    path = _position_file(
        tmp_path / "p.videoPositionTracking", [(30000, 1, 2, 0, 0), (30000, 1, 2, 0, 0), (30500, 3, 4, 0, 0)]
    )
    with caplog.at_level(logging.WARNING, logger="brainpipe.io.spikes"):
        b = read_position_tracking(path)
    assert "1 position record(s)" in caplog.text
    np.testing.assert_array_equal(b["time"], [1.0, 30500 / 30000])
    assert b["names"] == ["x", "y"] and b["values"].tolist() == [[1, 2], [3, 4]]


# -- bad input: one line each, naming the file, the problem and the fix -------------------------------------------------------
@pytest.mark.parametrize(
    ("reader", "name"),
    [
        (read_nwb, "missing.nwb"),
        (read_phy, "missing_folder"),
        (read_trialized_npz, "missing.npz"),
        (read_spike_table, "missing.csv"),
        (read_spike_table, "missing.npz"),
        (read_matclust, "missing.mat"),
        (read_spikes, "missing.nwb"),
    ],
)
def test_missing_path(tmp_path, reader, name):
    path = tmp_path / name
    with pytest.raises(InputError) as err:
        reader(path)
    msg = _one_line(err, path)
    assert "does not exist" in msg or "No such file" in msg


@pytest.mark.parametrize(
    ("reader", "name", "expected"),
    [
        (read_nwb, "bad.nwb", "is not an NWB (HDF5) file (no HDF5 signature at its start)"),
        (read_trialized_npz, "bad.npz", "is not an .npz archive (not a zip file)"),
        (read_spike_table, "bad.npz", "is not an .npz archive (not a zip file)"),
        (read_spikes, "bad.npz", "is not an .npz archive (not a zip file)"),  # detection says so too
        (read_matclust, "bad.mat", "cannot be read as a MATLAB .mat file"),
    ],
)
def test_corrupt_file(tmp_path, reader, name, expected):
    path = tmp_path / name
    path.write_bytes(b"\x00garbage\xff" * 50)
    with pytest.raises(InputError) as err:
        reader(path)
    assert expected in _one_line(err, path)


def test_hdf5_that_is_not_nwb(tmp_path):
    import h5py

    path = tmp_path / "plain.nwb"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(InputError) as err:
        read_nwb(path)
    assert "NWB" in _one_line(err, path)


def test_table_rows(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("unit,time\n")
    with pytest.raises(InputError) as err:
        read_spike_table(empty)
    assert "has no spikes (no rows)" in _one_line(err, empty)
    bad = tmp_path / "bad.csv"
    bad.write_text("unit,time\na,0.5\na,soon\n")
    with pytest.raises(InputError) as err:
        read_spike_table(bad)
    assert "column 'time' must hold finite numbers of seconds" in _one_line(err, bad)


def test_corrupt_phy_npy(tmp_path):
    folder = _phy(tmp_path / "p", [1, 2], [0, 0])
    (folder / "spike_clusters.npy").write_bytes(b"not a npy file")
    with pytest.raises(InputError) as err:
        read_phy(folder, groups=None)
    assert "is not a .npy array (it does not start with the NumPy magic string)" in _one_line(
        err, folder / "spike_clusters.npy"
    )


def test_negative_spike_times(tmp_path):
    folder = _phy(tmp_path / "p", np.array([-5, 1, 2]), [0, 0, 0])
    with pytest.raises(InputError) as err:
        read_phy(folder, groups=None)
    assert "negative sample times" in _one_line(err, folder / "spike_times.npy")
    path = _nwb(tmp_path / "neg.nwb", [[-0.5, 1.0]])
    with pytest.raises(InputError) as err:
        read_nwb(path)
    assert "unit 0 of Units 'units' has negative spike times" in _one_line(err, path)
    table = tmp_path / "neg.csv"
    table.write_text("unit,time\na,-1\na,2\n")
    with pytest.raises(InputError) as err:
        read_spike_table(table)
    assert "negative spike times" in _one_line(err, table)


def test_non_monotonic_spike_times(tmp_path):
    path = _nwb(tmp_path / "unsorted.nwb", [[0.1, 0.2], [0.5, 0.3]])
    with pytest.raises(InputError) as err:
        read_nwb(path)
    msg = _one_line(err, path)
    assert "unit 1 of Units 'units' has spike times that go back in time" in msg and "non-decreasing" in msg
    for dtype in (np.int64, np.uint64):  # Kilosort writes uint64 samples
        folder = _phy(tmp_path / f"p_{np.dtype(dtype).name}", np.array([1, 5, 3], dtype=dtype), [0, 0, 0])
        with pytest.raises(InputError) as err:
            read_phy(folder, groups=None)
        assert "is not sorted (1 place(s) where the time goes back)" in _one_line(
            err, folder / "spike_times.npy"
        )


def test_phy_length_mismatch(tmp_path):
    folder = _phy(tmp_path / "p", [1, 2, 3], [0, 0])
    with pytest.raises(InputError) as err:
        read_phy(folder, groups=None)
    assert "spike_times.npy has 3 spikes but spike_clusters.npy has 2" in _one_line(err, folder)


@pytest.mark.parametrize(
    ("params", "expected", "where"),
    [
        (None, "no sample rate: there is no params.py", ""),
        ("dtype = 'int16'\n", "no sample rate: params.py has no sample_rate", ""),
        ("sample_rate = 3e4 * 1\n", "'sample_rate' is not a literal value", "params.py"),
        ("sample_rate = \n", "cannot be parsed as Python text", "params.py"),
    ],
)
def test_phy_sample_rate_problems(tmp_path, params, expected, where):
    folder = _phy(tmp_path / "p", [1, 2], [0, 0], params=params)
    with pytest.raises(InputError) as err:
        read_phy(folder, groups=None)
    msg = _one_line(err, folder / where if where else folder)
    assert expected in msg
    if params is None:
        assert "pass sample_rate" in msg
        assert read_phy(folder, groups=None, sample_rate=10.0).attrs["t_start_s"] == 0.1


def test_behaviour_nan(tmp_path):
    t = np.arange(0.0, 1.0, 0.1)
    pos = np.column_stack([t, t])
    pos[3, 1] = np.nan
    path = _nwb(tmp_path / "nan.nwb", [[0.5]], series=[("position", pos, {"timestamps": t})])
    with pytest.raises(InputError) as err:
        read_nwb(path)
    msg = _one_line(err, path)
    assert "behaviour variable 'position_y' has 1 NaN or infinite value(s) of 10" in msg
    assert read_nwb(path, behaviour=False).attrs["format"] == "nwb"


def test_table_without_needed_columns(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("unit,t\na,0.1\n")
    with pytest.raises(InputError) as err:
        read_spike_table(csv)
    assert "missing column(s) time (found unit, t)" in _one_line(err, csv)
    npz = tmp_path / "t.npz"
    np.savez(npz, unit=np.array([1, 2]), times=np.array([0.1, 0.2]))
    with pytest.raises(InputError) as err:
        read_spikes(npz, format="table")
    assert "missing array(s) time (found unit, times)" in _one_line(err, npz)
    folder = _phy(tmp_path / "p", [1, 2], [0, 0], groups="cluster_id\tquality\n0\tgood\n")
    with pytest.raises(InputError) as err:
        read_phy(folder)
    assert "missing column(s) group/KSLabel (found cluster_id, quality)" in _one_line(
        err, folder / "cluster_group.tsv"
    )


def test_npz_neither_format(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, spks=np.zeros((2, 3)), other=np.arange(3))
    with pytest.raises(InputError) as err:
        read_spikes(path)
    msg = _one_line(err, path)
    assert (
        "is an .npz archive with spks(2, 3), other(3,), which matches none of the spike formats tried" in msg
    )
    assert (
        "trialized_npz: an .npz with a 3-D counts array" in msg
        and "an .npz with arrays 'unit' and 'time'" in msg
    )
    assert "set 'format:' for this dataset to one of nwb, phy, trialized_npz, binned, table, matclust" in msg
    with pytest.raises(InputError) as err:
        read_trialized_npz(path)
    assert "has no 3-D array 'spks'" in _one_line(err, path)


def test_unknown_format(tmp_path):
    path = tmp_path / "x.csv"
    with pytest.raises(InputError) as err:
        read_spikes(path, format="kilosort9")
    msg = _one_line(err, path)
    assert "unknown spike data format 'kilosort9'" in msg
    assert "auto, nwb, phy, trialized_npz, binned, table, matclust" in msg
    odd = tmp_path / "x.xyz"
    odd.write_text("")
    with pytest.raises(InputError) as err:
        read_spikes(odd)
    msg = _one_line(err, odd)
    assert "is a '.xyz' file, which matches none of the spike formats tried (nwb: a .nwb file; " in msg
    assert "set 'format:' for this dataset" in msg


def test_other_bad_inputs(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(InputError) as err:
        read_spikes(folder)
    assert "is an empty folder, which matches none of the spike formats tried" in _one_line(err, folder)
    assert "phy: a folder holding spike_times.npy" in str(err.value)
    mat = tmp_path / "m.mat"
    scipy.io.savemat(mat, {"other": np.arange(3)})
    with pytest.raises(InputError) as err:
        read_matclust(mat)
    assert "has no variable 'spikes' (found other)" in _one_line(err, mat)
    pos = tmp_path / "p.videoPositionTracking"
    pos.write_bytes(b"<Start settings>\nno end\n")
    with pytest.raises(InputError) as err:
        read_position_tracking(pos)
    assert "has no '<End settings>' header line" in _one_line(err, pos)
    folder = _phy(tmp_path / "p", [1, 2], [0, 0])
    with pytest.raises(InputError) as err:
        read_phy(folder)
    assert "pass groups=None" in _one_line(err, folder)
    irregular = tmp_path / "irr.npz"
    np.savez(irregular, spks=np.ones((1, 1, 3), dtype=np.uint8), time=np.array([[1.0, 1.01, 1.05]]))
    with pytest.raises(InputError) as err:
        read_trialized_npz(irregular)
    assert "steps are not regular" in _one_line(err, irregular)
