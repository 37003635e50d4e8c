"""The study report: one self-contained HTML page (results first, every metric, each branch's sections, provenance).

>>> from brainpipe import layout
>>> from brainpipe.report import branch_files, write_report
>>> inputs = layout.report_inputs(layout.discover("results"))  # doctest: +SKIP
>>> write_report("results/report/index.html", branch_files(inputs), title="My study")  # doctest: +SKIP

:func:`build_report` returns the page as text; :func:`write_report` writes it atomically. Both read existing
results files only, so the page can be rebuilt without re-running any model. Every branch adds its part through
``brainpipe.report.<branch>.sections(files) -> list[BranchSection]`` (:mod:`brainpipe.report.base`); modules:
:mod:`~brainpipe.report.page` (assembly), :mod:`~.style` (CSS, script), :mod:`~.headline`, :mod:`~.tables`,
:mod:`~.provenance`, the branches :mod:`~.spikes` (with :mod:`~.spike_files`, :mod:`~.switching`), :mod:`~.fmri`, :mod:`~.calcium`,
:mod:`~.neuroformer`, and :mod:`~.figures` (one module per branch; matplotlib loads only when a page is built).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from brainpipe.errors import InputError
from brainpipe.report.base import DEFAULT_TITLE, BranchSection, Headline
from brainpipe.report.page import BRANCH_ORDER, branch_sections, build_report, write_report
from brainpipe.report.provenance import read_benchmarks
from brainpipe.report.spike_files import collect, collect_switching, dataset_name


def branch_files(inputs: Mapping[str, Iterable]) -> dict[str, dict[str, list[Path]]]:
    """Group report inputs named ``<branch>__<key>`` by branch: ``{"spikes": {"metrics": [...]}, ...}``.

    Parameters
    ----------
    inputs : mapping
        Input name -> a path or a list of paths (a rule's named inputs; :func:`brainpipe.layout.report_inputs`).

    Returns
    -------
    dict
        Branch -> key -> list of paths.

    Raises
    ------
    brainpipe.errors.InputError
        For an input name without a branch.
    """
    out: dict[str, dict[str, list[Path]]] = {}
    for key, value in inputs.items():
        if "__" not in key:
            raise InputError(
                f"report: input {key!r} names no branch; name report inputs <branch>__<key> (e.g. spikes__{key})"
            )
        branch, name = key.split("__", 1)
        values = [value] if isinstance(value, (str, Path)) else list(value or [])
        out.setdefault(branch, {})[name] = [Path(v) for v in values]
    return out


__all__ = [
    "BRANCH_ORDER",
    "DEFAULT_TITLE",
    "BranchSection",
    "Headline",
    "branch_files",
    "branch_sections",
    "build_report",
    "collect",
    "collect_switching",
    "dataset_name",
    "read_benchmarks",
    "write_report",
]
