"""BrainMAE's fused graph attention (issue 17, training speed) computes what the original formulation computed.

The fused mixing (:meth:`GraphAttention._mix`: one (R, R) @ (R, batch * d_h) matmul per head, hidden ROIs removed
by zeroing their values and dividing by the attention mass left) replaced the renormalised (batch, heads, R, R)
weights of :meth:`GraphAttention._mix_reference`; outputs and gradients must agree to float rounding, for every
graph kind, with and without self-loops, masks that leave a row no visible source, and under bf16 autocast.
"""

from __future__ import annotations

import pytest
import torch

from brainpipe.models.brainmae import BrainMAEConfig, BrainMAENet, GraphAttention, pretrain_loss, random_mask


def _set_fused(net: torch.nn.Module, fused: bool) -> None:
    for m in net.modules():
        if isinstance(m, GraphAttention):
            m.fused = fused


def _hidden(batch: int, n_rois: int) -> torch.Tensor:
    hidden = random_mask(batch, n_rois, 0.5, "cpu")
    hidden[0] = True
    hidden[0, 0] = False  # one visible ROI: without self-loops its own row has no source left
    hidden[1] = False  # nothing hidden
    return hidden


@pytest.mark.parametrize("graph", ["embedding", "projected"])
@pytest.mark.parametrize("self_loops", [False, True])
@pytest.mark.parametrize("masked", [True, False])
def test_fused_graph_attention_equals_the_reference(graph, self_loops, masked):
    torch.manual_seed(0)
    ga = GraphAttention(12, 3, self_loops=self_loops, graph=graph)
    B, R = 6, 9
    h = torch.randn(B, R, 12, requires_grad=True)
    emb = torch.randn(R, 12, requires_grad=True)
    hidden = _hidden(B, R) if masked else None
    out, grads = {}, {}
    for fused in (True, False):
        ga.fused = fused
        ga.zero_grad()
        h.grad = emb.grad = None
        y = ga(h, emb, hidden)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        out[fused] = y.detach()
        grads[fused] = [h.grad.clone(), emb.grad.clone()] + [p.grad.clone() for p in ga.parameters()]
    torch.testing.assert_close(out[True], out[False], rtol=1e-5, atol=1e-6)
    for g_fused, g_ref in zip(grads[True], grads[False], strict=True):
        torch.testing.assert_close(g_fused, g_ref, rtol=1e-4, atol=1e-6)
    if masked and not self_loops:  # the row with no source left is zero (as the reference's clamped sum gave)
        assert torch.all(out[True][0, 0] == ga.o.bias.detach())


def test_fused_network_loss_and_gradients_equal_the_reference():
    """The whole pretraining step (graph and self-attention blocks, masks from the global RNG) on a small network."""
    cfg = BrainMAEConfig(d_model=16, n_heads=4, n_layers=2, attention="both")
    torch.manual_seed(0)
    net = BrainMAENet(10, 7, cfg)
    x = torch.randn(8, 7, 10)
    results = {}
    for fused in (True, False):
        _set_fused(net, fused)
        net.zero_grad()
        torch.manual_seed(1)  # the same masks
        loss = pretrain_loss(net, (x,))["loss"]
        loss.backward()
        results[fused] = (loss.detach(), [p.grad.clone() for p in net.parameters()])
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-6, atol=1e-7)
    for g_fused, g_ref in zip(results[True][1], results[False][1], strict=True):
        torch.testing.assert_close(g_fused, g_ref, rtol=1e-4, atol=1e-6)


def test_fused_graph_attention_under_bf16_autocast():
    """bf16 autocast (the GPU training precision; CPU autocast here): the fused mixing stays within bf16 rounding of
    the float32 reference, and the attention mass is summed in float32."""
    torch.manual_seed(0)
    ga = GraphAttention(16, 2, self_loops=False)
    h, emb = torch.randn(4, 11, 16), torch.randn(11, 16)
    hidden = _hidden(4, 11)
    with torch.no_grad():
        ga.fused = False
        ref = ga(h, emb, hidden)
        ga.fused = True
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ga(h, emb, hidden)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=5e-2, atol=5e-2)


@pytest.mark.gpu
def test_fused_brainmae_on_cuda_with_bf16_matches_fp32():
    """On CUDA: a training step under bf16 autocast (fused graph attention, SDPA self-attention) runs, and its
    reconstruction is within bf16 rounding of the float32 one."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cfg = BrainMAEConfig(d_model=64, n_heads=4, n_layers=2, attention="both")
    torch.manual_seed(0)
    net = BrainMAENet(50, 21, cfg).cuda()
    x = torch.randn(16, 21, 50, device="cuda")
    mask = random_mask(16, 50, 0.5, x.device)
    with torch.no_grad():
        ref = net(x, mask)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = net(x, mask)
    torch.testing.assert_close(out.float(), ref, rtol=5e-2, atol=5e-2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = pretrain_loss(net, (x,))["loss"]
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in net.parameters())
