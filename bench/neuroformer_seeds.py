"""Neuroformer over pretraining seeds and ablations (issue 15): the paper's ablation (with/without the modality,
with/without the contrastive term) and the pretraining benefit per label fraction, each with its spread over seeds.

For one dataset of a study (its resolved ``neuroformer`` config, as the workflow would run it) and a binned
``counts.nc`` (and ``truth.nc`` for a simulator), every variant is pretrained, fine-tuned and scored once per seed
with the library functions the stages call (:func:`brainpipe.training.neuroformer.pretrain_neuroformer`,
:func:`~brainpipe.training.neuroformer.finetune_neuroformer`, :func:`brainpipe.evaluate.neuroformer.score_neuroformer`);
the table gives mean, SD, min and max of each metric over seeds, and each variant's difference from ``base``.

    PYTHONPATH=src python bench/neuroformer_seeds.py --counts results/spikes/simhub/counts.nc \\
        --truth results/spikes/simhub/truth.nc --dataset simhub --seeds 0 1 2 --json out.json
    # the ablations only, fewer metrics: --variants base no_contrastive no_modality --no-finetune

Variants: ``base`` (the config as it is: the dataset's modalities, contrastive term on when a modality exists,
its weight chosen on validation when ``model.contrastive_grid`` has two or more weights), ``no_contrastive``
(contrastive weight 0, one pretraining run), ``contrastive`` (the largest weight of the grid, or
``model.contrastive_weight``, one pretraining run), ``no_modality`` (no modality: no cross-attention to it, no
contrastive term). The decoding baselines see the same inputs as each variant's model (the modality variables when
it has any, and a decoder from them alone: :func:`brainpipe.evaluate.neuroformer.decoding_features`). Run time:
about len(seeds) x len(variants) x the dataset's Neuroformer time in the default study (3-5 min for simhub on 2 idle
cores); ``--decoding-only`` scores the decoding alone (no connectivity, generation or test loss). A modality the
study does not give the dataset: ``--set 'modalities={contrast: {source: stimulus, variables: [contrast_left,
contrast_right]}}'`` (steinmetz1).

Measured (simhub of the default study, simulator seed 0, rate-matched hubs; 2026-12-04):

* before the fair protocol (pretrained fine-tuning capped at 200 steps, scratch not): pretraining seeds 0 (the
  default study's run), 1, 2: R2 at 1% of labels pretrained
  0.353 / 0.359 / 0.361 vs converged scratch 0.376 / 0.327 / 0.297 (pretrained - scratch -0.023 / +0.032 /
  +0.063) vs the best linear decoder 0.418 (pretrained loses by 0.057-0.065 at every seed); at 10%: pretrained -
  scratch +0.082 / -0.022 / +0.021, pretrained - linear -0.031 / -0.074 / -0.051; at 100%: pretrained - linear
  -0.053 / -0.038 / -0.032. Connectivity AUROC 0.889 / 0.892 / 0.897 vs lagged cross-correlation 0.912 (-0.015 to
  -0.022), GLM 0.982; direction accuracy 0.83-0.87 vs 1.0 (xcorr and GLM); hub recall 1.0 (rate rule 0.67 on this
  seed, chance 0.15).
* after the fair fine-tuning protocol (2026-12-05: pretrained and scratch under one stopping rule, patience 3 on
  the validation loss, no step cap, epochs of 1024-2048 windows; contrastive weight 0, the one the validation
  split chose at seed 0 from [0, 0.2]; ``--seeds 0 1 2 --variants base --set "model.contrastive_grid=[]" --set
  model.contrastive_weight=0.0``, about 5-8 min per seed on a loaded 2-core machine): R2 at 1 % pretrained 0.357 /
  0.332 / 0.291 vs converged scratch 0.376 / 0.327 / 0.297, pretrained - scratch -0.018 / +0.004 / -0.006 (mean
  -0.007, SD 0.011: no pretraining benefit at 1 %); at 10 % +0.052 / +0.081 / -0.030 (mean +0.034, SD 0.058);
  pretrained - best linear decoder -0.061 / -0.086 / -0.127 at 1 %, -0.061 / -0.050 / -0.082 at 10 %, -0.044 /
  -0.011 / +0.007 at 100 % (mean -0.016; the 100 % runs are no longer stopped after 2 epochs). Connectivity
  (rollout/target, before the validation-chosen read-out) 0.880 / 0.891 / 0.886 vs xcorr 0.912, direction 0.83 /
  0.87 / 0.87 vs 1.0; hub recall 1.0 (rate rule 0.67).
* the default study's Neuroformer figures after the issue-15 changes (2026-12-05; the stages' library calls on the
  default study's counts, seed 0, one run each): simhub contrastive weight 0 chosen (validation next-token loss
  3.1372 vs 3.1414 at 0.2); attention read-out rollout/target/rows chosen (validation AUROC 0.871 vs 0.843
  rollout/target, 0.824 / 0.846 cross), test AUROC 0.906 vs xcorr 0.912 (-0.005, was -0.022), direction 0.90 vs
  1.00 (was 0.83); decoding (head mean_past) R2 1 % pretrained 0.306 vs scratch 0.410 (-0.103: both runs kept
  their first-epoch checkpoint), 10 % 0.591 vs 0.596, 100 % 0.630 vs the best linear decoder 0.623 (+0.007, was
  -0.053). steinmetz1 (head last) bacc 0.632 vs logistic 0.586 (+0.045, was +0.027). nelpy (head mean) R2 100 %
  0.342 vs ridge 0.259 (+0.083, was +0.137 with 0.396 after 2 capped epochs), 10 % 0.246 vs 0.248.
* fine-tuning options chosen on validation, over label draws (2026-12-05, issue 15; the current hub_network
  simulator at seed 0, binned at 10 ms: ``--seeds 0 1 2 --variants base --set "model.contrastive_grid=[]" --set
  model.contrastive_weight=0.0 --set "finetune.fractions=[0.01,0.1]" --set "finetune.options=[full,probe,lpft/0.1]"
  --set finetune.label_draws=3 --set "finetune.draw_fractions=[0.01]"``, 12-17 min per seed on a loaded machine):
  both starts choose among the whole network, a linear probe of the frozen network and probe-then-network at
  lr x 0.1, per fraction, by the validation behaviour loss averaged over 3 label draws. At 1 % (60 labels)
  the pretrained start chose the probe at every seed; scratch chose the probe (seed 0) or the whole network (1, 2).
  R2 at 1 %, mean over the 3 draws: pretrained 0.472 / 0.494 / 0.496 (0.487 +- 0.013) vs converged scratch 0.366 /
  0.337 / 0.378 (0.361 +- 0.021): **pretrained - scratch +0.106 / +0.156 / +0.118 (mean +0.127, SD 0.026)**; vs the
  best linear decoder (ridge on window counts, 0.454) +0.018 / +0.039 / +0.042 (mean +0.033, SD 0.013). At 10 %
  (one draw; pretrained chose lpft/0.1, full, lpft/0.1): pretrained 0.560 / 0.559 / 0.528 vs scratch 0.596 / 0.588
  / 0.577: **pretrained - scratch -0.036 / -0.030 / -0.050 (mean -0.038: scratch wins at 10 %)**, vs ridge (0.620)
  -0.060 / -0.061 / -0.093. Connectivity (rollout/target, not row-centred, as this bench scores it) 0.885 / 0.892 /
  0.890 vs xcorr 0.912; hub recall 1.0 vs the rate rule 0.67.
* steinmetz1 with the stimulus contrasts as a modality, against baselines with the same inputs (2026-12-05, issue
  15; the default study's steinmetz1 counts and settings, pretraining seeds 0-2, about 2 min per variant and seed on
  a loaded 2-core machine)::

      for s in 0 1 2; do OMP_NUM_THREADS=1 nice -n 5 python bench/neuroformer_seeds.py --dataset steinmetz1 \
        --counts results/spikes/steinmetz1/counts.nc --seeds $s --decoding-only \
        --variants no_modality no_contrastive contrastive \
        --set 'modalities={contrast: {source: stimulus, variables: [contrast_left, contrast_right]}}' \
        --json steinmetz_seed$s.json; done

  Balanced accuracy of trial outcome on the test windows (100 % of labels), seeds 0 / 1 / 2: without the modality
  0.632 / 0.571 / 0.592 (0.598 +- 0.031) vs logistic on counts 0.586 (+0.012 +- 0.031; 2 of 3 seeds above); with
  the contrasts, contrastive weight 0 (what the grid [0, 0.2] chooses at every seed by validation next-token loss,
  2.874 / 2.877 / 2.860 vs 2.884 / 2.881 / 2.884) 0.643 / 0.653 / 0.641 (0.646 +- 0.006), weight 0.2 0.709 /
  0.681 / 0.650 (0.680 +- 0.029). The baselines with the same inputs: logistic on counts + contrasts 0.715 (the
  one validation chooses), + history bins 0.692, **the contrasts alone 0.741**. So: the modality adds +0.048 +-
  0.035 (weight 0) / +0.082 +- 0.026 (weight 0.2) to the model, the contrastive term +0.034 +- 0.029 (positive at
  every seed), but **the model loses to the baseline with its inputs at every seed** (-0.069 +- 0.006 at weight 0,
  -0.035 +- 0.029 at 0.2) and to the contrasts alone (-0.095 / -0.061); the spikes add nothing a linear decoder
  can use beyond the stimulus (counts + contrasts 0.715 vs contrasts alone 0.741). Cost: pretraining + fine-tuning
  110 s without the modality, 127 s with it (+16 %) per contrastive weight; the grid pretrains twice (about +75 %).
* the contrastive weight chosen by validation decoding (2026-12-05, issue 15; ``--set
  model.contrastive_select=decoding``; bench/README.md, section neuroformer_seeds.py): steinmetz1 with the
  contrasts chooses 0.2 at every seed (next-token: 0), test balanced accuracy 0.680 +- 0.029 instead of 0.646 +-
  0.006, still below counts + contrasts (0.715); simhub chooses 0.2 / 0 / 0 (next-token 0 / 0 / 0). At 10 % of
  labels on simhub pretrained 0.553 +- 0.027 vs scratch 0.588 +- 0.009 vs ridge 0.620; a probe of the random
  network decodes as well as one of the pretrained network there.
* ablation (--no-finetune --set pretrain.max_epochs=3, seeds 0 1): without the contrastive term, connectivity
  AUROC -0.001, test loss -0.006 nats, generation F1 -0.010 (noise level); without the modality, test loss +0.019
  nats (worse), connectivity AUROC +0.007, direction accuracy -0.017, generation F1 +0.002.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import yaml

from brainpipe.config import Study, validate_config
from brainpipe.data import read
from brainpipe.evaluate.neuroformer import decoding_metrics, score_neuroformer
from brainpipe.models.neuroformer import Neuroformer
from brainpipe.training.neuroformer import (
    finetune_neuroformer,
    pretrain_neuroformer,
    pretrained_dataset,
    train_config,
)

VARIANTS = ("base", "no_contrastive", "contrastive", "no_modality")
KEY = (
    "connectivity_auroc",
    "connectivity_auroc_vs_xcorr",
    "connectivity_direction",
    "hub_recall",
    "hub_recall_rate",
    "generation_f1_vs_glm",
    "pretrain_test_loss",
)


def variant_params(params: dict, variant: str) -> dict:
    """The dataset's resolved config changed for one ablation variant."""
    p = copy.deepcopy(params)
    grid = [float(w) for w in p["model"].get("contrastive_grid") or []]
    if variant in ("no_contrastive", "contrastive", "no_modality"):
        p["model"]["contrastive_grid"] = []  # one pretraining run: no choice among weights
    if variant == "no_contrastive":
        p["model"]["contrastive_weight"] = 0.0
    elif variant == "contrastive":
        w = max(grid + [float(p["model"].get("contrastive_weight", 0.0))])
        if not p.get("modalities") or w <= 0:
            raise SystemExit(
                "variant contrastive needs a modality and a positive weight (model.contrastive_grid)"
            )
        p["model"]["contrastive_weight"] = w
    elif variant == "no_modality":
        p["modalities"] = {}
        p["model"]["contrastive_weight"] = 0.0
    elif variant != "base":
        raise SystemExit(f"unknown variant {variant!r} (allowed: {', '.join(VARIANTS)})")
    return p


def run_one(
    counts, truth, params: dict, seed: int, finetune: bool, max_windows: int, decoding_only: bool = False
) -> dict[str, float]:
    """Pretrain, fine-tune and score one variant at one seed (``seconds_*``: each phase's wall time)."""
    p = dict(params, seed=int(seed))
    t0 = time.perf_counter()
    model = pretrain_neuroformer(counts, p)
    pre = pretrained_dataset(model)
    secs = {"seconds_pretrain": time.perf_counter() - t0}
    # the validation next-token loss: what a contrastive grid chooses its weight by
    secs["pretrain_val_token_loss"] = float(model.token_loss(counts, "validation"))
    if model.contrastive_selection_:
        print(f"# seed {seed} contrastive selection: {model.contrastive_selection_}", flush=True)
    if p.get("modalities"):  # the weight that acted (the grid's choice, by model.contrastive_select)
        secs["contrastive_weight"] = float(model.contrastive_weight)
    ft = None
    t0 = time.perf_counter()
    if finetune and p.get("target"):
        f = p["finetune"]
        ft, _ = finetune_neuroformer(
            counts,
            pre,
            p["target"],
            train_config(p, "finetune"),
            f.get("fractions", [0.01, 0.1, 1.0]),
            f.get("scratch", True),
            max_val_windows=f.get("max_val_windows", 512),
            min_epoch_windows=int(f.get("min_epoch_windows", 1024)),
            max_epoch_windows=f.get("max_epoch_windows"),
            options=f.get("options", ["full"]),
            label_draws=int(f.get("label_draws", 1)),
            draw_fractions=f.get("draw_fractions"),
        )
        print(f"# seed {seed} fine-tuning choices: {ft.attrs['finetune_selection']}", flush=True)
        for i, r in enumerate(ft["run"].values):  # how long each run trained and where its checkpoint was
            print(
                f"#   {r}: {int(ft['run_n_labelled'][i])} labels, {int(ft['run_epochs'][i])} epochs, "
                f"{int(ft['run_steps'][i])} steps, best epoch {int(ft['run_best_epoch'][i])}, "
                f"validation loss {float(ft['run_val_loss'][i]):.4f}",
                flush=True,
            )
    secs["seconds_finetune"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if decoding_only:
        values = decoding_metrics(ft, counts, Neuroformer.from_dataset(pre, counts)) if ft is not None else {}
        return {**{k: float(v) for k, v in values.items()}, **secs, **spikes_gain(values)}
    ev = p["evaluate"]
    values, _ = score_neuroformer(
        counts,
        Neuroformer.from_dataset(pre, counts),
        ft,
        truth,
        seed=int(seed),
        n_samples=int(ev.get("n_samples", 5)),
        max_windows=min(int(ev.get("max_windows", 400)), max_windows),
        glm_alpha=float(ev.get("glm_alpha", 1e-4)),
        glm_history_tau_s=float(ev.get("glm_history_tau_s", 0.02)),
    )
    secs["seconds_score"] = time.perf_counter() - t0
    return {**{k: float(v) for k, v in values.items()}, **secs, **spikes_gain(values)}


def spikes_gain(values: dict[str, float]) -> dict[str, float]:
    """What the spikes add beyond the modality: the pretrained model's and each counts + modality decoder's score
    minus the modality-only decoder's, per label fraction (``decode_<s>_<who>_vs_modality_<pct>``)."""
    out = {}
    for k, v in values.items():
        head, sep, pct = k.rpartition("_")
        for m in ("ridge", "logistic"):
            if head.endswith(f"_{m}_modality") and sep:
                s = head[len("decode_") : -len(f"_{m}_modality")]
                for who in ("pretrained", m, f"{m}_history"):
                    a = values.get(f"decode_{s}_{who}_{pct}")
                    if a is not None:
                        out[f"decode_{s}_{who}_vs_modality_{pct}"] = float(a) - float(v)
    return out


def summarise(runs: dict[str, list[dict[str, float]]]) -> list[dict]:
    """Rows (variant, metric, mean, sd, min, max, n, mean difference from base) over seeds."""
    rows = []
    for variant, per_seed in runs.items():
        names = sorted(set().union(*per_seed)) if per_seed else []
        for m in names:
            v = np.array([r.get(m, np.nan) for r in per_seed], float)
            row = {
                "variant": variant,
                "metric": m,
                "mean": float(np.nanmean(v)),
                "sd": float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else float("nan"),
                "min": float(np.nanmin(v)),
                "max": float(np.nanmax(v)),
                "n": int(np.isfinite(v).sum()),
            }
            if variant != "base" and "base" in runs:
                b = np.array([r.get(m, np.nan) for r in runs["base"]], float)
                row["vs_base"] = float(np.nanmean(v[: b.size] - b[: v.size]))
            rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/config.yaml", help="the study (its neuroformer section)")
    ap.add_argument("--dataset", default="simhub", help="a key of neuroformer.datasets")
    ap.add_argument("--counts", required=True, help="the dataset's binned counts.nc")
    ap.add_argument("--truth", default=None, help="planted truth.nc (simulators)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument(
        "--no-finetune", action="store_true", help="skip the decoding runs (ablation of pretraining only)"
    )
    ap.add_argument("--max-windows", type=int, default=400, help="most test windows scored")
    ap.add_argument(
        "--decoding-only",
        action="store_true",
        help="score the decoding alone (no next-token loss, connectivity or generation: faster on real data)",
    )
    ap.add_argument(
        "--set", action="append", default=[], help="override, e.g. --set pretrain.max_epochs=2 (YAML value)"
    )
    ap.add_argument("--json", default=None, help="write every run and the summary here")
    a = ap.parse_args(argv)

    with open(a.config) as fh:
        cfg = validate_config(yaml.safe_load(fh), source=a.config, check_paths=False)
    params = Study(cfg, source=a.config).neuroformer(a.dataset)
    for s in a.set:
        key, _, val = s.partition("=")
        *path, last = key.split(".")
        node = params
        for k in path:
            node = node.setdefault(k, {})
        node[last] = yaml.safe_load(val)
    params["pretrain"]["progress"] = params["finetune"]["progress"] = False
    counts = read(a.counts, "spike_counts")
    truth = read(a.truth, "model_fit") if a.truth else None
    runs: dict[str, list[dict[str, float]]] = {}
    for variant in a.variants:
        vp = variant_params(params, variant)
        for seed in a.seeds:
            t0 = time.perf_counter()
            runs.setdefault(variant, []).append(
                run_one(counts, truth, vp, seed, not a.no_finetune, a.max_windows, a.decoding_only)
            )
            print(f"# {variant} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
            print("# " + json.dumps({k: round(v, 4) for k, v in runs[variant][-1].items()}), flush=True)
    rows = summarise(runs)
    print(f"{'variant':15s} {'metric':45s} {'mean':>8s} {'sd':>7s} {'min':>8s} {'max':>8s} {'vs base':>8s}")
    for r in rows:
        print(
            f"{r['variant']:15s} {r['metric']:45s} {r['mean']:8.3f} {r['sd']:7.3f} {r['min']:8.3f} {r['max']:8.3f}"
            f" {r.get('vs_base', float('nan')):8.3f}"
        )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(
                {"params": params, "seeds": a.seeds, "runs": runs, "summary": rows}, fh, indent=1, default=str
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
