"""The one estimator shape of every brainpipe model (scikit-learn's convention).

Every model (:class:`~brainpipe.models.PoissonGLM`, :class:`~brainpipe.models.SwitchingGLM`,
:class:`~brainpipe.models.BrainMAE`, :class:`~brainpipe.models.Neuroformer`,
:class:`~brainpipe.models.DynamicConnectome`) derives from :class:`Estimator`, which is scikit-learn's
``BaseEstimator`` plus saving without pickle:

- the constructor only stores its keyword arguments, unchanged, under the same names (no checks, no work), so
  ``get_params``/``set_params``/``sklearn.base.clone`` and a readable ``repr`` work;
- ``fit`` checks the hyperparameters (:meth:`Estimator._check_params`, one-line
  :class:`~brainpipe.errors.ConfigError`), learns, and returns ``self``; fitted attributes end in ``_``;
- ``score`` rates held-out data, higher is better;
- ``to_dataset`` returns the fit as a ``model_fit`` xarray Dataset and the class method ``from_dataset`` rebuilds
  it; ``save``/``load`` write and read that dataset as a contract-checked netCDF file (weights of the torch
  models are variables of it): nothing is pickled.

``tests/common/test_estimators.py`` runs the same contract checks over every model, in the manner of scikit-learn's
estimator checks.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as _SkNotFittedError

from brainpipe._docs import fill_doc
from brainpipe.errors import BrainpipeError, ConfigError


class NotFittedError(BrainpipeError, _SkNotFittedError):
    """A method that needs a fitted model was called before ``fit`` (also a scikit-learn ``NotFittedError``)."""


class Estimator(BaseEstimator):
    """Base class of brainpipe's models: scikit-learn's ``BaseEstimator`` plus netCDF saving.

    Subclasses define ``__init__`` with explicit keyword arguments that it only stores, ``fit`` (calling
    :meth:`_check_params` first, returning ``self``), ``score``, ``to_dataset`` and ``from_dataset``, and set
    :attr:`model_name` (the ``model`` attribute of their ``model_fit`` files).
    """

    #: the ``model`` attribute of the ``model_fit`` datasets this estimator writes
    model_name: ClassVar[str] = ""

    # -- hyperparameters ----------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        """Raise :class:`~brainpipe.errors.ConfigError` (one line naming the parameter) for a bad hyperparameter.

        Called at the start of ``fit``; the base class checks nothing.
        """

    def _param_error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(f"{type(self).__name__}: {name} {problem} (got {getattr(self, name)!r})")

    def _check_choice(self, name: str, allowed) -> None:
        if getattr(self, name) not in allowed:
            raise self._param_error(name, f"must be one of {', '.join(map(str, allowed))}")

    def _check_memory(self, need: float, drivers: str) -> None:
        """Refuse, before allocating, a fit that would need more than the memory budget.

        Parameters
        ----------
        need : float
            Estimated peak allocation of the fit, in bytes.
        drivers : str
            What drives it, named for the user (e.g. ``"n_states x units x bins"``).

        Raises
        ------
        brainpipe.errors.ConfigError
            When ``need`` exceeds :func:`brainpipe.simulate.base.memory_budget` (a fraction of the machine's
            memory, ``BRAINPIPE_MAX_MEMORY_FRACTION``).
        """
        from brainpipe.simulate.base import (
            MEMORY_FRACTION_ENV,
            _gib,
            memory_budget,
            memory_fraction,
            total_memory,
        )

        budget = memory_budget()
        if need > budget:
            raise ConfigError(
                f"{type(self).__name__}: this fit needs about {_gib(need)} of memory ({drivers}), more than the "
                f"{_gib(budget)} allowed ({MEMORY_FRACTION_ENV}={memory_fraction():g} of this machine's "
                f"{_gib(total_memory())}); use fewer units, states or bins, or raise {MEMORY_FRACTION_ENV}"
            )

    # -- fitted state ---------------------------------------------------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return any(k.endswith("_") and not k.startswith("__") for k in vars(self))

    def _check_fitted(self) -> None:
        """Raise :class:`NotFittedError` when the model has not been fitted (or loaded) yet."""
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit (or load a saved fit) first"
            )

    # -- saving without pickle ------------------------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:  # pragma: no cover - every model overrides it
        """The fit as a ``model_fit`` dataset.

        Returns
        -------
        xarray.Dataset
            The fitted parameters, the hyperparameters in its attrs (no pickle).
        """
        raise NotImplementedError

    @classmethod
    @fill_doc
    def from_dataset(cls, ds: xr.Dataset) -> Estimator:  # pragma: no cover - every model overrides it
        """Rebuild a fitted model from :meth:`to_dataset`.

        Parameters
        ----------
        %(fit_ds)s

        Returns
        -------
        Estimator
            The fitted model.
        """
        raise NotImplementedError

    @fill_doc
    def save(self, path: str | os.PathLike, provenance: dict[str, Any] | None = None) -> Path:
        """Write the fit as a ``model_fit`` netCDF file (contract-checked, atomic, no pickle).

        Parameters
        ----------
        path : str or path-like
            The file to write (``.nc``). An existing file is replaced only if brainpipe wrote it.
        %(provenance)s
            None: made here from the hyperparameters.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        from brainpipe.data import make_provenance, write

        self._check_fitted()
        if provenance is None:
            params = {k: _plain(v) for k, v in self.get_params(deep=False).items()}
            provenance = make_provenance(f"{type(self).__name__}.save", params, seed=params.get("seed"))
        return write(self.to_dataset(), path, "model_fit", provenance)

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs: Any) -> Estimator:
        """Read a fit written by :meth:`save` (or by a workflow stage) and rebuild the model.

        Parameters
        ----------
        path : str or path-like
            A ``model_fit`` netCDF file of this model.
        **kwargs
            Passed to :meth:`from_dataset` (e.g. ``device``).

        Returns
        -------
        Estimator
            The fitted model.
        """
        from brainpipe.data import read
        from brainpipe.errors import InputError

        ds = read(path, "model_fit")
        if cls.model_name and ds.attrs.get("model") != cls.model_name:
            raise InputError(
                f"{path}: holds a {ds.attrs.get('model')!r} fit, not a {cls.model_name!r} fit; load it with its own class"
            )
        return cls.from_dataset(ds, **kwargs)


def _plain(v: Any) -> Any:
    """A JSON-able form of a hyperparameter value (estimators by their parameters)."""
    if isinstance(v, BaseEstimator):
        return {k: _plain(x) for k, x in v.get_params(deep=False).items()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


# -- torch weights as dataset variables ---------------------------------------------------------------------------
WEIGHT_PREFIX = "w__"


def state_to_variables(
    state: dict[str, Any], prefix: str = WEIGHT_PREFIX
) -> dict[str, tuple[list[str], np.ndarray]]:
    """A torch ``state_dict`` as dataset variables: ``w__<name with __ for .>`` with dims ``<key>_d<k>``.

    Parameters
    ----------
    state : dict
        Parameter name -> tensor.
    prefix : str
        Prefix of the variable names.

    Returns
    -------
    dict
        Variable name -> ``(dims, float32 array)``, ready for ``xarray.Dataset``.
    """
    out = {}
    for name, t in state.items():
        key = prefix + name.replace(".", "__")
        arr = t.detach().float().cpu().numpy()
        out[key] = ([f"{key}_d{k}" for k in range(arr.ndim)], arr)
    return out


def variables_to_state(ds: xr.Dataset, names, source: str, prefix: str = WEIGHT_PREFIX) -> dict[str, Any]:
    """The inverse of :func:`state_to_variables` for the parameter ``names`` a network expects.

    Raises :class:`~brainpipe.errors.InputError` naming ``source`` when a weight is missing.
    """
    import torch

    from brainpipe.errors import InputError

    state = {}
    for name in names:
        key = prefix + name.replace(".", "__")
        if key not in ds:
            raise InputError(f"{source}: lacks weight {name!r}; it was written by another model layout")
        state[name] = torch.as_tensor(np.asarray(ds[key].values))
    return state
