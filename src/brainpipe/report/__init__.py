"""The study report: one self-contained HTML page (metrics vs bars, data QC and model figures, provenance).

>>> from brainpipe.report import write_report
>>> write_report("results/report/index.html", metrics, fits, counts, truths, title="My study",
...              switching_metrics=sw_metrics, switching_fits=sw_fits)  # doctest: +SKIP

:func:`build_report` returns the page as text; :func:`write_report` writes it atomically. Both read existing
results files only, so the page can be rebuilt without re-running any model. Figures live in
:mod:`brainpipe.report.figures` (imported lazily: matplotlib loads only when a page is built).
"""

from brainpipe.report.html import (
    DEFAULT_TITLE,
    build_report,
    collect,
    collect_switching,
    dataset_name,
    read_benchmarks,
    write_report,
)

__all__ = [
    "DEFAULT_TITLE",
    "build_report",
    "collect",
    "collect_switching",
    "dataset_name",
    "read_benchmarks",
    "write_report",
]
