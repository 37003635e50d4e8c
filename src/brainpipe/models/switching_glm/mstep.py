"""The switching GLM's emission M-steps: the Poisson data term per block of bins (values and closed-form
gradients), the subsampled Fisher information per (state, neuron), the damped Newton M-step and the L-BFGS
M-step."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from brainpipe.models import _hmm_kernel
from brainpipe.models.switching_glm.data import Batch

LINKS = (
    "softplus",
    "sigmoid",
    "exp",
)  # the rate functions themselves live in _poisson_terms and _fisher_blocks
M_STEPS = ("newton", "lbfgs")
MIN_RATE = 1e-10  # floor on the Poisson rate per bin (keeps log(rate) finite)
CHUNK_ELEMENTS = 1 << 19  # bins x (states x neurons) per block of the data term: a few MB, cache-sized


class EmissionMSteps:
    """The emission side of :class:`~brainpipe.models.switching_glm.SwitchingGLM` (a mixin): the Poisson data
    term, the Fisher information and the M-steps. Reads the hyperparameters ``link``, ``m_step``,
    ``m_step_iter``, ``m_step_min_weight``, ``hessian_rows``, ``newton_iter``, ``tol`` and the priors' methods
    (:class:`~brainpipe.models.switching_glm.priors.CouplingPriors`)."""

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
        fused = self._fused_link(Y) if pd == torch.float64 else None
        for lo in range(0, B * T, step):
            hi = min(lo + step, B * T)
            eta = torch.addmm(b, H[lo:hi], Wt)
            if C:
                eta.addmm_(X[lo:hi], Ut)
            if fused is not None:  # one compiled pass (brainpipe.models._poisson_kernel_src)
                out[lo:hi] = _hmm_kernel.poisson_row_sums(eta, Y[lo:hi].contiguous(), S, fused)
                continue
            term, _ = self._poisson_terms(eta.view(hi - lo, S, N), Y[lo:hi, None, :], grad=False)
            out[lo:hi] = term.sum(-1, dtype=pd)
        log_factorial = (
            data.log_factorial
            if data.log_factorial is not None
            else torch.lgamma(data.counts.to(pd) + 1).sum(-1)
        )
        return (out.view(B, T, S) - log_factorial[:, :, None]) * data.mask[:, :, None]

    def _state_rows(self, data: Batch, gamma: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """Per state, the bins that carry posterior weight: (weights, counts, design ``z = [h, x, 1]`` (history,
        covariates, then the bias's column; :meth:`Batch.valid_design`), weighted design ``g z``), in the data
        dtype: the linear predictors of a block are one matrix product with ``[W, U, b]`` and the whole gradient
        one with the weighted design. The weighted design is None where :meth:`_q_and_grads` uses the compiled
        kernel, which weights the derivative instead.

        Bins whose posterior weight for a state is below ``m_step_min_weight`` are left out of that state's
        M-step (their share of Q is below that weight times the bin's log-likelihood). With sticky states the
        posterior is nearly one-hot, so this cuts the M-step's work by about the number of states.
        """
        valid = data.mask.reshape(-1)
        g = gamma.reshape(valid.shape[0], -1)[valid]
        Y, Z = data.valid_design()
        fused = self._fused_link(Z) is not None  # the kernel weights the derivative itself: no g z needed
        rows = []
        for s in range(g.shape[1]):
            keep = g[:, s] > self.m_step_min_weight
            n_keep = int(keep.sum())
            if (
                n_keep > 0.8 * keep.shape[0]
            ):  # a diffuse posterior: copying the kept bins costs more than it saves
                gs, ys, zs = torch.where(keep, g[:, s], 0.0), Y, Z
            else:
                idx = torch.nonzero(keep).squeeze(1)
                gs, ys, zs = g[idx, s], Y[idx], Z[idx]
            rows.append((gs, ys, zs, None if fused else zs * gs.to(Z.dtype)[:, None]))
        return rows

    def _q_and_grads(self, W, b, U, rows, grad: bool = True):
        """Expected complete-data log-likelihood (without the constant log y!) per (state, neuron), (S, N), and its
        gradients w.r.t. the per-state weights, biases and covariate weights (with ``grad``; else None), in closed
        form, block by block over the bins.

        The linear predictors, rates and derivatives are computed in the data dtype; every sum over bins is
        accumulated in the parameters' dtype (value, gradients). Per block: one matrix product for the linear
        predictors of ``[W, U, b]`` and one for the whole gradient (:meth:`_state_rows`' designs).
        """
        N, C = W.shape[-1], U.shape[-1]
        value = torch.zeros_like(
            b
        )  # per (state, neuron): the M-step's objective is a sum of independent parts
        full = torch.zeros(*b.shape, N + C + 1, dtype=b.dtype, device=b.device) if grad else None
        for s, (g, Y, Z, Zg) in enumerate(rows):
            dd = Z.dtype
            theta_t = torch.cat([W[s], U[s], b[s, :, None]], 1).T.to(dd)
            gd = g.to(dd)
            fused = self._fused_link(Z) if Zg is None else None
            if fused is None and Zg is None:  # rows built for the kernel, which is no longer there
                Zg = Z * gd[:, None]
            step = max(1, CHUNK_ELEMENTS // N)
            if fused is not None:  # the weighted derivative's workspace, reused by every block
                work = torch.empty(min(step, g.shape[0]) if grad else 0, N, dtype=dd, device=Z.device)
            for lo in range(0, g.shape[0], step):
                hi = min(lo + step, g.shape[0])
                eta = Z[lo:hi] @ theta_t
                if fused is not None:  # one compiled pass: the weighted value and g_t d_t
                    gdt = work[: hi - lo] if grad else work
                    v = _hmm_kernel.poisson_value_grad(
                        eta, Y[lo:hi].contiguous(), gd[lo:hi].contiguous(), fused, gdt
                    )
                    value[s] += v.to(value.dtype)
                    if grad:  # sum_t (g_t d_t) [h_t, x_t, 1]
                        full[s] += (gdt.T @ Z[lo:hi]).to(full.dtype)
                    continue
                term, d = self._poisson_terms(eta, Y[lo:hi], grad=grad)
                value[s] += torch.mv(term.T, gd[lo:hi]).to(value.dtype)
                if grad:  # sum_t d_t (g_t [h_t, x_t, 1])
                    full[s] += (d.T @ Zg[lo:hi]).to(full.dtype)
        if not grad:
            return value, None, None, None
        return value, full[..., :N], full[..., N + C], full[..., N : N + C]

    def _fused_link(self, Z: torch.Tensor) -> int | None:
        """The compiled kernel's code for this link (0 softplus, 1 sigmoid, 2 exp) where :meth:`_q_and_grads` can
        use the fused Poisson data term (:mod:`brainpipe.models._poisson_kernel_src`: float32 data on the CPU, the
        kernel built and not disabled by ``BRAINPIPE_HMM_KERNEL=torch``); None: the torch operations of
        :meth:`_poisson_terms`. The two agree to float32 rounding (about 1e-6 relative)."""
        if Z.dtype != torch.float32 or not _hmm_kernel.usable(Z):
            return None
        return {"softplus": 0, "sigmoid": 1, "exp": 2}[self.link]

    def _loss_and_grad(
        self, q: dict, rows, scale: float, hard: bool, tau=None, gen=None, extra=None
    ) -> torch.Tensor:
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
        """The emission M-step: Newton (``m_step="newton"``) or L-BFGS, on the free parameters with each prior's
        Gaussian form (the one-hot prior's: the expected log class density under the current responsibilities)."""
        if self.m_step == "newton" and sorted(names) == ["U", "W", "b"]:
            self._m_step_newton(p, data, gamma)
        else:
            self._m_step_lbfgs(p, names, data, gamma, hard)

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
        for g, Y, ZZ, _ in rows:
            n = g.shape[0]
            H, X = ZZ[:, : Y.shape[1]], ZZ[:, Y.shape[1] : -1]  # the design is [history, covariates, 1]
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
    #: the one-hot prior's responsibilities from the data's Laplace estimates after each Newton M-step (a
    #: Laplace-EM; False: at the point estimate, exact EM)
    _laplace_em = True

    def _m_step_newton(self, p, data: Batch, gamma: torch.Tensor) -> None:
        """Newton M-step, independently for each (state, neuron): the expected complete-data log-likelihood plus
        the log prior is a sum of one Poisson GLM per (state, neuron) over ``theta = [W_sn, b_sn, U_sn]``
        (the Gaussian prior's shared mean and the one-hot prior's class responsibilities are held fixed during the
        M-step).

        Each step costs one pass over the data (exact values and gradients, :meth:`_q_and_grads`; one more pass
        at the start; the last step's pass computes the values only, its gradient would not be used): the direction solves with the Fisher information (:meth:`_fisher_blocks`, estimated from a
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

        laplace = self.prior == "onehot" and self._laplace_em  # needs the gradient at the final parameters

        def evaluate(theta, grad: bool = True):
            value, dW, db, dU = self._q_and_grads(
                theta[..., :N], theta[..., N], theta[..., N + 1 :], rows, grad
            )
            diff = theta - mean
            value = value - 0.5 * (prec * diff**2).sum(-1)
            if not grad:
                return value, None
            return value, torch.cat([dW, db[..., None], dU], -1) - prec * diff

        theta = torch.cat([W, b[..., None], U], -1)
        value, grad = evaluate(theta)
        prior_h = torch.diag_embed(prec)
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
            last = it + 1 == self.newton_iter
            # the last step's gradient is never used (no further direction): its pass computes the values only
            v_new, g_new = evaluate(trial, grad=not last or laplace)
            ok = v_new >= value + 1e-4 * gain
            theta = torch.where(ok[..., None], trial, theta)
            value = torch.where(ok, v_new, value)
            if g_new is not None:
                grad = torch.where(ok[..., None], g_new, grad)
            damp = torch.where(ok, damp * self._lm_down, damp * self._lm_up).clamp(1e-12, 1e12)
            if last:
                break  # no further step: skip its Fisher information and direction
            if bool(ok.any()):  # the Fisher information where the parameters moved
                info = torch.where(ok[..., None, None], self._fisher_blocks(theta, design) + prior_h, info)
            direction = solve(info, damp, grad)
        if laplace:  # the one-hot prior's responsibilities then judge the data's estimates
            p["W_lap"], p["W_var"] = self._data_laplace(
                theta, grad + prec * (theta - mean), info - prior_h, N
            )
        p["W"], p["b"], p["U"] = (
            theta[..., :N].contiguous(),
            theta[..., N].contiguous(),
            theta[..., N + 1 :].contiguous(),
        )

    @torch.no_grad()
    def _laplace_weights(self, p, data: Batch, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The data's own estimate of each coupling and its sampling variance, from a Laplace approximation of the
        expected complete-data log-likelihood of each (state, neuron) at the fitted parameters: one Newton step on
        the data term alone (no prior; the Fisher information with an ``l2`` ridge), ``theta + I^-1 g``, and the
        diagonal of ``I^-1``. For a fit without prior this is the fit itself with its standard errors; for a prior
        fit it undoes the prior's shrinkage, so the structure read-out weighs every fit's data alike.

        Returns
        -------
        tuple of torch.Tensor
            (S, N, N) estimates and (S, N, N) variances of the couplings (post x pre).
        """
        W, b, U = p["W"], p["b"], p["U"]
        rows = self._state_rows(data, gamma)
        theta = torch.cat([W, b[..., None], U], -1)
        _, dW, db, dU = self._q_and_grads(W, b, U, rows)
        grad = torch.cat([dW, db[..., None], dU], -1)
        info = self._fisher_blocks(theta, self._fisher_design(rows, theta.shape[-1]))
        return self._data_laplace(theta, grad, info, W.shape[-1])

    def _data_laplace(self, theta, grad, info, N: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``theta + I^-1 grad`` and ``diag(I^-1)`` of the couplings (the first ``N`` parameters), in float64 with a
        ridge of ``l2`` (at least 1e-8 of the information's mean diagonal) where the information is singular."""
        info = info.double()
        eye = torch.eye(info.shape[-1], dtype=info.dtype, device=info.device)
        diag = torch.diagonal(info, dim1=-2, dim2=-1)
        ridge = torch.maximum(diag.mean(-1) * 1e-8, diag.new_tensor(self.l2)).clamp_min(1e-12)
        chol = torch.linalg.cholesky_ex(info + ridge[..., None, None] * eye)[0]
        step = torch.cholesky_solve(grad.double()[..., None], chol)[..., 0]
        cov_diag = torch.diagonal(torch.cholesky_inverse(chol), dim1=-2, dim2=-1)
        return theta[..., :N] + step[..., :N].to(theta.dtype), cov_diag[..., :N].to(theta.dtype)

    def _m_step_lbfgs(self, p, names, data: Batch, gamma: torch.Tensor, hard: bool) -> None:
        """L-BFGS on -(Q + log prior) / n_bins (see :meth:`_loss_and_grad`)."""
        params = [p[k].detach().clone().requires_grad_(True) for k in names]
        scale = 1.0 / max(data.n_bins, 1)
        rows = self._state_rows(data, gamma)
        opt = torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=self.m_step_iter,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
        )

        def closure():
            opt.zero_grad()
            q = dict(p)
            q.update(zip(names, params, strict=True))
            return self._loss_and_grad(q, rows, scale, hard)

        opt.step(closure)
        for k, v in zip(names, params, strict=True):
            p[k] = v.detach()
