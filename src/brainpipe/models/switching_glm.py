"""Switching Poisson GLMs (HMM-GLMs) with no prior, a Gaussian prior or a one-hot prior on per-state couplings.

Model, for each sequence (a contiguous segment of bins, see :func:`brainpipe.preprocess.spikes.segments`)::

    z_1 ~ pi,  z_t | z_{t-1} ~ A
    y_{t,n} | z_t = s ~ Poisson(f(b_{s,n} + sum_m W_{s,n<-m} h_{t,m} + sum_c U_{s,n,c} x_{t,c}))

``h`` is the spike history through a fixed exponential basis over ``history_bins`` bins (most recent bin
weighted most; restarted at each sequence start), ``x`` the z-scored covariates (behaviour, stimulus), ``f`` the
link (softplus by default; sigmoid or exp). ``W_{s,n<-n}`` is each neuron's own history weight.

Priors on the off-diagonal couplings ``W_s``:

``none``      only a small L2 penalty (``l2``).
``gaussian``  ``W_s ~ N(W_bar, sigma^2)`` around a learned shared mean ``W_bar`` (the state-constant connectome),
              updated in closed form (the mean over states) after every M-step.
``onehot``    ``W_{s,n<-m} = (a_exc - a_inh) * softplus(u_{s,n<-m})`` with ``a`` one-hot over (inh, none, exc),
              ``a_s ~ Categorical(pi_{n<-m})`` shared across states (``pi`` updated in closed form: the mean of
              the states' category probabilities, under a Dirichlet hyperprior of mean ``onehot_prior_mean`` and
              concentration ``onehot_prior_concentration``). While training, ``a`` is a Gumbel-softmax sample of per-state
              logits (temperature annealed from ``tau_start`` to ``tau_end``) and the loss adds the prior term
              ``-sum q log pi`` and ``entropy_weight * H(q)`` (sharpens ``q`` towards one-hot); then ``a`` is frozen
              to its argmax (pairs whose strength stayed below ``adjacency_threshold`` become "none") and the
              strengths are refitted by exact EM (``polish_iter`` iterations).

Fitting is generalised EM: an exact E-step (:mod:`brainpipe.models.hmm`, batched over sequences, vectorised
over time), closed-form transitions with a Dirichlet pseudo-count, and for the emission parameters a damped Newton
M-step per (state, neuron) with closed-form gradients and a subsampled Fisher information (L-BFGS for the
one-hot parametrisation, Adam during the one-hot relaxation). The per-bin data term runs in ``data_dtype``
(float32 by default) with every sum over bins in float64. For ``none``/``gaussian`` every step raises the MAP objective
(log-likelihood + log prior), which ``objective_`` records per iteration. Initialisation: a single-state GLM,
copied to every state with Gaussian noise (``init_noise``); ``n_restarts`` seeds, best training objective kept.
The one-hot model starts from the fitted no-prior model (its weights set the initial categories and strengths).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import InputError
from brainpipe.models import hmm
from brainpipe.models.base import Estimator
from brainpipe.preprocess.spikes import segments
from brainpipe.simulate.switching_glm import exp_basis
from brainpipe.training.checkpoint import Checkpointer, fingerprint_of
from brainpipe.training.device import resolve_device

log = logging.getLogger("brainpipe.models.switching_glm")
PRIORS = ("none", "gaussian", "onehot")
LINKS = ("softplus", "sigmoid", "exp")  # the rate functions themselves live in _poisson_terms and _fisher_blocks
DATA_DTYPES = {"float32": torch.float32, "float64": torch.float64}
M_STEPS = ("newton", "lbfgs")
MIN_RATE = 1e-10  # floor on the Poisson rate per bin (keeps log(rate) finite)
CHUNK_ELEMENTS = 1 << 19  # bins x (states x neurons) per block of the data term: a few MB, cache-sized
CATEGORIES = ("inh", "none", "exc")


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


@dataclass
class Batch:
    """Sequences padded to a batch: counts/history (B, T, N), covariates (B, T, C), mask (B, T), and the index
    of each (b, t) into the bins of the source dataset (-1 at padding)."""

    counts: torch.Tensor
    history: torch.Tensor
    covariates: torch.Tensor
    mask: torch.Tensor
    index: np.ndarray
    log_factorial: torch.Tensor | None = None  # sum_n log(y!) per bin, (B, T): constant, computed once

    @property
    def n_bins(self) -> int:
        return int(self.mask.sum())


class SwitchingGLM(Estimator):
    """Switching Poisson GLM (HMM-GLM) with a ``none``, ``gaussian`` or ``onehot`` prior; see the module doc.

    Fitted attributes: ``weights_`` (S, N, N), ``bias_`` (S, N), ``cov_weights_`` (S, N, C), ``log_A_`` (S, S),
    ``log_pi_`` (S,), ``prior_mean_`` (N, N; gaussian), ``prior_probs_`` (N, N, 3; onehot), ``adjacency_``
    (S, N, N) in {-1, 0, 1}, ``objective_`` (MAP objective per EM iteration), ``log_likelihood_`` (per
    iteration), ``n_iter_``, ``units_``, ``covariate_names_``, ``cov_mean_``/``cov_std_``, ``bin_width_s_``.
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
        onehot_iter: int = 10,
        onehot_steps: int = 10,
        onehot_lr: float = 0.05,
        tau_start: float = 1.0,
        tau_end: float = 0.2,
        entropy_weight: float = 0.1,
        onehot_prior_mean: tuple[float, float, float] = (0.1, 0.8, 0.1),
        onehot_prior_concentration: float = 1.0,
        polish_iter: int = 30,
        m_step_min_weight: float = 1e-6,
        adjacency_threshold: float = 0.5,
        transition_pseudocount: float = 1.0,
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
        self.onehot_iter = onehot_iter
        self.onehot_steps = onehot_steps
        self.onehot_lr = onehot_lr
        self.tau_start = tau_start
        self.tau_end = tau_end
        self.entropy_weight = entropy_weight
        self.onehot_prior_mean = onehot_prior_mean
        self.onehot_prior_concentration = onehot_prior_concentration
        self.polish_iter = polish_iter
        self.m_step_min_weight = m_step_min_weight
        self.adjacency_threshold = adjacency_threshold
        self.transition_pseudocount = transition_pseudocount
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
        for name, allowed in (("prior", PRIORS), ("link", LINKS), ("data_dtype", DATA_DTYPES), ("m_step", M_STEPS)):
            self._check_choice(name, tuple(allowed))
        for name in ("n_states", "history_bins", "n_restarts", "hessian_rows", "newton_iter"):
            if int(getattr(self, name)) < 1:
                raise self._param_error(name, "must be >= 1")
        mean = np.asarray(self.onehot_prior_mean, dtype=float)
        if mean.shape != (3,) or np.any(mean <= 0):
            raise self._param_error("onehot_prior_mean", "must be 3 positive probabilities (inh, none, exc)")

    # ------------------------------------------------------------------ data
    def _dtype(self, device: torch.device) -> torch.dtype:
        """Parameters, sums over bins and the forward-backward: float64 on CPU, float32 on a GPU (unless the data
        term is float64 too)."""
        return torch.float64 if device.type == "cpu" or self.data_dtype == "float64" else torch.float32

    def _data_dtype(self) -> torch.dtype:
        """The per-bin data term (counts, history features, linear predictors, rates): ``data_dtype``. float32 (the
        default) halves memory traffic and doubles SIMD width; every sum over bins is accumulated in the
        parameters' dtype, so objectives stay accurate to about 1e-7 relative."""
        return DATA_DTYPES[self.data_dtype]

    def _covariate_matrix(self, ds: xr.Dataset) -> tuple[np.ndarray, list[str]]:
        cols, names = [], []
        if self.use_covariates:
            for var, dim in (("behaviour", "behaviour_var"), ("stimulus", "stimulus_var")):
                if var in ds:
                    cols.append(np.asarray(ds[var].values, dtype=np.float64))
                    names += [f"{var}:{v}" for v in np.asarray(ds[dim].values).astype(str)]
        if not cols:
            return np.zeros((ds.sizes["time"], 0)), []
        return np.hstack(cols), names

    def batch(self, ds: xr.Dataset, split: str | None = None) -> Batch:
        """Cut a ``spike_counts`` dataset into sequences (one per segment) of the given split, padded."""
        if "counts" not in ds or "split" not in ds:
            raise InputError("SwitchingGLM needs a spike_counts dataset (variables 'counts' and 'split')")
        device = resolve_device(self.device)
        dtype = self._dtype(device)
        Y = np.asarray(ds["counts"].values, dtype=np.float64)
        X, _ = self._covariate_matrix(ds)
        if hasattr(self, "cov_mean_") and X.shape[1]:
            X = (X - self.cov_mean_) / self.cov_std_
        seg = segments(ds)
        keep = np.ones(len(seg), bool) if split is None else ds["split"].values == SPLIT_FLAGS[split]
        ids = np.unique(seg[keep])
        if ids.size == 0:
            raise InputError(f"no bins in split {split!r}: nothing to fit or score")
        lengths = np.array([(seg == i).sum() for i in ids])
        B, T, N, C = ids.size, int(lengths.max()), Y.shape[1], X.shape[1]
        phi = exp_basis(self.history_bins, self.history_decay)
        counts = np.zeros((B, T, N))
        hist = np.zeros((B, T, N))
        cov = np.zeros((B, T, C))
        mask = np.zeros((B, T), bool)
        index = np.full((B, T), -1, dtype=np.int64)
        for b, i in enumerate(ids):
            rows = np.nonzero(seg == i)[0]
            n = rows.size
            counts[b, :n] = Y[rows]
            for k, w in enumerate(phi):
                if k + 1 < n:
                    hist[b, k + 1 : n] += w * Y[rows[: n - k - 1]]
            cov[b, :n] = X[rows]
            mask[b, :n] = True
            index[b, :n] = rows
        as_t = lambda a: torch.as_tensor(a, dtype=self._data_dtype(), device=device)  # noqa: E731
        log_factorial = torch.lgamma(torch.as_tensor(counts, dtype=dtype, device=device) + 1).sum(-1)
        return Batch(as_t(counts), as_t(hist), as_t(cov), torch.as_tensor(mask, device=device), index, log_factorial)

    # ------------------------------------------------------------------ model pieces
    def _weights(self, p: dict[str, torch.Tensor], hard: bool, tau: float | None, gen: torch.Generator | None):
        """Per-state coupling matrices (S, N, N) from the parameters (one-hot: relaxed or hard)."""
        if self.prior != "onehot" or "logits" not in p:  # free weights, or a one-hot fit loaded from disk
            return p["W"]
        logits = p["logits"]
        if hard:
            a = F.one_hot(logits.argmax(-1), 3).to(logits.dtype)
        else:
            g = -torch.log(-torch.log(torch.rand(logits.shape, generator=gen, dtype=logits.dtype).to(logits.device).clamp_min(1e-20)))
            a = torch.softmax((logits + g) / tau, dim=-1)
        W = (a[..., 2] - a[..., 0]) * F.softplus(p["strength"])
        eye = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
        return W * (1 - eye) + torch.diag_embed(p["self"])

    def _poisson_terms(self, eta: torch.Tensor, y: torch.Tensor, grad: bool):
        """Per-element Poisson log-likelihood ``y log r - r`` (without log y!) of the linear predictors ``eta``, with
        ``r = max(f(eta), MIN_RATE)``, and with ``grad`` its derivative with respect to ``eta`` (else None).

        Works in place on ``eta`` (which it consumes) with as few passes over the block as the link allows; ``y``
        broadcasts against ``eta`` (e.g. (rows, 1, N) against (rows, S, N)).
        """
        if self.link == "exp":
            term = torch.mul(eta.clamp_min(math.log(MIN_RATE)), y)
            rate = eta.exp_()
            d = torch.sub(y, rate) if grad else None
            return term.sub_(rate.clamp_min_(MIN_RATE)), d
        if self.link == "sigmoid":
            rate = eta.sigmoid_().clamp_min_(MIN_RATE)  # f'(eta) = f (1 - f)
            term = torch.log(rate)
            d = None
            if grad:
                d = torch.sub(y, rate)  # (y / f - 1) f (1 - f) = (y - f)(1 - f) = d - d f
                d.addcmul_(d, rate, value=-1.0)
            return term.mul_(y).sub_(rate), d
        rate = F.softplus(eta).clamp_min_(MIN_RATE)  # softplus: f'(eta) = sigmoid(eta)
        term = torch.log(rate)
        d = None
        if grad:
            d = torch.div(y, rate).sub_(1.0).mul_(eta.sigmoid_())
        return term.mul_(y).sub_(rate), d

    @torch.no_grad()
    def _log_lik(self, p, W, data: Batch) -> torch.Tensor:
        """Emission log-likelihood per bin and state, (B, T, S) in the parameters' dtype; zero at padding.

        Computed block by block over the bins: one matrix product gives every state's linear predictors of a
        block, (rows, S x N), in the data dtype; the per-bin sums over neurons are accumulated in the parameters'
        dtype.
        """
        B, T, N = data.counts.shape
        S, C = W.shape[0], data.covariates.shape[-1]
        dd, pd = data.counts.dtype, p["b"].dtype
        Wt = W.reshape(S * N, N).T.to(dd)
        b = p["b"].reshape(S * N).to(dd)
        Ut = p["U"].reshape(S * N, C).T.to(dd) if C else None
        Y = data.counts.reshape(B * T, N)
        H = data.history.reshape(B * T, N)
        X = data.covariates.reshape(B * T, C)
        out = torch.empty(B * T, S, dtype=pd, device=Y.device)
        step = max(1, CHUNK_ELEMENTS // (S * N))
        for lo in range(0, B * T, step):
            hi = min(lo + step, B * T)
            eta = torch.addmm(b, H[lo:hi], Wt)
            if C:
                eta.addmm_(X[lo:hi], Ut)
            term, _ = self._poisson_terms(eta.view(hi - lo, S, N), Y[lo:hi, None, :], grad=False)
            out[lo:hi] = term.sum(-1, dtype=pd)
        log_factorial = data.log_factorial if data.log_factorial is not None else torch.lgamma(data.counts.to(pd) + 1).sum(-1)
        return (out.view(B, T, S) - log_factorial[:, :, None]) * data.mask[:, :, None]

    def _log_prior(self, p, W) -> torch.Tensor:
        """Log prior of the emission parameters (up to constants), the term added to Q in the M-step."""
        N = W.shape[-1]
        off = 1 - torch.eye(N, dtype=W.dtype, device=W.device)
        out = -0.5 * self.l2 * ((p["b"] ** 2).sum() + (p.get("U", torch.zeros(0, dtype=W.dtype)) ** 2).sum())
        if self.prior == "none":
            out = out - 0.5 * self.l2 * (W**2).sum()
        elif self.prior == "gaussian":
            out = out - 0.5 * (((W - p["W_bar"][None]) * off) ** 2).sum() / self.gaussian_sigma**2
            out = out - 0.5 * self.l2 * (torch.diagonal(W, dim1=-2, dim2=-1) ** 2).sum()
        else:
            out = out - 0.5 * self.l2 * (F.softplus(p["strength"]) ** 2 * off).sum()
        return out

    def _onehot_prior_terms(self, p) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.softmax(p["logits"], dim=-1)
        N = q.shape[1]
        off = (1 - torch.eye(N, dtype=q.dtype, device=q.device))[None, :, :, None]
        cross = (q * torch.log(p["prior_probs"].clamp_min(1e-8))[None] * off).sum()
        entropy = -(q * torch.log(q.clamp_min(1e-12)) * off).sum()
        return cross, entropy

    def _transitions_map(self, gamma, xi_sum) -> tuple[torch.Tensor, torch.Tensor]:
        """Closed-form MAP of the transitions (Dirichlet pseudo-count) and of the initial distribution."""
        c = self.transition_pseudocount
        A = xi_sum + (c - 1.0 if c > 1 else 0.0) + 1e-8
        pi = gamma[:, 0].sum(0) + 1e-8
        return torch.log(A / A.sum(1, keepdim=True)), torch.log(pi / pi.sum())

    def _transition_log_prior(self, log_A) -> torch.Tensor:
        c = self.transition_pseudocount
        return (c - 1.0) * log_A.sum() if c > 1 else log_A.new_zeros(())

    # ------------------------------------------------------------------ fitting
    def _init_params(self, data: Batch, rng: np.random.Generator, glm: dict | None) -> dict[str, torch.Tensor]:
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
        if self.prior == "onehot":
            p.update(self._onehot_params(as_t(W)))
        else:
            p["W"] = as_t(W)
            if self.prior == "gaussian":
                p["W_bar"] = as_t(W.mean(0) * ~np.eye(N, dtype=bool))
        return p

    def _onehot_params(self, W: torch.Tensor) -> dict[str, torch.Tensor]:
        """One-hot parameters whose hard structure and strengths reproduce free weights ``W`` (S, N, N)."""
        N = W.shape[-1]
        off = (1 - torch.eye(N, dtype=W.dtype, device=W.device))[None, :, :, None]
        k = 2.0
        logits = torch.stack([-k * W, k * (self.adjacency_threshold - W.abs()), k * W], dim=-1) * off
        return {
            "logits": logits,
            "strength": torch.log(torch.expm1(W.abs().clamp_min(0.05))),
            "self": torch.diagonal(W, dim1=-2, dim2=-1).clone(),
            "prior_probs": torch.full((N, N, 3), 1.0 / 3, dtype=W.dtype, device=W.device),
        }

    def _trainable(self, p: dict, onehot_phase: bool) -> list[str]:
        names = ["b", "U"]
        if self.prior != "onehot":
            return names + ["W"]
        return names + (["logits", "strength", "self"] if onehot_phase else ["strength", "self"])

    def _state_rows(self, data: Batch, gamma: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """Per state, the bins that carry posterior weight: (weights, counts, history, covariates, weighted history,
        weighted covariates), in the data dtype; the weighted copies (times the posterior weight) turn the gradient
        into one matrix product per block.

        Bins whose posterior weight for a state is below ``m_step_min_weight`` are left out of that state's
        M-step (their share of Q is below that weight times the bin's log-likelihood). With sticky states the
        posterior is nearly one-hot, so this cuts the M-step's work by about the number of states.
        """
        valid = data.mask.reshape(-1)
        n = valid.shape[0]
        g = gamma.reshape(n, -1)[valid]
        Y = data.counts.reshape(n, -1)[valid]
        H = data.history.reshape(n, -1)[valid]
        X = data.covariates.reshape(n, data.covariates.shape[-1])[valid]
        rows = []
        for s in range(g.shape[1]):
            keep = g[:, s] > self.m_step_min_weight
            n_keep = int(keep.sum())
            if n_keep > 0.8 * keep.shape[0]:  # a diffuse posterior: copying the kept bins costs more than it saves
                gs, ys, hs, xs = torch.where(keep, g[:, s], 0.0), Y, H, X
            else:
                idx = torch.nonzero(keep).squeeze(1)
                gs, ys, hs, xs = g[idx, s], Y[idx], H[idx], X[idx]
            w = gs.to(H.dtype)[:, None]
            rows.append((gs, ys, hs, xs, hs * w, xs * w))
        return rows

    def _q_and_grads(self, W, b, U, rows):
        """Expected complete-data log-likelihood (without the constant log y!) per (state, neuron), (S, N), and its
        gradients w.r.t. the per-state weights, biases and covariate weights, in closed form, block by block over
        the bins.

        The linear predictors, rates and derivatives are computed in the data dtype; every sum over bins is
        accumulated in the parameters' dtype (value, gradients).
        """
        dW, db, dU = torch.zeros_like(W), torch.zeros_like(b), torch.zeros_like(U)
        value = torch.zeros_like(b)  # per (state, neuron): the M-step's objective is a sum of independent parts
        N = W.shape[-1]
        for s, (g, Y, H, X, Hg, Xg) in enumerate(rows):
            dd = H.dtype
            Wt, bs, Ut = W[s].T.to(dd), b[s].to(dd), U[s].T.to(dd)
            gd = g.to(dd)
            step = max(1, CHUNK_ELEMENTS // N)
            for lo in range(0, g.shape[0], step):
                hi = min(lo + step, g.shape[0])
                eta = torch.addmm(bs, H[lo:hi], Wt)
                if X.shape[1]:
                    eta.addmm_(X[lo:hi], Ut)
                term, d = self._poisson_terms(eta, Y[lo:hi], grad=True)
                value[s] += torch.mv(term.T, gd[lo:hi]).to(value.dtype)
                dW[s] += (d.T @ Hg[lo:hi]).to(dW.dtype)  # sum_t g_t d_t h_t^T
                db[s] += torch.mv(d.T, gd[lo:hi]).to(db.dtype)
                if X.shape[1]:
                    dU[s] += (d.T @ Xg[lo:hi]).to(dU.dtype)
        return value, dW, db, dU

    def _loss_and_grad(self, q: dict, rows, scale: float, hard: bool, tau=None, gen=None, extra=None) -> torch.Tensor:
        """``-(Q + log prior) * scale (+ extra)``, with its gradient accumulated into the leaf tensors of ``q``.

        The data term and its gradient w.r.t. (W, b, U) are closed-form (:meth:`_q_and_grads`, no autograd over
        the bins); autograd only carries them through the (small) parametrisation of W, the prior and ``extra``.
        """
        W = self._weights(q, hard=hard, tau=tau, gen=gen)
        value, dW, db, dU = self._q_and_grads(W.detach(), q["b"].detach(), q["U"].detach(), rows)
        value = value.sum()
        rest = -self._log_prior(q, W) * scale
        if extra is not None:
            rest = rest + extra
        torch.autograd.backward([W, q["b"], q["U"], rest], [-dW * scale, -db * scale, -dU * scale, None])
        return (-value * scale + rest).detach()

    def _m_step(self, p, names, data: Batch, gamma: torch.Tensor, hard: bool) -> None:
        """The emission M-step: Newton (``m_step="newton"``) where the weights are free parameters (no or Gaussian
        prior, and the single-state initialisation), else L-BFGS (the one-hot prior's parametrisation)."""
        if self.m_step == "newton" and sorted(names) == ["U", "W", "b"] and self.prior in ("none", "gaussian"):
            self._m_step_newton(p, data, gamma)
        else:
            self._m_step_lbfgs(p, names, data, gamma, hard)

    def _prior_gaussian(self, p, S: int, N: int, C: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The log prior of the emission parameters as independent Gaussians per (state, neuron) on
        ``theta = [W_sn (N), b_sn, U_sn (C)]``: precision (N, D) and mean (S, N, D), with D = N + 1 + C."""
        ref = p["b"]
        prec = torch.full((N, N + 1 + C), self.l2, dtype=ref.dtype, device=ref.device)
        mean = torch.zeros(S, N, N + 1 + C, dtype=ref.dtype, device=ref.device)
        if self.prior == "gaussian":
            off = ~torch.eye(N, dtype=torch.bool, device=ref.device)
            prec[:, :N][off] = 1.0 / self.gaussian_sigma**2
            mean[:, :, :N] = p["W_bar"][None]
        return prec, mean

    def _fisher_design(self, rows, D: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]:
        """Per state, the bins the Fisher information is estimated from: (weights, design ``z = [h, 1, x]``, the
        upper triangle of each bin's outer product ``z z^T``); fixed for a whole M-step, so built once.

        At most ``hessian_rows`` bins per state, chosen by systematic sampling along the cumulative posterior
        weight (deterministic; each chosen bin stands for an equal share of the weight). The gradient is always
        exact; the Hessian only has to be good enough for Newton's steps to contract. Default 1,024: on the bench
        (N=50, 51 parameters per state and neuron, 3 steps per M-step) 1,024, 2,048 and 4,096 bins need the same
        EM iterations to the best held-out log-likelihood, and 1,024 is the cheapest (first EM iteration 0.36 s
        against 0.41-0.54 s and 0.46-0.55 s over two seeds).
        """
        out = []
        for g, _, H, X, _, _ in rows:
            n = g.shape[0]
            if n == 0:
                out.append(None)
                continue
            if n > self.hessian_rows:
                m = self.hessian_rows
                cum = torch.cumsum(g, 0)
                total = cum[-1]
                at = (torch.arange(m, dtype=g.dtype, device=g.device) + 0.5) * (total / m)
                idx = torch.searchsorted(cum, at).clamp_max(n - 1)
                w = torch.full((m,), float(total / m), dtype=H.dtype, device=H.device)
            else:
                idx = torch.arange(n, device=g.device)
                w = g.to(H.dtype)
            Z = torch.cat([H[idx], torch.ones(idx.shape[0], 1, dtype=H.dtype, device=H.device), X[idx]], 1)
            K = torch.empty(Z.shape[0], D * (D + 1) // 2, dtype=H.dtype, device=H.device)
            at = 0
            for i in range(D):  # row-major upper triangle, the order of torch.triu_indices
                torch.mul(Z[:, i:], Z[:, i : i + 1], out=K[:, at : at + D - i])
                at += D - i
            out.append((w, Z, K))
        return out

    def _fisher_blocks(self, theta: torch.Tensor, design) -> torch.Tensor:
        """Expected (Fisher) information of each (state, neuron)'s Poisson GLM at ``theta``, (S, N, D, D) in the
        parameters' dtype: ``sum_t g_t f'(eta)^2 / f(eta) z_t z_t^T`` over the bins of :meth:`_fisher_design`,
        every neuron at once as one matrix product (N, m) @ (m, D(D+1)/2) per state."""
        S, N, D = theta.shape
        out = torch.zeros(S, N, D, D, dtype=theta.dtype, device=theta.device)
        iu = torch.triu_indices(D, D, device=theta.device)
        for s, item in enumerate(design):
            if item is None:
                continue
            w, Z, K = item
            eta = Z @ theta[s].T.to(Z.dtype)  # (m, N)
            if self.link == "exp":
                info = eta.clamp_max_(80.0).exp_().clamp_min_(MIN_RATE)
            elif self.link == "sigmoid":
                f = torch.sigmoid(eta)
                info = f.clamp_min(MIN_RATE) * (1 - f) ** 2
            else:
                info = torch.sigmoid(eta) ** 2 / F.softplus(eta).clamp_min(MIN_RATE)
            info.mul_(w[:, None])
            upper = (info.T @ K).to(theta.dtype)
            out[s][:, iu[0], iu[1]] = upper
            out[s][:, iu[1], iu[0]] = upper
        return out

    # Levenberg-Marquardt damping of the Newton M-step, per (state, neuron), relative to the Fisher diagonal:
    # start, factor after a rejected step, factor after an accepted one (measured on the bench's first M-step,
    # the hardest: from the noisy initialisation, damping 1e-3 wasted 3 passes on rejected steps, 1.0 none)
    _lm_start, _lm_up, _lm_down = 1.0, 4.0, 0.25

    def _m_step_newton(self, p, data: Batch, gamma: torch.Tensor) -> None:
        """Newton M-step, independently for each (state, neuron): the expected complete-data log-likelihood plus
        the log prior is a sum of one Poisson GLM per (state, neuron) over ``theta = [W_sn, b_sn, U_sn]``
        (the Gaussian prior's shared mean is held fixed during the M-step).

        Each step costs one pass over the data (exact values and gradients, :meth:`_q_and_grads`; one more pass
        at the start): the direction solves with the Fisher information (:meth:`_fisher_blocks`, estimated from a
        fixed sample of bins per M-step) plus the prior precision, damped Levenberg-Marquardt style per (state,
        neuron): a step is kept where it raises that (state, neuron)'s objective enough (Armijo), and the damping
        shrinks there; elsewhere the step is refused and the damping grows. The Fisher information is refreshed
        where the parameters moved.

        At most ``newton_iter`` steps (default 3): this is generalised EM, where an M-step need only raise Q,
        and early posteriors change too much for an exact M-step to pay (bench, N=50, S=3, T=100,000, Fisher
        information from 4,096 bins, two simulator seeds: time to within 0.1% of the best held-out
        log-likelihood 3.5/2.6 s with 2 steps,
        3.3/2.9 s with 3, 3.8/2.7 s with 4, 4.9/4.4 s with 6). Stops early when the predicted gain of further
        Newton steps is below a tenth of EM's tolerance ``tol``.
        """
        W, b, U = p["W"], p["b"], p["U"]
        S, N, C = W.shape[0], W.shape[-1], U.shape[-1]
        rows = self._state_rows(data, gamma)
        prec, mean = self._prior_gaussian(p, S, N, C)

        def evaluate(theta):
            value, dW, db, dU = self._q_and_grads(theta[..., :N], theta[..., N], theta[..., N + 1 :], rows)
            diff = theta - mean
            value = value - 0.5 * (prec * diff**2).sum(-1)
            grad = torch.cat([dW, db[..., None], dU], -1) - prec * diff
            return value, grad

        theta = torch.cat([W, b[..., None], U], -1)
        value, grad = evaluate(theta)
        prior_h = torch.diag_embed(prec)[None]
        design = self._fisher_design(rows, theta.shape[-1])
        info = self._fisher_blocks(theta, design) + prior_h
        damp = torch.full((S, N), self._lm_start, dtype=theta.dtype, device=theta.device)

        def solve(info, damp, grad):
            # Levenberg-Marquardt: (I + damp * diag(I)) d = grad; damp grows where a step failed. In float64 even
            # where the parameters are float32 (GPU): S x N small systems, and float32 Cholesky of an information
            # matrix with a 1e-3 ridge can fail
            info64 = info.double()
            diag = torch.diagonal(info64, dim1=-2, dim2=-1)
            scaled = info64 + damp.double()[..., None, None] * torch.diag_embed(diag)
            chol, bad = torch.linalg.cholesky_ex(scaled)
            if bool(bad.any()):  # a (state, neuron) without data and without penalty: a relative jitter
                eye = torch.eye(diag.shape[-1], dtype=diag.dtype, device=diag.device)
                jitter = 1e-10 * diag.mean(-1).clamp_min(1e-12)[..., None, None] * eye
                chol = torch.linalg.cholesky(scaled + jitter)
            return torch.cholesky_solve(grad.double()[..., None], chol)[..., 0].to(grad.dtype)

        direction = solve(info, damp, grad)
        for it in range(self.newton_iter):
            gain = (grad * direction).sum(-1)  # >= 0: an ascent direction
            if float(gain.sum()) * 0.5 < 0.1 * self.tol * (float(value.abs().sum()) + 1.0):
                break  # what Newton could still gain is below a tenth of EM's own stopping tolerance
            trial = theta + direction
            v_new, g_new = evaluate(trial)
            ok = v_new >= value + 1e-4 * gain
            theta = torch.where(ok[..., None], trial, theta)
            value = torch.where(ok, v_new, value)
            grad = torch.where(ok[..., None], g_new, grad)
            damp = torch.where(ok, damp * self._lm_down, damp * self._lm_up).clamp(1e-12, 1e12)
            if it + 1 == self.newton_iter:
                break  # no further step: skip its Fisher information and direction
            if bool(ok.any()):  # the Fisher information where the parameters moved
                info = torch.where(ok[..., None, None], self._fisher_blocks(theta, design) + prior_h, info)
            direction = solve(info, damp, grad)
        p["W"], p["b"], p["U"] = theta[..., :N].contiguous(), theta[..., N].contiguous(), theta[..., N + 1 :].contiguous()

    def _m_step_lbfgs(self, p, names, data: Batch, gamma: torch.Tensor, hard: bool) -> None:
        """L-BFGS on -(Q + log prior) / n_bins (see :meth:`_loss_and_grad`)."""
        params = [p[k].detach().clone().requires_grad_(True) for k in names]
        scale = 1.0 / max(data.n_bins, 1)
        rows = self._state_rows(data, gamma)
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=self.m_step_iter, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure():
            opt.zero_grad()
            q = dict(p)
            q.update(zip(names, params, strict=True))
            return self._loss_and_grad(q, rows, scale, hard)

        opt.step(closure)
        for k, v in zip(names, params, strict=True):
            p[k] = v.detach()

    def _objective(self, p, data: Batch, hard: bool = True) -> tuple[float, float, tuple]:
        with torch.no_grad():
            W = self._weights(p, hard=hard, tau=None, gen=None)
            ll = self._log_lik(p, W, data)
            log_norm, gamma, xi = hmm.forward_backward(ll, p["log_pi"], p["log_A"], data.mask)
            total = float(log_norm.sum())
            obj = total + float(self._log_prior(p, W)) + float(self._transition_log_prior(p["log_A"]))
        return obj, total, (log_norm, gamma, xi)

    def _update_shared_prior(self, p) -> None:
        if self.prior == "gaussian":
            N = p["W"].shape[-1]
            p["W_bar"] = p["W"].mean(0) * (1 - torch.eye(N, dtype=p["W"].dtype, device=p["W"].device))
        elif self.prior == "onehot":
            p["prior_probs"] = self._onehot_prior_update(p)

    def _onehot_prior_update(self, p) -> torch.Tensor:
        """MAP of the shared per-pair categorical under a Dirichlet(c * m) hyperprior: (sum_s q_s + c m) / (S + c)."""
        q = torch.softmax(p["logits"], -1).detach()
        m = torch.as_tensor(self.onehot_prior_mean, dtype=q.dtype, device=q.device)
        m = m / m.sum()
        c = self.onehot_prior_concentration
        return (q.sum(0) + c * m) / (q.shape[0] + c)

    def _em(
        self, p: dict, data: Batch, n_iter: int, hard: bool, names: list[str],
        objs: list[float] | None = None, lls: list[float] | None = None, tick=None,
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

    def _onehot_relaxation(self, p: dict, data: Batch, gen: torch.Generator) -> None:
        names = self._trainable(p, onehot_phase=True)
        params = {k: p[k].detach().clone().requires_grad_(True) for k in names}
        opt = torch.optim.Adam(params.values(), lr=self.onehot_lr)
        scale = 1.0 / max(data.n_bins, 1)
        for it in range(self.onehot_iter):
            frac = it / max(self.onehot_iter - 1, 1)
            tau = self.tau_start * (self.tau_end / self.tau_start) ** frac
            q = dict(p)
            q.update(params)
            with torch.no_grad():  # E-step with the current hard structure
                W = self._weights(q, hard=True, tau=None, gen=None)
                log_norm, gamma, xi = hmm.forward_backward(self._log_lik(q, W, data), p["log_pi"], p["log_A"], data.mask)
            if self.n_states > 1:
                p["log_A"], p["log_pi"] = self._transitions_map(gamma, xi)
            rows = self._state_rows(data, gamma)
            for _ in range(self.onehot_steps):
                opt.zero_grad()
                q = dict(p)
                q.update(params)
                cross, entropy = self._onehot_prior_terms(q)
                extra = (self.entropy_weight * entropy - cross) * scale
                self._loss_and_grad(q, rows, scale, hard=False, tau=tau, gen=gen, extra=extra)
                opt.step()
            for k in names:
                p[k] = params[k].detach()
            p["prior_probs"] = self._onehot_prior_update(p)
        # pairs whose fitted strength stays below the adjacency threshold are "none": where a coupling is too weak
        # to matter the likelihood cannot tell the categories apart, and the prior's sparse mean decides
        weak = F.softplus(p["strength"]) < self.adjacency_threshold
        logits = p["logits"].clone()
        logits[weak] = torch.tensor([-10.0, 10.0, -10.0], dtype=logits.dtype, device=logits.device)
        p["logits"] = logits
        p["prior_probs"] = self._onehot_prior_update(p)

    def _single_glm(self, data: Batch) -> dict[str, np.ndarray]:
        """Single-state GLM fit (the initialisation): same emission model, one state, L-BFGS."""
        single = SwitchingGLM(n_states=1, prior="none", link=self.link, history_bins=self.history_bins,
                              history_decay=self.history_decay, m_step_iter=100, newton_iter=50, l2=self.l2, device=self.device,
                              data_dtype=self.data_dtype, m_step=self.m_step, hessian_rows=self.hessian_rows)
        N, C = data.counts.shape[-1], data.covariates.shape[-1]
        rate = (data.counts.sum((0, 1), dtype=self._dtype(data.counts.device)) / data.n_bins).clamp_min(1e-3)
        inv = {"softplus": lambda r: torch.log(torch.expm1(r)), "exp": torch.log,
               "sigmoid": lambda r: torch.logit(r.clamp_max(0.99))}[self.link]
        zero = torch.zeros
        p = {"b": inv(rate)[None], "U": zero(1, N, C, dtype=rate.dtype, device=rate.device),
             "W": zero(1, N, N, dtype=rate.dtype, device=rate.device)}
        gamma = data.mask[:, :, None].to(rate.dtype)
        single._m_step(p, ["b", "U", "W"], data, gamma, hard=True)
        return {k: p[k][0].cpu().numpy() for k in ("W", "b", "U")}

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
        """
        self._check_params()
        if "counts" not in ds or "split" not in ds:
            raise InputError("SwitchingGLM needs a spike_counts dataset (variables 'counts' and 'split')")
        X, names = self._covariate_matrix(ds)
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
            fingerprint_of({"run": dict(fingerprint or {}), "params": self._fingerprint_params(), "n_bins": data.n_bins}),
            every_s=checkpoint_every_s,
        )
        dev = data.counts.device
        saved = ckpt.load()
        cur = saved["cursor"] if saved else {"restart": 0, "phase": 0}
        best = _to_device(saved["best"], dev) if saved else None
        phases = ("warm", "relax", "polish") if self.prior == "onehot" else ("em",)
        with ckpt.guard():
            for r in range(cur["restart"], self.n_restarts):
                rng = np.random.default_rng([self.seed, r])
                if saved is not None and r == cur["restart"]:  # resume inside this restart
                    p, objs, lls = _to_device(saved["p"], dev), saved["objs"], saved["lls"]
                    first = cur["phase"]
                else:
                    p, objs, lls, first = self._initial(data, rng, glm), [], [], 0
                for k in range(first, len(phases)):

                    def tick(o, ll, k=k, p=p, r=r, b=best):
                        ckpt.maybe_save(lambda: _ckpt_state(r, k, p, o, ll, b))

                    objs, lls = self._run_phase(phases[k], p, data, r, objs, lls, tick)
                    if k + 1 < len(phases):
                        objs, lls = [], []
                        ckpt.maybe_save(lambda k=k, p=p, r=r, b=best: _ckpt_state(r, k + 1, p, [], [], b), force=True)
                log.info("restart %d: objective %.3f after %d EM iterations", r, objs[-1], len(objs) - 1)
                if best is None or objs[-1] > best["objs"][-1]:
                    best = {"p": p, "objs": objs, "lls": lls}
                if r + 1 < self.n_restarts:
                    ckpt.maybe_save(lambda r=r, b=best: _ckpt_state(r + 1, 0, {}, [], [], b), force=True)
        self.checkpoint_saves_ = ckpt.saves
        p, objs, lls = best["p"], best["objs"], best["lls"]
        self._set_fitted(p)
        self.objective_, self.log_likelihood_ = np.array(objs), np.array(lls)
        self.n_iter_ = len(objs) - 1
        self.train_log_likelihood_ = lls[-1]
        return self

    def _initial(self, data: Batch, rng: np.random.Generator, glm: dict) -> dict[str, torch.Tensor]:
        """Initial parameters of a restart (the one-hot prior starts from the free model's: see _run_phase)."""
        if self.prior != "onehot":
            return self._init_params(data, rng, glm)
        self.prior = "none"
        try:
            return self._init_params(data, rng, glm)
        finally:
            self.prior = "onehot"

    def _run_phase(self, phase: str, p: dict, data: Batch, r: int, objs, lls, tick) -> tuple[list[float], list[float]]:
        """One phase of a restart, updating ``p`` in place: "em" (no or Gaussian prior), or for the one-hot prior
        "warm" (the free HMM-GLM, whose weights seed the one-hot structure), "relax" (Gumbel-softmax relaxation;
        rerun from its start after an interruption: its random stream is seeded per restart) and "polish"."""
        if phase == "em":
            return self._em(p, data, self.n_iter, True, self._trainable(p, False), objs, lls, tick)
        if phase == "warm":
            self.prior = "none"
            try:
                self._em(p, data, self.n_iter, True, self._trainable(p, False), objs, lls, tick)
            finally:
                self.prior = "onehot"
            p.update(self._onehot_params(p.pop("W")))
            p["prior_probs"] = self._onehot_prior_update(p)
            return [], []
        if phase == "relax":
            self._onehot_relaxation(p, data, torch.Generator().manual_seed(self.seed * 1000 + r))
            return [], []
        return self._em(p, data, self.polish_iter, True, self._trainable(p, False), objs, lls, tick)

    def _set_fitted(self, p: dict) -> None:
        self.params_ = p
        W = self._weights(p, hard=True, tau=None, gen=None)
        self.weights_ = W.detach().cpu().numpy()
        self.bias_ = p["b"].cpu().numpy()
        self.cov_weights_ = p["U"].cpu().numpy()
        self.log_A_ = p["log_A"].cpu().numpy()
        self.log_pi_ = p["log_pi"].cpu().numpy()
        N = self.weights_.shape[-1]
        off = ~np.eye(N, dtype=bool)
        if self.prior == "onehot":
            self.adjacency_ = ((p["logits"].argmax(-1) - 1).cpu().numpy() * off).astype(np.int8)
            self.prior_probs_ = p["prior_probs"].cpu().numpy()
        else:
            thr = self.adjacency_threshold
            self.adjacency_ = (np.sign(self.weights_) * (np.abs(self.weights_) > thr) * off).astype(np.int8)
        if self.prior == "gaussian":
            self.prior_mean_ = p["W_bar"].cpu().numpy()

    # ------------------------------------------------------------------ inference on data
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

    def log_likelihood(self, ds: xr.Dataset, split: str = "test") -> float:
        """Marginal log-likelihood (nats) of the sequences of one split (forward algorithm)."""
        self._check_units(ds)
        data = self.batch(ds, split)
        with torch.no_grad():
            return float(hmm.log_marginal(self._ll_batch(data), self.params_["log_pi"], self.params_["log_A"], data.mask).sum())

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

    def decode(self, ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Posterior state probabilities (n_bins, S) and the Viterbi path (n_bins,) for every bin of ``ds``."""
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

    # ------------------------------------------------------------------ (de)serialisation
    def to_dataset(self, ds: xr.Dataset | None = None) -> xr.Dataset:
        """The fit as a ``model_fit`` dataset; with ``ds`` (the counts), posterior and Viterbi states per bin."""
        self._check_fitted()
        S = self.weights_.shape[0]
        units = self.units_
        out = xr.Dataset(
            {
                "weights": (("state", "unit_post", "unit_pre"), self.weights_, {"long_name": "coupling weight"}),
                "bias": (("state", "unit_post"), self.bias_),
                "covariate_weight": (("state", "unit_post", "covariate"), self.cov_weights_),
                "covariate_mean": ("covariate", np.asarray(self.cov_mean_, float)),
                "covariate_std": ("covariate", np.asarray(self.cov_std_, float)),
                "adjacency": (("state", "unit_post", "unit_pre"), self.adjacency_, {"long_name": "-1 inh, 0 none, 1 exc"}),
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
                "adjacency_threshold": self.adjacency_threshold,
                "gaussian_sigma": self.gaussian_sigma,
                "n_iter": int(self.n_iter_),
            },
        )
        if self.prior == "gaussian":
            out["prior_mean"] = (("unit_post", "unit_pre"), self.prior_mean_)
        if self.prior == "onehot":
            out["prior_probs"] = (("unit_post", "unit_pre", "category"), self.prior_probs_)
            out = out.assign_coords(category=np.array(CATEGORIES))
        if ds is not None:
            post, vit = self.decode(ds)
            out["posterior"] = (("time", "state"), post, {"long_name": "posterior state probability"})
            out["viterbi"] = ("time", vit, {"long_name": "most probable state path"})
            out = out.assign_coords(time=("time", ds["time"].values, {"units": "s", "long_name": "bin centre"}))
        return out

    @classmethod
    def from_dataset(cls, fit: xr.Dataset, device: str = "auto") -> SwitchingGLM:
        """Rebuild a fitted model (hard one-hot structure) from :meth:`to_dataset` or a planted truth."""
        a = fit.attrs
        S = fit.sizes["state"]
        m = cls(n_states=S, prior="none", link=str(a["link"]), history_bins=int(a["history_bins"]),
                history_decay=float(a.get("history_decay", 1.0)), device=device)
        m.prior = str(a.get("prior", "none")) if a.get("role") == "fit" else "none"
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
        p = {"W": as_t(W), "b": as_t(fit["bias"].values), "U": as_t(U),
             "log_A": as_t(np.log(np.clip(fit["transition"].values, 1e-300, None))),
             "log_pi": as_t(np.log(np.clip(fit["initial"].values, 1e-300, None)))}
        prior_kind, m.prior = m.prior, "none"  # the stored weights are already the hard ones
        m._set_fitted(p)
        m.prior = prior_kind
        m.adjacency_ = np.asarray(fit["adjacency"].values).astype(np.int8)
        m.units_ = np.asarray(fit["unit_post"].values).astype(str)
        m.bin_width_s_ = float(a.get("bin_width_s", np.nan))
        m.objective_ = np.asarray(fit["objective"].values) if "objective" in fit else np.zeros(0)
        m.log_likelihood_ = np.asarray(fit["train_log_likelihood"].values) if "train_log_likelihood" in fit else np.zeros(0)
        m.n_iter_ = int(a.get("n_iter", 0))
        return m
