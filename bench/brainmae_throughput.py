"""BrainMAE throughput and model FLOP utilisation against a matmul peak measured in the same run, and a
streaming-ingest memory check (memory must not grow with the number of subjects).

    python bench/brainmae_throughput.py --threads 2                 # CPU (shared machines: timings are rough)
    python bench/brainmae_throughput.py --realistic --profile 2     # 400 ROIs, d_model 256, 4 layers; top ops
    python bench/brainmae_throughput.py --realistic --reference     # the same with the original graph attention
    python bench/brainmae_throughput.py --device cuda               # GPU (bf16 autocast like the training loop)
    python bench/brainmae_throughput.py --ingest-subjects 1000      # 1,000 subjects x 1,200 TRs x 400 ROIs

Throughput: training steps (forward, backward, AdamW) of :class:`brainpipe.models.brainmae.BrainMAENet` on random
segments with the masked loss; FLOPs per step counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls
and attention; elementwise ops are not counted, so the utilisation is a model-FLOP utilisation). Peak: the best of
a few square matmuls of the same dtype on the same device. CPU time of the timed steps is split into user and system
time (system time is mostly page faults of large, short-lived allocations). ``--profile N`` prints the top ops of
N steps by self CPU time (``torch.profiler``); ``--reference`` mixes graph attention the original way (the
(batch, heads, R, R) weights renormalised per segment) for a before/after in one run; ``--compile`` times
``torch.compile`` of the network (and reports the compile time).

Ingest: writes ``--ingest-subjects`` ROI tables (``.npy``, float32, TRs x ROIs) to a temporary folder, then runs the
``ingest_fmri`` stage over them (one ``roi_timeseries`` file per subject) while sampling the process's resident
memory; reports the RSS after the first 10% of subjects and at the end. The stage streams: one subject in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from brainpipe.models.brainmae import (  # noqa: E402
    BrainMAEConfig,
    BrainMAENet,
    GraphAttention,
    pretrain_loss,
)
from brainpipe.training.device import autocast, resolve_device, resolve_precision  # noqa: E402


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(dev, dtype, n: int, reps: int = 10) -> tuple[float, float]:
    """The best FLOP/s of ``reps`` square matmuls over 3 tries: per second of wall time and per second of this
    process's CPU time (user + system; the second is what a loaded, shared machine cannot take away)."""
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    best, best_cpu = 0.0, 0.0
    for _ in range(3):
        sync(dev)
        u0, s0 = cpu_times()
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(dev)
        dt = time.perf_counter() - t0
        u1, s1 = cpu_times()
        best = max(best, 2 * n**3 * reps / dt)
        best_cpu = max(best_cpu, 2 * n**3 * reps / max(u1 - u0 + s1 - s0, 1e-9))
    return best, best_cpu


def cpu_times() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def profile_top(step, n_steps: int, rows: int = 15) -> list[dict]:
    """The ops of ``n_steps`` steps with the most self CPU time (torch.profiler), printed and returned."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n_steps):
            step()
    avg = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in avg) or 1.0
    top = sorted(avg, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    out = [
        {
            "op": e.key,
            "self_cpu_ms_per_step": e.self_cpu_time_total / 1e3 / n_steps,
            "share": e.self_cpu_time_total / total,
            "calls_per_step": e.count / n_steps,
        }
        for e in top
    ]
    print(f"top ops by self CPU time ({n_steps} steps; total {total / 1e3 / n_steps:.0f} ms a step):")
    for r in out:
        print(
            f"  {r['op']:<38} {r['self_cpu_ms_per_step']:9.1f} ms {r['share']:6.1%}  {r['calls_per_step']:6.0f} calls"
        )
    return out


def throughput(args, dev, prec) -> dict:
    cfg = BrainMAEConfig(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads)
    torch.manual_seed(0)
    net = BrainMAENet(args.rois, args.seg_len, cfg).to(dev)
    for m in net.modules():
        if isinstance(m, GraphAttention):
            m.fused = not args.reference
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(args.batch, args.seg_len, args.rois, device=dev)
    model = net
    compile_s = None
    if args.compile:
        model = torch.compile(net)

    def step():
        with autocast(dev, prec):
            loss = pretrain_loss(model, (x,))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    from torch.utils.flop_counter import FlopCounterMode

    graph = [m for m in net.modules() if isinstance(m, GraphAttention)]
    for m in graph:  # model FLOPs counted the same way for both formulations: the reference's
        m.fused = False
    with FlopCounterMode(display=False) as fc:
        with autocast(dev, prec):
            loss = pretrain_loss(net, (x,))["loss"]
        loss.backward()
    flops = fc.get_total_flops()
    for m in graph:
        m.fused = not args.reference
    opt.zero_grad(set_to_none=True)
    if args.compile:
        t0 = time.perf_counter()
        step()
        sync(dev)
        compile_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        step()
    sync(dev)
    u0, s0 = cpu_times()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(dev)
    dt = time.perf_counter() - t0
    u1, s1 = cpu_times()
    out = {
        "flops_per_step": flops,
        "steps_per_s": args.steps / dt,
        "segments_per_s": args.steps * args.batch / dt,
        "wall_s": dt,
        "user_s": u1 - u0,
        "system_s": s1 - s0,
        "n_params": sum(p.numel() for p in net.parameters()),
        "graph_attention": "reference" if args.reference else "fused",
        "compiled": bool(args.compile),
        "compile_s": compile_s,
    }
    if args.profile:
        out["profile"] = profile_top(step, args.profile)
    return out


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def ingest_memory(n_subjects: int, n_tr: int, n_roi: int, workdir: Path) -> dict:
    from brainpipe.stages import ingest_fmri

    src = workdir / "tables"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    block = rng.standard_normal((n_tr, n_roi)).astype(np.float32)
    t0 = time.perf_counter()
    for s in range(n_subjects):
        np.save(src / f"sub-{s + 1:04d}_timeseries.npy", np.roll(block, s, axis=0) + 0.01 * s)
    gen_s = time.perf_counter() - t0
    samples: list[tuple[float, int]] = []
    out = workdir / "roi"
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            n_done = len(list(out.glob("*.nc"))) if out.exists() else 0
            samples.append((rss_mb(), n_done))
            time.sleep(0.5)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    t0 = time.perf_counter()
    ingest_fmri.run({"source": str(src)}, {"roi": str(out)}, {"format": "table", "repetition_time_s": 0.72})
    ingest_s = time.perf_counter() - t0
    stop.set()
    th.join()
    early = [m for m, n in samples if 0 < n <= max(1, n_subjects // 10)] or [samples[0][0]]
    late = [m for m, n in samples if n >= n_subjects * 0.9] or [samples[-1][0]]
    return {
        "subjects": n_subjects,
        "trs": n_tr,
        "rois": n_roi,
        "data_gb": n_subjects * n_tr * n_roi * 4 / 1e9,
        "generate_s": gen_s,
        "ingest_s": ingest_s,
        "rss_mb_first_10pct": max(early),
        "rss_mb_last_10pct": max(late),
        "rss_mb_max": max(m for m, _ in samples),
        "files": len(list(out.glob("*.nc"))),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rois", type=int, default=100)
    p.add_argument("--seg-len", type=int, default=21, help="volumes per segment (15 s at TR 0.72 s = 21)")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--peak-n", type=int, default=1024)
    p.add_argument("--ingest-subjects", type=int, default=0, help="0: skip the ingest check")
    p.add_argument("--ingest-trs", type=int, default=1200)
    p.add_argument("--ingest-rois", type=int, default=400)
    p.add_argument(
        "--workdir", default=None, help="folder for the ingest check (default: a temporary folder)"
    )
    p.add_argument(
        "--realistic",
        action="store_true",
        help="the realistic size of issue 17: 400 ROIs, d_model 256, 4 layers, batch 32, 6 steps",
    )
    p.add_argument("--reference", action="store_true", help="graph attention mixed the original way")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--profile", type=int, default=0, help="profile this many steps (0: no profile)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.realistic:
        args.rois, args.d_model, args.n_layers, args.batch, args.steps, args.warmup = 400, 256, 4, 32, 6, 1
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    prec = resolve_precision(args.precision, dev)
    dtype = torch.bfloat16 if prec == "bf16" else torch.float32
    peak, peak_cpu = matmul_peak(dev, dtype, args.peak_n)
    res = throughput(args, dev, prec)
    cpu_s = res["user_s"] + res["system_s"]
    model_cpu = res["flops_per_step"] * args.steps / cpu_s  # model FLOPs per second of CPU time
    out = {
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "precision": prec,
        "threads": args.threads,
        "matmul_peak_tflops": peak / 1e12,
        **res,
        "model_tflops": res["flops_per_step"] * res["steps_per_s"] / 1e12,
        "mfu": res["flops_per_step"] * res["steps_per_s"] / peak,
        "matmul_peak_per_cpu_s_tflops": peak_cpu / 1e12,
        "model_tflops_per_cpu_s": model_cpu / 1e12,
        "mfu_cpu_time": model_cpu / peak_cpu,
        "config": {
            k: getattr(args, k) for k in ("rois", "seg_len", "d_model", "n_layers", "n_heads", "batch")
        },
        "load_1min": os.getloadavg()[0],
    }
    print(
        f"{out['device']} ({prec}, {args.threads} threads): {res['segments_per_s']:.0f} segments/s, "
        f"{out['model_tflops'] * 1e3:.2f} model GFLOP/s of a {peak / 1e9:.1f} GFLOP/s matmul peak = MFU {out['mfu']:.1%}"
        f" [{res['graph_attention']} graph attention{', compiled' if args.compile else ''}; "
        f"{res['wall_s']:.1f} s wall, {res['user_s']:.1f} s user + {res['system_s']:.1f} s system CPU; "
        f"load {os.getloadavg()[0]:.1f}]"
    )
    if dev.type == "cpu":
        print(
            f"per second of CPU time: {model_cpu / 1e9:.2f} model GFLOP of a {peak_cpu / 1e9:.1f} GFLOP matmul peak "
            f"= MFU {out['mfu_cpu_time']:.1%} (robust to other jobs on the machine)"
        )
    if res["compile_s"] is not None:
        print(f"compile + first step: {res['compile_s']:.1f} s")
    if args.ingest_subjects:
        wd = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="brainpipe-ingest-"))
        try:
            ing = ingest_memory(args.ingest_subjects, args.ingest_trs, args.ingest_rois, wd)
        finally:
            shutil.rmtree(wd, ignore_errors=True)
        out["ingest"] = ing
        print(
            f"ingest {ing['subjects']} subjects x {ing['trs']} TRs x {ing['rois']} ROIs ({ing['data_gb']:.2f} GB): "
            f"{ing['ingest_s']:.0f} s; RSS {ing['rss_mb_first_10pct']:.0f} MB after 10% -> {ing['rss_mb_last_10pct']:.0f} MB at the end"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
