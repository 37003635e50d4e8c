"""Peak memory of the connectome tensor build: chunked zarr (``write_tensor_zarr``, bounded by ``memory_mb``)
against the in-memory ``build_tensor``, on synthetic AR(1) traces (no preprocessing).

    python bench/tensor_memory.py zarr --memory-mb 32      # run each mode in its own process (peak RSS is per process)
    python bench/tensor_memory.py memory
    python bench/tensor_memory.py zarr --neurons 1000 --frames 100000 --animals 1   # the issue's scale (slow)
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from brainpipe.data import make_provenance
from brainpipe.data.affinity_tensor import write_tensor_zarr
from brainpipe.preprocess.affinity import AnimalTraces, build_tensor


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["zarr", "memory"])
    ap.add_argument("--neurons", type=int, default=300)
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--animals", type=int, default=2)
    ap.add_argument("--memory-mb", type=float, default=32.0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    animals = []
    for a in range(args.animals):
        s = (rng.random((args.frames, args.neurons)) < 0.02).astype(np.float32)
        c = lfilter([1.0], [1.0, -0.9], s, axis=0).astype(np.float32)
        c += 0.1 * rng.standard_normal(c.shape).astype(np.float32)
        animals.append(AnimalTraces(f"a{a}", c, [f"n{i:04d}" for i in range(args.neurons)], 10.0))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if args.mode == "zarr":
        with tempfile.TemporaryDirectory() as d:
            write_tensor_zarr(
                Path(d) / "t.zarr", animals, make_provenance("bench", {}), memory_mb=args.memory_mb
            )
    else:
        build_tensor(animals)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pairs = args.neurons * (args.neurons - 1) // 2
    n_win = (args.frames - 50) // 25 + 1
    print(
        f"{args.mode}: tensor {pairs} pairs x {n_win} windows x {args.animals} animals = "
        f"{pairs * n_win * args.animals * 4 / 2**20:.0f} MiB float32; traces {base:.0f} MiB peak before the build, "
        f"{peak:.0f} MiB after (+{peak - base:.0f} MiB); {time.perf_counter() - t0:.1f} s"
    )


if __name__ == "__main__":
    main()
