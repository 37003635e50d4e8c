"""The default study's switching-GLM figures, outside Snakemake: every variant of the chosen datasets fitted with the
study's resolved parameters (validation-chosen grid included) and scored as the evaluate stage does, over simulator
or model seeds; on recordings with task variables, the decoded states against them (mutual information, shuffled
null, p-value, against the other variants and the k-means clusters of the smoothed rate, as the evaluate stage).

Real datasets read the counts the pipeline wrote (``results/spikes/<dataset>/counts.nc``: run the binning first);
simulated ones are simulated and binned here. Prints one row per (dataset, seed, variant).

    nice -n 5 .venv/bin/python bench/switching_study_figures.py simswitch simswitch_low --seeds 0 1 2
    nice -n 5 .venv/bin/python bench/switching_study_figures.py steinmetz1 nelpy --seeds 0
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from brainpipe.config import load_study
from brainpipe.data import read
from brainpipe.evaluate.switching import switching_metrics, task_metrics, task_variables
from brainpipe.evaluate.switching_clusters import cluster_states
from brainpipe.models.switching_glm.select import fit_select
from brainpipe.preprocess import bin_spikes
from brainpipe.simulate import simulate
from brainpipe.stages.fit_switching_glm import build_model

COLUMNS = (
    "test_bits_per_spike",
    "bits_vs_single",
    "bits_vs_none",
    "state_accuracy",
    "weight_corr",
    "adjacency_balanced_accuracy",
    "shared_adjacency_balanced_accuracy",
    "shared_mean_corr",
    "shared_probs_tv",
)


def counts_of(study, name: str, seed: int):
    entry = study.spike_datasets()[name]
    if "simulate" in entry:
        sim = entry["simulate"]
        s = simulate(sim["generator"], sim.get("params", {}), seed=int(sim.get("seed", 0)) + seed)
        return bin_spikes(s.data, study.bin(name)["bin_width_s"]), s.truth, 0
    return read(f"results/spikes/{name}/counts.nc", "spike_counts"), None, seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--config", default="config/config.yaml")
    args = ap.parse_args()
    study = load_study(args.config, check_paths=False)
    print("| dataset | seed | variant | chosen | fit s | " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * (5 + len(COLUMNS)))
    for name in args.datasets:
        for seed in args.seeds:
            counts, truth, model_seed = counts_of(study, name, seed)
            fits = {}
            variants = study.switching_variants(name)
            order = [v for v in ("single", "none") if v in variants] + [
                v for v in variants if v not in ("single", "none")
            ]
            for v in order:
                params = copy.deepcopy(study.switching(name, v))
                params["device"], params["seed"] = "cpu", model_seed
                grid = params.pop("select", None) or {}
                t = time.perf_counter()
                model, table = fit_select(params, grid, counts, build_model)
                took = time.perf_counter() - t
                fits[v] = model.to_dataset(counts)
                refs = {r: fits[r] for r in ("single", "none") if r in fits and r != v}
                m = switching_metrics(fits[v], counts, truth, refs)
                chosen = table.attrs.get("selected_params", "-") if table.sizes else "-"
                cells = " | ".join(f"{m[c]:.4f}" if c in m and np.isfinite(m[c]) else "" for c in COLUMNS)
                print(f"| {name} | {seed} | {v} | {chosen} | {took:.0f} | {cells} |", flush=True)
                clusters = None
                if fits[v].sizes["state"] > 1 and task_variables(
                    counts
                ):  # the non-HMM baseline, as the stage
                    clusters = cluster_states(counts, fits[v].sizes["state"], seed=0)
                task = task_metrics(fits[v], counts, refs, clusters=clusters)
                if task:  # decoded states against the recording's task variables, as the evaluate stage
                    names = sorted(
                        {k[len("task_mi_") :].rsplit("_p", 1)[0] for k in task if k.endswith("_p")}
                    )
                    print(
                        "    task variables: "
                        + "; ".join(
                            f"{n} MI {task[f'task_mi_{n}']:.4f} (null {task[f'task_mi_{n}_null']:.4f}, "
                            f"p {task[f'task_mi_{n}_p']:.3f}"
                            + "".join(
                                f", vs {r} {task[f'task_mi_{n}_vs_{r}']:+.4f}"
                                for r in [*refs, "clusters"]
                                if f"task_mi_{n}_vs_{r}" in task
                            )
                            + ")"
                            for n in names
                        ),
                        flush=True,
                    )


if __name__ == "__main__":
    main()
