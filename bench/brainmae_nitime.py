"""BrainMAE on a short single-subject recording (issue 15): per outer fold and training seed, the masked-ROI NMSE on
the validation and the test fold, the training NMSE and best epoch, against the reconstruction baselines of the same
fold, for one or more model settings.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/brainmae_nitime.py results/fmri/nitime/clean.nc \
        --setting none:'{}' --setting volume:'{"linear_path": "volume"}' --folds 0 1 2 3 --seeds 0 1 2
    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/brainmae_nitime.py results/fmri/nitime/clean.nc \
        --folds 0 1 2 3 --seeds 0 --lags 0 1 2 --setting volume:'{"linear_path": "volume"}'

Encoder ``k`` trains on the folds other than ``k`` and ``(k + 1) % K``, stops early on ``(k + 1) % K`` and is scored on
fold ``k`` (the pipeline scores fold 0 only), with the study's evaluation masks (ratio 0.5, 20 patterns, seed 0); the
baselines (:func:`brainpipe.evaluate.fmri.reconstruction_baselines`) are fitted on the same training folds. The model
block is the default study's (config/config.yaml, fmri.brainmae.model) with each setting's JSON overrides. One JSON
line per (setting, fold, seed), then the mean and SD over seeds of the test NMSE minus the best baseline's per
setting. About 2-10 s per fit on nitime (one core; longer with more epochs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from brainpipe.evaluate import fmri  # noqa: E402
from brainpipe.models.brainmae import BrainMAE  # noqa: E402


def _lagged_ridge(X, tr, te, groups, lag: int) -> float:
    """Test NMSE of a per-mask ridge of the hidden ROIs at volume t on the visible ROIs at t-lag..t+lag (clipped at
    the segment's ends), its penalty by grouped inner CV (:func:`brainpipe.evaluate.fmri.tuned_ridge`)."""
    X = np.asarray(X, dtype=np.float64)
    L = X.shape[1]
    pat, index = fmri.eval_masks(int(te.sum()), X.shape[2], 0.5, 20, 0)

    def lagged(Z):
        return np.concatenate(
            [Z[:, np.clip(np.arange(L) + s, 0, L - 1)] for s in range(-lag, lag + 1)], axis=2
        )

    pred = X[te].copy()
    for p, hid in enumerate(pat):
        sel = index == p
        A, B, An = lagged(X[tr][:, :, ~hid]), X[tr][:, :, hid], lagged(X[te][sel][:, :, ~hid])
        out, _ = fmri.tuned_ridge(
            A.reshape(-1, A.shape[2]),
            B.reshape(-1, B.shape[2]),
            np.repeat(groups[tr], L),
            An.reshape(-1, An.shape[2]),
        )
        block = pred[sel]
        block[:, :, hid] = out.reshape(int(sel.sum()), L, -1)
        pred[sel] = block
    return fmri.nmse(X[te], pred, pat[index])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clean", help="a roi_segments .nc split in time blocks (results/fmri/nitime/clean.nc)")
    ap.add_argument(
        "--setting", action="append", help="name:JSON overrides of the model block (default: base:{})"
    )
    ap.add_argument("--folds", type=int, nargs="+", default=[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--lags",
        type=int,
        nargs="*",
        default=[],
        help="also a ridge of the hidden ROIs on the visible ROIs at volumes t-l..t+l for each l given (0: the "
        "same-volume ridge), penalty by the baselines' inner CV: is there temporal information to learn?",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = yaml.safe_load(open(ROOT / "config" / "config.yaml"))["fmri"]["brainmae"]["model"]
    model = dict(model, progress=False, device="cpu")
    settings = [s.split(":", 1) if ":" in s else (s, "{}") for s in (args.setting or ["base:{}"])]
    ds = xr.load_dataset(args.clean)
    X = np.asarray(ds["signal"].values, dtype=np.float32)
    groups = fmri.segment_groups(ds)
    gaps: dict[str, list[float]] = {}
    for k in args.folds:
        tr, va, te = fmri.fold_split(ds, k)
        masks = {
            n: fmri.eval_masks(int(s.sum()), X.shape[2], 0.5, 20, 0) for n, s in (("val", va), ("test", te))
        }
        base = {
            n: fmri.reconstruction_baselines(X[tr], X[s], *masks[n], groups[tr])
            for n, s in (("val", va), ("test", te))
        }
        print(
            json.dumps(
                {
                    "fold": k,
                    **{
                        f"{n}_{b}": round(v[b], 4)
                        for n, v in base.items()
                        for b in ("nmse_mean_fill", "nmse_ridge_volume", "nmse_ridge", "nmse_pca")
                    },
                }
            ),
            flush=True,
        )
        for lag in args.lags:
            print(
                json.dumps(
                    {
                        "fold": k,
                        "lag": lag,
                        "test_nmse_lagged_ridge": round(_lagged_ridge(X, tr, te, groups, lag), 4),
                    }
                )
            )
        tm = fmri.eval_masks(int(tr.sum()), X.shape[2], 0.5, 20, 0)
        for name, over in settings:
            for sd in args.seeds:
                t0 = time.time()
                m = BrainMAE(**dict(model, **json.loads(over), seed=sd)).fit(X[tr], X[va])
                row = {"setting": name, "fold": k, "seed": sd}
                for n, s in (("val", va), ("test", te)):
                    p, i = masks[n]
                    row[f"{n}_nmse"] = round(fmri.nmse(X[s], m.reconstruct(X[s], p[i]), p[i]), 4)
                row["train_nmse"] = round(
                    fmri.nmse(X[tr], m.reconstruct(X[tr], tm[0][tm[1]]), tm[0][tm[1]]), 4
                )
                row["test_vs_best"] = round(row["test_nmse"] - base["test"]["nmse_best_baseline"], 4)
                row.update(
                    best_epoch=m.best_epoch_, linear_alpha=m.linear_alpha_, seconds=round(time.time() - t0, 1)
                )
                gaps.setdefault(f"{name} fold {k}", []).append(row["test_vs_best"])
                print(json.dumps(row), flush=True)
    for key, v in gaps.items():
        print(
            f"{key}: test NMSE - best baseline {np.mean(v):+.4f} +- {np.std(v, ddof=1) if len(v) > 1 else 0:.4f} "
            f"over seeds {args.seeds}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
