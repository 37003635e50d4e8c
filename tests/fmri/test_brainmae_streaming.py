"""BrainMAE pretraining streamed from a zarr store (issue 17, ``fmri.brainmae.model.streaming``): the streamed fit
gives the in-memory fit's encoders bit for bit with the in-memory epoch order, close ones with the chunk order, the
stage reads the file lazily and leaves no store behind, and bad settings or inputs are one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from brainpipe.config import validate_config
from brainpipe.data import make_provenance, read, write
from brainpipe.errors import ConfigError, InputError
from brainpipe.evaluate.brainmae import open_segments, pretrain_folds
from brainpipe.models.brainmae import split_kwargs
from brainpipe.stages import pretrain_brainmae

MODEL = {
    "d_model": 8,
    "n_layers": 1,
    "n_heads": 2,
    "max_epochs": 2,
    "batch_size": 8,
    "patience": None,
    "device": "cpu",
    "progress": False,
}


def _segments(n_sub=8, per_sub=6, n_lag=5, n_roi=6, seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    n_seg = n_sub * per_sub
    sub = np.repeat(np.arange(n_sub), per_sub)
    fold = np.arange(n_sub) % 4
    return xr.Dataset(
        {
            "signal": (
                ("segment", "lag", "roi"),
                rng.standard_normal((n_seg, n_lag, n_roi)).astype(np.float32),
            ),
            "segment_subject": ("segment", sub),
            "segment_start": ("segment", np.tile(np.arange(per_sub) * 10.0, n_sub), {"units": "s"}),
            "segment_run": ("segment", np.array([f"sub-{s}" for s in sub])),
            "fold": ("subject", fold),
            "segment_fold": ("segment", fold[sub]),
            "label": ("subject", np.arange(n_sub) % 2),
        },
        coords={
            "lag": ("lag", np.arange(n_lag) * 2.0, {"units": "s"}),
            "roi": ("roi", np.array([f"r{i}" for i in range(n_roi)])),
            "subject": ("subject", np.array([f"s{i}" for i in range(n_sub)])),
        },
        attrs={"repetition_time_s": 2.0, "segment_length_s": 10.0, "classes": "a,b"},
    )


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "clean.nc"
    return write(_segments(), path, "roi_segments", make_provenance("test", seed=0))


def _weights(models):
    return [m.net_.state_dict() for m in models]


def test_streamed_fit_equals_the_in_memory_fit(clean):
    ds = read(clean, "roi_segments")
    ref = pretrain_folds(ds, MODEL)
    lazy = open_segments(clean, lazy=True)
    try:
        same = pretrain_folds(
            lazy, dict(MODEL, streaming={"enabled": True, "chunk_segments": 4, "shuffle": "global"})
        )
        chunked = pretrain_folds(lazy, dict(MODEL, streaming={"enabled": True, "chunk_segments": 4}))
        # batches read ahead by 2 DataLoader worker processes: still the same fit, bit for bit
        workers = pretrain_folds(
            lazy,
            dict(MODEL, num_workers=2, streaming={"enabled": True, "chunk_segments": 4, "shuffle": "global"}),
        )
    finally:
        lazy.close()
    assert len(ref) == len(same) == len(workers) == 4
    for a, b, w in zip(
        _weights(ref), _weights(same), _weights(workers), strict=True
    ):  # same batches: bit for bit
        for k in a:
            assert torch.equal(a[k], b[k]) and torch.equal(a[k], w[k]), k
    for m, c in zip(ref, chunked, strict=True):  # the chunk order: other batches, the same fit within noise
        assert [h["step"] for h in m.history_] == [h["step"] for h in c.history_]
        assert abs(m.history_[-1]["val_loss"] - c.history_[-1]["val_loss"]) < 0.1 * m.history_[-1]["val_loss"]
    assert not torch.equal(ref[0].net_.state_dict()["roi_emb"], chunked[0].net_.state_dict()["roi_emb"])


def test_stage_streams_lazily_and_leaves_no_store(clean, tmp_path, monkeypatch):
    import tempfile

    tmp = tmp_path / "job_tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    params = dict(MODEL, streaming={"enabled": True, "chunk_segments": 4, "shuffle": "global"})
    pretrain_brainmae.run({"clean": clean}, {"weights": tmp_path / "s.pt", "fit": tmp_path / "s.nc"}, params)
    pretrain_brainmae.run({"clean": clean}, {"weights": tmp_path / "m.pt", "fit": tmp_path / "m.nc"}, MODEL)
    assert list(tmp.iterdir()) == []  # the fold stores are removed
    a, b = read(tmp_path / "s.nc", "model_fit"), read(tmp_path / "m.nc", "model_fit")
    np.testing.assert_array_equal(a["roi_embedding"].values, b["roi_embedding"].values)


def test_streaming_refuses_the_temporal_encoder_and_bad_settings(clean):
    on = {"enabled": True}
    with pytest.raises(ConfigError, match=r"fmri\.brainmae\.model\.streaming: the temporal encoder"):
        split_kwargs(dict(MODEL, temporal_encoder="transformer", streaming=on))
    with pytest.raises(ConfigError, match=r"fmri\.brainmae\.model\.streaming: the temporal encoder"):
        pretrain_folds(read(clean, "roi_segments"), dict(MODEL, temporal_encoder="transformer", streaming=on))
    with pytest.raises(ConfigError, match=r"streaming\.chunk_segments must be an integer >= 1"):
        split_kwargs(dict(MODEL, streaming={"enabled": True, "chunk_segments": 0}))
    with pytest.raises(ConfigError, match=r"streaming: unknown key\(s\) chunks"):
        split_kwargs(dict(MODEL, streaming={"chunks": 3}))


def test_non_finite_segments_are_one_line_and_leave_no_output(tmp_path, monkeypatch):
    import tempfile

    ds = _segments()
    path = tmp_path / "clean.nc"
    write(ds, path, "roi_segments", make_provenance("test", seed=0))
    bad = xr.open_dataset(path, engine="h5netcdf", decode_times=False).load()
    bad["signal"][5, 0, 0] = np.nan  # a NaN written past the contract check
    bad.to_netcdf(tmp_path / "bad.nc", engine="h5netcdf")
    job = tmp_path / "job_tmp"
    job.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(job))
    outs = {"weights": tmp_path / "w.pt", "fit": tmp_path / "fit.nc"}
    with pytest.raises(InputError, match=r"bad\.nc: variable 'signal' has NaN or infinite values"):
        pretrain_brainmae.run({"clean": tmp_path / "bad.nc"}, outs, dict(MODEL, streaming={"enabled": True}))
    assert not outs["weights"].exists() and not outs["fit"].exists() and list(job.iterdir()) == []
    with pytest.raises(InputError, match=r"nothing\.nc: file does not exist"):
        open_segments(tmp_path / "nothing.nc", lazy=True)


def test_study_config_takes_streaming_and_refuses_it_with_the_temporal_encoder():
    def cfg(model):
        return {
            "fmri": {
                "datasets": {
                    "sim": {"simulate": {"generator": "fmri_modular_cohort", "params": {"n_subjects": 8}}}
                },
                "brainmae": {"model": model},
            }
        }

    ok = validate_config(cfg({"streaming": {"enabled": True}}))
    assert ok["fmri"]["brainmae"]["model"]["streaming"] == {
        "enabled": True,
        "chunk_segments": 256,
        "cache_chunks": 2,
        "shuffle": "chunks",
    }
    assert (
        "streaming" not in validate_config(cfg({}))["fmri"]["brainmae"]["model"]
    )  # the default: off, absent
    with pytest.raises(ConfigError, match=r"^study\.yaml: .*streaming: the temporal encoder") as info:
        validate_config(
            cfg({"streaming": {"enabled": True}, "temporal_encoder": "transformer"}), source="study.yaml"
        )
    assert "\n" not in str(info.value)


def test_streamed_stage_killed_mid_run_resumes_and_cleans_up(clean, tmp_path, monkeypatch):
    """Killed while fitting encoder 2 (streamed): its fold stores are removed, the rerun returns the finished folds
    from their checkpoints and ends with the uninterrupted streamed run's encoders."""
    import tempfile

    from brainpipe.models.brainmae import BrainMAE

    job = tmp_path / "job_tmp"
    job.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(job))
    params = dict(MODEL, streaming={"enabled": True, "chunk_segments": 4})
    ref = {"weights": tmp_path / "r.pt", "fit": tmp_path / "r.nc"}
    pretrain_brainmae.run({"clean": clean}, ref, params)
    real_fit, calls = BrainMAE.fit, []

    def killed_at_fold_2(self, X, X_val=None, checkpoint=None, **kw):
        calls.append(checkpoint)
        if len(calls) == 3:
            raise KeyboardInterrupt("preempted")
        return real_fit(self, X, X_val, checkpoint=checkpoint, **kw)

    monkeypatch.setattr(BrainMAE, "fit", killed_at_fold_2)
    outs = {"weights": tmp_path / "w.pt", "fit": tmp_path / "fit.nc"}
    ckpt = tmp_path / "ck" / "pre.pt"
    with pytest.raises(KeyboardInterrupt):
        pretrain_brainmae.run({"clean": clean}, outs, dict(params, checkpoint=str(ckpt)))
    assert list(job.glob("brainmae-stream-*")) == [] and not outs["fit"].exists()
    monkeypatch.setattr(BrainMAE, "fit", real_fit)
    pretrain_brainmae.run({"clean": clean}, outs, dict(params, checkpoint=str(ckpt)))
    assert not list(ckpt.parent.glob("*.pt")) and list(job.glob("brainmae-stream-*")) == []
    a, b = read(outs["fit"], "model_fit"), read(ref["fit"], "model_fit")
    np.testing.assert_array_equal(a["fold_roi_embedding"].values, b["fold_roi_embedding"].values)
