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

Modules: :mod:`~brainpipe.models.switching_glm.data` (sequences as padded batches),
:mod:`~brainpipe.models.switching_glm.mstep` (the Poisson data term, Fisher information, Newton and L-BFGS
M-steps), :mod:`~brainpipe.models.switching_glm.priors` (the coupling and transition priors, the one-hot
relaxation) and :mod:`~brainpipe.models.switching_glm.estimator` (:class:`SwitchingGLM`, which combines them);
every name is importable from here.
"""

from brainpipe.models.switching_glm.data import DATA_DTYPES, Batch, SequenceData
from brainpipe.models.switching_glm.estimator import SwitchingGLM
from brainpipe.models.switching_glm.mstep import CHUNK_ELEMENTS, LINKS, M_STEPS, MIN_RATE, EmissionMSteps
from brainpipe.models.switching_glm.priors import CATEGORIES, PRIORS, CouplingPriors

__all__ = [
    "CATEGORIES",
    "CHUNK_ELEMENTS",
    "DATA_DTYPES",
    "LINKS",
    "MIN_RATE",
    "M_STEPS",
    "PRIORS",
    "Batch",
    "CouplingPriors",
    "EmissionMSteps",
    "SequenceData",
    "SwitchingGLM",
]
