"""Resident memory of training on examples streamed from zarr while the cohort grows 10x.

For each cohort size a fresh process writes ``subjects`` segments of ``rois x time`` (float32, written in blocks of
500, so the whole cohort is never in memory) with :func:`brainpipe.training.streaming.write_examples`, then trains
a small linear model for one epoch over :class:`~brainpipe.training.streaming.ZarrExamples` with
:func:`brainpipe.training.train`. Printed: store size, peak resident memory of the process (ru_maxrss) above its
level after the imports, and examples per second. Flat peak memory across sizes is the point.

    python bench/streaming_memory.py --subjects 1000 10000 --rois 400 --time 10

``--stage``: the real stage path instead (issue 17). For each cohort size a fresh process writes a ``roi_segments``
file of ``subjects`` x ``--per-subject`` segments (4 folds by subject), then another fresh process runs the
``pretrain_brainmae`` stage on it (4 encoders, a tiny network, ``--max-steps`` steps each), with
``streaming.enabled`` (``--mode streamed``), without (``--mode memory``) or both; printed: the file's size, the stage
process's peak resident memory above its level after the imports, and the stage's seconds.

    python bench/streaming_memory.py --stage --subjects 200 2000 --rois 400 --time 10 --mode both
    python bench/streaming_memory.py --stage --subjects 2000 --mode streamed --workers 2   # reads ahead in 2 workers

``--neuroformer``: Neuroformer pretraining (:func:`brainpipe.training.neuroformer.pretrain_neuroformer`, the stage's
library call) on a recording of ``--units`` Poisson units binned at 10 ms, ``--seconds`` long (each size in a fresh
process), with ``neuroformer.pretrain.streaming`` (``--mode streamed``), without (``memory``) or both. The counts are
built first and stay in memory in both modes (they are not streamed); printed: the counts' size, the peak resident
memory above the level after the imports and the counts (the token windows, the training), and the seconds.

    python bench/streaming_memory.py --neuroformer --seconds 2000 20000 --units 20 --mode both

``--finetune`` (with ``--neuroformer``): then fine-tune the pretrained model on every labelled train window (a slow
random-walk ``speed`` to decode; :func:`brainpipe.training.neuroformer.finetune_neuroformer` at fraction 1, with
``neuroformer.finetune.streaming`` in the streamed mode) and decode the validation and test windows; the peak then
covers both phases (pretraining's alone in brackets).

    python bench/streaming_memory.py --neuroformer --finetune --seconds 2000 20000 --units 20 --mode both
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


def make_segments(subjects: int, per_subject: int, rois: int, t: int, path: str) -> None:
    """A ``roi_segments`` file of ``subjects`` x ``per_subject`` random segments, 4 folds by subject."""
    import numpy as np
    import xarray as xr

    from brainpipe.data import make_provenance, write

    rng = np.random.default_rng(0)
    n = subjects * per_subject
    sub = np.repeat(np.arange(subjects), per_subject)
    fold = np.arange(subjects) % 4
    ds = xr.Dataset(
        {
            "signal": (("segment", "lag", "roi"), rng.standard_normal((n, t, rois), dtype=np.float32)),
            "segment_subject": ("segment", sub),
            "segment_start": ("segment", np.tile(np.arange(per_subject) * 10.0, subjects), {"units": "s"}),
            "segment_run": ("segment", np.array([f"sub-{s}" for s in sub])),
            "fold": ("subject", fold),
            "segment_fold": ("segment", fold[sub]),
            "label": ("subject", np.arange(subjects) % 2),
        },
        coords={
            "lag": ("lag", np.arange(t) * 1.0, {"units": "s"}),
            "roi": ("roi", np.array([f"r{i}" for i in range(rois)])),
            "subject": ("subject", np.array([f"s{i}" for i in range(subjects)])),
        },
        attrs={"repetition_time_s": 1.0, "segment_length_s": float(t), "classes": "a,b"},
    )
    write(ds, path, "roi_segments", make_provenance("bench_streaming_memory", seed=0))


def stage_one(path: str, streamed: bool, max_steps: int, folder: str, workers: int = 0) -> dict:
    """The pretrain_brainmae stage on ``path``, in this process: peak RSS above the imports, seconds."""
    import os
    import tempfile

    import torch

    from brainpipe.stages import pretrain_brainmae
    from brainpipe.training import streaming  # noqa: F401 - imported before the baseline

    torch.set_num_threads(1)
    tempfile.tempdir = folder
    base = _rss_mb()
    params = {
        "d_model": 16,
        "n_layers": 1,
        "n_heads": 2,
        "max_epochs": 1,
        "max_steps": max_steps,
        "batch_size": 32,
        "patience": None,
        "device": "cpu",
        "progress": False,
        "num_workers": workers,
    }
    if streamed:
        params["streaming"] = {"enabled": True, "chunk_segments": 256, "cache_chunks": 2}
    out = Path(folder)
    t0 = time.perf_counter()
    pretrain_brainmae.run({"clean": path}, {"weights": out / "w.pt", "fit": out / "fit.nc"}, params)
    return {
        "peak_rss_above_imports_mb": _rss_mb() - base,
        "seconds": time.perf_counter() - t0,
        "left_in_tmp": sum(name.startswith("brainmae-stream-") for name in os.listdir(folder)),
    }


def neuroformer_one(
    seconds: float, units: int, streamed: bool, max_steps: int, folder: str, finetune: bool = False
) -> dict:
    """Neuroformer pretraining (and with ``finetune``, fine-tuning on every labelled train window) on ``seconds``
    of ``units`` Poisson units, in this process: peak RSS above the imports and the counts, seconds, and what was
    left in the temporary folder."""
    import os
    import tempfile

    import numpy as np
    import torch
    import xarray as xr

    from brainpipe.training.neuroformer import pretrain_neuroformer

    torch.set_num_threads(1)
    tempfile.tempdir = folder
    os.environ["TMPDIR"] = folder
    n_bins = int(round(seconds / 0.01))
    rng = np.random.default_rng(0)
    y = np.empty((n_bins, units), np.int32)
    for lo in range(0, n_bins, 50_000):  # in blocks: no int64 copy of the whole recording raises the baseline
        y[lo : lo + 50_000] = rng.poisson(0.05, size=(min(50_000, n_bins - lo), units))
    data = {
        "counts": (("time", "unit"), y),
        "split": ("time", np.repeat(np.array([0, 1, 2, 0, 1, 2], np.int8), -(-n_bins // 6))[:n_bins]),
    }
    if finetune:  # a slow behaviour variable to decode (float32, like the counts a small part of memory)
        speed = np.cumsum(rng.normal(size=n_bins).astype(np.float32)) / 100
        data["behaviour"] = (("time", "behaviour_var"), speed[:, None])
    counts = xr.Dataset(
        data,
        coords={"time": (np.arange(n_bins) + 0.5) * 0.01, "unit": [f"u{i}" for i in range(units)]}
        | ({"behaviour_var": ["speed"]} if finetune else {}),
        attrs={"bin_width_s": 0.01},
    )
    counts_mb = counts["counts"].nbytes / 2**20
    base = _rss_mb()
    train = {"max_epochs": 1, "max_steps": max_steps, "batch_size": 64, "patience": None, "device": "cpu"}
    train["progress"] = False
    if streamed:
        train["streaming"] = {"enabled": True, "chunk_windows": 1024, "cache_chunks": 2}
    params = {
        "tokenizer": {
            "dt_s": 0.01,
            "window_s": 0.02,
            "past_window_s": 0.04,
            "block_size": 16,
            "past_block_size": 24,
        },
        "model": {"d_model": 16, "n_heads": 2, "n_layers": 1, "dropout": 0.0},
        "pretrain": train,
        "modalities": {},
        "seed": 0,
    }
    t0 = time.perf_counter()
    model = pretrain_neuroformer(counts, params)
    out = {"pretrain_peak_rss_mb": _rss_mb() - base, "pretrain_s": time.perf_counter() - t0}
    if finetune:
        from brainpipe.training.neuroformer import finetune_neuroformer, pretrained_dataset

        t1 = time.perf_counter()
        cfg = {k: v for k, v in train.items() if k != "streaming"}
        finetune_neuroformer(
            counts,
            pretrained_dataset(model),
            {"source": "behaviour", "variable": "speed"},
            cfg,
            fractions=[1.0],
            scratch=False,
            max_epoch_windows=max_steps * 64,
            min_epoch_windows=64,
            streaming=train.get("streaming"),
        )
        out["finetune_s"] = time.perf_counter() - t1
    return {
        "counts_mb": counts_mb,
        "peak_rss_above_counts_mb": _rss_mb() - base,
        "seconds": time.perf_counter() - t0,
        "left_in_tmp": sum(name.startswith("brainpipe-") for name in os.listdir(folder)),
        **out,
    }


def neuroformer_bench(args) -> None:
    modes = ["streamed", "memory"] if args.mode == "both" else [args.mode]
    head = "seconds counts_MB mode peak_RSS_above_imports_and_counts_MB pretrain_s"
    print(head + (" (pretraining alone: peak_MB) finetune_s" if args.finetune else ""))
    with tempfile.TemporaryDirectory() as folder:
        for sec in args.seconds:
            for mode in modes:
                job = Path(folder) / f"nf-{sec}-{mode}"
                job.mkdir()
                r = _child(
                    ["--nf-one", str(sec), "--units", str(args.units), "--mode", mode]
                    + ["--max-steps", str(args.max_steps), "--folder", str(job)]
                    + (["--finetune"] if args.finetune else [])
                )
                print(
                    f"{sec:g} {r['counts_mb']:.0f} {mode} {r['peak_rss_above_counts_mb']:.0f} {r['pretrain_s']:.1f}"
                    + (f" ({r['pretrain_peak_rss_mb']:.0f}) {r['finetune_s']:.1f}" if args.finetune else "")
                    + ("" if r["left_in_tmp"] == 0 else f" (left {r['left_in_tmp']} in tmp)")
                )


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def stage_bench(args) -> None:
    modes = ["streamed", "memory"] if args.mode == "both" else [args.mode]
    print("subjects segments file_MB mode peak_RSS_above_imports_MB stage_s")
    with tempfile.TemporaryDirectory() as folder:
        for n in args.subjects:
            path = str(Path(folder) / f"segments-{n}.nc")
            _child(
                ["--make", str(n), "--per-subject", str(args.per_subject), "--rois", str(args.rois)]
                + ["--time", str(args.time), "--folder", path]
            )
            size = Path(path).stat().st_size / 2**20
            for mode in modes:
                job = Path(folder) / f"job-{n}-{mode}"
                job.mkdir()
                r = _child(
                    ["--stage-one", path, "--mode", mode, "--max-steps", str(args.max_steps)]
                    + ["--folder", str(job), "--workers", str(args.workers)]
                )
                print(
                    f"{n} {n * args.per_subject} {size:.0f} {mode} {r['peak_rss_above_imports_mb']:.0f} "
                    f"{r['seconds']:.1f}"
                    + ("" if r["left_in_tmp"] == 0 else f" (left {r['left_in_tmp']} in tmp)")
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--rois", type=int, default=400)
    ap.add_argument("--time", type=int, default=10)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--stage", action="store_true", help="the pretrain_brainmae stage path (see above)")
    ap.add_argument("--mode", choices=["streamed", "memory", "both"], default="both")
    ap.add_argument("--per-subject", type=int, default=2, help="--stage: segments per subject")
    ap.add_argument("--max-steps", type=int, default=20, help="--stage: training steps per encoder")
    ap.add_argument(
        "--workers", type=int, default=0, help="--stage: DataLoader worker processes (num_workers)"
    )
    ap.add_argument("--make", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--stage-one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--neuroformer", action="store_true", help="Neuroformer pretraining (see above)")
    ap.add_argument(
        "--seconds", type=float, nargs="+", default=[2000.0, 20000.0], help="--neuroformer: lengths"
    )
    ap.add_argument("--units", type=int, default=20, help="--neuroformer: units")
    ap.add_argument("--nf-one", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--finetune", action="store_true", help="--neuroformer: fine-tune on every labelled window too"
    )
    args = ap.parse_args()
    if args.nf_one is not None:
        print(
            json.dumps(
                neuroformer_one(
                    args.nf_one,
                    args.units,
                    args.mode == "streamed",
                    args.max_steps,
                    args.folder,
                    args.finetune,
                )
            )
        )
        return
    if args.neuroformer:
        neuroformer_bench(args)
        return
    if args.make is not None:
        make_segments(args.make, args.per_subject, args.rois, args.time, args.folder)
        print("{}")
        return
    if args.stage_one is not None:
        print(
            json.dumps(
                stage_one(args.stage_one, args.mode == "streamed", args.max_steps, args.folder, args.workers)
            )
        )
        return
    if args.stage:
        stage_bench(args)
        return
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
