"""Exact HMM inference in torch, vectorised over time by chunked prefix scans (no Python loop over time steps).

The forward and backward recursions of an HMM are products of matrices: with ``M_t = A diag(p(y_t | z_t))``, the
forward messages are the prefix products ``alpha_t = alpha_0 M_1 ... M_t`` and the backward messages suffix
products. Both are computed with a two-level (chunked) scan in about ``2 sqrt(T)`` batched steps, so the cost
per EM iteration is a few hundred small tensor operations whatever the length and number of the sequences (and
it runs as well on a GPU). :func:`forward_backward` and :func:`log_marginal` work in the linear domain with
scaling (each step's likelihoods divided by their maximum, running products rescaled row by row, logs of the
scales kept), falling back to the log semiring ``(logsumexp, +)`` where that could lose precision;
:func:`viterbi` uses the ``(max, +)`` semiring. Padded time steps (``mask == False``) use the identity and so
leave the messages unchanged.

On the CPU the scans' many small tensor operations cost more than the arithmetic, so CPU tensors (without
autograd through them) go to a compiled kernel instead (:mod:`brainpipe.models._hmm_kernel`: the plain scaled
recursions over time in C++, sequences in parallel, float64; built once on first use and cached). The scans
remain the GPU path (outputs stay on the input's device) and the CPU fallback when the kernel cannot be built
(one warning) or ``BRAINPIPE_HMM_KERNEL=torch`` is set.

All functions take a batch of sequences: ``log_lik`` is ``(B, T, S)``, ``mask`` ``(B, T)`` bool with the valid
steps of each sequence first. Sequential reference implementations (``*_reference``) exist for tests.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from brainpipe.models import _hmm_kernel

NEG_INF = -1e30  # finite "log 0": keeps gradients and logsumexp free of NaN


def _log_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., S, S) x (..., S, S) in the log semiring."""
    return torch.logsumexp(a.unsqueeze(-1) + b.unsqueeze(-3), dim=-2)


def _max_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.amax(a.unsqueeze(-1) + b.unsqueeze(-3), dim=-2)


_VEC = {_log_matmul: torch.logsumexp, _max_matmul: torch.amax}


def _identity(S: int, like: torch.Tensor) -> torch.Tensor:
    eye = torch.full((S, S), NEG_INF, dtype=like.dtype, device=like.device)
    eye.diagonal().zero_()
    return eye


@contextlib.contextmanager
def _one_thread(t: torch.Tensor):
    """The scan's sequential steps are tiny tensor operations: on CPU, intra-op threads only add overhead, and
    when the cores are shared they spin-wait at every step (measured: 10-70x slower). Run them on one thread."""
    if t.device.type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


#: Inputs of at least this many log-likelihood values run the kernel's sequences in parallel on the caller's
#: torch threads; smaller ones on one thread: a parallel region's static halves wait for each other, and on shared
#: cores the wait for a descheduled thread costs more than the work (measured under load, B=4, T=5000, S=3: 13 ms
#: median on 2 threads against 1.1 ms on one; idle: 0.6 ms against 1.0 ms).
KERNEL_PARALLEL_MIN = 2_000_000


def _parallel(log_lik: torch.Tensor) -> bool:
    return log_lik.numel() >= KERNEL_PARALLEL_MIN and torch.get_num_threads() > 1


def _prefix_messages(v0: torch.Tensor, mats: torch.Tensor, op, chunk: int | None = None) -> torch.Tensor:
    """Messages ``v_t = v0 (x) M_1 (x) ... (x) M_t`` for t = 1..T in semiring ``op``; (B, T, S).

    Two-level (chunked) scan: the T steps are cut into C chunks of length L ~ sqrt(T); the products within all
    chunks advance together (L batched steps), then the message is carried across chunk boundaries (C batched
    steps), and one vectorised product gives every step's message. O(T S^3) work in O(sqrt(T)) Python steps.
    """
    reduce = _VEC[op]
    B, T, S, _ = mats.shape
    L = chunk or max(1, int(math.ceil(math.sqrt(T))))
    C = -(-T // L)
    if C * L > T:
        mats = torch.cat([mats, _identity(S, mats).expand(B, C * L - T, S, S)], dim=1)
    m = mats.view(B, C, L, S, S)
    within = torch.empty_like(m)
    starts = torch.empty(B, C, S, dtype=v0.dtype, device=v0.device)
    with _one_thread(mats):
        acc = m[:, :, 0]
        within[:, :, 0] = acc
        for step in range(1, L):
            acc = op(acc, m[:, :, step])
            within[:, :, step] = acc
        v = v0
        for c in range(C):
            starts[:, c] = v
            v = reduce(v[:, :, None] + within[:, c, -1], dim=1)
    out = reduce(starts[:, :, None, :, None] + within, dim=3)  # (B, C, L, S)
    return out.reshape(B, C * L, S)[:, :T]


def _suffix_messages(mats: torch.Tensor, op, chunk: int | None = None) -> torch.Tensor:
    """Messages ``u_t = M_t (x) ... (x) M_T (x) 1`` for t = 1..T; (B, T, S)."""
    flipped = mats.flip(1).transpose(-1, -2)
    zero = torch.zeros(mats.shape[0], mats.shape[-1], dtype=mats.dtype, device=mats.device)
    return _prefix_messages(zero, flipped, op, chunk).flip(1)


def _transition_mats(log_lik: torch.Tensor, log_A: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    B, T, S = log_lik.shape
    mats = log_A.view(1, 1, S, S) + log_lik[:, :, None, :]
    return torch.where(mask[:, :, None, None], mats, _identity(S, log_lik))


def _full_mask(log_lik: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.ones(log_lik.shape[:2], dtype=torch.bool, device=log_lik.device)
    return mask


def _scaled_products(mats: torch.Tensor, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Running products within chunks, in the linear domain with one scale per row.

    ``mats`` (B, T, S, S) non-negative. The T steps are cut into C chunks of length L ~ sqrt(T) (padded with
    identities); returns ``within`` (L, B, C, S, S), the products ``M_{c,1} ... M_{c,l}`` with each row divided by
    its largest entry, and ``log_scale`` (L, B, C, S), the log of what each row was divided by. A row is the
    chunk's start state: scaling rows apart keeps an unlikely start state from underflowing next to a likely one
    (its end states are fed again through the transitions, as in a scaled forward recursion). All chunks advance
    together: L batched S x S matrix products, the only Python loop over time.
    """
    B, T, S, _ = mats.shape
    L = chunk or max(1, int(math.ceil(math.sqrt(T))))
    C = -(-T // L)
    eye = torch.eye(S, dtype=mats.dtype, device=mats.device)
    if C * L > T:
        mats = torch.cat([mats, eye.expand(B, C * L - T, S, S)], dim=1)
    m = mats.view(B, C, L, S, S).permute(2, 0, 1, 3, 4).contiguous()  # (L, B, C, S, S): each step contiguous
    within = torch.empty_like(m)
    log_scale = torch.empty(L, B, C, S, dtype=mats.dtype, device=mats.device)
    tiny = torch.finfo(mats.dtype).tiny
    with _one_thread(mats):
        for step in range(L):
            acc = within[step]
            if step:
                torch.matmul(within[step - 1], m[step], out=acc)
            else:
                acc.copy_(m[0])
            top = acc.amax(dim=-1).clamp_min_(tiny)
            acc.div_(top[..., None])
            torch.log(top, out=log_scale[step])
            if step:
                log_scale[step] += log_scale[step - 1]
    return within, log_scale


def _scaled_messages(v0: torch.Tensor, mats: torch.Tensor, chunk: int | None = None):
    """Messages ``v_t = v0 M_1 ... M_t`` (t = 1..T) in the linear domain, each rescaled to a maximum of 1,
    (B, T, S), and the log of the last message's sum, log(sum_s v_T(s)), (B,) (``v0`` need not be normalised)."""
    B, T, S, _ = mats.shape
    within, log_scale = _scaled_products(mats, chunk)
    L, _, C = within.shape[:3]
    log_starts = torch.empty(B, C, S, dtype=mats.dtype, device=mats.device)
    with _one_thread(mats):
        log_v = torch.log(v0)
        for c in range(C):  # carry across chunks: v <- v diag(exp(scale)) Q, with the scales in log space
            log_starts[:, c] = log_v
            lw = log_v + log_scale[-1, :, c]
            top = lw.amax(-1, keepdim=True)
            v = torch.matmul(torch.exp(lw - top)[:, None], within[-1, :, c])[:, 0]
            log_v = torch.log(v) + top
    log_last = torch.logsumexp(log_v, -1)
    lw = log_starts[None] + log_scale  # (L, B, C, S): start state i, with its row scale
    w = torch.exp(lw - lw.amax(-1, keepdim=True))
    out = torch.einsum("lbci,lbcik->bclk", w, within).reshape(B, C * L, S)[:, :T]
    return out / out.amax(-1, keepdim=True), log_last


def _emission_factors(log_lik: torch.Tensor, log_A: torch.Tensor, mask: torch.Tensor):
    """Per-step shifts ``c_t = max_s log_lik`` (0 at padding), likelihood factors ``P_t = exp(log_lik_t - c_t)``
    in [0, 1] (1 at padding) and linear transition matrices ``M_t = A diag(P_t)`` (identity at padding)."""
    S = log_lik.shape[-1]
    shift = torch.where(mask, log_lik.amax(-1), torch.zeros_like(log_lik[..., 0]))
    P = torch.where(mask[..., None], torch.exp(log_lik - shift[..., None]), torch.ones_like(log_lik))
    A = torch.exp(log_A)
    eye = torch.eye(S, dtype=log_lik.dtype, device=log_lik.device)
    mats = torch.where(mask[..., None, None], A * P[..., None, :], eye)
    return shift, P, mats


def _linear_domain_ok(log_pi: torch.Tensor, log_A: torch.Tensor) -> bool:
    """Whether the scaled linear-domain recursions are exact for these transitions: a state whose probability
    underflows is fed again through the transitions, which bounds the error by (smallest positive number) /
    (smallest transition or initial probability). Below sqrt(tiny) (1e-154 in float64, 1e-19 in float32: never
    for fitted transitions, which have a pseudo-count) the log semiring is used instead."""
    floor = 0.5 * math.log(torch.finfo(log_A.dtype).tiny)
    return bool(log_A.min() >= floor) and bool(log_pi.min() >= floor)


def forward_backward(
    log_lik: torch.Tensor, log_pi: torch.Tensor, log_A: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact posterior of a batch of HMM sequences.

    Returns ``(log_norm, gamma, xi_sum)``: ``log_norm`` (B,) the log marginal likelihood of each sequence;
    ``gamma`` (B, T, S) the posterior state probabilities (zero at padded steps); ``xi_sum`` (S, S) the expected
    transition counts summed over sequences and time.

    Scaled forward-backward in the linear domain: each step's likelihoods are divided by their maximum over
    states (``c_t``, added back to the log normaliser) and every running product is rescaled row by row, with
    the log scales kept. Posteriors need no global normaliser: ``gamma_t`` is ``alpha_t beta_t`` renormalised per
    step, and ``xi_t`` likewise. On CPU tensors the compiled kernel runs the same recursions sequentially over
    time (see the module docstring); elsewhere the chunked scans. With transition or initial probabilities below
    sqrt(tiny) (see :func:`_linear_domain_ok`), or a result that is not finite, the call is done in the log
    semiring instead.
    """
    mask = _full_mask(log_lik, mask)
    if not _linear_domain_ok(log_pi, log_A):
        return _forward_backward_log(log_lik, log_pi, log_A, mask)
    if _hmm_kernel.usable(log_lik, log_pi, log_A):
        log_norm, gamma, xi = _hmm_kernel.forward_backward(log_lik, log_pi, log_A, mask, _parallel(log_lik))
        out = log_norm.to(log_lik.dtype), gamma.to(log_lik.dtype), xi.sum(0).to(log_lik.dtype)
        check = (
            out[0],
            out[2],
        )  # gamma is finite when these are (every normaliser is >= min(A), see _hmm_kernel)
    else:
        out = check = _forward_backward_scan(log_lik, log_pi, log_A, mask)
    if not all(bool(torch.isfinite(x).all()) for x in check):
        return _forward_backward_log(log_lik, log_pi, log_A, mask)
    return out


def _forward_backward_scan(log_lik, log_pi, log_A, mask):
    """:func:`forward_backward` by the chunked scaled linear-domain scans (the GPU path, and the CPU fallback)."""
    B, T, S = log_lik.shape
    shift, P, mats = _emission_factors(log_lik, log_A, mask)
    a0 = torch.exp(log_pi)[None, :] * P[:, 0]  # (B, S); every sequence has >= 1 valid step
    if T == 1:
        z = a0.sum(-1)
        return (
            torch.log(z) + shift[:, 0],
            (a0 / z[:, None])[:, None],
            torch.zeros(S, S, dtype=log_lik.dtype, device=log_lik.device),
        )
    steps = mats[:, 1:]  # M_1 .. M_{T-1}
    alpha_rest, log_last = _scaled_messages(a0, steps)
    alpha = torch.cat([(a0 / a0.amax(-1, keepdim=True))[:, None], alpha_rest], dim=1)
    ones = torch.ones(B, S, dtype=log_lik.dtype, device=log_lik.device)
    beta_rest, _ = _scaled_messages(ones, steps.flip(1).transpose(-1, -2))
    beta = torch.cat([beta_rest.flip(1), ones[:, None]], dim=1)
    log_norm = log_last + shift.sum(1)
    post = alpha * beta
    gamma = post / post.sum(-1, keepdim=True)
    gamma = torch.where(mask[:, :, None], gamma, torch.zeros_like(gamma))
    # xi_t(i, j) ~ alpha_{t-1}(i) M_t(i, j) beta_t(j), renormalised per step; summed over valid t >= 1
    xi = alpha[:, :-1, :, None] * steps * beta[:, 1:, None, :]
    xi = xi / xi.sum((-2, -1), keepdim=True)
    xi_sum = torch.where(mask[:, 1:, None, None], xi, torch.zeros_like(xi)).sum(dim=(0, 1))
    return log_norm, gamma, xi_sum


def log_marginal(
    log_lik: torch.Tensor, log_pi: torch.Tensor, log_A: torch.Tensor, mask: torch.Tensor | None = None
):
    """Log marginal likelihood of each sequence (forward pass only), (B,); linear domain as
    :func:`forward_backward`, with the same fallback to the log semiring."""
    mask = _full_mask(log_lik, mask)
    if not _linear_domain_ok(log_pi, log_A):
        return _log_marginal_log(log_lik, log_pi, log_A, mask)
    if _hmm_kernel.usable(log_lik, log_pi, log_A):
        out = _hmm_kernel.log_marginal(log_lik, log_pi, log_A, mask, _parallel(log_lik)).to(log_lik.dtype)
    else:
        out = _log_marginal_scan(log_lik, log_pi, log_A, mask)
    if not bool(torch.isfinite(out).all()):
        return _log_marginal_log(log_lik, log_pi, log_A, mask)
    return out


def _log_marginal_scan(log_lik, log_pi, log_A, mask):
    shift, P, mats = _emission_factors(log_lik, log_A, mask)
    a0 = torch.exp(log_pi)[None, :] * P[:, 0]
    if log_lik.shape[1] == 1:
        out = torch.log(a0.sum(-1)) + shift[:, 0]
    else:
        out = _scaled_messages(a0, mats[:, 1:])[1] + shift.sum(1)
    return out


def _forward_backward_log(log_lik, log_pi, log_A, mask):
    """:func:`forward_backward` in the log semiring (slower; exact whatever the dynamic range)."""
    B, T, S = log_lik.shape
    log_alpha0 = log_pi[None, :] + log_lik[:, 0]
    if T == 1:
        log_norm = torch.logsumexp(log_alpha0, dim=-1)
        gamma = torch.exp(log_alpha0 - log_norm[:, None])[:, None]
        return log_norm, gamma, torch.zeros(S, S, dtype=log_lik.dtype, device=log_lik.device)
    mats = _transition_mats(log_lik, log_A, mask)[:, 1:]  # M_1 .. M_{T-1}
    log_alpha = torch.cat([log_alpha0[:, None], _prefix_messages(log_alpha0, mats, _log_matmul)], dim=1)
    log_beta = torch.cat([_suffix_messages(mats, _log_matmul), torch.zeros_like(log_alpha0)[:, None]], dim=1)
    log_norm = torch.logsumexp(log_alpha[:, -1], dim=-1)
    log_gamma = log_alpha + log_beta - log_norm[:, None, None]
    gamma = torch.where(mask[:, :, None], log_gamma.exp(), torch.zeros_like(log_gamma))
    log_xi = log_alpha[:, :-1, :, None] + mats + log_beta[:, 1:, None, :] - log_norm[:, None, None, None]
    xi_sum = torch.where(mask[:, 1:, None, None], log_xi.exp(), torch.zeros_like(log_xi)).sum(dim=(0, 1))
    return log_norm, gamma, xi_sum


def _log_marginal_log(log_lik, log_pi, log_A, mask):
    log_alpha0 = log_pi[None, :] + log_lik[:, 0]
    if log_lik.shape[1] == 1:
        return torch.logsumexp(log_alpha0, dim=-1)
    last = _prefix_messages(log_alpha0, _transition_mats(log_lik, log_A, mask)[:, 1:], _log_matmul)[:, -1]
    return torch.logsumexp(last, dim=-1)


def viterbi(
    log_lik: torch.Tensor, log_pi: torch.Tensor, log_A: torch.Tensor, mask: torch.Tensor | None = None
) -> np.ndarray:
    """Most probable state path of each sequence, (B, T) int64 (-1 at padded steps).

    The max-product messages come from the (max, +) chunked scan; back-pointers are then computed for all t at
    once, and only the final back-tracking walks the time axis (integer indexing in numpy).
    """
    mask = _full_mask(log_lik, mask)
    if _hmm_kernel.usable(log_lik, log_pi, log_A):
        return _hmm_kernel.viterbi(log_lik, log_pi, log_A, mask, _parallel(log_lik)).numpy()
    return _viterbi_scan(log_lik, log_pi, log_A, mask)


def _viterbi_scan(log_lik, log_pi, log_A, mask) -> np.ndarray:
    """:func:`viterbi` by the (max, +) chunked scan (the GPU path, and the CPU fallback)."""
    B, T, S = log_lik.shape
    delta0 = log_pi[None, :] + log_lik[:, 0]
    if T > 1:
        mats = _transition_mats(log_lik, log_A, mask)[:, 1:]
        delta = torch.cat([delta0[:, None], _prefix_messages(delta0, mats, _max_matmul)], dim=1)
        back = torch.argmax(delta[:, :-1, :, None] + log_A[None, None], dim=2).cpu().numpy()  # (B, T-1, S)
    else:
        delta = delta0[:, None]
        back = np.zeros((B, 0, S), dtype=np.int64)
    delta_np = delta.detach().cpu().numpy()
    lengths = mask.sum(dim=1).cpu().numpy()
    paths = np.full((B, T), -1, dtype=np.int64)
    for b in range(B):
        n = int(lengths[b])
        z = int(np.argmax(delta_np[b, n - 1]))
        paths[b, n - 1] = z
        for t in range(n - 1, 0, -1):
            z = int(back[b, t - 1, z])
            paths[b, t - 1] = z
    return paths


# -- sequential references (tests only) --------------------------------------------------------------------
def forward_backward_reference(log_lik: np.ndarray, log_pi: np.ndarray, log_A: np.ndarray):
    """Plain log-space forward-backward for one sequence (T, S): (log_norm, gamma, xi_sum)."""
    from scipy.special import logsumexp

    T, S = log_lik.shape
    la = np.zeros((T, S))
    lb = np.zeros((T, S))
    la[0] = log_pi + log_lik[0]
    for t in range(1, T):
        la[t] = logsumexp(la[t - 1][:, None] + log_A, axis=0) + log_lik[t]
    for t in range(T - 2, -1, -1):
        lb[t] = logsumexp(log_A + (log_lik[t + 1] + lb[t + 1])[None, :], axis=1)
    z = logsumexp(la[-1])
    gamma = np.exp(la + lb - z)
    xi = np.zeros((S, S))
    for t in range(1, T):
        xi += np.exp(la[t - 1][:, None] + log_A + (log_lik[t] + lb[t])[None, :] - z)
    return z, gamma, xi


def viterbi_reference(log_lik: np.ndarray, log_pi: np.ndarray, log_A: np.ndarray) -> np.ndarray:
    T, S = log_lik.shape
    d = log_pi + log_lik[0]
    ptr = np.zeros((T, S), dtype=int)
    for t in range(1, T):
        cand = d[:, None] + log_A
        ptr[t] = np.argmax(cand, axis=0)
        d = cand.max(axis=0) + log_lik[t]
    path = np.zeros(T, dtype=int)
    path[-1] = int(np.argmax(d))
    for t in range(T - 1, 0, -1):
        path[t - 1] = ptr[t, path[t]]
    return path
