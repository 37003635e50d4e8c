"""Neuroformer: multimodal generative pretraining over spike tokens, behaviour decoding, attention connectivity.

After Antoniades et al. (ICLR 2024), re-implemented from the paper and the notes in ``shared/notes/models-deep.md``,
with the reference's flaws fixed: time-block splits (a window and its past window never cross a split or trial
boundary), checkpoints chosen on the validation split, the behaviour head pooling real tokens only (not PAD), a
past window that is never empty (a start token, so attention never sees only masked keys), the vocabulary stored
with the weights and checked on load, and weights saved without pickle (as a ``model_fit`` dataset).

Tokenisation (:class:`SpikeTokenizer`), from a ``spike_counts`` dataset (counts at a fine bin):

1. resolution: ``dt_s`` must be an integer multiple ``k`` of the counts' ``bin_width_s`` (else a ConfigError);
   a spike's dt token is its bin's offset inside its window divided by ``k`` (rounded down): rebinning by ``k``;
   ``window_s`` and ``past_window_s`` must be multiples of ``dt_s``;
2. windows: current windows of ``window_s`` on a grid of ``stride_s`` inside each contiguous segment (same split,
   same trial, no gap; :func:`brainpipe.preprocess.spikes.segments`), each preceded by a past window of
   ``past_window_s`` inside the same segment (windows whose past would cross a boundary are not made);
3. current sequence: ``[SOS] + spikes + [EOS]`` padded with ``PAD`` to ``block_size``; spikes ordered by time bin,
   then neuron index; a count ``c > 1`` in a bin gives ``c`` repeated tokens. Each token has a neuron-ID token
   (``0..n_units-1``; SOS = n_units, EOS = n_units + 1, PAD = n_units + 2) and a dt token (``0..n_dt-1``; the
   specials have their own dt tokens ``n_dt`` (SOS), ``n_dt + 1`` (EOS), ``n_dt + 2`` (PAD));
4. truncation: a window with more than ``block_size - 2`` spikes keeps its *earliest* ``block_size - 2`` spikes
   (the prefix a generator would produce) and has no EOS; the number of such windows and of dropped spikes are
   counted (``stats_``). The past sequence is ``[SOS] + spikes`` padded to ``past_block_size``; when too long, its
   *latest* spikes are kept (those nearest the current window) and the rest counted;
5. modalities: each named modality is a list of variables of the counts file (``behaviour`` or ``stimulus``),
   sampled at every fine bin of the past and current windows; the decoding target is one variable: the mean
   over the current window (regression) or its value at the window's last bin (classification).

Model (:class:`NeuroformerNet`): token + dt + position embeddings; ``n_past_layers`` cross-attention blocks to the
past-window tokens; one cross-attention block per modality (each modality through a small MLP encoder with a
learned time embedding); ``n_layers`` causal self-attention blocks; heads for the next ID and the next dt; a
behaviour head on the mean of the real (non-PAD) tokens; optional contrastive (InfoNCE) alignment between the
pooled neural embedding and a pooled modality embedding. Attention is ``F.scaled_dot_product_attention`` (explicit
softmax only when attention maps are asked for, for connectivity).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError, InputError
from brainpipe.models.base import Estimator, state_to_variables, variables_to_state

LOG = logging.getLogger("brainpipe.models.neuroformer")
MODALITY_SOURCES = ("behaviour", "stimulus")
N_SPECIAL = 3  # SOS, EOS, PAD


# =============================================================================================================
# tokeniser
# =============================================================================================================
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
    """Spike counts -> token windows (see the module doc for the rules). Fitted attributes end in ``_``."""

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
        n, m = len(self.units_), self.n_dt
        return {"sos": n, "eos": n + 1, "pad": n + 2, "sos_dt": m, "eos_dt": m + 1, "pad_dt": m + 2}

    # -- checks ----------------------------------------------------------------------------------------------
    def _ratio(self, a: float, b: float, what: str) -> int:
        k = a / b
        if round(k) < 1 or abs(k - round(k)) > 1e-6:
            raise ConfigError(what)
        return int(round(k))

    def fit(self, counts: xr.Dataset, source: str = "counts") -> SpikeTokenizer:
        """Take the units, the bin width and the modality/target layout from a ``spike_counts`` dataset."""
        bw = float(counts.attrs["bin_width_s"])
        self.rebin_ = self._ratio(
            self.dt_s,
            bw,
            f"{source}: the tokeniser resolution dt_s={self.dt_s} s is not an integer multiple of the counts' bin width "
            f"{bw} s; set neuroformer tokeniser dt_s to a multiple of {bw} (e.g. {bw}) or bin the spikes at a divisor of it",
        )
        self.window_bins_ = self.rebin_ * self._ratio(
            self.window_s, self.dt_s, f"tokeniser window_s={self.window_s} must be a multiple of dt_s={self.dt_s}"
        )
        self.past_bins_ = self.rebin_ * self._ratio(
            self.past_window_s, self.dt_s, f"tokeniser past_window_s={self.past_window_s} must be a multiple of dt_s={self.dt_s}"
        )
        stride = self.stride_s if self.stride_s is not None else self.window_s
        self.stride_bins_ = self.rebin_ * self._ratio(stride, self.dt_s, f"tokeniser stride_s={stride} must be a multiple of dt_s")
        if self.block_size < 3 or self.past_block_size < 2:
            raise ConfigError(f"tokeniser: block_size {self.block_size} must be >= 3 and past_block_size >= 2")
        self.bin_width_s_ = bw
        self.units_ = np.asarray(counts["unit"].values).astype(str)
        self.mod_layout_ = [(name, str(spec["source"]), [str(v) for v in spec["variables"]]) for name, spec in self.modalities.items()]
        for name, src, vars_ in self.mod_layout_:
            self._variables(counts, src, vars_, f"modality '{name}'", source)
        if self.target is not None:
            self._variables(counts, str(self.target["source"]), [str(self.target["variable"])], "target", source)
            if self.target.get("kind", "regression") == "classification":
                vals = self._variables(counts, str(self.target["source"]), [str(self.target["variable"])], "target", source)
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
    def transform(self, counts: xr.Dataset, source: str = "counts") -> Windows:
        """Tokenise every valid window of ``counts`` (units must be the fitted ones, in the same order)."""
        from brainpipe.preprocess.spikes import segments

        units = np.asarray(counts["unit"].values).astype(str)
        if not np.array_equal(units, self.units_):
            raise InputError(
                f"{source}: the data have {units.size} units ({', '.join(units[:4])}...) but the tokeniser was fitted on "
                f"{self.units_.size} ({', '.join(self.units_[:4])}...); use the same units in the same order"
            )
        if abs(float(counts.attrs["bin_width_s"]) - self.bin_width_s_) > 1e-12:
            raise InputError(f"{source}: bin width {counts.attrs['bin_width_s']} s differs from the fitted {self.bin_width_s_} s")
        y = np.asarray(counts["counts"].values)
        seg = segments(counts)
        W, P, S = self.window_bins_, self.past_bins_, self.stride_bins_
        starts = []
        for s in np.unique(seg):
            idx = np.flatnonzero(seg == s)
            lo, hi = int(idx[0]), int(idx[-1]) + 1
            starts.extend(range(lo + P, hi - W + 1, S))
        starts = np.asarray(starts, dtype=np.int64)
        sp = self.special()
        n, B, PB = starts.size, self.block_size, self.past_block_size
        cur_id = np.full((n, B), sp["pad"], np.int64)
        cur_dt = np.full((n, B), sp["pad_dt"], np.int64)
        past_id = np.full((n, PB), sp["pad"], np.int64)
        past_dt = np.full((n, PB), sp["pad_dt"], np.int64)
        cur_id[:, 0], cur_dt[:, 0] = sp["sos"], sp["sos_dt"]
        past_id[:, 0], past_dt[:, 0] = sp["sos"], sp["sos_dt"]
        stats = {"n_windows": n, "n_truncated_windows": 0, "n_dropped_spikes": 0, "n_past_truncated_windows": 0,
                 "n_past_dropped_spikes": 0, "n_empty_windows": 0}
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
                source, stats["n_truncated_windows"], n, B - 2, stats["n_dropped_spikes"],
            )
        self.stats_ = stats
        # modalities, sampled at every fine bin of the past + current window
        span = np.arange(-P, W)
        mods = [self._variables(counts, src, vars_, f"modality '{name}'", source) for name, src, vars_ in self.mod_layout_]
        mod_vals = np.concatenate(mods, axis=1) if mods else np.zeros((y.shape[0], 0))
        modality = mod_vals[starts[:, None] + span[None, :]].astype(np.float32) if n else np.zeros((0, P + W, 0), np.float32)
        target = np.full((n, 1), np.nan, np.float32)
        if self.target is not None and n:
            tv = self._variables(counts, str(self.target["source"]), [str(self.target["variable"])], "target", source)[:, 0]
            cur = tv[starts[:, None] + np.arange(W)[None, :]]
            if self.target.get("kind", "regression") == "classification":
                last = cur[:, -1]
                lab = np.searchsorted(self.classes_, last)
                known = (lab < self.classes_.size) & (self.classes_[np.clip(lab, 0, self.classes_.size - 1)] == last)
                target[:, 0] = np.where(known, lab, np.nan)
            else:
                target[:, 0] = cur.mean(axis=1)
        split = np.asarray(counts["split"].values)[starts] if n else np.zeros(0, np.int8)
        t_start = np.asarray(counts["time"].values)[starts] - 0.5 * self.bin_width_s_ if n else np.zeros(0)
        wc = np.stack([y[t0 : t0 + W].sum(axis=0) for t0 in starts]) if n else np.zeros((0, units.size), np.int64)
        return Windows(cur_id, cur_dt, past_id, past_dt, modality, target, t_start, split.astype(np.int8), wc, starts)

    def n_modality_vars(self) -> list[int]:
        return [len(v) for _, _, v in self.mod_layout_]

    @staticmethod
    def _tokens(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """IDs and dt tokens of a (bins, units) count block: time-major, neurons ascending, repeats for counts."""
        t, u = np.nonzero(block)
        reps = block[t, u].astype(np.int64)
        return np.repeat(u, reps).astype(np.int64), (np.repeat(t, reps) // k).astype(np.int64)

    def to_attrs(self) -> dict[str, object]:
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


# =============================================================================================================
# network
# =============================================================================================================
class Attention(nn.Module):
    """Multi-head attention with ``F.scaled_dot_product_attention``; explicit weights on request."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        if d % n_heads:
            raise ConfigError(f"neuroformer model: d_model={d} must be divisible by n_heads={n_heads}")
        self.h, self.dk, self.p = n_heads, d // n_heads, dropout
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, mem, mask=None, causal=False, need_weights=False):
        B, L, D = x.shape
        M = mem.shape[1]
        q = self.q(x).view(B, L, self.h, self.dk).transpose(1, 2)
        k = self.k(mem).view(B, M, self.h, self.dk).transpose(1, 2)
        v = self.v(mem).view(B, M, self.h, self.dk).transpose(1, 2)
        if causal:
            cm = torch.ones(L, M, dtype=torch.bool, device=x.device).tril()
            mask = cm[None, None] if mask is None else (mask & cm[None, None])
        w = None
        if need_weights:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(self.dk)
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            w = torch.softmax(s.float(), dim=-1).to(q.dtype)
            out = w @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.p if self.training else 0.0)
        return self.o(out.transpose(1, 2).reshape(B, L, D)), w


class Block(nn.Module):
    """Pre-LN block: ``x + Attn(LN(x), LN(mem))``, then ``x + MLP(LN(x))``."""

    def __init__(self, d: int, n_heads: int, dropout: float, cross: bool):
        super().__init__()
        self.cross = cross
        self.ln1 = nn.LayerNorm(d)
        self.ln_mem = nn.LayerNorm(d) if cross else None
        self.attn = Attention(d, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mem=None, mask=None, need_weights=False):
        h = self.ln1(x)
        m = self.ln_mem(mem) if self.cross else h
        a, w = self.attn(h, m, mask=mask, causal=not self.cross, need_weights=need_weights)
        x = x + self.drop(a)
        return x + self.mlp(self.ln2(x)), w


class NeuroformerNet(nn.Module):
    """The torch module. ``forward(cur_id, cur_dt, past_id, past_dt, modality)`` takes the input part of the
    current sequence (``block_size - 1`` tokens) and returns a dict with ``id_logits``, ``dt_logits``,
    ``behaviour`` (head output), ``pooled`` and, when ``need_weights``, the attention maps."""

    def __init__(
        self,
        n_id: int,
        n_dt: int,
        block_size: int,
        past_block_size: int,
        modality_dims: Sequence[int] = (),
        modality_len: int = 1,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        n_past_layers: int = 1,
        dropout: float = 0.1,
        behaviour_out: int = 1,
        contrastive_dim: int = 0,
    ):
        super().__init__()
        d = d_model
        self.n_id, self.n_dt, self.pad_id, self.pad_dt = n_id, n_dt, n_id - 1, n_dt - 1
        self.modality_dims = [int(m) for m in modality_dims]
        self.tok = nn.Embedding(n_id, d)
        self.dt = nn.Embedding(n_dt, d)
        self.pos = nn.Parameter(torch.zeros(1, block_size, d))
        self.pos_past = nn.Parameter(torch.zeros(1, past_block_size, d))
        self.past_blocks = nn.ModuleList(Block(d, n_heads, dropout, cross=True) for _ in range(n_past_layers))
        self.mod_enc = nn.ModuleList(
            nn.Sequential(nn.Linear(m, d), nn.GELU(), nn.Linear(d, d)) for m in self.modality_dims
        )
        self.mod_pos = nn.Parameter(torch.zeros(1, modality_len, d))
        self.mod_blocks = nn.ModuleList(Block(d, n_heads, dropout, cross=True) for _ in self.modality_dims)
        self.blocks = nn.ModuleList(Block(d, n_heads, dropout, cross=False) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head_id = nn.Linear(d, n_id, bias=False)
        self.head_dt = nn.Linear(d, n_dt, bias=False)
        self.head_behaviour = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, behaviour_out))
        self.proj_neural = nn.Linear(d, contrastive_dim) if contrastive_dim else None
        self.proj_modality = nn.Linear(d, contrastive_dim) if contrastive_dim and self.modality_dims else None
        self.drop = nn.Dropout(dropout)
        self.apply(self._init)
        for p in (self.pos, self.pos_past, self.mod_pos):
            nn.init.normal_(p, std=0.02)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, cur_id, cur_dt, past_id, past_dt, modality, need_weights=False):
        L, P = cur_id.shape[1], past_id.shape[1]
        x = self.drop(self.tok(cur_id) + self.dt(cur_dt) + self.pos[:, :L])
        past = self.tok(past_id) + self.dt(past_dt) + self.pos_past[:, :P]
        past_mask = (past_id != self.pad_id)[:, None, None, :]
        maps: dict[str, list[torch.Tensor]] = {"past": [], "self": []}
        for blk in self.past_blocks:
            x, w = blk(x, past, mask=past_mask, need_weights=need_weights)
            maps["past"].append(w)
        mod_feats = []
        start = 0
        Lm = modality.shape[1]
        for dim, enc, blk in zip(self.modality_dims, self.mod_enc, self.mod_blocks, strict=True):
            m = enc(modality[..., start : start + dim].to(x.dtype)) + self.mod_pos[:, :Lm]
            start += dim
            mod_feats.append(m)
            x, _ = blk(x, m)
        for blk in self.blocks:
            x, w = blk(x, need_weights=need_weights)
            maps["self"].append(w)
        x = self.ln_f(x)
        real = (cur_id != self.pad_id).to(x.dtype)[..., None]
        pooled = (x * real).sum(1) / real.sum(1).clamp_min(1.0)
        out = {
            "id_logits": self.head_id(x),
            "dt_logits": self.head_dt(x),
            "pooled": pooled,
            "behaviour": self.head_behaviour(pooled),
        }
        if self.proj_neural is not None and self.proj_modality is not None and mod_feats:
            out["z_neural"] = F.normalize(self.proj_neural(pooled), dim=-1)
            out["z_modality"] = F.normalize(self.proj_modality(torch.stack([f.mean(1) for f in mod_feats]).mean(0)), dim=-1)
        if need_weights:
            out["attention"] = maps
        return out


def _split_batch(batch):
    cur_id, cur_dt, past_id, past_dt, modality, target = batch
    return cur_id[:, :-1], cur_dt[:, :-1], cur_id[:, 1:], cur_dt[:, 1:], past_id, past_dt, modality, target


def pretrain_loss(model: NeuroformerNet, batch, contrastive_weight: float = 0.0, temperature: float = 0.1):
    """Next-ID + next-dt cross-entropy (PAD targets ignored; EOS kept), plus optional InfoNCE alignment."""
    x_id, x_dt, y_id, y_dt, past_id, past_dt, modality, _ = _split_batch(batch)
    out = model(x_id, x_dt, past_id, past_dt, modality)
    loss_id = F.cross_entropy(out["id_logits"].flatten(0, 1).float(), y_id.flatten(), ignore_index=model.pad_id)
    loss_dt = F.cross_entropy(out["dt_logits"].flatten(0, 1).float(), y_dt.flatten(), ignore_index=model.pad_dt)
    loss = loss_id + loss_dt
    res = {"loss_id": loss_id.detach(), "loss_dt": loss_dt.detach()}
    if contrastive_weight > 0 and "z_neural" in out and x_id.shape[0] > 1:
        sim = out["z_neural"].float() @ out["z_modality"].float().T / temperature
        lab = torch.arange(sim.shape[0], device=sim.device)
        clip = 0.5 * (F.cross_entropy(sim, lab) + F.cross_entropy(sim.T, lab))
        loss = loss + contrastive_weight * clip
        res["loss_contrastive"] = clip.detach()
    res["loss"] = loss
    return res


def behaviour_loss(model: NeuroformerNet, batch, kind: str = "regression", class_weight: torch.Tensor | None = None):
    """Behaviour head loss: MSE on standardised targets (regression) or class-weighted cross-entropy
    (classification; weights inverse to the class frequencies of the labelled windows, so the decoder is trained
    for balanced accuracy rather than for the majority class)."""
    x_id, x_dt, _, _, past_id, past_dt, modality, target = _split_batch(batch)
    out = model(x_id, x_dt, past_id, past_dt, modality)
    if kind == "classification":
        w = class_weight.to(out["behaviour"].device) if class_weight is not None else None
        return F.cross_entropy(out["behaviour"].float(), target[:, 0].long(), weight=w)
    return F.mse_loss(out["behaviour"].float(), target.float())


# =============================================================================================================
# estimator
# =============================================================================================================
MODEL_KEYS = ("d_model", "n_heads", "n_layers", "n_past_layers", "dropout", "contrastive_dim")


class Neuroformer(Estimator):
    """Neuroformer in the scikit-learn shape.

    Parameters
    ----------
    tokenizer : a :class:`SpikeTokenizer` (resolution, windows, block sizes, modalities, target).
    d_model, n_heads, n_layers, n_past_layers, dropout, contrastive_dim : network size (see :class:`NeuroformerNet`).
    contrastive_weight : weight of the InfoNCE alignment term in pretraining (0: off).
    train : dict of :class:`brainpipe.training.TrainConfig` fields for pretraining; ``finetune`` the same for
        behaviour fine-tuning.
    seed : seeds everything (model initialisation, batches, label subsets, sampling).

    Fitted attributes: ``net_``, ``tokenizer_``, ``history_`` (pretraining), ``target_mean_``/``target_std_``.
    """

    def __init__(
        self,
        tokenizer: SpikeTokenizer | None = None,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        n_past_layers: int = 1,
        dropout: float = 0.1,
        contrastive_dim: int = 0,
        contrastive_weight: float = 0.0,
        train: Mapping[str, object] | None = None,
        finetune: Mapping[str, object] | None = None,
        seed: int = 0,
    ):
        self.tokenizer = tokenizer
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.n_past_layers = n_past_layers
        self.dropout = dropout
        self.contrastive_dim = contrastive_dim
        self.contrastive_weight = contrastive_weight
        self.train = train
        self.finetune = finetune
        self.seed = seed

    model_name = "neuroformer"

    def _check_params(self) -> None:
        from brainpipe.training import TrainConfig

        if int(self.d_model) < 1 or int(self.n_heads) < 1 or int(self.d_model) % int(self.n_heads):
            raise self._param_error("d_model", f"must be >= 1 and divisible by n_heads ({self.n_heads})")
        for name in ("n_layers", "n_past_layers"):
            if int(getattr(self, name)) < 0:
                raise self._param_error(name, "must be >= 0")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise self._param_error("dropout", "must be in [0, 1)")
        if float(self.contrastive_weight) < 0 or int(self.contrastive_dim) < 0:
            raise self._param_error("contrastive_weight", "and contrastive_dim must be >= 0")
        for name in ("train", "finetune"):
            TrainConfig.from_dict(getattr(self, name), source=f"Neuroformer: {name}")

    def _tokenizer(self) -> SpikeTokenizer:
        """The fitted tokenizer, else (a copy of) the one given, else the default one."""
        if hasattr(self, "tokenizer_"):
            return self.tokenizer_
        return copy.deepcopy(self.tokenizer) if self.tokenizer is not None else SpikeTokenizer()

    # -- building --------------------------------------------------------------------------------------------
    @property
    def target_kind(self) -> str:
        t = self.tokenizer_.target
        return str(t.get("kind", "regression")) if t is not None else "regression"

    def _behaviour_out(self) -> int:
        if self.tokenizer_.target is not None and self.target_kind == "classification":
            return int(self.tokenizer_.classes_.size)
        return 1

    def _build(self) -> NeuroformerNet:
        tok = self.tokenizer_
        torch.manual_seed(self.seed)
        return NeuroformerNet(
            n_id=tok.vocab["id"],
            n_dt=tok.vocab["dt"],
            block_size=tok.block_size,
            past_block_size=tok.past_block_size,
            modality_dims=tok.n_modality_vars(),
            modality_len=tok.past_bins_ + tok.window_bins_,
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            n_past_layers=self.n_past_layers,
            dropout=self.dropout,
            behaviour_out=self._behaviour_out(),
            contrastive_dim=self.contrastive_dim,
        )

    def _prepare(self, counts: xr.Dataset, source: str) -> Windows:
        if not hasattr(self, "tokenizer_"):
            self.tokenizer_ = self._tokenizer().fit(counts, source)
        win = self.tokenizer_.transform(counts, source)
        self.token_stats_ = dict(self.tokenizer_.stats_)
        for name in ("train", "validation"):
            if not np.any(win.split == SPLIT_FLAGS[name]):
                raise InputError(
                    f"{source}: no {name} window ({len(win)} windows of {self.tokenizer_.window_s} s after a past of "
                    f"{self.tokenizer_.past_window_s} s fit inside the split blocks); use shorter windows or fewer split blocks"
                )
        return win

    @staticmethod
    def _train_config(d: Mapping[str, object], log=None):
        from brainpipe.training import TrainConfig

        return TrainConfig(**dict(d))

    # -- pretraining -----------------------------------------------------------------------------------------
    def fit(self, counts: xr.Dataset, source: str = "counts", checkpoint=None, fingerprint=None, log=None) -> Neuroformer:
        """Pretrain by next-token prediction on the train windows; checkpoint chosen on the validation windows."""
        from brainpipe.training import train

        self._check_params()
        win = self._prepare(counts, source)
        self.net_ = self._build()
        tr, va = win.select(win.split == SPLIT_FLAGS["train"]), win.select(win.split == SPLIT_FLAGS["validation"])
        cw = float(self.contrastive_weight)
        res = train(
            self.net_,
            tr.tensors(),
            lambda m, b: pretrain_loss(m, b, cw),
            self._train_config(self.train or {}),
            val_data=va.tensors(),
            checkpoint=checkpoint,
            fingerprint=fingerprint,
            log=log,
        )
        self.history_ = list(res.history)
        self.train_result_ = res
        self.net_.eval()
        return self

    # -- behaviour -------------------------------------------------------------------------------------------
    def _targets(self, win: Windows) -> np.ndarray:
        y = win.target.astype(np.float32).copy()
        if self.target_kind == "regression":
            y = (y - self.target_mean_) / self.target_std_
        return y

    def fit_behaviour(
        self,
        counts: xr.Dataset,
        label_fraction: float = 1.0,
        from_pretrained: bool = True,
        source: str = "counts",
        checkpoint=None,
        fingerprint=None,
        log=None,
        max_val_windows: int | None = 512,
        min_epoch_windows: int = 1024,
    ) -> Neuroformer:
        """Fine-tune the behaviour head (and the network) on ``label_fraction`` of the labelled train windows.

        The labelled subset is :func:`label_subset`: ``label_fraction`` of the labelled train windows, evenly
        spaced (at least 8).
        ``from_pretrained=False`` re-initialises the network (the from-scratch comparison). A small labelled set
        is repeated so that an epoch (one validation pass) covers at least ``min_epoch_windows`` windows; the
        validation loss uses at most ``max_val_windows`` labelled validation windows, evenly spread (None: all).
        """
        from brainpipe.training import train

        self._check_params()
        if self._tokenizer().target is None:
            raise ConfigError("neuroformer: fit_behaviour needs a tokenizer target")
        win = self._prepare(counts, source)
        if not from_pretrained or not hasattr(self, "net_"):
            self.net_ = self._build()
        lab = np.isfinite(win.target[:, 0])
        tr = np.flatnonzero((win.split == SPLIT_FLAGS["train"]) & lab)
        va = (win.split == SPLIT_FLAGS["validation"]) & lab
        if tr.size == 0 or not va.any():
            raise InputError(f"{source}: no labelled train or validation windows for the decoding target")
        keep = self._label_subset(win, tr, label_fraction)
        self.n_labelled_ = int(keep.size)
        va_idx = np.flatnonzero(va)
        if max_val_windows is not None and va_idx.size > max_val_windows:
            va_idx = va_idx[np.linspace(0, va_idx.size - 1, max_val_windows).round().astype(int)]
        self.n_validation_ = int(va_idx.size)
        if self.target_kind == "regression":
            self.target_mean_ = float(win.target[keep, 0].mean())
            self.target_std_ = float(win.target[keep, 0].std() + 1e-6)
        y = self._targets(win)
        win_y = Windows(**{**win.__dict__, "target": y})
        kind = self.target_kind
        cfg = dict(self.finetune or {})
        cw = None
        if kind == "classification":
            freq = np.bincount(win.target[keep, 0].astype(int), minlength=self._behaviour_out()).astype(np.float64)
            cw = torch.as_tensor(np.where(freq > 0, freq.sum() / np.maximum(freq, 1) / max((freq > 0).sum(), 1), 0.0),
                                 dtype=torch.float32)
        reps = max(1, int(np.ceil(min_epoch_windows / max(keep.size, 1))))
        res = train(
            self.net_,
            win_y.select(np.tile(keep, reps)).tensors(),
            lambda m, b: behaviour_loss(m, b, kind, cw),
            self._train_config(cfg),
            val_data=win_y.select(va_idx).tensors(),
            checkpoint=checkpoint,
            fingerprint=fingerprint,
            log=log,
        )
        self.finetune_history_ = list(res.history)
        self.net_.eval()
        return self

    def _label_subset(self, win: Windows, train_idx: np.ndarray, fraction: float) -> np.ndarray:
        return label_subset(train_idx, fraction)

    def set_target(self, counts: xr.Dataset, target: Mapping[str, object] | None, source: str = "counts") -> Neuroformer:
        """Give a (pretrained) model a decoding target: checks it against the data and sizes a new behaviour head."""
        self._check_fitted()
        self.tokenizer_.target = dict(target) if target is not None else None
        self.tokenizer_.fit(counts, source)
        out = self._behaviour_out()
        if hasattr(self, "net_") and self.net_.head_behaviour[-1].out_features != out:
            torch.manual_seed(self.seed)
            d = self.net_.head_behaviour[-1].in_features
            self.net_.head_behaviour = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, out)).to(next(self.net_.parameters()).device)
        return self

    @torch.no_grad()
    def _forward_windows(self, win: Windows, batch_size: int = 256, need_weights: bool = False):
        net = self.net_
        dev = next(net.parameters()).device
        outs = []
        for s in range(0, len(win), batch_size):
            b = [t[s : s + batch_size].to(dev) for t in win.tensors()]
            x_id, x_dt, y_id, _, past_id, past_dt, modality, _ = _split_batch(b)
            o = net(x_id, x_dt, past_id, past_dt, modality, need_weights=need_weights)
            outs.append((o, b, y_id))
        return outs

    def predict_behaviour(self, counts: xr.Dataset, split: str = "test", source: str = "counts") -> tuple[np.ndarray, np.ndarray]:
        """(prediction, target) for the windows of one split: values (regression) or class labels."""
        self._check_fitted()
        self.net_.eval()
        win = self.tokenizer_.transform(counts, source)
        win = win.select((win.split == SPLIT_FLAGS[split]) & np.isfinite(win.target[:, 0]))
        preds = [o["behaviour"].float().cpu().numpy() for o, _, _ in self._forward_windows(win)]
        p = np.concatenate(preds) if preds else np.zeros((0, self._behaviour_out()))
        if self.target_kind == "classification":
            return self.tokenizer_.classes_[p.argmax(1)], self.tokenizer_.classes_[win.target[:, 0].astype(int)]
        return p[:, 0] * self.target_std_ + self.target_mean_, win.target[:, 0].astype(np.float64)

    def score(self, counts: xr.Dataset, split: str = "test") -> float:
        """Held-out score of one split, higher is better: R2 (regression) or accuracy (classification) of behaviour
        decoding when the model has a target, else minus the mean next-token loss (nats per token, ID + dt).

        Parameters
        ----------
        counts : xarray.Dataset
            A ``spike_counts`` dataset with the model's units.
        split : {"train", "validation", "test"}
            The split to score.

        Returns
        -------
        float
        """
        self._check_fitted()
        if self.tokenizer_.target is None:
            return -self.token_loss(counts, split)
        p, y = self.predict_behaviour(counts, split)
        if self.target_kind == "classification":
            return float(np.mean(p == y))
        return r2_score(y, p)

    @torch.no_grad()
    def token_loss(self, counts: xr.Dataset, split: str = "test", source: str = "counts") -> float:
        """Mean next-token cross-entropy (ID + dt, nats per token, PAD ignored) over the windows of one split."""
        self._check_fitted()
        self.net_.eval()
        win = self.tokenizer_.transform(counts, source)
        win = win.select(win.split == SPLIT_FLAGS[split])
        if len(win) == 0:
            raise InputError(f"{source}: no {split} window to score")
        dev = next(self.net_.parameters()).device
        tensors = win.tensors()
        total, n = 0.0, 0
        for i in range(0, len(win), 256):
            b = [t[i : i + 256].to(dev) for t in tensors]
            total += float(pretrain_loss(self.net_, b)["loss"]) * b[0].shape[0]
            n += b[0].shape[0]
        return total / n

    # -- connectivity ------------------------------------------------------------------------------------------
    def connectivity(self, counts: xr.Dataset, split: str = "test", by: str = "target", max_windows: int | None = None) -> np.ndarray:
        """Neuron x neuron (post, pre) matrix from attention rollout, current-window tokens -> past-window tokens.

        Rollout: ``R = prod_self (0.5 I + 0.5 A_self) @ mean_past(A_past)`` (attention averaged over heads), i.e.
        how much each current position draws on each past token through the cross-attention and the later
        self-attention layers. ``S[i, j]`` sums ``R`` over current positions whose next token (``by="target"``,
        the neuron being predicted) or own token (``by="query"``) is neuron ``i`` and past tokens of neuron
        ``j``; the result is the lift ``(S[i, j] / n_i) / (sum_i S[i, j] / sum_i n_i)``: how much more the model
        attends to ``j`` when ``i`` comes next than on average (1 = no preference). Also sets
        ``attention_received_``: the mean attention a single past token of each neuron receives per current
        position (the model's own hub score: the neurons whose past spikes it draws on most).
        """
        win = self.tokenizer_.transform(counts)
        win = win.select(win.split == SPLIT_FLAGS[split])
        if max_windows is not None and len(win) > max_windows:
            win = win.select(np.arange(len(win)) < max_windows)
        n = self.tokenizer_.vocab["n_units"]
        S = np.zeros((n, n))
        cnt = np.zeros(n)
        n_tok_past, n_win = np.zeros(n), 0
        self.net_.eval()
        for o, b, y_id in self._forward_windows(win, batch_size=128, need_weights=True):
            maps = o["attention"]
            A = torch.stack(maps["past"]).float().mean(0).mean(1)  # (B, L, P)
            R = None
            for w in maps["self"]:
                a = 0.5 * w.float().mean(1) + 0.5 * torch.eye(w.shape[-1], device=w.device)
                R = a if R is None else a @ R
            roll = A if R is None else R @ A
            key = y_id if by == "target" else b[0][:, :-1]
            post = F.one_hot(key.clamp(max=n), n + 1)[..., :n].float()  # (B, L, n)
            pre = F.one_hot(b[2].clamp(max=n), n + 1)[..., :n].float()  # (B, P, n)
            S += torch.einsum("bli,blp,bpj->ij", post, roll, pre).cpu().numpy()
            cnt += post.sum((0, 1)).cpu().numpy()
            n_tok_past += pre.sum((0, 1)).cpu().numpy()
            n_win += int(pre.shape[0])
        a = S / np.maximum(cnt, 1)[:, None]
        base = S.sum(0) / max(cnt.sum(), 1)
        # attention received per past token of each neuron (the model's own hub score): mean over current positions
        n_past = np.maximum(n_tok_past / max(n_win, 1), 1e-12)
        self.attention_received_ = base / n_past
        return a / np.maximum(base, 1e-12)[None, :]

    # -- generation --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, win: Windows, n_samples: int = 1, temperature: float = 1.0, seed: int = 0, batch_size: int = 512) -> np.ndarray:
        """Sample current-window spikes autoregressively given each window's past and modalities.

        Returns counts (n_samples, n_windows, n_units) of the sampled ID tokens. Sampling stops at EOS (or a
        full block); SOS/PAD are never sampled and dt tokens never go backwards in time.
        """
        self.net_.eval()
        sp = self.tokenizer_.special()
        n_units = self.tokenizer_.vocab["n_units"]
        n_dtv = self.tokenizer_.window_bins_ // self.tokenizer_.rebin_  # dt values inside the current window
        dev = next(self.net_.parameters()).device
        gen = torch.Generator(device=dev).manual_seed(int(seed))
        B = self.tokenizer_.block_size
        out = np.zeros((n_samples, len(win), n_units), np.int64)
        for s in range(n_samples):
            for lo in range(0, len(win), batch_size):
                hi = min(lo + batch_size, len(win))
                past_id = torch.as_tensor(win.past_id[lo:hi], device=dev)
                past_dt = torch.as_tensor(win.past_dt[lo:hi], device=dev)
                mod = torch.as_tensor(win.modality[lo:hi], device=dev)
                nb = hi - lo
                ids = torch.full((nb, B - 1), sp["pad"], dtype=torch.long, device=dev)
                dts = torch.full((nb, B - 1), sp["pad_dt"], dtype=torch.long, device=dev)
                ids[:, 0], dts[:, 0] = sp["sos"], sp["sos_dt"]
                done = torch.zeros(nb, dtype=torch.bool, device=dev)
                last_dt = torch.zeros(nb, dtype=torch.long, device=dev)
                for pos in range(B - 2):
                    o = self.net_(ids[:, : pos + 1], dts[:, : pos + 1], past_id, past_dt, mod)
                    li = o["id_logits"][:, pos].float() / temperature
                    li[:, [sp["sos"], sp["pad"]]] = float("-inf")
                    nid = torch.multinomial(torch.softmax(li, -1), 1, generator=gen)[:, 0]
                    ld = o["dt_logits"][:, pos, :n_dtv].float() / temperature
                    ld = ld.masked_fill(torch.arange(n_dtv, device=dev)[None] < last_dt[:, None], float("-inf"))
                    ndt = torch.multinomial(torch.softmax(ld, -1), 1, generator=gen)[:, 0]
                    eos = (nid == sp["eos"]) & ~done
                    ndt = torch.where(eos, torch.full_like(ndt, sp["eos_dt"]), ndt)
                    nid = torch.where(done, torch.full_like(nid, sp["pad"]), nid)
                    ndt = torch.where(done, torch.full_like(ndt, sp["pad_dt"]), ndt)
                    ids[:, pos + 1], dts[:, pos + 1] = nid, ndt
                    last_dt = torch.where(eos | done, last_dt, ndt)
                    done |= eos
                    if bool(done.all()):
                        break
                spikes = ids[:, 1:].cpu().numpy()
                for u in range(n_units):
                    out[s, lo:hi, u] = (spikes == u).sum(1)
        return out

    # -- (de)serialisation -------------------------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """Weights and vocabulary as a ``model_fit`` dataset (no pickle): one variable ``w__<param>`` per tensor."""
        self._check_fitted()
        tok = self.tokenizer_
        data = state_to_variables(self.net_.state_dict())
        ds = xr.Dataset(data, coords={"unit": ("unit", tok.units_)})
        ds.attrs.update(
            {
                "model": "neuroformer",
                "role": "fit",
                **tok.to_attrs(),
                "modalities": _json({n: {"source": s, "variables": v} for n, s, v in tok.mod_layout_}),
                "target": _json(dict(tok.target) if tok.target is not None else None),
                "classes": _json([float(c) for c in getattr(tok, "classes_", [])]),
                "target_mean": float(getattr(self, "target_mean_", 0.0)),
                "target_std": float(getattr(self, "target_std_", 1.0)),
                "model_params": _json({k: getattr(self, k) for k in MODEL_KEYS}),
                "seed": int(self.seed),
            }
        )
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, counts: xr.Dataset | None = None, source: str = "checkpoint") -> Neuroformer:
        """Rebuild a model from :meth:`to_dataset`. With ``counts``, the data's vocabulary (units, dt resolution)
        must match the checkpoint's, else an :class:`InputError` naming both sizes."""
        import json

        if ds.attrs.get("model") != "neuroformer":
            raise InputError(f"{source}: not a neuroformer checkpoint (model = {ds.attrs.get('model')!r})")
        mp = json.loads(ds.attrs["model_params"])
        mods = json.loads(ds.attrs["modalities"])
        target = json.loads(ds.attrs["target"])
        tok = SpikeTokenizer(
            dt_s=float(ds.attrs["tok_dt_s"]),
            window_s=float(ds.attrs["tok_window_s"]),
            past_window_s=float(ds.attrs["tok_past_window_s"]),
            stride_s=float(ds.attrs["tok_stride_s"]),
            block_size=int(ds.attrs["tok_block_size"]),
            past_block_size=int(ds.attrs["tok_past_block_size"]),
            modalities=mods,
            target=target,
        )
        model = cls(tokenizer=tok, seed=int(ds.attrs.get("seed", 0)), **mp)
        units = np.asarray(ds["unit"].values).astype(str)
        if counts is not None:
            model.check_vocabulary(ds, counts, source)
            model.tokenizer_ = copy.deepcopy(tok).fit(counts, source)
        else:
            t = copy.deepcopy(tok)
            t.units_, t.bin_width_s_ = units, float(ds.attrs["tok_bin_width_s"])
            t.rebin_ = int(round(t.dt_s / t.bin_width_s_))
            t.window_bins_ = int(round(t.window_s / t.bin_width_s_))
            t.past_bins_ = int(round(t.past_window_s / t.bin_width_s_))
            t.stride_bins_ = int(round(t.stride_s / t.bin_width_s_))
            t.mod_layout_ = [(n, str(s["source"]), list(s["variables"])) for n, s in mods.items()]
            model.tokenizer_ = t
        classes = json.loads(ds.attrs.get("classes", "[]"))
        if classes:
            model.tokenizer_.classes_ = np.asarray(classes)
        model.target_mean_ = float(ds.attrs.get("target_mean", 0.0))
        model.target_std_ = float(ds.attrs.get("target_std", 1.0))
        model.net_ = model._build()
        state = variables_to_state(ds, model.net_.state_dict(), f"{source}: checkpoint")
        try:
            model.net_.load_state_dict(state)
        except RuntimeError as err:
            raise InputError(f"{source}: weights do not fit the model ({' '.join(str(err).split())[:300]})") from None
        model.net_.eval()
        return model

    @staticmethod
    def check_vocabulary(ds: xr.Dataset, counts: xr.Dataset, source: str = "checkpoint") -> None:
        """The reference's most reported error, made clear: the data's ID/dt vocabulary must equal the checkpoint's."""
        units = np.asarray(ds["unit"].values).astype(str)
        data_units = np.asarray(counts["unit"].values).astype(str)
        n_ck, n_data = int(ds.attrs["vocab_id"]), data_units.size + N_SPECIAL
        if n_ck != n_data:
            raise InputError(
                f"{source}: vocabulary mismatch: the checkpoint's ID vocabulary has {n_ck} tokens ({units.size} units + "
                f"{N_SPECIAL} special) but the data give {n_data} ({data_units.size} units + {N_SPECIAL}); fine-tune on the "
                "units the model was pretrained on (same unit QC) or pretrain again on these data"
            )
        if not np.array_equal(units, data_units):
            diff = [u for u in data_units if u not in set(units)][:3]
            raise InputError(
                f"{source}: vocabulary mismatch: same size ({n_ck} ID tokens) but different units (e.g. {', '.join(diff) or 'order'}); "
                "fine-tune on the units the model was pretrained on"
            )
        bw = float(counts.attrs["bin_width_s"])
        if abs(bw - float(ds.attrs["tok_bin_width_s"])) > 1e-12:
            raise InputError(
                f"{source}: the checkpoint was trained on {ds.attrs['tok_bin_width_s']} s bins, the data have {bw} s bins; "
                "bin the spikes as for pretraining"
            )


def label_subset(train_idx: np.ndarray, fraction: float, min_windows: int = 8) -> np.ndarray:
    """The labelled subset of train windows for a label fraction: evenly spaced over the train windows (every
    k-th one, deterministic), so a few labels still span the recording's range of behaviour; at least
    ``min_windows``. Train windows never overlap validation or test windows (time blocks), so spacing them out
    leaks nothing."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"label fraction {fraction} must be in (0, 1]")
    if fraction >= 1 or train_idx.size <= min_windows:
        return train_idx
    n_keep = max(min_windows, int(round(fraction * train_idx.size)))
    return train_idx[np.linspace(0, train_idx.size - 1, n_keep).round().astype(int)]


def _json(obj) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


def r2_score(y: np.ndarray, p: np.ndarray) -> float:
    """Coefficient of determination (1 - SSE/SST); NaN for fewer than 2 samples or constant targets."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    sst = float(((y - y.mean()) ** 2).sum()) if y.size else 0.0
    if y.size < 2 or sst == 0:
        return float("nan")
    return 1.0 - float(((y - p) ** 2).sum()) / sst
