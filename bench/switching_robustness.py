"""Switching-GLM robustness: simulators that do not share the model's defaults (other class means, weaker strengths
with no gap above zero, other links, another number of states), every variant fitted with the model's defaults
(no setting copied from the simulator), scored against the planted truth. Prints a markdown table of mean +- SD
over simulator seeds (results in bench/README.md).

    nice -n 5 .venv/bin/python bench/switching_robustness.py --seeds 0 1 --sequences 10
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from brainpipe.evaluate.switching import switching_metrics
from brainpipe.models.switching_glm import SwitchingGLM
from brainpipe.preprocess import bin_spikes
from brainpipe.simulate.base import get_generator
from brainpipe.simulate.switching_glm import SwitchingGLMParams

#: condition -> simulator parameters over its defaults (sigmoid link, class means 0.1/0.8/0.1, strengths 1-3,
#: 3 states); the model keeps its own defaults (softplus link, uniform class hyperprior, spike SD 0.05, 3 states)
CONDITIONS = {
    "simulator defaults": {},
    "dense classes 0.3/0.4/0.3": {"prior_mean": (0.3, 0.4, 0.3)},
    "sparse classes 0.05/0.9/0.05": {"prior_mean": (0.05, 0.9, 0.05)},
    "weak strengths 0.1-1.0 (no gap)": {"strength_min": 0.1, "strength_max": 1.0},
    "softplus link": {"link": "softplus", "bias_min": -2.5, "bias_max": -1.5},
    "exp link": {"link": "exp", "bias_min": -2.5, "bias_max": -1.5, "strength_max": 1.5},
    "2 planted states": {"n_states": 2},
}
VARIANTS = {
    "single": {"n_states": 1},
    "none": {},
    "gaussian": {"prior": "gaussian"},
    "onehot": {"prior": "onehot"},
}
COLUMNS = (
    ("bits vs single", "bits_vs_single"),
    ("bits vs none", "bits_vs_none"),
    ("bits vs planted", "bits_vs_oracle"),
    ("state acc", "state_accuracy"),
    ("weight r", "weight_corr"),
    ("adjacency BA", "adjacency_balanced_accuracy"),
    ("shared BA", "shared_adjacency_balanced_accuracy"),
    ("shared mean r", "shared_mean_corr"),
    ("shared TV", "shared_probs_tv"),
)


def run(condition: dict, seed: int, sequences: int) -> dict[str, dict[str, float]]:
    params = {"n_sequences": sequences, "n_test_sequences": 5, **condition}
    # the parameter class itself: simulate()'s parameter check takes prior_mean's tuple hint for a single number
    sim = get_generator("switching_glm_network").func(SwitchingGLMParams(**params), seed)
    counts = bin_spikes(sim.data, 0.02)
    fits, out = {}, {}
    for name, kw in VARIANTS.items():
        t = time.perf_counter()
        fits[name] = SwitchingGLM(device="cpu", **kw).fit(counts).to_dataset(counts)
        refs = {r: fits[r] for r in ("single", "none") if r in fits and r != name}
        out[name] = switching_metrics(fits[name], counts, sim.truth, refs)
        out[name]["fit_s"] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--sequences", type=int, default=10, help="training sequences of 1,000 bins")
    ap.add_argument("--conditions", nargs="*", default=list(CONDITIONS))
    args = ap.parse_args()
    print("| simulator | variant | " + " | ".join(h for h, _ in COLUMNS) + " | fit s |")
    print("|" + "---|" * (3 + len(COLUMNS)))
    for cond in args.conditions:
        per_seed = [run(CONDITIONS[cond], s, args.sequences) for s in args.seeds]
        for v in VARIANTS:
            cells = []
            for _, key in COLUMNS + (("", "fit_s"),):
                vals = np.array([r[v][key] for r in per_seed if key in r[v]], dtype=float)
                if vals.size == 0:
                    cells.append("")
                elif key == "fit_s":
                    cells.append(f"{vals.mean():.0f}")
                else:
                    cells.append(
                        f"{vals.mean():.3f} ± {vals.std():.3f}" if vals.size > 1 else f"{vals[0]:.3f}"
                    )
            print(f"| {cond} | {v} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
