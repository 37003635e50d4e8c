"""Saving a fitted switching GLM as a ``model_fit`` dataset and rebuilding it from one (a mixin of
:class:`~brainpipe.models.switching_glm.SwitchingGLM`; also reads a simulator's planted truth)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.models.switching_glm.priors import CATEGORIES
from brainpipe.training.device import resolve_device

if TYPE_CHECKING:
    from brainpipe.models.switching_glm.estimator import SwitchingGLM


class FitDatasets:
    """``to_dataset``/``from_dataset`` of :class:`SwitchingGLM` (mixed into it)."""

    def to_dataset(self, ds: xr.Dataset | None = None) -> xr.Dataset:
        """The fit as a ``model_fit`` dataset; with ``ds`` (the counts), posterior and Viterbi states per bin.

        Parameters
        ----------
        ds : xarray.Dataset, optional
            The ``spike_counts`` dataset to decode (:meth:`decode`) into ``posterior`` and ``viterbi``.

        Returns
        -------
        xarray.Dataset
            ``weights``, ``bias``, covariate weights and z-scoring, ``adjacency``, ``transition``, ``initial``,
            the EM traces, and (with ``ds``) ``posterior`` and ``viterbi``; the hyperparameters in its attrs.
        """
        self._check_fitted()
        S = self.weights_.shape[0]
        units = self.units_
        out = xr.Dataset(
            {
                "weights": (
                    ("state", "unit_post", "unit_pre"),
                    self.weights_,
                    {"long_name": "coupling weight"},
                ),
                "bias": (("state", "unit_post"), self.bias_),
                "covariate_weight": (("state", "unit_post", "covariate"), self.cov_weights_),
                "covariate_mean": ("covariate", np.asarray(self.cov_mean_, float)),
                "covariate_std": ("covariate", np.asarray(self.cov_std_, float)),
                "adjacency": (
                    ("state", "unit_post", "unit_pre"),
                    self.adjacency_,
                    {"long_name": "-1 inh, 0 none, 1 exc"},
                ),
                "transition": (("state_from", "state_to"), np.exp(self.log_A_)),
                "initial": ("state", np.exp(self.log_pi_)),
                "objective": ("em_iteration", self.objective_, {"long_name": "MAP objective (train)"}),
                "train_log_likelihood": ("em_iteration", self.log_likelihood_, {"units": "nat"}),
            },
            coords={
                "state": np.arange(S),
                "unit_post": units,
                "unit_pre": units,
                "covariate": np.array(self.covariate_names_, dtype=str),
                "state_from": np.arange(S),
                "state_to": np.arange(S),
                "em_iteration": np.arange(len(self.objective_)),
            },
            attrs={
                "model": "switching_glm",
                "role": "fit",
                "prior": self.prior,
                "link": self.link,
                "n_states": S,
                "history_bins": self.history_bins,
                "history_decay": self.history_decay,
                "bin_width_s": self.bin_width_s_,
                "use_covariates": int(self.use_covariates),
                "adjacency_rule": (
                    "class mixture"
                    if self.adjacency_threshold is None
                    else f"|weight| > {self.adjacency_threshold}"
                ),
                "gaussian_sigma": self.gaussian_sigma,
                "l2": self.l2,
                "onehot_spike_sd": self.onehot_spike_sd,
                "sticky_kappa": float(self.sticky_kappa),
                "n_iter": int(self.n_iter_),
            },
        )
        if self.prior == "gaussian":
            out["prior_mean"] = (("unit_post", "unit_pre"), self.prior_mean_)
        out["prior_probs"] = (
            ("unit_post", "unit_pre", "category"),
            self.prior_probs_,
            {"long_name": "shared per-pair class probabilities (learned; post hoc for free weights)"},
        )
        out["shared_adjacency"] = (
            ("unit_post", "unit_pre"),
            self.shared_adjacency_,
            {"long_name": "shared structure: most probable class, -1 inh, 0 none, 1 exc"},
        )
        out["shared_mean"] = (
            ("unit_post", "unit_pre"),
            self.shared_mean_,
            {"long_name": "state-constant connectome (Gaussian prior: its mean; else the mean over states)"},
        )
        out = out.assign_coords(category=np.array(CATEGORIES))
        if self.prior == "onehot" and hasattr(self, "slab_"):
            out.attrs["slab_mean"], out.attrs["slab_sd"] = float(self.slab_[0]), float(self.slab_[1])
        if ds is not None:
            post, vit = self.decode(ds)
            out["posterior"] = (("time", "state"), post, {"long_name": "posterior state probability"})
            out["viterbi"] = ("time", vit, {"long_name": "most probable state path"})
            out = out.assign_coords(
                time=("time", ds["time"].values, {"units": "s", "long_name": "bin centre"})
            )
        return out

    @classmethod
    @fill_doc
    def from_dataset(cls, fit: xr.Dataset, device: str = "auto") -> SwitchingGLM:
        """Rebuild a fitted model (hard one-hot structure) from :meth:`to_dataset` or a planted truth.

        Parameters
        ----------
        fit : xarray.Dataset
            A ``model_fit`` dataset of a switching GLM (a fit, or a simulator's truth).
        %(device)s

        Returns
        -------
        SwitchingGLM
            The fitted model.
        """
        a = fit.attrs
        S = fit.sizes["state"]
        m = cls(
            n_states=S,
            prior="none",
            link=str(a["link"]),
            history_bins=int(a["history_bins"]),
            history_decay=float(a.get("history_decay", 1.0)),
            device=device,
        )
        m.prior = str(a.get("prior", "none")) if a.get("role") == "fit" else "none"
        m.sticky_kappa = float(a.get("sticky_kappa", 0.0)) if a.get("role") == "fit" else 0.0
        dev = resolve_device(device)
        dt = m._dtype(dev)
        as_t = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dt, device=dev)  # noqa: E731
        W = np.asarray(fit["weights"].values, dtype=np.float64)
        N = W.shape[-1]
        U = np.asarray(fit["covariate_weight"].values) if "covariate_weight" in fit else np.zeros((S, N, 0))
        m.use_covariates = U.shape[-1] > 0
        m.covariate_names_ = [str(c) for c in fit["covariate"].values] if "covariate" in fit.coords else []
        m.cov_mean_ = np.asarray(fit["covariate_mean"].values) if "covariate_mean" in fit else np.zeros(0)
        m.cov_std_ = np.asarray(fit["covariate_std"].values) if "covariate_std" in fit else np.ones(0)
        p = {
            "W": as_t(W),
            "b": as_t(fit["bias"].values),
            "U": as_t(U),
            "log_A": as_t(np.log(np.clip(fit["transition"].values, 1e-300, None))),
            "log_pi": as_t(np.log(np.clip(fit["initial"].values, 1e-300, None))),
        }
        prior_kind, m.prior = m.prior, "none"  # the stored weights are already the hard ones
        m._set_fitted(p)
        m.prior = prior_kind
        m.adjacency_ = np.asarray(fit["adjacency"].values).astype(np.int8)
        for var in ("prior_probs", "shared_adjacency", "shared_mean"):
            if var in fit and a.get("role") == "fit":
                setattr(m, var + "_", np.asarray(fit[var].values))
        m.units_ = np.asarray(fit["unit_post"].values).astype(str)
        m.bin_width_s_ = float(a.get("bin_width_s", np.nan))
        m.objective_ = np.asarray(fit["objective"].values) if "objective" in fit else np.zeros(0)
        m.log_likelihood_ = (
            np.asarray(fit["train_log_likelihood"].values) if "train_log_likelihood" in fit else np.zeros(0)
        )
        m.n_iter_ = int(a.get("n_iter", 0))
        return m
