"""BrainMAE against its best baselines over training seeds, on a cleaned ``roi_segments`` file of the study.

    python bench/brainmae_vs_baselines.py results/fmri/simcohort/clean.nc --truth results/fmri/simcohort/truth.nc \
        --seeds 0 1 2 --variant base --variant fixed_embeddings:'{"roi_embedding": "fixed"}'
    python bench/brainmae_vs_baselines.py results/fmri/nitime/clean.nc --seeds 0 1 2 \
        --model '{"mask_sampling": "uniform", "mask_ratio": 0.8}'
    python bench/brainmae_vs_baselines.py results/fmri/simcohort/clean.nc --truth results/fmri/simcohort/truth.nc \
        --variant segment --variant temporal:'{"temporal_encoder": "transformer"}' --features cls

The default study's BrainMAE model block (``config/config.yaml``, fmri.brainmae.model) with ``--model`` overrides;
every baseline of :func:`brainpipe.evaluate.fmri.baseline_metrics` and every metric of
:func:`brainpipe.evaluate.brainmae.score_encoders` (evaluation masks of the study: ratio 0.5, 20 patterns, seed 0),
one JSON line per (variant, seed), then the mean, SD and worst seed per variant
(:func:`brainpipe.evaluate.brainmae.over_seeds`). About 1-2 min per seed and variant on the simulated cohort on 2
idle cores. The same numbers come from the pipeline with ``fmri.brainmae.model.seeds``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import xarray as xr
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from brainpipe.evaluate import fmri  # noqa: E402
from brainpipe.evaluate.brainmae import over_seeds, pretrain_folds, score_encoders  # noqa: E402

KEYS = ("masked_nmse", "roi_embedding_ari", "probe_accuracy", "probe_r2", "n_seeds")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clean", help="a roi_segments .nc (results/fmri/<dataset>/clean.nc)")
    ap.add_argument("--truth", help="the simulator's truth.nc (planted modules)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--model", default="{}", help="JSON overrides of the model block")
    ap.add_argument("--variant", action="append", help="name or name:JSON overrides (default: base)")
    ap.add_argument(
        "--features",
        default="similarity",
        help="the probe's read-out (similarity, mean, cls, ...) or a JSON list: a grid chosen on validation folds",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    features = json.loads(args.features) if args.features.startswith("[") else args.features
    model = yaml.safe_load(open(ROOT / "config" / "config.yaml"))["fmri"]["brainmae"]["model"]
    model = dict(model, **json.loads(args.model), progress=False, device="cpu")
    ds = xr.load_dataset(args.clean)
    modules = None
    if args.truth:
        modules = xr.load_dataset(args.truth)["module"].sel(roi=ds["roi"].values).values
    base = fmri.baseline_metrics(ds, {"mask_ratio": 0.5, "n_patterns": 20, "seed": 0}, modules)
    print(json.dumps({"baselines": base}))
    for spec in args.variant or ["base"]:
        name, _, over = spec.partition(":")
        runs = {}
        for seed in args.seeds:
            t = time.time()
            models = pretrain_folds(ds, dict(model, **json.loads(over or "{}"), seed=seed))
            runs[seed] = score_encoders(ds, models, 0.5, 20, 0, features, base, modules)
            print(json.dumps({"variant": name, "seed": seed, "seconds": time.time() - t, **runs[seed]}))
        agg = over_seeds(runs)
        print(json.dumps({"variant": name, **{k: v for k, v in agg.items() if k.startswith(KEYS)}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
