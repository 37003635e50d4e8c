"""Clean every run of an ingested fMRI dataset (nilearn.signal.clean: scrub, detrend, band-pass, confounds,
standardize; see brainpipe.preprocess.fmri) and cut fixed-length segments into one ``roi_segments`` file with
subject-wise folds and the subjects' labels/phenotypes.

Runs of different TRs (sites): each run is cleaned with its own TR, then resampled to one TR
(:func:`brainpipe.preprocess.fmri.resample_run`): ``common_tr_s``, or by default the longest TR of the cohort when
the runs' TRs differ (a cohort of one TR is not resampled); each subject's acquisition TR is kept in
``subject_repetition_time``.

params: ``detrend``, ``standardize``, ``high_pass``, ``low_pass``, ``use_confounds``, ``scrub``, ``segment_s``,
``segment_step_s`` (null: non-overlapping), ``common_tr_s`` (null: the longest TR when runs differ), ``n_folds``,
``seed``, ``classification`` / ``regression`` (participants.tsv columns, or null).

Folds that are time blocks (a single-subject dataset): the runs are cleaned again with the trend, confound weights
and standardisation fitted outside the test block (fold 0) and the filter run on each side of it separately
(:func:`brainpipe.preprocess.fmri.clean_fitted`), so no test-block volume informs the cleaning of the others.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from brainpipe.data import make_provenance, open_dataset, read, write
from brainpipe.errors import InputError, OutputError
from brainpipe.io.fmri import run_id
from brainpipe.preprocess.fmri import assemble_cohort, check_length, clean_run, common_tr, resample_run
from brainpipe.stages._runner import cli, stage

INPUTS = {"roi": "folder of roi_timeseries .nc files"}
OUTPUTS = {"clean": "roi_segments .nc"}
CONFIG = "fmri.clean"
CLEAN_KEYS = ("detrend", "standardize", "high_pass", "low_pass", "use_confounds", "scrub")
log_ = logging.getLogger("brainpipe.stages.clean_fmri")


def held_out_volumes(coh):
    """``held_out(raw) -> (time,) bool``: the volumes of a raw run from its first test-fold (fold 0) segment on (the
    test block is the last block of the recording, so everything after its start is held out)."""
    test = np.asarray(coh["segment_fold"].values) == 0
    starts = np.asarray(coh["segment_start"].values)[test]
    runs = np.asarray(coh["segment_run"].values).astype(str)[test]

    def held_out(raw):
        t = np.asarray(raw["time"].values, dtype=np.float64)
        mine = starts[runs == run_id(raw)]
        return t >= mine.min() - 1e-6 if mine.size else np.zeros(t.size, dtype=bool)

    return held_out


def refit_on_training_blocks(coh, reassemble):
    """Clean again with every fitted step (trend, confounds, standardisation; filtering per stretch) learned outside
    the test block (fold 0), for a cohort whose folds are time blocks; the segments and folds must be unchanged."""
    again = reassemble(held_out_volumes(coh))
    same = again.sizes == coh.sizes and all(
        np.array_equal(again[v].values, coh[v].values)
        for v in ("segment_fold", "segment_start", "segment_run")
    )
    if not same:
        raise OutputError(
            "clean_fmri: refitting the cleaning on the training blocks changed the segments; "
            "report this (set fmri.clean.segment_step_s to null as a workaround)"
        )
    again.attrs["cleaning_fit"] = "training time blocks (folds >= 1); the test block (fold 0) never seen"
    log_.info(
        "time-block folds: cleaning refitted without the test block (%d segments)",
        int((coh["segment_fold"] == 0).sum()),
    )
    return again


@stage
def run(inputs, outputs, params, log):
    files = sorted(Path(inputs["roi"]).glob("*.nc"))
    if not files:
        raise InputError(f"{inputs['roi']}: no roi_timeseries files; check the ingest step")
    kw = {k: params[k] for k in CLEAN_KEYS}
    trs = {}
    for f in files:  # the runs' TRs first (attributes only), to choose the common TR before cleaning any
        with open_dataset(f) as ds:
            trs[f] = float(ds.attrs["repetition_time_s"])
    target = common_tr(trs.values(), params.get("common_tr_s"))
    if target is not None:
        log_.info(
            "runs at TR %s s: each cleaned at its own TR, then resampled to TR %g s",
            ", ".join(f"{v:g}" for v in sorted(set(trs.values()))),
            target,
        )

    def cleaned(held_out=None):
        for f in files:
            raw = read(f, "roi_timeseries")
            check_length(raw, float(params["segment_s"]))
            fit = None if held_out is None else ~held_out(raw)
            ds = clean_run(raw, **kw, fit=fit)
            if target is not None:
                ds = resample_run(ds, target)
            if ds.attrs.get("n_scrubbed"):
                log_.info("%s: %d volume(s) scrubbed", f.name, ds.attrs["n_scrubbed"])
            yield ds

    def assemble(runs):
        return assemble_cohort(
            runs,
            float(params["segment_s"]),
            params.get("classification"),  # the dataset's targets: absent for a cohort without labels
            params.get("regression"),
            int(params["n_folds"]),
            int(params["seed"]),
            params["segment_step_s"],
        )

    coh = assemble(cleaned())
    if (
        coh.attrs["split_by"] == "time"
    ):  # folds are time blocks: refit the cleaning on the training blocks only
        coh = refit_on_training_blocks(coh, lambda held_out: assemble(cleaned(held_out)))
    log_.info(
        "%d segments of %d volumes x %d ROIs from %d subject(s), split by %s",
        coh.sizes["segment"],
        coh.sizes["lag"],
        coh.sizes["roi"],
        coh.sizes["subject"],
        coh.attrs["split_by"],
    )
    prov = make_provenance("clean_fmri", params, files, seed=int(params["seed"]), device="cpu")
    write(coh, outputs["clean"], "roi_segments", prov)


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
