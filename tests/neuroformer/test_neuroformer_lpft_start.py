"""Neuroformer's probe-then-fine-tune option keeps the probe it started from when no epoch beats it on the
validation windows (issue 15: the starting checkpoint is one the validation loss chooses among; tiny sizes)."""

from __future__ import annotations

import numpy as np
import pytest

from brainpipe.models.neuroformer import Neuroformer
from neuroformer_tiny import TRAIN, tiny_params, tiny_pretrained

PARAMS = tiny_params(TRAIN, target={"source": "behaviour", "variable": "speed"})


@pytest.fixture(scope="module")
def pretrained():
    return tiny_pretrained(PARAMS)


def _lpft(counts, pre, lr):
    model = Neuroformer.from_dataset(pre, counts)
    model.finetune = dict(TRAIN, max_epochs=2, lr=lr)
    model.set_target(counts, PARAMS["target"])
    return model.fit_behaviour(counts, 0.5, mode="lpft", min_epoch_windows=64)


def test_lpft_keeps_the_probe_when_training_does_not_beat_it(pretrained):
    counts, pre = pretrained
    probe = Neuroformer.from_dataset(pre, counts)
    probe.set_target(counts, PARAMS["target"])
    probe.fit_behaviour(counts, 0.5, mode="probe")
    # a learning rate that wrecks the network: every epoch is worse than the probe it started from
    wrecked = _lpft(counts, pre, 0.5)
    assert wrecked.finetune_result_.best_epoch == -1 and wrecked.finetune_result_.steps > 0
    assert wrecked.validation_loss_ == pytest.approx(probe.validation_loss_, rel=1e-6)
    a, b = wrecked.net_.state_dict(), probe.net_.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    # a sane one that improves on the probe keeps its own best epoch
    sane = _lpft(counts, pre, 3e-3)
    assert sane.validation_loss_ <= probe.validation_loss_ + 1e-9
    if sane.finetune_result_.best_epoch >= 0:
        assert sane.validation_loss_ < probe.validation_loss_
