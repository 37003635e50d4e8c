"""Non-negative CP by HALS: brainpipe's torch ``masked_ncp_hals`` against tensorly's ``non_negative_parafac_hals``
(numpy backend), from the same initial factors, timed to the same relative error.

Protocol (per tensor, median over ``--repeats`` runs, all in this one process so the ratios compare like with like):
1. tensorly runs ``--tl-iters`` outer iterations (tol=0, return_errors=True) from init = CPTensor((1, [U1, U2, U3]));
   its wall time and final relative error e_tl are recorded;
2. ours runs from the same U1, U2, U3 until its relative error is <= e_tl (``target_error``), float64 and float32
   on the CPU, and on CUDA when present; the time to reach e_tl is recorded;
3. ratio = tensorly time / our time (> 1: ours faster). Both relative errors are printed, with how our run ended
   (``target``: reached e_tl; ``stalled``: converged to a minimum above e_tl, detected after a restart of the
   extrapolation, see ``masked_ncp_hals``), the restarts, and the time per iteration of both.
4. ``--inits N`` repeats 1-3 from N different random starts (one repeat each after the first start's timing
   repeats): from one start, HALS with 3 and with 5 inner sweeps can converge to different local minima, so
   whether e_tl is reached is counted over starts.

Tensors: ``small`` 100 x 100 x 200 (a planted rank-8 non-negative CP plus 10 % non-negative noise), and ``worm``
the C. elegans-sized affinity tensor (140 neurons -> 9,730 pairs x 200 windows x 9 animals) built by the pipeline's
own simulator and affinity. Rank 8 for both.

    python bench/ntf_vs_tensorly.py                  # both tensors, 1 thread
    python bench/ntf_vs_tensorly.py --tensor small --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def small_tensor(rng: np.random.Generator, rank: int = 8) -> np.ndarray:
    factors = [rng.random((n, rank)) * (rng.random((n, rank)) > 0.3) for n in (100, 100, 200)]
    X = np.einsum("ir,jr,kr->ijk", *factors)
    return X + 0.1 * X.std() * np.abs(rng.standard_normal(X.shape))


def worm_tensor(n_neurons: int = 140, n_animals: int = 9, n_windows: int = 200) -> np.ndarray:
    from brainpipe.preprocess.affinity import AnimalTraces, build_tensor
    from brainpipe.preprocess.calcium import preprocess_calcium
    from brainpipe.simulate import simulate

    window, stride = 50, 25
    n_frames = window + stride * (n_windows - 1)
    params = {
        "n_neurons": n_neurons,
        "n_animals": n_animals,
        "n_communities": 6,
        "community_size": 12,
        "n_frames": n_frames,
        "present_fraction": 1.0,
    }
    animals = []
    for a in range(n_animals):
        sim = simulate("calcium_communities", {**params, "animal": a}, seed=0)
        p = preprocess_calcium(sim.data, window_s=60.0)
        animals.append(AnimalTraces(f"a{a}", p["dff"].values, [str(c) for c in p["cell"].values], 10.0))
    t = build_tensor(animals, window_s=window / 10.0, stride_s=stride / 10.0)
    return np.asarray(t["affinity"].values, dtype=np.float64)


def run_tensorly(X: np.ndarray, init: list[np.ndarray], rank: int, iters: int) -> tuple[float, float]:
    import tensorly as tl
    from tensorly.cp_tensor import CPTensor
    from tensorly.decomposition import non_negative_parafac_hals

    tl.set_backend("numpy")
    cp0 = CPTensor((np.ones(rank), [f.copy() for f in init]))
    t0 = time.perf_counter()
    cp, errors = non_negative_parafac_hals(X, rank, n_iter_max=iters, init=cp0, tol=0, return_errors=True)
    dt = time.perf_counter() - t0
    rel = float(np.linalg.norm(X - tl.cp_to_tensor(cp)) / np.linalg.norm(X))
    return dt, rel


def run_ours(
    X: np.ndarray, init: list[np.ndarray], rank: int, target: float, dtype: str, device: str, n_inner: int
):
    import torch

    from brainpipe.models.ncp import masked_ncp_hals

    dt_ = getattr(torch, dtype)
    Xt = torch.as_tensor(X, dtype=dt_, device=device)
    ini = [torch.as_tensor(f, dtype=dt_, device=device) for f in init]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = masked_ncp_hals(Xt, rank, init=ini, n_iter_max=5000, target_error=target, n_inner=n_inner)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    rel = float(torch.linalg.norm(Xt.double() - res.to_tensor().double()) / torch.linalg.norm(Xt.double()))
    return dt, rel, res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tensor", choices=["small", "worm", "both"], default="both")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument(
        "--tl-iters", type=int, default=50, help="tensorly outer iterations (defines the target error)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inits", type=int, default=1, help="random starts (reached counted over them)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    rng = np.random.default_rng(args.seed)
    names = ["small", "worm"] if args.tensor == "both" else [args.tensor]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"threads={args.threads} rank={args.rank} tensorly iterations={args.tl_iters} repeats={args.repeats} "
        f"torch={torch.__version__} cuda={torch.cuda.is_available()}"
    )
    for name in names:
        t0 = time.perf_counter()
        X = small_tensor(rng, args.rank) if name == "small" else worm_tensor()
        print(
            f"\n[{name}] tensor {X.shape} ({X.size / 1e6:.1f} M entries) built in {time.perf_counter() - t0:.1f} s"
        )
        scale = (np.linalg.norm(X) / np.sqrt(args.rank)) ** (1 / 3) / np.sqrt(np.mean(X.shape))
        configs = [("float64", "cpu", 5), ("float64", "cpu", 3), ("float32", "cpu", 3)]
        configs += [("float32", "cuda", 3)] if "cuda" in devices else []
        reached = {c: 0 for c in configs}
        for start in range(args.inits):
            init = [rng.random((n, args.rank)) * scale for n in X.shape]
            repeats = args.repeats if start == 0 else 1
            tl_times, tl_err = [], None
            for _ in range(repeats):
                dt, tl_err = run_tensorly(X, init, args.rank, args.tl_iters)
                tl_times.append(dt)
            t_tl = statistics.median(tl_times)
            print(
                f"  start {start}: tensorly numpy HALS: {t_tl:8.3f} s for {args.tl_iters} iterations "
                f"({1e3 * t_tl / args.tl_iters:.1f} ms/it), relative error {tl_err:.6f}"
            )
            for dtype, device, n_inner in configs:
                times, err, res = [], None, None
                for _ in range(repeats):
                    dt, err, res = run_ours(X, init, args.rank, tl_err, dtype, device, n_inner)
                    times.append(dt)
                t = statistics.median(times)
                reached[(dtype, device, n_inner)] += res.stop == "target"
                print(
                    f"    ours torch {dtype:7s} {device:4s} n_inner={n_inner}: {t:8.3f} s for {res.n_iter:4d} "
                    f"iterations ({1e3 * t / res.n_iter:.1f} ms/it) to error {err:.6f} [{res.stop}, "
                    f"{res.n_restarts} restarts]  -> speed-up x{t_tl / t:.1f}"
                )
        for (dtype, device, n_inner), k in reached.items():
            print(
                f"  {dtype} {device} n_inner={n_inner}: reached tensorly's error from {k} of {args.inits} starts"
            )


if __name__ == "__main__":
    main()
