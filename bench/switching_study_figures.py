"""The default study's switching-GLM figures, outside Snakemake: every variant of the chosen datasets fitted with the
study's resolved parameters (validation-chosen grid included) and scored as the evaluate stage does, over simulator
or model seeds; on recordings with task variables, the decoded states against them (mutual information, shuffled
null, p-value, against the other variants and the k-means clusters of the smoothed rate, as the evaluate stage).

Real datasets read the counts the pipeline wrote (``results/spikes/<dataset>/counts.nc``: run the binning first);
simulated ones are simulated and binned here. Prints one row per (dataset, seed, variant). ``--select KEY=V1,V2``
adds (or replaces) a validation grid of every multi-state variant (e.g. the sticky prior's ``sticky_kappa``);
``--dwell`` prints, per multi-state fit, the states' dwell times (Viterbi runs on the test bins), fitted
self-transition probabilities, occupancy and what the states differ in (population rate, biases, couplings), and per
dataset the population rate by task category. With several seeds it ends with each prior's figures minus the
no-prior fit's per seed, their mean ± SD and the number of seeds where the prior is worse.

    nice -n 5 .venv/bin/python bench/switching_study_figures.py simswitch simswitch_low --seeds 0 1 2
    nice -n 5 .venv/bin/python bench/switching_study_figures.py steinmetz1 nelpy --seeds 0
    nice -n 5 .venv/bin/python bench/switching_study_figures.py nelpy --seeds 0 --dwell --select sticky_kappa=0,2000
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from brainpipe.config import load_study
from brainpipe.data import read
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.evaluate.metrics import metric_info
from brainpipe.evaluate.switching import (
    state_dwell_times,
    state_occupancy,
    switching_metrics,
    task_metrics,
    task_variables,
)
from brainpipe.evaluate.switching_clusters import cluster_states
from brainpipe.models.switching_glm.select import fit_select
from brainpipe.preprocess import bin_spikes
from brainpipe.preprocess.spikes import segments
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


def dwell_report(fit, counts, seg: np.ndarray) -> str:
    """One line on a multi-state fit's states: dwell times, self-transitions, occupancy, what they differ in."""
    dt = float(counts.attrs["bin_width_s"])
    test = np.asarray(counts["split"].values) == SPLIT_FLAGS["test"]
    vit = np.asarray(fit["viterbi"].values)
    runs = state_dwell_times(vit, seg, test)
    q = np.percentile(runs, [25, 50, 75, 90]) * dt if runs.size else [np.nan] * 4
    frac_long = float(runs[runs * dt >= 1.0].sum() / max(runs.sum(), 1))
    A = np.asarray(fit["transition"].values)
    S = A.shape[0]
    occ = np.bincount(vit[test & (vit >= 0)], minlength=S) / max((test & (vit >= 0)).sum(), 1)
    y = np.asarray(counts["counts"].values, dtype=float)
    pop = np.array(
        [y[test & (vit == s)].mean() / dt if np.any(test & (vit == s)) else np.nan for s in range(S)]
    )
    W = np.asarray(fit["weights"].values)
    off = ~np.eye(W.shape[-1], dtype=bool)
    b = np.asarray(fit["bias"].values)
    U = np.asarray(fit["covariate_weight"].values)
    spread = {
        "bias": float(b.std(0).mean()),
        "coupling": float(np.sqrt((W[:, off].std(0) ** 2).mean())),
        "coupling |mean|": float(np.abs(W[:, off].mean(0)).mean()),
        "covariate": float(U.std(0).mean()) if U.size else float("nan"),
    }
    return (
        f"    states: dwell (test Viterbi runs) median {q[1]:.2f} s, IQR {q[0]:.2f}-{q[2]:.2f} s, 90th pct "
        f"{q[3]:.2f} s; {100 * frac_long:.0f}% of test bins in runs >= 1 s; self-transition "
        + "/".join(f"{a:.3f}" for a in np.diag(A))
        + " (expected dwell "
        + "/".join(f"{dt / max(1 - a, 1e-12):.2f}" for a in np.diag(A))
        + " s); occupancy "
        + "/".join(f"{o:.2f}" for o in occ)
        + "; population rate per state "
        + "/".join(f"{r:.2f}" for r in pop)
        + " Hz/unit; spread over states: "
        + ", ".join(f"{k} {v:.3f}" for k, v in spread.items())
    )


def task_rates(counts) -> str:
    """The population rate (Hz per unit, test bins) by category of each task variable, and the share of bins."""
    dt = float(counts.attrs["bin_width_s"])
    test = np.asarray(counts["split"].values) == SPLIT_FLAGS["test"]
    pop = np.asarray(counts["counts"].values, dtype=float).mean(1) / dt
    out = []
    for name, var in task_variables(counts).items():
        cells = []
        for k, cat in enumerate(var.categories):
            sel = test & (var.labels == k)
            if sel.any():
                cells.append(f"{cat} {pop[sel].mean():.2f} Hz ({100 * sel.sum() / test.sum():.0f}%)")
        out.append(f"{name}: " + ", ".join(cells))
    return "    population rate by task category (test bins): " + "; ".join(out) if out else ""


def parse_select(items: list[str]) -> dict[str, list]:
    grid = {}
    for item in items:
        key, _, values = item.partition("=")
        if not values:
            raise SystemExit(f"--select {item!r}: expected KEY=V1,V2,...")
        grid[key] = [int(v) if key == "n_states" else float(v) for v in values.split(",")]
    return grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument(
        "--select", nargs="*", default=[], help="KEY=V1,V2 grids added to every multi-state variant"
    )
    ap.add_argument("--variants", nargs="*", help="only these variants (default: the study's)")
    ap.add_argument(
        "--dwell", action="store_true", help="print the states' dwell times and what they differ in"
    )
    args = ap.parse_args()
    extra = parse_select(args.select)
    study = load_study(args.config, check_paths=False)
    print("| dataset | seed | variant | chosen | fit s | " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * (5 + len(COLUMNS)))
    scores: dict[tuple[str, int, str], dict[str, float]] = {}
    for name in args.datasets:
        for seed in args.seeds:
            counts, truth, model_seed = counts_of(study, name, seed)
            seg = segments(counts)
            if args.dwell and seed == args.seeds[0] and task_rates(counts):
                print(task_rates(counts), flush=True)
            fits = {}
            variants = [v for v in study.switching_variants(name) if not args.variants or v in args.variants]
            order = [v for v in ("single", "none") if v in variants] + [
                v for v in variants if v not in ("single", "none")
            ]
            for v in order:
                params = copy.deepcopy(study.switching(name, v))
                params["device"], params["seed"] = "cpu", model_seed
                grid = dict(params.pop("select", None) or {})
                if int(params.get("n_states", 3)) > 1:
                    grid.update(extra)
                t = time.perf_counter()
                model, table = fit_select(params, grid, counts, build_model)
                took = time.perf_counter() - t
                fits[v] = model.to_dataset(counts)
                refs = {r: fits[r] for r in ("single", "none") if r in fits and r != v}
                m = switching_metrics(fits[v], counts, truth, refs)
                scores[(name, seed, v)] = m
                chosen = table.attrs.get("selected_params", "-") if table.sizes else "-"
                cells = " | ".join(f"{m[c]:.4f}" if c in m and np.isfinite(m[c]) else "" for c in COLUMNS)
                print(f"| {name} | {seed} | {v} | {chosen} | {took:.0f} | {cells} |", flush=True)
                if table.sizes:
                    print(
                        "    validation nats/spike: "
                        + ", ".join(
                            str(
                                {
                                    k[len("selection_") :]: float(table[k].values[i])
                                    for k in table
                                    if k.startswith("selection_") and k != "selection_score"
                                }
                            )
                            + f" {float(table['selection_score'].values[i]):.5f}"
                            for i in range(table.sizes["candidate"])
                        ),
                        flush=True,
                    )
                if args.dwell and fits[v].sizes["state"] > 1:
                    print(dwell_report(fits[v], counts, seg), flush=True)
                    for tname, tvar in task_variables(counts).items():
                        test = np.asarray(counts["split"].values) == SPLIT_FLAGS["test"]
                        occ = state_occupancy(np.asarray(fits[v]["posterior"].values), tvar, test)
                        print(
                            f"    P(state | {tname}): "
                            + "; ".join(
                                f"{c} " + "/".join(f"{x:.2f}" for x in row)
                                for c, row in zip(tvar.categories, occ, strict=True)
                            ),
                            flush=True,
                        )
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

    if len(args.seeds) > 1:
        print(seed_summary(scores, args.datasets, args.seeds))


def seed_summary(scores: dict, datasets: list[str], seeds: list[int]) -> str:
    """Each prior's figures minus the no-prior fit's per seed, their mean ± SD and the seeds where the prior is worse."""
    lines = []
    for name in datasets:
        variants = sorted({v for (d, _, v) in scores if d == name and v not in ("single", "none")})
        for v in variants:
            if not all((name, s, "none") in scores and (name, s, v) in scores for s in seeds):
                continue
            lines.append(f"{name}, {v} minus none, seeds {' '.join(map(str, seeds))}:")
            for c in COLUMNS:
                if c == "bits_vs_none":
                    x = np.array([scores[(name, s, v)].get(c, np.nan) for s in seeds])
                elif c in ("test_bits_per_spike", "bits_vs_single"):
                    continue
                else:
                    x = np.array(
                        [
                            scores[(name, s, v)].get(c, np.nan) - scores[(name, s, "none")].get(c, np.nan)
                            for s in seeds
                        ]
                    )
                if not np.isfinite(x).all():
                    continue
                worse = int((x > 0).sum() if metric_info(c).op == "<=" else (x < 0).sum())
                lines.append(
                    f"    {c}: {' / '.join(f'{y:+.3f}' for y in x)}; mean {x.mean():+.4f} ± {x.std(ddof=1):.4f} (SD);"
                    f" worse on {worse} of {len(x)}"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
