"""Resident memory of training on examples streamed from zarr while the cohort grows 10x.

For each cohort size a fresh process writes ``subjects`` segments of ``rois x time`` (float32, written in blocks of
500, so the whole cohort is never in memory) with :func:`brainpipe.training.streaming.write_examples`, then trains
a small linear model for one epoch over :class:`~brainpipe.training.streaming.ZarrExamples` with
:func:`brainpipe.training.train`. Printed: store size, peak resident memory of the process (ru_maxrss) above its
level after the imports, and examples per second. Flat peak memory across sizes is the point.

    python bench/streaming_memory.py --subjects 1000 10000 --rois 400 --time 10
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(subjects: int, rois: int, t: int, folder: str) -> dict:
    """One cohort size, in this process."""
    import numpy as np
    import torch
    from torch import nn

    from brainpipe.training import train
    from brainpipe.training.streaming import ZarrExamples, write_examples

    torch.set_num_threads(1)
    base = _rss_mb()
    rng = np.random.default_rng(0)

    def blocks():
        for start in range(0, subjects, 500):
            yield rng.normal(size=(min(500, subjects - start), rois, t)).astype(np.float32)

    store = write_examples(blocks(), Path(folder) / f"cohort-{subjects}.zarr", chunk_examples=256)
    size_mb = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**20
    ds = ZarrExamples(store, cache_chunks=2)
    torch.manual_seed(0)
    model = nn.Linear(rois * t, 1)

    def loss(m, batch):
        return (m(batch.reshape(len(batch), -1)) ** 2).mean()

    t0 = time.perf_counter()
    train(model, ds, loss, dict(max_epochs=1, batch_size=64, patience=None, device="cpu", progress=False))
    sec = time.perf_counter() - t0
    return {
        "subjects": subjects,
        "store_mb": size_mb,
        "peak_rss_above_imports_mb": _rss_mb() - base,
        "examples_per_s": subjects / sec,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--rois", type=int, default=400)
    ap.add_argument("--time", type=int, default=10)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.rois, args.time, args.folder)))
        return
    print("subjects store_MB peak_RSS_above_imports_MB examples/s")
    with tempfile.TemporaryDirectory() as folder:
        for n in args.subjects:
            out = (
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        str(n),
                        "--rois",
                        str(args.rois),
                        "--time",
                        str(args.time),
                        "--folder",
                        folder,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            r = json.loads(out)
            print(
                f"{r['subjects']} {r['store_mb']:.0f} {r['peak_rss_above_imports_mb']:.0f} {r['examples_per_s']:.0f}"
            )


if __name__ == "__main__":
    main()
