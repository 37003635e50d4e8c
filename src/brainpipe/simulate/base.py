"""The simulator framework: every generator returns the data and the planted truth, as contract datasets.

A generator is a function ``f(params: dict, seed: int) -> Simulation`` registered under a name with
:func:`register`. ``params`` are validated by the generator's own dataclass (unknown keys are an error), so the
same names work from Python, from the config file and from the command line.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from brainpipe.errors import ConfigError


@dataclass
class Simulation:
    """Output of a generator: the simulated data and the planted truth.

    Parameters
    ----------
    data : xarray.Dataset
        The simulated data (e.g. a ``spike_times`` dataset).
    truth : xarray.Dataset
        The planted parameters (a ``model_fit`` dataset, role ``truth``).
    data_kind : str
        The data contract of ``data``.
    truth_kind : str, default "model_fit"
        The data contract of ``truth``.
    """

    data: xr.Dataset
    truth: xr.Dataset
    data_kind: str
    truth_kind: str = "model_fit"


@dataclass(frozen=True)
class Generator:
    """A registered simulator (see :func:`register`); calling it runs the simulation.

    Parameters
    ----------
    name : str
        The simulator's name (the config's ``simulate.generator``).
    func : callable
        ``func(params, seed) -> Simulation``, with ``params`` an instance of ``params_cls``.
    params_cls : type
        The dataclass of its parameters.
    modality : str
        ``"spikes"``, ``"calcium"`` or ``"fmri"``.
    description : str
        One line: the first line of ``func``'s docstring.
    """

    name: str
    func: Callable[[Any, int], Simulation]
    params_cls: type
    modality: str
    description: str

    def parse_params(self, params: Mapping[str, Any] | None) -> Any:
        """Check ``params`` against the generator's parameter dataclass and build it (see :func:`parse_params`).

        Parameters
        ----------
        params : mapping or None
            Parameter values by name; None or missing keys take the dataclass's defaults.

        Returns
        -------
        object
            An instance of ``params_cls``.
        """
        return parse_params(self.params_cls, params or {}, where=f"simulator '{self.name}'")

    def __call__(self, params: Mapping[str, Any] | None = None, seed: int = 0) -> Simulation:
        return self.func(self.parse_params(params), int(seed))


GENERATORS: dict[str, Generator] = {}


class StepMemory:
    """Memory estimate of a spiking simulation stepped over ``duration_s / dt_s`` steps of ``n_neurons`` neurons.

    A mixin for parameter dataclasses with ``n_neurons``, ``duration_s`` and ``dt_s`` fields: 12 bytes per (step,
    neuron) (int32 counts and a float64 drive) plus :meth:`_pair_bytes` per neuron pair (couplings, their draws).
    """

    def _pair_bytes(self) -> float:
        return 25.0

    def memory_bytes(self) -> tuple[float, str]:
        """Estimate the peak allocation of the simulation.

        Returns
        -------
        bytes : float
            Estimated peak allocation, in bytes.
        keys : str
            The parameters that drive it (for the error message).
        """
        n, steps = float(self.n_neurons), float(self.duration_s) / float(self.dt_s)
        return 12.0 * steps * n + self._pair_bytes() * n * n, "n_neurons x duration_s / dt_s"


def spike_times_from_counts(
    counts: np.ndarray, dt_s: float, rng: np.random.Generator
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``spike_times`` variables of simulated counts: each spike placed uniformly within its bin.

    Parameters
    ----------
    counts : numpy.ndarray
        Spike counts, (bin, unit); bins are consecutive steps of ``dt_s`` from time 0.
    dt_s : float
        Bin width (s).
    rng : numpy.random.Generator
        Draws the position of each spike within its bin.

    Returns
    -------
    data_vars : dict
        ``spike_time`` (s) and ``spike_unit`` (index into ``unit``), sorted by time then unit.
    coords : dict
        The ``unit`` coordinate (``n000``, ``n001``, ...).
    """
    t_idx, unit_idx = np.nonzero(counts)
    reps = counts[t_idx, unit_idx]
    t_idx, unit_idx = np.repeat(t_idx, reps), np.repeat(unit_idx, reps)
    spike_time = (t_idx + rng.random(t_idx.size)) * dt_s
    order = np.lexsort((unit_idx, spike_time))
    units = np.array([f"n{i:03d}" for i in range(counts.shape[1])])
    data_vars = {
        "spike_time": (
            "spike",
            spike_time[order].astype(np.float64),
            {"units": "s", "long_name": "spike time"},
        ),
        "spike_unit": ("spike", unit_idx[order].astype(np.int32), {"long_name": "index into unit"}),
    }
    return data_vars, {"unit": ("unit", units, {"long_name": "unit identifier"})}


def register(name: str, params_cls: type, modality: str):
    """Register ``func(params, seed) -> Simulation`` as generator ``name`` (a decorator factory).

    Parameters
    ----------
    name : str
        The name the generator is called by (:func:`simulate`, the config's ``generator``).
    params_cls : type
        The dataclass of its parameters (validated by :func:`parse_params`).
    modality : str
        ``"spikes"``, ``"calcium"`` or ``"fmri"``.

    Returns
    -------
    callable
        The decorator: it adds a :class:`Generator` to :data:`GENERATORS` and returns ``func`` unchanged.
    """

    def deco(func):
        GENERATORS[name] = Generator(
            name, func, params_cls, modality, (func.__doc__ or "").strip().splitlines()[0]
        )
        return func

    return deco


def get_generator(name: str) -> Generator:
    """The registered generator ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`GENERATORS`.

    Returns
    -------
    Generator
        The generator.

    Raises
    ------
    brainpipe.errors.ConfigError
        No generator has that name (the message lists those that exist).
    """
    if name not in GENERATORS:
        raise ConfigError(f"unknown simulator {name!r} (allowed: {', '.join(sorted(GENERATORS))})")
    return GENERATORS[name]


def simulate(name: str, params: Mapping[str, Any] | None = None, seed: int = 0) -> Simulation:
    """Run generator ``name`` with ``params`` (dict of its parameters) and an explicit ``seed``.

    Parameters
    ----------
    name : str
        A registered generator (:data:`GENERATORS`), e.g. ``"poisson_glm_network"``.
    params : mapping, optional
        Its parameters by name (the fields of its parameter dataclass); unknown keys and wrong types are refused,
        missing ones take their defaults.
    seed : int, default 0
        Seed of the random number generator; the same seed gives the same data.

    Returns
    -------
    Simulation
        The data and the planted truth.

    Examples
    --------
    >>> from brainpipe.simulate import simulate
    >>> sim = simulate("poisson_glm_network", {"n_neurons": 5, "duration_s": 10}, seed=0)
    >>> sim.data_kind, sim.truth_kind
    ('spike_times', 'model_fit')
    >>> sim.truth["coupling"].shape
    (5, 5)
    """
    return get_generator(name)(params, seed)


def parse_params(cls: type, params: Mapping[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a dict: unknown keys, wrong types and sizes the machine cannot hold are refused.

    Parameters
    ----------
    cls : type
        The generator's parameter dataclass. Its field annotations give the types (``int`` refuses 2.5 and text,
        ``float`` refuses text with a hint on how YAML writes numbers, ``bool`` refuses anything but true/false). A
        ``memory_bytes()`` method, when it has one, estimates what the simulation allocates: more than
        :func:`memory_budget` is refused before anything is allocated.
    params : mapping
        Parameter name -> value, as written in the study config.
    where : str
        How to name the simulator in the message.

    Returns
    -------
    object
        An instance of ``cls``.
    """
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ConfigError(
            f"{where}: unknown parameter(s) {', '.join(unknown)} (allowed: {', '.join(sorted(fields))})"
        )
    hints = typing.get_type_hints(cls)
    for name, value in params.items():
        _check_type(where, name, value, hints.get(name))
    obj = cls(**params)
    estimate = getattr(obj, "memory_bytes", None)
    if estimate is not None:
        need, keys = estimate()
        budget = memory_budget()
        if need > budget:
            raise ConfigError(
                f"{where}: these parameters need about {_gib(need)} of memory ({keys}), more than the "
                f"{_gib(budget)} allowed ({MEMORY_FRACTION_ENV}={memory_fraction():g} of this machine's "
                f"{_gib(total_memory())}); lower {keys.split(' x ')[0]} or raise {MEMORY_FRACTION_ENV}"
            )
    return obj


YAML_NUMBER_HINT = (
    "YAML reads a number like 1e7 or 1e-6 as text: write it with a decimal point and a signed exponent "
    "(1.0e+7, 1.0e-6) or in full (10000000)"
)


def _check_type(where: str, name: str, value: Any, hint: Any) -> None:
    """One-line ConfigError when ``value`` is not of the annotated type (int, float, bool, and lists/tuples of
    them, e.g. ``tuple[float, float, float]``; others unchecked)."""
    if typing.get_origin(hint) in (tuple, list):
        _check_sequence(where, name, value, hint)
        return
    args = typing.get_args(hint)
    allowed = set(args) if args else {hint}
    if isinstance(value, (list, tuple)):
        seq = [a for a in args if typing.get_origin(a) in (tuple, list)]
        if seq:  # e.g. tuple[float, float] | None
            _check_sequence(where, name, value, seq[0])
            return
    if value is None and type(None) in allowed:
        return
    text = isinstance(value, str)
    if int in allowed and float not in allowed:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            tip = f"; {YAML_NUMBER_HINT}" if text else ""
            raise ConfigError(f"{where}: parameter {name} must be a whole number (got {value!r}){tip}")
    elif float in allowed:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            tip = f"; {YAML_NUMBER_HINT}" if text else ""
            raise ConfigError(f"{where}: parameter {name} must be a number (got {value!r}){tip}")
    elif bool in allowed and not isinstance(value, bool):
        raise ConfigError(f"{where}: parameter {name} must be true or false (got {value!r})")


def _check_sequence(where: str, name: str, value: Any, hint: Any) -> None:
    """``value`` against ``tuple[X, ...]``, ``tuple[X, Y, Z]`` or ``list[X]``: its length, then each element."""
    args = typing.get_args(hint)
    fixed = typing.get_origin(hint) is tuple and not (len(args) == 2 and args[1] is Ellipsis)
    if not isinstance(value, (list, tuple)) or (fixed and len(value) != len(args)):
        size = f"{len(args)} values" if fixed else "values"
        raise ConfigError(f"{where}: parameter {name} must be a list of {size} (got {value!r})")
    for i, item in enumerate(value):
        _check_type(where, f"{name}[{i}]", item, args[i] if fixed else (args[0] if args else Any))


# -- memory guard ---------------------------------------------------------------------------------------------------
MEMORY_FRACTION_ENV = "BRAINPIPE_MAX_MEMORY_FRACTION"
DEFAULT_MEMORY_FRACTION = 0.5


def total_memory() -> int:
    """This machine's physical memory in bytes (``os.sysconf``; 16 GiB when it cannot be read)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 16 << 30


def memory_fraction() -> float:
    """The fraction of the machine's memory one simulation or model may use (``$BRAINPIPE_MAX_MEMORY_FRACTION``,
    default 0.5)."""
    import os

    raw = os.environ.get(MEMORY_FRACTION_ENV)
    if raw is None:
        return DEFAULT_MEMORY_FRACTION
    try:
        f = float(raw)
    except ValueError:
        raise ConfigError(
            f"{MEMORY_FRACTION_ENV}={raw!r} is not a number (a fraction of memory, e.g. 0.5)"
        ) from None
    if not 0 < f <= 1:
        raise ConfigError(f"{MEMORY_FRACTION_ENV}={raw!r} must be in (0, 1]")
    return f


def memory_budget() -> int:
    """Bytes one simulation or model may allocate: :func:`memory_fraction` of :func:`total_memory`."""
    return int(memory_fraction() * total_memory())


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.3g} GiB" if n < (1 << 50) else f"{n / (1 << 40):.3g} TiB"
