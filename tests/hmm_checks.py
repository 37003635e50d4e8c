"""Random HMM inputs and the check against the log-space reference, shared by the HMM scan and kernel tests."""

from __future__ import annotations

import numpy as np
import torch

from brainpipe.models import hmm


def random_hmm(rng, B, T, S, spread=2.0):
    """(B, T, S) Gaussian log-likelihoods scaled by ``spread``, and Dirichlet start and transition probabilities
    (as logs, float64 tensors)."""
    ll = torch.tensor(rng.normal(size=(B, T, S)) * spread)
    log_pi = torch.tensor(np.log(rng.dirichlet(np.ones(S))))
    log_A = torch.tensor(np.log(rng.dirichlet(np.ones(S), size=S)))
    return ll, log_pi, log_A


def prefix_mask(T, lengths):
    """(B, T) bool: sequence ``b`` valid on its first ``lengths[b]`` steps."""
    mask = torch.zeros(len(lengths), T, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, :n] = True
    return mask


def assert_matches_reference(ll, log_pi, log_A, lengths, log_norm, gamma, paths) -> np.ndarray:
    """Each sequence's log normaliser (rtol 1e-10), posteriors (atol 1e-10, zero on padding) and Viterbi path
    equal the reference on its valid steps; returns the reference's summed xi for the caller's tolerance."""
    S = ll.shape[-1]
    xi_ref = np.zeros((S, S))
    for b, n in enumerate(lengths):
        z, g, x = hmm.forward_backward_reference(ll[b, :n].numpy(), log_pi.numpy(), log_A.numpy())
        xi_ref += x
        np.testing.assert_allclose(log_norm[b].item(), z, rtol=1e-10)
        np.testing.assert_allclose(gamma[b, :n].numpy(), g, atol=1e-10)
        assert np.all(gamma[b, n:].numpy() == 0)
        np.testing.assert_array_equal(
            np.asarray(paths[b, :n]), hmm.viterbi_reference(ll[b, :n].numpy(), log_pi.numpy(), log_A.numpy())
        )
    return xi_ref
