"""Look inside fMRI datasets for the folder scan: fMRIPrep derivatives, NIfTI runs, ROI tables, atlases and
``participants.tsv``."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from brainpipe.errors import InputError
from brainpipe.io._registry import Reader
from brainpipe.scan._files import (
    _is_doc,
    _npy_shape,
    _readme_hint,
    _sidecar_value,
    _sidecars,
    _table_header,
    _table_kind,
)
from brainpipe.scan._found import (
    _FMRI_GLOBAL,
    _FMRI_NUISANCE,
    _NUISANCE_LABELS,
    _TARGET_CLASS,
    _TARGET_REG,
    FoundDataset,
    Question,
    Rejected,
)


# ---- look inside: fMRI -----------------------------------------------------------------------------------------------
def _nifti_shape(p: Path):
    import nibabel as nib

    try:
        img = nib.load(str(p))
    except Exception as err:  # nibabel raises many kinds on a damaged header  # noqa: BLE001
        raise InputError(f"{p}: not a readable NIfTI ({' '.join(str(err).split())[:100]})") from None
    return img


def _nifti_tr(p: Path, img) -> float | None:
    tr, _ = _sidecar_value(p, ("RepetitionTime",))
    if tr:
        return tr
    zooms = img.header.get_zooms()
    units = img.header.get_xyzt_units()[1] if hasattr(img.header, "get_xyzt_units") else "sec"
    if len(zooms) > 3 and zooms[3] > 0 and units in ("sec", "msec", "usec"):
        return round(float(zooms[3]) * {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}[units], 6)
    return None


def _find_atlas(folder: Path) -> tuple[Path | None, Path | None, list[Path]]:
    """A 3D labels NIfTI near ``folder`` (in it, beside it, or in an ``atlas*``/``parcellation`` folder there)."""
    places = [folder, folder.parent]
    for base in (folder, folder.parent):
        places += [
            d for d in sorted(base.iterdir()) if d.is_dir() and re.match(r"(atlas|parc|label)", d.name, re.I)
        ]
    hits: list[Path] = []
    for place in places:
        for f in sorted(place.iterdir()):
            if f.is_file() and f.name.lower().endswith((".nii", ".nii.gz")):
                if re.search(r"(atlas|dseg|parc|label|schaefer|aal|harvard|gordon|glasser)", f.name, re.I):
                    try:
                        if len(_nifti_shape(f).shape) == 3:
                            hits.append(f)
                    except InputError:
                        continue
    if len(hits) != 1:
        return None, None, hits
    atlas = hits[0]
    stem = atlas.name[: -len(".nii.gz")] if atlas.name.lower().endswith(".gz") else atlas.stem
    labels = next(
        (atlas.with_name(stem + s) for s in (".tsv", ".csv", ".txt") if atlas.with_name(stem + s).is_file()),
        None,
    )
    return atlas, labels, hits


def _set_atlas(found: FoundDataset, folder: Path) -> None:
    atlas, labels, hits = _find_atlas(folder)
    if atlas is None:
        found.questions.append(
            Question(
                "atlas",
                "<labels.nii.gz>",
                (
                    "several labels images: " + ", ".join(h.name for h in hits)
                    if hits
                    else "no labels atlas found beside the images"
                )
                + " (a 3D labels NIfTI in the bold images' space)",
                required=True,
            )
        )
        return
    found.keys["atlas"] = str(atlas)
    if labels is not None:
        found.keys["atlas_labels"] = str(labels)
    else:
        found.questions.append(
            Question("atlas_labels", "<labels.tsv>", "ROI names of the atlas (index, name)")
        )


def _participants(found: FoundDataset, near: Sequence[Path], subjects: Sequence[str]) -> None:
    """Use a participants.tsv near the data: its path, its label columns, and a BrainMAE target from them."""
    table = next((d / "participants.tsv" for d in near if (d / "participants.tsv").is_file()), None)
    if table is None:
        return
    import pandas as pd

    try:
        df = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        found.notes.append(f"{table}: cannot be read as a table; not used")
        return
    if "participant_id" not in df.columns:
        found.notes.append(f"{table}: has no participant_id column; not used")
        return
    found.keys["participants"] = str(table)
    ids = df["participant_id"].str.replace(r"^sub-", "", regex=True)
    if subjects:
        df = df[ids.isin(set(subjects))]
    labels: dict[str, str] = {}
    classes, numbers = [], []
    for col in df.columns:
        if col == "participant_id":
            continue
        vals = df[col].str.strip().replace({"n/a": "", "NA": "", "nan": ""})
        vals = vals[vals != ""]
        num = pd.to_numeric(vals, errors="coerce")
        n_distinct = vals.nunique()
        if n_distinct < 2:
            labels[col] = f"{n_distinct} value"
            continue
        if num.notna().all() and n_distinct > 5:
            labels[col] = "numeric"
            numbers.append(col)
        else:
            counts = vals.value_counts()
            labels[col] = f"{n_distinct} values"
            if counts.min() >= 2 and n_distinct <= 10:
                classes.append(col)
    found.facts["labels"] = [f"{c} ({k})" for c, k in labels.items()]
    nuisance = [c for c in classes + numbers if c.lower() in _NUISANCE_LABELS]
    if nuisance:
        found.notes.append(f"{', '.join(nuisance)}: acquisition labels, not used as targets")

    def pick(cols: list[str], prefer: Sequence[str]) -> str | None:
        cols = [c for c in cols if c.lower() not in _NUISANCE_LABELS]
        return next((c for p in prefer for c in cols if c.lower() == p), cols[0] if cols else None)

    target = pick(classes, _TARGET_CLASS)
    if target:
        found.keys["classification"] = target
        others = [c for c in classes if c != target and c not in nuisance]
        if others:
            found.notes.append(f"classification: also possible: {', '.join(others)}")
    reg = pick(numbers, _TARGET_REG)
    if reg:
        found.keys["regression"] = reg


def _sniff_fmriprep(reader: Reader, p: Path) -> FoundDataset | None:
    if not p.is_dir():
        return None
    # the derivatives folder itself: subject folders or dataset_description.json directly in it
    if not (
        (p / "dataset_description.json").is_file()
        or any(c.is_dir() and c.name.startswith("sub-") for c in p.iterdir())
    ):
        return None
    bolds = sorted(p.rglob("*_desc-preproc_bold.nii*"))
    if not bolds:
        return None
    from brainpipe.io.fmri import bids_entities

    ents = [bids_entities(b.name) for b in bolds]
    found = FoundDataset(p, "fmri", reader.name)
    subjects = sorted({e.get("sub", "") for e in ents} - {""})
    found.facts.update(runs=len(bolds), subjects=subjects)
    for key in ("space", "task", "ses"):
        values = Counter(e.get(key) for e in ents if e.get(key))
        if len(values) > 1:
            pick = next((v for v in values if key == "space" and v.startswith("MNI")), None)
            cfg = "session" if key == "ses" else key
            if pick:
                found.keys[cfg] = pick
                found.notes.append(f"{cfg}: also found {', '.join(v for v in values if v != pick)}")
            else:
                found.questions.append(
                    Question(cfg, f"<{'|'.join(sorted(values))}>", f"the runs have several {cfg}s; pick one")
                )
    img = _nifti_shape(bolds[0])
    tr = _nifti_tr(bolds[0], img)
    if tr:
        found.facts["tr_s"] = tr
    if len(img.shape) == 4:
        found.facts["volumes"] = int(img.shape[3])
    _set_atlas(found, p)
    _participants(found, [p, p.parent, p.parent.parent], subjects)
    return found


def _sniff_nifti(reader: Reader, p: Path) -> FoundDataset | None:
    files = (
        [p]
        if p.is_file()
        else sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith((".nii", ".nii.gz")))
    )
    imgs = [(f, _nifti_shape(f)) for f in files]
    bolds = [(f, img) for f, img in imgs if len(img.shape) == 4 and img.shape[3] > 1]
    if not bolds:
        return None
    others = [f for f, img in imgs if (f, img) not in bolds]
    folder = p if p.is_dir() else p.parent
    found = FoundDataset(p, "fmri", reader.name, consumes={f for f, _ in imgs} | set(_sidecars_of(files)))
    from brainpipe.io.fmri import bids_entities

    subjects = sorted({bids_entities(f.name).get("sub", "") for f, _ in bolds} - {""})
    found.facts.update(runs=len(bolds), subjects=subjects, volumes=int(bolds[0][1].shape[3]))
    found.facts["grid"] = "x".join(str(int(s)) for s in bolds[0][1].shape[:3])
    trs = {_nifti_tr(f, img) for f, img in bolds}
    if len(trs) == 1 and None not in trs:
        found.facts["tr_s"] = trs.pop()
    elif None in trs:
        found.questions.append(
            Question(
                "repetition_time_s",
                "<seconds>",
                "no RepetitionTime sidecar and no time step in the NIfTI header",
                required=True,
            )
        )
    else:
        found.notes.append(f"the images have different TRs ({', '.join(f'{t:g}' for t in sorted(trs))} s)")
    if others and p.is_dir():
        found.questions.append(
            Question(
                "path",
                "<folder of 4D images only>",
                f"{', '.join(f.name for f in others)} (3D) sit among the 4D images, which the reader would read "
                "as runs; move them out",
                required=True,
            )
        )
    _set_atlas(found, folder)
    _participants(found, [folder, folder.parent], subjects)
    return found


def _sidecars_of(files: Iterable[Path]) -> list[Path]:
    return [s for f in files for s in _sidecars(f)]


def _fmri_table_found(
    reader: Reader, p: Path, tables: list[Path], cols: list[str], rows: int
) -> FoundDataset:
    from brainpipe.io.fmri import bids_entities

    consumed = set(tables) | set(_sidecars_of(tables))
    if p.is_dir() and (p / "participants.tsv").is_file():
        consumed.add(p / "participants.tsv")
    found = FoundDataset(p, "fmri", reader.name, consumes=consumed)
    low = {c.lower(): c for c in cols}
    confounds = [low[c] for c in low if c in _FMRI_NUISANCE]
    drop = [low[c] for c in low if c in _FMRI_GLOBAL]
    if confounds:
        found.keys["confound_columns"] = confounds
    labels = _label_columns(tables[0], cols)
    if drop or labels:
        found.keys["drop_columns"] = drop + labels
        if drop:
            found.notes.append(
                f"{', '.join(drop)}: global signal, dropped (move to confound_columns to regress it)"
            )
        if labels:
            found.notes.append(f"{', '.join(labels)}: integer labels with few values, not ROIs: dropped")
    n_rois = len(cols) - len(confounds) - len(drop) - len(labels)
    subjects = sorted({bids_entities(t.name).get("sub", "") for t in tables} - {""})
    found.facts.update(rois=n_rois, runs=len(tables), volumes=rows, subjects=subjects)
    trs = {_sidecar_value(t, ("RepetitionTime", "repetition_time_s"))[0] for t in tables}
    if len(trs) == 1 and None not in trs:
        found.keys["repetition_time_s"] = found.facts["tr_s"] = trs.pop()
    else:
        hint = _readme_hint(tables[0], r"TR\s*[=:]?\s*[0-9.]+\s*(s|sec|ms)\b")
        found.questions.append(
            Question(
                "repetition_time_s",
                "<seconds>",
                (
                    "ROI tables carry no TR (no JSON sidecar with RepetitionTime)"
                    if None in trs
                    else f"the tables' sidecars give different TRs ({', '.join(f'{t:g}' for t in sorted(trs))} s)"
                )
                + hint,
                required=True,
            )
        )
    folder = p if p.is_dir() else p.parent
    _participants(found, [folder, folder.parent], subjects)
    return found


def _label_columns(p: Path, cols: list[str]) -> list[str]:
    """Columns of a small integer range (event codes, conditions) in an ROI table: not ROI signals."""
    if p.suffix.lower() not in (".csv", ".tsv"):
        return []
    import pandas as pd

    try:
        df = pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ",", nrows=5000)
    except (OSError, ValueError):
        return []
    out = []
    for c in df.columns:
        v = df[c].to_numpy()
        if v.dtype.kind not in "iuf" or not np.all(np.isfinite(v)) or not np.all(v == np.round(v)):
            continue
        if np.unique(v).size <= 12 and str(c).lower() not in _FMRI_NUISANCE:
            out.append(str(c))
    return out


def _sniff_fmri_table(reader: Reader, p: Path) -> FoundDataset | None:
    from brainpipe.io.fmri import TABLE_SUFFIXES

    if p.is_file():
        if p.name == "participants.tsv":
            return None
        tables = [p]
    else:
        tables = sorted(
            f
            for f in p.iterdir()
            if f.is_file()
            and f.suffix.lower() in TABLE_SUFFIXES
            and f.name != "participants.tsv"
            and not f.name.startswith(".")
            and not _is_doc(f)
        )
        if len(tables) < 2 and not (p / "participants.tsv").is_file():
            return None  # one table: the file is the dataset (named after it)
    headers = []
    for t in tables:
        if t.suffix.lower() == ".npy":
            shape, dtype = _npy_shape(t)
            if len(shape) != 2 or dtype.kind not in "biuf":
                return None
            headers.append(([f"roi-{k + 1}" for k in range(shape[1])], shape[0], None))
        elif t.suffix.lower() in (".csv", ".tsv"):
            cols, rows = _table_header(t)
            headers.append((cols, rows, _table_kind(t, cols)))
        else:
            try:
                arr = np.loadtxt(t, comments="#", ndmin=2, max_rows=5)
            except (OSError, ValueError, UnicodeDecodeError):
                return None
            with open(t, "rb") as fh:
                rows = sum(1 for line in fh if line.strip() and not line.startswith(b"#"))
            headers.append(([f"roi-{k + 1}" for k in range(arr.shape[1])], rows, None))
    if len({tuple(h[0]) for h in headers}) != 1:
        return None  # tables of different columns are not the runs of one dataset
    kinds = {h[2] for h in headers}
    if kinds - {None, "fmri"}:
        return None
    cols, rows = headers[0][0], headers[0][1]
    found = _fmri_table_found(reader, p, tables, cols, rows)
    if found.facts["rois"] < 2:
        kept = [c for c in cols if c not in found.keys.get("drop_columns", [])]
        raise Rejected(
            f"one signal column ({', '.join(kept)}) and labels: not an ROI table for the fMRI models"
        )
    found.sure = "fmri" in kinds or p.is_dir()
    if p.is_dir():
        from brainpipe.io.fmri import find_tables

        extra = [f.name for f in find_tables(p) if f not in tables]
        if extra:  # the reader takes every table-suffixed file of the folder
            found.questions.append(
                Question(
                    "path",
                    "<a folder of the ROI tables only>",
                    f"the reader would read {', '.join(extra)} as ROI tables too; move them out of {p}",
                    required=True,
                )
            )
    return found
