"""Metrics against planted truth and held-out data, assembled into a ``metrics`` dataset with bars.

Each metric has a direction (higher or lower is better); a study's config sets the bars. A metric row is
``passed = 1`` when it meets its bar, ``0`` when it misses, ``-1`` when it has no bar.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.models.baselines import PoissonGLM, poisson_log_likelihood


@dataclass(frozen=True)
class MetricInfo:
    op: str  # comparison used against a bar: ">=" (higher is better) or "<="
    description: str


METRICS: dict[str, MetricInfo] = {
    "test_bits_per_spike": MetricInfo(
        ">=",
        "held-out log-likelihood gain over a homogeneous Poisson model (rates from train), bits per spike",
    ),
    "oracle_test_bits_per_spike": MetricInfo(
        ">=", "the same for the planted model: the ceiling on this data"
    ),
    "coupling_corr": MetricInfo(">=", "Pearson r between fitted and planted off-diagonal coupling weights"),
    "coupling_auroc": MetricInfo(">=", "AUROC of |fitted weight| for planted connections vs absent ones"),
    "coupling_sign_accuracy": MetricInfo(">=", "fraction of planted connections whose fitted sign is right"),
    "history_weight_mae": MetricInfo("<=", "mean absolute error of the self-history weights"),
    "behaviour_weight_corr": MetricInfo(">=", "Pearson r between fitted and planted behaviour weights"),
    # switching GLMs (brainpipe.evaluate.switching)
    "bits_vs_oracle": MetricInfo(
        ">=", "test bits/spike minus the planted model's (0 = as good as the truth)"
    ),
    "state_accuracy": MetricInfo(
        ">=",
        "fraction of test bins whose decoded state (posterior argmax, Hungarian-matched) is the planted one",
    ),
    "oracle_state_accuracy": MetricInfo(">=", "the same decoded with the planted parameters: the ceiling"),
    "state_accuracy_vs_oracle": MetricInfo(">=", "state accuracy minus the oracle's"),
    "weight_corr": MetricInfo(
        ">=", "Pearson r between fitted and planted off-diagonal weights of all states (matched)"
    ),
    "weight_rel_error": MetricInfo("<=", "relative Frobenius error of the matched per-state weights"),
    "adjacency_balanced_accuracy": MetricInfo(
        ">=", "balanced accuracy of the inh/none/exc structure (off-diagonal, matched states)"
    ),
    "bits_vs_single": MetricInfo(">=", "test bits/spike minus the single-state GLM's"),
    "bits_vs_none": MetricInfo(">=", "test bits/spike minus the HMM-GLM without prior"),
    "adjacency_ba_vs_none": MetricInfo(">=", "adjacency balanced accuracy minus the HMM-GLM without prior"),
}


#: Metrics whose names carry a variable part (a task variable, a reference fit): (pattern, op, description), the
#: description formatted with the pattern's named groups; tried in order after :data:`METRICS`.
METRIC_PATTERNS: list[tuple[re.Pattern, str, str]] = []


def metric_info(name: str) -> MetricInfo | None:
    """The direction and description of a metric by its name.

    Parameters
    ----------
    name : str
        A metric name: one of :data:`METRICS`, one matched by :data:`METRIC_PATTERNS`, or ``<metric>_vs_<ref>``
        of a known metric (the metric minus the same for the reference ``ref``).

    Returns
    -------
    MetricInfo or None
        None for an unknown name (its direction is then ``>=`` and its description empty).

    Examples
    --------
    >>> metric_info("state_accuracy_vs_none").description.endswith("minus the same for none")
    True
    """
    if name in METRICS:
        return METRICS[name]
    for pattern, op, text in METRIC_PATTERNS:
        match = pattern.fullmatch(name)
        if match:
            return MetricInfo(op, text.format(**match.groupdict()))
    match = re.fullmatch(r"(?P<base>.+)_vs_(?P<ref>[A-Za-z0-9]+)", name)
    if match and match["base"] in METRICS:
        base = METRICS[match["base"]]
        return MetricInfo(base.op, f"{base.description}, minus the same for {match['ref']}")
    return None


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with midranks); NaN when one class is empty.

    Parameters
    ----------
    labels : numpy.ndarray
        True (positive) or False per item.
    scores : numpy.ndarray
        A score per item (higher: more likely positive).

    Returns
    -------
    float
        The AUROC in [0, 1] (ties count one half), or NaN.

    Examples
    --------
    >>> auroc([True, True, False, False], [0.9, 0.4, 0.5, 0.1])
    0.75
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels, bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a), np.ravel(b)
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


@fill_doc
def bits_per_spike(counts: xr.Dataset, expected: np.ndarray, split: str = "test") -> float:
    """Held-out log-likelihood gain over per-neuron mean rates estimated on the train split, in bits/spike.

    Parameters
    ----------
    %(counts)s
    expected : numpy.ndarray
        (time, unit) the model's expected count per bin (all bins; those of ``split`` are used).
    %(split)s

    Returns
    -------
    float
        Poisson log-likelihood of the model minus that of the train mean rates, over the spikes of ``split``, in
        bits.
    """
    y = np.asarray(counts["counts"].values, dtype=np.float64)
    s = counts["split"].values
    tr, te = s == SPLIT_FLAGS["train"], s == SPLIT_FLAGS[split]
    null = np.broadcast_to(y[tr].mean(axis=0), y[te].shape)
    gain = poisson_log_likelihood(y[te], expected[te]) - poisson_log_likelihood(y[te], null)
    return float(gain / max(y[te].sum(), 1.0) / np.log(2))


@fill_doc
def glm_metrics(fit: xr.Dataset, counts: xr.Dataset, truth: xr.Dataset | None = None) -> dict[str, float]:
    """Compute the metrics of a fitted coupled GLM (``model_fit`` with ``coupling``) on held-out counts and vs truth.

    Parameters
    ----------
    fit : xarray.Dataset
        A :class:`~brainpipe.models.PoissonGLM` fit (``model_fit``).
    %(counts)s
    truth : xarray.Dataset, optional
        The planted truth of a simulated dataset; the truth-based metrics are computed only when it has a
        ``coupling``.

    Returns
    -------
    dict
        ``test_bits_per_spike``; with a truth also ``oracle_test_bits_per_spike`` (the true model's, when it is a
        GLM), ``coupling_corr``, ``coupling_auroc``, ``coupling_sign_accuracy``, ``history_weight_mae`` and
        ``behaviour_weight_corr`` (see :data:`METRICS`).
    """
    model = PoissonGLM.from_dataset(fit)
    out = {"test_bits_per_spike": bits_per_spike(counts, model.predict(counts))}
    if truth is None or "coupling" not in truth:  # no truth, or the truth of another model family
        return out
    if "log_baseline_rate" in truth and "history_tau_s" in truth.attrs:
        oracle = PoissonGLM.from_dataset(truth.assign_attrs(bin_width_s=float(counts.attrs["bin_width_s"])))
        out["oracle_test_bits_per_spike"] = bits_per_spike(counts, oracle.predict(counts))
    units = [str(u) for u in fit["unit_post"].values]
    t = truth.sel(unit_post=units, unit_pre=units)
    W_true, W_fit = t["coupling"].values, fit["coupling"].values
    off = ~np.eye(len(units), dtype=bool)
    planted = (t["connected"].values.astype(bool) if "connected" in t else W_true != 0) & off
    out["coupling_corr"] = _corr(W_true[off], W_fit[off])
    out["coupling_auroc"] = auroc(planted[off], np.abs(W_fit[off]))
    out["coupling_sign_accuracy"] = (
        float(np.mean(np.sign(W_fit[planted]) == np.sign(W_true[planted]))) if planted.any() else float("nan")
    )
    out["history_weight_mae"] = float(np.mean(np.abs(np.diag(W_true) - np.diag(W_fit))))
    if "behaviour_weight" in t and fit.sizes.get("behaviour_var", 0) > 0:
        common = [v for v in fit["behaviour_var"].values if v in set(t["behaviour_var"].values)]
        if common:
            out["behaviour_weight_corr"] = _corr(
                t["behaviour_weight"].sel(behaviour_var=common).values,
                fit["behaviour_weight"].sel(behaviour_var=common).values,
            )
    return out


def _passes(value: float, op: str, bar: float) -> bool:
    return bool({">=": value >= bar, "<=": value <= bar, ">": value > bar, "<": value < bar}[op])


def metrics_dataset(
    values: Mapping[str, float], bars: Mapping[str, float] | None, model: str, dataset: str
) -> xr.Dataset:
    """A ``metrics`` dataset: values, bars (NaN where none), comparison, pass/miss, descriptions.

    Parameters
    ----------
    values : mapping
        Metric name -> value.
    bars : mapping, optional
        Metric name -> the value it must reach (its direction from :func:`metric_info`, else ``>=``).
    model : str
        The model's name (an attr).
    dataset : str
        The dataset's name (an attr).

    Returns
    -------
    xarray.Dataset
        Along ``metric``: ``value``, ``bar``, ``bar_op``, ``passed`` (1 pass, 0 miss, -1 no bar) and
        ``description``.
    """
    bars = bars or {}
    names = list(values)
    vals = np.array([values[n] for n in names], dtype=np.float64)
    infos = [metric_info(n) for n in names]
    ops = [i.op if i is not None else ">=" for i in infos]
    bar = np.array([float(bars[n]) if n in bars else np.nan for n in names])
    passed = np.array(
        [
            -1 if np.isnan(b) else int(np.isfinite(v) and _passes(v, o, b))
            for v, o, b in zip(vals, ops, bar, strict=True)
        ],
        dtype=np.int8,
    )
    return xr.Dataset(
        {
            "value": ("metric", vals),
            "bar": ("metric", bar),
            "bar_op": (
                "metric",
                np.array([o if not np.isnan(b) else "" for o, b in zip(ops, bar, strict=True)]),
            ),
            "passed": ("metric", passed),
            "description": (
                "metric",
                np.array([i.description if i is not None else "" for i in infos]),
            ),
        },
        coords={"metric": np.array(names)},
        attrs={"model": model, "dataset": dataset},
    )


#: The ``status`` column of the study's metrics table for each ``passed`` value.
STATUS: dict[int, str] = {1: "pass", 0: "miss", -1: "no bar"}


@fill_doc
def metric_records(m: xr.Dataset) -> list[tuple[str, float, float, str, int]]:
    """(metric, value, bar, bar_op, passed) of every metric of a metrics file, in order.

    Parameters
    ----------
    %(metrics_m)s

    Returns
    -------
    list of tuple
        One per metric; without a bar, the bar is NaN, ``bar_op`` empty and ``passed`` -1 (also where a file
        has a ``passed`` value for a NaN bar).
    """
    n = m.sizes.get("metric", 0)
    names = [str(x) for x in m["metric"].values]
    values = np.asarray(m["value"].values, dtype=np.float64)
    bars = np.asarray(m["bar"].values, dtype=np.float64) if "bar" in m else np.full(n, np.nan)
    ops = [str(x) for x in m["bar_op"].values] if "bar_op" in m else [""] * n
    passed = [int(x) for x in m["passed"].values] if "passed" in m else [-1] * n
    return [
        (k, float(v), float(b), op, -1 if np.isnan(b) else ok)
        for k, v, b, op, ok in zip(names, values, bars, ops, passed, strict=True)
    ]


def metrics_table(paths) -> pd.DataFrame:
    """One row per metric of every metrics file: the study's table (``results/report/metrics.tsv``).

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        ``metrics`` netCDF files (each with ``dataset`` and ``model`` attributes).

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset, model, metric, value, bar_op, bar, status, file`` (:data:`STATUS` words), in the
        files' order and each file's metric order.

    Examples
    --------
    >>> metrics_table([]).columns.tolist()
    ['dataset', 'model', 'metric', 'value', 'bar_op', 'bar', 'status', 'file']
    """
    from brainpipe.data import read
    from brainpipe.data.atomic import METRICS_TABLE_HEADER

    rows = []
    for p in paths:
        ds = read(p, "metrics")
        for name, value, bar, op, passed in metric_records(ds):
            rows.append(
                {
                    "dataset": ds.attrs["dataset"],
                    "model": ds.attrs["model"],
                    "metric": name,
                    "value": value,
                    "bar_op": op,
                    "bar": bar,
                    "status": STATUS[passed],
                    "file": str(p),
                }
            )
    return pd.DataFrame(rows, columns=METRICS_TABLE_HEADER.split("\t"))
