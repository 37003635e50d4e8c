"""Calcium from users' recordings across animals: what the traces are (``kind``: each kind's path, values that do
not fit it), neuron labels (suite2p labels.tsv, NWB ROI-table columns, array sidecars) and matching by label, and
frame rates put on one clock (tolerance, resampling to ``target_rate_hz``). Each bad input: one line, no output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy.signal import lfilter

from brainpipe.config import validate_config
from brainpipe.config._study import Study
from brainpipe.data import make_provenance, read, write
from brainpipe.errors import ConfigError, InputError
from brainpipe.io.calcium import read_calcium
from brainpipe.preprocess.affinity import (
    AnimalTraces,
    align_animals,
    build_tensor,
    common_frame_rate,
    resample_traces,
)
from brainpipe.preprocess.calcium import preprocess_calcium
from brainpipe.report.calcium import alignment_html
from brainpipe.stages import build_connectome_tensor, fit_connectome, ingest_calcium

REPO = Path(__file__).resolve().parents[2]
SHARED_S2P = REPO.parent / "shared" / "data" / "calcium" / "fissa-suite2p" / "suite2p" / "plane0"


def _calcium(T=600, n=3, seed=0, g=0.9, rate=0.03):
    """(spikes, calcium) of n cells: AR(1) calcium of sparse planted events."""
    rng = np.random.default_rng(seed)
    s = (rng.random((T, n)) < rate) * rng.uniform(1.0, 2.0, (T, n))
    return s, lfilter([1.0], [1.0, -g], s, axis=0)


def _ds(F, fs=10.0, neuropil=None, cells=None, labels=None, source="test") -> xr.Dataset:
    T, n = F.shape
    ds = xr.Dataset(
        {"fluorescence": (("time", "cell"), F)},
        coords={
            "time": ("time", np.arange(T) / fs, {"units": "s"}),
            "cell": cells or [f"c{i}" for i in range(n)],
        },
        attrs={"frame_rate_hz": fs, "source": source},
    )
    if neuropil is not None:
        ds["neuropil"] = (("time", "cell"), neuropil)
    if labels is not None:
        ds["label"] = ("cell", np.asarray(labels, dtype=str))
    return ds


# ---- what the traces are ------------------------------------------------------------------------------------
def test_negative_raw_fluorescence_names_the_file_and_the_kinds(tmp_path, one_line):
    _, c = _calcium()
    p = tmp_path / "cnmfe_C.npy"
    np.save(p, c - 0.5)  # CNMF-E denoised traces: background removed, below 0 between events
    with pytest.raises(InputError) as err:
        read_calcium(p, frame_rate_hz=10.0, kind="raw")
    msg = one_line(err)
    assert msg.startswith(f"{p}: kind is 'raw' but 3 of 3 cells") and "set the dataset's kind" in msg
    assert "denoised" in msg
    # through the ingest stage: the same line, and no output left
    out = tmp_path / "out" / "traces.nc"
    with pytest.raises(InputError, match="raw fluorescence is never negative"):
        ingest_calcium.run({"source": p}, {"traces": out}, {"frame_rate_hz": 10.0, "kind": "raw"}, None)
    assert not out.exists()
    # declared as what they are, they are read and recorded as such
    ds = read_calcium(p, frame_rate_hz=10.0, kind="denoised")
    assert ds.attrs["trace_kind"] == "denoised"


def test_kinds_that_do_not_fit_the_values_areone_line(tmp_path, one_line):
    _, c = _calcium()
    p = tmp_path / "x.npy"
    np.save(p, 100 + 20 * c)
    with pytest.raises(
        InputError, match=r"kind is 'raw_with_neuropil' but the recording carries no neuropil"
    ):
        read_calcium(p, frame_rate_hz=10.0, kind="raw_with_neuropil")
    with pytest.raises(InputError, match=r"kind is 'dff' but every cell sits far above 0") as err:
        read_calcium(p, frame_rate_hz=10.0, kind="dff")
    assert str(p) in one_line(err)
    np.save(p, c - 0.5)
    with pytest.raises(InputError, match=r"kind is 'deconvolved' but the traces go negative"):
        read_calcium(p, frame_rate_hz=10.0, kind="deconvolved")
    with pytest.raises(ConfigError, match=r"calcium kind 'spikes' is not one of auto, raw"):
        read_calcium(p, frame_rate_hz=10.0, kind="spikes")


def test_each_kind_takes_its_path():
    s, c = _calcium(T=900, n=3, seed=1)
    rng = np.random.default_rng(1)
    F = 100 * (1 + c) + rng.standard_normal(c.shape)
    neuropil = 40 + rng.standard_normal(c.shape)
    # auto (the default) is today's path: neuropil subtracted when the traces carry it
    auto = preprocess_calcium(_ds(F + 0.7 * neuropil, neuropil=neuropil), window_s=20)
    explicit = preprocess_calcium(
        _ds(F + 0.7 * neuropil, neuropil=neuropil), window_s=20, kind="raw_with_neuropil"
    )
    np.testing.assert_array_equal(auto["dff"].values, explicit["dff"].values)
    assert auto.attrs["trace_kind"] == "raw_with_neuropil"
    # raw: the neuropil trace is not subtracted
    raw = preprocess_calcium(_ds(F, neuropil=neuropil), window_s=20, kind="raw")
    no_np = preprocess_calcium(_ds(F), window_s=20)
    np.testing.assert_array_equal(raw["dff"].values, no_np["dff"].values)
    # dff: no baseline, events straight from the traces
    dff = preprocess_calcium(_ds(c + 0.02 * rng.standard_normal(c.shape)), window_s=20, kind="dff")
    assert np.isnan(dff["baseline"].values).all() and dff.attrs["trace_kind"] == "dff"
    # denoised traces that go negative: baseline subtracted (not divided), events where they were planted
    den = preprocess_calcium(_ds(3.0 * c - 1.0), window_s=20, kind="denoised")
    assert np.isfinite(den["dff"].values).all()
    np.testing.assert_allclose(den["dff"].values.std(axis=0), 1.0)
    found = den["events"].values > 0
    assert (found & (s > 0)).sum() >= 0.8 * (s > 0).sum() and (found & (s == 0)).sum() <= 0.1 * found.sum()
    assert "SD" in den["dff"].attrs["long_name"]
    # deconvolved: the activity is the events (no AR(1) fit)
    dec = preprocess_calcium(_ds(s), window_s=20, kind="deconvolved")
    np.testing.assert_array_equal(dec["events"].values > 0, s > 0)
    assert np.isnan(dec["ar1_g"].values).all() and dec.attrs["trace_kind"] == "deconvolved"
    # the kind a reader recorded is followed
    ds = _ds(s)
    ds.attrs["trace_kind"] = "deconvolved"
    assert preprocess_calcium(ds, window_s=20).attrs["trace_kind"] == "deconvolved"


def test_nonpositive_baseline_hint_fits_the_situation(one_line):
    _, c = _calcium(T=600, n=2, seed=2)
    F = 100 * (1 + c)
    F[:, 0] = 5 * c[:, 0] - 1  # a denoised trace among raw ones: baseline below 0
    with pytest.raises(InputError) as err:  # no neuropil: no coefficient to lower
        preprocess_calcium(_ds(F), window_s=20, neuropil_coef=0.7, source="x.nc")
    msg = one_line(err)
    assert msg.startswith("x.nc: baseline F0 <= 0 in cell(s) c0 (no neuropil subtracted)")
    assert "neuropil_coef" not in msg and "calcium.datasets.<name>.kind" in msg
    with pytest.raises(
        InputError
    ) as err:  # coefficient 0 with a neuropil trace: nothing was subtracted either
        preprocess_calcium(_ds(F, neuropil=np.full_like(F, 50.0)), window_s=20, neuropil_coef=0.0)
    assert "neuropil_coef" not in one_line(err)
    F[:, 0] = 100 * (1 + c[:, 0])
    with pytest.raises(InputError) as err:  # the coefficient did it: lowering it is the hint
        preprocess_calcium(_ds(F, neuropil=np.full_like(F, 200.0)), window_s=20, neuropil_coef=0.7)
    assert "lower calcium.preprocess.neuropil_coef" in one_line(err)


# ---- labels ---------------------------------------------------------------------------------------------------
def _suite2p(d: Path, n_roi=4, T=300, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True)
    np.save(d / "F.npy", (100 + rng.standard_normal((n_roi, T))).astype(np.float32))
    np.save(d / "Fneu.npy", (50 + rng.standard_normal((n_roi, T))).astype(np.float32))
    isc = np.ones((n_roi, 2))
    isc[1] = [0, 0.1]
    np.save(d / "iscell.npy", isc)
    return d


def test_suite2p_labels_file(tmp_path, one_line):
    d = _suite2p(tmp_path / "plane0")
    (d / "labels.tsv").write_text("roi\tlabel\n0\tAVAL\n1\tAVAR\n3\tRIML\n")
    ds = read_calcium(d, frame_rate_hz=10.0)
    assert list(ds["cell"].values) == ["roi0", "roi2", "roi3"]  # roi1 is not a cell (iscell)
    assert list(ds["label"].values) == ["AVAL", "", "RIML"]
    out = tmp_path / "traces.nc"
    ingest_calcium.run({"source": d}, {"traces": out}, {"frame_rate_hz": 10.0}, None)
    assert list(read(out, "calcium_traces")["label"].values) == ["AVAL", "", "RIML"]
    bad = {
        "roi label\n0 AVAL\n": "does not start with the header row roi<TAB>label",
        "roi\tlabel\n7\tAVAL\n": "line 2 ('7\\tAVAL') is not 'roi<TAB>label' with roi a row of F.npy (0..3)",
        "roi\tlabel\n0\tAVAL\n2\tAVAL\n": "neuron label(s) 'AVAL' name more than one ROI",
    }
    for text, expected in bad.items():
        (d / "labels.tsv").write_text(text)
        with pytest.raises(InputError) as err:
            read_calcium(d, frame_rate_hz=10.0)
        assert one_line(err).startswith(f"{d / 'labels.tsv'}: {expected}")


def _nwb(path: Path, labels, column="label", rate=30.0):
    from nwb_data import ophys_nwb

    data = 100 + np.random.default_rng(0).standard_normal((60, len(labels)))
    return ophys_nwb(path, data, rate=rate, label_column=column, labels=labels)


def test_nwb_roi_table_label_column(tmp_path):
    p = _nwb(tmp_path / "worm.nwb", ["AVAL", "", "SMDVR"], column="neuron_name")
    ds = read_calcium(p)
    assert list(ds["label"].values) == ["AVAL", "", "SMDVR"]
    with pytest.raises(InputError, match=r"has no column 'ID' \(columns: .*neuron_name"):
        read_calcium(p, options={"label_column": "ID"})
    assert "label" not in read_calcium(_nwb(tmp_path / "plain.nwb", ["", ""], column=None))


def test_array_sidecar_labels(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, 100 + np.random.default_rng(0).standard_normal((50, 3)))
    (tmp_path / "x.npy.json").write_text(json.dumps({"frame_rate_hz": 5.0, "labels": ["AVAL", None, "AVAR"]}))
    assert list(read_calcium(p)["label"].values) == ["AVAL", "", "AVAR"]
    (tmp_path / "x.npy.json").write_text(json.dumps({"frame_rate_hz": 5.0, "labels": ["AVAL"]}))
    with pytest.raises(InputError, match=r"x\.npy\.json: 'labels' is not a list of 3 labels"):
        read_calcium(p)


# ---- matching and frame rates across animals -------------------------------------------------------------
def _animal(name, labels, fs=10.0, T=400, seed=0, cells=None, shared=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, len(labels))).astype(np.float32)
    if shared is not None:  # a common drive of the cells labelled in `shared`
        for k, lab in enumerate(labels):
            if lab in shared:
                x[:, k] += 2 * shared[lab][:T]
    return AnimalTraces(name, x, cells or [f"roi{i}" for i in range(len(labels))], fs, list(labels))


def test_neurons_are_matched_by_label_not_index():
    drive = np.random.default_rng(9).standard_normal(400).astype(np.float32)
    shared = {"AVAL": drive, "AVAR": drive}
    # the same two neurons sit at different ROI indices in the two animals
    a = _animal("a", ["AVAL", "AVAR", "RIML", ""], seed=1, shared=shared)
    b = _animal("b", ["SMDV", "RIML", "AVAR", "AVAL", "URX"], seed=2, shared=shared)
    out, al = align_animals([a, b], study="worms")
    assert al.match_by == "label" and al.n_cells == [4, 5] and al.n_neurons == [3, 5]
    assert al.n_shared_neurons == 3 and al.n_shared_pairs == 3  # AVAL, AVAR, RIML: 3 pairs in both
    assert al.n_pairs_two_or_more == 3
    t = build_tensor(out, "pos_corr", window_s=20.0, stride_s=20.0)
    neurons = list(t["neuron"].values)
    assert neurons == ["AVAL", "AVAR", "RIML", "SMDV", "URX"]
    pair = int(np.flatnonzero((t["pair_i"].values == 0) & (t["pair_j"].values == 1))[0])
    assert (t["affinity"].values[pair] > 0.5).all()  # AVAL-AVAR co-driven in both animals
    # by index (as the study says): roi0 of a is paired with roi0 of b
    _, by_index = align_animals([a, b], match_by="index")
    assert by_index.match_by == "index" and by_index.n_neurons == [4, 5] and by_index.n_shared_neurons == 4


def test_labels_in_some_animals_only_isone_line(one_line):
    a = _animal("a", ["AVAL", "AVAR"])
    b = _animal("b", ["AVAL", "AVAR"])
    b.labels = None
    with pytest.raises(InputError) as err:
        align_animals([a, b], study="worms")
    msg = one_line(err)
    assert msg == (
        "connectome study 'worms': neuron labels in a but not in b; give every animal labels, or set "
        "calcium.connectome.studies.worms.match_by: index to pair ROIs by index"
    )
    assert align_animals([a, b], match_by="index", study="worms")[1].match_by == "index"
    a.labels = None
    with pytest.raises(InputError, match=r"no animal carries neuron labels \(a, b\).*match_by: index"):
        align_animals([a, b], study="worms")
    with pytest.raises(InputError, match=r"match_by is label but a, b carry no neuron labels"):
        align_animals([a, b], match_by="label", study="worms")


def test_labels_that_share_no_pair_areone_line(one_line):
    with pytest.raises(
        InputError, match=r"no neuron pair is shared by two animals \(matched by label: a has"
    ):
        align_animals([_animal("a", ["AVAL", "AVAR"]), _animal("b", ["aval", "avar"])], study="w")


def test_frame_rates_within_tolerance_are_taken_as_one(one_line):
    rate, far, how = common_frame_rate(["a", "b"], [30.0, 30.003])  # 1e-4 apart: one rate
    assert rate == pytest.approx(30.0015) and far == [False, False] and "within tolerance 0.001" in how
    assert common_frame_rate(["a", "b"], [10.0, 10.0])[2] == "all animals recorded at 10 Hz"
    with pytest.raises(ConfigError) as err:
        common_frame_rate(["a", "b"], [30.0, 15.0], study="mix")
    assert one_line(err) == (
        "connectome study 'mix': the animals' frame rates (a 30 Hz, b 15 Hz) differ by more than rate_tolerance "
        "0.001 (relative); set calcium.connectome.studies.mix.target_rate_hz to resample them to one rate"
    )


def test_resampling_keeps_slow_signal_and_removes_what_would_alias():
    t = np.arange(3000) / 30.0
    slow, fast = np.sin(2 * np.pi * 0.5 * t), np.sin(2 * np.pi * 7.0 * t)  # 7 Hz: above 5 Hz target Nyquist
    y = resample_traces(np.stack([slow, fast, np.abs(fast)], axis=1), 30.0, 10.0)
    assert y.shape == (1000, 3)
    t10 = np.arange(1000) / 10.0
    assert np.corrcoef(y[:, 0], np.sin(2 * np.pi * 0.5 * t10))[0, 1] > 0.999
    assert (
        y[50:-50, 1].std() < 0.15 * fast.std()
    )  # would alias to 3 Hz at full amplitude without the low-pass
    assert (y[:, 2] >= 0).all()  # no overshoot: non-negative stays non-negative
    up = resample_traces(slow[:, None], 30.0, 60.0)
    np.testing.assert_allclose(up[::2, 0], slow[: up[::2].shape[0]], atol=1e-12)


def _processed(d: Path, fs: float, labels, seed: int, T: int) -> Path:
    drive = np.random.default_rng(7).standard_normal(int(T * 30 / fs) + 10)
    rng = np.random.default_rng(seed)
    step = 30.0 / fs  # the drive is defined at 30 Hz
    x = rng.standard_normal((T, len(labels)))
    for k, lab in enumerate(labels):
        if lab in ("AVAL", "AVAR"):
            x[:, k] += 3 * drive[(np.arange(T) * step).astype(int)]
    ds = _ds(100 + x, fs=fs, labels=labels, cells=[f"roi{i}" for i in range(len(labels))])
    for v in ("fluorescence", "dff", "events"):
        ds[v] = (
            ("time", "cell"),
            100 + x if v == "fluorescence" else x if v == "dff" else 0 * x,
            {"units": "1"},
        )
    d.mkdir(parents=True)
    write(ds, d / "processed.nc", "calcium_traces", make_provenance("test", {}, []))
    return d / "processed.nc"


def test_study_of_animals_at_different_rates_end_to_end(tmp_path):
    a = _processed(tmp_path / "worm_a", 30.0, ["AVAL", "AVAR", "RIML"], 1, 1200)
    b = _processed(tmp_path / "worm_b", 10.0, ["RIML", "AVAR", "AVAL", "URX"], 2, 400)
    tensor = tmp_path / "worms" / "connectome" / "tensor.zarr"
    params = {"affinity": {"name": "pos_corr", "window_s": 5.0, "stride_s": 5.0}, "study": "worms"}
    with pytest.raises(ConfigError, match=r"worm_a 30 Hz, worm_b 10 Hz.*studies\.worms\.target_rate_hz"):
        build_connectome_tensor.run({"processed": [a, b]}, {"tensor": tensor}, params, None)
    assert not tensor.exists()
    build_connectome_tensor.run(
        {"processed": [a, b]}, {"tensor": tensor}, {**params, "target_rate_hz": 10.0}, None
    )
    t = read(tensor, "affinity_tensor")
    assert float(t.attrs["frame_rate_hz"]) == 10.0 and t.attrs["neuron_matching"] == "label"
    assert list(t["animal_frame_rate_hz"].values) == [30.0, 10.0]
    assert (
        list(t["animal_resampled"].values) == [1, 0] and "linear interpolation" in t.attrs["resample_method"]
    )
    assert list(t["animal_n_neurons"].values) == [3, 4] and int(t.attrs["n_shared_pairs"]) == 3
    assert t.sizes["window"] == 8 and list(t["neuron"].values) == ["AVAL", "AVAR", "RIML", "URX"]
    fit = tmp_path / "worms" / "connectome" / "fit.nc"
    fit_connectome.run({"tensor": tensor}, {"fit": fit}, {"ranks": [1], "restarts": 2, "device": "cpu"}, None)
    f = read(fit, "model_fit")
    assert f.attrs["n_shared_pairs"] == 3 and list(f["animal_frame_rate_hz"].values) == [30.0, 10.0]
    html = alignment_html(f)
    assert (
        "10 Hz: 1 of 2 animal(s) resampled to 10 Hz" in html
        and "3 neurons and 3 pairs in every animal" in html
    )
    assert "<td>worm_a</td><td>30</td><td>yes</td><td>3</td><td>3</td>" in html


def test_config_keys_resolve_per_study():
    import copy

    import yaml

    cfg = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    conn = cfg["calcium"]["connectome"]
    conn["rate_tolerance"] = 0.01
    conn["studies"]["tinyconn"].update({"target_rate_hz": 5.0, "match_by": "index"})
    study = Study(validate_config(cfg))
    p = study.connectome_tensor("tinyconn")
    assert (p["target_rate_hz"], p["rate_tolerance"], p["match_by"], p["study"]) == (
        5.0,
        0.01,
        "index",
        "tinyconn",
    )
    cfg["calcium"]["datasets"]["rec"] = {"path": "x.npy", "kind": "denoised"}
    assert Study(validate_config(cfg, check_paths=False)).calcium_ingest("rec")["kind"] == "denoised"
    cfg["calcium"]["datasets"]["rec"]["kind"] = "spikes"
    with pytest.raises(ConfigError, match=r"kind"):
        validate_config(cfg, check_paths=False)


@pytest.mark.skipif(not SHARED_S2P.exists(), reason="needs ../shared/data/calcium (GPL suite2p example)")
def test_real_suite2p_animals_with_labels_at_two_rates(tmp_path):
    """The fissa-suite2p plane as two 'animals' (frame rates 1 and 2 Hz, its ROIs labelled in a different order)."""
    dirs = []
    for k, (fs, order) in enumerate(((1.0, [0, 2, 3, 4]), (2.0, [4, 3, 2, 0]))):
        d = tmp_path / f"an{k}" / "plane0"
        shutil.copytree(SHARED_S2P, d)
        (d / "labels.tsv").write_text("roi\tlabel\n" + "".join(f"{r}\tN{j}\n" for j, r in enumerate(order)))
        traces = tmp_path / f"an{k}" / "traces.nc"
        ingest_calcium.run({"source": d}, {"traces": traces}, {"frame_rate_hz": fs}, None)
        ds = read(traces, "calcium_traces")
        assert ds.attrs["trace_kind"] == "raw_with_neuropil" and (ds["label"] != "").sum() == 4
        out = preprocess_calcium(ds, window_s=60.0)
        dirs.append(_keep(out, tmp_path / f"animal{k}"))
    tensor = tmp_path / "s" / "connectome" / "tensor.zarr"
    params = {"affinity": {"window_s": 60.0, "stride_s": 60.0}, "target_rate_hz": 1.0, "study": "s"}
    build_connectome_tensor.run({"processed": dirs}, {"tensor": tensor}, params, None)
    t = read(tensor, "affinity_tensor")
    assert list(t["animal_resampled"].values) == [0, 1] and int(t.attrs["n_shared_neurons"]) == 4
    assert list(t["neuron"].values) == ["N0", "N1", "N2", "N3"]


def _keep(ds: xr.Dataset, d: Path) -> Path:
    d.mkdir(parents=True)
    write(ds, d / "processed.nc", "calcium_traces", make_provenance("test", {}, []))
    return d / "processed.nc"
