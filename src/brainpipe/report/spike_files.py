"""The spike branch's input files, paired: each metrics file with its fit, its dataset's counts and (simulated data)
planted truth, named by the metrics file's ``dataset`` and ``model`` attributes.

Files are paired by their place in the results layout (``results/spikes/{dataset}/{model}/``,
``results/spikes/{dataset}/switching_glm/{variant}/``; :mod:`brainpipe.layout`), else by position in parallel lists.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr

from brainpipe.errors import InputError
from brainpipe.report.base import PathLike, Reader, as_list, attr

_DATASET_LEVEL_KINDS = ("counts", "truth", "spikes", "data")
_MODEL_LEVEL_KINDS = ("fit", "metrics")


def dataset_name(path: PathLike, kind: str | None = None) -> str:
    """The dataset a results file belongs to, from its folder.

    ``kind`` says where the file sits: ``"counts"``/``"truth"`` directly in the dataset folder
    (``results/spikes/{dataset}/counts.nc``), ``"fit"``/``"metrics"`` in a model folder below it
    (``results/spikes/{dataset}/{model}/fit.nc``). Without ``kind`` the file name decides (``counts.nc``,
    ``truth.nc``, ``spike_times.nc`` are dataset-level; anything else model-level).

    Parameters
    ----------
    path : path-like
        A results file.
    kind : str, optional
        ``"counts"``, ``"truth"``, ``"spikes"``, ``"data"`` (dataset level) or ``"fit"``, ``"metrics"``.

    Returns
    -------
    str
        The dataset folder's name.
    """
    p = Path(path)
    if kind is None:
        kind = "counts" if p.stem in ("counts", "truth", "spike_times") else "fit"
    if kind in _DATASET_LEVEL_KINDS:
        folder = p.parent
    elif kind in _MODEL_LEVEL_KINDS:
        folder = p.parent.parent
    else:
        raise ValueError(
            f"unknown file kind {kind!r}; expected one of {_DATASET_LEVEL_KINDS + _MODEL_LEVEL_KINDS}"
        )
    return folder.name or str(folder)


def model_name(path: PathLike) -> str:
    """The model folder of a fit or metrics file (``results/spikes/{dataset}/{model}/fit.nc`` -> model)."""
    return Path(path).parent.name


def switching_location(path: PathLike) -> tuple[str, str]:
    """(dataset folder, variant) of a switching-GLM fit or metrics file:
    ``results/spikes/{dataset}/switching_glm/{variant}/metrics.nc`` -> (dataset, variant). Without the
    ``switching_glm`` level (``{dataset}/{variant}/metrics.nc``) the dataset is the folder above the variant."""
    p = Path(path)
    variant = p.parent.name
    up = p.parent.parent
    folder = up.parent if up.name == "switching_glm" else up
    return folder.name or str(folder), variant


@dataclass
class Entry:
    """One (dataset, model) pair of the study and the files that describe it."""

    dataset: str  # the metrics file's ``dataset`` attribute (what the page shows)
    folder: str  # the dataset's folder name in the layout (how its files are matched)
    model: str
    metrics_path: Path
    fit_path: Path
    counts_path: Path
    truth_path: Path | None
    metrics: xr.Dataset = field(repr=False)
    variant: str | None = None  # switching GLMs: the variant folder (single, none, gaussian, onehot, ...)

    @property
    def switching(self) -> bool:
        return self.variant is not None


def _pick(
    candidates: Sequence[Path], i: int, n: int, folder: str, what: str, kind: str, model: str | None = None
) -> Path:
    """The file of list ``candidates`` for entry ``i`` of ``n``: by dataset (and model) folder, else by position."""
    if model is not None:
        named = [p for p in candidates if dataset_name(p, kind) == folder and model_name(p) == model]
    else:
        named = [p for p in candidates if dataset_name(p, kind) == folder]
    if len({os.fspath(p) for p in named}) == 1:
        return named[0]
    if len(candidates) == n:
        return candidates[i]
    raise InputError(
        f"report: cannot match a {what} file to dataset '{folder}' (got {len(candidates)} {what} file(s) for "
        f"{n} metrics file(s); give parallel lists or use the results/<modality>/<dataset>/ layout)"
    )


def _truths_by_folder(truths: Sequence[Path]) -> dict[str, Path]:
    """Dataset folder -> its planted truth file (the first one given for the folder)."""
    out: dict[str, Path] = {}
    for p in truths:
        out.setdefault(dataset_name(p, "truth"), p)
    return out


def collect(
    metrics_paths: Iterable[PathLike],
    fit_paths: Iterable[PathLike],
    count_paths: Iterable[PathLike],
    truth_paths: Iterable[PathLike] = (),
    reader: Reader | None = None,
    allow_empty: bool = False,
) -> list[Entry]:
    """Pair every metrics file with its fit, counts and (when there is one) truth file.

    Parameters
    ----------
    metrics_paths, fit_paths : iterable of path-like
        One metrics and one fit file per dataset and model (paired by folder, else by position).
    count_paths : iterable of path-like
        The counts of every dataset (by dataset folder, else parallel to the metrics).
    truth_paths : iterable of path-like
        Planted truths of simulated datasets (by dataset folder).
    reader : Reader, optional
        A shared file cache.
    allow_empty : bool
        Return [] for no metrics instead of raising :class:`~brainpipe.errors.InputError`.

    Returns
    -------
    list of Entry
        Named by each metrics file's ``dataset`` and ``model`` attributes.
    """
    reader = reader or Reader()
    metrics, fits, counts, truths = map(as_list, (metrics_paths, fit_paths, count_paths, truth_paths))
    if not metrics:
        if allow_empty:
            return []
        raise InputError("report: no metrics files given (nothing to report)")
    n = len(metrics)
    truth_by_folder = _truths_by_folder(truths)
    entries = []
    for i, mp in enumerate(metrics):
        ds = reader(mp, "metrics")
        folder = dataset_name(mp, "metrics")
        label, model = attr(ds, "dataset", folder), attr(ds, "model", model_name(mp))
        fit = _pick(fits, i, n, folder, "fit", "fit", model_name(mp))
        cnt = _pick(counts, i, n, folder, "counts", "counts")
        truth = truth_by_folder.get(folder, truth_by_folder.get(label))
        entries.append(Entry(label, folder, model, Path(mp), fit, cnt, truth, ds))
    check_names(entries)
    return entries


def check_names(entries: Sequence[Entry]) -> None:
    """One name, one dataset and one file per model: raise :class:`~brainpipe.errors.InputError` when two dataset
    folders carry the same ``dataset`` attribute or two metrics files the same dataset and model."""
    folder_of: dict[str, Entry] = {}
    seen: dict[tuple[str, str], Entry] = {}
    for e in entries:
        other = folder_of.setdefault(e.dataset, e)
        if other.folder != e.folder:
            raise InputError(
                f"report: {other.metrics_path} and {e.metrics_path} both name dataset '{e.dataset}' but sit in "
                "different dataset folders; give each dataset its own name (the metrics files' 'dataset' attribute)"
            )
        first = seen.setdefault((e.dataset, e.model), e)
        if first is not e:
            raise InputError(
                f"report: {first.metrics_path} and {e.metrics_path} are both model '{e.model}' on dataset "
                f"'{e.dataset}'; pass each metrics file once"
            )


def collect_switching(
    metrics_paths: Iterable[PathLike],
    fit_paths: Iterable[PathLike],
    count_paths: Iterable[PathLike],
    truth_paths: Iterable[PathLike] = (),
    reader: Reader | None = None,
) -> list[Entry]:
    """Pair every switching-GLM metrics file with its fit, the dataset's counts and its truth.

    Metrics files are ``results/spikes/{dataset}/switching_glm/{variant}/metrics.nc``; each is paired with its fit
    (same dataset and variant folder, else the same position: parallel lists), the dataset's counts (by dataset
    folder) and truth (by dataset folder, when there is one).

    Parameters
    ----------
    metrics_paths, fit_paths : iterable of path-like
        One switching-GLM metrics and fit file per dataset and variant.
    count_paths, truth_paths : iterable of path-like
        Counts (must include these datasets') and planted truths.
    reader : Reader, optional
        A shared file cache.

    Returns
    -------
    list of Entry
        With ``variant`` set, named by the metrics files' attributes.
    """
    reader = reader or Reader()
    metrics, fits, counts, truths = map(as_list, (metrics_paths, fit_paths, count_paths, truth_paths))
    n = len(metrics)
    if len(fits) != n:
        raise InputError(
            f"report: {n} switching metrics file(s) but {len(fits)} switching fit file(s); give parallel lists"
        )
    truth_by_folder = _truths_by_folder(truths)
    entries = []
    fit_at = [switching_location(p) for p in fits]
    for i, mp in enumerate(metrics):
        ds = reader(mp, "metrics")
        folder, variant = switching_location(mp)
        label, model = attr(ds, "dataset", folder), attr(ds, "model", f"switching_glm/{variant}")
        named = {os.fspath(p) for p, at in zip(fits, fit_at, strict=True) if at == (folder, variant)}
        fit = (
            Path(named.pop()) if len(named) == 1 else fits[i]
        )  # by folders, else by position (parallel lists)
        named_counts = sorted({os.fspath(p) for p in counts if dataset_name(p, "counts") == folder})
        if len(named_counts) != 1:
            raise InputError(
                f"report: cannot match a counts file to switching metrics {mp} (dataset folder '{folder}'; "
                f"{len(named_counts)} counts file(s) named so): pass results/spikes/{folder}/counts.nc in the counts"
            )
        truth = truth_by_folder.get(folder, truth_by_folder.get(label))
        entries.append(
            Entry(label, folder, model, Path(mp), fit, Path(named_counts[0]), truth, ds, variant=variant)
        )
    return entries
