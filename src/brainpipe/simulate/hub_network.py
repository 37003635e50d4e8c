"""A spiking network with a few hub neurons and known directed, lagged connections, a behaviour variable (speed)
driving one subset of neurons and a stimulus (flashes) driving another: the planted truth for Neuroformer
(attention connectivity, few-shot behaviour decoding, spike generation)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr

from brainpipe.errors import ConfigError
from brainpipe.simulate.base import Simulation, StepMemory, register, spike_times_from_counts
from brainpipe.simulate.glm_network import ou_process


@dataclass
class HubNetworkParams(StepMemory):
    """Parameters of :func:`hub_network` (times in seconds, rates in Hz, lags in steps of ``dt_s``).

    Neuroformer's planted truth: a Poisson network with an exp link in which a few hub neurons drive many others
    through directed, lagged excitatory connections, a standardised speed (Ornstein-Uhlenbeck) drives one subset and
    a 0/1 flash stimulus another; behaviour variables ``speed`` and ``flash``; ``truth.nc`` holds ``weights``,
    ``connected``, ``lag_bins`` (unit_post, unit_pre), ``is_hub``, ``log_baseline_rate`` (calibrated),
    ``target_rate_hz``, ``behaviour_weight`` (speed, flash) and the connection ``kernel``. By default the hubs are
    rate-matched: every neuron's realised mean rate is drawn from the same range, so hubs are found only through
    their connections.

    Parameters
    ----------
    n_neurons : int
        Number of neurons (>= 3).
    n_hubs : int
        Number of hub neurons.
    hub_out_degree : int
        Number of non-hubs each hub projects to.
    n_other_connections : int
        Number of further random connections among non-hubs.
    duration_s : float
        Length of the recording.
    dt_s : float
        Simulation time step.
    rate_min_hz, rate_max_hz : float
        Range of the non-hubs' baseline rates.
    hub_rate_hz : float or None
        Baseline rate of the hubs (None: drawn from ``rate_min_hz``..``rate_max_hz`` like every other neuron).
    rate_matched : bool
        Calibrate each neuron's baseline so that its realised mean rate is its drawn rate (in
        ``rate_min_hz``..``rate_max_hz``, hubs included), so a firing-rate ranking finds hubs by chance only;
        ``hub_rate_hz`` must then be None.
    calibration_s : float
        Length of each calibration run (its own random stream).
    calibration_rounds : int
        Calibration runs (each rescales the baselines by target rate / realised rate).
    weight_min, weight_max : float
        Range of the (excitatory) connection weights.
    lag_min_bins, lag_max_bins : int
        Range of the connections' lags, in steps.
    kernel_tau_bins : float
        Decay of the coupling kernel, in steps.
    kernel_bins : int
        Length of the coupling kernel, in steps.
    self_history_weight : float
        Weight of a neuron's previous step on itself (refractoriness).
    behaviour_fraction : float
        Fraction of the neurons driven by the ``speed`` behaviour.
    behaviour_weight_min, behaviour_weight_max : float
        Range of the behaviour weights' magnitudes.
    behaviour_tau_s : float
        Time constant of the Ornstein-Uhlenbeck behaviour.
    stimulus_fraction : float
        Fraction of the neurons driven by the ``flash`` stimulus.
    stimulus_weight : float
        Weight of the stimulus.
    stimulus_rate_hz : float
        Rate of the flashes.
    stimulus_duration_s : float
        Length of a flash.
    max_rate_hz : float
        Cap on the instantaneous rate.
    """

    n_neurons: int = 20
    n_hubs: int = 3
    hub_out_degree: int = 8
    n_other_connections: int = 6
    duration_s: float = 200.0
    dt_s: float = 0.01
    rate_min_hz: float = 5.0
    rate_max_hz: float = 10.0
    hub_rate_hz: float | None = None
    rate_matched: bool = True
    calibration_s: float = 60.0
    calibration_rounds: int = 3
    weight_min: float = 0.8
    weight_max: float = 1.2
    lag_min_bins: int = 1
    lag_max_bins: int = 3
    kernel_tau_bins: float = 2.0
    kernel_bins: int = 6
    self_history_weight: float = -2.0
    behaviour_fraction: float = 0.4
    behaviour_weight_min: float = 0.5
    behaviour_weight_max: float = 0.8
    behaviour_tau_s: float = 2.0
    stimulus_fraction: float = 0.25
    stimulus_weight: float = 1.5
    stimulus_rate_hz: float = 0.5
    stimulus_duration_s: float = 0.3
    max_rate_hz: float = 200.0

    def _pair_bytes(self) -> float:
        return 8.0 * (self.kernel_bins + 3)  # the lagged coupling kernels, float64

    def __post_init__(self):
        n_other = self.n_neurons - self.n_hubs
        checks = [
            (self.n_neurons >= 3, "n_neurons must be >= 3"),
            (1 <= self.n_hubs < self.n_neurons, "need 1 <= n_hubs < n_neurons"),
            (0 <= self.hub_out_degree <= n_other, "hub_out_degree must be in [0, n_neurons - n_hubs]"),
            (
                0 <= self.n_other_connections <= n_other * (n_other - 1),
                "n_other_connections: too many for the non-hubs",
            ),
            (self.duration_s > 0 and self.dt_s > 0, "duration_s and dt_s must be > 0"),
            (self.duration_s / self.dt_s >= 100, "duration_s must cover at least 100 steps of dt_s"),
            (0 < self.rate_min_hz <= self.rate_max_hz, "need 0 < rate_min_hz <= rate_max_hz"),
            (self.hub_rate_hz is None or self.hub_rate_hz > 0, "hub_rate_hz must be > 0 or null"),
            (
                not (self.rate_matched and self.hub_rate_hz is not None),
                "rate_matched hubs take their rate from rate_min_hz..rate_max_hz: set hub_rate_hz to null",
            ),
            (
                self.calibration_s > 0 and self.calibration_rounds >= 1,
                "need calibration_s > 0 and calibration_rounds >= 1",
            ),
            (0 <= self.weight_min <= self.weight_max, "need 0 <= weight_min <= weight_max"),
            (1 <= self.lag_min_bins <= self.lag_max_bins, "need 1 <= lag_min_bins <= lag_max_bins"),
            (
                self.kernel_bins >= 1 and self.kernel_tau_bins > 0,
                "need kernel_bins >= 1 and kernel_tau_bins > 0",
            ),
            (0 <= self.behaviour_fraction and 0 <= self.stimulus_fraction, "fractions must be >= 0"),
            (
                self.behaviour_fraction + self.stimulus_fraction <= 1,
                "behaviour_fraction + stimulus_fraction must be <= 1",
            ),
            (
                0 <= self.behaviour_weight_min <= self.behaviour_weight_max,
                "need 0 <= behaviour_weight_min <= max",
            ),
            (self.behaviour_tau_s > 0, "behaviour_tau_s must be > 0"),
            (
                self.stimulus_rate_hz >= 0 and self.stimulus_duration_s > 0,
                "need stimulus_rate_hz >= 0, duration > 0",
            ),
            (
                self.max_rate_hz > max(self.rate_max_hz, self.hub_rate_hz or 0.0),
                "max_rate_hz must exceed the baseline rates",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"simulator 'hub_network': {msg}")


def _flashes(
    n_steps: int, dt: float, rate_hz: float, duration_s: float, rng: np.random.Generator
) -> np.ndarray:
    """A 0/1 stimulus: flashes of ``duration_s`` starting as a Poisson process of ``rate_hz`` (no overlap)."""
    stim = np.zeros(n_steps)
    width = max(1, int(round(duration_s / dt)))
    t = 0
    while rate_hz > 0:
        t += 1 + int(rng.exponential(1.0 / (rate_hz * dt)))
        if t >= n_steps:
            break
        stim[t : t + width] = 1.0
        t += width
    return stim


def _run(drive: np.ndarray, Wk: np.ndarray, cap: float, dt: float, rng: np.random.Generator) -> np.ndarray:
    """(step, unit) Poisson counts of the network: log-rate ``drive`` plus the lagged couplings ``Wk``."""
    n_steps, n = drive.shape
    depth = Wk.shape[0] - 1
    counts = np.zeros((n_steps + depth, n), dtype=np.int32)  # `depth` leading rows of zeros: empty history
    for t in range(n_steps):
        past = counts[t : t + depth][::-1]  # y(t-1), y(t-2), ... y(t-depth)
        eta = np.minimum(drive[t] + np.einsum("dij,dj->i", Wk[1:], past), cap)
        counts[t + depth] = rng.poisson(np.exp(eta) * dt)
    return counts[depth:]


def _calibrate(
    p: HubNetworkParams, rates: np.ndarray, Wk: np.ndarray, beta: np.ndarray, gamma: np.ndarray, seed: int
) -> np.ndarray:
    """Log baselines whose realised mean rates are ``rates``, from short runs on their own random stream."""
    rng = np.random.default_rng([seed, 1])  # not the recording's stream
    n_cal = max(100, int(round(min(p.calibration_s, p.duration_s) / p.dt_s)))
    speed = ou_process(n_cal, p.dt_s, p.behaviour_tau_s, rng)
    flash = _flashes(n_cal, p.dt_s, p.stimulus_rate_hz, p.stimulus_duration_s, rng)
    log_r = np.log(rates)
    for _ in range(p.calibration_rounds):
        drive = log_r[None, :] + speed[:, None] * beta[None, :] + flash[:, None] * gamma[None, :]
        got = _run(drive, Wk, np.log(p.max_rate_hz), p.dt_s, rng).mean(0) / p.dt_s
        log_r = log_r + np.log(
            rates / np.maximum(got, 0.1 * rates)
        )  # floor: a silent run halves no rate to 0
    return log_r


@register("hub_network", HubNetworkParams, modality="spikes")
def hub_network(p: HubNetworkParams, seed: int) -> Simulation:
    """Hub network: a few hub neurons drive many others through directed, lagged excitatory connections.

    Model, per step ``dt_s`` and neuron ``i`` (Poisson counts, exp link, capped at ``max_rate_hz``)::

        log lambda_i(t) = log r_i + sum_j W_ij sum_k kappa(k) y_j(t - L_ij - k)
                          + s_i y_i(t-1) + beta_i speed(t) + gamma_i flash(t)

    * hubs: the first ``n_hubs`` units of a random permutation; each projects to
      ``hub_out_degree`` random non-hubs; ``n_other_connections`` more random connections among non-hubs;
      weights uniform in [weight_min, weight_max]; lag ``L_ij`` uniform in [lag_min_bins, lag_max_bins] steps;
      ``kappa(k) = exp(-k / kernel_tau_bins)`` for ``k < kernel_bins`` (normalised to a peak of 1);
    * rates: each neuron draws a rate ``r_i`` in [rate_min_hz, rate_max_hz] (hubs too, unless ``hub_rate_hz``); with
      ``rate_matched`` its baseline is then calibrated (``calibration_rounds`` runs of ``calibration_s`` on their
      own random stream) so that its realised mean rate, couplings and drives included, is ``r_i``: hubs and
      their targets fire at matched rates and a firing-rate ranking finds hubs by chance only;
    * ``s_i = self_history_weight`` (refractoriness, one step);
    * speed: a standardised Ornstein-Uhlenbeck process (``behaviour_tau_s``) driving ``behaviour_fraction`` of
      the non-hubs (weights of random sign, magnitude in [behaviour_weight_min, behaviour_weight_max]);
    * flash: a 0/1 stimulus (flashes of ``stimulus_duration_s`` at ``stimulus_rate_hz``) driving another
      ``stimulus_fraction`` of the non-hubs with weight ``stimulus_weight``.

    Data: ``spike_times`` with behaviour variables ``speed`` and ``flash`` (one sample per step, at its centre).
    Truth (``model_fit``, role truth): ``weights``/``connected``/``lag_bins`` (unit_post, unit_pre), ``is_hub``,
    ``log_baseline_rate``, ``target_rate_hz``, ``behaviour_weight`` (unit_post, behaviour_var), ``kernel``.
    """
    rng = np.random.default_rng(seed)
    n, dt = p.n_neurons, p.dt_s
    n_steps = int(round(p.duration_s / dt))
    perm = rng.permutation(n)
    hubs, others = np.sort(perm[: p.n_hubs]), perm[p.n_hubs :]
    W = np.zeros((n, n))
    lag = np.zeros((n, n), dtype=np.int32)
    for h in hubs:
        for post in rng.choice(others, p.hub_out_degree, replace=False):
            W[post, h] = rng.uniform(p.weight_min, p.weight_max)
    pairs = [(a, b) for a in others for b in others if a != b and W[a, b] == 0]
    for k in rng.choice(len(pairs), p.n_other_connections, replace=False):
        post, pre = pairs[k]
        W[post, pre] = rng.uniform(p.weight_min, p.weight_max)
    connected = W != 0
    lag[connected] = rng.integers(p.lag_min_bins, p.lag_max_bins + 1, int(connected.sum()))

    rates = rng.uniform(p.rate_min_hz, p.rate_max_hz, n)
    if p.hub_rate_hz is not None:
        rates[hubs] = p.hub_rate_hz
    n_beh = int(round(p.behaviour_fraction * n))
    n_stim = int(round(p.stimulus_fraction * n))
    shuffled = rng.permutation(others)
    beh_units, stim_units = shuffled[:n_beh], shuffled[n_beh : n_beh + n_stim]
    beta = np.zeros(n)
    beta[beh_units] = rng.choice([-1.0, 1.0], beh_units.size) * rng.uniform(
        p.behaviour_weight_min, p.behaviour_weight_max, beh_units.size
    )
    gamma = np.zeros(n)
    gamma[stim_units] = p.stimulus_weight
    speed = ou_process(n_steps, dt, p.behaviour_tau_s, rng)
    flash = _flashes(n_steps, dt, p.stimulus_rate_hz, p.stimulus_duration_s, rng)

    kernel = np.exp(-np.arange(p.kernel_bins) / p.kernel_tau_bins)
    depth = p.lag_max_bins + p.kernel_bins  # bins of history that matter
    Wk = np.zeros((depth + 1, n, n))  # Wk[d] weighs y(t - d)
    post_idx, pre_idx = np.nonzero(connected)
    for i, j in zip(post_idx, pre_idx, strict=True):
        for k, kv in enumerate(kernel):
            Wk[lag[i, j] + k, i, j] += W[i, j] * kv
    Wk[1][np.diag_indices(n)] += p.self_history_weight

    log_r = _calibrate(p, rates, Wk, beta, gamma, seed) if p.rate_matched else np.log(rates)
    drive = log_r[None, :] + speed[:, None] * beta[None, :] + flash[:, None] * gamma[None, :]
    counts = _run(drive, Wk, np.log(p.max_rate_hz), dt, rng)

    spikes, unit_coord = spike_times_from_counts(counts, dt, rng)
    units = unit_coord["unit"][1]
    t_beh = (np.arange(n_steps) + 0.5) * dt
    beh_vars = np.array(["speed", "flash"])
    is_hub = np.zeros(n, dtype=np.int8)
    is_hub[hubs] = 1
    data = xr.Dataset(
        {
            **spikes,
            "behaviour": (
                ("behaviour_time", "behaviour_var"),
                np.stack([speed, flash], axis=1),
                {"long_name": "speed (standardised) and flash stimulus (0/1)"},
            ),
        },
        coords={
            **unit_coord,
            "behaviour_time": ("behaviour_time", t_beh, {"units": "s", "long_name": "behaviour sample time"}),
            "behaviour_var": ("behaviour_var", beh_vars),
        },
        attrs={"t_start_s": 0.0, "t_stop_s": float(n_steps * dt), "source": "simulate:hub_network"},
    )
    truth = xr.Dataset(
        {
            "weights": (
                ("unit_post", "unit_pre"),
                W,
                {"long_name": "connection weight (log-rate per lagged spike)"},
            ),
            "connected": (
                ("unit_post", "unit_pre"),
                connected.astype(np.int8),
                {"long_name": "planted connection"},
            ),
            "lag_bins": (
                ("unit_post", "unit_pre"),
                lag,
                {"long_name": "connection delay in steps of dt_s (0: none)"},
            ),
            "is_hub": ("unit_post", is_hub, {"long_name": "1 for a hub neuron"}),
            "log_baseline_rate": (
                "unit_post",
                log_r,
                {"units": "1", "long_name": "log baseline rate (natural log of a rate in Hz)"},
            ),
            "target_rate_hz": (
                "unit_post",
                rates,
                {
                    "units": "Hz",
                    "long_name": "drawn mean rate (the realised rate's target when rate_matched)",
                },
            ),
            "behaviour_weight": (
                ("unit_post", "behaviour_var"),
                np.stack([beta, gamma], axis=1),
                {"long_name": "weight of speed and flash on the log rate"},
            ),
            "kernel": ("kernel_lag", kernel, {"long_name": "connection kernel after the delay (peak 1)"}),
        },
        coords={
            "unit_post": units,
            "unit_pre": units,
            "behaviour_var": beh_vars,
            "kernel_lag": np.arange(p.kernel_bins),
        },
        attrs={
            "model": "hub_network",
            "role": "truth",
            "link": "exp",
            "dt_s": dt,
            "self_history_weight": p.self_history_weight,
            "max_rate_hz": p.max_rate_hz,
            "params": str(asdict(p)),
        },
    )
    return Simulation(data=data, truth=truth, data_kind="spike_times")
