"""The spike branch's sections of the page, one per dataset: facts, data and unit QC, each model's couplings and
the switching GLMs (:mod:`brainpipe.report.switching`); its headlines and key figures.

``files`` keys (inputs ``spikes__<key>`` of the report rule; paths: :mod:`brainpipe.layout`): ``metrics`` and
``fits`` (Poisson GLMs, parallel lists), ``switching_metrics`` and ``switching_fits`` (parallel lists, one per
dataset and variant), ``counts`` (every dataset reported) and ``truths`` (simulated datasets). Each dataset is
named by its metrics files' ``dataset`` attribute; files are paired by :mod:`brainpipe.report.spike_files`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.data import provenance_of
from brainpipe.report.base import (
    BranchSection,
    Headline,
    PathLike,
    Reader,
    as_list,
    facts,
    fmt,
    img,
    slug,
)
from brainpipe.report.headline import headline
from brainpipe.report.spike_files import Entry, check_names, collect, collect_switching
from brainpipe.report.switching import switching_part, variant_rank


def _var_names(ds: xr.Dataset, var: str, dim: str) -> list[str]:
    return [str(v) for v in ds[dim].values] if var in ds and dim in ds.coords else []


def _qc_params(counts: xr.Dataset) -> dict[str, Any]:
    """The ``qc`` params the counts were made with (from their provenance), or {}."""
    try:
        qc = provenance_of(counts).get("params", {}).get("qc", {})
    except (KeyError, ValueError, AttributeError):
        return {}
    return qc if isinstance(qc, Mapping) else {}


def _unit_qc_part(counts: xr.Dataset, name: str) -> str:
    """Unit QC of a counts file with ``qc_*`` variables: facts, a rate/violation figure, the dropped units."""
    from brainpipe.report import figures

    arrays = figures.unit_qc_arrays(counts)
    if arrays is None:
        return ""
    qc = _qc_params(counts)
    rate, kept, viol, units = arrays
    min_rate = qc.get("min_rate_hz")
    rules = []
    if min_rate:
        rules.append(f"rate ≥ {fmt(min_rate)} Hz")
    if qc.get("max_units"):
        rules.append(f"the {qc['max_units']} most active")
    kept_txt = f"{int(kept.sum())} of {rate.size}" + (
        f" ({'; '.join(rules)})" if rules else " (no selection rule)"
    )
    kr = rate[kept]
    rate_txt = f"{fmt(kr.min())} – {fmt(kr.max())} Hz (median {fmt(np.median(kr))})" if kr.size else "—"
    refr = qc.get("refractory_s")
    isi = f"ISIs < {float(refr) * 1e3:g} ms" if refr else "ISIs below the refractory period"
    ok = np.isfinite(viol)
    if not ok.any():
        viol_txt = "not assessable (the data's time resolution is coarser than the refractory period)"
    else:
        kv = np.where(kept & ok, viol, np.nan)
        worst = int(np.nanargmax(kv)) if np.isfinite(kv).any() else int(np.nanargmax(viol))
        viol_txt = (
            f"median {100 * np.median(viol[ok]):.2g}% of {isi}; worst kept unit {units[worst]} "
            f"{100 * viol[worst]:.2g}%"
            + (f"; {int((~ok).sum())} unit(s) not assessable" if (~ok).any() else "")
            + " — reported, not used to drop units"
        )
    parts = [
        "<h3>Unit QC</h3>",
        facts(
            [("units kept", kept_txt), ("rate of kept units", rate_txt), ("refractory violations", viol_txt)]
        ),
    ]
    png = figures.unit_qc_figure(counts, float(min_rate) if min_rate else None)
    if png is not None:
        parts.append(
            img(
                figures.data_uri(png),
                f"unit QC of {name}",
                "Every recorded unit's mean rate, sorted (blue: kept, grey: dropped; dashed: the minimum rate)"
                + (
                    ", and the fraction of its inter-spike intervals shorter than the refractory period"
                    if ok.any()
                    else ""
                )
                + ". Look for: dropped units that are not clearly below the kept ones; violation fractions of a few "
                "percent or more suggest multi-unit activity.",
            )
        )
    dropped = [f"{u} ({fmt(r)} Hz)" for u, r, k in zip(units, rate, kept, strict=True) if not k]
    if dropped:
        parts.append(
            f"<details><summary>{len(dropped)} dropped unit(s)</summary><p>{escape(', '.join(dropped))}</p></details>"
        )
    else:
        parts.append('<p class="note">No unit was dropped.</p>')
    return "".join(parts)


def _dataset_section(
    anchor: str, name: str, group: Sequence[Entry], reader: Reader
) -> tuple[str, list[Headline]]:
    """One dataset's section and the headlines of its models (each with its key figure)."""
    from brainpipe.data.contracts import SPLIT_FLAGS
    from brainpipe.report import figures

    first = group[0]
    counts = reader(first.counts_path, "spike_counts")
    bw = float(counts.attrs["bin_width_s"])
    n_bins = counts.sizes.get("time", 0)
    split = np.asarray(counts["split"].values) if "split" in counts else np.array([], dtype=int)
    split_txt = ", ".join(f"{k} {np.count_nonzero(split == v) * bw:.4g} s" for k, v in SPLIT_FLAGS.items())
    truth_path = next((e.truth_path for e in group if e.truth_path), None)
    truth = reader(truth_path, "model_fit") if truth_path else None
    truth_txt = (
        f"planted {truth.attrs.get('model', '')} ({truth_path})".replace("  ", " ")
        if truth is not None
        else "none (no planted ground truth)"
    )
    beh = _var_names(counts, "behaviour", "behaviour_var")
    stim = _var_names(counts, "stimulus", "stimulus_var")
    rates = figures.firing_rates_hz(counts)
    trials = ""
    if "trial" in counts:
        tr = np.asarray(counts["trial"].values)
        n_tr = np.unique(tr[tr >= 0]).size
        trials = f"{n_tr} trial(s)" + (
            " (only the trials were recorded)" if counts.attrs.get("observed") == "trials" else ""
        )
    items = [
        (
            "units",
            f"{counts.sizes.get('unit', 0)} (mean rate {fmt(rates.mean() if rates.size else np.nan)} Hz)",
        ),
        ("duration", f"{n_bins * bw:.4g} s in {n_bins} bins of {bw * 1e3:g} ms"),
        ("split", split_txt + (f" ({counts.attrs['split_rule']})" if counts.attrs.get("split_rule") else "")),
    ]
    if trials:
        items.append(("trials", trials))
    items += [
        ("behaviour", ", ".join(beh) or "none"),
        ("stimulus", ", ".join(stim) or "none"),
        ("source", str(counts.attrs.get("source", "")) or "—"),
        ("truth", truth_txt),
        ("counts file", str(first.counts_path)),
    ]
    parts = [
        f'<section id="{escape(anchor)}"><h2>Dataset: {escape(name)}</h2>',
        facts(items),
        "<h3>Data quality</h3>",
    ]
    qc = figures.data_uri(figures.data_qc_figure(counts))
    covs = " and ".join(
        x for x in ("behaviour" if beh else "", "stimulus (per trial, steps)" if stim else "") if x
    )
    joined = "trials" if counts.attrs.get("observed") == "trials" else "test blocks"
    parts.append(
        img(
            qc,
            f"data QC of {name}",
            "Spike raster of the first 10 s of the test split (up to 30 units; a tick marks a bin with ≥ 1 spike)"
            + (f", {covs} in the same window" if covs else "")
            + f", and each shown unit's mean firing rate over the whole recording. {joined.capitalize()} are drawn "
            "side by side (dashed lines at the joins). Look for: silent or saturated units, and bursts shared "
            "by all units (artefacts).",
        )
    )
    parts.append(_unit_qc_part(counts, name))
    heads: list[Headline] = []
    used = {anchor}
    for e in (e for e in group if not e.switching):
        fit = reader(e.fit_path, "model_fit")
        glm_truth = truth if truth is not None and "coupling" in truth else None
        model_anchor = slug(e.model, used, prefix=anchor)
        parts.append(f'<h3 id="{escape(model_anchor)}">Model: {escape(e.model)}</h3>')
        if figures.coupling_matrix(fit) is None:
            parts.append(f'<p class="note">{escape(str(e.fit_path))} has no coupling matrix to show.</p>')
            heads.append(_headline(e, group, model_anchor, ""))
            continue
        uri = figures.data_uri(figures.model_figure(fit, glm_truth))
        if glm_truth is not None and figures.coupling_matrix(glm_truth) is not None:
            cap = (
                "Fitted (left) and planted (middle) coupling weights, rows = post-synaptic unit, columns = "
                "pre-synaptic unit, on one symmetric colour scale set by the off-diagonal weights (the diagonal "
                "holds self-history weights). Right: fitted vs planted off-diagonal weights; dashed = identity."
            )
        elif truth is not None:
            cap = (
                "Fitted coupling weights (rows = post-synaptic, columns = pre-synaptic unit). The planted truth "
                f"of this dataset is a {truth.attrs.get('model', 'different model')}, not one coupling matrix, "
                "so it is not compared here"
                + (" (see Switching GLM below)." if any(x.switching for x in group) else ".")
            )
        else:
            cap = "Fitted coupling weights (rows = post-synaptic, columns = pre-synaptic unit). No planted truth."
        figure = img(uri, f"coupling of {e.model} on {name}", cap)
        parts.append(figure)
        heads.append(_headline(e, group, model_anchor, figure))
    switching = [e for e in group if e.switching]
    if switching:
        html, key_figure, key_variant = switching_part(anchor, name, switching, counts, reader)
        parts.append(html)
        for e in sorted(switching, key=lambda e: variant_rank(e.variant)):
            heads.append(
                _headline(e, group, f"{anchor}-switching", key_figure if e.variant == key_variant else "")
            )
    parts.append("</section>")
    return "".join(parts), [h for h in heads if h is not None]


def _headline(e: Entry, group: Sequence[Entry], anchor: str, figure: str) -> Headline | None:
    """Test bits/spike of a spike model against the best baseline on the same data: the single-state switching
    GLM (for a multi-state variant), the dataset's Poisson GLM (for a switching GLM) and a homogeneous Poisson
    model (0 bits/spike, what the metric is measured against)."""
    extra: dict[str, float] = {}
    baselines: list[tuple[str, str | float]] = []
    if e.switching:
        vals = {
            str(k): float(v)
            for k, v in zip(e.metrics["metric"].values, e.metrics["value"].values, strict=True)
        }
        if "bits_vs_single" in vals and "test_bits_per_spike" in vals:
            extra["single_bits"] = vals["test_bits_per_spike"] - vals["bits_vs_single"]
            baselines.append(("single-state GLM", "single_bits"))
        glm = next((g for g in group if not g.switching and g.model == "poisson_glm"), None)
        if glm is not None and "test_bits_per_spike" in glm.metrics["metric"].values:
            extra["glm_bits"] = float(glm.metrics["value"].sel(metric="test_bits_per_spike"))
            baselines.append(("Poisson GLM", "glm_bits"))
    baselines.append(("homogeneous Poisson", 0.0))
    return headline(
        e.metrics,
        "test_bits_per_spike",
        baselines,
        True,
        model=e.model,
        anchor=anchor,
        figure=figure,
        extra=extra,
    )


def sections(files: Mapping[str, Iterable[PathLike]]) -> list[BranchSection]:
    """The spike branch's sections: one per dataset, in the order of the metrics given (Poisson GLMs first, then
    datasets with switching GLMs only).

    Parameters
    ----------
    files : mapping
        ``metrics``, ``fits``, ``counts``, ``truths``, ``switching_metrics``, ``switching_fits`` (lists of paths;
        see the module docstring).

    Returns
    -------
    list of BranchSection
        Anchors ``ds-<dataset>``; metrics in page order (within a dataset: the GLMs as given, then the switching
        variants in :data:`~brainpipe.report.switching.VARIANT_ORDER`).

    Raises
    ------
    brainpipe.errors.InputError
        A missing or unmatched file, or two datasets under one name.
    """
    reader = Reader()
    get = {k: as_list(v) for k, v in files.items()}
    counts, truths = get.get("counts", []), get.get("truths", [])
    entries = collect(get.get("metrics", []), get.get("fits", []), counts, truths, reader, allow_empty=True)
    entries += collect_switching(
        get.get("switching_metrics", []), get.get("switching_fits", []), counts, truths, reader
    )
    check_names(entries)
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.dataset, []).append(e)
    used: set[str] = set()
    out = []
    for name, group in groups.items():
        group.sort(key=lambda e: (e.switching, variant_rank(e.variant) if e.switching else (0, "")))
        anchor = slug(name, used)
        html, heads = _dataset_section(anchor, name, group, reader)
        inputs: list[tuple[str, str, Path, str]] = []
        for e in group:
            for role, p, kind in (
                ("counts", e.counts_path, "spike_counts"),
                ("truth", e.truth_path, "model_fit"),
                ("fit", e.fit_path, "model_fit"),
                ("metrics", e.metrics_path, "metrics"),
            ):
                if p is not None:
                    inputs.append((name, role, p, kind))
        out.append(BranchSection(anchor, name, html, [e.metrics_path for e in group], heads, inputs))
    return out
