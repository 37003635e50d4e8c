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
"""

from __future__ import annotations

import logging
from pathlib import Path

from brainpipe.data import make_provenance, open_dataset, read, write
from brainpipe.errors import InputError
from brainpipe.preprocess.fmri import assemble_cohort, check_length, clean_run, common_tr, resample_run
from brainpipe.stages._runner import cli, stage

INPUTS = {"roi": "folder of roi_timeseries .nc files"}
OUTPUTS = {"clean": "roi_segments .nc"}
CONFIG = "fmri.clean"
CLEAN_KEYS = ("detrend", "standardize", "high_pass", "low_pass", "use_confounds", "scrub")
log_ = logging.getLogger("brainpipe.stages.clean_fmri")


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

    def cleaned():
        for f in files:
            raw = read(f, "roi_timeseries")
            check_length(raw, float(params["segment_s"]))
            ds = clean_run(raw, **kw)
            if target is not None:
                ds = resample_run(ds, target)
            if ds.attrs.get("n_scrubbed"):
                log_.info("%s: %d volume(s) scrubbed", f.name, ds.attrs["n_scrubbed"])
            yield ds

    coh = assemble_cohort(
        cleaned(),
        float(params["segment_s"]),
        params.get("classification"),  # the dataset's targets: absent for a cohort without labels
        params.get("regression"),
        int(params["n_folds"]),
        int(params["seed"]),
        params["segment_step_s"],
    )
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
