"""Switching-GLM robustness: simulators that do not share the model's defaults (other class means, weaker strengths
with no gap above zero, other links, another number of states), every variant fitted with the model's defaults
(no setting copied from the simulator), scored against the planted truth. Prints a markdown table of mean +- SD
over simulator seeds (results in bench/README.md).

    nice -n 5 .venv/bin/python bench/switching_robustness.py --seeds 0 1 --sequences 10

``--sticky K1 K2 ...`` adds the variants ``none sticky`` and ``gaussian sticky``: the sticky transition prior's
``sticky_kappa`` chosen among K1, K2, ... on 2 validation sequences (simulated after the training ones; the other
variants ignore them), with the chosen value in the ``kappa`` column; the conditions ``fast states (stay 0.9)`` and
``slow states (stay 0.995)`` change the simulator's stickiness (0.98 by default; the model has none by default).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from brainpipe.evaluate.switching import switching_metrics
from brainpipe.models.switching_glm import SwitchingGLM
from brainpipe.models.switching_glm.select import fit_select
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
    "fast states (stay 0.9)": {"stay_probability": 0.9},
    "slow states (stay 0.995)": {"stay_probability": 0.995},
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


def run(
    condition: dict, seed: int, sequences: int, sticky: list[float] | None = None
) -> dict[str, dict[str, float]]:
    params = {"n_sequences": sequences, "n_test_sequences": 5, **condition}
    if sticky:
        params["n_validation_sequences"] = 2
    # the parameter class itself: simulate()'s parameter check takes prior_mean's tuple hint for a single number
    sim = get_generator("switching_glm_network").func(SwitchingGLMParams(**params), seed)
    counts = bin_spikes(sim.data, 0.02)
    fits, out = {}, {}
    variants = dict(VARIANTS)
    if sticky:
        variants.update({"none sticky": {}, "gaussian sticky": {"prior": "gaussian"}})
    for name, kw in variants.items():
        t = time.perf_counter()
        if name.endswith(" sticky"):
            model, table = fit_select(
                {"device": "cpu", **kw}, {"sticky_kappa": list(sticky)}, counts, lambda p: SwitchingGLM(**p)
            )
        else:
            model = SwitchingGLM(device="cpu", **kw).fit(counts)
        fits[name] = model.to_dataset(counts)
        refs = {r: fits[r] for r in ("single", "none") if r in fits and r != name}
        out[name] = switching_metrics(fits[name], counts, sim.truth, refs)
        out[name]["fit_s"] = time.perf_counter() - t
        out[name]["kappa"] = float(model.sticky_kappa)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--sequences", type=int, default=10, help="training sequences of 1,000 bins")
    ap.add_argument("--conditions", nargs="*", default=list(CONDITIONS))
    ap.add_argument("--sticky", nargs="*", type=float, help="sticky_kappa candidates of the sticky variants")
    args = ap.parse_args()
    print("| simulator | variant | " + " | ".join(h for h, _ in COLUMNS) + " | fit s | kappa |")
    print("|" + "---|" * (4 + len(COLUMNS)))
    for cond in args.conditions:
        per_seed = [run(CONDITIONS[cond], s, args.sequences, args.sticky) for s in args.seeds]
        for v in per_seed[0]:
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
            kappas = " / ".join(f"{r[v]['kappa']:g}" for r in per_seed)
            print(f"| {cond} | {v} | " + " | ".join(cells) + f" | {kappas} |", flush=True)


if __name__ == "__main__":
    main()
