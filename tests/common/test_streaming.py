"""Examples streamed from a chunked zarr store (brainpipe.training.streaming): the dataset gives back what was
written, an epoch reads each chunk once in a chunk-then-within-chunk shuffled order, the training loop trains on it
with at most ``cache_chunks`` chunks in memory, and bad stores are one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from brainpipe.errors import InputError
from brainpipe.training import train
from brainpipe.training.streaming import ZarrExamples, write_examples


def _blocks(n=70, block=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3, 4)).astype(np.float32)
    return x, (x[i : i + block] for i in range(0, n, block))


def test_the_store_gives_back_the_examples_in_chunk_shuffled_order(tmp_path):
    x, blocks = _blocks()
    ds = ZarrExamples(write_examples(blocks, tmp_path / "ex.zarr", chunk_examples=8))
    assert len(ds) == 70 and ds.chunk == 8
    np.testing.assert_array_equal(torch.stack([ds[i] for i in range(70)]).numpy(), x)
    order = ds.epoch_order(torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(70))
    chunks = (order // 8).tolist()
    runs = [c for i, c in enumerate(chunks) if i == 0 or c != chunks[i - 1]]
    assert len(runs) == 9 == len(set(runs))  # each chunk visited once, as one run
    assert order.tolist() != list(range(70))  # shuffled
    assert torch.equal(order, ds.epoch_order(torch.Generator().manual_seed(0)))  # seeded


def test_training_streams_with_bounded_memory(tmp_path):
    x, blocks = _blocks(n=96)
    ds = ZarrExamples(write_examples(blocks, tmp_path / "ex.zarr", chunk_examples=16), cache_chunks=2)
    w = torch.randn(12)
    torch.manual_seed(0)
    model = nn.Linear(12, 1)

    def loss(m, batch):
        flat = batch.reshape(len(batch), -1)
        return ((m(flat).squeeze(-1) - flat @ w) ** 2).mean()

    cfg = dict(max_epochs=6, batch_size=16, lr=5e-2, patience=None, device="cpu", progress=False)
    res = train(model, ds, loss, cfg)
    assert res.history[-1]["train_loss"] < 0.3 * res.history[0]["train_loss"]
    assert (
        6 <= ds.reads <= 6 * 6
    )  # each chunk read at most once per epoch (batches follow chunks), not per batch
    assert len(ds._cache) <= 2


def test_bad_stores_are_one_line(tmp_path):
    with pytest.raises(InputError, match=r"nothing\.zarr: not a readable zarr array"):
        ZarrExamples(tmp_path / "nothing.zarr")
    with pytest.raises(InputError, match=r"a block of examples of shape \(3, 5\) after blocks of \(3, 4\)"):
        write_examples([np.zeros((2, 3, 4)), np.zeros((2, 3, 5))], tmp_path / "mixed.zarr")
    with pytest.raises(InputError, match="no examples to write"):
        write_examples([], tmp_path / "empty.zarr")


def test_global_shuffle_is_the_in_memory_order(tmp_path):
    _, blocks = _blocks()
    ds = ZarrExamples(write_examples(blocks, tmp_path / "ex.zarr", chunk_examples=8), shuffle="global")
    assert torch.equal(
        ds.epoch_order(torch.Generator().manual_seed(3)),
        torch.randperm(70, generator=torch.Generator().manual_seed(3)),
    )
    with pytest.raises(ValueError, match="shuffle must be 'chunks' or 'global'"):
        ZarrExamples(tmp_path / "ex.zarr", shuffle="random")


def _fit(data, workers: int, val=None):
    w = torch.arange(12, dtype=torch.float32) / 12
    torch.manual_seed(0)
    model = nn.Linear(12, 1)

    def loss(m, batch):
        flat = batch.reshape(len(batch), -1)
        return ((m(flat).squeeze(-1) - flat @ w) ** 2).mean()

    cfg = dict(max_epochs=3, batch_size=16, lr=5e-2, patience=None, device="cpu", progress=False)
    res = train(model, data, loss, {**cfg, "num_workers": workers}, val_data=val)
    return model, res


def test_worker_processes_read_ahead_without_changing_the_result(tmp_path):
    x, blocks = _blocks(n=90)
    store = write_examples(blocks, tmp_path / "ex.zarr", chunk_examples=16)
    m0, r0 = _fit(ZarrExamples(store), 0)
    m2, r2 = _fit(ZarrExamples(store), 2)
    assert r2.history == r0.history and r2.steps == r0.steps == 3 * 6
    for a, b in zip(m0.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)
    # in-memory tensors too (a batch is one gather, done in a worker)
    t0, _ = _fit(torch.from_numpy(x), 0)
    t1, _ = _fit(torch.from_numpy(x), 1)
    assert all(torch.equal(a, b) for a, b in zip(t0.parameters(), t1.parameters(), strict=True))


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_worker_counts_are_one_line(bad):
    from brainpipe.errors import ConfigError
    from brainpipe.training import TrainConfig

    with pytest.raises(ConfigError, match=r"^training: num_workers must be an integer >= 0"):
        TrainConfig.from_dict({"num_workers": bad})


def _windows(n=50, seed=1):
    rng = np.random.default_rng(seed)
    return {
        "cur_id": rng.integers(0, 30, size=(n, 12)),
        "cur_dt": rng.integers(0, 5, size=(n, 12)),
        "modality": rng.normal(size=(n, 4, 2)).astype(np.float32),
        "target": rng.normal(size=(n, 1)).astype(np.float32),
    }


def test_named_arrays_store_token_windows_with_their_dtypes(tmp_path):
    w = _windows()
    blocks = ({k: v[i : i + 16] for k, v in w.items()} for i in range(0, 50, 16))
    names = ("cur_id", "cur_dt", "modality", "target")
    ds = ZarrExamples(write_examples(blocks, tmp_path / "win.zarr", chunk_examples=8), names=names)
    assert len(ds) == 50 and ds.chunk == 8
    item = ds[37]
    assert [t.dtype for t in item] == [torch.int64, torch.int64, torch.float32, torch.float32]
    for t, k in zip(item, names, strict=True):
        np.testing.assert_array_equal(t.numpy(), w[k][37])
    batch = torch.utils.data.default_collate(
        [ds[i] for i in (3, 9, 41)]
    )  # what train's collate makes of them
    np.testing.assert_array_equal(batch[0].numpy(), w["cur_id"][[3, 9, 41]])
    assert ZarrExamples(tmp_path / "win.zarr").names == tuple(sorted(names))


def test_bad_named_stores_are_one_line(tmp_path):
    w = _windows()
    with pytest.raises(InputError, match=r"arrays of a block differ in length \(\[3, 50\]\)"):
        write_examples([{"cur_id": w["cur_id"], "target": w["target"][:3]}], tmp_path / "a.zarr")
    with pytest.raises(
        InputError, match=r"a block with arrays \['cur_id'\] after blocks with \['cur_id', 'target'\]"
    ):
        write_examples(
            [{"cur_id": w["cur_id"], "target": w["target"]}, {"cur_id": w["cur_id"]}], tmp_path / "b.zarr"
        )
    with pytest.raises(InputError, match=r"shape \(13,\) after blocks of \(12,\) \(array 'cur_id'\)"):
        write_examples([{"cur_id": w["cur_id"]}, {"cur_id": np.zeros((2, 13), int)}], tmp_path / "c.zarr")
    write_examples([{"cur_id": w["cur_id"]}], tmp_path / "d.zarr")
    with pytest.raises(InputError, match=r"d\.zarr: the store has no array 'past_id' \(it has: cur_id\)"):
        ZarrExamples(tmp_path / "d.zarr", names=["cur_id", "past_id"])
