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
``onehot``    a spike-and-slab mixture per state and pair: the class ``a_{s,n<-m}`` in (inh, none, exc) is drawn
              from a per-pair categorical ``pi_{n<-m}`` shared across states (Dirichlet hyperprior of mean
              ``onehot_prior_mean``, uniform by default, and concentration ``onehot_prior_concentration``), and
              ``W_{s,n<-m} | a ~ N(-mu, sd^2), N(0, onehot_spike_sd^2), N(+mu, sd^2)`` with the slab's ``mu``, ``sd``
              learned. EM treats the classes as latent: after every M-step their posterior (responsibilities) is
              computed in closed form from the data's Laplace estimate of each weight (one Newton step of the
              data term alone: the weight without the prior's shrinkage, and its sampling variance, which widens
              each class density), then ``pi`` (its MAP) and the slab; the next M-step's prior on each weight
              is the expected log class density under those responsibilities (a Gaussian). Judging the class by
              the data's estimate (a Laplace-EM) keeps a coupling the prior has pulled towards 0 from being held
              there by its own shrunk value (with the fitted weight instead, true couplings of the low-data
              simulator stayed at "none"). Learned jointly from
              the first iteration (the same initialisation as the other priors); the structure is each pair's most
              probable class per state (weights of "none" pairs set to 0), the shared structure ``pi``'s.

Fitting is generalised EM: an exact E-step (:mod:`brainpipe.models.hmm`, batched over sequences, vectorised
over time), closed-form transitions with a Dirichlet pseudo-count (optionally sticky: ``sticky_kappa`` extra
pseudo-counts on each self-transition, Fox et al. 2011, which favours states that persist), and for the emission
parameters a damped Newton
M-step per (state, neuron) with closed-form gradients and a subsampled Fisher information (or L-BFGS,
``m_step``). The per-bin data term runs in ``data_dtype``
(float32 by default) with every sum over bins in float64. Every step raises the MAP objective
(log-likelihood + log prior; one-hot: the log mixture prior and the hyperprior), which ``objective_`` records per
iteration (one-hot: the responsibilities are the Laplace-EM's, not the exact ones at the point estimate, so the
objective can dip slightly). Initialisation: a single-state GLM,
copied to every state with Gaussian noise (``init_noise``); ``n_restarts`` seeds, best training objective kept.
The one-hot prior's mixture starts fitted to these initial weights (no data pass). The structure is read out the
same way for every prior: each weight's class from a class mixture applied to the data's Laplace estimates of the
weights at the fit (:meth:`~brainpipe.models.switching_glm.mstep.EmissionMSteps._laplace_weights`, one more pass
over the data): the one-hot prior's own mixture, or for free weights (``none``, ``gaussian``) the same mixture
fitted post hoc (its spike SD learned, every class density widened by each estimate's sampling variance), or
``adjacency_threshold`` on the fitted weights when set. No threshold is set by hand: a weak but well-measured
coupling counts, a large but noisy one need not.

Modules: :mod:`~brainpipe.models.switching_glm.data` (sequences as padded batches),
:mod:`~brainpipe.models.switching_glm.mstep` (the Poisson data term, Fisher information, Newton and L-BFGS
M-steps), :mod:`~brainpipe.models.switching_glm.priors` (the coupling and transition priors, the one-hot
mixture), :mod:`~brainpipe.models.switching_glm.serialise` (saving a fit as a ``model_fit`` dataset and loading it)
and :mod:`~brainpipe.models.switching_glm.estimator` (:class:`SwitchingGLM`, which combines them);
every name is importable from here.
"""

from brainpipe.models.switching_glm.data import DATA_DTYPES, Batch, SequenceData
from brainpipe.models.switching_glm.estimator import SwitchingGLM
from brainpipe.models.switching_glm.mstep import CHUNK_ELEMENTS, LINKS, M_STEPS, MIN_RATE, EmissionMSteps
from brainpipe.models.switching_glm.priors import CATEGORIES, PRIORS, CouplingPriors
from brainpipe.models.switching_glm.serialise import FitDatasets

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
    "FitDatasets",
    "SequenceData",
    "SwitchingGLM",
]
