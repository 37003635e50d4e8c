"""The data contracts: one schema per kind of intermediate file.

A contract fixes, for one kind of Dataset, the dimensions, coordinates, variables (dims, dtype kind, units) and
attributes it must have, plus semantic checks (time increasing, counts non-negative, indices in range).
Every file written by a stage carries ``brainpipe_contract`` (the kind) and ``brainpipe_contract_version``;
readers accept files of the same major version.

Conventions shared by all contracts
-----------------------------------
* Time is a float64 coordinate in seconds (``units: "s"``), strictly increasing and finite.
* Global attributes: ``Conventions`` (CF-1.10), ``title``, ``history``, ``brainpipe_contract``,
  ``brainpipe_contract_version`` and ``provenance`` (a JSON string, see :mod:`brainpipe.data.provenance`).
* Optional variables are validated when present.
* CF-1.10 (what ``compliance-checker --test cf:1.10`` checks), set centrally by :func:`brainpipe.data.io.stamp`
  and :func:`brainpipe.data.io.write`, not by each writer: every variable has a ``long_name`` (the writer's, else
  the contract's, else its name in words); units are UDUNITS strings (``"1"`` for dimensionless; strings UDUNITS
  does not know, such as ``"a.u."``, are rewritten by :data:`UNIT_FIXES`); the ``time`` dimension coordinate has
  ``standard_name: "time"``, ``axis: "T"`` and, on disk only, the CF time units :data:`TIME_UNITS_ON_DISK` (seconds
  since a placeholder epoch; :func:`brainpipe.data.io.open_dataset` gives it back as float seconds, units ``"s"``);
  coordinates have no ``_FillValue``; string labels of a dimension are stored as character arrays (CF labels);
  ``flag_values`` have their variable's dtype.

Kinds
-----
``roi_timeseries``  fMRI: ``signal(time, roi)``; attrs ``repetition_time_s``.
``calcium_traces``  calcium imaging: ``fluorescence(time, cell)``; optional ``neuropil``, ``dff``, ``events``
                    with the same dims; attrs ``frame_rate_hz``. Optional behaviour sampled on its own clock, as
                    in ``spike_times``: ``behaviour(behaviour_time, behaviour_var)`` (preprocessing keeps it).
``spike_times``     ragged spike trains, flat encoding: ``spike_time(spike)`` in seconds and ``spike_unit(spike)``,
                    an integer index into the ``unit`` coordinate; sorted by time. Attrs ``t_start_s``,
                    ``t_stop_s`` (the observation window). Optional behaviour sampled on its own clock:
                    ``behaviour(behaviour_time, behaviour_var)``; optional trials ``trial_start(trial)``,
                    ``trial_stop(trial)``, per-trial covariates ``trial_<name>(trial)`` and an optional predefined
                    split ``trial_split(trial)`` (0/1/2). Attr ``observed``: "continuous" (default) or "trials"
                    (only the trial windows were recorded).
``spike_counts``    binned counts ``counts(time, unit)`` (time = bin centres, one bin width apart; longer steps
                    only at gaps where the recording was not observed, e.g. between trials); ``split(time)`` int8 with CF
                    ``flag_values`` 0/1/2 = train/validation/test (time blocks); attrs ``bin_width_s``.
                    Optional ``behaviour(time, behaviour_var)``, ``stimulus(time, stimulus_var)``,
                    ``trial(time)`` (trial index, -1 between trials).
``model_fit``       fitted (``role = "fit"``) or planted (``role = "truth"``) parameters of a model; any variables;
                    attrs ``model``, ``role``. Connectivity-like weights use dims ``(unit_post, unit_pre)``.
``roi_segments``    fMRI cohort cut into fixed-length segments for a model: ``signal(segment, lag, roi)`` (cleaned),
                    ``segment_subject(segment)`` (index into ``subject``), ``segment_start(segment)`` (s, in its
                    run), ``segment_run(segment)``, ``segment_fold(segment)`` (0 test, 1 validation, >= 2 train: by
                    subject, or by time block for one subject, attr ``split_by``); per subject ``fold(subject)``
                    (subject-wise cross-validation fold) and optional ``label(subject)`` (class index, -1 unknown; names in attr ``classes``) and
                    ``target(subject)`` (continuous phenotype, NaN unknown). Attrs ``repetition_time_s``,
                    ``segment_length_s``.
``affinity_tensor`` dynamic-connectome tensor: ``affinity(pair, window, animal)`` (non-negative), ``mask(pair,
                    animal)`` (1: the animal has both neurons), ``pair_i/pair_j(pair)`` indices into ``neuron``,
                    ``time(window)`` window centres; attrs ``affinity``, ``window_s``, ``stride_s``. Stored as zarr.
``metrics``         ``value(metric)``; optional ``bar(metric)``, ``bar_op(metric)`` (">=", "<=", ">", "<"),
                    ``passed(metric)`` (1 pass, 0 miss, -1 no bar), ``description(metric)``; attrs ``model``,
                    ``dataset``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import xarray as xr

from brainpipe.data import provenance as _prov
from brainpipe.data._checks import (  # noqa: F401 - SPLIT_FLAGS is this module's public constant
    SPLIT_FLAGS,
    _bin_width_check,
    _finite,
    _increasing,
    _metrics_checks,
    _model_fit_checks,
    _nonnegative,
    _positive_attr,
    _segments_checks,
    _spike_times_checks,
    _split_check,
    _unique,
)

CONTRACT_ATTR = "brainpipe_contract"
VERSION_ATTR = "brainpipe_contract_version"
CONTRACT_VERSION = "1.1"  # 1.1: CF-1.10 attributes and encodings (files of 1.0 still read)
COMMON_ATTRS = ("Conventions", "title", "history", CONTRACT_ATTR, VERSION_ATTR, _prov.PROVENANCE_ATTR)

#: Unit strings that UDUNITS (so CF) does not know, as readers and writers give them, and their CF form:
#: ``(units, words for the long_name)``; ``units`` None drops the attribute (CF: no units attribute for values
#: without a physical unit or with several).
UNIT_FIXES: dict[str, tuple[str | None, str]] = {
    "a.u.": ("1", "arbitrary units"),
    "au": ("1", "arbitrary units"),
    "arbitrary": ("1", "arbitrary units"),
    "log(Hz)": ("1", "natural log of a rate in Hz"),
    "px": ("1", "pixels"),
    "pixel": ("1", "pixels"),
    "pixels": ("1", "pixels"),
    "mixed": (None, "units differ by column"),
}
#: On disk, the ``time`` dimension coordinate (float seconds in memory, units ``"s"``) carries these CF time units:
#: CF requires a reference time for a time axis, and brainpipe's clock is relative (seconds from the start of the
#: recording), so the epoch is a placeholder. :func:`brainpipe.data.io.open_dataset` reads it back as ``"s"``.
TIME_UNITS_ON_DISK = "s since 1970-01-01 00:00:00"
TIME_COMMENT = (
    "seconds from the start of the recording; the reference date of the units on disk is a placeholder "
    "(brainpipe.data.read gives float seconds, units 's')"
)

_KIND_NAMES = {
    "f": "float",
    "i": "integer",
    "u": "unsigned integer",
    "b": "boolean",
    "U": "string",
    "O": "string",
}


@dataclass(frozen=True)
class Var:
    """One variable or coordinate of a contract.

    Parameters
    ----------
    dims : tuple of str
        Its dimensions, in order.
    kinds : str
        The numpy dtype kinds allowed, e.g. ``"f"``, ``"iu"``, ``"UO"``.
    units : str, optional
        The units it must carry (None: no rule).
    required : bool, default True
        Whether a dataset of the contract must have it.
    long_name : str, default ""
        What it is, in words (its CF ``long_name``).
    dtype : str, optional
        An exact dtype required (e.g. ``"float64"`` for time).
    """

    dims: tuple[str, ...]
    kinds: str  # numpy dtype kinds allowed, e.g. "f", "iu", "UO"
    units: str | None = None
    required: bool = True
    long_name: str = ""
    dtype: str | None = None  # exact dtype required (e.g. "float64" for time)


@dataclass(frozen=True)
class Contract:
    """The schema of one intermediate kind: dims, coords, variables, dtypes, units and required attrs.

    Parameters
    ----------
    name : str
        The contract's name (the ``brainpipe_contract`` attr of its files).
    description : str
        One line: what a file of this kind holds (its default CF ``title``).
    coords : dict of str to Var
        Its coordinates.
    data_vars : dict of str to Var
        Its data variables.
    attrs : tuple of str
        Attrs a file must have (besides the common ones).
    checks : tuple of callable
        Further checks, ``check(ds) -> list of problems``.
    version : str
        The contract version written into files.
    min_data_vars : int, default 0
        The fewest data variables a file may have.
    """

    name: str
    description: str
    coords: dict[str, Var] = field(default_factory=dict)
    data_vars: dict[str, Var] = field(default_factory=dict)
    attrs: tuple[str, ...] = ()
    checks: tuple[Callable[[xr.Dataset], list[str]], ...] = ()
    version: str = CONTRACT_VERSION
    min_data_vars: int = 0


TIME = Var(("time",), "f", "s", long_name="time (bin centre or sample time)", dtype="float64")
#: optional behaviour on its own clock (spike times, calcium traces)
BEHAVIOUR_COORDS = {
    "behaviour_time": Var(
        ("behaviour_time",), "f", "s", required=False, long_name="behaviour sample time", dtype="float64"
    ),
    "behaviour_var": Var(("behaviour_var",), "UO", required=False, long_name="behaviour variable"),
}
BEHAVIOUR = Var(("behaviour_time", "behaviour_var"), "f", required=False, long_name="behaviour")


def canonical_units(units: str | None) -> str | None:
    """The CF form of a unit string: :data:`UNIT_FIXES` applied (None when the units are to be dropped).

    Parameters
    ----------
    units : str or None
        A ``units`` attribute as a reader or writer set it.

    Returns
    -------
    str or None
        ``units`` itself when UDUNITS knows it (or it is None), else its replacement from :data:`UNIT_FIXES`.
    """
    if units is None:
        return None
    return UNIT_FIXES[units][0] if units in UNIT_FIXES else units


CONTRACTS: dict[str, Contract] = {
    c.name: c
    for c in [
        Contract(
            "roi_timeseries",
            "fMRI ROI time series: one value per region of interest per volume",
            coords={"time": TIME, "roi": Var(("roi",), "UO", long_name="region of interest")},
            data_vars={
                "signal": Var(("time", "roi"), "f", long_name="ROI BOLD signal"),
                "confounds": Var(("time", "confound"), "f", required=False, long_name="nuisance regressors"),
                "sample_mask": Var(("time",), "b", required=False, long_name="volume kept after scrubbing"),
            },
            attrs=("repetition_time_s",),
            checks=(
                _increasing("time"),
                _unique("roi"),
                _positive_attr("repetition_time_s"),
                _finite("signal"),
            ),
        ),
        Contract(
            "roi_segments",
            "fMRI ROI time series of a cohort, cleaned and cut into fixed-length segments",
            coords={
                "lag": Var(("lag",), "f", "s", long_name="time within the segment", dtype="float64"),
                "roi": Var(("roi",), "UO", long_name="region of interest"),
                "subject": Var(("subject",), "UO", long_name="subject identifier"),
            },
            data_vars={
                "signal": Var(("segment", "lag", "roi"), "f", long_name="cleaned ROI BOLD signal"),
                "segment_subject": Var(("segment",), "iu", long_name="index of the segment's subject"),
                "segment_start": Var(("segment",), "f", "s", long_name="segment start in its run"),
                "segment_run": Var(("segment",), "UO", long_name="run the segment comes from"),
                "fold": Var(("subject",), "iu", long_name="subject-wise cross-validation fold"),
                "segment_fold": Var(
                    ("segment",), "iu", long_name="fold of each segment (0 test, 1 validation)"
                ),
                "label": Var(("subject",), "i", required=False, long_name="class index (-1: unknown)"),
                "target": Var(
                    ("subject",), "f", required=False, long_name="continuous phenotype (NaN: unknown)"
                ),
            },
            attrs=("repetition_time_s", "segment_length_s"),
            checks=(
                _increasing("lag"),
                _unique("roi"),
                _unique("subject"),
                _positive_attr("repetition_time_s"),
                _finite("signal"),
                _segments_checks,
            ),
        ),
        Contract(
            "calcium_traces",
            "Calcium imaging traces: one value per cell per frame",
            coords={
                "time": TIME,
                "cell": Var(("cell",), "iuUO", long_name="cell (ROI) identifier"),
                **BEHAVIOUR_COORDS,
            },
            data_vars={
                "behaviour": BEHAVIOUR,
                "fluorescence": Var(
                    ("time", "cell"), "f", "1", long_name="raw fluorescence (arbitrary units)"
                ),
                "neuropil": Var(
                    ("time", "cell"),
                    "f",
                    "1",
                    required=False,
                    long_name="neuropil fluorescence (arbitrary units)",
                ),
                "dff": Var(("time", "cell"), "f", "1", required=False, long_name="dF/F"),
                "events": Var(("time", "cell"), "fiu", "1", required=False, long_name="inferred events"),
            },
            attrs=("frame_rate_hz",),
            checks=(
                _increasing("time"),
                _unique("cell"),
                _positive_attr("frame_rate_hz"),
                _finite("fluorescence"),
                _increasing("behaviour_time"),
                _finite("behaviour"),
            ),
        ),
        Contract(
            "spike_times",
            "Spike trains in flat ragged encoding: spike_time(spike) and spike_unit(spike) index into unit",
            coords={
                "unit": Var(("unit",), "UO", long_name="unit identifier"),
                **BEHAVIOUR_COORDS,
            },
            data_vars={
                "spike_time": Var(("spike",), "f", "s", long_name="spike time", dtype="float64"),
                "spike_unit": Var(("spike",), "iu", long_name="index of the spike's unit in 'unit'"),
                "behaviour": BEHAVIOUR,
                "trial_start": Var(
                    ("trial",), "f", "s", required=False, long_name="trial start", dtype="float64"
                ),
                "trial_stop": Var(
                    ("trial",), "f", "s", required=False, long_name="trial stop", dtype="float64"
                ),
            },
            attrs=("t_start_s", "t_stop_s"),
            checks=(
                _spike_times_checks,
                _unique("unit"),
                _increasing("behaviour_time"),
                _finite("behaviour"),
            ),
        ),
        Contract(
            "spike_counts",
            "Binned spike counts with time-block split and optional aligned behaviour/stimulus/trials",
            coords={
                "time": TIME,
                "unit": Var(("unit",), "UO", long_name="unit identifier"),
                "behaviour_var": Var(
                    ("behaviour_var",), "UO", required=False, long_name="behaviour variable"
                ),
                "stimulus_var": Var(("stimulus_var",), "UO", required=False, long_name="stimulus variable"),
            },
            data_vars={
                "counts": Var(("time", "unit"), "iu", "1", long_name="spike count per bin"),
                "split": Var(("time",), "iu", long_name="data split (0 train, 1 validation, 2 test)"),
                "behaviour": Var(("time", "behaviour_var"), "f", required=False, long_name="behaviour"),
                "stimulus": Var(("time", "stimulus_var"), "f", required=False, long_name="stimulus"),
                "trial": Var(("time",), "i", required=False, long_name="trial index (-1 outside trials)"),
            },
            attrs=("bin_width_s",),
            checks=(
                _increasing("time"),
                _unique("unit"),
                _positive_attr("bin_width_s"),
                _bin_width_check,
                _nonnegative("counts"),
                _split_check,
                _finite("behaviour"),
                _finite("stimulus"),
            ),
        ),
        Contract(
            "model_fit",
            "Fitted or planted model parameters (role 'fit' or 'truth')",
            attrs=("model", "role"),
            checks=(_model_fit_checks,),
            min_data_vars=1,
        ),
        Contract(
            "affinity_tensor",
            "Pairwise dynamic affinities: neuron pair x time window x animal, with a mask of missing pairs",
            coords={
                "pair": Var(("pair",), "iu", long_name="neuron pair (upper triangle, i < j)"),
                "window": Var(("window",), "iu", long_name="time window index"),
                "animal": Var(("animal",), "UO", long_name="animal (calcium dataset)"),
                "neuron": Var(("neuron",), "UO", long_name="neuron identity (shared across animals)"),
                "time": Var(("window",), "f", "s", long_name="window centre", dtype="float64"),
            },
            data_vars={
                "affinity": Var(("pair", "window", "animal"), "f", "1", long_name="pairwise affinity"),
                "mask": Var(
                    ("pair", "animal"), "iub", long_name="1 if the animal has both neurons of the pair"
                ),
                "pair_i": Var(("pair",), "iu", long_name="index of the pair's first neuron in 'neuron'"),
                "pair_j": Var(("pair",), "iu", long_name="index of the pair's second neuron in 'neuron'"),
            },
            attrs=("affinity", "window_s", "stride_s", "frame_rate_hz"),
            checks=(
                _nonnegative("affinity"),
                _finite("affinity"),
                _positive_attr("window_s"),
                _positive_attr("frame_rate_hz"),
            ),
        ),
        Contract(
            "metrics",
            "Scalar metrics of a model on a dataset, with optional bars",
            coords={"metric": Var(("metric",), "UO", long_name="metric name")},
            data_vars={
                "value": Var(("metric",), "f", long_name="metric value"),
                "bar": Var(
                    ("metric",), "f", required=False, long_name="bar the value is held to (NaN: none)"
                ),
                "bar_op": Var(("metric",), "UO", required=False, long_name="comparison against bar"),
                "passed": Var(("metric",), "i", required=False, long_name="1 pass, 0 miss, -1 no bar"),
                "description": Var(("metric",), "UO", required=False, long_name="what the metric measures"),
            },
            attrs=("model", "dataset"),
            checks=(_unique("metric"), _metrics_checks),
        ),
    ]
}


def get_contract(kind: str) -> Contract:
    """The data contract named ``kind``.

    Parameters
    ----------
    kind : str
        A key of :data:`CONTRACTS` (e.g. ``"spike_counts"``).

    Returns
    -------
    Contract
        The contract.

    Raises
    ------
    KeyError
        No contract has that name (the message lists those that exist).
    """
    try:
        return CONTRACTS[kind]
    except KeyError:
        raise KeyError(f"unknown contract kind {kind!r}; known: {', '.join(sorted(CONTRACTS))}") from None


def long_name_of(kind: str, name: str) -> str:
    """The contract's description of variable or coordinate ``name`` of contract ``kind`` ("" when it has none).

    Parameters
    ----------
    kind : str
        A contract name (a key of :data:`CONTRACTS`).
    name : str
        A variable or coordinate name.

    Returns
    -------
    str
        The ``long_name`` the contract gives ``name``; "" when the contract does not list it.
    """
    c = get_contract(kind)
    spec = c.data_vars.get(name) or c.coords.get(name)
    return spec.long_name if spec is not None else ""


def _check_var(name: str, spec: Var, da: xr.DataArray, what: str) -> list[str]:
    out = []
    if tuple(da.dims) != spec.dims:
        out.append(f"{what} '{name}' has dims {tuple(da.dims)}, expected {spec.dims}")
    kind = da.dtype.kind
    if kind not in spec.kinds:
        allowed = " or ".join(sorted({_KIND_NAMES.get(k, k) for k in spec.kinds}))
        out.append(f"{what} '{name}' has dtype {da.dtype}, expected {allowed}")
    elif spec.dtype and str(da.dtype) != spec.dtype:
        out.append(f"{what} '{name}' has dtype {da.dtype}, expected {spec.dtype}")
    if spec.units is not None and canonical_units(da.attrs.get("units")) != spec.units:
        out.append(f"{what} '{name}' has units {da.attrs.get('units')!r}, expected {spec.units!r}")
    return out


def check(ds: xr.Dataset, kind: str | None = None, require_provenance: bool = True) -> list[str]:
    """All violations of ``ds`` against its contract (``kind``, or the one named in its attrs).

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset to check.
    kind : str, optional
        The contract to check against (default: the one its ``brainpipe_contract`` attr names).
    require_provenance : bool, default True
        Whether the common attrs (contract, CF, provenance) are required.

    Returns
    -------
    list of str
        One-line problems, each naming the variable or attribute and the rule; empty when valid.
    """
    stated = ds.attrs.get(CONTRACT_ATTR)
    if kind is None:
        if stated is None:
            return [f"attribute '{CONTRACT_ATTR}' is missing (rule: every brainpipe file names its contract)"]
        kind = str(stated)
    if kind not in CONTRACTS:
        return [
            f"attribute '{CONTRACT_ATTR}' = {kind!r} is not a known contract ({', '.join(sorted(CONTRACTS))})"
        ]
    c = CONTRACTS[kind]
    out: list[str] = []
    if stated is not None and stated != kind:
        out.append(f"attribute '{CONTRACT_ATTR}' = {stated!r}, expected {kind!r}")
    ver = ds.attrs.get(VERSION_ATTR)
    if ver is not None and str(ver).split(".")[0] != c.version.split(".")[0]:
        out.append(
            f"attribute '{VERSION_ATTR}': contract version {ver} is incompatible with this brainpipe's {kind} v{c.version} "
            "(rule: same major version; re-run the stage that made it)"
        )
    for name, spec in c.coords.items():
        if name not in ds.coords:
            if spec.required:
                out.append(f"coordinate '{name}' is missing (rule: {kind} has coordinate {name}{spec.dims})")
            continue
        out += _check_var(name, spec, ds.coords[name], "coordinate")
    for name, spec in c.data_vars.items():
        if name not in ds.data_vars:
            if spec.required:
                out.append(f"variable '{name}' is missing (rule: {kind} has variable {name}{spec.dims})")
            continue
        out += _check_var(name, spec, ds[name], "variable")
    if len(ds.data_vars) < c.min_data_vars:
        out.append(f"has {len(ds.data_vars)} data variables (rule: {kind} has at least {c.min_data_vars})")
    for a in c.attrs:
        if a not in ds.attrs:
            out.append(f"attribute '{a}' is missing (rule: {kind} has attribute {a})")
    if require_provenance:
        for a in COMMON_ATTRS:
            if a not in ds.attrs and a != CONTRACT_ATTR:
                out.append(
                    f"attribute '{a}' is missing (rule: every brainpipe file has {', '.join(COMMON_ATTRS)})"
                )
        if _prov.PROVENANCE_ATTR in ds.attrs:
            try:
                _prov.parse(ds.attrs[_prov.PROVENANCE_ATTR])
            except ValueError as err:
                out.append(f"attribute 'provenance': {err}")
    for fn in c.checks:
        try:
            out += fn(ds)
        except Exception as err:  # a malformed file must give a problem line, not a crash
            out.append(
                f"check {getattr(fn, '__name__', 'check')} could not run ({type(err).__name__}: {err})"
            )
    return out
