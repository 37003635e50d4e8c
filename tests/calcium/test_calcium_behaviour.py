"""Behaviour variables of calcium recordings: the contract, the readers (NWB behaviour series, an explicit table),
one clear line for each bad table, and preprocessing keeping them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainpipe.data import contracts
from brainpipe.errors import InputError
from brainpipe.io.calcium import read_behaviour_table, read_calcium
from brainpipe.preprocess.calcium import preprocess_calcium

REPO = Path(__file__).resolve().parents[2]
ARRAY = REPO / "tests" / "data" / "calcium_traces.npy"  # 400 frames x 5 cells at 10 Hz (sidecar)


def _table(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_table_option_adds_behaviour_on_its_own_clock(tmp_path):
    t = np.arange(0, 40, 0.05)
    body = "\n".join(f"{x:.3f},{float(x > 20)},{np.sin(x):.4f}" for x in t)
    table = _table(tmp_path / "beh.csv", "time_s,running,speed\n" + body)
    ds = read_calcium(ARRAY, options={"behaviour": str(table)})
    assert list(ds["behaviour_var"].values) == ["running", "speed"]
    assert ds.sizes["behaviour_time"] == t.size and ds.sizes["time"] == 400
    np.testing.assert_allclose(ds["behaviour"].sel(behaviour_var="running").values, (t > 20).astype(float))
    assert contracts.check(ds, "calcium_traces", require_provenance=False) == []
    out = preprocess_calcium(ds, window_s=10.0)  # preprocessing carries the behaviour unchanged
    np.testing.assert_array_equal(out["behaviour"].values, ds["behaviour"].values)
    np.testing.assert_array_equal(out["behaviour_time"].values, ds["behaviour_time"].values)


def test_npz_and_tsv_tables(tmp_path):
    t = np.linspace(0, 10, 50)
    np.savez(tmp_path / "b.npz", time_s=t, speed=t**2)
    blk = read_behaviour_table(tmp_path / "b.npz")
    assert blk["names"] == ["speed"] and np.allclose(blk["values"][:, 0], t**2)
    tsv = _table(tmp_path / "b.tsv", "speed\ttime_s\n1\t0\n2\t1\n")
    assert read_behaviour_table(tsv)["names"] == ["speed"]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("missing.csv", None, r"missing\.csv: behaviour table not found; set options\.behaviour"),
        ("notime.csv", "t,speed\n0,1\n1,2\n", r"has no 'time_s' column \(has: t, speed\); give a 'time_s'"),
        ("back.csv", "time_s,speed\n0,1\n2,2\n1,3\n", r"behaviour timestamps are not strictly increasing"),
        (
            "text.csv",
            "time_s,speed\n0,1\n1,fast\n",
            r"behaviour column 'speed' is not numeric \(row 2: 'fast'\)",
        ),
        ("novar.csv", "time_s\n0\n1\n", r"has a time column but no variable"),
        ("gap.csv", "time_s,speed\n0,1\n1,\n", r"behaviour variable 'speed' has 1 NaN"),
    ],
)
def test_bad_tables_are_one_line(tmp_path, one_line, name, text, message):
    p = tmp_path / name
    if text is not None:
        p.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        read_calcium(ARRAY, options={"behaviour": str(p)})
    one_line(err)
    assert str(p) in str(err.value)


def test_npz_length_mismatch_and_pickle_are_one_line(tmp_path, one_line):
    np.savez(tmp_path / "len.npz", time_s=np.arange(5.0), speed=np.arange(4.0))
    with pytest.raises(InputError, match=r"behaviour variable 'speed' has 4 samples for 5 times") as err:
        read_behaviour_table(tmp_path / "len.npz")
    one_line(err)
    np.savez(tmp_path / "obj.npz", time_s=np.arange(2.0), speed=np.array([1, "a"], dtype=object))
    with pytest.raises(InputError, match=r"array 'speed' holds Python objects"):
        read_behaviour_table(tmp_path / "obj.npz")


def test_nwb_ophys_reads_behaviour_series(tmp_path):
    from pynwb.behavior import BehavioralTimeSeries, Position

    from nwb_data import add_ophys, nwb_file, write_nwb

    data = 100 + np.random.default_rng(0).standard_normal((90, 3))
    nwb = nwb_file("beh")
    add_ophys(nwb, data, rate=30.0, starting_time=2.0)  # the imaging starts 2 s into the session
    beh = nwb.create_processing_module("behavior", "behaviour")
    ts = 2.0 + np.arange(60) / 20.0
    pos = Position(name="Position")
    pos.create_spatial_series(
        name="position", data=np.c_[ts, 2 * ts], timestamps=ts, reference_frame="arena", unit="m"
    )
    beh.add(pos)
    bts = BehavioralTimeSeries(name="BehavioralTimeSeries")
    bts.create_timeseries(
        name="running", data=(ts > 3.5).astype(float), rate=20.0, starting_time=2.0, unit="1"
    )
    beh.add(bts)
    path = write_nwb(nwb, tmp_path / "b.nwb")
    ds = read_calcium(path)
    assert sorted(ds["behaviour_var"].values) == ["position_x", "position_y", "running"]
    np.testing.assert_allclose(ds["behaviour_time"].values, ts - 2.0)  # on the traces' clock
    np.testing.assert_allclose(ds["behaviour"].sel(behaviour_var="position_y").values, 2 * ts)
    assert contracts.check(ds, "calcium_traces", require_provenance=False) == []
    only = read_calcium(path, options={"behaviour_series": ["running"]})
    assert list(only["behaviour_var"].values) == ["running"]
    assert "behaviour" not in read_calcium(path, options={"behaviour_series": False})


def test_written_traces_with_behaviour_are_cf_compliant(tmp_path, provenance):
    pytest.importorskip("compliance_checker")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "cf_check", REPO / "tests" / "common" / "test_cf_compliance.py"
    )
    cf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cf)
    from brainpipe.data import write

    t = np.arange(0, 40, 0.05)
    table = _table(
        tmp_path / "beh.csv", "time_s,running\n" + "\n".join(f"{x:.3f},{float(x > 20)}" for x in t)
    )
    ds = read_calcium(ARRAY, options={"behaviour": str(table)})
    path = write(ds, tmp_path / "traces.nc", "calcium_traces", provenance("ingest_calcium"))
    errors = cf.cf_errors([path])
    assert not errors, cf.format_errors(errors)
    back = __import__("brainpipe.data", fromlist=["read"]).read(path, "calcium_traces")
    np.testing.assert_array_equal(back["behaviour"].values, ds["behaviour"].values)
