"""User data formats (issue 14): ROI-table folders with BIDS sidecars (per-run TR), a README and participants.tsv;
cohorts of two TRs cleaned and resampled to one; binned spike counts (npz, CSV, NWB) straight into spike_counts,
and the Poisson GLM on them. Small real data: the nitime ROI table (resources/fmri/nitime) and the nelpy linear-track
spikes (resources/spikes/nwb)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from brainpipe.data import read as read_nc
from brainpipe.errors import ConfigError, InputError
from brainpipe.io import detect, iter_runs, read
from brainpipe.io.binned import binned_datasets, finish_counts, rebin
from brainpipe.preprocess.fmri import assemble_cohort, clean_run, common_tr, resample_run

REPO = Path(__file__).resolve().parents[2]
NITIME = REPO / "resources" / "fmri" / "nitime" / "fmri_timeseries.csv"
NELPY = REPO / "resources" / "spikes" / "nelpy-linear-track"
CONF = {"confound_columns": ["WM", "Vent"], "drop_columns": ["Brain"]}


# -- ROI-table folders ------------------------------------------------------------------------------------------------
def _two_sites(root: Path) -> Path:
    """Three subjects of the real nitime table: site A at its TR 1.89 s (two halves), site B every other volume
    (TR 3.78 s); each table with its BIDS sidecar, a README.txt and participants.tsv beside them."""
    df = pd.read_csv(NITIME)
    d = root / "tables"
    d.mkdir()
    parts = {"01": (df.iloc[:125], 1.89), "02": (df.iloc[125:], 1.89), "03": (df.iloc[::2], 3.78)}
    for sub, (part, tr) in parts.items():
        part.to_csv(d / f"sub-{sub}_task-rest_timeseries.tsv", sep="\t", index=False)
        (d / f"sub-{sub}_task-rest_timeseries.json").write_text(json.dumps({"RepetitionTime": tr}))
    (d / "README.txt").write_text("ROI time series of two sites.\nSite B scans every 3.78 s.\n")
    (d / "participants.tsv").write_text(
        "participant_id\tsite\tage\nsub-01\tA\t30\nsub-02\tA\t41\nsub-03\tB\t25\n"
    )
    return d


def test_table_folder_reads_sidecars_skips_readme_finds_participants(tmp_path):
    d = _two_sites(tmp_path)
    assert detect(d, "fmri") == "table"
    runs = list(iter_runs(d, **CONF))
    assert [r.attrs["subject"] for r in runs] == [
        "01",
        "02",
        "03",
    ]  # README.txt and participants.tsv: not data
    assert [r.attrs["repetition_time_s"] for r in runs] == [1.89, 1.89, 3.78]
    assert [json.loads(r.attrs["participant"])["site"] for r in runs] == ["A", "A", "B"]
    assert runs[2]["time"].values[1] == pytest.approx(3.78)
    # a config TR that agrees with the sidecars is fine; one for tables without sidecars still works
    assert len(list(iter_runs(d / "sub-01_task-rest_timeseries.tsv", repetition_time_s=1.89, **CONF))) == 1
    (d / "sub-01_task-rest_timeseries.json").unlink()
    assert (
        next(iter(iter_runs(d, repetition_time_s=1.5, repetition_time_from="sidecar", **CONF))).attrs[
            "repetition_time_s"
        ]
        == 1.5
    )


def test_sidecar_that_disagrees_with_the_config(tmp_path):
    d = _two_sites(tmp_path)
    side = d / "sub-01_task-rest_timeseries.json"
    with pytest.raises(InputError) as err:
        list(iter_runs(d, repetition_time_s=2.0, **CONF))
    msg = str(err.value)
    assert msg.startswith(f"{side}: sidecar RepetitionTime 1.89 s disagrees with repetition_time_s 2 s")
    assert "repetition_time_from" in msg and "\n" not in msg
    trusted = list(iter_runs(d, repetition_time_s=2.0, repetition_time_from="config", **CONF))
    assert {r.attrs["repetition_time_s"] for r in trusted} == {2.0}
    by_sidecar = list(iter_runs(d, repetition_time_s=2.0, repetition_time_from="sidecar", **CONF))
    assert [r.attrs["repetition_time_s"] for r in by_sidecar] == [1.89, 1.89, 3.78]


def test_table_without_any_tr(tmp_path):
    d = _two_sites(tmp_path)
    (d / "sub-02_task-rest_timeseries.json").unlink()
    with pytest.raises(
        InputError, match=r"sub-02_task-rest_timeseries\.tsv: repetition time \(TR\) is missing"
    ):
        list(iter_runs(d, **CONF))


def test_text_file_in_a_table_folder_stops_before_any_output(tmp_path):
    from brainpipe.stages import ingest_fmri

    d = _two_sites(tmp_path)
    stray = d / "scan_protocol.txt"
    stray.write_text("Site B used a multiband sequence.\n")
    with pytest.raises(InputError) as err:
        list(iter_runs(d, **CONF))
    assert str(err.value).startswith(f"{stray}: is in the data folder but is not an ROI table")
    assert "move it out of the folder" in str(err.value)
    out = tmp_path / "roi"
    with pytest.raises(InputError, match="scan_protocol.txt"):
        ingest_fmri.run({"source": str(d)}, {"roi": str(out)}, {"path": str(d), "format": "table", **CONF})
    assert not out.exists()


def test_config_check_needs_no_tr_for_tables_with_sidecars(tmp_path):
    from brainpipe.config import load_schema, validate_config

    d = _two_sites(tmp_path)
    entry = {"path": str(d), "format": "table", **CONF}
    schema = load_schema()
    cfg = validate_config({"fmri": {"datasets": {"sites": entry}}}, schema, source="t.yaml")
    assert cfg["fmri"]["clean"]["common_tr_s"] is None
    (d / "sub-03_task-rest_timeseries.json").unlink()
    with pytest.raises(ConfigError, match=r"key 'fmri\.datasets\.sites\.repetition_time_s' is needed"):
        validate_config({"fmri": {"datasets": {"sites": entry}}}, schema, source="t.yaml")


# -- two TRs in one cohort --------------------------------------------------------------------------------------------
def test_resample_run_is_anti_aliased_and_respects_gaps():
    tr, n = 1.0, 200
    t = np.arange(n) * tr
    slow = np.sin(2 * np.pi * 0.02 * t)  # kept at TR 2 s (Nyquist 0.25 Hz)
    fast = 0.5 * np.sin(2 * np.pi * 0.4 * t)  # above the new Nyquist: must be filtered out, not aliased
    keep = np.ones(n, bool)
    keep[100:104] = False  # a scrubbed gap
    ds = xr.Dataset(
        {"signal": (("time", "roi"), np.column_stack([slow + fast, slow])[keep])},
        coords={"time": t[keep], "roi": ["a", "b"]},
        attrs={"repetition_time_s": tr, "source": "run"},
    )
    out = resample_run(ds, 2.0)
    new_t = out["time"].values
    assert out.attrs["repetition_time_s"] == 2.0 and out.attrs["acquisition_repetition_time_s"] == 1.0
    assert not np.any((new_t > 99) & (new_t < 104))  # nothing invented inside the gap
    expect = np.sin(2 * np.pi * 0.02 * new_t)
    inner = (new_t > 10) & (new_t < 90)
    assert np.max(np.abs(out["signal"].values[inner, 0] - expect[inner])) < 0.05  # the 0.4 Hz part is gone
    assert np.max(np.abs(out["signal"].values[inner, 1] - expect[inner])) < 0.02
    assert resample_run(ds.isel(time=slice(0, 50)), 1.0) is not None  # same TR: unchanged
    assert (
        common_tr([1.89, 1.89]) is None and common_tr([1.89, 3.78]) == 3.78 and common_tr([2.0], 1.0) == 1.0
    )


def test_resampled_real_run_matches_the_real_decimated_run():
    """nitime volumes 0..249 resampled from 1.89 s to 3.78 s vs the same acquisition's every other volume."""
    df = pd.read_csv(NITIME).drop(columns=["WM", "Vent", "Brain"])
    ds = xr.Dataset(
        {"signal": (("time", "roi"), df.to_numpy(np.float64))},
        coords={"time": np.arange(len(df)) * 1.89, "roi": list(df.columns)},
        attrs={"repetition_time_s": 1.89},
    )
    out = resample_run(ds, 3.78).isel(time=slice(5, -5))  # away from the edges
    decimated = df.to_numpy()[::2][5 : 5 + out.sizes["time"]]
    r = [np.corrcoef(out["signal"].values[:, k], decimated[:, k])[0, 1] for k in range(df.shape[1])]
    assert np.median(r) > 0.8, np.median(r)


def test_clean_stage_on_two_sites(tmp_path):
    from brainpipe.stages import clean_fmri, ingest_fmri

    d = _two_sites(tmp_path)
    roi, clean = tmp_path / "roi", tmp_path / "clean.nc"
    ingest_fmri.run({"source": str(d)}, {"roi": str(roi)}, {"path": str(d), "format": "auto", **CONF})
    assert sorted(read_nc(f, "roi_timeseries").attrs["repetition_time_s"] for f in roi.glob("*.nc")) == [
        1.89,
        1.89,
        3.78,
    ]
    clean_fmri.run({"roi": str(roi)}, {"clean": str(clean)}, {"n_folds": 3, "segment_s": 15.0})
    coh = read_nc(clean, "roi_segments")
    assert coh.attrs["repetition_time_s"] == 3.78 and coh.sizes["lag"] == 4  # round(15 / 3.78)
    assert list(coh["subject_repetition_time"].values) == [1.89, 1.89, 3.78]
    assert coh["subject_repetition_time"].attrs["units"] == "s"
    assert np.isfinite(coh["signal"].values).all()
    # one TR asked for: every run resampled to it
    clean_fmri.run({"roi": str(roi)}, {"clean": str(clean)}, {"n_folds": 3, "common_tr_s": 1.89})
    assert read_nc(clean, "roi_segments").sizes["lag"] == 8  # round(15 / 1.89)


def test_assemble_refuses_mixed_trs_without_resampling(tmp_path):
    runs = [clean_run(r) for r in iter_runs(_two_sites(tmp_path), **CONF)]
    with pytest.raises(InputError, match="resample the runs to one TR first"):
        assemble_cohort(runs, 15.0, n_folds=3)


# -- binned counts ----------------------------------------------------------------------------------------------------
def _nelpy_counts(bin_width_s: float = 0.025):
    """The real nelpy CA1 spikes and position (MatClust) binned by hand: (counts, position, bin centres, units)."""
    spikes = read(NELPY / "spikes.mat", "spikes", position=NELPY / "trajectory.videoPositionTracking")
    t0 = float(spikes.attrs["t_start_s"])
    n = int((float(spikes.attrs["t_stop_s"]) - t0) // bin_width_s)
    b = ((spikes["spike_time"].values - t0) // bin_width_s).astype(int)
    ok = b < n
    counts = np.zeros((n, spikes.sizes["unit"]), dtype=np.int64)
    np.add.at(counts, (b[ok], spikes["spike_unit"].values[ok]), 1)
    centres = t0 + (np.arange(n) + 0.5) * bin_width_s
    beh_t, beh = spikes["behaviour_time"].values, spikes["behaviour"].values
    pos = np.column_stack([np.interp(centres, beh_t, beh[:, k]) for k in range(beh.shape[1])])
    return counts, pos, centres, [str(u) for u in spikes["unit"].values]


def test_binned_npz_with_behaviour_and_rebinning(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.5, (600, 5))
    p = tmp_path / "session.npz"
    vel, target = rng.standard_normal((600, 2)), np.repeat(np.arange(6), 100).astype(float)
    trial = np.repeat(np.arange(6), 100)
    np.savez(p, counts=counts, bin_width_s=0.01, hand_vel=vel, target=target, trial=trial, subject="monkey-J")
    assert detect(p, "spikes") == "binned"
    ds = read(p, "spikes")
    assert ds.attrs["bin_width_s"] == 0.01 and ds.attrs["subject"] == "monkey-J"
    assert list(ds["behaviour_var"].values) == ["hand_vel_x", "hand_vel_y", "target"]
    assert (ds["counts"].values == counts).all() and ds["time"].values[0] == pytest.approx(0.005)
    same = finish_counts(ds, 0.01, n_blocks=2)
    assert (same["counts"].values == counts).all() and same.attrs["split_rule"] == "time blocks"
    wide = finish_counts(ds, 0.05, n_blocks=2)  # 5 whole bins summed, within each trial
    assert wide.attrs["bin_width_s"] == pytest.approx(0.05) and wide.sizes["time"] == 120
    assert (wide["counts"].values == counts.reshape(120, 5, 5).sum(axis=1)).all()
    assert np.allclose(wide["behaviour"].values[:, 0], vel[:, 0].reshape(120, 5).mean(axis=1))
    assert (wide["trial"].values == np.repeat(np.arange(6), 20)).all()
    with pytest.raises(
        ConfigError, match=r"binned at 0\.01 s and bin_width_s = 0\.015 s is not a whole multiple"
    ):
        finish_counts(ds, 0.015)
    with pytest.raises(ConfigError, match="never split"):
        finish_counts(ds, 0.005)
    # a partial last group of a stretch is dropped, never mixed with the next stretch: 100 + 3 bins -> 50 + 1
    part = rebin(ds.isel(time=slice(0, 103)), 2)
    assert part.sizes["time"] == 51 and list(part["trial"].values[-2:]) == [0, 1]
    assert (part["counts"].values[-1] == counts[100:102].sum(axis=0)).all()


def test_binned_without_a_bin_width_and_with_a_disagreeing_one(tmp_path):
    p = tmp_path / "nowidth.npz"
    np.savez(p, counts=np.ones((50, 3), dtype=np.uint8))
    with pytest.raises(InputError) as err:
        read(p, "spikes")
    assert str(err.value).startswith(f"{p}: binned counts without a bin width")
    assert "bin_width_s" in str(err.value) and "\n" not in str(err.value)
    assert read(p, "spikes", bin_width_s=0.02).attrs["bin_width_s"] == 0.02  # the option gives it
    q = tmp_path / "width.npz"
    np.savez(q, counts=np.ones((50, 3), dtype=np.uint8), bin_width_s=0.01)
    with pytest.raises(
        InputError, match=r"bin width 0\.01 s \(array 'bin_width_s'\) disagrees with the option"
    ):
        read(q, "spikes", bin_width_s=0.02)


def test_binned_csv_with_sidecar_behaviour_and_trials(tmp_path):
    rng = np.random.default_rng(1)
    n = 90
    df = pd.DataFrame({f"unit{k}": rng.poisson(1.0, n) for k in range(4)})
    df["hand_x"], df["target"] = rng.standard_normal(n), rng.integers(0, 4, n)
    df["trial"] = np.repeat([1, 2, 3], 30)
    p = tmp_path / "counts.csv"
    df.to_csv(p, index=False)
    (tmp_path / "counts.json").write_text(json.dumps({"bin_width_s": 0.02}))
    ds = read(p, "spikes", format="binned", behaviour_keys=["hand_x", "target"])
    assert list(ds["unit"].values) == ["unit0", "unit1", "unit2", "unit3"]
    assert ds.attrs["bin_width_s"] == 0.02 and list(ds["trial"].values[[0, 30, 89]]) == [0, 1, 2]
    with pytest.raises(InputError, match=r"column\(s\) hand_x do not hold whole-number counts"):
        read(p, "spikes", format="binned", behaviour_keys=["target"])
    (tmp_path / "counts.json").unlink()
    with pytest.raises(InputError, match="binned counts without a bin width"):
        read(p, "spikes", format="binned", behaviour_keys=["hand_x", "target"])
    # without format, a CSV is a spike table: its message says how to read binned counts
    with pytest.raises(InputError, match="set format: binned"):
        read(p, "spikes")


def test_binned_nwb_timeseries_of_counts(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile, TimeSeries

    rng = np.random.default_rng(2)
    nwb = NWBFile("binned counts", "binned-1", datetime(2020, 1, 1, tzinfo=timezone.utc))
    nwb.add_acquisition(TimeSeries(name="counts", data=rng.poisson(1.0, (200, 3)), unit="spikes", rate=50.0))
    beh = nwb.create_processing_module("behavior", "hand")
    beh.add(TimeSeries(name="hand_vel", data=rng.standard_normal((200, 2)), unit="m/s", rate=50.0))
    nwb.add_trial(start_time=0.0, stop_time=2.0)
    nwb.add_trial(start_time=2.0, stop_time=4.0)
    p = tmp_path / "binned.nwb"
    with NWBHDF5IO(str(p), "w") as io:
        io.write(nwb)
    assert pynwb is not None
    ds = read(p, "spikes", format="binned")
    assert ds.attrs["bin_width_s"] == pytest.approx(0.02) and ds.sizes["unit"] == 3
    assert list(ds["behaviour_var"].values) == ["hand_vel_x", "hand_vel_y"]
    assert list(ds["trial"].values[[0, 99, 100, 199]]) == [0, 0, 1, 1]
    with pytest.raises(InputError, match=r"rate of TimeSeries 'counts'\) disagrees with the option"):
        read(p, "spikes", format="binned", bin_width_s=0.01)


def test_ingest_spikes_refuses_binned_counts(tmp_path):
    from brainpipe.stages import ingest_spikes

    p = tmp_path / "b.npz"
    np.savez(p, counts=np.ones((20, 2), dtype=np.uint8), bin_width_s=0.01)
    out = tmp_path / "spikes.nc"
    with pytest.raises(InputError, match="holds binned counts .* not spike times"):
        ingest_spikes.run({"source": str(p)}, {"spikes": str(out)}, {"format": "auto"})
    assert not out.exists()
    assert binned_datasets(
        {"a": {"path": str(p)}, "b": {"path": "x.csv", "format": "binned"}, "c": {"simulate": {}}}
    )
    assert binned_datasets({"a": {"path": str(p)}, "b": {"path": "x.csv"}}) == ["a"]


def test_poisson_glm_runs_on_real_binned_counts(tmp_path):
    """nelpy CA1 (real spikes and position, first 150 s) shipped as binned counts at 25 ms, read at 50 ms (two bins summed):
    ingest_counts -> fit_poisson_glm -> evaluate_poisson_glm, as the workflow runs them."""
    from brainpipe.stages import evaluate_poisson_glm, fit_poisson_glm, ingest_counts

    counts, pos, centres, units = _nelpy_counts(0.025)
    counts, pos, centres = counts[:6000], pos[:6000], centres[:6000]  # the first 150 s: running on the track
    src = tmp_path / "nelpy_binned.npz"
    np.savez(src, counts=counts, time=centres, unit=np.array(units), position=pos, bin_width_s=0.025)
    f = {k: tmp_path / f"{k}.nc" for k in ("counts", "fit", "metrics")}
    params = {
        "format": "auto",
        "bin_width_s": 0.05,
        "split": {"n_blocks": 2},
        "qc": {"min_rate_hz": 0.5, "max_units": 6},
    }
    ingest_counts.run({"source": str(src)}, {"counts": str(f["counts"])}, params)
    c = read_nc(f["counts"], "spike_counts")
    assert c.attrs["bin_width_s"] == pytest.approx(0.05) and c.attrs["source_bin_width_s"] == 0.025
    kept = c["qc_kept"].values.astype(bool)
    assert int(c["counts"].sum()) == int(counts[: counts.shape[0] // 2 * 2][:, kept].sum())
    assert list(c["behaviour_var"].values) == ["position_x", "position_y"]
    fit_poisson_glm.run({"counts": str(f["counts"])}, {"fit": str(f["fit"])}, {"alpha": 1e-3, "max_iter": 30})
    evaluate_poisson_glm.run(
        {"fit": str(f["fit"]), "counts": str(f["counts"]), "truth": []},
        {"metrics": str(f["metrics"])},
        {"dataset": "nelpy_binned"},
    )
    m = read_nc(f["metrics"], "metrics")
    value = dict(zip(m["metric"].values, m["value"].values, strict=True))
    assert np.isfinite(value["test_bits_per_spike"]), value
    print("nelpy binned 50 ms:", c.sizes["unit"], "units,", c.sizes["time"], "bins;", value)


def test_ingest_counts_refuses_a_bin_width_finer_than_the_file(tmp_path):
    from brainpipe.stages import ingest_counts

    src = tmp_path / "b.npz"
    np.savez(src, counts=np.ones((300, 2), dtype=np.uint8), bin_width_s=0.02)
    out = tmp_path / "counts.nc"
    where = {"bin_width_s": "spikes.datasets.b.bin.bin_width_s"}
    with pytest.raises(ConfigError) as err:
        ingest_counts.run({"source": str(src)}, {"counts": str(out)}, {"bin_width_s": 0.01, "where": where})
    assert str(err.value).startswith("key 'spikes.datasets.b.bin.bin_width_s': ")
    assert not out.exists()
