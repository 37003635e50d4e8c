"""Read a recorded calcium dataset (suite2p plane folder, NWB ophys, or a plain time x neuron array) into
``calcium_traces``.

params: ``path``, ``format`` (auto, suite2p, nwb, npy, csv, hdf5), ``frame_rate_hz`` (else a JSON sidecar /
the NWB series), ``options`` (reader options: suite2p ``use_iscell``, ``min_iscell_prob``, ``allow_ops_pickle``;
NWB ``series``, ``label_column``, ``behaviour_series``; HDF5 ``key``, ``neuropil_key``; any format ``behaviour``: a
CSV/TSV/NPZ behaviour table with ``time_s``, read into ``behaviour(behaviour_time, behaviour_var)``),
``drop_bad_cells`` (drop all-NaN/constant ROIs instead of failing), ``kind`` (what the traces are: :data:`brainpipe.io.calcium.TRACE_KINDS`; checked against the
values and recorded in the output's ``trace_kind`` attribute, which preprocess_calcium follows).
"""

from __future__ import annotations

import logging

from brainpipe.data import make_provenance, write
from brainpipe.io.calcium import read_calcium
from brainpipe.stages._runner import cli, stage

INPUTS = {"source": "the recording (a suite2p plane folder or a file)"}
OUTPUTS = {"traces": "calcium_traces .nc"}
log_ = logging.getLogger("brainpipe.stages.ingest_calcium")


@stage
def run(inputs, outputs, params, log):
    ds = read_calcium(
        inputs["source"],
        params.get("format", "auto"),
        params.get("frame_rate_hz"),
        params.get("options", {}),
        bool(params.get("drop_bad_cells", False)),
        str(params.get("kind", "auto")),
    )
    n_labels = int((ds["label"] != "").sum()) if "label" in ds else 0
    log_.info(
        "read %d cells x %d frames at %g Hz; traces: %s; %d labelled neuron(s)",
        ds.sizes["cell"],
        ds.sizes["time"],
        ds.attrs["frame_rate_hz"],
        ds.attrs["trace_kind"],
        n_labels,
    )
    write(
        ds, outputs["traces"], "calcium_traces", make_provenance("ingest_calcium", params, [inputs["source"]])
    )


if __name__ == "__main__":
    raise SystemExit(cli(__name__))
