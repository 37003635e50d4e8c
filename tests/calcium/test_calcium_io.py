"""Calcium readers: suite2p folders, NWB ophys, plain arrays; frame rates; and one clear line for each bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brainpipe.data import contracts, read
from brainpipe.errors import InputError
from brainpipe.io.calcium import read_calcium, read_suite2p
from brainpipe.stages import ingest_calcium

REPO = Path(__file__).resolve().parents[2]
SHARED_S2P = REPO.parent / "shared" / "data" / "calcium" / "fissa-suite2p" / "suite2p" / "plane0"
ARRAY = REPO / "tests" / "data" / "calcium_traces.npy"


def _suite2p(tmp_path: Path, n_roi=4, T=200, iscell_rows=None, fneu=True, spks=True) -> Path:
    rng = np.random.default_rng(0)
    d = tmp_path / "suite2p" / "plane0"
    d.mkdir(parents=True)
    np.save(d / "F.npy", (100 + rng.standard_normal((n_roi, T))).astype(np.float32))
    if fneu:
        np.save(d / "Fneu.npy", (50 + rng.standard_normal((n_roi, T))).astype(np.float32))
    rows = n_roi if iscell_rows is None else iscell_rows
    isc = np.ones((rows, 2))
    isc[1] = [0, 0.2]
    np.save(d / "iscell.npy", isc)
    if spks:
        np.save(d / "spks.npy", rng.random((n_roi, T)).astype(np.float32))
    return d


def test_suite2p_folder_reads_cells_only(tmp_path):
    d = _suite2p(tmp_path)
    ds = read_suite2p(d, frame_rate_hz=30.0)
    assert list(ds["cell"].values) == ["roi0", "roi2", "roi3"]
    assert ds.sizes["time"] == 200 and ds.attrs["frame_rate_hz"] == 30.0
    assert "neuropil" in ds and "suite2p_spks" in ds
    assert contracts.check(ds, "calcium_traces", require_provenance=False) == []
    F = np.load(d / "F.npy")
    np.testing.assert_allclose(ds["fluorescence"].values[:, 1], F[2])
    # frame rate from a JSON sidecar; ops.npy (a pickle) is never read unless asked for
    (d / "frame_rate.json").write_text(json.dumps({"frame_rate_hz": 15.0}))
    np.save(d / "ops.npy", np.array({"fs": 99.0}, dtype=object), allow_pickle=True)
    assert read_suite2p(d).attrs["frame_rate_hz"] == 15.0
    (d / "frame_rate.json").unlink()
    with pytest.raises(InputError, match="no frame rate"):
        read_suite2p(d)
    assert read_suite2p(d, allow_ops_pickle=True).attrs["frame_rate_hz"] == 99.0


def test_suite2p_missing_fneu_isone_line(tmp_path, one_line):
    d = _suite2p(tmp_path, fneu=False)
    with pytest.raises(InputError) as err:
        read_suite2p(d, frame_rate_hz=30)
    assert (
        one_line(err)
        == f"{d}: suite2p folder has no Fneu.npy (neuropil); export Fneu.npy from suite2p or give the plane folder that holds it"
    )


def test_suite2p_iscell_rows_mismatch_isone_line(tmp_path, one_line):
    d = _suite2p(tmp_path, iscell_rows=3)
    with pytest.raises(InputError) as err:
        read_suite2p(d, frame_rate_hz=30)
    assert (
        one_line(err)
        == f"{d / 'iscell.npy'}: has 3 rows but F.npy has 4 ROIs; give the iscell.npy of the same suite2p run"
    )


def test_no_frame_rate_anywhere_isone_line(tmp_path, one_line):
    d = _suite2p(tmp_path)
    with pytest.raises(InputError) as err:
        read_suite2p(d)
    assert "no frame rate" in one_line(err) and "set frame_rate_hz" in str(err.value)
    arr = tmp_path / "x.npy"
    np.save(arr, np.random.default_rng(0).random((50, 3)))
    with pytest.raises(InputError, match=r"x\.npy: no frame rate .*set frame_rate_hz for this dataset"):
        read_calcium(arr)


def test_nan_or_constant_roi_is_one_line_and_leaves_nothing(tmp_path, one_line):
    F = 100 + np.random.default_rng(0).standard_normal((100, 3))
    F[:, 1] = np.nan
    arr = tmp_path / "nan.npy"
    np.save(arr, F)
    out = tmp_path / "out" / "traces.nc"
    with pytest.raises(InputError) as err:
        ingest_calcium.run({"source": arr}, {"traces": out}, {"frame_rate_hz": 10.0}, None)
    assert one_line(err).startswith(f"{arr}: ROI(s) n001 are all-NaN (no signal); exclude them")
    assert not out.exists() and not list(out.parent.glob("*")) if out.parent.exists() else True
    F[:, 1] = 7.0
    np.save(arr, F)
    with pytest.raises(InputError, match=r"ROI\(s\) n001 are constant"):
        read_calcium(arr, frame_rate_hz=10.0)
    ds = read_calcium(arr, frame_rate_hz=10.0, drop_bad_cells=True)
    assert list(ds["cell"].values) == ["n000", "n002"]


def test_plain_arrays_npy_csv_hdf5(tmp_path):
    import h5py

    ds = read_calcium(ARRAY)  # frame rate from the .npy.json sidecar
    assert ds.attrs["frame_rate_hz"] == 10.0 and ds.sizes["time"] == 400
    F = np.load(ARRAY)
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,c,d,e\n" + "\n".join(",".join(f"{v:.4f}" for v in row) for row in F))
    c = read_calcium(csv, frame_rate_hz=10.0)
    assert list(c["cell"].values) == ["a", "b", "c", "d", "e"]
    np.testing.assert_allclose(c["fluorescence"].values, F, atol=1e-3)
    h5 = tmp_path / "t.h5"
    with h5py.File(h5, "w") as fh:
        fh["F"] = F
        fh["Fneu"] = F * 0.5
    h = read_calcium(h5, frame_rate_hz=10.0, options={"key": "F", "neuropil_key": "Fneu"})
    np.testing.assert_allclose(h["neuropil"].values, F * 0.5, rtol=1e-6)


def test_nwb_ophys_fluorescence(tmp_path):
    from nwb_data import ophys_nwb

    data = 100 + np.random.default_rng(0).standard_normal((90, 3))
    path = ophys_nwb(tmp_path / "x.nwb", data, rate=30.0, ids=[10, 11, 12])
    ds = read_calcium(path)
    assert list(ds["cell"].values) == ["roi10", "roi11", "roi12"] and ds.attrs["frame_rate_hz"] == 30.0
    np.testing.assert_allclose(ds["fluorescence"].values, data)
    with pytest.raises(InputError, match=r"no RoiResponseSeries 'nope' \(found: RoiResponseSeries\)"):
        read_calcium(path, options={"series": "nope"})


def test_ingest_stage_writes_a_valid_file(tmp_path):
    out = tmp_path / "traces.nc"
    ingest_calcium.run({"source": ARRAY}, {"traces": out}, {"format": "npy"}, None)
    ds = read(out, "calcium_traces")
    assert ds.sizes["cell"] == 5


@pytest.mark.skipif(
    not SHARED_S2P.exists(), reason="needs ../shared/data/calcium (GPL suite2p example, not bundled)"
)
def test_real_suite2p_folder(tmp_path):
    """The fissa-suite2p example (GPL-3.0, read in place): 23 ROIs x 864 frames; its ops fs is suite2p's default."""
    ds = read_suite2p(SHARED_S2P, frame_rate_hz=None)  # fs from ops_summary.json (no pickle read)
    assert ds.attrs["frame_rate_source"] == "ops_summary.json:fs"
    isc = np.load(SHARED_S2P / "iscell.npy")
    assert ds.sizes["cell"] == int((isc[:, 0] > 0.5).sum()) and ds.sizes["time"] == 864
    from brainpipe.preprocess.calcium import preprocess_calcium

    out = preprocess_calcium(ds, window_s=100.0)
    assert np.isfinite(out["dff"].values).all() and (out["events"].values >= 0).all()
