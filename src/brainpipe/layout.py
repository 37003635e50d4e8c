"""Where every result of the workflow lives: one table of path templates, used by the rules, the report and the CLI.

Each result has a name and a template relative to the results folder; ``{...}`` fields are the rules' wildcards
(``dataset``, ``variant``, ``fmri_dataset``, ``fmri_variant``, ``cadataset``, ``study``).

>>> from brainpipe import layout
>>> layout.path("counts")                      # a rule's pattern: wildcards left in place
'results/spikes/{dataset}/counts.nc'
>>> layout.path("counts", dataset="sim")        # one file
'results/spikes/sim/counts.nc'
>>> layout.path("report_page", root="out")
'out/report/index.html'

The report's inputs are named ``<branch>__<key>`` (``spikes__metrics``, ``fmri__clean``, ...):
:func:`report_inputs` builds them from the names of what a study ran (:class:`StudyRuns`), for the workflow (names
from the config) and for ``brainpipe report`` (names found on disk by :func:`discover`), so both give the page the
same files.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "RESULTS",
    "TEMPLATES",
    "StudyRuns",
    "calcium_report_inputs",
    "discover",
    "fields",
    "find",
    "fmri_report_inputs",
    "match",
    "neuroformer_report_inputs",
    "path",
    "paths",
    "report_inputs",
    "spike_report_inputs",
]

#: the results folder of a study, relative to the working folder
RESULTS = "results"

#: result name -> template below the results folder
TEMPLATES: dict[str, str] = {
    # spike branch
    "spike_times": "spikes/{dataset}/spike_times.nc",
    "spike_truth": "spikes/{dataset}/truth.nc",
    "counts": "spikes/{dataset}/counts.nc",
    "poisson_glm_fit": "spikes/{dataset}/poisson_glm/fit.nc",
    "poisson_glm_metrics": "spikes/{dataset}/poisson_glm/metrics.nc",
    "switching_fit": "spikes/{dataset}/switching_glm/{variant}/fit.nc",
    "switching_metrics": "spikes/{dataset}/switching_glm/{variant}/metrics.nc",
    # Neuroformer (spike branch)
    "neuroformer_pretrained": "spikes/{dataset}/neuroformer/pretrained.nc",
    "neuroformer_finetune": "spikes/{dataset}/neuroformer/finetune.nc",
    "neuroformer_metrics": "spikes/{dataset}/neuroformer/metrics.nc",
    "neuroformer_connectivity": "spikes/{dataset}/neuroformer/connectivity.nc",
    # fMRI branch
    "fmri_source": "fmri/{fmri_dataset}/source",
    "fmri_truth": "fmri/{fmri_dataset}/truth.nc",
    "fmri_roi": "fmri/{fmri_dataset}/roi",
    "fmri_clean": "fmri/{fmri_dataset}/clean.nc",
    "fmri_baselines": "fmri/{fmri_dataset}/baselines/metrics.nc",
    "brainmae_weights": "fmri/{fmri_dataset}/brainmae/{fmri_variant}/weights.pt",
    "brainmae_fit": "fmri/{fmri_dataset}/brainmae/{fmri_variant}/fit.nc",
    "brainmae_metrics": "fmri/{fmri_dataset}/brainmae/{fmri_variant}/metrics.nc",
    # calcium branch
    "calcium_traces": "calcium/{cadataset}/traces.nc",
    "calcium_truth": "calcium/{cadataset}/truth.nc",
    "calcium_processed": "calcium/{cadataset}/processed.nc",
    "connectome_tensor": "calcium/{study}/connectome/tensor.zarr",
    "connectome_fit": "calcium/{study}/connectome/fit.nc",
    "connectome_metrics": "calcium/{study}/connectome/metrics.nc",
    # the study page
    "report_page": "report/index.html",
    "metrics_table": "report/metrics.tsv",
}


class _Keep(dict):
    """format_map mapping that leaves unknown fields as ``{field}`` (a rule's wildcard)."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fields(name: str) -> list[str]:
    """The wildcard fields of result ``name``, in template order.

    Parameters
    ----------
    name : str
        A key of :data:`TEMPLATES`.

    Returns
    -------
    list of str
        Field names such as ``["dataset", "variant"]``.
    """
    return [f for _, f, _, _ in string.Formatter().parse(_template(name)) if f]


def _template(name: str) -> str:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise KeyError(f"no result named {name!r} in brainpipe.layout.TEMPLATES") from None


def path(name: str, root: str | os.PathLike = RESULTS, **wildcards: str) -> str:
    """The path of result ``name`` below ``root``; fields not given stay as ``{field}`` (a rule's pattern).

    Parameters
    ----------
    name : str
        A key of :data:`TEMPLATES` (e.g. ``"counts"``, ``"switching_metrics"``).
    root : str or path-like
        The results folder (default ``results``, relative to the working folder).
    **wildcards : str
        Values of the template's fields (e.g. ``dataset="sim"``).

    Returns
    -------
    str
        ``root/<template>`` with the given fields filled in.

    Raises
    ------
    KeyError
        ``name`` is not a result of :data:`TEMPLATES`.
    TypeError
        A wildcard is not a field of the template.

    Examples
    --------
    >>> from brainpipe import layout
    >>> layout.path("counts")                      # a rule's pattern: wildcards left in place
    'results/spikes/{dataset}/counts.nc'
    >>> layout.path("switching_fit", dataset="sim", variant="prior")
    'results/spikes/sim/switching_glm/prior/fit.nc'
    >>> layout.path("report_page", root="out")
    'out/report/index.html'
    """
    unknown = set(wildcards) - set(fields(name))
    if unknown:
        raise TypeError(f"result {name!r} has no field(s) {sorted(unknown)} (fields: {fields(name)})")
    rel = _template(name).format_map(_Keep({k: str(v) for k, v in wildcards.items()}))
    return f"{Path(root).as_posix()}/{rel}"


def paths(name: str, values: list, root: str | os.PathLike = RESULTS) -> list[str]:
    """:func:`path` for each of ``values``: names (one-field templates) or tuples (in :func:`fields` order).

    Parameters
    ----------
    name : str
        A key of :data:`TEMPLATES`.
    values : list
        One entry per file: a string for a template with one field, a tuple for several.
    root : str or path-like
        The results folder.

    Returns
    -------
    list of str
        One path per entry, in the given order.

    Examples
    --------
    >>> paths("switching_metrics", [("sim", "none"), ("sim", "prior")])
    ['results/spikes/sim/switching_glm/none/metrics.nc', 'results/spikes/sim/switching_glm/prior/metrics.nc']
    """
    names = fields(name)
    out = []
    for v in values:
        vals = (v,) if isinstance(v, str) else tuple(v)
        if len(vals) != len(names):
            raise TypeError(f"result {name!r} needs {len(names)} field value(s) {names}, got {vals!r}")
        out.append(path(name, root, **dict(zip(names, vals, strict=True))))
    return out


def match(name: str, file: str | os.PathLike) -> tuple[Path, dict[str, str]] | None:
    """Read a path back: the results folder and field values of ``file`` if it is a result ``name``, else None.

    Parameters
    ----------
    name : str
        A key of :data:`TEMPLATES`.
    file : str or path-like
        Any path (relative or absolute).

    Returns
    -------
    (Path, dict) or None
        The results folder the file sits in and its field values, e.g.
        ``(Path("results"), {"dataset": "sim"})`` for ``results/spikes/sim/counts.nc``.

    Examples
    --------
    >>> match("counts", "out/results/spikes/sim/counts.nc")
    (PosixPath('out/results'), {'dataset': 'sim'})
    >>> match("counts", "results/spikes/sim/fit.nc") is None
    True
    """
    parts = re.split(r"\{(\w+)\}", _template(name))
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
    text = Path(file).as_posix()
    m = re.search(r"(?:^|/)" + regex + "$", text)
    if m is None:
        return None
    root = text[: m.start()] or ("/" if m.group(0).startswith("/") else ".")
    return Path(root), dict(m.groupdict())


def find(
    name: str, root: str | os.PathLike = RESULTS, files: Iterable[str | os.PathLike] | None = None
) -> list[tuple]:
    """Field values of every existing result ``name`` below ``root`` (or among ``files``), sorted.

    Parameters
    ----------
    name : str
        A key of :data:`TEMPLATES`.
    root : str or path-like
        The results folder to search.
    files : iterable of path-like, optional
        Search these paths instead of the folder (e.g. the results a run finished).

    Returns
    -------
    list
        One entry per file found: the value (one-field templates) or a tuple of values (in :func:`fields` order).
    """
    names = fields(name)
    pattern = _template(name).format_map({f: "*" for f in names})
    out = []
    for p in sorted(Path(root).glob(pattern)) if files is None else [Path(f) for f in files]:
        hit = match(name, p)
        if hit is None:
            continue
        vals = tuple(hit[1][f] for f in names)
        out.append(vals[0] if len(vals) == 1 else vals)
    return sorted(set(out))


# ---------------------------------------------------------------------------------------------- report inputs


@dataclass
class StudyRuns:
    """The names of what a study ran, per branch: what the report reads.

    Spike branch: ``glm`` (datasets with a Poisson GLM), ``switching`` ((dataset, variant) pairs),
    ``spike_truths`` (simulated datasets among those). fMRI: ``fmri`` (datasets), ``brainmae`` ((dataset, variant)
    pairs), ``fmri_truths`` (simulated datasets). Calcium: ``calcium`` (datasets), ``connectomes`` (studies).
    Neuroformer: ``neuroformer`` (datasets), ``neuroformer_decoded`` (those with a decoding target),
    ``neuroformer_truths`` (simulated ones).

    Parameters
    ----------
    glm : list of str
        Spike datasets with a Poisson GLM.
    switching : list of (str, str)
        (dataset, variant) of every switching GLM.
    spike_truths : list of str
        Simulated spike datasets among those.
    fmri : list of str
        The fMRI datasets.
    brainmae : list of (str, str)
        (dataset, variant) of every BrainMAE run.
    fmri_truths : list of str
        Simulated fMRI datasets.
    calcium : list of str
        Calcium datasets.
    connectomes : list of str
        Dynamic-connectome studies.
    neuroformer : list of str
        Spike datasets with a Neuroformer.
    neuroformer_decoded : list of str
        Those with a decoding target.
    neuroformer_truths : list of str
        Those with a planted truth.
    """

    glm: list[str] = field(default_factory=list)
    switching: list[tuple[str, str]] = field(default_factory=list)
    spike_truths: list[str] = field(default_factory=list)
    fmri: list[str] = field(default_factory=list)
    brainmae: list[tuple[str, str]] = field(default_factory=list)
    fmri_truths: list[str] = field(default_factory=list)
    calcium: list[str] = field(default_factory=list)
    connectomes: list[str] = field(default_factory=list)
    neuroformer: list[str] = field(default_factory=list)
    neuroformer_decoded: list[str] = field(default_factory=list)
    neuroformer_truths: list[str] = field(default_factory=list)


def spike_report_inputs(
    glm: list[str], switching: list[tuple[str, str]], truths: list[str], root: str | os.PathLike = RESULTS
) -> dict[str, list[str]]:
    """The spike branch's report inputs (``spikes__<key>``), each list sorted by name.

    Parameters
    ----------
    glm : list of str
        Datasets with a Poisson GLM.
    switching : list of (str, str)
        (dataset, variant) of every switching GLM.
    truths : list of str
        Datasets with a planted truth (only those among ``glm`` and ``switching`` are used).
    root : str or path-like
        The results folder.

    Returns
    -------
    dict
        ``spikes__metrics``/``spikes__fits`` (Poisson GLMs, parallel), ``spikes__switching_metrics``/
        ``spikes__switching_fits`` (parallel), ``spikes__counts`` and ``spikes__truths`` (one per dataset).
    """
    glm, switching = sorted(glm), sorted(tuple(r) for r in switching)  # one order, whoever names them
    used = sorted(set(glm) | {d for d, _ in switching})
    return {
        "spikes__metrics": paths("poisson_glm_metrics", glm, root),
        "spikes__fits": paths("poisson_glm_fit", glm, root),
        "spikes__switching_metrics": paths("switching_metrics", switching, root),
        "spikes__switching_fits": paths("switching_fit", switching, root),
        "spikes__counts": paths("counts", used, root),
        "spikes__truths": paths("spike_truth", [d for d in used if d in set(truths)], root),
    }


def fmri_report_inputs(
    datasets: list[str], brainmae: list[tuple[str, str]], truths: list[str], root: str | os.PathLike = RESULTS
) -> dict[str, list[str]]:
    """The fMRI branch's report inputs (``fmri__<key>``).

    Parameters
    ----------
    datasets : list of str
        The fMRI datasets (each has cleaned segments and baselines).
    brainmae : list of (str, str)
        (dataset, variant) of every BrainMAE run.
    truths : list of str
        Simulated datasets (with a planted truth).
    root : str or path-like
        The results folder.

    Returns
    -------
    dict
        ``fmri__metrics``/``fmri__fits`` (parallel, one per run), ``fmri__baselines``, ``fmri__clean``,
        ``fmri__truths``.
    """
    names, brainmae = sorted(datasets), sorted(tuple(r) for r in brainmae)
    return {
        "fmri__metrics": paths("brainmae_metrics", brainmae, root),
        "fmri__fits": paths("brainmae_fit", brainmae, root),
        "fmri__baselines": paths("fmri_baselines", names, root),
        "fmri__clean": paths("fmri_clean", names, root),
        "fmri__truths": paths("fmri_truth", sorted(truths), root),
    }


def calcium_report_inputs(
    datasets: list[str], studies: list[str], root: str | os.PathLike = RESULTS
) -> dict[str, list[str]]:
    """The calcium branch's report inputs (``calcium__<key>``).

    Parameters
    ----------
    datasets : list of str
        Calcium datasets (their processed traces).
    studies : list of str
        Connectome studies.
    root : str or path-like
        The results folder.

    Returns
    -------
    dict
        ``calcium__metrics``, ``calcium__fits`` (one per study) and ``calcium__processed`` (one per dataset).
    """
    return {
        "calcium__metrics": paths("connectome_metrics", sorted(studies), root),
        "calcium__fits": paths("connectome_fit", sorted(studies), root),
        "calcium__processed": paths("calcium_processed", sorted(datasets), root),
    }


def neuroformer_report_inputs(
    datasets: list[str], decoded: list[str], truths: list[str], root: str | os.PathLike = RESULTS
) -> dict[str, list[str]]:
    """The Neuroformer report inputs (``neuroformer__<key>``).

    Parameters
    ----------
    datasets : list of str
        Datasets with a Neuroformer.
    decoded : list of str
        Those with a decoding target (a fine-tuning file).
    truths : list of str
        Those with a planted truth.
    root : str or path-like
        The results folder.

    Returns
    -------
    dict
        ``neuroformer__metrics``, ``__connectivity``, ``__pretrained`` (one per dataset), ``__finetune`` and
        ``__truths``.
    """
    names = sorted(datasets)
    return {
        "neuroformer__metrics": paths("neuroformer_metrics", names, root),
        "neuroformer__connectivity": paths("neuroformer_connectivity", names, root),
        "neuroformer__pretrained": paths("neuroformer_pretrained", names, root),
        "neuroformer__finetune": paths("neuroformer_finetune", sorted(decoded), root),
        "neuroformer__truths": paths("spike_truth", [d for d in names if d in set(truths)], root),
    }


def report_inputs(runs: StudyRuns, root: str | os.PathLike = RESULTS) -> dict[str, list[str]]:
    """Every input of the report page, named ``<branch>__<key>``.

    Parameters
    ----------
    runs : StudyRuns
        What the study ran.
    root : str or path-like
        The results folder.

    Returns
    -------
    dict
        The union of the branches' report inputs (see :func:`spike_report_inputs` and the others).
    """
    return {
        **spike_report_inputs(runs.glm, runs.switching, runs.spike_truths, root),
        **fmri_report_inputs(runs.fmri, runs.brainmae, runs.fmri_truths, root),
        **calcium_report_inputs(runs.calcium, runs.connectomes, root),
        **neuroformer_report_inputs(
            runs.neuroformer, runs.neuroformer_decoded, runs.neuroformer_truths, root
        ),
    }


def discover(
    root: str | os.PathLike = RESULTS, files: Iterable[str | os.PathLike] | None = None
) -> StudyRuns:
    """What a study ran, from the results on disk: a model counts when its metrics file exists.

    Parameters
    ----------
    root : str or path-like
        The results folder of a study.
    files : iterable of path-like, optional
        Only these results count (e.g. those a failed run finished), instead of every file below ``root``.

    Returns
    -------
    StudyRuns
        Names found below ``root``; truths where the planted-truth file exists.
    """
    files = None if files is None else list(files)
    glm = find("poisson_glm_metrics", root, files)
    switching = find("switching_metrics", root, files)
    used = set(glm) | {d for d, _ in switching}
    nf = find("neuroformer_metrics", root, files)
    spike_truths = set(find("spike_truth", root, files))
    brainmae = find("brainmae_metrics", root, files)
    fmri = sorted(set(find("fmri_baselines", root, files)) | {d for d, _ in brainmae})
    return StudyRuns(
        glm=glm,
        switching=switching,
        spike_truths=sorted(used & spike_truths),
        fmri=fmri,
        brainmae=brainmae,
        fmri_truths=[d for d in find("fmri_truth", root, files) if d in fmri],
        calcium=find("calcium_processed", root, files),
        connectomes=find("connectome_metrics", root, files),
        neuroformer=nf,
        neuroformer_decoded=[d for d in find("neuroformer_finetune", root, files) if d in nf],
        neuroformer_truths=sorted(set(nf) & spike_truths),
    )
