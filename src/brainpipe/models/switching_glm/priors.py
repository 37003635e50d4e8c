"""The switching GLM's priors on the per-state couplings (none: L2; Gaussian around a shared mean; one-hot
inh/none/exc with a shared categorical, as a three-component mixture whose class posteriors are updated in every
EM iteration), and the (sticky) Dirichlet prior of the transitions."""

from __future__ import annotations

import math

import torch

from brainpipe.models.switching_glm.data import Batch  # noqa: F401  (type of the M-step's data)

PRIORS = ("none", "gaussian", "onehot")
CATEGORIES = ("inh", "none", "exc")
_MIXTURE_ITER = 50  # closed-form iterations of the class mixture at initialisation and for post-hoc structure


class CouplingPriors:
    """The prior side of :class:`~brainpipe.models.switching_glm.SwitchingGLM` (a mixin): log priors, the
    Gaussian priors the Newton M-step works with, closed-form prior and transition updates, and the one-hot
    prior's class mixture. Reads the hyperparameters ``prior``, ``l2``, ``gaussian_sigma``,
    ``transition_pseudocount``, ``sticky_kappa``, ``adjacency_threshold``, ``onehot_prior_mean``, ``onehot_prior_concentration``,
    ``onehot_spike_sd`` and ``n_states``.

    The one-hot prior, per state ``s`` and pair ``n<-m`` (off the diagonal)::

        a_{s,n<-m} ~ Categorical(pi_{n<-m})                      over (inh, none, exc), shared across states
        W_{s,n<-m} | a ~ N(-mu, sd^2), N(0, spike_sd^2), N(+mu, sd^2)
        pi_{n<-m} ~ Dirichlet(1 + c * onehot_prior_mean)

    with the slab's ``mu`` and ``sd`` learned (shared by every pair) and ``spike_sd`` fixed (``onehot_spike_sd``).
    EM treats ``a`` as latent: its posterior ``q_{s,n<-m}`` (the responsibilities) is computed in closed form after
    every M-step, the M-step on the weights is a Gaussian prior of precision ``sum_k q_k / sd_k^2`` (the Newton
    M-step of the free model, with that prior), and ``pi``, ``mu`` and ``sd`` are updated in closed form from ``q``.
    After a Newton M-step ``q`` is judged on the data's Laplace estimate of each weight and its sampling variance
    (``p["W_lap"]``, ``p["W_var"]``: the weight without the prior's pull, each class density widened by that
    variance), a Laplace-EM; the MAP objective (log-likelihood + log mixture prior + log hyperprior) then rises
    at nearly every step but is not guaranteed to (with the L-BFGS M-step, ``q`` at the point estimate: exact EM).
    """

    def _weights(self, p: dict[str, torch.Tensor], hard: bool = True, tau=None, gen=None):
        """Per-state coupling matrices (S, N, N) (every prior: free weights ``W``)."""
        return p["W"]

    def _sds(self, p, ref: torch.Tensor) -> torch.Tensor:
        """The three class SDs (inh, none, exc)."""
        sd = p["slab"][1]
        spike = p["spike_sd"] if "spike_sd" in p else sd.new_tensor(self.onehot_spike_sd)
        return torch.stack([sd, spike, sd])

    def _class_log_densities(self, p, W: torch.Tensor, var: torch.Tensor | None = None) -> torch.Tensor:
        """``log N(W; mu_k, sd_k^2 + var)`` per class, (S, N, N, 3): with ``var`` (each weight's sampling variance,
        :meth:`~brainpipe.models.switching_glm.mstep.EmissionMSteps._laplace_weights`) the class densities of a
        noisy estimate ``W`` of the weight (the class prior convolved with the data's Laplace approximation)."""
        mu = p["slab"][0]
        means = torch.stack([-mu, torch.zeros_like(mu), mu])
        sds = self._sds(p, W)
        if var is None:
            z = (W[..., None] - means) / sds
            return -0.5 * z**2 - torch.log(sds) - 0.5 * math.log(2 * math.pi)
        total = sds**2 + var[..., None]
        return (
            -0.5 * (W[..., None] - means) ** 2 / total - 0.5 * torch.log(total) - 0.5 * math.log(2 * math.pi)
        )

    def _responsibilities(self, p, W: torch.Tensor, var: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior of each pair's class given the weights (with ``var``: noisy estimates of them, see
        :meth:`_class_log_densities`) and the shared categorical, (S, N, N, 3)."""
        logp = self._class_log_densities(p, W, var) + torch.log(p["prior_probs"].clamp_min(1e-12))[None]
        return torch.softmax(logp, dim=-1)

    def _log_prior(self, p, W) -> torch.Tensor:
        """Log prior of the emission parameters (up to constants), the term added to Q in the M-step."""
        N = W.shape[-1]
        off = 1 - torch.eye(N, dtype=W.dtype, device=W.device)
        out = -0.5 * self.l2 * ((p["b"] ** 2).sum() + (p.get("U", torch.zeros(0, dtype=W.dtype)) ** 2).sum())
        if self.prior == "none":
            return out - 0.5 * self.l2 * (W**2).sum()
        out = out - 0.5 * self.l2 * (torch.diagonal(W, dim1=-2, dim2=-1) ** 2).sum()
        if self.prior == "gaussian":
            return out - 0.5 * (((W - p["W_bar"][None]) * off) ** 2).sum() / self.gaussian_sigma**2
        # one-hot: the marginal (mixture) prior of each weight, and the Dirichlet hyperprior of the categorical
        logp = self._class_log_densities(p, W) + torch.log(p["prior_probs"].clamp_min(1e-12))[None]
        out = out + (torch.logsumexp(logp, -1) * off).sum()
        c = self.onehot_prior_concentration * self._prior_mean(W)
        return out + ((torch.log(p["prior_probs"].clamp_min(1e-12)) * c).sum(-1) * off).sum()

    def _prior_mean(self, ref: torch.Tensor) -> torch.Tensor:
        m = torch.as_tensor(self.onehot_prior_mean, dtype=ref.dtype, device=ref.device)
        return m / m.sum()

    def _transitions_map(self, gamma, xi_sum) -> tuple[torch.Tensor, torch.Tensor]:
        """Closed-form MAP of the transitions and of the initial distribution. Each row of the transition matrix
        has the sticky Dirichlet prior ``Dir(c + kappa * e_i)`` (``c = transition_pseudocount``, ``kappa =
        sticky_kappa``; Fox et al. 2011), whose MAP adds ``c - 1`` (when ``c > 1``) to every expected transition
        count and ``kappa`` to the self-transition's."""
        c = self.transition_pseudocount
        A = xi_sum + (c - 1.0 if c > 1 else 0.0) + 1e-8
        kappa = float(self.sticky_kappa)
        if kappa > 0:
            A = A + kappa * torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        pi = gamma[:, 0].sum(0) + 1e-8
        return torch.log(A / A.sum(1, keepdim=True)), torch.log(pi / pi.sum())

    def _transition_log_prior(self, log_A) -> torch.Tensor:
        """Log density (up to a constant) of the transitions' sticky Dirichlet prior (:meth:`_transitions_map`):
        ``(c - 1) sum_ij log A_ij + kappa sum_i log A_ii``, the term the objective adds."""
        c = self.transition_pseudocount
        out = (c - 1.0) * log_A.sum() if c > 1 else log_A.new_zeros(())
        kappa = float(self.sticky_kappa)
        if kappa > 0:
            out = out + kappa * torch.diagonal(log_A).sum()
        return out

    def _trainable(self, p: dict, onehot_phase: bool = False) -> list[str]:
        return ["b", "U", "W"]

    def _prior_gaussian(self, p, S: int, N: int, C: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The log prior of the emission parameters as independent Gaussians per (state, neuron) on
        ``theta = [W_sn (N), b_sn, U_sn (C)]``: precision and mean, both (S, N, D), with D = N + 1 + C (the
        one-hot prior: the expected log class density under the current responsibilities)."""
        ref = p["b"]
        prec = torch.full((S, N, N + 1 + C), self.l2, dtype=ref.dtype, device=ref.device)
        mean = torch.zeros(S, N, N + 1 + C, dtype=ref.dtype, device=ref.device)
        off = ~torch.eye(N, dtype=torch.bool, device=ref.device)
        if self.prior == "gaussian":
            prec[:, :, :N][:, off] = 1.0 / self.gaussian_sigma**2
            mean[:, :, :N] = p["W_bar"][None]
        elif self.prior == "onehot":
            q = p["q"]
            mu = p["slab"][0]
            inv = 1.0 / self._sds(p, ref) ** 2
            P = (q * inv).sum(-1)
            M = (q[..., 2] - q[..., 0]) * mu * inv[0] / P
            prec[:, :, :N][:, off] = P[:, off]
            mean[:, :, :N][:, off] = M[:, off]
        return prec, mean

    def _update_shared_prior(self, p) -> None:
        if self.prior == "gaussian":
            N = p["W"].shape[-1]
            p["W_bar"] = p["W"].mean(0) * (1 - torch.eye(N, dtype=p["W"].dtype, device=p["W"].device))
        elif self.prior == "onehot":
            if "W_lap" in p:
                self._mixture_step(p, p["W_lap"], p["W_var"])
            else:
                self._mixture_step(p, p["W"])

    def _mixture_step(self, p, W: torch.Tensor, var: torch.Tensor | None = None) -> None:
        """One closed-form round of the class mixture at weights ``W``: responsibilities ``q``, then the shared
        categorical (MAP under its Dirichlet hyperprior), then the slab's mean and SD (floored at twice the
        spike SD, so the classes stay apart), and the spike's SD where it is learned (``p["spike_sd"]``). With
        ``var`` (the weights' sampling variances) the SDs are those of the weights themselves: the estimates'
        weighted second moments less their sampling variance (deconvolution by moments)."""
        N = W.shape[-1]
        off = (1 - torch.eye(N, dtype=W.dtype, device=W.device))[None]
        noise = torch.zeros_like(W) if var is None else var
        q = self._responsibilities(p, W, var) * off[..., None]
        p["q"] = q
        c = self.onehot_prior_concentration * self._prior_mean(W)
        pi = q.sum(0) + c
        p["prior_probs"] = pi / pi.sum(-1, keepdim=True)
        w_in, w_ex = q[..., 0], q[..., 2]
        n_slab = (w_in + w_ex).sum().clamp_min(1e-8)
        spike = self.onehot_spike_sd
        if "spike_sd" in p:
            w0 = q[..., 1]
            spike_t = ((w0 * (W**2 - noise)).sum() / w0.sum().clamp_min(1e-8)).clamp_min(1e-6).sqrt()
            spike_t = spike_t.clamp_min(1e-3)
            p["spike_sd"] = spike_t
            spike = float(spike_t)
        mu = ((w_ex - w_in) * W).sum() / n_slab
        mu = mu.clamp_min(2 * spike)
        v_slab = ((w_ex * ((W - mu) ** 2 - noise)) + (w_in * ((W + mu) ** 2 - noise))).sum() / n_slab
        sd = v_slab.clamp_min(0).sqrt().clamp_min(2 * spike)
        p["slab"] = torch.stack([mu, sd])

    def _init_mixture(
        self, p, W: torch.Tensor, learn_spike: bool = False, var: torch.Tensor | None = None
    ) -> None:
        """The class mixture fitted to weights ``W`` (no data pass; with ``var``, to noisy estimates of them): the
        slab starts at the 90th percentile of ``|W|``, the categorical at its hyperprior mean; with
        ``learn_spike`` the spike's SD is learned too (from the median ``|W|``)."""
        N = W.shape[-1]
        off = ~torch.eye(N, dtype=torch.bool, device=W.device)
        mags = W[:, off].abs().flatten()
        if learn_spike:
            p["spike_sd"] = torch.quantile(mags, 0.5).clamp_min(1e-3)
        floor = float(p["spike_sd"]) if learn_spike else self.onehot_spike_sd
        mu = torch.quantile(mags, 0.9).clamp_min(4 * floor)
        p["slab"] = torch.stack([mu, mu / 2])
        p["prior_probs"] = self._prior_mean(W).expand(N, N, 3).clone()
        for _ in range(_MIXTURE_ITER):
            self._mixture_step(p, W, var)

    def _shared_categorical(self, q: torch.Tensor) -> torch.Tensor:
        """The read-out of the shared per-pair categorical from the states' class posteriors ``q`` (S, N, N, 3,
        zero on the diagonal): its posterior mean under a Dirichlet of concentration ``onehot_prior_concentration``
        whose mean is the class frequencies over every pair and state (empirical Bayes: learned from the fit, not
        set by hand), so a pair whose states disagree (e.g. one state per class) goes to the classes common in
        this network instead of to floating-point ties."""
        N = q.shape[-2]
        off = ~torch.eye(N, dtype=torch.bool, device=q.device)
        freq = q[:, off].sum((0, 1)) + 1e-8
        pi = q.sum(0) + self.onehot_prior_concentration * freq / freq.sum()
        return pi / pi.sum(-1, keepdim=True)

    def _posthoc_structure(
        self, W: torch.Tensor, var: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-state and shared structure of free weights (no or Gaussian prior): the one-hot prior's class mixture
        fitted to the fitted weights (with ``var``: to the data's Laplace estimates of them, each with its
        sampling variance), its spike SD learned too (the free weights' noise sets it, not the one-hot prior's
        strength). Returns the per-state classes (S, N, N) and the shared categorical (:meth:`_shared_categorical`)."""
        p: dict[str, torch.Tensor] = {}
        self._init_mixture(p, W, learn_spike=True, var=var)
        return p["q"].argmax(-1), self._shared_categorical(p["q"])
