"""The "Switching GLM" part of a spike dataset's section: the variants' table, decoded states, per-state couplings
against the planted ones (simulated data), held-out fit and EM objective per variant."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np
import xarray as xr

from brainpipe.report.base import Reader, fmt, img
from brainpipe.report.tables import metric_cell, metric_values

# Variants in this order first (baseline, then priors of growing strength), any others after them by name.
VARIANT_ORDER = ("single", "none", "gaussian", "onehot")


def variant_rank(variant: str | None) -> tuple[int, str]:
    """Sort key of a switching-GLM variant: :data:`VARIANT_ORDER` first, then by name."""
    v = variant or ""
    return (VARIANT_ORDER.index(v) if v in VARIANT_ORDER else len(VARIANT_ORDER), v)


def is_switching_truth(truth: xr.Dataset | None) -> bool:
    """Whether a planted truth is a switching network (states, per-state weights)."""
    return truth is not None and "true_state" in truth and "weights" in truth and "state" in truth.dims


# (column header, metric) of the variant comparison table; the optional columns only where some file has them.
_VARIANT_COLUMNS = (("test bits/spike", "test_bits_per_spike"), ("bits vs single", "bits_vs_single"))
_OPTIONAL_COLUMNS = (  # shown when a variant has the metric (the dwell: multi-state fits; the rest: simulated data)
    ("median visit (s)", "state_dwell_median_s"),
    ("bits vs planted", "bits_vs_oracle"),
    ("state accuracy", "state_accuracy"),
    ("weight r", "weight_corr"),
    ("adjacency BA", "adjacency_balanced_accuracy"),
    ("shared structure BA", "shared_adjacency_balanced_accuracy"),
    ("shared mean r", "shared_mean_corr"),
)


def switching_part(
    slug: str, name: str, entries: Sequence, counts: xr.Dataset, reader: Reader
) -> tuple[str, str, str | None]:
    """The "Switching GLM" subsection of a dataset: variant table, decoded states, per-state couplings against
    the planted ones (simulated data), held-out fit and EM objective per variant.

    Parameters
    ----------
    slug : str
        The dataset section's id (the subsection's is ``<slug>-switching``).
    name : str
        The dataset's name.
    entries : sequence of brainpipe.report.spikes.Entry
        Its switching-GLM variants.
    counts : xarray.Dataset
        Its counts.
    reader : Reader
        The file cache.

    Returns
    -------
    (str, str, str or None)
        The subsection's HTML, the key figure (decoded states; ``""`` when no variant has a posterior) and the
        variant it is credited to (the best multi-state variant, else the reference shown).
    """
    from brainpipe.report import figures

    entries = sorted(entries, key=lambda e: variant_rank(e.variant))
    fits = {e.variant: reader(e.fit_path, "model_fit") for e in entries}
    vals = {e.variant: metric_values(e.metrics) for e in entries}
    truth_path = next((e.truth_path for e in entries if e.truth_path), None)
    truth = reader(truth_path, "model_fit") if truth_path else None
    truth = truth if is_switching_truth(truth) else None

    def n_states(e) -> int:
        return int(fits[e.variant].sizes.get("state", e.metrics.attrs.get("n_states", 1)))

    def bits(e) -> float:
        return vals[e.variant].get("test_bits_per_spike", (float("nan"),))[0]

    multi = [e for e in entries if n_states(e) > 1]
    ranked = [e for e in multi if np.isfinite(bits(e))]
    best = max(ranked, key=bits) if ranked else None
    columns = list(_VARIANT_COLUMNS) + [c for c in _OPTIONAL_COLUMNS if any(c[1] in v for v in vals.values())]

    rows = []
    for e in entries:
        fit = fits[e.variant]
        prior = str(e.metrics.attrs.get("prior", "") or fit.attrs.get("prior", "")) or "—"
        n_it = (
            fit.sizes.get("em_iteration", 0) - 1
            if "em_iteration" in fit.dims
            else fit.attrs.get("n_iter", "—")
        )
        is_best = best is not None and e is best
        tag = '<span class="tag">best</span>' if is_best else ""
        rows.append(
            f'<tr data-variant="{escape(e.variant or "")}"' + (' class="best"' if is_best else "") + ">"
            f"<td>{escape(e.variant or '')}{tag}</td><td>{escape(prior)}</td>"
            f'<td class="num">{n_states(e)}</td><td class="num">{escape(str(n_it))}</td>'
            + "".join(metric_cell(vals[e.variant], m) for _, m in columns)
            + "</tr>"
        )
    parts = [
        f'<h3 class="sub" id="{escape(slug)}-switching">Switching GLM</h3>',
        f'<p class="note">{len(entries)} variant(s) fitted on the train split and scored on the test split'
        + (
            " (hyperparameters chosen on the validation split: "
            + "; ".join(
                f"{escape(e.variant or '')} {escape(str(fits[e.variant].attrs['selected_params']))}"
                for e in entries
                if "selected_params" in fits[e.variant].attrs
            )
            + ")"
            if any("selected_params" in fits[e.variant].attrs for e in entries)
            else ""
        )
        + ". "
        "Shared structure (simulated data): each pair's most probable class of the learned (one-hot) or post-hoc "
        "(free weights) shared categorical against the planted one's, and the state-constant connectome "
        "(Gaussian prior: its learned mean; else the mean over states) against the planted weights' mean. "
        "Coloured cells have a bar (green met, red missed; hover for the bar); bits are held-out log-likelihood "
        "gains over a homogeneous Poisson model, per spike. "
        + ("“best”: the multi-state variant with the highest test bits/spike." if best is not None else "")
        + "</p>",
        '<table class="variants"><thead><tr><th>variant</th><th>prior</th><th>states</th><th>EM iterations</th>'
        + "".join(f"<th>{escape(h)}</th>" for h, _ in columns)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>",
    ]
    oracle = next(
        (v["oracle_test_bits_per_spike"][0] for v in vals.values() if "oracle_test_bits_per_spike" in v), None
    )
    oracle_acc = next(
        (v["oracle_state_accuracy"][0] for v in vals.values() if "oracle_state_accuracy" in v), None
    )
    if oracle is not None:
        parts.append(
            f'<p class="note">Planted model on the same test data: {escape(fmt(oracle))} bits/spike'
            + (f", state accuracy {escape(fmt(oracle_acc))}" if oracle_acc is not None else "")
            + " (the ceiling a fit can reach).</p>"
        )

    with_post = [e for e in multi if "posterior" in fits[e.variant]]
    key_figure, key_variant = "", None
    if with_post:
        labels = {}
        for e in with_post:
            v = vals[e.variant]
            if truth is not None and "state_accuracy" in v:
                labels[e.variant] = f"acc {v['state_accuracy'][0]:.3f}"
            elif "test_bits_per_spike" in v:
                labels[e.variant] = f"{v['test_bits_per_spike'][0]:.3g} b/sp"
        ref = best.variant if best is not None else with_post[0].variant
        png = figures.switching_states_figure(
            counts, [(e.variant, fits[e.variant]) for e in with_post], truth, reference=ref, labels=labels
        )
        trials = counts.attrs.get("observed") == "trials"
        where = (
            "whole test sequences (trials), side by side" if trials else "the first 60 s of the test split"
        )
        matched = (
            "the planted states (top strip)" if truth is not None else f"those of the best variant ({ref})"
        )
        key_variant = ref
        key_figure = img(
            figures.data_uri(png),
            f"decoded states of {name}",
            f"Posterior probability of each state over {where}, one row of stacked bands per multi-state "
            f"variant (a solid colour: one confident state). States are matched to {matched} by Hungarian "
            "matching on the test bins, as for the state accuracy, so a colour is the same state in every row; "
            + (
                "beside each row its state accuracy. "
                if truth is not None
                else "beside each row its test bits/spike. "
            )
            + "Look for: bands that switch where the "
            + ("planted strip switches" if truth is not None else "other variants switch")
            + "; mixed or flickering bands mean the states are not identifiable.",
        )
        parts.append(key_figure)
    if key_variant is not None:
        parts.extend(_task_part(name, key_variant, fits[key_variant], vals, counts))
    if truth is not None and best is not None:
        post = figures.posterior(fits[best.variant], counts)
        if post is not None:
            perm, _, _ = figures.state_matching(post, counts, truth)
            png = figures.switching_weights_figure(fits[best.variant], truth, perm, best.variant)
            parts.append(
                img(
                    figures.data_uri(png),
                    f"per-state couplings of {best.variant} on {name}",
                    f"Best variant ({best.variant}): planted (row 1) and fitted (row 2) coupling weights of every "
                    "planted state, its matched fitted state below it (rows = post-synaptic, columns = pre-synaptic "
                    "unit; one symmetric colour scale set by the off-diagonal weights, the diagonal holds "
                    "self-history). Rows 3–4: planted and fitted adjacency (blue inhibitory, red excitatory; "
                    "× = fitted category wrong). Look for: the same pattern in each column.",
                )
            )
    summary = [
        {
            "name": e.variant or e.model,
            "n_states": n_states(e),
            "bits": bits(e),
            "objective": np.asarray(fits[e.variant]["objective"].values)
            if "objective" in fits[e.variant]
            else [],
            "best": best is not None and e is best,
        }
        for e in entries
    ]
    png = figures.switching_summary_figure(summary, oracle)
    priors = {
        str(e.metrics.attrs.get("prior", "") or fits[e.variant].attrs.get("prior", "")) for e in entries
    }
    parts.append(
        img(
            figures.data_uri(png),
            f"held-out fit and EM objective per variant on {name}",
            "Left: test bits/spike per variant (grey: single-state baseline, green: best multi-state variant"
            + ("; dashed red: the planted model" if oracle is not None else "")
            + "); higher is better. Right: the training objective (log-likelihood + log prior, nats) per EM "
            "iteration; it should rise and flatten."
            + (" Priors differ, so the curves are not on one scale." if len(priors - {""}) > 1 else "")
            + (
                " The one-hot prior's classes, shared categorical and slab are learned in the same EM from its "
                "first iteration."
                if "onehot" in priors
                else ""
            ),
        )
    )
    return "".join(parts), key_figure, key_variant


def _task_part(name: str, variant: str, fit: xr.Dataset, vals: dict, counts: xr.Dataset) -> list[str]:
    """The decoded states of ``variant`` against the recording's task variables: a sentence per variable (its
    mutual information against the shuffled null, and against the other multi-state variants) and the occupancy
    figure; nothing when the recording has no task variable or the metrics predate them."""
    from brainpipe.evaluate.switching import state_occupancy, task_variables
    from brainpipe.report import figures
    from brainpipe.report.figures.switching import switching_task_figure

    own = vals.get(variant, {})
    post = figures.posterior(fit, counts)
    variables = task_variables(counts)
    have = [v for v in variables if f"task_mi_{v}" in own]
    if post is None or not have:
        return []
    test = figures.held_out_bins(counts)
    test_mask = np.zeros(counts.sizes["time"], dtype=bool)
    test_mask[test] = True
    tables, sentences = [], []
    for v in have:
        mi, null, p = (own[f"task_mi_{v}{k}"][0] for k in ("", "_null", "_p"))
        tables.append(
            {
                "variable": v,
                "categories": variables[v].categories,
                "occupancy": state_occupancy(post, variables[v], test_mask),
                "mi": mi,
                "null": null,
                "p": p,
            }
        )
        others = [
            f"{escape(other)} {fmt(vv[f'task_mi_{v}_excess'][0])}"
            for other, vv in vals.items()
            if other != variant and f"task_mi_{v}_excess" in vv
        ]
        clusters = ""
        if f"task_mi_{v}_clusters_excess" in own:
            c_excess = own[f"task_mi_{v}_clusters_excess"][0]
            verdict = (
                "more than"
                if mi - null > c_excess
                else ("as much as" if mi - null == c_excess else "less than")
            )
            clusters = (
                f"; the k-means clusters of the smoothed population rate {escape(fmt(c_excess))}: the states "
                f"carry {verdict} the clusters"
            )
        sentences.append(
            f"<b>{escape(v)}</b>: {escape(fmt(mi))} bits against {escape(fmt(null))} under the null "
            f"(excess {escape(fmt(mi - null))}, p = {escape(fmt(p))}"
            + (f"; excess of the other variants: {', '.join(others)}" if others else "")
            + clusters
            + ")"
        )
    png = switching_task_figure(tables, variant)
    return [
        f'<p class="note">Decoded states against task variables ({escape(variant)}, test bins): mutual '
        "information between the posterior state and each variable, against a shuffled null (states shifted "
        "circularly within trials or test blocks for epochs and running; trials' values permuted among trials for "
        "trial-level stimuli and outcomes; 200 shuffles), and against a non-HMM baseline: each bin's k-means "
        "cluster (as many as states, fitted on the train bins) of the population rate smoothed over a window "
        "chosen on the validation bins, scored with the same information and null. "
        + "; ".join(sentences)
        + ". A p-value at its floor (1/201) means no shuffle reached the observed value.</p>",
        img(
            figures.data_uri(png),
            f"decoded states against task variables on {name}",
            f"State occupancy P(state | category) of {variant} on the test bins, one panel per task variable "
            "(epochs: time from trial start; stimulus and feedback: the trial's value; running: speed of the tracked "
            "position above Otsu's threshold). Look for: rows that differ, i.e. states that favour one category; "
            "rows alike mean the states carry nothing about that variable.",
        ),
    ]
