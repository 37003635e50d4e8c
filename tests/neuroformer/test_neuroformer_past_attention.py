"""Neuroformer's cross-attention to the past tokens as a sigmoid attention (issue 15, `model.past_attention`): the
default (softmax) network is unchanged; with sigmoid the past spikes' weights are not normalised (they add), a padded
past token weighs nothing, the network trains, the setting survives a checkpoint and a bad value is one line."""

from __future__ import annotations

import math

import pytest
import torch

from brainpipe.errors import ConfigError
from brainpipe.models.neuroformer import Neuroformer, pretrain_loss
from neuroformer_tiny import assert_model_key_checked, tiny_net


def _batch(past_id=(5, 0, 1, 2, 7, 7), past_dt=(4, 0, 1, 3, 6, 6)):
    g = torch.Generator().manual_seed(0)
    cur_id, cur_dt = torch.randint(0, 5, (4, 9), generator=g), torch.randint(0, 4, (4, 9), generator=g)
    past_id, past_dt = (
        torch.tensor([list(past_id)] * 4),
        torch.tensor([list(past_dt)] * 4),
    )  # SOS, spikes, PAD
    return cur_id, cur_dt, past_id, past_dt, torch.randn(4, 5, 1, generator=g)


def _out(net, *b, **kw):
    with torch.no_grad():
        return net(*b, **kw)


def test_default_is_the_softmax_network_bit_for_bit():
    sm, sig = tiny_net(), tiny_net(past_attention="sigmoid")
    assert tiny_net().state_dict().keys() == tiny_net(past_attention="softmax").state_dict().keys()
    # the sigmoid network has one more parameter per past block (its bias); every other weight is the same draw
    assert set(sig.state_dict()) - set(sm.state_dict()) == {"past_blocks.0.attn.bias"}
    for k, v in sm.state_dict().items():
        assert torch.equal(v, sig.state_dict()[k]), k
    b = _batch()
    base = _out(sm, *b)
    assert torch.equal(base["id_logits"], _out(tiny_net(past_attention="softmax"), *b)["id_logits"])
    sw = _out(sm, *b, need_weights=True)["attention"]["past"][0]
    torch.testing.assert_close(sw.sum(-1), torch.ones_like(sw.sum(-1)))  # softmax: weights sum to 1
    w = _out(sig, *b, need_weights=True)
    assert not torch.allclose(base["id_logits"], w["id_logits"])
    ws = w["attention"]["past"][0]  # (batch, head, current, past)
    assert torch.all(ws[..., 4:] == 0) and torch.all(ws[..., :4] > 0)  # padding weighs exactly 0
    assert not torch.allclose(ws.sum(-1), torch.ones_like(ws.sum(-1)), atol=0.1)  # not normalised
    # the bias starts at -log(past_block_size): weights near sigmoid(-log 6) = 1/7 at initialisation
    assert sig.past_blocks[0].attn.bias.flatten().tolist() == pytest.approx([-math.log(6)] * 2)
    assert ws[..., :4].mean().item() == pytest.approx(1 / 7, abs=0.02)
    assert all(b.attn.kind == "softmax" for b in (*sig.blocks, *sig.mod_blocks))  # only the past changes


def test_sigmoid_padding_changes_nothing_and_spikes_add():
    net = tiny_net(past_attention="sigmoid")
    a = _out(net, *_batch())["id_logits"]
    # one more padded past token, or other dt tokens at the padded places: nothing changes (PAD weighs 0)
    torch.testing.assert_close(
        a, _out(net, *_batch(past_id=(5, 0, 1, 2, 7), past_dt=(4, 0, 1, 3, 6)))["id_logits"]
    )
    torch.testing.assert_close(a, _out(net, *_batch(past_dt=(4, 0, 1, 3, 2, 5)))["id_logits"])
    # a fourth spike in place of a PAD leaves the first three spikes' weights as they were (no normalisation)
    wa = _out(net, *_batch(), need_weights=True)["attention"]["past"][0]
    wb = _out(net, *_batch(past_id=(5, 0, 1, 2, 3, 7), past_dt=(4, 0, 1, 3, 3, 6)), need_weights=True)
    wb = wb["attention"]["past"][0]
    torch.testing.assert_close(wa[..., :4], wb[..., :4])
    sm = tiny_net()
    sa = _out(sm, *_batch(), need_weights=True)["attention"]["past"][0]
    sb = _out(sm, *_batch(past_id=(5, 0, 1, 2, 3, 7), past_dt=(4, 0, 1, 3, 3, 6)), need_weights=True)
    assert torch.all(sb["attention"]["past"][0][..., :4] < sa[..., :4])  # softmax: diluted by the new spike


def test_sigmoid_trains_a_step_and_caches_generation():
    net = tiny_net(past_attention="sigmoid").train()
    b = _batch()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    bias0 = net.past_blocks[0].attn.bias.detach().clone()
    loss = pretrain_loss(net, (*b, torch.zeros(4, 1)))["loss"]
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(
        bias0, net.past_blocks[0].attn.bias
    )  # the bias is learned
    net.eval()
    cur_id, cur_dt, past_id, past_dt, mod = b
    full = _out(net, *b)["id_logits"]
    with torch.no_grad():  # the key-value cached step uses the same sigmoid attention
        cache = net.init_cache(past_id, past_dt, mod)
        steps = [net.step(cur_id[:, t], cur_dt[:, t], cache)["id_logits"] for t in range(3)]
    torch.testing.assert_close(torch.stack(steps, 1), full[:, :3], atol=1e-5, rtol=1e-4)


def test_setting_survives_a_checkpoint_and_old_ones_load_as_softmax():
    from brainpipe.models import SpikeTokenizer
    from brainpipe.preprocess import bin_spikes
    from brainpipe.simulate import simulate

    counts = bin_spikes(simulate("poisson_glm_network", {"n_neurons": 4, "duration_s": 8}, seed=0).data, 0.01)
    tok = SpikeTokenizer(window_s=0.02, past_window_s=0.04, block_size=12, past_block_size=16)
    train = {"max_epochs": 1, "batch_size": 32, "patience": None, "device": "cpu", "progress": False}
    m = Neuroformer(tokenizer=tok, d_model=8, n_heads=2, n_layers=1, past_attention="sigmoid", train=train)
    m = m.fit(counts)
    assert m.net_.past_attention == "sigmoid" and math.isfinite(m.token_loss(counts, "validation"))
    back = Neuroformer.from_dataset(m.to_dataset(), counts)
    assert back.past_attention == "sigmoid" and back.net_.past_blocks[0].attn.kind == "sigmoid"
    torch.testing.assert_close(back.net_.past_blocks[0].attn.bias, m.net_.past_blocks[0].attn.bias)
    old = Neuroformer(tokenizer=tok, d_model=8, n_heads=2, n_layers=1, train=train).fit(counts).to_dataset()
    old.attrs["model_params"] = old.attrs["model_params"].replace(', "past_attention": "softmax"', "")
    assert "past_attention" not in old.attrs["model_params"]
    assert Neuroformer.from_dataset(old, counts).net_.past_attention == "softmax"  # from before the option


def test_a_bad_value_is_one_line_naming_the_key():
    assert_model_key_checked("past_attention", "linear", "sigmoid")
    with pytest.raises(ConfigError, match="past_attention") as e:
        Neuroformer(past_attention="relu")._check_params()
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="past_attention='relu' is not one of softmax, sigmoid"):
        tiny_net(past_attention="relu")
