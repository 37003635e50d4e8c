"""Dynamic connectome (masked NTF) against its baselines on the same affinity tensor, over seeds and simulator
settings that do not share the model's defaults (issue 16).

Per scenario and seed: three animals simulated by ``calcium_communities`` (30 neurons, 3,000 frames at 10 Hz),
preprocessed, stacked into the affinity tensor (5 s windows, 2.5 s stride), the NTF fitted over ranks 2-5 with 3
restarts (rank by replicate stability), and the NTF and the baselines (static Louvain on the time-averaged affinity,
windowed Louvain with a consensus, NMF of the unfolded pair x (window x animal) matrix at the NTF's rank with the
missing entries filled by the other animals' mean, and the same NMF with them masked out of the loss) scored by
:func:`brainpipe.evaluate.connectome.connectome_metrics`. Also the Jaccard index of the *animal-specific* community
(the last one, where there is one) for the NTF and for static Louvain.

Scenarios: ``default`` (every animal shares network and epochs), ``specific`` (overlap 3, the last community
co-active in one animal only), ``differ`` (``specific`` and each animal's epoch boundaries moved by up to 20 % of an
epoch).

    python bench/ntf_baselines.py --seeds 0 1 2 3 4 --out bench/results/ntf_baselines.tsv
    python bench/ntf_baselines.py --seeds 0 1 2 3 4 --scenarios specific differ --rank-selection heldout
    python bench/ntf_baselines.py --seeds 0 1 2 3 4 --scenarios specific differ --rank-selection heldout \
        --heldout-block-windows 8
    python bench/ntf_baselines.py --seeds 0 1 2 3 4 --scenarios default specific differ --restarts 5 \
        --stability-of factors
    python bench/ntf_baselines.py --seeds 0 1 2 3 4 --scenarios default specific differ --community-method sbm
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

SCENARIOS = {
    "default": {},
    "specific": {"overlap": 3, "specific_communities": 1},
    "differ": {"overlap": 3, "specific_communities": 1, "epoch_jitter": 0.2},
}
KEYS = (
    "selected_rank",
    "rank_is_stable",
    "factor_match_score",
    "community_jaccard_mean",
    "epoch_peak_fraction",
    "static_louvain_community_jaccard_mean",
    "windowed_louvain_community_jaccard_mean",
    "nmf_community_jaccard_mean",
    "nmf_masked_community_jaccard_mean",
    "static_louvain_epoch_peak_fraction",
    "windowed_louvain_epoch_peak_fraction",
    "nmf_epoch_peak_fraction",
    "nmf_masked_epoch_peak_fraction",
    "community_jaccard_mean_vs_best_baseline",
    "epoch_peak_fraction_vs_best_baseline",
)


def run_one(
    params: dict,
    seed: int,
    rank_selection: str = "stability",
    restarts: int = 3,
    time_mode: str = "shared",
    heldout_block_windows: int = 0,
    stability_of: str = "communities",
    community_method: str = "louvain",
) -> dict[str, float]:
    from brainpipe.evaluate.connectome import connectome_metrics, merge_truths
    from brainpipe.evaluate.connectome_baselines import baseline_communities, match_communities
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
    fit = (
        DynamicConnectome(
            ranks=[2, 3, 4, 5],
            restarts=restarts,
            device="cpu",
            seed=0,
            rank_selection=rank_selection,
            time_mode=time_mode,
            heldout_block_windows=heldout_block_windows,
            stability_of=stability_of,
            community_method=community_method,
        )
        .fit(tensor)
        .to_dataset(tensor)
    )
    truth = merge_truths([s.truth for s in sims])
    m = {k: v for k, v in connectome_metrics(fit, tensor, truth).items() if k in KEYS}
    if params.get("specific_communities"):
        planted = truth["membership"].sel(neuron=[str(n) for n in fit["neuron"].values]).values.astype(bool)
        m["specific_jaccard_ntf"] = float(
            match_communities(fit["in_community"].values.astype(bool), planted)[0][-1]
        )
        static, _ = baseline_communities(tensor, "static_louvain")
        m["specific_jaccard_static_louvain"] = float(match_communities(static, planted)[0][-1])
        for b in ("nmf", "nmf_masked"):
            found, _ = baseline_communities(tensor, b, rank=int(fit.attrs["selected_rank"]))
            m[f"specific_jaccard_{b}"] = float(match_communities(found, planted)[0][-1])
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--rank-selection", choices=["stability", "heldout"], default="stability")
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--time-mode", choices=["shared", "per_animal"], default="shared")
    ap.add_argument("--heldout-block-windows", type=int, default=0)
    ap.add_argument("--stability-of", choices=["communities", "factors"], default="communities")
    ap.add_argument("--community-method", choices=["louvain", "sbm"], default="louvain")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for sc in args.scenarios:
        for seed in args.seeds:
            t0 = time.perf_counter()
            m = run_one(
                SCENARIOS[sc],
                seed,
                args.rank_selection,
                args.restarts,
                args.time_mode,
                args.heldout_block_windows,
                args.stability_of,
                args.community_method,
            )
            rows.append({"scenario": sc, "seed": seed, **m, "seconds": time.perf_counter() - t0})
            print(sc, seed, {k: round(v, 3) for k, v in m.items()}, flush=True)
    cols = ["scenario", "seed", *sorted({k for r in rows for k in r} - {"scenario", "seed"})]
    lines = ["\t".join(cols)] + [
        "\t".join(str(r.get(c, "")) if isinstance(r.get(c), str) else f"{r.get(c, np.nan):.4g}" for c in cols)
        for r in rows
    ]
    for sc in args.scenarios:
        sub = [r for r in rows if r["scenario"] == sc]
        for k in (
            "selected_rank",
            "community_jaccard_mean",
            "nmf_community_jaccard_mean",
            "nmf_masked_community_jaccard_mean",
            "community_jaccard_mean_vs_best_baseline",
            "specific_jaccard_ntf",
            "specific_jaccard_nmf",
            "specific_jaccard_nmf_masked",
            "epoch_peak_fraction",
            "epoch_peak_fraction_vs_best_baseline",
        ):
            if k not in sub[0]:
                continue
            v = np.array([r[k] for r in sub])
            print(
                f"{sc:9s} {k:42s} mean {v.mean():+.3f} sd {v.std(ddof=1) if len(v) > 1 else 0:.3f} min {v.min():+.3f}"
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
