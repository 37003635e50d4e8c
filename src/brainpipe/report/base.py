"""What every part of the page shares: the branch interface (:class:`BranchSection`, :class:`Headline`), reading
each input file once, and the small HTML helpers (numbers, figures, fact lists, anchors).

A branch adds its part of the page through a module ``brainpipe.report.<branch>`` with a function
``sections(files: dict[str, list[Path]]) -> list[BranchSection]``; the report stage passes it every input named
``<branch>__<key>`` (e.g. ``calcium__metrics``) as ``files[key]``. The spike branch is one such module
(:mod:`brainpipe.report.spikes`) like the others.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import xarray as xr

from brainpipe.data import read

PathLike = str | os.PathLike
DEFAULT_TITLE = "brainpipe study report"
#: passed flag of a metric -> (CSS class, label)
STATUS = {1: ("pass", "PASS"), 0: ("miss", "MISS"), -1: ("nobar", "no bar")}


@dataclass
class Headline:
    """The result of one model on one dataset in one line: its main metric against the best baseline.

    ``value`` of ``metric`` (``higher_better`` says which way is better), the best of the baselines
    (``baseline`` label and ``baseline_value``; None without a baseline), the main metric's bar (``bar_text``)
    and ``passed`` (1 met, 0 missed, -1 no bar). ``figure`` is the key figure's HTML (``<figure>``), ``""`` for none;
    ``anchor`` the id of the part of the page with the details.

    Parameters
    ----------
    dataset, model : str
        What the line is about (the metrics file's attributes).
    metric : str
        The main metric.
    value : float
        Its value.
    higher_better : bool
        Its direction.
    baseline : str or None
        The best baseline's label.
    baseline_value : float or None
        Its value.
    bar_text : str
        The main metric's bar (e.g. ``>= 0``), ``""`` without one.
    passed : int
        1 bar met, 0 missed, -1 no bar.
    figure : str
        The key figure's HTML.
    anchor : str
        Id of the details on the page.
    """

    dataset: str
    model: str
    metric: str
    value: float
    higher_better: bool
    baseline: str | None = None
    baseline_value: float | None = None
    bar_text: str = ""
    passed: int = -1
    figure: str = ""
    anchor: str = ""

    @property
    def difference(self) -> float | None:
        """``value - baseline_value`` (None without a baseline)."""
        if self.baseline_value is None:
            return None
        return float(self.value) - float(self.baseline_value)

    @property
    def beats_baseline(self) -> bool | None:
        """Whether the main metric is better than the best baseline (None without one, or for NaN)."""
        d = self.difference
        if d is None or math.isnan(d):
            return None
        return d > 0 if self.higher_better else d < 0


@dataclass
class BranchSection:
    """One section of the page contributed by a branch.

    ``anchor`` (HTML id), ``title`` (navigation label), ``html`` (a complete ``<section id=anchor>...</section>``),
    the metrics files it reports (they join the table of all metrics, in this order), its headlines (shown first on
    the page) and ``inputs``: every file it read, as (dataset, role, path, contract kind), for the provenance table.

    Parameters
    ----------
    anchor : str
        HTML id of the section.
    title : str
        Navigation label.
    html : str
        The section, ``<section id=anchor>...</section>``.
    metrics : list of Path
        Its metrics files, in page order.
    headlines : list of Headline
        Its headlines.
    inputs : list of (str, str, Path, str)
        (dataset, role, path, contract kind) of every file it read.
    """

    anchor: str
    title: str
    html: str
    metrics: list[Path] = field(default_factory=list)
    headlines: list[Headline] = field(default_factory=list)
    inputs: list[tuple[str, str, Path, str]] = field(default_factory=list)


class Reader:
    """Read each file once, validated against its contract."""

    def __init__(self):
        self._cache: dict[tuple[Path, str], xr.Dataset] = {}

    def __call__(self, path: PathLike, kind: str) -> xr.Dataset:
        key = (Path(path), kind)
        if key not in self._cache:
            self._cache[key] = read(path, kind)
        return self._cache[key]


def as_list(paths: PathLike | Iterable[PathLike] | None) -> list[Path]:
    """``paths`` as a list of :class:`~pathlib.Path` (one path, several, or None for none).

    Parameters
    ----------
    paths : path-like, iterable of path-like, or None
        What a rule or caller passed.

    Returns
    -------
    list of Path
    """
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def attr(ds: xr.Dataset, name: str, default: str = "") -> str:
    """A text attribute of ``ds``, stripped (``default`` when missing or empty)."""
    return str(ds.attrs.get(name, "") or "").strip() or default


def fmt(value: Any) -> str:
    """Numbers with 4 significant digits; NaN as 'NaN'; None as an em dash."""
    if value is None:
        return "—"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "NaN"
    return f"{v:.4g}"


def exact(value: Any) -> str:
    """repr-precision text of a float: ``float(exact(v)) == v`` (and 'nan' for NaN)."""
    return repr(float(value))


def slug(text: str, used: set[str], prefix: str = "ds") -> str:
    """A unique HTML id ``<prefix>-<text>`` (letters, digits, ``-`` and ``_``), recorded in ``used``."""
    base = re.sub(r"[^a-zA-Z0-9_-]+", "-", text).strip("-").lower() or "dataset"
    out, k = f"{prefix}-{base}", 1
    while out in used:
        k += 1
        out = f"{prefix}-{base}-{k}"
    used.add(out)
    return out


def img(uri: str, alt: str, caption: str, anchor: str = "") -> str:
    """A ``<figure>`` with an embedded image (``uri``: a ``data:`` URI) and its caption."""
    id_attr = f' id="{escape(anchor)}"' if anchor else ""
    return (
        f'<figure{id_attr}><img src="{escape(uri)}" alt="{escape(alt)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def facts(items: Iterable[tuple[str, str]]) -> str:
    """A definition list of (label, text) pairs."""
    return (
        '<dl class="facts">'
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
        + "</dl>"
    )
