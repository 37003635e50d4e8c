"""Neuroformer pretraining from token windows streamed through a zarr store (issue 17,
``neuroformer.pretrain.streaming``): the windows tokenised block by block are the in-memory windows, a streamed fit
with the in-memory order gives the in-memory weights bit for bit and leaves no store behind, and bad settings are
one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainpipe.errors import ConfigError, InputError
from brainpipe.models.neuroformer import Neuroformer, SpikeTokenizer
from brainpipe.models.neuroformer.streaming import check_streaming
from brainpipe.preprocess import bin_spikes
from brainpipe.simulate import simulate
from brainpipe.training.neuroformer import pretrain_neuroformer
from neuroformer_tiny import MODEL, TOKENIZER, TRAIN, tiny_params

SIM = {"n_neurons": 5, "n_hubs": 1, "hub_out_degree": 2, "n_other_connections": 1, "duration_s": 20.0}


@pytest.fixture(scope="module")
def counts():
    return bin_spikes(simulate("hub_network", SIM, seed=2).data, 0.01, n_blocks=2)


def _model(**train):
    return Neuroformer(SpikeTokenizer(**TOKENIZER), **MODEL, train={**TRAIN, "max_epochs": 2, **train})


def test_windows_tokenised_in_blocks_are_the_in_memory_windows(counts):
    tok = SpikeTokenizer(**TOKENIZER).fit(counts)
    whole = tok.transform(counts)
    starts = tok.window_starts(counts)
    assert np.array_equal(starts, whole.start)
    parts = [tok.transform(counts, starts=starts[i : i + 97]) for i in range(0, starts.size, 97)]
    for name in ("cur_id", "cur_dt", "past_id", "past_dt", "modality", "target", "split"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts]), getattr(whole, name))


def test_streamed_fit_equals_the_in_memory_fit_and_leaves_no_store(counts, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    ref = _model().fit(counts)
    same = _model().fit(counts, streaming={"enabled": True, "chunk_windows": 64, "shuffle": "global"})
    for k, v in ref.net_.state_dict().items():
        assert torch.equal(v, same.net_.state_dict()[k]), k
    assert same.history_ == ref.history_
    assert same.token_stats_["n_windows"] == int(
        np.isin(ref.tokenizer_.transform(counts).split, (0, 1)).sum()
    )
    chunked = _model().fit(
        counts, streaming={"enabled": True, "chunk_windows": 64}
    )  # chunk order: other batches
    assert [h["step"] for h in chunked.history_] == [h["step"] for h in ref.history_]
    assert (
        abs(chunked.history_[-1]["val_loss"] - ref.history_[-1]["val_loss"])
        < 0.05 * ref.history_[-1]["val_loss"]
    )
    assert list(tmp_path.iterdir()) == []  # the stores are removed


def test_the_stage_function_streams_what_the_study_asks(counts, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    train = {**TRAIN, "streaming": {"enabled": True, "chunk_windows": 50, "shuffle": "global"}}
    streamed = pretrain_neuroformer(counts, tiny_params(train))
    plain = pretrain_neuroformer(counts, tiny_params(dict(TRAIN)))
    for k, v in plain.net_.state_dict().items():
        assert torch.equal(v, streamed.net_.state_dict()[k]), k
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            {"enabled": True, "chunks": 3},
            r"neuroformer\.pretrain\.streaming: unknown key\(s\) chunks \(allowed: ",
        ),
        (
            {"enabled": True, "chunk_windows": 0},
            r"neuroformer\.pretrain\.streaming\.chunk_windows must be an integer >= 1; got 0",
        ),
        (
            {"enabled": True, "shuffle": "random"},
            r"neuroformer\.pretrain\.streaming\.shuffle must be 'chunks' or 'global'; got 'random'",
        ),
    ],
)
def test_bad_streaming_settings_are_one_line(bad, message):
    with pytest.raises(ConfigError, match=message):
        check_streaming(bad)
    assert check_streaming({"enabled": False}) is None and check_streaming(None) is None


def test_study_config_takes_streaming_and_rejects_bad_values():
    from brainpipe.config import validate_config

    def cfg(pretrain):
        sim = {"simulate": {"generator": "hub_network", "params": dict(SIM)}}
        return {
            "spikes": {"datasets": {"sim": sim}},
            "neuroformer": {"datasets": {"sim": {}}, "pretrain": pretrain},
        }

    ok = validate_config(cfg({"streaming": {"enabled": True, "chunk_windows": 10}}))
    assert ok["neuroformer"]["pretrain"]["streaming"] == {
        "enabled": True,
        "chunk_windows": 10,
        "cache_chunks": 2,
        "shuffle": "chunks",
    }
    assert "streaming" not in validate_config(cfg({}))["neuroformer"]["pretrain"]  # the default: off, absent
    with pytest.raises(ConfigError, match="chunk_windows"):
        validate_config(cfg({"streaming": {"enabled": True, "chunk_windows": 0}}))


def test_no_validation_window_is_one_line_and_leaves_no_store(counts, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    no_val = counts.assign(
        split=counts["split"].where(counts["split"] != 1, 0)
    )  # validation blocks made train
    with pytest.raises(
        InputError, match=r"^sim: no validation window \(\d+ windows of 0\.02 s after a past of 0\.04 s"
    ) as info:
        _model().fit(no_val, source="sim", streaming={"enabled": True})
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


# -- fine-tuning (neuroformer.finetune.streaming) ---------------------------------------------------------------
TARGET = {"source": "behaviour", "variable": "speed"}


@pytest.fixture(scope="module")
def pretrained(counts):
    from brainpipe.training.neuroformer import pretrained_dataset

    return pretrained_dataset(pretrain_neuroformer(counts, tiny_params(TRAIN, target=TARGET)))


def _decoder(counts, pre):
    model = Neuroformer.from_dataset(pre, counts)
    model.finetune = {**TRAIN, "max_epochs": 2}
    return model.set_target(counts, TARGET)


@pytest.mark.parametrize("max_epoch_windows", [None, 200])
def test_streamed_finetuning_equals_the_in_memory_one_and_leaves_no_store(
    counts, pretrained, tmp_path, monkeypatch, max_epoch_windows
):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    kw = {"min_epoch_windows": 64, "max_epoch_windows": max_epoch_windows}
    ref = _decoder(counts, pretrained).fit_behaviour(counts, 1.0, **kw)
    streamed = {"enabled": True, "chunk_windows": 50, "shuffle": "global"}
    same = _decoder(counts, pretrained).fit_behaviour(counts, 1.0, streaming=streamed, **kw)
    assert same.n_labelled_ == ref.n_labelled_ > 200  # the labelled train windows went through the store
    for k, v in ref.net_.state_dict().items():
        assert torch.equal(v, same.net_.state_dict()[k]), k
    assert same.validation_loss_ == ref.validation_loss_
    assert list(tmp_path.iterdir()) == []  # the store is removed


def test_streamed_probe_and_chunked_decoding_equal_the_in_memory_ones(counts, pretrained):
    ref = _decoder(counts, pretrained).fit_behaviour(counts, 1.0, mode="probe")
    same = _decoder(counts, pretrained).fit_behaviour(
        counts, 1.0, mode="probe", streaming={"enabled": True, "chunk_windows": 64}
    )
    assert same.probe_ == ref.probe_
    for k, v in ref.net_.state_dict().items():
        assert torch.equal(v, same.net_.state_dict()[k]), k
    pred, tgt = ref.decode(ref.labelled_windows(counts, ("validation", "test")))
    for chunk in (256, None):  # several chunks, one piece
        p, t, win = ref.decode_labelled(counts, ("validation", "test"), chunk_windows=chunk)
        np.testing.assert_array_equal(p, pred)
        np.testing.assert_array_equal(t, tgt)
    whole = ref.labelled_windows(counts, ("validation", "test"))
    np.testing.assert_array_equal(win["start"], whole.start)
    np.testing.assert_array_equal(win["t_start"], whole.t_start)
    np.testing.assert_array_equal(win["split"], whole.split)


def test_window_targets_are_the_tokenised_windows_targets(counts):
    tok = SpikeTokenizer(**TOKENIZER, target=TARGET).fit(counts)
    starts = tok.window_starts(counts)
    np.testing.assert_array_equal(tok.window_targets(counts, starts), tok.transform(counts).target)
    cls = SpikeTokenizer(**TOKENIZER, target={**TARGET, "variable": "flash", "kind": "classification"})
    cls.fit(counts)
    np.testing.assert_array_equal(
        cls.window_targets(counts, starts[::7]), cls.transform(counts, starts=starts[::7]).target
    )


def test_bad_finetuning_streaming_settings_are_one_line(counts, pretrained):
    with pytest.raises(ConfigError, match=r"neuroformer\.finetune\.streaming.*chunk_windows"):
        _decoder(counts, pretrained).fit_behaviour(
            counts, 1.0, streaming={"enabled": True, "chunk_windows": 0}
        )


def test_decoding_a_recording_without_train_windows_needs_none(counts, pretrained):
    model = _decoder(counts, pretrained).fit_behaviour(counts, 1.0, mode="probe")
    held_out = counts.assign(
        split=("time", np.full(counts.sizes["time"], 2, np.int8))
    )  # every bin a test bin
    pred, tgt, win = model.decode_labelled(held_out, "test")
    assert pred.shape == tgt.shape and pred.size > 0 and np.all(win["split"] == 2)
    with pytest.raises(InputError, match="no train window"):
        model.fit_behaviour(held_out, 1.0, mode="probe")
