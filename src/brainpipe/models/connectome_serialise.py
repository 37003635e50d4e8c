"""Saving and loading a :class:`~brainpipe.models.connectome.DynamicConnectome` as a ``model_fit`` dataset (a
mixin of it): the selected rank's factors, every rank's best fit and diagnostics, the communities."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import torch
import xarray as xr

from brainpipe.errors import InputError
from brainpipe.models.base import _plain
from brainpipe.models.connectome_rank import ZERO_WARN
from brainpipe.models.ncp import NCPResult
from brainpipe.training.device import resolve_device

if TYPE_CHECKING:
    from brainpipe.models.connectome import DynamicConnectome

__all__ = ["ConnectomeSerialisation"]


def _coords(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """The pair, window, time (float64 seconds) and animal coordinates of an affinity tensor or of a fit."""
    return {
        "pair": ds["pair"].values,
        "window": ds["window"].values,
        "time": np.asarray(ds["time"].values, dtype=np.float64),
        "animal": ds["animal"].values,
    }


class ConnectomeSerialisation:
    """``to_dataset``/``from_dataset`` of :class:`~brainpipe.models.connectome.DynamicConnectome` (mixed into it)."""

    def to_dataset(self, tensor: xr.Dataset | None = None) -> xr.Dataset:
        """A ``model_fit`` dataset (role fit): factors of the selected rank, rank diagnostics, communities.

        Parameters
        ----------
        tensor : xarray.Dataset, optional
            Accepted for compatibility and not needed: the coordinates are kept from ``fit``.

        Returns
        -------
        xarray.Dataset
            The selected rank's factors and weights, every rank's best fit and stability, and the communities; the
            hyperparameters in its attrs.
        """
        self._check_fitted()
        R = self.rank_
        comp = np.arange(R)
        pair_f, time_f, animal_f = (f.cpu().numpy().astype(np.float64) for f in self.factors_)
        ranks = np.array(self.ranks_)
        Rmax = max(self.ranks_)

        def padded(mode: int) -> np.ndarray:
            n = self.factors_[mode].shape[0]
            arr = np.full((len(ranks), n, Rmax), np.nan)
            for k, r in enumerate(ranks):
                arr[k, :, :r] = self.best_[int(r)].factors[mode].cpu().numpy()
            return arr

        all_w = np.full((len(ranks), Rmax), np.nan)
        for k, r in enumerate(ranks):
            all_w[k, :r] = self.best_[int(r)].weights.cpu().numpy()
        ds = xr.Dataset(
            {
                "weight": ("component", self.weights_.cpu().numpy().astype(np.float64)),
                "pair_factor": (("pair", "component"), pair_f),
                "time_factor": (("window", "component"), time_f),
                "animal_factor": (("animal", "component"), animal_f),
                "membership": (
                    ("component", "neuron"),
                    self.membership_.astype(np.int32),
                    {"long_name": "Louvain community of each neuron on the component's pair factor"},
                ),
                "in_community": (
                    ("component", "neuron"),
                    self.community_.astype(np.int8),
                    {"long_name": "1 if the neuron is in the component's densest community"},
                ),
                "rank_stability": ("rank", np.array([self.stability_[r] for r in ranks])),
                "rank_heldout_error": (
                    "rank",
                    np.array([self.heldout_error_.get(int(r), np.nan) for r in ranks]),
                    {
                        "long_name": "relative error on the held-out entries (rank_selection heldout; cv: the mean "
                        "over the folds; else NaN)",
                        "units": "1",
                    },
                ),
                "rank_heldout_se": (
                    "rank",
                    np.array([self.heldout_se_.get(int(r), np.nan) for r in ranks]),
                    {
                        "long_name": "standard error of the mean held-out error over the folds (rank_selection cv)",
                        "units": "1",
                    },
                ),
                "rank_near_best_fraction": (
                    "rank",
                    np.array([self.near_best_.get(int(r), np.nan) for r in ranks]),
                    {
                        "long_name": "fraction of the other restarts counted in the stability (near the best error)"
                    },
                ),
                "rank_error": ("rank", np.array([self.best_[r].errors[-1] for r in ranks])),
                "rank_n_iter": ("rank", np.array([self.best_[r].n_iter for r in ranks], dtype=np.int64)),
                "all_weight": (
                    ("rank", "kcomponent"),
                    all_w,
                    {"long_name": "best fit's weights at each rank (NaN-padded)"},
                ),
                "all_pair_factor": (("rank", "pair", "kcomponent"), padded(0)),
                "all_time_factor": (("rank", "window", "kcomponent"), padded(1)),
                "all_animal_factor": (("rank", "animal", "kcomponent"), padded(2)),
                "error_history": ("iteration", np.asarray(self.best_[R].errors, dtype=np.float64)),
                **(
                    {
                        "animal_time_factor": (
                            ("animal", "window", "component"),
                            self.animal_time_.cpu().numpy().astype(np.float64),
                            {"long_name": "each animal's time course of each component (weight included)"},
                        )
                    }
                    if getattr(self, "animal_time_", None) is not None
                    else {}
                ),
                **(
                    {
                        "pair_support": (
                            ("pair", "component"),
                            np.asarray(self.support_, dtype=np.float64),
                            {
                                "long_name": "share of the component's animal energy in the animals that have the "
                                "pair; entries below min_support are left out of the communities"
                            },
                        )
                    }
                    if getattr(self, "support_", None) is not None
                    else {}
                ),
                "pair_i": ("pair", self.pair_i_.astype(np.int64)),
                "pair_j": ("pair", self.pair_j_.astype(np.int64)),
            },
            coords={
                "component": comp,
                "pair": self.coords_["pair"],
                "window": self.coords_["window"],
                "time": ("window", self.coords_["time"], {"units": "s"}),
                "animal": self.coords_["animal"],
                "neuron": np.asarray(self.neurons_),
                "rank": ranks,
            },
            attrs={
                "model": "connectome_ntf",
                "role": "fit",
                "selected_rank": int(R),
                "rank_is_stable": int(self.rank_is_stable_),
                "rank_selection": (
                    f"smallest rank with held-out error within {self.heldout_tol} of the lowest"
                    f" ({self.heldout_fraction} of the observed "
                    + (
                        f"(pair, animal) runs of {self.heldout_block_windows} windows"
                        if int(self.heldout_block_windows)
                        else "(pair, animal) fibres"
                    )
                    + " held out)"
                    + ("" if self.rank_is_stable_ else f"; its stability is below {self.stability_threshold}")
                    if self.rank_selection == "heldout"
                    else f"smallest rank with mean held-out error within {self.cv_se} SE of the lowest"
                    f" ({self.cv_folds}-fold cross-validation of the observed "
                    + (
                        f"(pair, animal) runs of {self.heldout_block_windows} windows)"
                        if int(self.heldout_block_windows) > 1
                        else "entries)"
                    )
                    + ("" if self.rank_is_stable_ else f"; its stability is below {self.stability_threshold}")
                    if self.rank_selection == "cv"
                    else f"largest rank with stability >= {self.stability_threshold}"
                    + (" (of the communities)" if self.stability_of == "communities" else " (of the factors)")
                    if self.rank_is_stable_
                    else f"no rank reached stability {self.stability_threshold}: the smallest rank, unstable"
                ),
                "affinity_zero_fraction": self.zero_fraction_,
                "affinity_zero_warning": int(self.zero_fraction_ > ZERO_WARN),
                "stability_threshold": self.stability_threshold,
                "stability_error_tol": (
                    "midpoint to the lower rank's error"
                    if self.stability_error_tol is None
                    else float(self.stability_error_tol)
                ),
                "restarts": self.restarts,
                "device": str(self.device_),
                "dtype": self.dtype,
                "affinity": self.affinity_,
                "time_mode": self.time_mode,
                "estimator_params": json.dumps(_plain(self.get_params(deep=False))),
            },
        )
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, device: str = "cpu") -> DynamicConnectome:
        """Rebuild a fitted model from :meth:`to_dataset` (the selected rank's factors and every rank's best fit).

        Parameters
        ----------
        ds : xarray.Dataset
            A ``model_fit`` dataset with ``model = "connectome_ntf"``.
        device : str
            Where the factors are placed (``"cpu"``, ``"cuda"``, ``"auto"``).

        Returns
        -------
        DynamicConnectome
            The fitted model (``fits_`` holds only each rank's best restart).
        """
        if ds.attrs.get("model") != cls.model_name:
            raise InputError(f"not a connectome fit (model = {ds.attrs.get('model')!r})")
        params = json.loads(ds.attrs["estimator_params"]) if "estimator_params" in ds.attrs else {}
        m = cls(**params)
        dev = resolve_device(device if device != "auto" else m.device)
        dt = getattr(torch, str(ds.attrs.get("dtype", "float32")))
        as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dt, device=dev)  # noqa: E731
        m.device_ = dev
        m.ranks_ = [int(r) for r in ds["rank"].values]
        m.rank_ = int(ds.attrs["selected_rank"])
        m.rank_is_stable_ = bool(int(ds.attrs.get("rank_is_stable", 1)))
        m.zero_fraction_ = float(ds.attrs.get("affinity_zero_fraction", np.nan))
        m.stability_ = {r: float(s) for r, s in zip(m.ranks_, ds["rank_stability"].values, strict=True)}
        near = (
            ds["rank_near_best_fraction"].values
            if "rank_near_best_fraction" in ds
            else [np.nan] * len(m.ranks_)
        )
        m.near_best_ = {r: float(v) for r, v in zip(m.ranks_, near, strict=True)}
        if "rank_heldout_error" in ds:
            m.heldout_error_ = {
                r: float(v)
                for r, v in zip(m.ranks_, ds["rank_heldout_error"].values, strict=True)
                if np.isfinite(v)
            }
        else:
            m.heldout_error_ = {}
        m.heldout_se_ = (
            {
                r: float(v)
                for r, v in zip(m.ranks_, ds["rank_heldout_se"].values, strict=True)
                if np.isfinite(v)
            }
            if "rank_heldout_se" in ds
            else {}
        )
        m.best_ = {}
        for k, r in enumerate(m.ranks_):
            factors = [
                as_t(ds[v].values[k, :, :r])
                for v in ("all_pair_factor", "all_time_factor", "all_animal_factor")
            ]
            errors = [float(ds["rank_error"].values[k])]
            if r == m.rank_:
                errors = [float(e) for e in ds["error_history"].values]
            m.best_[r] = NCPResult(
                as_t(ds["all_weight"].values[k, :r]), factors, errors, int(ds["rank_n_iter"].values[k])
            )
        m.fits_ = {r: [f] for r, f in m.best_.items()}
        m.weights_ = as_t(ds["weight"].values)
        m.factors_ = [as_t(ds[v].values) for v in ("pair_factor", "time_factor", "animal_factor")]
        m.animal_time_ = as_t(ds["animal_time_factor"].values) if "animal_time_factor" in ds else None
        m.neurons_ = [str(n) for n in ds["neuron"].values]
        m.pair_i_ = np.asarray(ds["pair_i"].values)
        m.pair_j_ = np.asarray(ds["pair_j"].values)
        m.membership_ = np.asarray(ds["membership"].values)
        m.community_ = np.asarray(ds["in_community"].values).astype(bool)
        m.support_ = np.asarray(ds["pair_support"].values) if "pair_support" in ds else None
        m.coords_ = _coords(ds)
        m.affinity_ = str(ds.attrs.get("affinity", ""))
        return m
