"""Data contracts: valid datasets round-trip through write/read; every violation is caught with a clear line."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import xarray as xr

from brainpipe.data import (
    CONTRACT_VERSION,
    CONTRACTS,
    check,
    get_contract,
    provenance_of,
    read,
    sha256_file,
    stamp,
    summarize,
    validate_file,
    write,
)
from brainpipe.data.contracts import TIME_UNITS_ON_DISK, UNIT_FIXES, canonical_units
from brainpipe.data.io import cf_attributes
from brainpipe.data.provenance import REQUIRED_KEYS
from brainpipe.errors import ContractError, InputError

KINDS = sorted(CONTRACTS)


def _files(folder):
    """Everything in ``folder`` (recursively), hidden temp files included."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# -- valid datasets --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_builders_are_valid(kind, make_valid):
    assert check(make_valid(kind), kind) == []
    assert check(make_valid(kind), None) == []  # the kind is read from the attrs
    assert check(make_valid(kind, stamped=False), kind, require_provenance=False) == []


@pytest.mark.parametrize("kind", KINDS)
def test_unstamped_dataset_lacks_common_attrs(kind, make_valid):
    problems = check(make_valid(kind, stamped=False), kind)
    for attr in ("Conventions", "title", "history", "brainpipe_contract_version", "provenance"):
        assert any(f"attribute '{attr}' is missing" in p for p in problems), (attr, problems)


@pytest.mark.parametrize("kind", KINDS)
def test_netcdf_round_trip(kind, make_valid, tmp_path, provenance):
    src = tmp_path / "input.bin"
    src.write_bytes(b"some input bytes\n" * 100)
    ds = make_valid(kind, stamped=False)
    prov = provenance("round-trip", params={"kind": kind, "n": 3}, inputs=[src], seed=7)
    path = write(ds, tmp_path / "sub" / f"{kind}.nc", kind, prov)
    assert path == tmp_path / "sub" / f"{kind}.nc" and path.is_file()

    back = read(path, kind)
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())  # data, coords, variable attrs
    for k, v in ds.attrs.items():
        assert back.attrs[k] == v
    assert back.attrs["brainpipe_contract"] == kind
    assert back.attrs["brainpipe_contract_version"] == get_contract(kind).version
    assert back.attrs["Conventions"] == "CF-1.10"
    assert "stage round-trip" in back.attrs["history"]

    rec = provenance_of(back)
    assert set(REQUIRED_KEYS) <= set(rec)
    assert rec["stage"] == "round-trip"
    assert rec["params"] == {"kind": kind, "n": 3}
    assert rec["seed"] == 7
    assert rec["inputs"] == [{"path": str(src), "sha256": hashlib.sha256(src.read_bytes()).hexdigest()}]


@pytest.mark.parametrize("kind", KINDS)
def test_stamped_netcdf_round_trip_is_identical(kind, make_valid, tmp_path):
    ds = make_valid(kind)
    back = read(write(ds, tmp_path / "x.nc", kind), kind)
    xr.testing.assert_identical(back, ds)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # zarr: no v3 spec for fixed-width strings
@pytest.mark.filterwarnings("ignore:Consolidated metadata")
@pytest.mark.parametrize("kind", ["spike_times", "metrics"])
def test_zarr_round_trip(kind, make_valid, tmp_path):
    ds = make_valid(kind)
    path = write(ds, tmp_path / f"{kind}.zarr", kind)
    assert path.is_dir()
    back = read(path, kind)
    xr.testing.assert_identical(back.load(), ds)
    assert provenance_of(back) == provenance_of(ds)
    # the hash of a store covers every file in it, and changes when it is rewritten with other data
    h1 = sha256_file(path)
    assert h1 == sha256_file(path)
    changed = ds.copy()
    changed["value" if kind == "metrics" else "spike_time"] = (
        changed["value" if kind == "metrics" else "spike_time"] * 0.5
    )
    write(changed, path, kind)
    assert sha256_file(path) != h1
    assert _files(tmp_path) == sorted(p.relative_to(tmp_path).as_posix() for p in path.parent.rglob("*"))
    assert not [f for f in _files(tmp_path) if f.startswith(".")], "a temp store was left behind"


def test_sha256_file_matches_hashlib(tmp_path, rng):
    p = tmp_path / "blob"
    data = rng.bytes(3 * (1 << 20) + 17)  # more than one read chunk
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


def test_stamp_appends_history_and_keeps_title(make_valid, provenance):
    ds = make_valid("metrics", stamped=False).assign_attrs(title="my metrics")
    once = stamp(ds, "metrics", provenance("first"))
    twice = stamp(once, "metrics", provenance("second"))
    lines = twice.attrs["history"].splitlines()
    assert len(lines) == 2 and "stage first" in lines[0] and "stage second" in lines[1]
    assert twice.attrs["title"] == "my metrics"
    assert provenance_of(twice)["stage"] == "second"
    assert "provenance" not in ds.attrs  # stamp does not modify its argument


def test_same_major_version_is_accepted(make_valid):
    ds = make_valid("model_fit").assign_attrs(brainpipe_contract_version="1.7")
    assert check(ds) == []


# -- CF-1.10 attributes and encodings (the checker itself runs in test_cf_compliance.py) ---------------------
def test_cf_attributes_sets_long_names_units_and_time_axis(make_valid):
    ds = make_valid("calcium_traces", stamped=False)
    ds["dff"].attrs["long_name"] = "dF/F of my own"
    out = cf_attributes(ds, "calcium_traces")
    for name, var in out.variables.items():
        assert str(var.attrs.get("long_name", "")).strip(), name
    assert out["fluorescence"].attrs["units"] == "1"
    assert (
        out["fluorescence"].attrs["long_name"] == "raw fluorescence (arbitrary units)"
    )  # the contract's text
    assert out["dff"].attrs["long_name"] == "dF/F of my own"  # a writer's long_name is kept
    assert out["cell"].attrs["long_name"] == "cell (ROI) identifier"
    assert {k: out["time"].attrs[k] for k in ("units", "standard_name", "axis")} == {
        "units": "s",
        "standard_name": "time",
        "axis": "T",
    }
    assert out["time"].encoding["_FillValue"] is None and out["cell"].encoding["_FillValue"] is None
    assert "_FillValue" not in out["fluorescence"].encoding  # data variables keep xarray's default
    xr.testing.assert_identical(cf_attributes(out, "calcium_traces"), out)  # idempotent
    # the argument is not modified
    assert ds["fluorescence"].attrs == {"units": "a.u."} and "long_name" not in ds["time"].attrs
    assert "_FillValue" not in ds["time"].encoding


def test_cf_attributes_unit_fixes_and_fallback_long_name(make_valid):
    ds = make_valid("model_fit", stamped=False)
    ds["log_rate"] = (
        "unit_post",
        np.array([0.1, 0.2]),
        {"units": "log(Hz)", "long_name": "log baseline rate"},
    )
    ds["speed"] = ("unit_post", np.array([1.0, 2.0]), {"units": "mixed"})
    out = cf_attributes(ds, "model_fit")
    assert out["log_rate"].attrs["units"] == "1"
    assert out["log_rate"].attrs["long_name"] == "log baseline rate (natural log of a rate in Hz)"
    assert (
        "units" not in out["speed"].attrs
        and out["speed"].attrs["long_name"] == "speed (units differ by column)"
    )
    assert out["coupling"].attrs["long_name"] == "coupling"  # not in the contract: its name in words
    assert out["unit_post"].attrs["long_name"] == "unit post"
    for bad, (good, _) in UNIT_FIXES.items():
        assert canonical_units(bad) == good
    assert canonical_units("Hz") == "Hz" and canonical_units(None) is None


def test_cf_attributes_cast_flag_values_to_the_variable_dtype(make_valid):
    ds = make_valid("spike_counts", stamped=False)
    ds["split"].attrs.update(flag_values=[0, 1, 2], flag_meanings="train validation test")
    out = cf_attributes(ds, "spike_counts")
    assert out["split"].attrs["flag_values"].dtype == np.int8 and out["split"].attrs[
        "flag_values"
    ].tolist() == [0, 1, 2]
    ds["trial"].attrs["flag_values"] = [0.5, 1.0]  # not representable in int32: left as it is
    assert cf_attributes(ds, "spike_counts")["trial"].attrs["flag_values"] == [0.5, 1.0]


def test_netcdf_on_disk_is_cf_and_reads_back_as_written(make_valid, tmp_path, provenance):
    import h5py

    ds = make_valid("spike_counts", stamped=False)
    ds["split"].attrs.update(flag_values=[0, 1, 2], flag_meanings="train validation test")
    path = write(ds, tmp_path / "counts.nc", "spike_counts", provenance("cf"))
    with h5py.File(path, "r") as fh:
        time, unit, split = fh["time"], fh["unit"], fh["split"]
        assert time.attrs["units"] == TIME_UNITS_ON_DISK
        assert time.attrs["standard_name"] == "time" and time.attrs["axis"] == "T"
        assert "_FillValue" not in time.attrs and "_FillValue" not in unit.attrs
        assert unit.dtype == np.dtype("S1") and unit.ndim == 2  # labels as a CF character array
        assert split.attrs["flag_values"].dtype == np.int8
        assert "_FillValue" in fh["behaviour"].attrs  # data variables keep their fill value
    back = read(path, "spike_counts")
    assert back["time"].dtype == np.float64 and back["time"].attrs["units"] == "s"
    np.testing.assert_array_equal(back["time"].values, ds["time"].values)
    assert back["unit"].values.tolist() == ["u0", "u1", "u2"]
    assert back.sel(unit="u1")["counts"].values.tolist() == ds.sel(unit="u1")["counts"].values.tolist()
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())
    # plain xarray sees a CF time axis (seconds after the placeholder epoch)
    with xr.open_dataset(path, engine="h5netcdf") as plain:
        assert plain["time"].dtype.kind == "M"


def test_empty_and_unicode_labels_round_trip(make_valid, tmp_path):
    ds = make_valid("metrics").isel(metric=slice(0, 0))
    back = read(write(ds, tmp_path / "empty.nc", "metrics"), "metrics")
    assert back.sizes["metric"] == 0 and back["metric"].dtype.kind in "UO"
    ds = make_valid("metrics").assign_coords(metric=["corrélation", "mae", "x"])
    back = read(write(ds, tmp_path / "unicode.nc", "metrics"), "metrics")
    assert back["metric"].values.tolist() == ["corrélation", "mae", "x"]


def test_files_of_contract_1_0_still_read(make_valid, tmp_path):
    """Files written before the CF encoding (units 'a.u.', time in plain 's', string coordinate variables)."""
    ds = make_valid("calcium_traces").assign_attrs(brainpipe_contract_version="1.0")
    assert ds["fluorescence"].attrs["units"] == "1"  # stamp set the CF unit
    ds["fluorescence"].attrs.update(units="a.u.", long_name="raw fluorescence")
    ds = ds.assign_coords(cell=[f"c{i}" for i in range(ds.sizes["cell"])])
    path = tmp_path / "old.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    back = read(path, "calcium_traces")
    assert back["fluorescence"].attrs["units"] == "a.u." and back["time"].attrs["units"] == "s"
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())


# -- violations ------------------------------------------------------------------------------------------------
def _set(name, values):
    def f(ds):
        return ds.assign({name: (ds[name].dims, values(ds[name].values), ds[name].attrs)})

    return f


def _coord(name, values, attrs=None):
    def f(ds):
        c = ds[name]
        return ds.assign_coords({name: (c.dims, values(c.values), c.attrs if attrs is None else attrs)})

    return f


def _attrs(**kw):
    def f(ds):
        out = ds.copy()
        for k, v in kw.items():
            if v is None:
                del out.attrs[k]
            else:
                out.attrs[k] = v
        return out

    return f


def _nan_at(v):
    v = v.astype(np.float64).copy()
    v.flat[3] = np.nan
    return v


def _swap(v):
    v = v.copy()
    v[[1, 4]] = v[[4, 1]]
    return v


# (id, kind, mutation, substrings every matching problem line must contain)
VIOLATIONS = [
    (
        "missing-variable",
        "roi_timeseries",
        lambda ds: ds.drop_vars("signal"),
        ["variable 'signal' is missing", "rule"],
    ),
    (
        "missing-coordinate",
        "spike_counts",
        lambda ds: ds.drop_vars("unit"),
        ["coordinate 'unit' is missing", "rule"],
    ),
    (
        "wrong-dims",
        "roi_timeseries",
        lambda ds: ds.assign(signal=ds["signal"].transpose("roi", "time")),
        ["variable 'signal'", "dims ('roi', 'time')", "expected ('time', 'roi')"],
    ),
    (
        "float32-time",
        "roi_timeseries",
        _coord("time", lambda v: v.astype(np.float32)),
        ["coordinate 'time'", "dtype float32", "expected float64"],
    ),
    (
        "float-counts",
        "spike_counts",
        _set("counts", lambda v: v.astype(np.float64)),
        ["variable 'counts'", "dtype float64", "expected integer"],
    ),
    (
        "string-signal",
        "roi_timeseries",
        _set("signal", lambda v: v.astype(str)),
        ["variable 'signal'", "expected float"],
    ),
    (
        "time-units",
        "calcium_traces",
        _coord("time", lambda v: v * 1000, {"units": "ms"}),
        ["coordinate 'time'", "units 'ms'", "expected 's'"],
    ),
    (
        "spike-time-units-missing",
        "spike_times",
        lambda ds: ds.assign(spike_time=ds["spike_time"].drop_attrs()),
        ["variable 'spike_time'", "units None", "expected 's'"],
    ),
    (
        "time-not-increasing",
        "roi_timeseries",
        _coord("time", _swap),
        ["coordinate 'time'", "not strictly increasing", "rule"],
    ),
    ("time-nan", "calcium_traces", _coord("time", _nan_at), ["coordinate 'time'", "non-finite", "rule"]),
    ("signal-nan", "roi_timeseries", _set("signal", _nan_at), ["variable 'signal'", "NaN", "rule"]),
    (
        "fluorescence-inf",
        "calcium_traces",
        _set("fluorescence", lambda v: np.where(v > 100, np.inf, v)),
        ["variable 'fluorescence'", "infinite"],
    ),
    ("behaviour-nan", "spike_counts", _set("behaviour", _nan_at), ["variable 'behaviour'", "NaN"]),
    (
        "negative-counts",
        "spike_counts",
        _set("counts", lambda v: v.astype(np.int16) - (np.arange(v.size).reshape(v.shape) == 5)),
        ["variable 'counts'", "negative", "rule: counts are >= 0"],
    ),
    (
        "bad-split-flag",
        "spike_counts",
        _set("split", lambda v: np.where(np.arange(v.size) == 7, 3, v).astype(np.int8)),
        ["variable 'split'", "[3]", "rule: 0 train, 1 validation, 2 test"],
    ),
    (
        "bin-width-mismatch",
        "spike_counts",
        _attrs(bin_width_s=0.2),
        ["coordinate 'time'", "'bin_width_s' = 0.2", "rule: regular bins"],
    ),
    (
        "bin-width-not-number",
        "spike_counts",
        _attrs(bin_width_s="wide"),
        ["attribute 'bin_width_s'", "positive"],
    ),
    (
        "tr-negative",
        "roi_timeseries",
        _attrs(repetition_time_s=-2.0),
        ["attribute 'repetition_time_s'", "positive"],
    ),
    (
        "frame-rate-not-number",
        "calcium_traces",
        _attrs(frame_rate_hz="fast"),
        ["attribute 'frame_rate_hz'", "positive"],
    ),
    (
        "missing-attribute",
        "roi_timeseries",
        _attrs(repetition_time_s=None),
        ["attribute 'repetition_time_s' is missing", "rule"],
    ),
    (
        "spike-unit-out-of-range",
        "spike_times",
        _set("spike_unit", lambda v: np.where(np.arange(v.size) == 2, 3, v).astype(v.dtype)),
        ["variable 'spike_unit'", "outside [0, 3)", "rule"],
    ),
    (
        "spike-unit-negative",
        "spike_times",
        _set("spike_unit", lambda v: np.where(np.arange(v.size) == 0, -1, v).astype(v.dtype)),
        ["variable 'spike_unit'", "outside [0, 3)"],
    ),
    (
        "spikes-unsorted",
        "spike_times",
        _set("spike_time", _swap),
        ["variable 'spike_time'", "not sorted", "rule"],
    ),
    (
        "spikes-after-window",
        "spike_times",
        _attrs(t_stop_s=1.5),
        ["variable 'spike_time'", "outside the window [t_start_s, t_stop_s] = [0.0, 1.5]"],
    ),
    (
        "spikes-before-window",
        "spike_times",
        _attrs(t_start_s=0.07),
        ["variable 'spike_time'", "outside the window"],
    ),
    (
        "empty-window",
        "spike_times",
        _attrs(t_start_s=2.0),
        ["attribute 't_stop_s'", "greater than 't_start_s'"],
    ),
    ("window-not-number", "spike_times", _attrs(t_stop_s="end"), ["'t_stop_s'", "numbers of seconds"]),
    (
        "trial-stops-before-start",
        "spike_times",
        _set("trial_stop", lambda v: v - 0.9),
        ["'trial_start'/'trial_stop'", "stop after it starts"],
    ),
    (
        "duplicate-units",
        "spike_times",
        _coord("unit", lambda v: np.array(["a", "b", "a"])),
        ["coordinate 'unit'", "duplicate labels", "rule"],
    ),
    (
        "duplicate-rois",
        "roi_timeseries",
        _coord("roi", lambda v: np.array(["V1", "V1", "PFC"])),
        ["coordinate 'roi'", "duplicate"],
    ),
    (
        "missing-provenance",
        "model_fit",
        _attrs(provenance=None),
        ["attribute 'provenance' is missing", "rule: every brainpipe file has"],
    ),
    (
        "provenance-not-json",
        "metrics",
        _attrs(provenance="{not json"),
        ["attribute 'provenance'", "not valid JSON"],
    ),
    (
        "provenance-not-object",
        "metrics",
        _attrs(provenance="[1, 2]"),
        ["attribute 'provenance'", "JSON object"],
    ),
    (
        "provenance-lacks-keys",
        "metrics",
        _attrs(provenance=json.dumps({"stage": "x", "version": "0"})),
        ["attribute 'provenance'", "lacks key(s) params, inputs, seed, device, created"],
    ),
    (
        "major-version",
        "spike_counts",
        _attrs(brainpipe_contract_version="2.0"),
        ["brainpipe_contract_version", "2.0", "incompatible", "rule: same major version"],
    ),
    (
        "stated-kind-differs",
        "model_fit",
        _attrs(brainpipe_contract="metrics"),
        ["attribute 'brainpipe_contract' = 'metrics'", "expected 'model_fit'"],
    ),
    (
        "bad-bar-op",
        "metrics",
        _set("bar_op", lambda v: np.array(["=>", "<=", ""])),
        ["variable 'bar_op'", "['=>']", "rule: one of >=, <=, >, < or empty"],
    ),
    (
        "bad-passed",
        "metrics",
        _set("passed", lambda v: np.array([1, 2, -1], dtype=np.int8)),
        ["variable 'passed'", "[2]", "rule: 1 pass, 0 miss, -1 no bar"],
    ),
    (
        "duplicate-metrics",
        "metrics",
        _coord("metric", lambda v: np.array(["a", "a", "b"])),
        ["coordinate 'metric'", "duplicate"],
    ),
    ("bad-role", "model_fit", _attrs(role="guess"), ["attribute 'role' = 'guess'", "rule: 'fit' or 'truth'"]),
    ("missing-role", "model_fit", _attrs(role=None), ["attribute 'role' is missing"]),
    (
        "model-fit-empty",
        "model_fit",
        lambda ds: ds.drop_vars("coupling"),
        ["has 0 data variables", "rule: model_fit has at least 1"],
    ),
]


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS]
)
def test_violation_is_caught(kind, mutate, expected, make_valid):
    ds = mutate(make_valid(kind))
    problems = check(ds, kind)
    assert len(problems) == 1, problems
    for s in expected:
        assert s in problems[0], (s, problems[0])
    assert "\n" not in problems[0]


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS]
)
def test_write_refuses_violation_and_leaves_nothing(kind, mutate, expected, make_valid, tmp_path):
    ds = mutate(make_valid(kind))
    path = tmp_path / "out" / "bad.nc"
    with pytest.raises(ContractError) as info:
        write(ds, path, kind)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    assert expected[0] in msg
    assert info.value.path == str(path) and len(info.value.problems) == 1
    assert _files(tmp_path) in ([], ["out"]) and not path.exists()


def test_contract_error_with_several_problems_is_one_line(make_valid, tmp_path):
    ds = make_valid("roi_timeseries")
    ds = _coord("roi", lambda v: np.array(["V1", "V1", "PFC"]))(_set("signal", _nan_at)(ds))
    path = tmp_path / "two.nc"
    with pytest.raises(ContractError) as info:
        write(ds, path, "roi_timeseries")
    assert len(info.value.problems) == 2
    msg = str(info.value)
    assert "\n" not in msg
    assert "coordinate 'roi' has duplicate labels" in msg  # the first problem is the one shown
    assert any("variable 'signal' has NaN" in p for p in info.value.problems)
    assert "(and 1 more problem(s)" in msg and f"brainpipe validate {path}" in msg
    assert _files(tmp_path) == []


def test_unknown_contract_name(make_valid):
    ds = make_valid("metrics")
    problems = check(ds, "no_such_kind")
    assert len(problems) == 1
    assert "'no_such_kind' is not a known contract" in problems[0]
    assert all(k in problems[0] for k in CONTRACTS)
    problems = check(ds.assign_attrs(brainpipe_contract="no_such_kind"))
    assert len(problems) == 1 and "'no_such_kind' is not a known contract" in problems[0]
    with pytest.raises(KeyError, match="unknown contract kind 'no_such_kind'"):
        get_contract("no_such_kind")


def test_check_without_kind_needs_the_contract_attr(make_valid):
    problems = check(make_valid("metrics", stamped=False))
    assert problems == [
        "attribute 'brainpipe_contract' is missing (rule: every brainpipe file names its contract)"
    ]


def test_write_unknown_kind_raises_contract_error(make_valid, tmp_path):
    with pytest.raises(ContractError, match="not a known contract"):
        write(make_valid("metrics"), tmp_path / "m.nc", "no_such_kind")
    assert _files(tmp_path) == []


def test_failed_write_leaves_no_temp_file_and_keeps_old_file(make_valid, tmp_path):
    path = tmp_path / "m.nc"
    good = make_valid("metrics")
    write(good, path, "metrics")
    before = path.read_bytes()
    unserialisable = good.assign_attrs(extra={"a": 1})  # valid contract, but netCDF cannot store a dict attr
    with pytest.raises(TypeError):
        write(unserialisable, path, "metrics")
    assert _files(tmp_path) == ["m.nc"]
    assert path.read_bytes() == before
    xr.testing.assert_identical(read(path), good)


def test_write_replaces_existing_file(make_valid, tmp_path):
    path = tmp_path / "m.nc"
    write(make_valid("metrics"), path, "metrics")
    new = make_valid("metrics")
    new["value"] = new["value"] + 1.0
    write(new, path, "metrics")
    xr.testing.assert_identical(read(path, "metrics"), new)
    assert _files(tmp_path) == ["m.nc"]


# -- reading bad files -----------------------------------------------------------------------------------------
def test_read_rejects_file_violating_its_contract(make_valid, tmp_path):
    ds = make_valid("spike_counts")
    ds = ds.assign(counts=ds["counts"].astype(np.float64))
    path = tmp_path / "counts.nc"
    ds.to_netcdf(path, engine="h5netcdf")  # bypasses brainpipe's check
    with pytest.raises(ContractError) as info:
        read(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "variable 'counts'" in msg and "\n" not in msg
    assert info.value.path == str(path)


def test_read_with_other_kind_is_rejected(make_valid, tmp_path):
    path = write(make_valid("model_fit"), tmp_path / "fit.nc", "model_fit")
    assert read(path, "model_fit").attrs["role"] == "fit"
    with pytest.raises(ContractError) as info:
        read(path, "metrics")
    assert str(path) in str(info.value)
    assert "attribute 'brainpipe_contract' = 'model_fit', expected 'metrics'" in info.value.problems


def test_read_missing_path(tmp_path):
    path = tmp_path / "nope" / "missing.nc"
    with pytest.raises(InputError) as info:
        read(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and "does not exist" in msg


@pytest.mark.parametrize("content", [b"unit,time\na,0.1\n", b""], ids=["text", "empty"])
def test_read_non_netcdf_file(tmp_path, content):
    path = tmp_path / "x.nc"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and "cannot be opened" in msg


def test_validate_file(make_valid, tmp_path):
    good = write(make_valid("roi_timeseries"), tmp_path / "good.nc", "roi_timeseries")
    assert validate_file(good) == []
    assert validate_file(good, "roi_timeseries") == []

    ds = make_valid("roi_timeseries")
    ds = _coord("roi", lambda v: np.array(["V1", "V1", "PFC"]))(_set("signal", _nan_at)(ds))
    bad = tmp_path / "bad.nc"
    ds.to_netcdf(bad, engine="h5netcdf")
    lines = validate_file(bad)
    assert len(lines) == 2
    assert all(line.startswith(f"{bad}: ") and "\n" not in line for line in lines)
    assert any("variable 'signal'" in line for line in lines)
    assert any("coordinate 'roi'" in line for line in lines)

    missing = validate_file(tmp_path / "missing.nc")
    assert len(missing) == 1 and str(tmp_path / "missing.nc") in missing[0] and "does not exist" in missing[0]


def test_summarize(make_valid, provenance, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("x")
    ds = stamp(
        make_valid("spike_counts", stamped=False),
        "spike_counts",
        provenance("binning", params={"bw": 0.1}, inputs=[src], seed=5),
    )
    text = summarize(ds)
    assert f"contract: spike_counts v{CONTRACT_VERSION}" in text
    assert "dims:" in text and "time=30" in text and "unit=3" in text
    assert "variables:" in text
    assert "counts ('time', 'unit') uint8 [1]" in text
    assert "time ('time',) float64 [s] range 0.05..2.95" in text
    assert "provenance:" in text and "stage: binning" in text and "seed: 5" in text
    assert "params: {'bw': 0.1}" in text
    assert f"input: {src} sha256={sha256_file(src)[:16]}" in text
    broken = summarize(ds.assign_attrs(provenance="{oops"))
    assert "provenance: unreadable" in broken
