"""The folder walk of :func:`scan`: the look-inside of each format (:data:`SNIFFERS`), which reader claims a path,
and the names and groups of the datasets found."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from brainpipe.errors import ConfigError, InputError
from brainpipe.io import readers
from brainpipe.io._registry import Reader
from brainpipe.scan._calcium import (
    _sniff_calcium_array,
    _sniff_calcium_hdf5,
    _sniff_calcium_nwb,
    _sniff_suite2p,
)
from brainpipe.scan._files import _is_doc, _sidecar_value, _size
from brainpipe.scan._fmri import _sniff_fmri_table, _sniff_fmriprep, _sniff_nifti
from brainpipe.scan._found import (
    _GENERIC,
    _SIDECAR_SUFFIXES,
    FULL_READ_BYTES,
    FoundDataset,
    Question,
    Rejected,
    Scan,
)
from brainpipe.scan._spikes import (
    _read_spikes,
    _sniff_matclust,
    _sniff_phy,
    _sniff_spike_nwb,
    _sniff_spike_table,
    _sniff_trialized,
    _spike_facts,
)


# ---- readers without a look-inside here ----------------------------------------------------------------------------
def _sniff_generic(reader: Reader, p: Path) -> FoundDataset | None:
    """A reader registered after this module was written: its detector decides; small data is read to say more."""
    found = FoundDataset(p, reader.modality, reader.name, sure=False)
    for opt in reader.required:
        found.questions.append(
            Question(
                f"options.{opt}" if reader.modality != "fmri" else opt,
                f"<{opt}>",
                f"needed by format '{reader.name}'",
                required=True,
            )
        )
    if found.questions or _size(p) > FULL_READ_BYTES:
        return found
    from brainpipe.io import read

    try:
        result = read(p, reader.modality, reader.name)
        ds = next(iter(result)) if reader.modality == "fmri" else result
    except (InputError, ConfigError, StopIteration) as err:
        found.notes.append(f"reading it failed: {err}")
        return None
    if reader.modality == "spikes":
        found.facts.update(_spike_facts(ds))
    found.sure = True
    return found


def _content_claims(p: Path) -> set[tuple[str, str]]:
    """Formats a file's content names although their detector leaves them to ``format:`` (a CSV/TSV of binned
    counts with a ``bin_width_s`` sidecar)."""
    if p.is_file() and p.suffix.lower() in (".csv", ".tsv") and _sidecar_value(p, ("bin_width_s",))[0]:
        return {("spikes", "binned")}
    return set()


def _sniff_binned_table(reader: Reader, p: Path) -> FoundDataset | None:
    """Binned counts in a CSV/TSV: one column per unit (whole numbers), other numeric columns are behaviour."""
    width, _ = _sidecar_value(p, ("bin_width_s",))
    if p.suffix.lower() not in (".csv", ".tsv") or not width:
        return None if p.suffix.lower() in (".csv", ".tsv") else _sniff_generic(reader, p)
    import pandas as pd

    try:
        df = pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ",", nrows=20000)
    except (OSError, ValueError) as err:
        raise Rejected(f"cannot be read as a table ({' '.join(str(err).split())[:100]})") from None
    special = {"time", "trial", "split"}
    behaviour = [
        str(c)
        for c in df.columns
        if str(c) not in special
        and (
            df[c].dtype.kind == "f"
            and not np.all(df[c].dropna() == np.round(df[c].dropna()))
            or df[c].min() < 0
        )
    ]
    found = FoundDataset(p, "spikes", reader.name)
    if behaviour:
        found.keys["options"] = {"behaviour_keys": behaviour}
    found.facts.update(bin_width_s=width)
    _read_spikes(found)
    return found


#: The look-inside of each known format: ``(modality, format) -> sniff(reader, path)``, returning the dataset or None
#: when the content is not of that format after all.
SNIFFERS: dict[tuple[str, str], Callable[[Reader, Path], FoundDataset | None]] = {
    ("spikes", "nwb"): _sniff_spike_nwb,
    ("spikes", "phy"): _sniff_phy,
    ("spikes", "trialized_npz"): _sniff_trialized,
    ("spikes", "table"): _sniff_spike_table,
    ("spikes", "matclust"): _sniff_matclust,
    ("spikes", "binned"): _sniff_binned_table,
    ("calcium", "suite2p"): _sniff_suite2p,
    ("calcium", "nwb"): _sniff_calcium_nwb,
    ("calcium", "npy"): _sniff_calcium_array,
    ("calcium", "csv"): _sniff_calcium_array,
    ("calcium", "hdf5"): _sniff_calcium_hdf5,
    ("fmri", "fmriprep"): _sniff_fmriprep,
    ("fmri", "nifti"): _sniff_nifti,
    ("fmri", "table"): _sniff_fmri_table,
}


# ---- the walk --------------------------------------------------------------------------------------------------------


def _claim(p: Path, out: Scan) -> list[FoundDataset]:
    """The datasets at ``p`` (none, one, two for an NWB file with units and ophys, or one undecided)."""
    results: list[FoundDataset] = []
    failed: list[str] = []
    claimed = _content_claims(p)
    for reader in readers():
        try:
            if not (reader.matches(p) or (reader.modality, reader.name) in claimed):
                continue
            found = SNIFFERS.get((reader.modality, reader.name), _sniff_generic)(reader, p)
        except (InputError, ConfigError, OSError, Rejected) as err:
            failed.append(str(err))
            continue
        if found is not None:
            results.append(found)
    sure = [f for f in results if f.sure]
    if sure:
        return sure
    if len(results) == 1:
        return results
    if results:
        undecided = FoundDataset(
            p,
            None,
            None,
            choices=tuple((f.modality, f.format) for f in results),
            facts=results[0].facts,
            consumes=results[0].consumes,
        )
        return [undecided]
    if failed and p.is_file():
        out.skipped.append((p, failed[0]))
    return []


def _visit(p: Path, out: Scan, top: bool) -> None:
    if not top and p.name.startswith((".", "_")):
        out.skipped.append((p, "hidden"))
        return
    if p.is_file() and _is_doc(p):
        out.skipped.append((p, "documentation"))
        return
    n_skipped = len(out.skipped)
    found = _claim(p, out)
    out.extend(found)
    if p.is_dir():
        consumed: set[Path] = set()
        for f in found:
            if f.consumes == "all":
                return
            consumed |= set(f.consumes)
        for child in sorted(p.iterdir()):
            if child not in consumed:
                _visit(child, out, top=False)
    elif not found and len(out.skipped) == n_skipped:
        reason = "a sidecar" if p.suffix.lower() in _SIDECAR_SUFFIXES else "no reader claims it"
        if p.name == "participants.tsv":
            reason = "participants table (read with the fMRI data beside it)"
        out.skipped.append((p, reason))


def scan(paths: Iterable[str | os.PathLike]) -> Scan:
    """Find the datasets in folders and files.

    Parameters
    ----------
    paths : iterable of str or PathLike
        Folders to walk and files to look at.

    Returns
    -------
    Scan
        The datasets found (a list of :class:`FoundDataset`, named uniquely), with ``skipped`` (path, reason).

    Raises
    ------
    InputError
        A path does not exist.
    """
    out = Scan()
    for given in paths:
        p = Path(given)
        if not p.exists():
            raise InputError(f"{p}: does not exist; give folders or files that hold recordings")
        out.roots.append(p)
        _visit(p, out, top=True)
    _name(out)
    _group_calcium(out)
    _study_questions(out)
    used = {}
    for f in out:
        for key, value in [
            *f.keys.items(),
            *((f"options.{k}", v) for k, v in f.keys.get("options", {}).items()),
        ]:
            if isinstance(value, str) and key != "options":
                used[Path(value)] = f"read with {f.name} as {key}"
    out.skipped = [(p, used.get(p, reason)) for p, reason in out.skipped]
    return out


# ---- names and groups ------------------------------------------------------------------------------------------------
def _stem(p: Path) -> str:
    name = p.name
    for suf in (".nii.gz", ".tar.gz"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return p.stem if p.is_file() else name


def _sanitise(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_-")
    s = re.sub(r"_+", "_", s)
    return s or "dataset"


def _animal(p: Path) -> Path:
    """The folder or file that stands for one recording (a suite2p plane's animal folder, a file itself)."""
    q = p
    while _GENERIC.match(_stem(q)) and q.parent != q and q.parent.name:
        q = q.parent
    return q


def _base_name(f: FoundDataset) -> str:
    q = _animal(f.path)
    name = _stem(q)
    if (
        re.fullmatch(r"(session|sess|run|rec|animal|mouse|subject|sub)[_-]?\w{0,3}", name, re.I)
        and q.parent.name
    ):
        name = f"{_stem(_animal(q.parent))}_{name}"  # 'session1' alone says little
    plane = re.fullmatch(r"plane(\d+)", f.path.name)
    if plane and any(
        s.is_dir() and s.name.startswith("plane") and s != f.path for s in f.path.parent.iterdir()
    ):
        name += f"_plane{plane.group(1)}"
    return _sanitise(name)


def _name(found: Scan) -> None:
    names = [_base_name(f) for f in found]
    for n, count in Counter(names).items():
        if count < 2:
            continue
        clash = [i for i, m in enumerate(names) if m == n]
        for i in clash:  # the format (or modality) tells them apart: steinmetz_session1_nwb / _npz
            f = found[i]
            if len({found[j].format for j in clash}) == 1:
                tag = f.modality or "undecided"
            elif len({found[j].path.suffix for j in clash}) == len(clash) and f.path.suffix:
                tag = f.path.suffix.lstrip(".")
            else:
                tag = f.format or "undecided"
            names[i] = _sanitise(f"{n}_{tag}")
    seen: Counter[str] = Counter()
    for f, n in zip(found, names, strict=True):
        seen[n] += 1
        f.name = n if seen[n] == 1 else f"{n}-{seen[n]}"


def _group_calcium(found: Scan) -> None:
    for f in found:
        if f.modality == "calcium":
            f.group = str(_animal(f.path).parent)


def _study_questions(found: Scan) -> None:
    """A connectome study of animals imaged at different frame rates needs the rate to resample them to."""
    groups: dict[str, list[FoundDataset]] = {}
    for f in found:
        if f.modality == "calcium":
            groups.setdefault(f.group or "", []).append(f)
    for folder, members in groups.items():
        _match_question(folder, members)
        rates = {f.name: f.facts.get("frame_rate_hz") for f in members}
        known = {r for r in rates.values() if r}
        if len(known) < 2:
            continue
        listed = ", ".join(f"{n} {r:g} Hz" if r else f"{n} unknown" for n, r in rates.items())
        supported = _schema_has("calcium", "connectome", "studies", "*", "target_rate_hz")
        members[0].questions.append(
            Question(
                "target_rate_hz" if supported else "frame_rate_hz",
                "<Hz>",
                f"one frame rate for the study; the animals differ ({listed})"
                + ("; they are resampled to it" if supported else "; check each dataset's frame_rate_hz"),
                required=supported,
                full_key=f"calcium.connectome.studies.{_study_name(folder)}."
                + ("target_rate_hz" if supported else "datasets"),
            )
        )


def _match_question(folder: str, members: list[FoundDataset]) -> None:
    """Animals without neuron labels are paired by ROI index only when the study says so: ask for ``match_by``."""
    if len(members) < 2 or not _schema_has("calcium", "connectome", "studies", "*", "match_by"):
        return
    labelled = [f.name for f in members if f.facts.get("neuron_labels")]
    if len(labelled) == len(members):
        return  # matched by label (the default, auto)
    if labelled:
        hint = (
            f"neuron labels in {', '.join(labelled)} only; add labels to the others (suite2p: labels.tsv beside "
            "F.npy) or pair ROIs by index"
        )
    else:
        hint = "no neuron labels in these animals: index pairs ROI i of every animal (right if they are the same cells)"
    members[0].questions.append(
        Question(
            "match_by",
            "index",
            hint,
            required=True,
            full_key=f"calcium.connectome.studies.{_study_name(folder)}.match_by",
        )
    )


def _study_name(folder: str) -> str:
    return _sanitise(Path(folder).name or "calcium")


def _schema_has(*path: str) -> bool:
    """Whether the study schema has the key at ``path`` (``*`` steps into a mapping's values)."""
    from brainpipe.config import load_schema

    node: Any = load_schema()
    for part in path:
        node = node.get("additionalProperties") if part == "*" else node.get("properties", {}).get(part)
        if not isinstance(node, dict):
            return False
    return True
