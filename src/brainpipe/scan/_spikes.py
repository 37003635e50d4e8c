"""Look inside spike datasets for the folder scan: NWB units, phy folders, trialized ``.npz``, spike tables, MatClust."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from brainpipe.errors import ConfigError, InputError
from brainpipe.io._registry import Reader
from brainpipe.scan._files import _size, _table_header, _table_kind
from brainpipe.scan._found import FULL_READ_BYTES, FoundDataset, Question


# ---- look inside: spikes ---------------------------------------------------------------------------------------------
def _spike_facts(ds) -> dict[str, Any]:
    """What a reader's ``spike_times`` dataset holds."""
    facts: dict[str, Any] = {}
    if "unit" in ds.sizes:
        facts["units"] = int(ds.sizes["unit"])
    if "spike" in ds.sizes:
        facts["spikes"] = int(ds.sizes["spike"])
    t0, t1 = ds.attrs.get("t_start_s"), ds.attrs.get("t_stop_s")
    if t0 is not None and t1 is not None:
        facts["duration_s"] = float(t1) - float(t0)
    if "counts" in ds and ds.attrs.get("bin_width_s"):  # binned counts: (time, unit) with their bin width
        facts["bin_width_s"] = float(ds.attrs["bin_width_s"])
        facts.setdefault("duration_s", ds.sizes.get("time", 0) * facts["bin_width_s"])
    if "trial" in ds.sizes:
        facts["trials"] = int(ds.sizes["trial"])
    if "behaviour_var" in ds.coords:
        facts["behaviour"] = [str(v) for v in ds["behaviour_var"].values]
    stim = [
        str(v)[len("trial_") :]
        for v in ds.data_vars
        if str(v).startswith("trial_") and str(v) not in ("trial_start", "trial_stop", "trial_split")
    ]
    if stim:
        facts["stimulus"] = stim
        facts["stimulus_values"] = {s: int(np.unique(ds[f"trial_{s}"].values).size) for s in stim}
    return facts


def _read_spikes(found: FoundDataset) -> None:
    """Fill ``found.facts`` from the reader's output when the data is small; a read failure becomes a question."""
    from brainpipe.io import read

    if _size(found.path) > FULL_READ_BYTES:
        found.notes.append(
            f"larger than {FULL_READ_BYTES >> 20} MB: summarised from its headers, not read through"
        )
        return
    try:
        with _captured_warnings(found):
            ds = read(found.path, "spikes", found.format, **found.keys.get("options", {}))
    except (InputError, ConfigError) as err:
        found.notes.append(f"reading it failed: {err}")
        return
    found.facts.update(_spike_facts(ds))


@contextmanager
def _captured_warnings(found: FoundDataset) -> Iterator[None]:
    """The readers' log warnings while reading ``found`` become its notes (not lines on the terminal)."""

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = record.getMessage()
            for prefix in (f"{found.path}: ", f"{found.path.parent}/"):
                msg = msg[len(prefix) :] if msg.startswith(prefix) else msg
            found.notes.append(msg)

    log = logging.getLogger("brainpipe.io")
    handler, propagate = Keep(logging.WARNING), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _sniff_spike_nwb(reader: Reader, p: Path) -> FoundDataset | None:
    groups = _nwb_groups(p)
    if "units" not in groups:
        return None
    found = FoundDataset(p, "spikes", reader.name)
    found.facts["units"] = groups["units"]
    _read_spikes(found)
    return found


def _nwb_groups(p: Path) -> dict[str, Any]:
    """What an NWB file holds, from its HDF5 tree: {"units": n, "ophys": [(container, series, shape, rate)]}."""
    import h5py

    out: dict[str, Any] = {}
    try:
        with h5py.File(p, "r") as f:
            units = f.get("units")
            if isinstance(units, h5py.Group) and "spike_times" in units:
                out["units"] = int(units["id"].shape[0]) if "id" in units else 0
            ophys = f.get("processing/ophys")
            series = []
            if isinstance(ophys, h5py.Group):
                for cname in ("Fluorescence", "DfOverF"):
                    cont = ophys.get(cname)
                    if not isinstance(cont, h5py.Group):
                        continue
                    for sname, s in cont.items():
                        if not (isinstance(s, h5py.Group) and "data" in s):
                            continue
                        rate = None
                        if "starting_time" in s:
                            rate = s["starting_time"].attrs.get("rate")
                        elif "timestamps" in s and s["timestamps"].shape[0] > 1:
                            ts = s["timestamps"][: min(1000, s["timestamps"].shape[0])]
                            step = float(np.median(np.diff(ts)))
                            rate = 1.0 / step if step > 0 else None
                        series.append((cname, sname, tuple(s["data"].shape), rate))
            if series:
                out["ophys"] = series
                out["neuron_labels"] = _nwb_has_labels(ophys)
    except (OSError, RuntimeError, ValueError) as err:
        raise InputError(f"{p}: cannot be opened as NWB/HDF5 ({' '.join(str(err).split())[:100]})") from None
    return out


def _nwb_has_labels(ophys: Any) -> bool:
    """Whether an ophys module's ROI table (a PlaneSegmentation) has a neuron-label column."""
    import h5py

    from brainpipe.io.calcium import NWB_LABEL_COLUMNS

    found: list[bool] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and obj.attrs.get("neurodata_type") in (
            "PlaneSegmentation",
            b"PlaneSegmentation",
        ):
            found.append(any(c in obj for c in NWB_LABEL_COLUMNS))

    ophys.visititems(visit)
    return any(found)


def _sniff_phy(reader: Reader, p: Path) -> FoundDataset | None:
    if not (p / "spike_times.npy").is_file():
        return None
    from brainpipe.io._phy import params_value

    found = FoundDataset(p, "spikes", reader.name)
    if (p / "params.py").is_file():
        fs = params_value(p / "params.py", "sample_rate")
        if fs:
            found.facts["sample_rate_hz"] = float(fs)
    if "sample_rate_hz" not in found.facts:
        found.questions.append(
            Question(
                "options.sample_rate",
                "<Hz>",
                "params.py has no sample_rate: the acquisition rate of spike_times.npy (e.g. 30000)",
                required=True,
            )
        )
        return found
    groups = None
    for name in ("cluster_group.tsv", "cluster_KSLabel.tsv", "cluster_info.tsv"):
        if (p / name).is_file():
            import pandas as pd

            try:
                df = pd.read_csv(p / name, sep="\t", dtype=str, keep_default_na=False)
            except (OSError, ValueError):
                continue
            col = next((c for c in ("group", "KSLabel") if c in df.columns), None)
            if col:
                groups = Counter(df[col].str.strip())
                break
    if groups:
        found.facts["clusters"] = dict(groups)
        found.notes.append(
            "clusters: "
            + ", ".join(f"{n} {g}" for g, n in sorted(groups.items()))
            + " (only 'good' are read)"
        )
    _read_spikes(found)
    return found


def _sniff_trialized(reader: Reader, p: Path) -> FoundDataset | None:
    from brainpipe.io._common import npz_shapes

    shapes = npz_shapes(p)
    counts = shapes.get("spks", ())
    if len(counts) != 3:
        return None
    found = FoundDataset(p, "spikes", reader.name)
    found.facts.update(trials=counts[0], units=counts[1])
    _read_spikes(found)
    if "time" in shapes:
        with np.load(p, allow_pickle=False) as z:
            t = np.asarray(z["time"], dtype=np.float64)
        steps = np.diff(t, axis=-1) if t.ndim == 2 and t.shape[-1] > 1 else np.array([])
        if steps.size and np.allclose(steps, steps.flat[0], rtol=1e-3):
            found.facts["bin_width_s"] = round(float(steps.flat[0]), 9)
    return found


def _sniff_spike_table(reader: Reader, p: Path) -> FoundDataset | None:
    if p.suffix.lower() == ".npz":
        from brainpipe.io._common import npz_shapes

        if not {"unit", "time"} <= set(npz_shapes(p)):
            return None
    else:
        cols, _ = _table_header(p)
        if _table_kind(p, cols) != "spikes":
            return None
    found = FoundDataset(p, "spikes", reader.name)
    _read_spikes(found)
    return found


def _sniff_matclust(reader: Reader, p: Path) -> FoundDataset | None:
    found = FoundDataset(p, "spikes", reader.name)
    tracking = sorted(p.parent.glob("*.videoPositionTracking"))
    if len(tracking) == 1:
        found.keys["options"] = {"position": str(tracking[0])}
    elif tracking:
        found.questions.append(
            Question(
                "options.position",
                "<file>",
                "several .videoPositionTracking files beside it: " + ", ".join(t.name for t in tracking),
            )
        )
    _read_spikes(found)
    if any(n.startswith("reading it failed") for n in found.notes) and "units" not in found.facts:
        return None  # a .mat file that is not MatClust output
    return found
