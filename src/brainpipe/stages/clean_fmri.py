"""Clean every run of an ingested fMRI dataset (nilearn.signal.clean: scrub, detrend, band-pass, confounds,
standardize; see brainpipe.preprocess.fmri) and cut fixed-length segments into one ``roi_segments`` file with
subject-wise folds and the subjects' labels/phenotypes.

params: ``detrend``, ``standardize``, ``high_pass``, ``low_pass``, ``use_confounds``, ``scrub``, ``segment_s``,
``segment_step_s`` (null: non-overlapping), ``n_folds``, ``seed``, ``classification`` / ``regression`` (participants.tsv columns, or null).
"""

from __future__ import annotations

import logging
from pathlib import Path

from brainpipe.data import make_provenance, read, write
from brainpipe.errors import InputError
from brainpipe.preprocess.fmri import assemble_cohort, check_length, clean_run
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

    def cleaned():
        for f in files:
            raw = read(f, "roi_timeseries")
            check_length(raw, float(params["segment_s"]))
            ds = clean_run(raw, **kw)
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
