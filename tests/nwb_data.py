"""Small NWB files for the reader, scanner and fuzz tests: one way to build an ophys file (imaging plane, ROI table,
fluorescence series), so each test states only what it varies (trace values, rate, ROI ids, a label column)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np


def nwb_file(identifier: str = "test", description: str = "test"):
    """An empty NWB file (pynwb.NWBFile) with a fixed start time, so files built twice are identical."""
    from pynwb import NWBFile

    return NWBFile(description, identifier, dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))


def add_ophys(
    nwb,
    traces: np.ndarray,
    rate: float = 30.0,
    ids: list[int] | None = None,
    label_column: str | None = None,
    labels: list[str] | None = None,
    starting_time: float = 0.0,
) -> None:
    """Add an ``ophys`` module to ``nwb``: one imaging plane, a PlaneSegmentation with one single-pixel ROI per
    column of ``traces`` (frames x ROIs), optional ROI ids and a label column, and a Fluorescence
    ``RoiResponseSeries`` with the traces at ``rate`` Hz from ``starting_time`` (s, session clock)."""
    from pynwb.ophys import Fluorescence, ImageSegmentation, OpticalChannel

    n_rois = traces.shape[1]
    plane = nwb.create_imaging_plane(
        name="plane0",
        optical_channel=OpticalChannel(name="green", description="green", emission_lambda=500.0),
        description="x",
        device=nwb.create_device("scope"),
        excitation_lambda=920.0,
        imaging_rate=rate,
        indicator="GCaMP6f",
        location="V1",
    )
    seg = ImageSegmentation()
    ps = seg.create_plane_segmentation("cells", plane, name="PlaneSegmentation")
    if label_column:
        ps.add_column(label_column, "neuron identity")
    for k in range(n_rois):
        mask = np.zeros((max(8, n_rois), max(8, n_rois)))
        mask[k, k] = 1
        extra = {} if ids is None else {"id": ids[k]}
        if label_column:
            extra[label_column] = labels[k]
        ps.add_roi(image_mask=mask, **extra)
    ophys = nwb.create_processing_module("ophys", "optical physiology")
    ophys.add(seg)
    region = ps.create_roi_table_region("all", region=list(range(n_rois)))
    fl = Fluorescence(name="Fluorescence")
    fl.create_roi_response_series(
        name="RoiResponseSeries",
        data=traces,
        rois=region,
        unit="a.u.",
        rate=rate,
        starting_time=starting_time,
    )
    ophys.add(fl)


def write_nwb(nwb, path: Path) -> Path:
    """Write ``nwb`` to ``path`` and return the path."""
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return Path(path)


def ophys_nwb(path: Path, traces: np.ndarray, rate: float = 30.0, **roi_options) -> Path:
    """An NWB file holding only the ophys module of :func:`add_ophys` (``roi_options``: ids, label_column, labels)."""
    nwb = nwb_file(Path(path).stem)
    add_ophys(nwb, traces, rate, **roi_options)
    return write_nwb(nwb, path)
