"""The simulator framework: every generator returns the data and the planted truth, as contract datasets.

A generator is a function ``f(params: dict, seed: int) -> Simulation`` registered under a name with
:func:`register`. ``params`` are validated by the generator's own dataclass (unknown keys are an error), so the
same names work from Python, from the config file and from the command line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import xarray as xr

from brainpipe.errors import ConfigError


@dataclass
class Simulation:
    """Output of a generator: ``data`` (e.g. a spike_times dataset) and ``truth`` (a model_fit, role 'truth')."""

    data: xr.Dataset
    truth: xr.Dataset
    data_kind: str
    truth_kind: str = "model_fit"


@dataclass(frozen=True)
class Generator:
    name: str
    func: Callable[[Any, int], Simulation]
    params_cls: type
    modality: str
    description: str

    def parse_params(self, params: Mapping[str, Any] | None) -> Any:
        return parse_params(self.params_cls, params or {}, where=f"simulator '{self.name}'")

    def __call__(self, params: Mapping[str, Any] | None = None, seed: int = 0) -> Simulation:
        return self.func(self.parse_params(params), int(seed))


GENERATORS: dict[str, Generator] = {}


def register(name: str, params_cls: type, modality: str):
    """Decorator: register ``func(params, seed) -> Simulation`` as generator ``name``."""

    def deco(func):
        GENERATORS[name] = Generator(name, func, params_cls, modality, (func.__doc__ or "").strip().splitlines()[0])
        return func

    return deco


def get_generator(name: str) -> Generator:
    if name not in GENERATORS:
        raise ConfigError(f"unknown simulator {name!r} (allowed: {', '.join(sorted(GENERATORS))})")
    return GENERATORS[name]


def simulate(name: str, params: Mapping[str, Any] | None = None, seed: int = 0) -> Simulation:
    """Run generator ``name`` with ``params`` (dict of its parameters) and an explicit ``seed``."""
    return get_generator(name)(params, seed)


def parse_params(cls: type, params: Mapping[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a dict, rejecting unknown keys with the list of allowed ones."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ConfigError(f"{where}: unknown parameter(s) {', '.join(unknown)} (allowed: {', '.join(sorted(fields))})")
    return cls(**params)
