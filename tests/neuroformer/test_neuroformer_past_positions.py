"""Neuroformer's past tokens without their sequence-position embedding (issue 15, `model.past_positions`): the
network with the option on (the default) is unchanged; off, a past token's rank no longer matters, only its
neuron and dt token, and the setting survives a checkpoint."""

from __future__ import annotations

import torch

from brainpipe.models.neuroformer import Neuroformer
from neuroformer_tiny import assert_model_key_checked, tiny_net


def _batch():
    g = torch.Generator().manual_seed(0)
    cur_id, cur_dt = torch.randint(0, 5, (4, 9), generator=g), torch.randint(0, 4, (4, 9), generator=g)
    past_id = torch.tensor([[5, 0, 1, 2, 7, 7]] * 4)  # SOS, three spikes, PAD
    past_dt = torch.tensor([[4, 0, 1, 3, 6, 6]] * 4)
    return cur_id, cur_dt, past_id, past_dt, torch.randn(4, 5, 1, generator=g)


def _logits(net, cur_id, cur_dt, past_id, past_dt, mod):
    with torch.no_grad():
        return net(cur_id, cur_dt, past_id, past_dt, mod)["id_logits"]


def test_default_keeps_positions_and_the_same_weights():
    on, off = tiny_net(), tiny_net(past_positions=False)
    for k, v in on.state_dict().items():  # the same parameters and initialisation: old checkpoints load
        assert torch.equal(v, off.state_dict()[k]), k
    b = _batch()
    base = _logits(on, *b)
    assert not torch.allclose(base, _logits(off, *b))
    with torch.no_grad():
        on.pos_past.add_(1.0)
        off.pos_past.add_(1.0)
    assert not torch.allclose(base, _logits(on, *b))  # on: the positions are read
    assert torch.equal(_logits(off, *b), _logits(tiny_net(past_positions=False), *b))  # off: never read


def test_without_positions_a_spikes_rank_does_not_matter():
    net, (cur_id, cur_dt, past_id, past_dt, mod) = tiny_net(past_positions=False), _batch()
    # the same three spikes (neuron, dt) in another order of the past sequence
    perm = torch.tensor([0, 3, 1, 2, 4, 5])
    a = _logits(net, cur_id, cur_dt, past_id, past_dt, mod)
    b = _logits(net, cur_id, cur_dt, past_id[:, perm], past_dt[:, perm], mod)
    assert torch.allclose(a, b, atol=1e-5)
    on = tiny_net()
    assert not torch.allclose(
        _logits(on, cur_id, cur_dt, past_id, past_dt, mod),
        _logits(on, cur_id, cur_dt, past_id[:, perm], past_dt[:, perm], mod),
        atol=1e-5,
    )


def test_setting_survives_a_checkpoint(tmp_path):
    from brainpipe.models import SpikeTokenizer
    from brainpipe.preprocess import bin_spikes
    from brainpipe.simulate import simulate

    counts = bin_spikes(simulate("poisson_glm_network", {"n_neurons": 4, "duration_s": 8}, seed=0).data, 0.01)
    tok = SpikeTokenizer(window_s=0.02, past_window_s=0.04, block_size=12, past_block_size=16)
    train = {"max_epochs": 1, "batch_size": 32, "patience": None, "device": "cpu", "progress": False}
    m = Neuroformer(tokenizer=tok, d_model=8, n_heads=2, n_layers=1, past_positions=False, train=train).fit(
        counts
    )
    assert m.net_.past_positions is False
    back = Neuroformer.from_dataset(m.to_dataset(), counts)
    assert back.past_positions is False and back.net_.past_positions is False
    old = m.to_dataset()
    old.attrs["model_params"] = old.attrs["model_params"].replace(', "past_positions": false', "")
    assert (
        Neuroformer.from_dataset(old, counts).net_.past_positions is True
    )  # a checkpoint from before the option


def test_a_bad_setting_is_one_line_naming_the_key():
    assert_model_key_checked("past_positions", "no", False)  # a boolean is accepted
