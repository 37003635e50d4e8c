"""NTF connectome factors related to behaviour, shared vs per-animal time modes, against the baselines (issue 16).

Per scenario and seed: three animals simulated by ``calcium_communities`` (30 neurons, 3,000 frames at 10 Hz, 3
communities; behaviour ``running`` (0/1) following community 0's epoch and ``speed`` following community 1's, on a
20 Hz clock, in each animal's own epoch timing), preprocessed, stacked into the affinity tensor (5 s windows, 2.5 s
stride); the NTF fitted with ``time_mode`` shared and per_animal (ranks 2-5, 3 restarts, rank by replicate
stability); every time course related to each behaviour variable per animal
(:mod:`brainpipe.evaluate.connectome_behaviour`: window means, AUROC for running, Pearson r for speed, mean over the
animals, best component; p from 200 circular shifts) for the NTF and for the baselines' per-animal time courses
(static and windowed Louvain's within-community affinity in each animal, NMF filled / masked activations per
animal).

Scenarios: ``jitter`` (each animal's epoch boundaries moved by up to 30 % of an epoch: behaviour not time-locked
across animals), ``locked`` (no jitter), ``shuffled`` (each animal's communities co-active in an order of its own:
freely behaving animals whose epochs do not line up at all).

    python bench/ntf_behaviour.py --seeds 0 1 2 3 4 --scenarios jitter locked --out bench/results/ntf_behaviour.tsv
    python bench/ntf_behaviour.py --seeds 0 1 2 3 4 --scenarios shuffled
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

SCENARIOS = {"jitter": {"epoch_jitter": 0.3}, "locked": {}, "shuffled": {"shuffle_epochs": True}}
VARS = ("running_auroc", "speed_r")


def run_one(params: dict, seed: int, time_mode: str, restarts: int = 3) -> dict[str, float]:
    from brainpipe.evaluate.connectome import animal_behaviour, connectome_metrics
    from brainpipe.models.connectome import DynamicConnectome
    from brainpipe.preprocess.affinity import AnimalTraces, build_tensor
    from brainpipe.preprocess.calcium import preprocess_calcium
    from brainpipe.simulate import simulate

    base = {"n_neurons": 30, "n_frames": 3000, "n_animals": 3, **params}
    sims = [simulate("calcium_communities", {**base, "animal": a}, seed=seed) for a in range(3)]
    procs = [preprocess_calcium(s.data, window_s=60) for s in sims]
    animals = [
        AnimalTraces(f"a{k}", p["dff"].values, [str(c) for c in p["cell"].values], 10.0)
        for k, p in enumerate(procs)
    ]
    tensor = build_tensor(animals, window_s=5.0, stride_s=2.5)
    model = DynamicConnectome(
        ranks=[2, 3, 4, 5], restarts=restarts, device="cpu", seed=0, time_mode=time_mode
    )
    fit = model.fit(tensor).to_dataset(tensor)
    m = connectome_metrics(fit, tensor, None, behaviour=[animal_behaviour(p) for p in procs])
    out = {"selected_rank": float(fit.attrs["selected_rank"])}
    out.update({k[len("behaviour_") :]: v for k, v in m.items() if k.startswith("behaviour_")})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--scenarios", nargs="+", default=["jitter"], choices=list(SCENARIOS))
    ap.add_argument(
        "--time-modes", nargs="+", default=["shared", "per_animal"], choices=["shared", "per_animal"]
    )
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for sc in args.scenarios:
        for seed in args.seeds:
            for mode in args.time_modes:
                t0 = time.perf_counter()
                m = run_one(SCENARIOS[sc], seed, mode, args.restarts)
                rows.append(
                    {
                        "scenario": sc,
                        "time_mode": mode,
                        "seed": seed,
                        **m,
                        "seconds": time.perf_counter() - t0,
                    }
                )
                print(
                    sc,
                    mode,
                    seed,
                    {
                        k: round(v, 3)
                        for k, v in m.items()
                        if k.endswith(("_ntf", "_best_baseline", "_p", "rank"))
                    },
                    flush=True,
                )
    cols = [
        "scenario",
        "time_mode",
        "seed",
        *sorted({k for r in rows for k in r} - {"scenario", "time_mode", "seed"}),
    ]
    lines = ["\t".join(cols)] + [
        "\t".join(str(r.get(c, "")) if isinstance(r.get(c), str) else f"{r.get(c, np.nan):.4g}" for c in cols)
        for r in rows
    ]
    for sc in args.scenarios:
        for mode in args.time_modes:
            sub = [r for r in rows if r["scenario"] == sc and r["time_mode"] == mode]
            for var in VARS:
                for who in ("ntf", "best_baseline", "ntf_vs_best_baseline", "ntf_p"):
                    v = np.array([r.get(f"{var}_{who}", np.nan) for r in sub])
                    sd = np.nanstd(v, ddof=1) if len(v) > 1 else 0.0
                    per = " ".join(f"{x:+.3f}" for x in v)
                    print(
                        f"{sc:7s} {mode:10s} {var}_{who:22s} mean {np.nanmean(v):+.3f} sd {sd:.3f}  [{per}]"
                    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
