"""Data-parallel BrainMAE pretraining on the CPU (gloo): 1 process vs N processes on the same global batches.

Prints, per world size and seed, the wall time, training segments per second and the last epoch's train and
validation losses, so that the speed-up and the agreement of the loss curves can be read side by side. The
processes of a run share the machine's cores (one torch thread each); on a machine busy with other work the
speed-up is meaningless, the loss agreement is not.

    python bench/distributed_scaling.py --epochs 20 --world 2 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from brainpipe.evaluate import fmri as ev
from brainpipe.io.fmri import run_dataset
from brainpipe.models.brainmae import BrainMAE
from brainpipe.preprocess.fmri import assemble_cohort, clean_run
from brainpipe.simulate import simulate
from brainpipe.training.distributed import current, spawn

SIM = {"n_subjects": 12, "rois_per_module": 4, "n_volumes": 150, "snr": 3.0, "high_motion_fraction": 0.0}
MODEL = dict(d_model=16, n_layers=1, n_heads=2, patience=None, lr=5e-3, batch_size=32, warmup_steps=5)


def cohort(seed: int):
    """The simulated cohort's train and validation segments (ROI x time)."""
    sim = simulate("fmri_modular_cohort", SIM, seed=100 + seed)
    runs = []
    for i, sub in enumerate(sim.data["subject"].values):
        ds = run_dataset(
            sim.data["bold"].values[i],
            sim.data["roi"].values,
            1.0,
            source=f"sim/sub-{sub}",
            entities={"sub": str(sub)},
            confounds=sim.data["motion"].values[i],
            confound_names=list(sim.data["motion_param"].values),
        )
        runs.append(clean_run(ds, high_pass=None))
    ds = assemble_cohort(runs, 10.0, n_folds=4, seed=0)
    tr, va, _ = ev.pretrain_split(ds)
    x = ds["signal"].values
    return x[tr], x[va]


def fit(seed: int, epochs: int, out: str | None = None) -> dict:
    """One pretraining run in this process (a rank when a process group is up)."""
    torch.set_num_threads(1)
    x_tr, x_va = cohort(seed)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = BrainMAE(**MODEL, max_epochs=epochs, seed=seed, device="cpu", progress=False).fit(x_tr, x_va)
    sec = time.perf_counter() - t0
    row = {
        "seconds": sec,
        "segments_per_s": len(x_tr) * epochs / sec,
        "train": model.history_[-1]["train_loss"],
        "val": model.history_[-1]["val_loss"],
    }
    comm = current()
    if out is not None and (comm is None or comm.is_main):
        torch.save(row, out)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    print("world seed seconds segments/s train_loss val_loss")
    rel = []
    for seed in args.seeds:
        one = fit(seed, args.epochs)
        out = f"/tmp/brainpipe-bench-ddp-{seed}.pt"
        spawn(fit, (seed, args.epochs, out), processes=args.world, backend="gloo", device="cpu")
        many = torch.load(out, weights_only=True)
        for w, r in ((1, one), (args.world, many)):
            print(f"{w} {seed} {r['seconds']:.1f} {r['segments_per_s']:.1f} {r['train']:.4f} {r['val']:.4f}")
        rel.append(abs(many["val"] - one["val"]) / abs(one["val"]))
    print(
        f"validation loss, |N-process - 1-process| / 1-process: mean {np.mean(rel):.4f}, max {np.max(rel):.4f}"
    )


if __name__ == "__main__":
    main()
