"""Read an fMRI dataset (fMRIPrep derivatives, 4D NIfTI + atlas, or ROI tables) into one ``roi_timeseries`` file
per run, streaming: one run in memory at a time.

params: ``path``, ``format`` (auto/fmriprep/nifti/table) and the reader options of
:func:`brainpipe.io.fmri.iter_runs` (``atlas``, ``atlas_labels``, ``participants``, ``confounds``, ``task``,
``space``, ``session``, ``repetition_time_s``, ``roi_names``, ``confound_columns``, ``drop_columns``).
The output folder holds ``<run id>.nc`` files; on any error the folder is removed (no partial output).
"""

from __future__ import annotations

import logging
from pathlib import Path

from brainpipe.config import FMRI_READER_KEYS
from brainpipe.data import make_provenance, write
from brainpipe.data.atomic import atomic_output
from brainpipe.errors import InputError
from brainpipe.io.fmri import iter_runs, run_id
from brainpipe.stages._runner import cli, stage

INPUTS = {
    "source": "fMRIPrep folder, NIfTI or ROI table(s)",
    "extra": "optional: atlas, labels, participants files",
}
OUTPUTS = {"roi": "folder of roi_timeseries .nc files, one per run"}
READER_KEYS = tuple(k for k in FMRI_READER_KEYS if k not in ("path", "format"))  # the reader's options
log_ = logging.getLogger("brainpipe.stages.ingest_fmri")


@stage
def run(inputs, outputs, params, log):
    src = Path(params.get("path") or inputs["source"])
    with atomic_output(outputs["roi"], stage="ingest_fmri", folder=True) as out:
        n = _ingest(src, out, params)
    log_.info("ingested %d run(s) from %s", n, src)


def _ingest(src: Path, out: Path, params: dict) -> int:
    opts = {k: params[k] for k in READER_KEYS if params.get(k) is not None}
    extra = [v for k, v in opts.items() if k in ("atlas", "atlas_labels", "participants")]
    n = 0
    for ds in iter_runs(src, params.get("format", "auto"), **opts):
        name = run_id(ds)
        target = out / f"{name}.nc"
        if target.exists():
            raise InputError(
                f"{ds.attrs['source']}: a second run named {name} (same subject/session/task/run); filter by task/space/session"
            )
        prov = make_provenance("ingest_fmri", params, [ds.attrs["source"], *extra], device="cpu")
        write(ds, target, "roi_timeseries", prov)
        n += 1
        log_.info(
            "%s: %d volumes x %d ROIs, TR %.3g s",
            name,
            ds.sizes["time"],
            ds.sizes["roi"],
            ds.attrs["repetition_time_s"],
        )
    return n


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
