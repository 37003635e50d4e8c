"""Neuroformer's tokeniser: spike counts -> windows of neuron-ID and dt tokens, with aligned modalities and the
decoding target (the rules are listed in :mod:`brainpipe.models.neuroformer`), and the labelled subset of the
train windows for fine-tuning with a fraction of the labels."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.errors import ConfigError, InputError

LOG = logging.getLogger("brainpipe.models.neuroformer")
MODALITY_SOURCES = ("behaviour", "stimulus")
N_SPECIAL = 3  # SOS, EOS, PAD


@dataclass
class Windows:
    """Tokenised windows (numpy arrays, first dim = window)."""

    cur_id: np.ndarray  # (n, block_size) int64: [SOS] spikes [EOS] PAD...
    cur_dt: np.ndarray
    past_id: np.ndarray  # (n, past_block_size)
    past_dt: np.ndarray
    modality: np.ndarray  # (n, n_mod_bins, n_mod_vars) float32 (n_mod_vars may be 0)
    target: np.ndarray  # (n, 1) float32 (NaN where there is no target)
    t_start: np.ndarray  # (n,) float64: start time of the current window (s)
    split: np.ndarray  # (n,) int8
    window_counts: np.ndarray  # (n, n_units) spike counts of the current window (for generation scoring)
    start: np.ndarray  # (n,) int64: index of the current window's first bin in the counts

    def __len__(self) -> int:
        return int(self.cur_id.shape[0])

    def select(self, mask: np.ndarray) -> Windows:
        return Windows(**{k: v[mask] for k, v in self.__dict__.items()})

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The training tuple (equal first dims): cur_id, cur_dt, past_id, past_dt, modality, target."""
        return (
            torch.as_tensor(self.cur_id),
            torch.as_tensor(self.cur_dt),
            torch.as_tensor(self.past_id),
            torch.as_tensor(self.past_dt),
            torch.as_tensor(self.modality),
            torch.as_tensor(self.target),
        )


@dataclass
class SpikeTokenizer:
    """Spike counts -> token windows (see the module doc for the rules). Fitted attributes end in ``_``.

    Parameters
    ----------
    dt_s : float, default 0.01
        Time resolution of the dt tokens (an integer multiple of the counts' bin width).
    window_s : float, default 0.05
        The current window (a multiple of ``dt_s``).
    past_window_s : float, default 0.1
        The past window right before it.
    stride_s : float, optional
        Step between windows (None: ``window_s``).
    block_size : int, default 64
        Tokens of the current sequence (SOS + spikes + EOS + PAD).
    past_block_size : int, default 96
        Tokens of the past sequence (SOS + spikes + PAD).
    modalities : mapping
        Name -> ``{"source": "behaviour" or "stimulus", "variables": [...]}``.
    target : mapping, optional
        The decoding target: ``source``, ``variable`` and ``kind`` (``regression`` or ``classification``).
    """

    dt_s: float = 0.01
    window_s: float = 0.05
    past_window_s: float = 0.1
    stride_s: float | None = None
    block_size: int = 64
    past_block_size: int = 96
    modalities: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    target: Mapping[str, object] | None = None

    # -- vocabulary ------------------------------------------------------------------------------------------
    @property
    def n_dt(self) -> int:
        """Number of dt values inside the longer of the two windows."""
        return int(round(max(self.window_s, self.past_window_s) / self.dt_s))

    @property
    def vocab(self) -> dict[str, int]:
        n = len(self.units_)
        return {"id": n + N_SPECIAL, "dt": self.n_dt + N_SPECIAL, "n_units": n}

    def special(self) -> dict[str, int]:
        """The ids of the special tokens (they follow the unit ids and the dt values).

        Returns
        -------
        dict
            ``sos``, ``eos``, ``pad`` (id vocabulary) and ``sos_dt``, ``eos_dt``, ``pad_dt`` (dt vocabulary).
        """
        n, m = len(self.units_), self.n_dt
        return {"sos": n, "eos": n + 1, "pad": n + 2, "sos_dt": m, "eos_dt": m + 1, "pad_dt": m + 2}

    # -- checks ----------------------------------------------------------------------------------------------
    def _ratio(self, a: float, b: float, what: str) -> int:
        k = a / b
        if round(k) < 1 or abs(k - round(k)) > 1e-6:
            raise ConfigError(what)
        return int(round(k))

    @fill_doc
    def fit(self, counts: xr.Dataset, source: str = "counts") -> SpikeTokenizer:
        """Take the units, the bin width and the modality/target layout from a ``spike_counts`` dataset.

        %(counts_source_parameters)s

        Returns
        -------
        SpikeTokenizer
            ``self``, fitted.
        """
        bw = float(counts.attrs["bin_width_s"])
        self.rebin_ = self._ratio(
            self.dt_s,
            bw,
            f"{source}: the tokeniser resolution dt_s={self.dt_s} s is not an integer multiple of the counts' bin width "
            f"{bw} s; set neuroformer tokeniser dt_s to a multiple of {bw} (e.g. {bw}) or bin the spikes at a divisor of it",
        )
        self.window_bins_ = self.rebin_ * self._ratio(
            self.window_s,
            self.dt_s,
            f"tokeniser window_s={self.window_s} must be a multiple of dt_s={self.dt_s}",
        )
        self.past_bins_ = self.rebin_ * self._ratio(
            self.past_window_s,
            self.dt_s,
            f"tokeniser past_window_s={self.past_window_s} must be a multiple of dt_s={self.dt_s}",
        )
        stride = self.stride_s if self.stride_s is not None else self.window_s
        self.stride_bins_ = self.rebin_ * self._ratio(
            stride, self.dt_s, f"tokeniser stride_s={stride} must be a multiple of dt_s"
        )
        if self.block_size < 3 or self.past_block_size < 2:
            raise ConfigError(
                f"tokeniser: block_size {self.block_size} must be >= 3 and past_block_size >= 2"
            )
        self.bin_width_s_ = bw
        self.units_ = np.asarray(counts["unit"].values).astype(str)
        self.mod_layout_ = [
            (name, str(spec["source"]), [str(v) for v in spec["variables"]])
            for name, spec in self.modalities.items()
        ]
        for name, src, vars_ in self.mod_layout_:
            self._variables(counts, src, vars_, f"modality '{name}'", source)
        if self.target is not None:
            self._variables(
                counts, str(self.target["source"]), [str(self.target["variable"])], "target", source
            )
            if self.target.get("kind", "regression") == "classification":
                vals = self._variables(
                    counts, str(self.target["source"]), [str(self.target["variable"])], "target", source
                )
                self.classes_ = np.unique(vals[:, 0])
        return self

    @staticmethod
    def _variables(counts: xr.Dataset, src: str, names: Sequence[str], what: str, source: str) -> np.ndarray:
        if src not in MODALITY_SOURCES:
            raise ConfigError(f"{what}: source {src!r} is not one of {', '.join(MODALITY_SOURCES)}")
        if src not in counts:
            raise InputError(
                f"{source}: {what} needs variable '{src}', which this counts file does not have "
                f"(it has {', '.join(map(str, counts.data_vars))}); remove the {what} or give data with {src}"
            )
        have = [str(v) for v in counts[f"{src}_var"].values]
        missing = [v for v in names if v not in have]
        if missing:
            raise InputError(
                f"{source}: {what} names {src} variable(s) {', '.join(missing)} not in the file "
                f"(it has {', '.join(have)}); fix the names in the neuroformer config"
            )
        vals = np.asarray(counts[src].sel({f"{src}_var": list(names)}).values, dtype=np.float64)
        if not np.all(np.isfinite(vals)):
            bad = int((~np.isfinite(vals)).any(axis=1).sum())
            raise InputError(
                f"{source}: {what} ({src} {', '.join(names)}) has NaN or infinite values in {bad} bin(s); "
                "interpolate or drop those samples before tokenising"
            )
        return vals

    # -- windows ---------------------------------------------------------------------------------------------
    def window_starts(self, counts: xr.Dataset) -> np.ndarray:
        """The first bin of every valid window: a full past and current window inside one recorded segment.

        Parameters
        ----------
        counts : xarray.Dataset
            A ``spike_counts`` dataset.

        Returns
        -------
        numpy.ndarray
            (n_windows,) int64 bin indices, in time order, ``stride`` bins apart within a segment.
        """
        from brainpipe.preprocess.spikes import segments

        seg = segments(counts)
        W, P, S = self.window_bins_, self.past_bins_, self.stride_bins_
        starts = []
        for s in np.unique(seg):
            idx = np.flatnonzero(seg == s)
            lo, hi = int(idx[0]), int(idx[-1]) + 1
            starts.extend(range(lo + P, hi - W + 1, S))
        return np.asarray(starts, dtype=np.int64)

    @staticmethod
    def window_splits(counts: xr.Dataset, starts: np.ndarray) -> np.ndarray:
        """The split flag of the windows at ``starts`` (their first bin's; a window never crosses a split).

        Parameters
        ----------
        counts : xarray.Dataset
            A ``spike_counts`` dataset.
        starts : numpy.ndarray
            First bins of the windows (:meth:`window_starts`).

        Returns
        -------
        numpy.ndarray
            (n,) int8 split flags (:data:`brainpipe.data.contracts.SPLIT_FLAGS`).
        """
        starts = np.asarray(starts, dtype=np.int64)
        return (
            np.asarray(counts["split"].values)[starts].astype(np.int8)
            if starts.size
            else np.zeros(0, np.int8)
        )

    def require_windows(
        self, split: np.ndarray, source: str = "counts", names=("train", "validation")
    ) -> None:
        """Raise one line when no window of the given splits fits (``split``: every window's flag).

        Parameters
        ----------
        split : numpy.ndarray
            The split flag of every window (:meth:`window_splits`).
        source : str, default "counts"
            What the counts are called in the message.
        names : sequence of str, default ("train", "validation")
            The splits that must have a window.

        Raises
        ------
        brainpipe.errors.InputError
            A split without a window.
        """
        from brainpipe.data.contracts import SPLIT_FLAGS

        for name in names:
            if not np.any(split == SPLIT_FLAGS[name]):
                raise InputError(
                    f"{source}: no {name} window ({split.size} windows of {self.window_s} s after a past of "
                    f"{self.past_window_s} s fit inside the split blocks); use shorter windows or fewer split blocks"
                )

    def window_targets(self, counts: xr.Dataset, starts: np.ndarray, source: str = "counts") -> np.ndarray:
        """The decoding target of the windows at ``starts`` (:meth:`transform`'s, without tokenising them).

        Parameters
        ----------
        counts : xarray.Dataset
            A ``spike_counts`` dataset.
        starts : numpy.ndarray
            First bins of the windows (:meth:`window_starts`).
        source : str, default "counts"
            What the counts are called in error messages.

        Returns
        -------
        numpy.ndarray
            (n, 1) float32: the current window's mean (regression) or the class index of its last bin
            (classification); NaN where there is no target or no value.
        """
        starts = np.asarray(starts, dtype=np.int64)
        target = np.full((starts.size, 1), np.nan, np.float32)
        if self.target is None or not starts.size:
            return target
        tv = self._variables(
            counts, str(self.target["source"]), [str(self.target["variable"])], "target", source
        )[:, 0]
        cur = tv[starts[:, None] + np.arange(self.window_bins_)[None, :]]
        if self.target.get("kind", "regression") == "classification":
            last = cur[:, -1]
            lab = np.searchsorted(self.classes_, last)
            known = (lab < self.classes_.size) & (
                self.classes_[np.clip(lab, 0, self.classes_.size - 1)] == last
            )
            target[:, 0] = np.where(known, lab, np.nan)
        else:
            target[:, 0] = cur.mean(axis=1)
        return target

    @fill_doc
    def transform(
        self, counts: xr.Dataset, source: str = "counts", starts: np.ndarray | None = None
    ) -> Windows:
        """Tokenise every valid window of ``counts`` (units must be the fitted ones, in the same order).

        %(counts_source_parameters)s
        starts : numpy.ndarray, optional
            Only these windows (first bins, from :meth:`window_starts`), e.g. one block of a streamed cohort; default
            every valid window.

        Returns
        -------
        Windows
            The current and past token sequences, modalities, target, start time and split of every window.
        """
        units = np.asarray(counts["unit"].values).astype(str)
        if not np.array_equal(units, self.units_):
            raise InputError(
                f"{source}: the data have {units.size} units ({', '.join(units[:4])}...) but the tokeniser was fitted on "
                f"{self.units_.size} ({', '.join(self.units_[:4])}...); use the same units in the same order"
            )
        if abs(float(counts.attrs["bin_width_s"]) - self.bin_width_s_) > 1e-12:
            raise InputError(
                f"{source}: bin width {counts.attrs['bin_width_s']} s differs from the fitted {self.bin_width_s_} s"
            )
        y = np.asarray(counts["counts"].values)
        W, P = self.window_bins_, self.past_bins_
        starts = self.window_starts(counts) if starts is None else np.asarray(starts, dtype=np.int64)
        sp = self.special()
        n, B, PB = starts.size, self.block_size, self.past_block_size
        cur_id = np.full((n, B), sp["pad"], np.int64)
        cur_dt = np.full((n, B), sp["pad_dt"], np.int64)
        past_id = np.full((n, PB), sp["pad"], np.int64)
        past_dt = np.full((n, PB), sp["pad_dt"], np.int64)
        cur_id[:, 0], cur_dt[:, 0] = sp["sos"], sp["sos_dt"]
        past_id[:, 0], past_dt[:, 0] = sp["sos"], sp["sos_dt"]
        stats = {
            "n_windows": n,
            "n_truncated_windows": 0,
            "n_dropped_spikes": 0,
            "n_past_truncated_windows": 0,
            "n_past_dropped_spikes": 0,
            "n_empty_windows": 0,
        }
        k = self.rebin_
        for w, t0 in enumerate(starts):
            ids, dts = self._tokens(y[t0 : t0 + W], k)
            if ids.size == 0:
                stats["n_empty_windows"] += 1
            if ids.size > B - 2:
                stats["n_truncated_windows"] += 1
                stats["n_dropped_spikes"] += int(ids.size - (B - 1))
                ids, dts = ids[: B - 1], dts[: B - 1]
                cur_id[w, 1:], cur_dt[w, 1:] = ids, dts
            else:
                m = ids.size
                cur_id[w, 1 : m + 1], cur_dt[w, 1 : m + 1] = ids, dts
                cur_id[w, m + 1], cur_dt[w, m + 1] = sp["eos"], sp["eos_dt"]
            ids, dts = self._tokens(y[t0 - P : t0], k)
            if ids.size > PB - 1:
                stats["n_past_truncated_windows"] += 1
                stats["n_past_dropped_spikes"] += int(ids.size - (PB - 1))
                ids, dts = ids[-(PB - 1) :], dts[-(PB - 1) :]
            past_id[w, 1 : ids.size + 1], past_dt[w, 1 : ids.size + 1] = ids, dts
        if stats["n_truncated_windows"]:
            LOG.info(
                "%s: %d of %d windows had more than block_size-2=%d spikes (%d later spikes dropped)",
                source,
                stats["n_truncated_windows"],
                n,
                B - 2,
                stats["n_dropped_spikes"],
            )
        self.stats_ = stats
        # modalities, sampled at every fine bin of the past + current window
        span = np.arange(-P, W)
        mods = [
            self._variables(counts, src, vars_, f"modality '{name}'", source)
            for name, src, vars_ in self.mod_layout_
        ]
        mod_vals = np.concatenate(mods, axis=1) if mods else np.zeros((y.shape[0], 0))
        modality = (
            mod_vals[starts[:, None] + span[None, :]].astype(np.float32)
            if n
            else np.zeros((0, P + W, 0), np.float32)
        )
        target = self.window_targets(counts, starts, source)
        split = self.window_splits(counts, starts)
        t_start = np.asarray(counts["time"].values)[starts] - 0.5 * self.bin_width_s_ if n else np.zeros(0)
        wc = (
            np.stack([y[t0 : t0 + W].sum(axis=0) for t0 in starts])
            if n
            else np.zeros((0, units.size), np.int64)
        )
        return Windows(cur_id, cur_dt, past_id, past_dt, modality, target, t_start, split, wc, starts)

    def n_modality_vars(self) -> list[int]:
        """The number of variables of each modality, in the fitted modality order.

        Returns
        -------
        list of int
            One count per modality.
        """
        return [len(v) for _, _, v in self.mod_layout_]

    @staticmethod
    def _tokens(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """IDs and dt tokens of a (bins, units) count block: time-major, neurons ascending, repeats for counts."""
        t, u = np.nonzero(block)
        reps = block[t, u].astype(np.int64)
        return np.repeat(u, reps).astype(np.int64), (np.repeat(t, reps) // k).astype(np.int64)

    def to_attrs(self) -> dict[str, object]:
        """The tokenizer's settings and fitted bin width as dataset attrs (``tok_*``), for a checkpoint file.

        Returns
        -------
        dict
            Attr name -> value.
        """
        return {
            "tok_dt_s": self.dt_s,
            "tok_window_s": self.window_s,
            "tok_past_window_s": self.past_window_s,
            "tok_stride_s": self.stride_s if self.stride_s is not None else self.window_s,
            "tok_block_size": self.block_size,
            "tok_past_block_size": self.past_block_size,
            "tok_bin_width_s": self.bin_width_s_,
            "vocab_id": self.vocab["id"],
            "vocab_dt": self.vocab["dt"],
            "n_units": self.vocab["n_units"],
        }


def align_modality(values: xr.DataArray, time: np.ndarray, name: str, source: str = "modality") -> np.ndarray:
    """Align a modality sampled on its own clock (``values(time, var)``) to the bin centres ``time``.

    Raises :class:`InputError` when its timestamps do not cover the spike data (more than one of its own sampling
    steps beyond either end) or when it has NaNs; values are linearly interpolated in between.

    Parameters
    ----------
    values : xarray.DataArray
        (time, var) samples; the first dimension is its time in seconds.
    time : numpy.ndarray
        Bin centres (s) to align to.
    name : str
        The modality's name (for messages).
    source : str
        The file it came from (for messages).

    Returns
    -------
    numpy.ndarray
        (len(time), n_var) float32.
    """
    tdim = values.dims[0]
    ts = np.asarray(values[tdim].values, dtype=np.float64)
    v = np.asarray(values.values, dtype=np.float64).reshape(ts.size, -1)
    if ts.size < 2 or not np.all(np.diff(ts) > 0):
        raise InputError(f"{source}: modality '{name}' needs at least 2 samples with increasing timestamps")
    if not np.all(np.isfinite(v)):
        raise InputError(
            f"{source}: modality '{name}' has NaN or infinite values ({int((~np.isfinite(v)).any(axis=1).sum())} samples); "
            "interpolate or drop them first"
        )
    step = float(np.median(np.diff(ts)))
    if ts[0] > time[0] + step or ts[-1] < time[-1] - step:
        raise InputError(
            f"{source}: modality '{name}' covers {ts[0]:.3f}-{ts[-1]:.3f} s but the spike data span {time[0]:.3f}-{time[-1]:.3f} s; "
            "give a modality recorded over the whole session or restrict the spikes (t_start_s/t_stop_s) to its span"
        )
    return np.stack([np.interp(time, ts, v[:, k]) for k in range(v.shape[1])], axis=1)


def label_subset(
    train_idx: np.ndarray, fraction: float, min_windows: int = 8, draw: int = 0, n_draws: int = 1
) -> np.ndarray:
    """The labelled subset of train windows for a label fraction: evenly spaced over the train windows (every
    k-th one, deterministic), so a few labels still span the recording's range of behaviour; at least
    ``min_windows``. Train windows never overlap validation or test windows (time blocks), so spacing them out
    leaks nothing. Draw ``d`` of ``n_draws`` shifts the grid by ``d / n_draws`` of its spacing (draw 0 is the
    unshifted grid), so that several draws label different, equally spread windows.

    Parameters
    ----------
    train_idx : numpy.ndarray
        Indices of the train windows, in time order.
    fraction : float
        Fraction of them to label, in (0, 1].
    min_windows : int
        Fewest labelled windows.
    draw : int, default 0
        Which draw, ``0 <= draw < n_draws``.
    n_draws : int, default 1
        Number of draws (the shift's denominator).

    Returns
    -------
    numpy.ndarray
        The labelled subset of ``train_idx``.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"label fraction {fraction} must be in (0, 1]")
    if not 0 <= int(draw) < max(int(n_draws), 1):
        raise ConfigError(f"label draw {draw} must be in [0, n_draws={n_draws})")
    if fraction >= 1 or train_idx.size <= min_windows:
        return train_idx
    n_keep = max(min_windows, int(round(fraction * train_idx.size)))
    if int(draw) == 0:
        return train_idx[np.linspace(0, train_idx.size - 1, n_keep).round().astype(int)]
    step = train_idx.size / n_keep
    pos = np.floor(step * (np.arange(n_keep) + int(draw) / int(n_draws))).astype(int)
    return train_idx[np.minimum(pos, train_idx.size - 1)]
