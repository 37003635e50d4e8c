"""Baseline models. :class:`PoissonGLM`: a coupled per-neuron Poisson GLM (scikit-learn's PoissonRegressor).

For each neuron ``i`` and bin ``t`` (log link)::

    log E[y_i(t)] = b_i + sum_j W_ij h_j(t) + sum_k beta_ik x_k(t)

with ``h_j`` the exponentially filtered past counts of every neuron (self included: ``W_ii`` is the
spike-history term) and ``x`` the aligned behaviour. Fitted on the train split; when ``alpha`` is a list, the
L2 strength with the best validation log-likelihood is kept and the model refitted on train.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr
from scipy.special import gammaln

from brainpipe._docs import fill_doc
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import InputError
from brainpipe.models.base import Estimator
from brainpipe.simulate.glm_network import exp_history


def poisson_log_likelihood(counts: np.ndarray, mean: np.ndarray) -> float:
    """Total Poisson log-likelihood (nats) of ``counts`` under per-bin means ``mean`` (same shape).

    Parameters
    ----------
    counts : numpy.ndarray
        Observed counts.
    mean : numpy.ndarray
        Expected counts, same shape (floored at 1e-12).

    Returns
    -------
    float
        ``sum(counts * log(mean) - mean - log(counts!))``.
    """
    mean = np.maximum(mean, 1e-12)
    return float(np.sum(counts * np.log(mean) - mean - gammaln(counts + 1.0)))


class PoissonGLM(Estimator):
    """Coupled Poisson GLM, one independent regression per neuron (scikit-learn's ``PoissonRegressor``).

    Parameters
    ----------
    history_tau_s : float, default 0.02
        Time constant of the exponential spike-history/coupling basis, in seconds.
    alpha : float or sequence of float, default 1e-4
        L2 strength, or a list of strengths to choose from on the validation split.
    use_behaviour : bool, default True
        Include the dataset's behaviour variables as covariates.
    max_iter : int, default 300
        L-BFGS iterations per neuron.

    Attributes
    ----------
    coupling_ : numpy.ndarray
        (unit_post, unit_pre) coupling weights; the diagonal is the spike-history term.
    intercept_ : numpy.ndarray
        (unit,) log mean count per bin.
    behaviour_weight_ : numpy.ndarray
        (unit, behaviour_var) behaviour weights.
    alpha_ : float
        The L2 strength kept.
    bin_width_s_ : float
        The bin width of the fitted data.
    units_ : numpy.ndarray
        The unit names, in order.
    behaviour_vars_ : numpy.ndarray
        The behaviour variables used.
    val_scores_ : dict
        Validation log-likelihood per spike of each strength tried (when ``alpha`` is a list).

    Examples
    --------
    >>> from brainpipe.models import PoissonGLM
    >>> from brainpipe.preprocess import bin_spikes
    >>> from brainpipe.simulate import simulate
    >>> sim = simulate("poisson_glm_network", {"n_neurons": 5, "duration_s": 60}, seed=0)
    >>> counts = bin_spikes(sim.data, bin_width_s=0.01)
    >>> glm = PoissonGLM(history_tau_s=0.02).fit(counts)
    >>> glm.coupling_.shape
    (5, 5)
    >>> round(float(glm.score(counts, split="test")), 1)  # held-out log-likelihood per spike, in nats
    -4.0
    >>> path = glm.save("glm.nc")                   # a model_fit netCDF file, no pickle
    >>> PoissonGLM.load("glm.nc").units_.tolist() == glm.units_.tolist()
    True
    """

    model_name = "poisson_glm"

    def __init__(
        self,
        history_tau_s: float = 0.02,
        alpha: float | Sequence[float] = 1e-4,
        use_behaviour: bool = True,
        max_iter: int = 300,
    ):
        self.history_tau_s = history_tau_s
        self.alpha = alpha
        self.use_behaviour = use_behaviour
        self.max_iter = max_iter

    def _check_params(self) -> None:
        alphas = np.atleast_1d(np.asarray(self.alpha, dtype=float))
        if alphas.size == 0 or not np.all(alphas >= 0):
            raise self._param_error("alpha", "must be >= 0 (or a non-empty list of such values)")
        if not self.history_tau_s > 0:
            raise self._param_error("history_tau_s", "must be > 0")
        if int(self.max_iter) < 1:
            raise self._param_error("max_iter", "must be >= 1")

    # -- design ------------------------------------------------------------------------------------------
    def _design(self, ds: xr.Dataset) -> np.ndarray:
        counts = np.asarray(ds["counts"].values, dtype=np.float64)
        X = exp_history(counts, float(ds.attrs["bin_width_s"]), self.history_tau_s)
        if self.use_behaviour and "behaviour" in ds:
            X = np.hstack([X, np.asarray(ds["behaviour"].values, dtype=np.float64)])
        return X

    def _fit_one(self, X: np.ndarray, y: np.ndarray, alpha: float) -> tuple[float, np.ndarray]:
        from sklearn.linear_model import PoissonRegressor

        if y.sum() == 0:  # a silent unit: rate floor, no coupling
            return float(np.log(1e-6)), np.zeros(X.shape[1])
        reg = PoissonRegressor(alpha=alpha, max_iter=self.max_iter, tol=1e-6)
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # ConvergenceWarning on near-silent units: the fit is still usable
            reg.fit(X, y)
        return float(reg.intercept_), reg.coef_.copy()

    def _fit_all(self, X: np.ndarray, Y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self._fit_one(X, Y[:, i], alpha) for i in range(Y.shape[1])]
        return np.array([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    @fill_doc
    def fit(self, ds: xr.Dataset) -> PoissonGLM:
        """Fit on the train split of a ``spike_counts`` dataset.

        Parameters
        ----------
        %(counts_ds)s

        Returns
        -------
        PoissonGLM
            ``self``, fitted.
        """
        self._check_params()
        if "counts" not in ds or "split" not in ds:
            raise InputError("PoissonGLM.fit needs a spike_counts dataset (variables 'counts' and 'split')")
        T, N = ds["counts"].shape
        K = ds.sizes.get("behaviour_var", 0) if self.use_behaviour else 0
        # the design (history and behaviour), the counts, and the solver's copies of the design, float64
        self._check_memory(8.0 * T * (4 * (N + K) + N), "bins x (units + behaviour variables)")
        X = self._design(ds)
        Y = np.asarray(ds["counts"].values, dtype=np.float64)
        split = ds["split"].values
        tr, va = split == SPLIT_FLAGS["train"], split == SPLIT_FLAGS["validation"]
        alphas = [float(a) for a in np.atleast_1d(self.alpha)]
        self.val_scores_ = {}
        if len(alphas) > 1 and va.any():
            for a in alphas:
                b, w = self._fit_all(X[tr], Y[tr], a)
                self.val_scores_[a] = poisson_log_likelihood(Y[va], np.exp(b + X[va] @ w.T)) / max(
                    Y[va].sum(), 1
                )
            best = max(self.val_scores_, key=self.val_scores_.get)
        else:
            best = alphas[0]
        self.alpha_ = best
        self.intercept_, W = self._fit_all(X[tr], Y[tr], best)
        n = Y.shape[1]
        self.coupling_ = W[:, :n]
        self.behaviour_weight_ = W[:, n:]
        self.bin_width_s_ = float(ds.attrs["bin_width_s"])
        self.units_ = np.asarray(ds["unit"].values).astype(str)
        use_beh = self.use_behaviour and "behaviour" in ds
        self.behaviour_vars_ = (
            np.asarray(ds["behaviour_var"].values).astype(str) if use_beh else np.array([], str)
        )
        return self

    # -- prediction and scoring -------------------------------------------------------------------------
    @fill_doc
    def predict(self, ds: xr.Dataset) -> np.ndarray:
        """Expected counts per bin, (time, unit), for every bin of ``ds``.

        Parameters
        ----------
        %(counts_ds)s
            Same units (in the same order) and behaviour variables as the fitted data.

        Returns
        -------
        numpy.ndarray
            (time, unit) expected counts.
        """
        self._check_fitted()
        if "unit" in ds.coords and not np.array_equal(np.asarray(ds["unit"].values).astype(str), self.units_):
            raise InputError(
                f"dataset units ({', '.join(np.asarray(ds['unit'].values).astype(str)[:5])}, ...) differ from the "
                f"units the model was fitted on ({', '.join(self.units_[:5])}, ...); same units in the same order are needed"
            )
        X = self._design(ds)
        W = np.hstack([self.coupling_, self.behaviour_weight_])
        if X.shape[1] != W.shape[1]:
            raise InputError(
                f"dataset has {X.shape[1]} covariates, the model was fitted with {W.shape[1]} "
                "(same units and behaviour variables are needed)"
            )
        return np.exp(np.clip(self.intercept_ + X @ W.T, -50, 50))

    @fill_doc
    def score(self, ds: xr.Dataset, split: str = "test") -> float:
        """Log-likelihood per spike (nats) on one split.

        Parameters
        ----------
        %(counts_ds)s
        %(split)s

        Returns
        -------
        float
            The Poisson log-likelihood of the split's counts divided by its number of spikes (higher is better).
        """
        sel = ds["split"].values == SPLIT_FLAGS[split]
        y = np.asarray(ds["counts"].values, dtype=np.float64)[sel]
        return poisson_log_likelihood(y, self.predict(ds)[sel]) / max(y.sum(), 1.0)

    # -- (de)serialisation: a model_fit dataset, no pickle ----------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """The fit as a ``model_fit`` dataset (role fit).

        Returns
        -------
        xarray.Dataset
            ``coupling``, ``log_baseline_rate`` (log Hz) and ``behaviour_weight``; the hyperparameters in its attrs.
        """
        self._check_fitted()
        units = self.units_
        return xr.Dataset(
            {
                "coupling": (("unit_post", "unit_pre"), self.coupling_, {"long_name": "coupling weight"}),
                "log_baseline_rate": (
                    "unit_post",
                    self.intercept_ - np.log(self.bin_width_s_),
                    {"units": "log(Hz)", "long_name": "log baseline rate"},
                ),
                "behaviour_weight": (("unit_post", "behaviour_var"), self.behaviour_weight_),
            },
            coords={"unit_post": units, "unit_pre": units, "behaviour_var": self.behaviour_vars_},
            attrs={
                "model": "poisson_glm",
                "role": "fit",
                "link": "exp",
                "history_tau_s": float(self.history_tau_s),
                "bin_width_s": self.bin_width_s_,
                "alpha": float(self.alpha_),
                "use_behaviour": int(bool(self.use_behaviour)),
                "max_iter": int(self.max_iter),
            },
        )

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> PoissonGLM:
        """Rebuild a fitted model from :meth:`to_dataset` (or a planted truth with the same variables).

        Parameters
        ----------
        ds : xarray.Dataset
            A ``model_fit`` dataset with ``coupling``, ``log_baseline_rate`` and ``behaviour_weight``, and
            ``history_tau_s`` and ``bin_width_s`` (or ``dt_s``) in its attrs.

        Returns
        -------
        PoissonGLM
            The fitted model.
        """
        bw = float(ds.attrs.get("bin_width_s", ds.attrs.get("dt_s")))
        m = cls(history_tau_s=float(ds.attrs["history_tau_s"]), alpha=float(ds.attrs.get("alpha", 0.0)))
        m.use_behaviour = ds.sizes.get("behaviour_var", 0) > 0
        m.alpha_ = m.alpha
        m.bin_width_s_ = bw
        m.coupling_ = np.asarray(ds["coupling"].values, dtype=np.float64)
        m.intercept_ = np.asarray(ds["log_baseline_rate"].values, dtype=np.float64) + np.log(bw)
        m.behaviour_weight_ = np.asarray(ds["behaviour_weight"].values, dtype=np.float64).reshape(
            len(m.intercept_), -1
        )
        m.units_ = np.asarray(ds["unit_post"].values).astype(str)
        m.behaviour_vars_ = (
            np.asarray(ds["behaviour_var"].values).astype(str) if "behaviour_var" in ds else np.array([])
        )
        return m
