"""Neuroformer training throughput: tokens/s and model FLOP utilisation against a matmul peak measured in the
same run, on the device the training loop picks (CUDA when present, else CPU).

    PYTHONPATH=src python bench/neuroformer_throughput.py                  # default-study size (d=64, 2 layers)
    PYTHONPATH=src python bench/neuroformer_throughput.py --d-model 256 --n-layers 6 --block 100 --past-block 700

Model FLOPs per training step are counted analytically (forward: 2 FLOPs per multiply-add of every linear layer
and of the attention score/value products over the real sequence lengths; backward: twice the forward), so MFU =
(FLOPs per step x steps/s) / peak, with the peak from a large dense matmul in the same precision. Tokens/s counts
current-window token positions (block_size - 1 per example, PAD included: what the model computes on).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from brainpipe.models.neuroformer import NeuroformerNet, pretrain_loss
from brainpipe.training import autocast, resolve_device, resolve_precision


def matmul_peak(dev: torch.device, dtype: torch.dtype, n: int, seconds: float = 2.0) -> float:
    """FLOP/s of an n x n matmul (best of repeated timings)."""
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(dev)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        _sync(dev)
        best = max(best, 5 * 2 * n**3 / (time.perf_counter() - t0))
    return best


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def model_flops(
    d: int, L: int, P: int, M: int, n_layers: int, n_past: int, n_mod: int, n_id: int, n_dt: int
) -> float:
    """Forward FLOPs of one example: L current tokens, P past tokens, M modality tokens."""
    mlp = 2 * L * (2 * d * 4 * d)
    self_blk = (
        2 * L * 4 * d * d + 2 * 2 * L * L * d + mlp
    )  # q,k,v,o + scores/values (full, not causal-halved)
    cross = lambda m: 2 * L * 2 * d * d + 2 * m * 2 * d * d + 2 * 2 * L * m * d + mlp  # noqa: E731
    enc = n_mod * 2 * M * 2 * d * d
    heads = 2 * L * d * (n_id + n_dt)
    return n_layers * self_blk + n_past * cross(P) + n_mod * cross(M) + enc + heads


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-heads", type=int, default=4)
    ap.add_argument("--n-layers", type=int, default=2)
    ap.add_argument("--block", type=int, default=24)
    ap.add_argument("--past-block", type=int, default=64)
    ap.add_argument("--units", type=int, default=20)
    ap.add_argument("--n-dt", type=int, default=8)
    ap.add_argument("--modality-len", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument(
        "--peak-n", type=int, default=0, help="matmul size for the peak (0: 2048 on CPU, 8192 on CUDA)"
    )
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    prec = resolve_precision(a.precision, dev)
    torch.manual_seed(0)
    n_id, n_dt = a.units + 3, a.n_dt + 3
    net = NeuroformerNet(
        n_id, n_dt, a.block, a.past_block, [1], a.modality_len, a.d_model, a.n_heads, a.n_layers, dropout=0.0
    ).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    B = a.batch
    batch = (
        torch.randint(0, a.units, (B, a.block), device=dev),
        torch.randint(0, a.n_dt, (B, a.block), device=dev),
        torch.randint(0, a.units, (B, a.past_block), device=dev),
        torch.randint(0, a.n_dt, (B, a.past_block), device=dev),
        torch.randn(B, a.modality_len, 1, device=dev),
        torch.zeros(B, 1, device=dev),
    )

    def step():
        with autocast(dev, prec):
            loss = pretrain_loss(net, batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    _sync(dev)
    dt = (time.perf_counter() - t0) / a.steps
    L = a.block - 1
    fwd = model_flops(a.d_model, L, a.past_block, a.modality_len, a.n_layers, 1, 1, n_id, n_dt) * B
    dtype = torch.bfloat16 if prec == "bf16" else torch.float32
    peak = matmul_peak(dev, dtype, a.peak_n or (8192 if dev.type == "cuda" else 2048))
    res = {
        "device": str(dev)
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else f" ({a.threads} threads)"),
        "precision": prec,
        "params": sum(p.numel() for p in net.parameters()),
        "batch": B,
        "step_s": dt,
        "tokens_per_s": B * L / dt,
        "model_tflops_per_s": 3 * fwd / dt / 1e12,
        "matmul_peak_tflops_per_s": peak / 1e12,
        "mfu": 3 * fwd / dt / peak,
        "sdpa": F.scaled_dot_product_attention.__name__,
    }
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
