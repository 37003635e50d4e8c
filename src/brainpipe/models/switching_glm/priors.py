"""The switching GLM's priors on the per-state couplings (none: L2; Gaussian around a shared mean; one-hot
inh/none/exc with a shared categorical), the Dirichlet prior of the transitions, and the one-hot prior's
Gumbel-softmax relaxation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from brainpipe.models import hmm
from brainpipe.models.switching_glm.data import Batch

PRIORS = ("none", "gaussian", "onehot")
CATEGORIES = ("inh", "none", "exc")


class CouplingPriors:
    """The prior side of :class:`~brainpipe.models.switching_glm.SwitchingGLM` (a mixin): couplings from the
    parameters, log priors, closed-form prior and transition updates, and the one-hot relaxation. Reads the
    hyperparameters ``prior``, ``l2``, ``gaussian_sigma``, ``transition_pseudocount``, ``adjacency_threshold``,
    ``onehot_*``, ``tau_start``/``tau_end``, ``entropy_weight``, ``n_states`` and the M-step methods
    (:class:`~brainpipe.models.switching_glm.mstep.EmissionMSteps`)."""

    def _weights(
        self, p: dict[str, torch.Tensor], hard: bool, tau: float | None, gen: torch.Generator | None
    ):
        """Per-state coupling matrices (S, N, N) from the parameters (one-hot: relaxed or hard)."""
        if self.prior != "onehot" or "logits" not in p:  # free weights, or a one-hot fit loaded from disk
            return p["W"]
        logits = p["logits"]
        if hard:
            a = F.one_hot(logits.argmax(-1), 3).to(logits.dtype)
        else:
            g = -torch.log(
                -torch.log(
                    torch.rand(logits.shape, generator=gen, dtype=logits.dtype)
                    .to(logits.device)
                    .clamp_min(1e-20)
                )
            )
            a = torch.softmax((logits + g) / tau, dim=-1)
        W = (a[..., 2] - a[..., 0]) * F.softplus(p["strength"])
        eye = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
        return W * (1 - eye) + torch.diag_embed(p["self"])

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
                log_norm, gamma, xi = hmm.forward_backward(
                    self._log_lik(q, W, data), p["log_pi"], p["log_A"], data.mask
                )
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
