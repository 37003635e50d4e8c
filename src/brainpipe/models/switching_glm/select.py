"""Hyperparameters of the switching GLM chosen on the validation split: a small grid, each candidate fitted on the
train split and scored on the validation split (held-out log-likelihood per spike), the best kept; the test
split is never read."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError, InputError
from brainpipe.models.switching_glm.estimator import SwitchingGLM

log = logging.getLogger("brainpipe.models.switching_glm")

#: grid keys that only matter for one prior (dropped from the grid of the other priors)
PRIOR_KEYS = {
    "gaussian_sigma": ("gaussian",),
    "onehot_spike_sd": ("onehot",),
    "onehot_prior_concentration": ("onehot",),
}
#: grid keys of the hidden states and their transitions (not searched for a single-state model)
STATE_KEYS = ("n_states", "sticky_kappa", "transition_pseudocount")


def relevant_grid(params: Mapping[str, Any], grid: Mapping[str, Sequence]) -> dict[str, list]:
    """The part of ``grid`` that changes the model ``params`` describe: keys of another prior are dropped, and
    :data:`STATE_KEYS` (``n_states``, the transitions' priors) are never searched for a single-state model (the
    baseline stays one state, and has no transitions).

    Parameters
    ----------
    params : mapping
        The :class:`~brainpipe.models.switching_glm.SwitchingGLM` hyperparameters (``prior``, ``n_states``, ...).
    grid : mapping
        Hyperparameter name -> candidate values.

    Returns
    -------
    dict
        Name -> list of candidate values, in ``grid``'s order.
    """
    prior = params.get("prior", "none")
    out = {}
    for k, values in grid.items():
        if k in PRIOR_KEYS and prior not in PRIOR_KEYS[k]:
            continue
        if k in STATE_KEYS and int(params.get("n_states", 3)) == 1:
            continue
        out[k] = list(values)
    return out


def fit_select(
    params: Mapping[str, Any],
    grid: Mapping[str, Sequence],
    counts: xr.Dataset,
    build: Callable[[dict], SwitchingGLM],
    fit_kwargs: Mapping[str, Any] | None = None,
) -> tuple[SwitchingGLM, xr.Dataset]:
    """Fit every combination of ``grid`` on the train split and keep the best on the validation split.

    Parameters
    ----------
    params : mapping
        The hyperparameters shared by every candidate.
    grid : mapping
        Hyperparameter name -> candidate values (:func:`relevant_grid` is applied first; an empty grid fits
        ``params`` once and records no validation score).
    counts : xarray.Dataset
        A ``spike_counts`` dataset with a validation split.
    build : callable
        ``params -> SwitchingGLM`` (checks the names).
    fit_kwargs : mapping, optional
        Passed to :meth:`SwitchingGLM.fit` (checkpoint, fingerprint).

    Returns
    -------
    model : SwitchingGLM
        The chosen candidate's fit (on the train split only).
    table : xarray.Dataset
        ``selection_score`` (validation log-likelihood per spike, nats) and one ``selection_<name>`` per searched
        hyperparameter over dimension ``candidate``, with attrs ``selected`` (the chosen candidate's index);
        empty when nothing was searched.
    """
    for k, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ConfigError(f"switching GLM: select.{k} must be a non-empty list of candidate values")
    grid = relevant_grid(params, grid)
    if not grid:
        return build(dict(params)).fit(counts, **dict(fit_kwargs or {})), xr.Dataset()
    if not np.any(np.asarray(counts["split"].values) == SPLIT_FLAGS["validation"]):
        raise InputError(
            "switching GLM: 'select' needs a validation split, and the counts have none: give the dataset validation "
            "bins (spikes.bin.split.fractions.validation > 0, or n_validation_sequences for the simulator) or drop "
            "'select'"
        )
    names = list(grid)
    combos = list(itertools.product(*(grid[k] for k in names)))
    best, best_score, scores = None, -np.inf, []
    for combo in combos:
        cand = dict(params, **dict(zip(names, combo, strict=True)))
        model = build(cand).fit(counts, **dict(fit_kwargs or {}))
        score = model.score(counts, "validation")
        log.info("select %s: validation %.5f nats/spike", dict(zip(names, combo, strict=True)), score)
        scores.append(score)
        if score > best_score:
            best, best_score = model, score
    chosen = int(np.argmax(scores))
    table = xr.Dataset(
        {
            "selection_score": (
                "candidate",
                np.asarray(scores, dtype=np.float64),
                {"long_name": "validation log-likelihood per spike", "units": "nat"},
            ),
            **{
                f"selection_{k}": ("candidate", np.asarray([c[i] for c in combos], dtype=np.float64))
                for i, k in enumerate(names)
            },
        },
        coords={"candidate": np.arange(len(combos))},
        attrs={"selected": chosen, "selected_params": str(dict(zip(names, combos[chosen], strict=True)))},
    )
    return best, table
