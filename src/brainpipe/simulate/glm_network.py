"""Coupled Poisson-GLM spiking network with a behaviour variable driving part of the population."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr

from brainpipe.errors import ConfigError
from brainpipe.simulate.base import Simulation, StepMemory, register, spike_times_from_counts


@dataclass
class PoissonGLMNetworkParams(StepMemory):
    """Parameters of :func:`poisson_glm_network` (all times in seconds, rates in Hz).

    A coupled Poisson GLM network with an exponential spike-history kernel and a behaviour variable, ``speed``,
    driving part of the population; the planted parameters are written to ``truth.nc``.

    Parameters
    ----------
    n_neurons : int
        Number of neurons (>= 2).
    duration_s : float
        Length of the recording.
    dt_s : float
        Simulation time step.
    rate_min_hz, rate_max_hz : float
        Baseline rates are drawn uniformly in this range.
    connection_density : float
        Probability of a coupling between two distinct neurons.
    weight_min, weight_max : float
        Range of the couplings' magnitudes.
    excitatory_fraction : float
        Probability that a coupling is positive.
    self_history_weight : float
        The spike-history weight of every neuron on itself (refractoriness).
    history_tau_s : float
        Time constant of the exponential history kernel.
    behaviour_fraction : float
        Fraction of the neurons driven by the behaviour (``speed``).
    behaviour_weight_max : float
        Largest magnitude of a behaviour weight.
    behaviour_tau_s : float
        Time constant of the Ornstein-Uhlenbeck behaviour.
    max_rate_hz : float
        Cap on the instantaneous rate.
    """

    n_neurons: int = 20
    duration_s: float = 600.0
    dt_s: float = 0.01
    rate_min_hz: float = 2.0
    rate_max_hz: float = 10.0
    connection_density: float = 0.15
    weight_min: float = 0.6
    weight_max: float = 1.5
    excitatory_fraction: float = 0.5
    self_history_weight: float = -2.0
    history_tau_s: float = 0.02
    behaviour_fraction: float = 0.5
    behaviour_weight_max: float = 1.0
    behaviour_tau_s: float = 1.0
    max_rate_hz: float = 200.0

    def _pair_bytes(self) -> float:
        return 25.0  # the coupling matrix with its random draws

    def __post_init__(self):
        checks = [
            (self.n_neurons >= 2, "n_neurons must be >= 2"),
            (self.duration_s > 0 and self.dt_s > 0, "duration_s and dt_s must be > 0"),
            (self.duration_s / self.dt_s >= 10, "duration_s must cover at least 10 steps of dt_s"),
            (0 < self.rate_min_hz <= self.rate_max_hz, "need 0 < rate_min_hz <= rate_max_hz"),
            (0 <= self.connection_density <= 1, "connection_density must be in [0, 1]"),
            (0 <= self.weight_min <= self.weight_max, "need 0 <= weight_min <= weight_max"),
            (0 <= self.excitatory_fraction <= 1, "excitatory_fraction must be in [0, 1]"),
            (0 <= self.behaviour_fraction <= 1, "behaviour_fraction must be in [0, 1]"),
            (self.history_tau_s > 0 and self.behaviour_tau_s > 0, "time constants must be > 0"),
            (self.max_rate_hz > self.rate_max_hz, "max_rate_hz must exceed rate_max_hz"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"simulator 'poisson_glm_network': {msg}")


def exp_history(counts: np.ndarray, dt_s: float, tau_s: float) -> np.ndarray:
    """Exponentially filtered spike history: ``h[t] = a * h[t-1] + counts[t-1]``, ``a = exp(-dt/tau)``.

    ``counts`` is (time, unit); the result has the same shape and uses only bins strictly before ``t``.
    """
    from scipy.signal import lfilter

    a = np.exp(-dt_s / tau_s)
    h = np.zeros(counts.shape, dtype=np.float64)
    if counts.shape[0] > 1:
        h[1:] = lfilter([1.0], [1.0, -a], counts[:-1].astype(np.float64), axis=0)
    return h


def ou_process(n: int, dt_s: float, tau_s: float, rng: np.random.Generator) -> np.ndarray:
    """A standardised Ornstein-Uhlenbeck trace (zero mean, unit variance)."""
    a = np.exp(-dt_s / tau_s)
    x = np.empty(n)
    x[0] = rng.standard_normal()
    noise = rng.standard_normal(n) * np.sqrt(1 - a * a)
    for t in range(1, n):
        x[t] = a * x[t - 1] + noise[t]
    return (x - x.mean()) / (x.std() + 1e-12)


@register("poisson_glm_network", PoissonGLMNetworkParams, modality="spikes")
def poisson_glm_network(p: PoissonGLMNetworkParams, seed: int) -> Simulation:
    """Simulate a coupled Poisson GLM network (exp link, exponential history kernel) with a behaviour drive.

    Model, per time step ``dt_s`` and neuron ``i``::

        log lambda_i(t) = log(r_i) + sum_j W_ij h_j(t) + beta_i * speed(t)
        y_i(t) ~ Poisson(min(lambda_i(t), max_rate_hz) * dt_s)

    with ``h_j`` the exponentially filtered past spikes of neuron ``j`` (time constant ``history_tau_s``),
    ``W_ii = self_history_weight`` (refractoriness), off-diagonal ``W_ij`` non-zero with probability
    ``connection_density`` (sign excitatory with probability ``excitatory_fraction``, magnitude uniform in
    [weight_min, weight_max]), and ``speed`` a standardised Ornstein-Uhlenbeck process driving a random
    ``behaviour_fraction`` of neurons. Spike times are placed uniformly within their step.

    Parameters
    ----------
    p : PoissonGLMNetworkParams
        The parameters.
    seed : int
        Seed of the random number generator; the same seed gives the same data.

    Returns
    -------
    Simulation
        ``spike_times`` data (with the ``speed`` behaviour) and the truth: ``coupling`` (unit_post, unit_pre),
        ``connected``, ``log_baseline_rate`` and ``behaviour_weight``.
    """
    rng = np.random.default_rng(seed)
    n, dt = p.n_neurons, p.dt_s
    n_steps = int(round(p.duration_s / dt))
    rates = rng.uniform(p.rate_min_hz, p.rate_max_hz, n)
    mask = rng.random((n, n)) < p.connection_density
    np.fill_diagonal(mask, False)
    sign = np.where(rng.random((n, n)) < p.excitatory_fraction, 1.0, -1.0)
    W = mask * sign * rng.uniform(p.weight_min, p.weight_max, (n, n))
    np.fill_diagonal(W, p.self_history_weight)
    driven = rng.permutation(n)[: int(round(p.behaviour_fraction * n))]
    beta = np.zeros(n)
    beta[driven] = (
        rng.choice([-1.0, 1.0], driven.size) * rng.uniform(0.3, 1.0, driven.size) * p.behaviour_weight_max
    )
    speed = ou_process(n_steps, dt, p.behaviour_tau_s, rng)

    a = np.exp(-dt / p.history_tau_s)
    log_base = np.log(rates)
    cap = np.log(p.max_rate_hz)
    counts = np.zeros((n_steps, n), dtype=np.int32)
    h = np.zeros(n)
    drive = log_base[None, :] + speed[:, None] * beta[None, :]  # (time, n): the part without history
    for t in range(n_steps):
        if t:
            h = a * h + counts[t - 1]
        eta = np.minimum(drive[t] + W @ h, cap)
        counts[t] = rng.poisson(np.exp(eta) * dt)

    spikes, unit_coord = spike_times_from_counts(counts, dt, rng)
    units = unit_coord["unit"][1]
    t_behaviour = (np.arange(n_steps) + 0.5) * dt

    data = xr.Dataset(
        {
            **spikes,
            "behaviour": (("behaviour_time", "behaviour_var"), speed[:, None], {"long_name": "behaviour"}),
        },
        coords={
            **unit_coord,
            "behaviour_time": (
                "behaviour_time",
                t_behaviour,
                {"units": "s", "long_name": "behaviour sample time"},
            ),
            "behaviour_var": ("behaviour_var", np.array(["speed"])),
        },
        attrs={"t_start_s": 0.0, "t_stop_s": float(n_steps * dt), "source": "simulate:poisson_glm_network"},
    )
    truth = xr.Dataset(
        {
            "coupling": (
                ("unit_post", "unit_pre"),
                W,
                {"long_name": "coupling weight (log-rate per filtered spike)"},
            ),
            "connected": (
                ("unit_post", "unit_pre"),
                mask.astype(np.int8),
                {"long_name": "planted connection"},
            ),
            "log_baseline_rate": (
                "unit_post",
                log_base,
                {"units": "1", "long_name": "log baseline rate (natural log of a rate in Hz)"},
            ),
            "behaviour_weight": (
                ("unit_post", "behaviour_var"),
                beta[:, None],
                {"long_name": "behaviour weight"},
            ),
        },
        coords={"unit_post": units, "unit_pre": units, "behaviour_var": np.array(["speed"])},
        attrs={
            "model": "poisson_glm_network",
            "role": "truth",
            "link": "exp",
            "history_tau_s": p.history_tau_s,
            "dt_s": dt,
            "max_rate_hz": p.max_rate_hz,
            "params": str(asdict(p)),
        },
    )
    return Simulation(data=data, truth=truth, data_kind="spike_times")
