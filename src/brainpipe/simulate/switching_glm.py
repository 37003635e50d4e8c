"""K-state switching Poisson GLM network (HMM-GLM) with a shared one-hot connectivity prior."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr

from brainpipe.errors import ConfigError
from brainpipe.simulate.base import Simulation, register, spike_times_from_counts

CATEGORIES = ("inh", "none", "exc")


def exp_basis(n_bins: int, decay: float = 1.0) -> np.ndarray:
    """Exponential history kernel over the last ``n_bins`` bins, most recent first, summing to 1."""
    phi = np.exp(-decay * np.arange(n_bins, dtype=np.float64))
    return phi / phi.sum()


def history_features(counts: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``h[t] = sum_k phi[k] * counts[t - 1 - k]`` for one sequence (T, N); zeros before the start."""
    T = counts.shape[0]
    h = np.zeros(counts.shape, dtype=np.float64)
    for k, w in enumerate(phi):
        if k + 1 < T:
            h[k + 1 :] += w * counts[: T - k - 1]
    return h


LINKS = {
    "softplus": lambda x: np.logaddexp(0.0, x),
    "sigmoid": lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)),
    "exp": np.exp,
}


@dataclass
class SwitchingGLMParams:
    """Parameters of :func:`switching_glm_network` (bins of ``dt_s`` seconds).

    A sticky Markov chain over states; per-state couplings drawn from a shared one-hot prior over inhibitory / none
    / excitatory per pair; planted states, weights, structure and prior in ``truth.nc``; sequences concatenated in
    time, each its own trial: the training sequences, then ``n_validation_sequences`` forming the validation split,
    then ``n_test_sequences`` forming the test split.

    Parameters
    ----------
    n_neurons : int
        Number of neurons (>= 2).
    n_states : int
        Number of hidden states.
    n_sequences : int
        Training sequences.
    n_test_sequences : int
        Test sequences (after the training and validation ones).
    n_validation_sequences : int
        Validation sequences (after the training ones), for choosing hyperparameters.
    sequence_length : int
        Bins per sequence.
    dt_s : float
        Bin width (s); bin the data at this width.
    stay_probability : float
        Diagonal of the transition matrix (the rest of each row is spread evenly).
    prior_concentration : float
        Concentration of the Dirichlet of the shared per-pair (inh, none, exc) prior.
    prior_mean : tuple of float
        Mean (inh, none, exc) of that Dirichlet.
    strength_min, strength_max : float
        Range of the coupling strengths.
    bias_min, bias_max : float
        Range of the per-state biases (pre-link).
    self_history_weight : float
        Each neuron's own history weight.
    history_bins : int
        Length of the exponential history basis, in bins.
    history_decay : float
        Decay per bin of the exponential history basis.
    link : str
        ``sigmoid`` (bounded: cannot run away), ``softplus`` or ``exp``.
    max_count : int
        Cap on counts per bin (only reached with unbounded links; the number capped is saved).
    """

    n_neurons: int = 10
    n_states: int = 3
    n_sequences: int = 20
    n_test_sequences: int = 5
    n_validation_sequences: int = 0
    sequence_length: int = 1000
    dt_s: float = 0.02
    stay_probability: float = 0.98
    prior_concentration: float = 2.0
    prior_mean: tuple[float, float, float] = (0.1, 0.8, 0.1)
    strength_min: float = 1.0
    strength_max: float = 3.0
    bias_min: float = -1.5
    bias_max: float = -0.5
    self_history_weight: float = -1.0
    history_bins: int = 5
    history_decay: float = 1.0
    link: str = "sigmoid"
    max_count: int = 20

    def memory_bytes(self) -> tuple[float, str]:
        """Estimated peak allocation (bytes) and the keys that drive it: float64 (bin, neuron) arrays over every
        sequence and the per-state coupling."""
        n = float(self.n_neurons)
        bins = float(self.n_sequences + self.n_validation_sequences + self.n_test_sequences)
        bins *= float(self.sequence_length)
        return 8.0 * (6 * bins * n + 3 * self.n_states * n * n), "n_neurons x n_sequences x sequence_length"

    def __post_init__(self):
        self.prior_mean = tuple(float(x) for x in self.prior_mean)
        checks = [
            (self.n_neurons >= 2 and self.n_states >= 1, "need n_neurons >= 2 and n_states >= 1"),
            (
                self.n_sequences >= 1 and self.n_test_sequences >= 0 and self.n_validation_sequences >= 0,
                "need n_sequences >= 1, n_validation_sequences >= 0, n_test_sequences >= 0",
            ),
            (self.sequence_length >= 2 and self.dt_s > 0, "need sequence_length >= 2 and dt_s > 0"),
            (0 <= self.stay_probability <= 1, "stay_probability must be in [0, 1]"),
            (
                len(self.prior_mean) == 3 and min(self.prior_mean) > 0,
                "prior_mean: three positive weights (inh, none, exc)",
            ),
            (self.prior_concentration > 0, "prior_concentration must be > 0"),
            (0 <= self.strength_min <= self.strength_max, "need 0 <= strength_min <= strength_max"),
            (self.bias_min <= self.bias_max, "need bias_min <= bias_max"),
            (self.history_bins >= 1 and self.history_decay > 0, "need history_bins >= 1, history_decay > 0"),
            (self.max_count >= 1, "max_count must be >= 1"),
            (self.link in LINKS, f"link must be one of {', '.join(LINKS)}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"simulator 'switching_glm_network': {msg}")


@register("switching_glm_network", SwitchingGLMParams, modality="spikes")
def switching_glm_network(p: SwitchingGLMParams, seed: int) -> Simulation:
    """Switching Poisson GLM network: a sticky Markov chain over states, per-state one-hot couplings.

    Generative model (per bin ``t`` of a sequence, neuron ``n``)::

        z_1 ~ Uniform(S);  z_t | z_{t-1} ~ A  (stay probability on the diagonal, the rest spread evenly)
        pi_{n<-m} ~ Dirichlet(prior_concentration * prior_mean)      shared across states: the "connectome"
        a_{s,n<-m} ~ Categorical(pi_{n<-m}) over (inh, none, exc)    per state; no self-pairs
        W_{s,n<-m} = sign(a) * Uniform(strength_min, strength_max);  W_{s,n<-n} = self_history_weight
        y_{t,n} ~ Poisson(f(b_{s,n} + sum_m W_{z_t,n<-m} h_{t,m})),  h = exponential history (history_bins)

    with link ``f`` sigmoid by default (at most one expected spike per bin, so strong excitation cannot run
    away; with softplus or exp it can, and counts are then capped at ``max_count``, the number of capped values
    being saved in the truth's attrs). Sequences start from empty history. The first ``n_sequences`` sequences are the train
    split, the next ``n_validation_sequences`` the validation split, the last ``n_test_sequences`` the test split
    (``trial_split``). Spike times are uniform within bins.
    """
    rng = np.random.default_rng(seed)
    N, S, L, dt = p.n_neurons, p.n_states, p.sequence_length, p.dt_s
    n_seq = p.n_sequences + p.n_validation_sequences + p.n_test_sequences
    prior = rng.dirichlet(p.prior_concentration * np.asarray(p.prior_mean), size=(N, N))  # (N, N, 3)
    adjacency = np.zeros((S, N, N), dtype=np.int8)
    for s in range(S):
        u = rng.random((N, N, 1))
        cat = (u > np.cumsum(prior, axis=-1)).sum(-1)  # 0 inh, 1 none, 2 exc
        adjacency[s] = cat - 1
    for s in range(S):
        np.fill_diagonal(adjacency[s], 0)
    weights = adjacency * rng.uniform(p.strength_min, p.strength_max, (S, N, N))
    for s in range(S):
        np.fill_diagonal(weights[s], p.self_history_weight)
    bias = rng.uniform(p.bias_min, p.bias_max, (S, N))
    A = np.full((S, S), (1 - p.stay_probability) / max(S - 1, 1))
    np.fill_diagonal(A, p.stay_probability if S > 1 else 1.0)
    pi0 = np.full(S, 1.0 / S)
    phi = exp_basis(p.history_bins, p.history_decay)
    link = LINKS[p.link]

    counts = np.zeros((n_seq, L, N), dtype=np.int64)
    states = np.zeros((n_seq, L), dtype=np.int64)
    capped = 0
    for q in range(n_seq):
        z = rng.choice(S, p=pi0)
        for t in range(L):
            if t:
                z = rng.choice(S, p=A[z])
            states[q, t] = z
            h = np.zeros(N)
            for k in range(min(p.history_bins, t)):
                h += phi[k] * counts[q, t - 1 - k]
            rate = link(bias[z] + weights[z] @ h)
            y = rng.poisson(rate)
            capped += int((y > p.max_count).sum())
            counts[q, t] = np.minimum(y, p.max_count)

    # flatten: sequence q occupies [q * L * dt, (q + 1) * L * dt)
    spikes, unit_coord = spike_times_from_counts(counts.reshape(n_seq * L, N), dt, rng)
    units = unit_coord["unit"][1]
    starts = np.arange(n_seq) * L * dt
    split = np.r_[
        np.zeros(p.n_sequences), np.ones(p.n_validation_sequences), np.full(p.n_test_sequences, 2.0)
    ]
    data = xr.Dataset(
        {
            **spikes,
            "trial_start": (
                "trial",
                starts.astype(np.float64),
                {"units": "s", "long_name": "sequence start"},
            ),
            "trial_stop": (
                "trial",
                (starts + L * dt).astype(np.float64),
                {"units": "s", "long_name": "sequence stop"},
            ),
            "trial_split": (
                "trial",
                split,
                {"long_name": "predefined split (0 train, 1 validation, 2 test)"},
            ),
        },
        coords=unit_coord,
        attrs={
            "t_start_s": 0.0,
            "t_stop_s": float(n_seq * L * dt),
            "observed": "trials",
            "source": "simulate:switching_glm_network",
        },
    )
    state_time = (np.arange(n_seq * L) + 0.5) * dt
    truth = xr.Dataset(
        {
            "weights": (
                ("state", "unit_post", "unit_pre"),
                weights,
                {"long_name": "coupling weight per state"},
            ),
            "bias": (("state", "unit_post"), bias, {"long_name": "bias (pre-link)"}),
            "adjacency": (
                ("state", "unit_post", "unit_pre"),
                adjacency,
                {"long_name": "-1 inh, 0 none, 1 exc"},
            ),
            "prior_probs": (
                ("unit_post", "unit_pre", "category"),
                prior,
                {"long_name": "shared one-hot prior"},
            ),
            "transition": (("state_from", "state_to"), A),
            "initial": ("state", pi0),
            "true_state": ("state_time", states.reshape(-1), {"long_name": "planted state per bin"}),
            "history_kernel": ("lag", phi, {"long_name": "history basis, most recent bin first"}),
        },
        coords={
            "state": np.arange(S),
            "unit_post": units,
            "unit_pre": units,
            "category": np.array(CATEGORIES),
            "state_from": np.arange(S),
            "state_to": np.arange(S),
            "state_time": ("state_time", state_time, {"units": "s", "long_name": "bin centre"}),
            "lag": np.arange(1, p.history_bins + 1),
        },
        attrs={
            "model": "switching_glm_network",
            "role": "truth",
            "link": p.link,
            "history_bins": p.history_bins,
            "history_decay": p.history_decay,
            "bin_width_s": dt,
            "n_capped_counts": capped,
            "params": str(asdict(p)),
        },
    )
    return Simulation(data=data, truth=truth, data_kind="spike_times")
