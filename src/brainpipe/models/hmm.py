"""Exact HMM inference in torch, vectorised over time by parallel prefix scans (no Python loop over time).

The forward and backward recursions of an HMM are products of matrices in the log semiring
``(logsumexp, +)``: with ``M_t[i, j] = log A[i, j] + log p(y_t | z_t = j)``, the forward messages are the
prefix products ``alpha_t = alpha_0 (x) M_1 (x) ... (x) M_t`` and the backward messages suffix products. Both are
computed with a two-level (chunked) scan in about ``2 sqrt(T)`` batched steps, so the cost per EM iteration is
a few hundred small tensor operations whatever the length and number of the sequences (and it runs as well on a
GPU). Padded time steps
(``mask == False``) use the semiring identity and so leave the messages unchanged.

All functions take a batch of sequences: ``log_lik`` is ``(B, T, S)``, ``mask`` ``(B, T)`` bool with the valid
steps of each sequence first. Sequential reference implementations (``*_reference``) exist for tests.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

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


def forward_backward(
    log_lik: torch.Tensor, log_pi: torch.Tensor, log_A: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact posterior of a batch of HMM sequences.

    Returns ``(log_norm, gamma, xi_sum)``: ``log_norm`` (B,) the log marginal likelihood of each sequence;
    ``gamma`` (B, T, S) the posterior state probabilities (zero at padded steps); ``xi_sum`` (S, S) the expected
    transition counts summed over sequences and time.
    """
    B, T, S = log_lik.shape
    mask = _full_mask(log_lik, mask)
    log_alpha0 = log_pi[None, :] + log_lik[:, 0]  # (B, S); every sequence has >= 1 valid step
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
    # xi_t(i, j) = alpha_{t-1}(i) M_t(i, j) beta_t(j) / Z, summed over valid t >= 1
    log_xi = log_alpha[:, :-1, :, None] + mats + log_beta[:, 1:, None, :] - log_norm[:, None, None, None]
    xi_sum = torch.where(mask[:, 1:, None, None], log_xi.exp(), torch.zeros_like(log_xi)).sum(dim=(0, 1))
    return log_norm, gamma, xi_sum


def log_marginal(log_lik: torch.Tensor, log_pi: torch.Tensor, log_A: torch.Tensor, mask: torch.Tensor | None = None):
    """Log marginal likelihood of each sequence (forward pass only), (B,)."""
    mask = _full_mask(log_lik, mask)
    log_alpha0 = log_pi[None, :] + log_lik[:, 0]
    if log_lik.shape[1] == 1:
        return torch.logsumexp(log_alpha0, dim=-1)
    last = _prefix_messages(log_alpha0, _transition_mats(log_lik, log_A, mask)[:, 1:], _log_matmul)[:, -1]
    return torch.logsumexp(last, dim=-1)


def viterbi(log_lik: torch.Tensor, log_pi: torch.Tensor, log_A: torch.Tensor, mask: torch.Tensor | None = None) -> np.ndarray:
    """Most probable state path of each sequence, (B, T) int64 (-1 at padded steps).

    The max-product messages come from the (max, +) chunked scan; back-pointers are then computed for all t at
    once, and only the final back-tracking walks the time axis (integer indexing in numpy).
    """
    B, T, S = log_lik.shape
    mask = _full_mask(log_lik, mask)
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
