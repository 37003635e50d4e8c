"""The switching GLM estimator: initialisation, generalised EM with restarts and checkpoints, inference on data
(log-likelihood, posterior and Viterbi states) and saving as a ``model_fit`` dataset (the model is described in
:mod:`brainpipe.models.switching_glm`)."""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import torch
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import InputError
from brainpipe.models import hmm
from brainpipe.models.base import Estimator
from brainpipe.models.switching_glm.data import DATA_DTYPES, Batch, SequenceData
from brainpipe.models.switching_glm.mstep import LINKS, M_STEPS, EmissionMSteps
from brainpipe.models.switching_glm.priors import PRIORS, CouplingPriors
from brainpipe.models.switching_glm.serialise import FitDatasets
from brainpipe.training.checkpoint import Checkpointer, fingerprint_of

log = logging.getLogger("brainpipe.models.switching_glm")


def _to_device(obj, dev: torch.device):
    if isinstance(obj, torch.Tensor):
        return obj.to(dev)
    if isinstance(obj, dict):
        return {k: _to_device(v, dev) for k, v in obj.items()}
    return obj


def _ckpt_state(restart: int, phase: int, p: dict, objs, lls, best) -> dict:
    """What a resumed fit needs: where it was (restart, phase), the parameters there, the objective so far, and
    the best restart so far (tensors, floats and dicts only: loaded without pickle)."""
    return {
        "cursor": {"restart": restart, "phase": phase},
        "p": {k: v.detach() for k, v in p.items()},
        "objs": [float(x) for x in objs],
        "lls": [float(x) for x in lls],
        "best": best,
    }


@fill_doc
class SwitchingGLM(SequenceData, CouplingPriors, EmissionMSteps, FitDatasets, Estimator):
    """Switching Poisson GLM (HMM-GLM) with a ``none``, ``gaussian`` or ``onehot`` prior.

    See :mod:`brainpipe.models.switching_glm` for the model, the priors and the EM.

    Parameters
    ----------
    n_states : int, default 3
        Number of hidden states.
    prior : {"none", "gaussian", "onehot"}
        Prior on the per-state couplings: L2 only, Gaussian around a learned shared mean, or a per-pair categorical
        over inh/none/exc shared across states.
    link : {"softplus", "sigmoid", "exp"}
        Link function.
    history_bins : int, default 5
        Length of the exponential spike-history basis, in bins.
    history_decay : float, default 1.0
        Decay of the history basis.
    use_covariates : bool, default True
        Include the behaviour and stimulus variables (z-scored on the train split).
    n_iter : int, default 100
        Most EM iterations.
    tol : float, default 1e-6
        Stop when the objective changes by less than this (relative).
    m_step_iter : int, default 20
        L-BFGS iterations per M-step (``m_step="lbfgs"``, and the one-hot polish phase).
    l2 : float, default 1e-3
        L2 penalty on biases, covariate weights and (prior ``none``) couplings.
    gaussian_sigma : float, default 0.5
        Prior SD of the per-state weights around their shared mean (prior ``gaussian``).
    onehot_prior_mean : tuple of float, default (1/3, 1/3, 1/3)
        Mean of the Dirichlet hyperprior on the shared per-pair categorical (inh, none, exc).
    onehot_prior_concentration : float, default 1.0
        Concentration of that hyperprior (pseudo-counts added to the states' class posteriors).
    onehot_spike_sd : float, default 0.1
        SD of the "none" class's weights (the spike at 0 of the one-hot prior's spike-and-slab mixture; the
        slab's mean and SD are learned): the one-hot prior's strength.
    m_step_min_weight : float, default 1e-6
        A bin whose posterior weight for a state is below this is left out of that state's M-step (0: every bin).
    adjacency_threshold : float, optional
        ``|weight|`` above which a free weight (prior ``none``/``gaussian``) counts as a connection; None (the
        default): the one-hot prior's class mixture fitted to the fitted weights decides.
    transition_pseudocount : float, default 1.0
        Dirichlet pseudo-count on transitions (1: maximum likelihood).
    sticky_kappa : float, default 0.0
        Extra Dirichlet mass on each self-transition: row ``i`` of the transition matrix has the prior
        ``Dirichlet(c + kappa * e_i)`` (``c``: ``transition_pseudocount``), the sticky HMM of Fox et al. 2011
        ("A sticky HDP-HMM with application to speaker diarization", Ann. Appl. Stat. 5(2A):1020-1056), here with
        a finite number of states and its MAP (not the full posterior). ``kappa`` is in transitions: the M-step
        adds it to each row's expected self-transition count (``~ n_bins / n_states`` per row) and the objective
        the log prior ``kappa * sum_i log A_ii``, so states that persist are preferred when ``kappa`` is a sizeable
        fraction of a row's count. 0 (the default): no stickiness, the model without it exactly.
    init_noise : float, default 0.5
        Noise added to the single-state GLM weights to initialise each state.
    n_restarts : int, default 1
        Random restarts; the best training objective is kept.
    %(seed)s
    %(device)s
    data_dtype : {"float32", "float64"}
        dtype of the per-bin data term; parameters, sums over bins and the forward-backward stay float64 on CPU.
    m_step : {"newton", "lbfgs"}
        Emission M-step: damped Newton per (state, neuron), or L-BFGS.
    newton_iter : int, default 3
        Newton steps per M-step.
    hessian_rows : int, default 1024
        Bins per state the Newton M-step estimates the Fisher information from.

    Attributes
    ----------
    weights_ : numpy.ndarray
        (S, N, N) per-state couplings (post x pre; the diagonal is the self-history weight).
    bias_ : numpy.ndarray
        (S, N) per-state biases.
    cov_weights_ : numpy.ndarray
        (S, N, C) per-state covariate weights.
    log_A_, log_pi_ : numpy.ndarray
        (S, S) log transition matrix and (S,) log initial distribution.
    prior_mean_ : numpy.ndarray
        (N, N) shared mean of the couplings (prior ``gaussian``).
    prior_probs_ : numpy.ndarray
        (N, N, 3) per-pair inh/none/exc probabilities (prior ``onehot``).
    adjacency_ : numpy.ndarray
        (S, N, N) structure in {-1, 0, 1}.
    objective_, log_likelihood_ : numpy.ndarray
        The MAP objective and the training log-likelihood per EM iteration.
    n_iter_ : int
        EM iterations run.
    units_ : numpy.ndarray
        The unit names, in order.
    covariate_names_ : list of str
        The covariates used.
    cov_mean_, cov_std_ : numpy.ndarray
        The covariates' train mean and SD (for z-scoring).
    bin_width_s_ : float
        The bin width of the fitted data.

    Examples
    --------
    >>> from brainpipe.models import SwitchingGLM
    >>> from brainpipe.preprocess import bin_spikes
    >>> from brainpipe.simulate import simulate
    >>> params = {"n_neurons": 5, "n_states": 2, "n_sequences": 6, "n_test_sequences": 2, "sequence_length": 300}
    >>> sim = simulate("switching_glm_network", params, seed=0)
    >>> counts = bin_spikes(sim.data, bin_width_s=0.02)
    >>> model = SwitchingGLM(n_states=2, prior="gaussian", n_iter=20, device="cpu")
    >>> model = model.fit(counts)  # doctest: +SKIP
    >>> model.weights_.shape  # doctest: +SKIP
    (2, 5, 5)
    >>> posterior, viterbi = model.decode(counts)  # doctest: +SKIP
    >>> bits = model.score(counts, split="test")  # held-out log-likelihood per spike (nats)  # doctest: +SKIP
    """

    def __init__(
        self,
        n_states: int = 3,
        prior: str = "none",
        link: str = "softplus",
        history_bins: int = 5,
        history_decay: float = 1.0,
        use_covariates: bool = True,
        n_iter: int = 100,
        tol: float = 1e-6,
        m_step_iter: int = 20,
        l2: float = 1e-3,
        gaussian_sigma: float = 0.5,
        onehot_prior_mean: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3),
        onehot_prior_concentration: float = 1.0,
        onehot_spike_sd: float = 0.1,
        m_step_min_weight: float = 1e-6,
        adjacency_threshold: float | None = None,
        transition_pseudocount: float = 1.0,
        sticky_kappa: float = 0.0,
        init_noise: float = 0.5,
        n_restarts: int = 1,
        seed: int = 0,
        device: str = "auto",
        data_dtype: str = "float32",
        m_step: str = "newton",
        newton_iter: int = 3,
        hessian_rows: int = 1024,
    ):
        self.n_states = n_states
        self.prior = prior
        self.link = link
        self.history_bins = history_bins
        self.history_decay = history_decay
        self.use_covariates = use_covariates
        self.n_iter = n_iter
        self.tol = tol
        self.m_step_iter = m_step_iter
        self.l2 = l2
        self.gaussian_sigma = gaussian_sigma
        self.onehot_prior_mean = onehot_prior_mean
        self.onehot_prior_concentration = onehot_prior_concentration
        self.onehot_spike_sd = onehot_spike_sd
        self.m_step_min_weight = m_step_min_weight
        self.adjacency_threshold = adjacency_threshold
        self.transition_pseudocount = transition_pseudocount
        self.sticky_kappa = sticky_kappa
        self.init_noise = init_noise
        self.n_restarts = n_restarts
        self.seed = seed
        self.device = device
        self.data_dtype = data_dtype
        self.m_step = m_step
        self.newton_iter = newton_iter
        self.hessian_rows = hessian_rows

    model_name = "switching_glm"

    def _check_params(self) -> None:
        for name, allowed in (
            ("prior", PRIORS),
            ("link", LINKS),
            ("data_dtype", DATA_DTYPES),
            ("m_step", M_STEPS),
        ):
            self._check_choice(name, tuple(allowed))
        for name in ("n_states", "history_bins", "n_restarts", "hessian_rows", "newton_iter"):
            if int(getattr(self, name)) < 1:
                raise self._param_error(name, "must be >= 1")
        mean = np.asarray(self.onehot_prior_mean, dtype=float)
        if mean.shape != (3,) or np.any(mean <= 0):
            raise self._param_error("onehot_prior_mean", "must be 3 positive probabilities (inh, none, exc)")
        if not float(self.onehot_spike_sd) > 0:
            raise self._param_error("onehot_spike_sd", "must be > 0")
        try:
            kappa = float(self.sticky_kappa)
        except (TypeError, ValueError):
            kappa = math.nan
        if not 0 <= kappa < math.inf:
            raise self._param_error(
                "sticky_kappa", "must be a finite number >= 0 (pseudo-counts of transitions)"
            )

    def _init_params(
        self, data: Batch, rng: np.random.Generator, glm: dict | None
    ) -> dict[str, torch.Tensor]:
        S, N, C = self.n_states, data.counts.shape[-1], data.covariates.shape[-1]
        dev = data.counts.device
        dt = self._dtype(dev)
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=dt, device=dev)  # noqa: E731
        W0, b0, U0 = glm["W"], glm["b"], glm["U"]
        noise = rng.normal(0, self.init_noise, (S, N, N)) if S > 1 else np.zeros((1, N, N))
        W = W0[None] + noise
        p = {
            "b": as_t(b0[None] + (rng.normal(0, 0.1, (S, N)) if S > 1 else 0.0)),
            "U": as_t(np.repeat(U0[None], S, 0) + (rng.normal(0, 0.1, (S, N, C)) if S > 1 else 0.0)),
        }
        stay = 0.95 if S > 1 else 1.0
        A = np.full((S, S), (1 - stay) / max(S - 1, 1))
        np.fill_diagonal(A, stay)
        p["log_A"], p["log_pi"] = as_t(np.log(A)), as_t(np.full(S, -math.log(S)))
        p["W"] = as_t(W)
        if self.prior == "gaussian":
            p["W_bar"] = as_t(W.mean(0) * ~np.eye(N, dtype=bool))
        elif self.prior == "onehot":
            self._init_mixture(p, p["W"])
        return p

    def _objective(self, p, data: Batch, hard: bool = True) -> tuple[float, float, tuple]:
        with torch.no_grad():
            W = self._weights(p, hard=hard, tau=None, gen=None)
            ll = self._log_lik(p, W, data)
            log_norm, gamma, xi = hmm.forward_backward(ll, p["log_pi"], p["log_A"], data.mask)
            total = float(log_norm.sum())
            obj = total + float(self._log_prior(p, W)) + float(self._transition_log_prior(p["log_A"]))
        return obj, total, (log_norm, gamma, xi)

    def _em(
        self,
        p: dict,
        data: Batch,
        n_iter: int,
        hard: bool,
        names: list[str],
        objs: list[float] | None = None,
        lls: list[float] | None = None,
        tick=None,
    ) -> tuple[list[float], list[float]]:
        """EM iterations from ``p`` (updated in place). ``objs``/``lls`` continue a run that was checkpointed
        (the objective of ``p`` is then already their last entry); ``tick()`` is called after every iteration."""
        objs, lls = list(objs or []), list(lls or [])
        obj, total, post = self._objective(p, data, hard)
        if not objs:
            objs.append(obj)
            lls.append(total)
        elif len(objs) > 1 and abs(objs[-1] - objs[-2]) < self.tol * abs(objs[-2]):
            return objs, lls  # it had converged just before the checkpoint
        for _ in range(n_iter - (len(objs) - 1)):
            log_norm, gamma, xi = post
            if self.n_states > 1:
                p["log_A"], p["log_pi"] = self._transitions_map(gamma, xi)
            self._m_step(p, names, data, gamma, hard)
            self._update_shared_prior(p)
            obj, total, post = self._objective(p, data, hard)
            objs.append(obj)
            lls.append(total)
            if tick is not None:
                tick(objs, lls)
            if abs(objs[-1] - objs[-2]) < self.tol * abs(objs[-2]):
                break
        return objs, lls

    def _single_glm(self, data: Batch) -> dict[str, np.ndarray]:
        """Single-state GLM fit (the initialisation): same emission model, one state, L-BFGS."""
        single = SwitchingGLM(
            n_states=1,
            prior="none",
            link=self.link,
            history_bins=self.history_bins,
            history_decay=self.history_decay,
            m_step_iter=100,
            newton_iter=50,
            l2=self.l2,
            device=self.device,
            data_dtype=self.data_dtype,
            m_step=self.m_step,
            hessian_rows=self.hessian_rows,
        )
        N, C = data.counts.shape[-1], data.covariates.shape[-1]
        rate = (data.counts.sum((0, 1), dtype=self._dtype(data.counts.device)) / data.n_bins).clamp_min(1e-3)
        inv = {
            "softplus": lambda r: torch.log(torch.expm1(r)),
            "exp": torch.log,
            "sigmoid": lambda r: torch.logit(r.clamp_max(0.99)),
        }[self.link]
        zero = torch.zeros
        p = {
            "b": inv(rate)[None],
            "U": zero(1, N, C, dtype=rate.dtype, device=rate.device),
            "W": zero(1, N, N, dtype=rate.dtype, device=rate.device),
        }
        gamma = data.mask[:, :, None].to(rate.dtype)
        single._m_step(p, ["b", "U", "W"], data, gamma, hard=True)
        return {k: p[k][0].cpu().numpy() for k in ("W", "b", "U")}

    @fill_doc
    def fit(
        self,
        ds: xr.Dataset,
        checkpoint: str | os.PathLike | None = None,
        fingerprint: dict | None = None,
        checkpoint_every_s: float = 60.0,
    ) -> SwitchingGLM:
        """Fit on the train split of a ``spike_counts`` dataset (sequences = contiguous train segments).

        With ``checkpoint`` (a file path), the fit is checkpointed every ``checkpoint_every_s`` seconds, between
        phases and on SIGTERM (then :class:`~brainpipe.training.Preempted` is raised); a fit started again with the
        same path, hyperparameters and ``fingerprint`` (e.g. input hashes) resumes where it stopped and ends with
        the same parameters as an uninterrupted fit.

        Parameters
        ----------
        %(counts_ds)s
        %(checkpoint)s
        %(fingerprint)s
        checkpoint_every_s : float, default 60.0
            Seconds between periodic checkpoints.

        Returns
        -------
        SwitchingGLM
            ``self``, fitted.
        """
        self._check_params()
        if "counts" not in ds or "split" not in ds:
            raise InputError("SwitchingGLM needs a spike_counts dataset (variables 'counts' and 'split')")
        X, names = self._covariate_matrix(ds)
        self._check_memory(*self._memory_estimate(ds.sizes["time"], ds.sizes["unit"], X.shape[1]))
        train = ds["split"].values == SPLIT_FLAGS["train"]
        if X.shape[1]:
            self.cov_mean_ = X[train].mean(0)
            self.cov_std_ = X[train].std(0) + 1e-12
        else:
            self.cov_mean_, self.cov_std_ = np.zeros(0), np.ones(0)
        self.covariate_names_ = names
        self.units_ = np.asarray(ds["unit"].values).astype(str)
        self.bin_width_s_ = float(ds.attrs["bin_width_s"])
        data = self.batch(ds, "train")
        if data.n_bins < 10 * self.n_states:
            raise InputError(
                f"{data.n_bins} training bins cannot support {self.n_states} states; use fewer states or more data"
            )
        torch.manual_seed(self.seed)
        glm = self._single_glm(data)
        ckpt = Checkpointer(
            checkpoint,
            fingerprint_of(
                {"run": dict(fingerprint or {}), "params": self._fingerprint_params(), "n_bins": data.n_bins}
            ),
            every_s=checkpoint_every_s,
        )
        dev = data.counts.device
        saved = ckpt.load()
        cur = saved["cursor"] if saved else {"restart": 0, "phase": 0}
        best = _to_device(saved["best"], dev) if saved else None
        phases = ("em",)
        with ckpt.guard():
            for r in range(cur["restart"], self.n_restarts):
                rng = np.random.default_rng([self.seed, r])
                if saved is not None and r == cur["restart"]:  # resume inside this restart
                    p, objs, lls = _to_device(saved["p"], dev), saved["objs"], saved["lls"]
                    first = cur["phase"]
                else:
                    p, objs, lls, first = self._init_params(data, rng, glm), [], [], 0
                for k in range(first, len(phases)):

                    def tick(o, ll, k=k, p=p, r=r, b=best):
                        ckpt.maybe_save(lambda: _ckpt_state(r, k, p, o, ll, b))

                    objs, lls = self._run_phase(phases[k], p, data, r, objs, lls, tick)
                    if k + 1 < len(phases):
                        objs, lls = [], []
                        ckpt.maybe_save(
                            lambda k=k, p=p, r=r, b=best: _ckpt_state(r, k + 1, p, [], [], b), force=True
                        )
                log.info("restart %d: objective %.3f after %d EM iterations", r, objs[-1], len(objs) - 1)
                if best is None or objs[-1] > best["objs"][-1]:
                    best = {"p": p, "objs": objs, "lls": lls}
                if r + 1 < self.n_restarts:
                    ckpt.maybe_save(lambda r=r, b=best: _ckpt_state(r + 1, 0, {}, [], [], b), force=True)
        self.checkpoint_saves_ = ckpt.saves
        p, objs, lls = best["p"], best["objs"], best["lls"]
        _, _, (_, gamma, _) = self._objective(p, data, True)
        self._set_fitted(p, self._laplace_weights(p, data, gamma))
        self.objective_, self.log_likelihood_ = np.array(objs), np.array(lls)
        self.n_iter_ = len(objs) - 1
        self.train_log_likelihood_ = lls[-1]
        return self

    def _run_phase(
        self, phase: str, p: dict, data: Batch, r: int, objs, lls, tick
    ) -> tuple[list[float], list[float]]:
        """One phase of a restart (every prior has one: "em"), updating ``p`` in place."""
        return self._em(p, data, self.n_iter, True, self._trainable(p), objs, lls, tick)

    def _set_fitted(self, p: dict, laplace: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Store the fitted parameters ``p`` and read the structure out: each weight's class from the class
        mixture (the one-hot prior's own; a post-hoc one for free weights) applied to ``laplace`` (the data's
        estimates of the weights and their variances, :meth:`_laplace_weights`), or to the weights themselves."""
        self.params_ = p
        W_hat, var = laplace if laplace is not None else (p["W"], None)
        W = self._weights(p, hard=True, tau=None, gen=None)
        self.weights_ = W.detach().cpu().numpy()
        self.bias_ = p["b"].cpu().numpy()
        self.cov_weights_ = p["U"].cpu().numpy()
        self.log_A_ = p["log_A"].cpu().numpy()
        self.log_pi_ = p["log_pi"].cpu().numpy()
        N = self.weights_.shape[-1]
        off = ~np.eye(N, dtype=bool)
        if self.prior == "onehot" and "q" in p:
            q = self._responsibilities(p, W_hat, var) * torch.as_tensor(off, device=W.device)[..., None]
            classes, probs = q.argmax(-1), self._shared_categorical(q)
            self.adjacency_ = ((classes - 1).cpu().numpy() * off).astype(np.int8)
            self.weights_ = np.where(
                off & (self.adjacency_ == 0), 0.0, self.weights_
            )  # "none" is no coupling
            self.params_ = dict(p, W=torch.as_tensor(self.weights_, dtype=W.dtype, device=W.device))
            self.slab_ = p["slab"].cpu().numpy()
        else:
            classes, probs = self._posthoc_structure(W_hat.detach(), var)
            if self.adjacency_threshold is None:
                self.adjacency_ = ((classes - 1).cpu().numpy() * off).astype(np.int8)
            else:
                thr = self.adjacency_threshold
                self.adjacency_ = (np.sign(self.weights_) * (np.abs(self.weights_) > thr) * off).astype(
                    np.int8
                )
        self.prior_probs_ = probs.cpu().numpy()
        self.shared_adjacency_ = ((self.prior_probs_.argmax(-1) - 1) * off).astype(np.int8)
        if self.prior == "gaussian" and "W_bar" in p:
            self.prior_mean_ = p["W_bar"].cpu().numpy()
        self.shared_mean_ = self.prior_mean_ if self.prior == "gaussian" else self.weights_.mean(0) * off

    def _memory_estimate(self, n_bins: int, n_units: int, n_cov: int) -> tuple[float, str]:
        """Peak bytes of a fit (float64): padded counts, history and covariates with their device copies, the
        per-state data term and posteriors, and the Newton M-step's per-neuron Fisher blocks."""
        S, T, N, D = float(self.n_states), float(n_bins), float(n_units), float(n_units + n_cov + 1)
        data = 4 * T * (2 * N + n_cov)
        states = 6 * T * S * (S + 1) + 3 * S * N * N
        fisher = S * N * D * D if self.m_step == "newton" else 4 * S * N * D
        return 8.0 * (data + states + fisher), "n_states x units^3 (Newton M-step) and bins x units"

    def _fingerprint_params(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params(deep=False).items()}

    def _check_units(self, ds: xr.Dataset) -> None:
        self._check_fitted()
        units = np.asarray(ds["unit"].values).astype(str)
        if units.shape != self.units_.shape or np.any(units != self.units_):
            raise InputError("the dataset's units differ from the ones the switching GLM was fitted on")

    def _ll_batch(self, data: Batch) -> torch.Tensor:
        with torch.no_grad():
            W = self._weights(self.params_, hard=True, tau=None, gen=None)
            return self._log_lik(self.params_, W, data)

    @fill_doc
    def log_likelihood(self, ds: xr.Dataset, split: str = "test") -> float:
        """Marginal log-likelihood (nats) of the sequences of one split (forward algorithm).

        Parameters
        ----------
        %(counts_ds)s
            With the units the model was fitted on.
        %(split)s

        Returns
        -------
        float
            The sum over the split's sequences.
        """
        self._check_units(ds)
        data = self.batch(ds, split)
        with torch.no_grad():
            return float(
                hmm.log_marginal(
                    self._ll_batch(data), self.params_["log_pi"], self.params_["log_A"], data.mask
                ).sum()
            )

    def score(self, ds: xr.Dataset, split: str = "test") -> float:
        """Held-out marginal log-likelihood per spike (nats) of one split: higher is better.

        Parameters
        ----------
        ds : xarray.Dataset
            A ``spike_counts`` dataset with the units the model was fitted on.
        split : {"train", "validation", "test"}
            The split to score.

        Returns
        -------
        float
            :meth:`log_likelihood` divided by the number of spikes in the split.
        """
        n = float(np.asarray(ds["counts"].values)[ds["split"].values == SPLIT_FLAGS[split]].sum())
        return self.log_likelihood(ds, split) / max(n, 1.0)

    @fill_doc
    def decode(self, ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Posterior state probabilities and the Viterbi path for every bin of ``ds``.

        Parameters
        ----------
        %(counts_ds)s
            With the units the model was fitted on; each segment is one sequence.

        Returns
        -------
        posterior : numpy.ndarray
            (n_bins, S) posterior state probabilities.
        viterbi : numpy.ndarray
            (n_bins,) the most likely state path.
        """
        self._check_units(ds)
        data = self.batch(ds, None)
        ll = self._ll_batch(data)
        with torch.no_grad():
            _, gamma, _ = hmm.forward_backward(ll, self.params_["log_pi"], self.params_["log_A"], data.mask)
        path = hmm.viterbi(ll, self.params_["log_pi"], self.params_["log_A"], data.mask)
        n = ds.sizes["time"]
        post = np.zeros((n, self.n_states))
        vit = np.full(n, -1, dtype=np.int64)
        valid = data.index >= 0
        post[data.index[valid]] = gamma.cpu().numpy()[valid]
        vit[data.index[valid]] = path[valid]
        return post, vit
