"""Look inside calcium datasets for the folder scan: suite2p planes, NWB ophys traces, arrays, HDF5 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainpipe.io._registry import Reader
from brainpipe.scan._files import _json, _npy_shape, _sidecar_value, _sidecars, _table_header, _table_kind
from brainpipe.scan._found import FoundDataset, Question
from brainpipe.scan._spikes import _nwb_groups


# ---- look inside: calcium --------------------------------------------------------------------------------------------
def _rate_question(found: FoundDataset, what: str) -> None:
    found.questions.append(
        Question(
            "frame_rate_hz",
            "<Hz>",
            f"{what}; the imaging frame rate (suite2p's ops 'fs', the microscope's metadata)",
            required=True,
        )
    )


def _sniff_suite2p(reader: Reader, p: Path) -> FoundDataset | None:
    if not (p.is_dir() and (p / "F.npy").is_file() and (p / "Fneu.npy").is_file()):
        return None
    shape, _ = _npy_shape(p / "F.npy")
    if len(shape) != 2:
        return None
    found = FoundDataset(p, "calcium", reader.name)
    found.facts.update(cells=shape[0], frames=shape[1], kind="raw_with_neuropil")
    sample = np.load(p / "F.npy", mmap_mode="r", allow_pickle=False)[:, : min(shape[1], 2000)]
    if sample.size and float(np.min(sample)) < 0:  # raw fluorescence is positive; CNMF-E's C is not
        found.facts["kind"] = "denoised"
        found.notes.append("F.npy goes negative: denoised traces (e.g. CNMF-E C), not raw fluorescence")
    if (p / "iscell.npy").is_file():
        try:
            isc = np.load(p / "iscell.npy", allow_pickle=False)
            n = int((isc[:, 0] if isc.ndim == 2 else isc).astype(float).__gt__(0.5).sum())
            found.notes.append(f"{n} of {shape[0]} ROIs marked as cells in iscell.npy (only those are read)")
            found.facts["cells"] = n
        except (OSError, ValueError, IndexError):
            pass
    from brainpipe.io.calcium import SUITE2P_LABELS

    found.facts["neuron_labels"] = (p / SUITE2P_LABELS).is_file()
    rate, src = _sidecar_value(p, ("frame_rate_hz", "fs"))
    if rate is None:
        where = "ops.npy is a pickle and is not read" if (p / "ops.npy").is_file() else "no frame_rate.json"
        _rate_question(found, f"no frame rate beside F.npy ({where})")
    elif src and src.endswith(":fs") and rate == 1.0:
        found.questions.append(
            Question(
                "frame_rate_hz",
                "<Hz>",
                f"{src} says fs = 1.0, suite2p's default, so the true frame rate is unknown; set the microscope's",
            )
        )
        found.facts["frame_rate_hz"] = rate
    else:
        found.facts["frame_rate_hz"] = rate
    if found.facts.get("frame_rate_hz"):
        found.facts["duration_s"] = shape[1] / found.facts["frame_rate_hz"]
    return found


def _sniff_calcium_nwb(reader: Reader, p: Path) -> FoundDataset | None:
    groups = _nwb_groups(p)
    series = [s for s in groups.get("ophys", []) if s[1].lower() != "neuropil"]
    if not series:
        return None
    cname, sname, shape, rate = series[0]
    found = FoundDataset(p, "calcium", reader.name)
    found.facts.update(frames=shape[0], cells=shape[1] if len(shape) > 1 else 1)
    has_neuropil = any(s[1].lower() == "neuropil" for s in groups["ophys"])
    found.facts["kind"] = "dff" if cname == "DfOverF" else ("raw_with_neuropil" if has_neuropil else "raw")
    found.facts["neuron_labels"] = bool(groups.get("neuron_labels"))
    if len(series) > 1:
        found.keys["options"] = {"series": sname}
        found.notes.append("other series: " + ", ".join(s[1] for s in series[1:]) + " (options.series)")
    if rate:
        found.facts["frame_rate_hz"] = round(float(rate), 6)
        found.facts["duration_s"] = shape[0] / float(rate)
    else:
        _rate_question(found, f"series {sname} has neither a rate nor timestamps")
    return found


def _array_found(reader: Reader, p: Path, shape: tuple[int, ...]) -> FoundDataset:
    found = FoundDataset(p, "calcium", reader.name)
    found.facts.update(frames=shape[0], cells=shape[1])
    found.facts["neuron_labels"] = any(
        isinstance((_json(side) or {}).get("labels"), list) for side in _sidecars(p)
    )
    found.questions.append(
        Question(
            "kind",
            "<raw|dff|denoised|deconvolved>",
            "what the array holds (auto reads it as raw fluorescence)",
        )
    )
    rate, _ = _sidecar_value(p, ("frame_rate_hz", "fs"))
    if rate:
        found.facts["frame_rate_hz"] = rate
        found.facts["duration_s"] = shape[0] / rate
    else:
        _rate_question(found, f"no {p.name}.json sidecar with frame_rate_hz")
    return found


def _sniff_calcium_array(reader: Reader, p: Path) -> FoundDataset | None:
    suffix = p.suffix.lower()
    if suffix == ".npy":
        shape, dtype = _npy_shape(p)
        if len(shape) != 2 or dtype.kind not in "biuf":
            return None
        found = _array_found(reader, p, shape)
        found.sure = _table_kind(p, []) == "calcium"
        return found
    if suffix == ".csv":
        cols, rows = _table_header(p)
        kind = _table_kind(p, cols)
        if kind not in (None, "calcium"):
            return None
        found = _array_found(reader, p, (rows, len(cols)))
        found.sure = kind == "calcium"
        return found
    return _sniff_calcium_hdf5(reader, p)


def _sniff_calcium_hdf5(reader: Reader, p: Path) -> FoundDataset | None:
    import h5py

    arrays: list[tuple[str, tuple[int, ...]]] = []
    try:
        with h5py.File(p, "r") as f:
            f.visititems(
                lambda n, o: (
                    arrays.append((n, o.shape)) if isinstance(o, h5py.Dataset) and len(o.shape) == 2 else None
                )
            )
    except (OSError, RuntimeError, ValueError):
        return None
    if not arrays:
        return None
    found = _array_found(reader, p, arrays[0][1])
    if len(arrays) > 1:
        found.questions.append(
            Question(
                "options.key",
                "<dataset>",
                "several 2-D arrays: " + ", ".join(f"{n}{s}" for n, s in arrays[:6]) + " (time x neuron)",
                required=True,
            )
        )
    else:
        found.keys["options"] = {"key": arrays[0][0]}
    return found
