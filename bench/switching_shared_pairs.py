"""Which pairs decide the shared-structure balanced accuracy of two switching-GLM variants (issue 16).

The shared adjacency's balanced accuracy averages the recall of three classes, and a network of 10 neurons has only
2-9 planted inhibitory or excitatory pairs: one pair can move it by 0.04-0.17. This prints, per seed, each variant's
confusion matrix (planted class x fitted shared class) and every pair where the two variants' shared classes differ:
its planted categorical and per-state classes, and each variant's state-matched per-state classes and shared
probabilities. Datasets of the default study (their resolved parameters, validation grid included) or robustness
conditions of ``bench/switching_robustness.py`` (the model's defaults).

    nice -n 5 .venv/bin/python bench/switching_shared_pairs.py simswitch_low --seeds 0 1 2
    nice -n 5 .venv/bin/python bench/switching_shared_pairs.py "softplus link" --seeds 0 1 2 --variants none onehot
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

from brainpipe.config import load_study
from brainpipe.evaluate.switching import balanced_accuracy, match_states, truth_states_at
from brainpipe.models.switching_glm import SwitchingGLM
from brainpipe.models.switching_glm.select import fit_select
from brainpipe.preprocess import bin_spikes
from brainpipe.simulate.base import get_generator
from brainpipe.simulate.switching_glm import SwitchingGLMParams
from brainpipe.stages.fit_switching_glm import build_model

sys.path.insert(0, str(Path(__file__).parent))
from switching_robustness import CONDITIONS  # noqa: E402
from switching_study_figures import counts_of  # noqa: E402


def fit_variant(source: str, variant: str, counts, model_seed: int, study) -> SwitchingGLM:
    if source in CONDITIONS:
        kw = {"single": {"n_states": 1}, "none": {}}.get(variant, {"prior": variant})
        return SwitchingGLM(device="cpu", **kw).fit(counts)
    params = copy.deepcopy(study.switching(source, variant))
    params["device"], params["seed"] = "cpu", model_seed
    grid = params.pop("select", None) or {}
    return fit_select(params, grid, counts, build_model)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "source", help="a simulated dataset of the study, or a condition of switching_robustness.py"
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--variants", nargs=2, default=["none", "onehot"])
    ap.add_argument("--sequences", type=int, default=10, help="robustness conditions: training sequences")
    ap.add_argument("--config", default="config/config.yaml")
    args = ap.parse_args()
    study = load_study(args.config, check_paths=False)
    np.set_printoptions(precision=2, suppress=True)
    for seed in args.seeds:
        if args.source in CONDITIONS:
            params = {"n_sequences": args.sequences, "n_test_sequences": 5, **CONDITIONS[args.source]}
            sim = get_generator("switching_glm_network").func(SwitchingGLMParams(**params), seed)
            counts, truth, model_seed = bin_spikes(sim.data, 0.02), sim.truth, 0
        else:
            counts, truth, model_seed = counts_of(study, args.source, seed)
        pi = np.asarray(truth["prior_probs"].values)
        planted, states = pi.argmax(-1) - 1, np.asarray(truth["adjacency"].values)
        off = ~np.eye(planted.shape[0], dtype=bool)
        test = counts["split"].values == 2
        true_z = truth_states_at(truth, counts["time"].values[test])
        out = {}
        for v in args.variants:
            m = fit_variant(args.source, v, counts, model_seed, study)
            perm = np.zeros(states.shape[0], dtype=np.int64)
            if m.n_states > 1:
                est = m.to_dataset(counts)["viterbi"].values[test]
                perm = match_states(true_z, est, states.shape[0], m.n_states)[0]
            shared = m.shared_adjacency_
            conf = [
                [int(np.sum((planted[off] == a) & (shared[off] == b))) for b in (-1, 0, 1)]
                for a in (-1, 0, 1)
            ]
            ba = balanced_accuracy(planted[off], shared[off])
            print(
                f"{args.source} seed {seed} {v}: shared BA {ba:.4f}, planted (inh/none/exc rows) x fitted {conf}"
            )
            out[v] = (shared, m.adjacency_[np.maximum(perm, 0)], m.prior_probs_)
        (sa, aa, pa), (sb, ab, pb) = out[args.variants[0]], out[args.variants[1]]
        for n, k in np.argwhere(off & (sa != sb)):
            print(
                f"  pair {n}<-{k}: planted pi {pi[n, k]} class {planted[n, k]} states {states[:, n, k]} | "
                f"{args.variants[0]} {sa[n, k]} {pa[n, k]} states {aa[:, n, k]} | "
                f"{args.variants[1]} {sb[n, k]} {pb[n, k]} states {ab[:, n, k]}"
            )


if __name__ == "__main__":
    main()
