"""Calcium imaging of several animals whose neurons form communities that are co-active in turn.

Design: one generator call = one animal (one calcium dataset). The *shared network* (neuron identities, planted
communities, epochs) is drawn from ``seed`` alone, so every animal simulated with the same ``seed`` and
``n_animals`` shares it; the ``animal`` index (0-based) seeds what differs per animal: which neurons it has (a
partly different subset, so the stacked tensor has missing pairs), spikes, baselines, neuropil and noise. A
connectome study then lists the animals' datasets. Cells are named by their shared identity (``n000`` ...),
like NeuroPAL identities across worms.

Generative model per animal (frames at ``frame_rate_hz``):

1. epochs: the session is cut into ``n_communities`` equal epochs; community r is co-active in epoch r;
2. spikes: private events Bernoulli(``private_rate_hz``/fs) per neuron and frame; shared events of the active
   community Bernoulli(``shared_rate_hz``/fs) per frame, each member joining with probability ``participation``
   and a jitter of 0-``jitter_frames`` frames; amplitudes Exp(1) (private) and 1.5 x U(0.7, 1.3) (shared);
3. calcium: c = spikes * exp(-t / ``tau_s``) (GCaMP-like fast rise, exponential decay), dF/F = ``dff_per_spike`` c;
4. fluorescence: F = F0 (1 + dF/F) (1 - ``bleach_fraction`` t/T) + ``neuropil_coef`` N + noise (SD
   ``noise_sd`` x F0), with F0 ~ U(50, 150); neuropil N = a slow shared background + a slow per-cell part;
   the neuropil trace given is N plus a little noise.

Behaviour (on its own clock, ``behaviour_rate_hz``; 0: none), following the planted epochs in each animal's own
timing (so with ``epoch_jitter`` the animals' behaviour is not time-locked), drawn from a generator of its own (the
traces do not depend on it): ``running`` (0/1) in bouts of ``running_bout_s``, on with probability
``running_on_fraction`` inside the epoch of community ``running_community`` and 0.1 outside; ``speed`` (cm/s, >= 0)
a smoothed noise around 4 cm/s, 10 cm/s higher inside the epoch of community ``speed_community`` (both taken modulo
``n_communities``).

Options where animals differ (all off by default): ``overlap`` (neurons in two communities), ``specific_communities``
(communities co-active in one animal only), ``epoch_jitter`` (each animal's epoch timing), with ``present_fraction``
(missing neurons), ``shuffle_epochs`` (each animal's communities co-active in an order of its own). Options where
communities are co-active at the same time (off by default): ``tonic_communities`` (the first communities co-active
throughout the session while the others take turns) and ``animal_strength`` (each animal expresses each community
with a strength of its own: a non-trivial animal mode). ``shared_event_times`` (off by default): the shared events of a
community fall at the same frames in every animal that expresses it (one draw for the study on the session clock,
each animal gating it by its own epoch) instead of each animal drawing its own.

Truth (``model_fit``, role truth): ``membership(neuron, community)`` over all neurons, ``present(animal, neuron)``,
``epoch_start_s/epoch_stop_s(community)`` of this animal, ``community_present(animal, community)`` and
``animal_epoch_start_s/animal_epoch_stop_s(animal, community)`` of every animal, ``community_strength(animal,
community)`` (the shared-event rate multiplier), the planted ``spikes(time, cell)`` and ``dff_true(time, cell)``,
and ``behaviour_community(behaviour_var)`` (the community whose epoch each behaviour variable follows).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter

from brainpipe.errors import ConfigError
from brainpipe.simulate.base import Simulation, register


@dataclass
class CalciumCommunitiesParams:
    """Parameters of :func:`calcium_communities` (times in seconds, rates in Hz).

    One animal of a multi-animal study; the network (neuron identities ``n000``..., communities, epochs) comes from
    the seed alone, the rest from the seed and ``animal``; truth in ``truth.nc``.

    Parameters
    ----------
    animal : int
        Which animal (0-based).
    n_animals : int
        Animals in the study.
    n_neurons : int
        Neuron identities in the network (each animal has about ``present_fraction`` of them).
    n_communities : int
        Planted communities; community r is co-active only in epoch r (the session cut in ``n_communities`` equal
        epochs).
    community_size : int
        Neurons per community.
    present_fraction : float
        Fraction of the neurons each animal has (a different subset per animal: missing pairs in the tensor; at
        most a quarter of a community is missing).
    n_frames : int
        Length in frames.
    frame_rate_hz : float
        Frame rate.
    private_rate_hz : float
        Rate of private events per neuron.
    shared_rate_hz : float
        Rate of shared events of the active community.
    participation : float
        Probability that a member joins a shared event.
    jitter_frames : int
        Jitter (frames) of a member's event in a shared event.
    tau_s : float
        GCaMP-like decay time constant.
    dff_per_spike : float
        dF/F per unit event.
    noise_sd : float
        Shot noise, in units of F0.
    neuropil_coef : float
        Neuropil contamination of the ROI signal (the true coefficient).
    bleach_fraction : float
        Linear bleaching of F0 over the session.
    overlap : int
        Neurons shared by consecutive communities (community r's last ``overlap`` members are community r+1's
        first): a neuron in two communities active at different times, which a partition of the time-averaged
        affinity cannot express.
    specific_communities : int
        The last ``specific_communities`` communities are co-active in one animal only (community r in animal
        ``r % n_animals``); elsewhere their members fire only privately.
    epoch_jitter : float
        Each animal's epoch boundaries move by up to this fraction of an epoch (independently per animal and
        boundary): epoch timing differs between animals.
    behaviour_rate_hz : float
        Sample rate of the behaviour variables (their own clock); 0: no behaviour.
    running_community : int
        ``running`` is mostly on during this community's epoch (modulo ``n_communities``).
    speed_community : int
        ``speed`` is higher during this community's epoch (modulo ``n_communities``).
    running_bout_s : float
        Length of a running bout (s).
    running_on_fraction : float
        Probability that a bout inside the running epoch is on (outside: 0.1).
    shuffle_epochs : bool
        Each animal's communities are co-active in an order of its own (freely behaving animals whose epochs do not
        line up at all); drawn from a generator of its own.
    tonic_communities : int
        The first ``tonic_communities`` communities are co-active throughout the session (every epoch; their truth
        epoch is the whole session) instead of in their own epoch only, so they are co-active with the others:
        time courses that overlap, where a factorization of the pair x (window, animal) unfolding is not unique.
    animal_strength : float
        Each animal expresses each community with a strength of its own: the community's shared-event rate in that
        animal is ``shared_rate_hz`` times a factor drawn U(1 - s, 1 + s) per (animal, community) (truth
        ``community_strength``; a generator of its own); 0: every animal alike (the animal mode trivial).
    shared_event_times : bool
        The shared events of each community fall at the same frames in every animal that expresses it (the event
        times drawn once for the study, from a generator of its own per community) instead of each animal drawing
        its own, so the community's event count per window is the same in every animal (no per-animal event-count
        noise); each animal's participation, member jitter, amplitudes, private events and noise are still its own.
        The draw is on the session clock and each animal keeps the events inside its own epoch, so with
        ``epoch_jitter`` or ``shuffle_epochs`` the events coincide where the animals' epochs of the community
        overlap; with ``animal_strength`` an animal with rate factor f keeps the frames whose common uniform draw
        is below f x ``shared_rate_hz`` / fs, so a weaker animal's events are a subset of a stronger one's (rate
        semantics unchanged, but the extra events of the stronger animal still vary between animals).
        False: each animal draws its own event times (the default; output unchanged).
    """

    animal: int = 0
    n_animals: int = 3
    n_neurons: int = 40
    n_communities: int = 3
    community_size: int = 8
    present_fraction: float = 0.9
    n_frames: int = 6000
    frame_rate_hz: float = 10.0
    private_rate_hz: float = 0.1
    shared_rate_hz: float = 0.4
    participation: float = 0.9
    jitter_frames: int = 1
    tau_s: float = 1.0
    dff_per_spike: float = 0.6
    noise_sd: float = 0.05
    neuropil_coef: float = 0.7
    bleach_fraction: float = 0.1
    overlap: int = 0
    specific_communities: int = 0
    epoch_jitter: float = 0.0
    behaviour_rate_hz: float = 20.0
    running_community: int = 0
    speed_community: int = 1
    running_bout_s: float = 2.0
    running_on_fraction: float = 0.8
    shuffle_epochs: bool = False
    tonic_communities: int = 0
    animal_strength: float = 0.0
    shared_event_times: bool = False

    def memory_bytes(self) -> tuple[float, str]:
        """Estimated peak allocation (bytes) and the keys that drive it: float64 (frame, neuron) traces of one animal
        (fluorescence, neuropil, spikes, calcium and noise)."""
        return 8.0 * 8 * float(self.n_neurons) * float(self.n_frames), "n_neurons x n_frames"

    def __post_init__(self):
        checks = [
            (self.n_animals >= 1 and 0 <= self.animal < self.n_animals, "need 0 <= animal < n_animals"),
            (
                self.n_communities >= 1 and self.community_size >= 2,
                "need n_communities >= 1 and community_size >= 2",
            ),
            (0 <= self.overlap < self.community_size, "need 0 <= overlap < community_size"),
            (
                self.n_communities * (self.community_size - self.overlap) + self.overlap <= self.n_neurons,
                "communities must fit in n_neurons",
            ),
            (
                0 <= self.specific_communities <= self.n_communities,
                "need 0 <= specific_communities <= n_communities",
            ),
            (0 <= self.epoch_jitter < 0.5, "epoch_jitter must be in [0, 0.5)"),
            (
                0 <= self.tonic_communities <= self.n_communities,
                "need 0 <= tonic_communities <= n_communities",
            ),
            (0 <= self.animal_strength < 1, "animal_strength must be in [0, 1)"),
            (0 < self.present_fraction <= 1, "present_fraction must be in (0, 1]"),
            (self.n_frames >= 10 * self.n_communities, "n_frames must be >= 10 per community epoch"),
            (self.frame_rate_hz > 0 and self.tau_s > 0, "frame_rate_hz and tau_s must be > 0"),
            (self.private_rate_hz >= 0 and self.shared_rate_hz >= 0, "rates must be >= 0"),
            (
                max(self.private_rate_hz, self.shared_rate_hz * (1 + self.animal_strength))
                < self.frame_rate_hz,
                "rates must be below the frame rate",
            ),
            (0 < self.participation <= 1, "participation must be in (0, 1]"),
            (
                self.behaviour_rate_hz >= 0
                and self.running_bout_s > 0
                and 0 <= self.running_on_fraction <= 1,
                "need behaviour_rate_hz >= 0, running_bout_s > 0 and running_on_fraction in [0, 1]",
            ),
            (
                self.noise_sd >= 0 and self.neuropil_coef >= 0 and 0 <= self.bleach_fraction < 1,
                "noise_sd, neuropil_coef >= 0; bleach_fraction in [0, 1)",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"simulator 'calcium_communities': {msg}")


def _layout(p: CalciumCommunitiesParams) -> np.ndarray:
    """(n_neurons, n_communities) membership in layout order: community r holds positions r*stride ... +size."""
    stride = p.community_size - p.overlap
    mem = np.zeros((p.n_neurons, p.n_communities), dtype=np.int8)
    for c in range(p.n_communities):
        mem[c * stride : c * stride + p.community_size, c] = 1
    return mem


def _present(p: CalciumCommunitiesParams, rng_net: np.random.Generator) -> np.ndarray:
    """(n_animals, n_neurons) presence: each animal lacks a different ~(1-present_fraction) of the neurons,
    including some community members (at most a quarter of any community, so each stays detectable)."""
    n_missing = int(round((1 - p.present_fraction) * p.n_neurons))
    pres = np.ones((p.n_animals, p.n_neurons), dtype=bool)
    layout = _layout(p)
    for a in range(p.n_animals):
        cand = rng_net.permutation(p.n_neurons)
        dropped: list[int] = []
        per_comm = np.zeros(p.n_communities, int)
        for n in cand:
            if len(dropped) >= n_missing:
                break
            cs = np.flatnonzero(layout[n])
            if cs.size:
                if np.any(per_comm[cs] >= max(1, p.community_size // 4)):
                    continue
                per_comm[cs] += 1
            dropped.append(int(n))
        pres[a, dropped] = False
    return pres


def _epoch_edges(p: CalciumCommunitiesParams, rng_net: np.random.Generator) -> np.ndarray:
    """(n_animals, n_communities + 1) epoch edges (frames) of every animal: equal epochs, the inner edges moved by
    up to ``epoch_jitter`` of an epoch per animal."""
    edges = np.linspace(0, p.n_frames, p.n_communities + 1)
    out = np.tile(edges, (p.n_animals, 1))
    if p.epoch_jitter > 0 and p.n_communities > 1:
        step = p.n_frames / p.n_communities
        out[:, 1:-1] += rng_net.uniform(-1, 1, (p.n_animals, p.n_communities - 1)) * p.epoch_jitter * step
    return out.round().astype(int)


def _behaviour(
    p: CalciumCommunitiesParams, start_s: np.ndarray, stop_s: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(behaviour time, (time, 2) running and speed) of one animal following its epochs (``start_s``/``stop_s``:
    each community's epoch in s), from a generator of its own (the traces' draws are untouched)."""
    rng = np.random.default_rng([seed, 10_000 + p.animal])
    rate = p.behaviour_rate_hz
    t = (np.arange(int(np.floor(p.n_frames / p.frame_rate_hz * rate))) + 0.5) / rate
    c_run = p.running_community % p.n_communities
    c_speed = p.speed_community % p.n_communities
    in_run = (t >= start_s[c_run]) & (t < stop_s[c_run])
    bout = np.floor(t / p.running_bout_s).astype(int)
    on = rng.random(bout.max() + 1)
    p_on = np.where(in_run, p.running_on_fraction, 0.1)
    running = (on[bout] < p_on).astype(np.float64)
    in_speed = ((t >= start_s[c_speed]) & (t < stop_s[c_speed])).astype(np.float64)
    noise = gaussian_filter1d(rng.standard_normal(t.size), 2.0 * rate) * np.sqrt(2.0 * rate)
    speed = np.maximum(4.0 + 10.0 * gaussian_filter1d(in_speed, 0.5 * rate) + 3.0 * noise, 0.0)
    return t, np.column_stack([running, speed])


@register("calcium_communities", CalciumCommunitiesParams, "calcium")
def calcium_communities(p: CalciumCommunitiesParams, seed: int) -> Simulation:
    """Calcium traces of one animal of a multi-animal study with communities co-active in turn, with truth."""
    rng_net = np.random.default_rng([seed, 0])
    perm = rng_net.permutation(p.n_neurons)  # community members are scattered over the identities
    membership = np.zeros((p.n_neurons, p.n_communities), dtype=np.int8)
    membership[perm] = _layout(p)
    order_ids = np.argsort(perm)  # position of each neuron in the community layout
    pres_layout = _present(p, rng_net)  # in layout order (the communities first)
    present = pres_layout[:, order_ids]  # back to identity order
    all_edges = _epoch_edges(p, rng_net)
    slot = np.tile(
        np.arange(p.n_communities), (p.n_animals, 1)
    )  # the epoch (in time order) of each community
    if p.shuffle_epochs:  # a generator of its own: the other draws stay as without shuffling
        rng_order = np.random.default_rng([seed, 20_000])
        slot = np.array([rng_order.permutation(p.n_communities) for _ in range(p.n_animals)])
    all_start = np.take_along_axis(all_edges[:, :-1], slot, axis=1)  # (animal, community) frames
    all_stop = np.take_along_axis(all_edges[:, 1:], slot, axis=1)
    if p.tonic_communities:  # co-active throughout the session, with the others in turn
        all_start[:, : p.tonic_communities] = 0
        all_stop[:, : p.tonic_communities] = p.n_frames
    strength = np.ones((p.n_animals, p.n_communities))
    if p.animal_strength > 0:  # a generator of its own: the other draws stay as without it
        s = p.animal_strength
        strength = np.random.default_rng([seed, 30_000]).uniform(1 - s, 1 + s, strength.shape)
    comm_present = np.ones((p.n_animals, p.n_communities), dtype=bool)
    for c in range(p.n_communities - p.specific_communities, p.n_communities):
        comm_present[:, c] = np.arange(p.n_animals) == c % p.n_animals
    rng = np.random.default_rng([seed, 1 + p.animal])

    T, N, fs = p.n_frames, p.n_neurons, p.frame_rate_hz
    start, stop = all_start[p.animal], all_stop[p.animal]
    spikes = (rng.random((T, N)) < p.private_rate_hz / fs) * rng.exponential(1.0, (T, N))
    for c in range(p.n_communities):
        lo, hi = start[c], stop[c]
        if not comm_present[p.animal, c]:
            continue
        members = np.flatnonzero(membership[:, c])
        rate = p.shared_rate_hz * strength[p.animal, c]
        # shared_event_times: one draw per community for the study (a generator of its own), gated by the epoch
        if p.shared_event_times:
            u = np.random.default_rng([seed, 40_000 + c]).random(p.n_frames)
            events = np.flatnonzero(u[lo:hi] < rate / fs) + lo
        else:
            events = np.flatnonzero(rng.random(hi - lo) < rate / fs) + lo
        for t in events:
            join = members[rng.random(members.size) < p.participation]
            shift = rng.integers(0, p.jitter_frames + 1, join.size)
            tt = np.minimum(t + shift, T - 1)
            spikes[tt, join] += 1.5 * rng.uniform(0.7, 1.3, join.size)
    g = np.exp(-1.0 / (p.tau_s * fs))
    calcium = lfilter([1.0], [1.0, -g], spikes, axis=0)
    dff = p.dff_per_spike * calcium
    f0 = rng.uniform(50.0, 150.0, N)
    bleach = 1.0 - p.bleach_fraction * np.arange(T) / T
    shared_np = gaussian_filter1d(rng.standard_normal(T), 5 * fs) * np.sqrt(10 * fs)
    own_np = gaussian_filter1d(rng.standard_normal((T, N)), 2 * fs, axis=0) * np.sqrt(4 * fs)
    neuropil = 60.0 + 8.0 * shared_np[:, None] + 4.0 * own_np
    F = (
        f0 * (1.0 + dff) * bleach[:, None]
        + p.neuropil_coef * neuropil
        + p.noise_sd * f0 * rng.standard_normal((T, N))
    )
    Fneu = neuropil + 1.0 * rng.standard_normal((T, N))

    keep = np.flatnonzero(present[p.animal])
    ids = np.array([f"n{i:03d}" for i in range(N)])
    time = np.arange(T, dtype=np.float64) / fs
    src = f"simulate:calcium_communities animal {p.animal}"
    data = xr.Dataset(
        {
            "fluorescence": (
                ("time", "cell"),
                F[:, keep],
                {"units": "1", "long_name": "raw fluorescence (arbitrary units)"},
            ),
            "neuropil": (
                ("time", "cell"),
                Fneu[:, keep],
                {"units": "1", "long_name": "neuropil fluorescence (arbitrary units)"},
            ),
        },
        coords={"time": ("time", time, {"units": "s"}), "cell": ("cell", ids[keep])},
        attrs={"frame_rate_hz": fs, "source": src, "animal": int(p.animal)},
    )
    beh_comm = np.array([p.running_community, p.speed_community]) % p.n_communities
    if p.behaviour_rate_hz > 0:
        t_b, beh = _behaviour(p, start / fs, stop / fs, seed)
        data["behaviour"] = xr.DataArray(
            beh,
            dims=("behaviour_time", "behaviour_var"),
            coords={
                "behaviour_time": (
                    "behaviour_time",
                    t_b,
                    {"units": "s", "long_name": "behaviour sample time"},
                ),
                "behaviour_var": ("behaviour_var", np.array(["running", "speed"], dtype=object)),
            },
            attrs={"long_name": "behaviour: running (0/1) and speed (cm/s)"},
        )
    truth = xr.Dataset(
        {
            "membership": (
                ("neuron", "community"),
                membership,
                {"long_name": "1 if the neuron is in the community"},
            ),
            "present": (
                ("animal", "neuron"),
                present.astype(np.int8),
                {"long_name": "1 if the animal has the neuron"},
            ),
            "epoch_start_s": ("community", start / fs, {"units": "s"}),
            "epoch_stop_s": ("community", stop / fs, {"units": "s"}),
            "community_present": (
                ("animal", "community"),
                comm_present.astype(np.int8),
                {"long_name": "1 if the community is co-active in the animal"},
            ),
            "animal_epoch_start_s": (("animal", "community"), all_start / fs, {"units": "s"}),
            "community_strength": (
                ("animal", "community"),
                strength,
                {"long_name": "multiplier of the community's shared-event rate in each animal"},
            ),
            "animal_epoch_stop_s": (("animal", "community"), all_stop / fs, {"units": "s"}),
            "spikes": (
                ("time", "cell"),
                spikes[:, keep],
                {"long_name": "planted spike amplitudes per frame"},
            ),
            "dff_true": (("time", "cell"), dff[:, keep], {"units": "1", "long_name": "true dF/F"}),
            **(
                {
                    "behaviour_community": (
                        "behaviour_var",
                        beh_comm.astype(np.int64),
                        {"long_name": "community whose epoch the behaviour variable follows"},
                    )
                }
                if p.behaviour_rate_hz > 0
                else {}
            ),
            "f0": (
                "cell",
                f0[keep],
                {"units": "1", "long_name": "baseline fluorescence at t=0 (arbitrary units)"},
            ),
        },
        coords={
            "neuron": ids,
            "community": np.arange(p.n_communities),
            "animal": np.arange(p.n_animals),
            "time": ("time", time, {"units": "s"}),
            "cell": ids[keep],
            **({"behaviour_var": np.array(["running", "speed"])} if p.behaviour_rate_hz > 0 else {}),
        },
        attrs={
            "model": "calcium_communities",
            "role": "truth",
            "animal_index": int(p.animal),
            "ar1_g": float(g),
            "tau_s": p.tau_s,
            "frame_rate_hz": fs,
            "neuropil_coef": p.neuropil_coef,
            "params": str(asdict(p)),
        },
    )
    return Simulation(data=data, truth=truth, data_kind="calcium_traces")
