"""BrainMAE bars across simulator seeds: how much of a pass or a miss is the seed.

    python bench/brainmae_seeds.py --seeds 0 1 2        # about 1 min per seed on 2 cores

For each seed: the default study's simulated cohort (``fmri_modular_cohort`` defaults), read from the simulated ROI
arrays (not the NIfTI tree, which gives the same ROI signals up to voxel noise), cleaned like the default study
(confounds = motion), cut into 15 s segments; BrainMAE with the default study's base model block
(``config/config.yaml``); then the three bars of issue 3: masked-ROI NMSE minus ridge, ROI-embedding ARI, probe
accuracy minus the best FC baseline (and probe R2 minus FC's).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from brainpipe.evaluate import fmri as ev  # noqa: E402
from brainpipe.io.fmri import run_dataset  # noqa: E402
from brainpipe.models.brainmae import BrainMAE  # noqa: E402
from brainpipe.preprocess.fmri import assemble_cohort, clean_run  # noqa: E402
from brainpipe.simulate import simulate  # noqa: E402


def one_seed(seed: int, model: dict) -> dict:
    sim = simulate("fmri_modular_cohort", {}, seed=seed)
    d = sim.data
    runs = []
    for i, sub in enumerate(d["subject"].values):
        part = {"group": str(sim.truth["label"].values[i]), "score": str(sim.truth["phenotype"].values[i])}
        ds = run_dataset(
            d["bold"].values[i],
            d["roi"].values,
            float(d.attrs["repetition_time_s"]),
            source=f"sim/sub-{sub}",
            entities={"sub": str(sub)},
            participant=part,
            confounds=d["motion"].values[i],
            confound_names=list(d["motion_param"].values),
        )
        runs.append(clean_run(ds))
    coh = assemble_cohort(runs, 15.0, "group", "score", n_folds=4, seed=0)
    tr, va, te = ev.pretrain_split(coh)
    X = coh["signal"].values
    m = BrainMAE(**dict(model, progress=False)).fit(X[tr], X[va])
    patterns, index = ev.eval_masks(int(te.sum()), X.shape[2], 0.5, 20, 0)
    base = ev.reconstruction_baselines(X[tr], X[te], patterns, index)
    nmse = ev.nmse(X[te], m.reconstruct(X[te], patterns[index]), patterns[index])
    modules = sim.truth["module"].sel(roi=coh["roi"].values).values
    S = ev.subject_means(m.transform(X), coh["segment_subject"].values, coh.sizes["subject"])
    folds = coh["fold"].values
    cls = ev.cross_validate(lambda a, b: (S[a], S[b]), coh["label"].values, folds, "classification")
    reg = ev.cross_validate(lambda a, b: (S[a], S[b]), coh["target"].values, folds, "regression")
    fc = ev.fc_baselines(coh)
    best_acc = max(fc["fc_correlation_accuracy"], fc["fc_tangent_accuracy"])
    best_r2 = max(fc["fc_correlation_r2"], fc["fc_tangent_r2"])
    return {
        "seed": seed,
        "nmse": nmse,
        "nmse_ridge": base["nmse_ridge"],
        "nmse_vs_ridge": nmse - base["nmse_ridge"],
        "ari": ev.module_ari(m.roi_embeddings(), modules),
        "probe_acc": cls["accuracy"],
        "fc_acc": best_acc,
        "probe_acc_vs_fc": cls["accuracy"] - best_acc,
        "probe_r2": reg["r2"],
        "fc_r2": best_r2,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    model = dict(cfg["fmri"]["brainmae"]["model"], device="cpu")
    print("seed  NMSE  ridge  NMSE-ridge   ARI  probe acc  best FC acc  probe-FC  probe R2  best FC R2")
    rows = []
    for s in args.seeds:
        r = one_seed(s, model)
        rows.append(r)
        print(
            f"{s:4d}  {r['nmse']:.3f}  {r['nmse_ridge']:.3f}  {r['nmse_vs_ridge']:+.3f}      {r['ari']:.2f}  {r['probe_acc']:.3f}"
            f"      {r['fc_acc']:.3f}        {r['probe_acc_vs_fc']:+.3f}    {r['probe_r2']:.3f}     {r['fc_r2']:.3f}",
            flush=True,
        )
    print(f"mean probe-FC accuracy: {np.mean([r['probe_acc_vs_fc'] for r in rows]):+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
