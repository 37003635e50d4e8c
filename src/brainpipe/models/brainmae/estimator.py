"""BrainMAE: masked ROI reconstruction with region-aware graph attention (re-implemented from the paper's description).

BrainMAE (Yang et al., arXiv 2406.17086) has no public code; this follows the notes in
``shared/notes/models-deep.md``. What is **confirmed** there: tokens are ROI x segment (15 s); learnable ROI
embeddings drive a "region-aware graph attention"; the loss is ``lambda * MSE(masked) + (1 - lambda) *
MSE(visible)`` with ``lambda = 0.75``; downstream uses a linear head or fine-tuning. What is **inferred** here (sizes,
the temporal encoder, the decoder, the read-outs) is marked in the docstrings.

Architecture (one segment ``x`` of ``L`` volumes x ``R`` ROIs):

* **segment encoder** (inferred): each ROI's segment (``L`` samples) -> ``d_model`` by a 2-layer MLP;
* **ROI embeddings** ``E`` (``R x d_model``): learned (default) or fixed sinusoidal positional codes (ablation);
  added to the tokens; a hidden (masked) ROI's token is a learned mask token (+ its embedding);
* **region-aware graph attention**: the ROI-to-ROI attention of each head is ``softmax(E Wq (E Wk)^T / sqrt(d_h))``,
  computed from the embeddings only (not from the data), with the diagonal removed (self-loops off; an ablation
  turns them on); the tokens' values are mixed with it. ``attention = "self"`` replaces it by plain content-based
  self-attention (ablation), ``"both"`` is the transformer variant (self-attention then graph attention per block);
* pre-LayerNorm residual blocks with an MLP; a linear-MLP **decoder** maps each ROI token back to its ``L`` samples.

Against the paper (options; ``shared/notes/models-deep.md`` section 2.8):

* **masking**: segment-wise ROI masking (all volumes of the hidden ROIs); ``mask_sampling="uniform"`` with
  ``mask_ratio=0.8`` is the paper's per-segment ratio drawn in 0-0.8, ``"fixed"`` (default) hides ``mask_ratio``
  of the ROIs in every segment;
* **loss**: ``masked_weight=0.75`` is the paper's lambda; ``masking=False`` is its "vanilla-BrainAE" ablation;
* **ablations**: ``roi_embedding="fixed"`` (PosSG-BrainMAE), ``self_loops=True`` (SG-BrainMAE(SL)),
  ``attention="self"`` (no embedding-informed attention), ``"both"`` (AG-TSE-like: self- then graph attention);
* **temporal transformer** (``temporal_encoder="transformer"``; the paper's "temporal transformer" that
  "captures rich temporal dynamics", inferred design): a subject's run is cut into sequences of ``context``
  time-ordered, non-overlapping segments; after the ROI blocks each segment's state (its mean ROI token) goes,
  with sinusoidal positional codes over the segment index and a learned [CLS] token in front, through
  ``temporal_layers`` self-attention blocks; each segment's output is added back to its ROI tokens before the
  decoder, and the [CLS] output is the sequence's representation (``features="cls"``). Masks hide the same ROIs in
  every segment of a sequence (``sequence_mask="shared"``, as evaluated: a hidden ROI is never seen at another
  time; ``"independent"``: each segment its own draw, the paper's per-segment masking). ``"none"`` (default) keeps
  the per-segment model (each segment encoded alone) for comparison;
* **read-outs**: ``features="mean"`` is a pooled (mean-token) segment representation, ``"similarity"`` the
  cosine similarity of ROI tokens, ``"cls"`` the [CLS] output of a sequence; a subject is the mean over its
  segments (sequences).

:class:`BrainMAE` is the scikit-learn-shaped wrapper: ``fit`` (masked pretraining through the shared training loop
:mod:`brainpipe.training`), ``transform`` (frozen features for a probe), ``reconstruct``, ``score``
(``1 - NMSE`` on masked ROIs), ``save``/``load`` (weights and hyperparameters, no pickle);
:func:`save_fold_models`/:func:`load_fold_models` keep one encoder per outer cross-validation fold in one file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.nn import functional as F

from brainpipe._docs import fill_doc
from brainpipe.data.atomic import atomic_output
from brainpipe.errors import ConfigError, InputError
from brainpipe.models.base import Estimator, state_to_variables, variables_to_state

FEATURES = ("similarity", "tokens", "mean", "cls")


@dataclass
class BrainMAEConfig:
    """Hyperparameters of the network and its pretraining objective (see config/README.md, fmri.brainmae.model)."""

    d_model: int = 48
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    attention: str = "graph"  # graph | self | both
    self_loops: bool = False
    graph: str = "embedding"  # embedding | projected
    roi_embedding: str = "learned"  # learned | fixed
    masking: bool = True
    mask_ratio: float = 0.5
    mask_sampling: str = "fixed"  # fixed | uniform
    masked_weight: float = 0.75
    temporal_encoder: str = "none"  # none | transformer
    context: int = 8
    temporal_layers: int = 1
    sequence_mask: str = "shared"  # shared | independent

    def __post_init__(self):
        checks = [
            (
                self.d_model >= 4 and self.d_model % self.n_heads == 0,
                "d_model must be >= 4 and divisible by n_heads",
            ),
            (self.n_layers >= 1, "n_layers must be >= 1"),
            (self.attention in ("graph", "self", "both"), "attention must be graph, self or both"),
            (self.roi_embedding in ("learned", "fixed"), "roi_embedding must be learned or fixed"),
            (self.graph in ("embedding", "projected"), "graph must be embedding or projected"),
            (0.0 < self.mask_ratio < 1.0, "mask_ratio must be in (0, 1)"),
            (self.mask_sampling in ("fixed", "uniform"), "mask_sampling must be fixed or uniform"),
            (0.0 <= self.masked_weight <= 1.0, "masked_weight must be in [0, 1]"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (
                self.temporal_encoder in ("none", "transformer"),
                "temporal_encoder must be none or transformer",
            ),
            (isinstance(self.context, int) and self.context >= 1, "context must be an integer >= 1"),
            (
                isinstance(self.temporal_layers, int) and self.temporal_layers >= 1,
                "temporal_layers must be an integer >= 1",
            ),
            (self.sequence_mask in ("shared", "independent"), "sequence_mask must be shared or independent"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"BrainMAE: {msg}")


def sinusoidal_codes(n: int, d: int) -> torch.Tensor:
    """Fixed positional codes (Vaswani et al.) for ``n`` positions in ``d`` dimensions."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return pe


class GraphAttention(nn.Module):
    """Region-aware graph attention: ROI-to-ROI weights from the ROI embeddings, applied to the tokens' values.

    ``graph = "embedding"`` (default): head ``h`` uses the ``h``-th slice of the embeddings as both query and key,
    ``A_h = softmax(E_h E_h^T / sqrt(d_h))`` (a symmetric similarity graph: ROIs that should exchange information
    must have similar embeddings, which is what makes the embeddings interpretable); ``"projected"``: separate
    learned query/key maps of the embeddings (a directed graph)."""

    def __init__(self, d: int, n_heads: int, self_loops: bool, graph: str = "embedding"):
        super().__init__()
        self.h, self.dh, self.self_loops, self.graph = n_heads, d // n_heads, self_loops, graph
        self.v, self.o = nn.Linear(d, d), nn.Linear(d, d)
        if graph == "projected":
            self.q, self.k = nn.Linear(d, d), nn.Linear(d, d)

    def weights(self, emb: torch.Tensor) -> torch.Tensor:
        """(heads, R, R) attention from the embeddings ``emb`` (R, d); rows sum to 1; diagonal 0 without self-loops."""
        R = emb.shape[0]
        emb = emb.float()
        if self.graph == "projected":
            q = self.q(emb).view(R, self.h, self.dh).transpose(0, 1)
            k = self.k(emb).view(R, self.h, self.dh).transpose(0, 1)
        else:
            q = k = emb.view(R, self.h, self.dh).transpose(0, 1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.dh)
        if not self.self_loops:
            s = s.masked_fill(torch.eye(R, dtype=torch.bool, device=s.device), float("-inf"))
        return torch.softmax(s.float(), dim=-1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """Mix the tokens ``h`` (B, R, d) along the graph; ``hidden`` (B, R) True: a masked ROI, removed from the graph
        as a source (as in a masked autoencoder, hidden ROIs carry no information to pass on)."""
        B, R, d = h.shape
        a = self.weights(emb)
        if hidden is not None:
            a = a[None] * (~hidden)[:, None, None, :].to(a.dtype)
            a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
        v = self.v(h).view(B, R, self.h, self.dh).permute(0, 2, 1, 3)
        out = (a.to(v.dtype) @ v).permute(0, 2, 1, 3).reshape(B, R, d)
        return self.o(out)


class SelfAttention(nn.Module):
    """Plain multi-head self-attention over the ROI tokens (content-based), optionally without self-loops."""

    def __init__(self, d: int, n_heads: int, self_loops: bool):
        super().__init__()
        self.h, self.dh, self.self_loops = n_heads, d // n_heads, self_loops
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(
        self, h: torch.Tensor, emb: torch.Tensor | None = None, hidden: torch.Tensor | None = None
    ) -> torch.Tensor:
        B, R, d = h.shape
        q, k, v = self.qkv(h).view(B, R, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)
        mask = None if self.self_loops else ~torch.eye(R, dtype=torch.bool, device=h.device)
        if hidden is not None:
            keep = (~hidden)[:, None, None, :]
            mask = keep if mask is None else keep & mask
            mask = mask | ~mask.any(-1, keepdim=True)  # a row with no source left attends everywhere (no NaN)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o(out.transpose(1, 2).reshape(B, R, d))


class Block(nn.Module):
    def __init__(self, cfg: BrainMAEConfig):
        super().__init__()
        d = cfg.d_model
        self.attn = nn.ModuleList()
        if cfg.attention in ("self", "both"):
            self.attn.append(SelfAttention(d, cfg.n_heads, cfg.self_loops))
        if cfg.attention in ("graph", "both"):
            self.attn.append(GraphAttention(d, cfg.n_heads, cfg.self_loops, cfg.graph))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(len(self.attn) + 1))
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d), nn.Dropout(cfg.dropout)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        for attn, norm in zip(self.attn, self.norms, strict=False):
            h = h + self.drop(attn(norm(h), emb, hidden))
        return h + self.mlp(self.norms[-1](h))


class TemporalBlock(nn.Module):
    """A pre-LayerNorm transformer block over a sequence of segment states (self-attention, then an MLP)."""

    def __init__(self, cfg: BrainMAEConfig):
        super().__init__()
        d = cfg.d_model
        self.attn = SelfAttention(d, cfg.n_heads, self_loops=True)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d), nn.Dropout(cfg.dropout)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        h = h + self.drop(self.attn(self.norm1(h), None, pad))
        return h + self.mlp(self.norm2(h))


class TemporalEncoder(nn.Module):
    """The transformer across a sequence of segments (inferred from the paper's "temporal transformer").

    Each segment's state is the mean of its ROI tokens (after the ROI blocks; a hidden ROI's token carries only
    what the visible ROIs passed to it); a learned [CLS] token is put first; sinusoidal positional codes over the
    segment index (the [CLS] at position 0) are added; ``temporal_layers`` self-attention blocks mix the states
    (padded segments are no source). Returns each segment's temporal context (added back to its ROI tokens before
    the decoder) and the [CLS] output (the sequence's representation)."""

    def __init__(self, cfg: BrainMAEConfig):
        super().__init__()
        d = cfg.d_model
        self.state_norm = nn.LayerNorm(d)
        self.cls = nn.Parameter(torch.randn(d) * 0.02)
        self.blocks = nn.ModuleList(TemporalBlock(cfg) for _ in range(cfg.temporal_layers))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, d)

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` (B, K, R, d) ROI tokens, ``valid`` (B, K) True: a real segment -> context (B, K, d), cls (B, d)."""
        B, K, R, d = h.shape
        state = self.state_norm(h.mean(dim=2))
        seq = torch.cat([self.cls.to(state.dtype).expand(B, 1, d), state], dim=1)
        seq = seq + sinusoidal_codes(K + 1, d).to(device=seq.device, dtype=seq.dtype)
        pad = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=h.device), ~valid], dim=1)
        for blk in self.blocks:
            seq = blk(seq, pad)
        seq = self.norm(seq)
        return self.out(seq[:, 1:]), seq[:, 0]


class BrainMAENet(nn.Module):
    """The network: ``forward(x, mask)`` maps segments (B, L, R) to reconstructions (B, L, R), or sequences of
    segments (B, K, L, R) with ``valid`` (B, K) to (B, K, L, R) (the temporal encoder's input)."""

    def __init__(self, n_rois: int, seg_len: int, cfg: BrainMAEConfig):
        super().__init__()
        self.cfg, self.n_rois, self.seg_len = cfg, n_rois, seg_len
        d = cfg.d_model
        if cfg.roi_embedding == "learned":
            self.roi_emb = nn.Parameter(torch.randn(n_rois, d) * 0.5)
        else:
            self.register_buffer("roi_emb", sinusoidal_codes(n_rois, d))
        self.temporal = nn.Sequential(nn.Linear(seg_len, d), nn.GELU(), nn.Linear(d, d))
        self.mask_token = nn.Parameter(torch.zeros(d))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d)
        self.decoder = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, seg_len))
        self.across = TemporalEncoder(cfg) if cfg.temporal_encoder == "transformer" else None

    def _roi_tokens(self, x: torch.Tensor, mask: torch.Tensor | None, emb: torch.Tensor) -> torch.Tensor:
        tok = self.temporal(x.transpose(1, 2))
        if mask is not None:
            tok = torch.where(mask[..., None], self.mask_token.to(tok.dtype), tok)
        h = tok + emb.to(tok.dtype)
        for blk in self.blocks:
            h = blk(h, emb, mask)
        return h

    def encode_sequences(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        emb: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ROI tokens (B, K, R, d) and the sequence representation (B, d) of sequences ``x`` (B, K, L, R).

        ``mask`` (B, K, R) True hides an ROI of a segment; ``valid`` (B, K) False marks padding. Without the
        temporal encoder the segments are encoded alone and the representation is the mean token of the valid
        segments."""
        emb = self.roi_emb if emb is None else emb
        B, K, L, R = x.shape
        valid = torch.ones(B, K, dtype=torch.bool, device=x.device) if valid is None else valid
        m = None if mask is None else mask.reshape(B * K, R)
        h = self._roi_tokens(x.reshape(B * K, L, R), m, emb).view(B, K, R, -1)
        if self.across is None:
            w = valid[..., None].to(h.dtype)
            rep = (h.mean(dim=2) * w).sum(1) / w.sum(1).clamp_min(1.0)
            return self.norm(h), rep
        ctx, cls = self.across(h, valid)
        return self.norm(h + ctx[:, :, None, :]), cls

    def encode(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, emb: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ROI tokens (B, R, d) of segments ``x`` (B, L, R); ``mask`` (B, R) True hides an ROI; ``emb`` overrides the
        ROI embeddings (e.g. shuffled, for a control). With the temporal encoder each segment is a sequence of one."""
        emb = self.roi_emb if emb is None else emb
        if self.across is not None:
            return self.encode_sequences(x[:, None], None if mask is None else mask[:, None], None, emb)[0][
                :, 0
            ]
        return self.norm(self._roi_tokens(x, mask, emb))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        emb: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if x.ndim == 4:
            h = self.encode_sequences(x, mask, valid, emb)[0]
            return self.decoder(h).transpose(2, 3)
        return self.decoder(self.encode(x, mask, emb)).transpose(1, 2)


def random_mask(batch: int, n_rois: int, ratio: float, device, sampling: str = "fixed") -> torch.Tensor:
    """(batch, R) bool, ``round(ratio * R)`` (at least 1) ROIs hidden per segment; ``sampling="uniform"``: each
    segment draws its own ratio from U(0, ``ratio``) (the paper's variable mask ratio, 0-0.8), still at least 1 ROI.
    Uses torch's global RNG (so a resumed training run draws the same masks)."""
    order = torch.rand(batch, n_rois, device=device).argsort(dim=1)
    if sampling == "uniform":
        r = torch.rand(batch, 1, device=device) * ratio
        k = (r * n_rois).round().clamp(1, n_rois - 1)
        return order < k
    k = min(n_rois - 1, max(1, int(round(ratio * n_rois))))
    return order < k


def sequence_mask(cfg: BrainMAEConfig, batch: int, length: int, n_rois: int, device) -> torch.Tensor:
    """(batch, K, R) training mask of sequences: ``sequence_mask="shared"`` hides the same ROIs in every segment of
    a sequence (as the evaluation does: a hidden ROI is never seen at another time of its sequence), ``"independent"``
    draws each segment's mask alone (:func:`random_mask`)."""
    if cfg.sequence_mask == "shared":
        m = random_mask(batch, n_rois, cfg.mask_ratio, device, cfg.mask_sampling)
        return m[:, None, :].expand(batch, length, n_rois)
    m = random_mask(batch * length, n_rois, cfg.mask_ratio, device, cfg.mask_sampling)
    return m.view(batch, length, n_rois)


def masked_loss(
    model: BrainMAENet, x: torch.Tensor, mask: torch.Tensor | None, valid: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """``w * MSE(masked) + (1 - w) * MSE(visible)`` (``w = cfg.masked_weight``); without a mask, MSE of all.

    ``x`` is (B, L, R) segments with ``mask`` (B, R), or (B, K, L, R) sequences with ``mask`` (B, K, R) and
    ``valid`` (B, K) (padded segments count nowhere)."""
    if x.ndim == 4:
        pred = model(x, mask, valid=valid).float()
        err = (pred - x.float()) ** 2  # (B, K, L, R)
        keep = (torch.ones(err.shape[:2], device=x.device) if valid is None else valid.float())[
            :, :, None, None
        ].expand_as(err)
        m = None if mask is None else mask[:, :, None, :].expand_as(err).float()
    else:
        pred = model(x, mask).float()
        err = (pred - x.float()) ** 2  # (B, L, R)
        keep = torch.ones_like(err)
        m = None if mask is None else mask[:, None, :].expand_as(err).float()
    if m is None:
        loss = (err * keep).sum() / keep.sum().clamp_min(1.0)
        return {"loss": loss, "mse_visible": loss.detach()}
    mse_m = (err * m * keep).sum() / (m * keep).sum().clamp_min(1.0)
    mse_v = (err * (1 - m) * keep).sum() / ((1 - m) * keep).sum().clamp_min(1.0)
    w = model.cfg.masked_weight
    return {"loss": w * mse_m + (1 - w) * mse_v, "mse_masked": mse_m.detach(), "mse_visible": mse_v.detach()}


def pretrain_loss(model: BrainMAENet, batch) -> dict[str, torch.Tensor]:
    """The loss the training loop calls: a fresh random ROI mask per segment (if masking is on); a batch of
    ``(sequences, valid)`` trains the temporal encoder (masks by :func:`sequence_mask`)."""
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    cfg = model.cfg
    if x.ndim == 4:
        mask = sequence_mask(cfg, x.shape[0], x.shape[1], x.shape[3], x.device) if cfg.masking else None
        return masked_loss(model, x, mask, batch[1] if isinstance(batch, (tuple, list)) else None)
    mask = (
        random_mask(x.shape[0], x.shape[2], cfg.mask_ratio, x.device, cfg.mask_sampling)
        if cfg.masking
        else None
    )
    return masked_loss(model, x, mask)


def segment_features(h: torch.Tensor, kind: str) -> torch.Tensor:
    """Read-outs of encoder tokens ``h`` (B, R, d) (inferred; the paper's pooling is not public):
    ``similarity``: cosine similarity between ROI tokens (upper triangle; the model's own connectivity read-out);
    ``tokens``: all ROI tokens flattened; ``mean``: the mean token. (``cls``, the temporal encoder's [CLS] output,
    is a sequence's read-out: :meth:`BrainMAE.transform` with ``sequences``.)"""
    if kind == "similarity":
        z = F.normalize(h - h.mean(dim=2, keepdim=True), dim=2)
        s = z @ z.transpose(1, 2)
        iu = torch.triu_indices(h.shape[1], h.shape[1], offset=1, device=h.device)
        return s[:, iu[0], iu[1]]
    if kind == "tokens":
        return h.reshape(h.shape[0], -1)
    if kind == "mean":
        return h.mean(dim=1)
    raise ConfigError(f"BrainMAE: unknown feature read-out {kind!r} (allowed: {', '.join(FEATURES)})")


class FineTuneNet(nn.Module):
    """Encoder + a linear head on a segment read-out, trained end-to-end (full fine-tuning)."""

    def __init__(self, net: BrainMAENet, n_out: int, features: str):
        super().__init__()
        self.net, self.features = net, features
        R, d = net.n_rois, net.cfg.d_model
        n_in = {"similarity": R * (R - 1) // 2, "tokens": R * d, "mean": d, "cls": d}[features]
        self.head = nn.Sequential(nn.LayerNorm(n_in), nn.Linear(n_in, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.features == "cls":  # each segment a sequence of one
            return self.head(self.net.encode_sequences(x[:, None])[1])
        return self.head(segment_features(self.net.encode(x), self.features))


# ---- the scikit-learn-shaped wrapper ------------------------------------------------------------------------------
#: the training settings of BrainMAE: the fields of brainpipe.training.TrainConfig, with BrainMAE's defaults
TRAIN_DEFAULTS: dict[str, Any] = {
    "max_epochs": 40,
    "max_steps": None,
    "batch_size": 32,
    "lr": 2e-3,
    "weight_decay": 0.01,
    "warmup_steps": 20,
    "grad_clip": 1.0,
    "patience": 8,
    "min_delta": 0.0,
    "seed": 0,
    "device": "auto",
    "precision": "auto",
    "checkpoint_every_s": 60.0,
    "progress": True,
}
NET_KEYS = tuple(f.name for f in fields(BrainMAEConfig))


def seeds(value, default: int = 0) -> list[int]:
    """The training seeds of a run: ``seeds`` (a list of distinct integers >= 0), else ``[default]``.

    Parameters
    ----------
    value : list of int or None
        The ``seeds`` setting (each seed pretrains its own encoders; metrics are reported over them).
    default : int, default 0
        The seed used when ``value`` is None (the model's ``seed``).

    Returns
    -------
    list of int
        The seeds, in the given order.

    Raises
    ------
    ConfigError
        Not a non-empty list of distinct integers >= 0.
    """
    if value is None:
        return [int(default)]
    ok = isinstance(value, (list, tuple)) and len(value) > 0
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    if not ok or len(set(value)) != len(value):
        raise ConfigError(
            f"BrainMAE: seeds must be a non-empty list of distinct integers >= 0; got {value!r}"
        )
    return [int(v) for v in value]


def select_grid(select: dict | None, mask_ratio: float = 0.5) -> list[dict[str, Any]]:
    """The candidate settings of a validation-split choice: every combination of ``select`` (network key -> list of
    values), e.g. ``{"mask_sampling": ["fixed", "uniform"]}``.

    Parameters
    ----------
    select : dict or None
        Network setting (:class:`BrainMAEConfig` field) -> the values to choose from.
    mask_ratio : float, default 0.5
        Fraction of ROIs the validation masks hide (checked here; used by the caller).

    Returns
    -------
    list of dict
        The combinations (``[{}]`` without a grid).

    Raises
    ------
    ConfigError
        A key that is not a network setting, or not a non-empty list.
    """
    import itertools

    if not 0.0 < float(mask_ratio) < 1.0:
        raise ConfigError(f"BrainMAE: select_mask_ratio must be in (0, 1); got {mask_ratio!r}")
    if not select:
        return [{}]
    if not isinstance(select, dict):
        raise ConfigError(f"BrainMAE: select must be a mapping of setting -> list of values; got {select!r}")
    for k, v in select.items():
        if k not in NET_KEYS or not isinstance(v, (list, tuple)) or not v:
            raise ConfigError(
                f"BrainMAE: select.{k} must be a network setting ({', '.join(NET_KEYS)}) with a non-empty list "
                f"of values; got {v!r}"
            )
    keys = list(select)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(select[k] for k in keys))]


STREAMING_DEFAULTS = {"enabled": False, "chunk_segments": 256, "cache_chunks": 2, "shuffle": "chunks"}


def streaming_settings(value) -> dict[str, Any] | None:
    """The ``streaming`` setting of BrainMAE pretraining, checked (None when off).

    Parameters
    ----------
    value : mapping or None
        ``enabled`` (bool), ``chunk_segments`` (int >= 1), ``cache_chunks`` (int >= 1), ``shuffle`` ("chunks" or
        "global", see :class:`brainpipe.training.streaming.ZarrExamples`); missing keys take
        :data:`STREAMING_DEFAULTS`.

    Returns
    -------
    dict or None
        The settings, or None when streaming is off.

    Raises
    ------
    brainpipe.errors.ConfigError
        An unknown key or a bad value (one line naming ``fmri.brainmae.model.streaming.<key>``).
    """
    if value is None:
        return None
    key = "fmri.brainmae.model.streaming"
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping (enabled, chunk_segments, cache_chunks); got {value!r}")
    unknown = sorted(set(value) - set(STREAMING_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"{key}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(STREAMING_DEFAULTS)})"
        )
    out = dict(STREAMING_DEFAULTS, **value)
    for k in ("chunk_segments", "cache_chunks"):
        if isinstance(out[k], bool) or not isinstance(out[k], int) or out[k] < 1:
            raise ConfigError(f"{key}.{k} must be an integer >= 1; got {out[k]!r}")
    if out["shuffle"] not in ("chunks", "global"):
        raise ConfigError(f"{key}.shuffle must be 'chunks' or 'global'; got {out['shuffle']!r}")
    return out if out["enabled"] else None


def split_kwargs(params: dict[str, Any]):
    """Check a flat parameter mapping (unknown names, bad values: one-line ``ConfigError``) and split it into the
    network's :class:`BrainMAEConfig` and the training loop's :class:`~brainpipe.training.TrainConfig`.

    Parameters
    ----------
    params : dict
        Any of :class:`BrainMAE`'s constructor arguments, ``seeds`` (:func:`seeds`), ``streaming``
        (:func:`streaming_settings`), ``select`` and
        ``select_mask_ratio`` (:func:`select_grid`).

    Returns
    -------
    (BrainMAEConfig, TrainConfig)
    """
    params = dict(params)
    seeds(params.pop("seeds", None))
    stream = streaming_settings(params.pop("streaming", None))
    if stream is not None and params.get("temporal_encoder", "none") != "none":
        raise ConfigError(
            "fmri.brainmae.model.streaming: the temporal encoder (temporal_encoder: transformer) cannot stream; "
            "set streaming.enabled: false or temporal_encoder: none"
        )
    grids = select_grid(params.pop("select", None), params.pop("select_mask_ratio", 0.5))
    allowed = set(NET_KEYS) | set(TRAIN_DEFAULTS) | {"seeds"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(
            f"BrainMAE: unknown parameter(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )
    for grid in grids:  # every candidate of a select grid is a valid model
        BrainMAE(**dict(params, **grid))._check_params()
    model = BrainMAE(**params)
    model._check_params()
    return model._net_config(), model._train_config()


def chunk_sequences(n: int, context: int) -> np.ndarray:
    """Consecutive runs of ``context`` segment indices ``0 .. n - 1`` (the last one padded with -1).

    Parameters
    ----------
    n : int
        Number of segments, in time order.
    context : int
        Segments per sequence.

    Returns
    -------
    numpy.ndarray
        (sequence, context) int64 indices, -1 for padding.
    """
    n_seq = max(1, -(-n // context))
    idx = np.full(n_seq * context, -1, dtype=np.int64)
    idx[:n] = np.arange(n)
    return idx.reshape(n_seq, context)


def _gather(X: torch.Tensor, sequences) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, K, L, R) sequences of the segments ``X`` (N, L, R) at ``sequences`` (S, K) (-1: padding, zeros) and
    ``valid`` (S, K)."""
    idx = torch.as_tensor(np.asarray(sequences, dtype=np.int64))
    bad = idx.numel() > 0 and (int(idx.max()) >= len(X) or int(idx.min()) < -1)
    if idx.ndim != 2 or bad:
        raise InputError(
            f"BrainMAE: sequences must be (sequence, context) indices into the {len(X)} segments (-1: padding); "
            f"got shape {tuple(idx.shape)}"
        )
    valid = idx >= 0
    out = X[idx.clamp_min(0)] * valid[..., None, None].to(X.dtype)
    return out, valid


def _tensor(X) -> torch.Tensor:
    X = torch.as_tensor(np.asarray(X, dtype=np.float32)) if not isinstance(X, torch.Tensor) else X.float()
    if X.ndim != 3:
        raise InputError(f"BrainMAE: segments must be (segment, time, roi); got shape {tuple(X.shape)}")
    return X


@fill_doc
class BrainMAE(Estimator):
    """Masked-ROI autoencoder for fMRI segments, scikit-learn style.

    The network and its objective are those of :class:`BrainMAEConfig` (and ``fmri.brainmae.model`` in
    config/README.md); the training settings are the shared loop's (:class:`brainpipe.training.TrainConfig`, with
    BrainMAE's defaults in :data:`TRAIN_DEFAULTS`), and ``seed`` also seeds the initial weights.

    Parameters
    ----------
    d_model : int, default 48
        Width of the tokens and ROI embeddings (divisible by ``n_heads``).
    n_layers : int, default 2
        Encoder blocks.
    n_heads : int, default 4
        Attention heads.
    mlp_ratio : float, default 2.0
        Hidden size of the blocks' MLP, relative to ``d_model``.
    dropout : float, default 0.0
        Dropout probability.
    attention : {"graph", "self", "both"}
        Region-aware graph attention from the ROI embeddings, plain self-attention, or both.
    self_loops : bool, default False
        Let a ROI attend to itself in graph attention.
    graph : {"embedding", "projected"}
        Graph attention ``softmax(E E^T)`` per head, or learned query/key maps of the embeddings.
    roi_embedding : {"learned", "fixed"}
        Learned ROI embeddings, or fixed sinusoidal codes.
    masking : bool, default True
        Hide ROIs during pretraining (False: a plain autoencoder).
    mask_ratio : float, default 0.5
        Fraction of ROIs hidden per segment (``mask_sampling="uniform"``: the largest).
    mask_sampling : {"fixed", "uniform"}
        ``"fixed"``: every segment hides ``mask_ratio`` of its ROIs; ``"uniform"``: each segment draws its ratio
        from U(0, ``mask_ratio``) (the paper samples it per segment in 0-0.8).
    masked_weight : float, default 0.75
        Loss weight of the hidden ROIs (the visible ones get the rest).
    temporal_encoder : {"none", "transformer"}
        ``"transformer"``: the paper's temporal transformer across a sequence of segments (positional codes over
        the segment index, a [CLS] token), its output added to the ROI tokens before the decoder; ``"none"``
        (default): each segment encoded alone.
    context : int, default 8
        Segments per sequence of the temporal encoder (a pretraining batch holds ``batch_size // context``
        sequences, so about ``batch_size`` segments).
    temporal_layers : int, default 1
        Blocks of the temporal encoder.
    sequence_mask : {"shared", "independent"}
        Training masks of a sequence: the same ROIs hidden in all its segments (as evaluated), or each segment's own.
    %(train_config)s

    Attributes
    ----------
    net_ : BrainMAENet
        The network.
    history_ : list of dict
        Per-epoch losses.
    best_epoch_, device_, precision_, n_rois_, seg_len_, train_seconds_, resumed_from_step_
        What the fit did.

    Examples
    --------
    >>> import numpy as np
    >>> from brainpipe.models import BrainMAE
    >>> X = np.random.default_rng(0).standard_normal((32, 20, 6)).astype("float32")  # segment x time x ROI
    >>> model = BrainMAE(d_model=8, n_heads=2, max_epochs=2, batch_size=8, device="cpu", progress=False)
    >>> model = model.fit(X[:24], X_val=X[24:])
    >>> model.roi_embeddings().shape
    (6, 8)
    >>> mask = np.zeros((32, 6), dtype=bool)
    >>> mask[:, 0] = True                                     # hide ROI 0 of every segment
    >>> model.reconstruct(X, mask).shape
    (32, 20, 6)
    >>> score = model.score(X, mask)                           # 1 - NMSE on the hidden ROIs
    >>> model.transform(X).shape                               # ROI-token similarities, upper triangle
    (32, 15)
    """

    model_name = "brainmae"

    def __init__(
        self,
        d_model: int = 48,
        n_layers: int = 2,
        n_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        attention: str = "graph",
        self_loops: bool = False,
        graph: str = "embedding",
        roi_embedding: str = "learned",
        masking: bool = True,
        mask_ratio: float = 0.5,
        mask_sampling: str = "fixed",
        masked_weight: float = 0.75,
        temporal_encoder: str = "none",
        context: int = 8,
        temporal_layers: int = 1,
        sequence_mask: str = "shared",
        max_epochs: int = 40,
        max_steps: int | None = None,
        batch_size: int = 32,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 20,
        grad_clip: float = 1.0,
        patience: int | None = 8,
        min_delta: float = 0.0,
        seed: int = 0,
        device: str = "auto",
        precision: str = "auto",
        checkpoint_every_s: float = 60.0,
        progress: bool = True,
    ):
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.mlp_ratio = mlp_ratio
        self.dropout = dropout
        self.attention = attention
        self.self_loops = self_loops
        self.graph = graph
        self.roi_embedding = roi_embedding
        self.masking = masking
        self.mask_ratio = mask_ratio
        self.mask_sampling = mask_sampling
        self.masked_weight = masked_weight
        self.temporal_encoder = temporal_encoder
        self.context = context
        self.temporal_layers = temporal_layers
        self.sequence_mask = sequence_mask
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps
        self.grad_clip = grad_clip
        self.patience = patience
        self.min_delta = min_delta
        self.seed = seed
        self.device = device
        self.precision = precision
        self.checkpoint_every_s = checkpoint_every_s
        self.progress = progress

    def _net_config(self) -> BrainMAEConfig:
        return BrainMAEConfig(**{k: getattr(self, k) for k in NET_KEYS})

    def _check_params(self) -> None:
        self._net_config()  # BrainMAEConfig checks the network's settings
        self._train_config().check("BrainMAE")

    @property
    def params(self) -> dict[str, Any]:
        """The hyperparameters that differ from the defaults (as given in a study config)."""
        defaults = type(self)().get_params(deep=False)
        return {k: v for k, v in self.get_params(deep=False).items() if v != defaults[k]}

    # -- fit -------------------------------------------------------------------------------------------------------
    @fill_doc
    def fit(
        self,
        X,
        X_val=None,
        checkpoint: str | os.PathLike | None = None,
        fingerprint: dict | None = None,
        log=None,
        sequences=None,
        sequences_val=None,
    ):
        """Pretrain by masked-ROI reconstruction on segments pooled over subjects.

        Parameters
        ----------
        X : array-like or brainpipe.training.streaming.ZarrExamples
            (segment, time, roi) training segments, in memory or streamed from a zarr store (read chunk by chunk in
            its epoch order; not with the temporal encoder).
        X_val : array-like or brainpipe.training.streaming.ZarrExamples, optional
            Held-out subjects' segments (in memory or streamed); their loss drives early stopping and the best
            weights.
        %(checkpoint)s
        %(fingerprint)s
        %(log)s
        sequences, sequences_val : array-like, optional
            With the temporal encoder: (sequence, context) indices into ``X`` (``X_val``) of time-ordered,
            non-overlapping segments of one subject's run, -1 for padding; default: :func:`chunk_sequences` of
            the segments in the given order.

        Returns
        -------
        BrainMAE
            ``self``, fitted.
        """
        from brainpipe.training import train

        self._check_params()
        streamed = isinstance(X, torch.utils.data.Dataset)
        if streamed:
            if self.temporal_encoder != "none":
                raise ConfigError(
                    "fmri.brainmae.model.streaming: the temporal encoder (temporal_encoder: transformer) trains on "
                    "sequences of segments and cannot stream; set streaming.enabled: false or temporal_encoder: none"
                )
            shape = tuple(int(n) for n in getattr(X, "array", X[0][None]).shape)
            if len(shape) != 3:
                raise InputError(f"BrainMAE: segments must be (segment, time, roi); got shape {shape}")
            shape = (len(X), *shape[1:])
        else:
            X = _tensor(X)
            shape = tuple(X.shape)
        S, L, R = (float(n) for n in shape)
        if streamed:  # only the decoded chunks are in memory, not the segments
            S = 0.0
        B, d, layers = float(self.batch_size), float(self.d_model), float(self.n_layers)
        if self.temporal_encoder != "none":  # the sequences are a second (padded) copy of the segments
            S = S * 2
        # the segments (and a device copy), activations kept for the backward pass, the ROI x ROI attention
        need = 8 * S * L * R + 4 * 16 * B * R * (d + L) * layers + 4 * 2 * B * self.n_heads * R * R * layers
        self._check_memory(need, "segments x volumes x ROIs, batch_size x ROIs^2 x n_layers")
        torch.manual_seed(self.seed)  # the initial weights
        self.n_rois_, self.seg_len_ = shape[2], shape[1]
        self.net_ = BrainMAENet(self.n_rois_, self.seg_len_, self._net_config())
        cfg = self._train_config()
        if isinstance(X_val, torch.utils.data.Dataset):  # streamed: read in order, batch by batch
            val = X_val if len(X_val) else None
        else:
            val = (_tensor(X_val),) if X_val is not None and len(X_val) else None
        data = X if streamed else (X,)
        if (
            self.temporal_encoder != "none"
        ):  # batch_size counts segments: batch_size // context sequences a batch
            cfg = self._train_config(batch_size=max(1, self.batch_size // self.context))
            data = _gather(X, chunk_sequences(len(X), self.context) if sequences is None else sequences)
            if val is not None:
                sv = chunk_sequences(len(val[0]), self.context) if sequences_val is None else sequences_val
                val = _gather(val[0], sv) if len(sv) else None
        res = train(
            self.net_,
            data,
            pretrain_loss,
            cfg,
            val_data=val,
            checkpoint=checkpoint,
            fingerprint=fingerprint,
            log=log,
        )
        self.history_ = list(res.history)
        self.best_epoch_, self.device_, self.precision_ = res.best_epoch, str(res.device), res.precision
        self.train_seconds_, self.resumed_from_step_ = float(res.seconds), res.resumed_from_step
        self.net_.eval()
        return self

    def _train_config(self, **overrides):
        from brainpipe.training import TrainConfig, checkpoint_every_s

        kw = {k: getattr(self, k) for k in TRAIN_DEFAULTS}
        kw.update(overrides)
        kw["checkpoint_every_s"] = checkpoint_every_s(kw["checkpoint_every_s"])
        return TrainConfig(**kw)

    @fill_doc
    def finetune(
        self,
        X,
        y,
        task: str,
        X_val=None,
        y_val=None,
        features: str = "similarity",
        checkpoint=None,
        fingerprint: dict | None = None,
        log=None,
        **train_overrides,
    ) -> FineTuneNet:
        """Fine-tune a copy of the pretrained encoder plus a linear head on the ``features`` read-out, end to end.

        The pretrained model is not changed.

        Parameters
        ----------
        X : array-like
            (segment, time, roi) training segments.
        y : array-like
            (segment,) targets: class indices for ``task="classification"``, standardised values for
            ``"regression"``.
        task : {"classification", "regression"}
            The kind of target.
        X_val, y_val : array-like, optional
            Validation segments and targets (early stopping).
        features : {"similarity", "tokens", "mean"}
            The read-out the head sees (:func:`segment_features`).
        %(checkpoint)s
        %(fingerprint)s
        %(log)s
        **train_overrides
            Training settings that replace the model's (e.g. ``lr``, ``max_epochs``).

        Returns
        -------
        FineTuneNet
            The fine-tuned network (use :meth:`predict_finetuned`).
        """
        import copy

        from brainpipe.training import train

        X = _tensor(X)
        n_out = int(np.max(y)) + 1 if task == "classification" else 1
        self._check_fitted()
        torch.manual_seed(self.seed)
        ft = FineTuneNet(copy.deepcopy(self.net_).cpu().train(), n_out, features)
        yt = torch.as_tensor(np.asarray(y), dtype=torch.long if task == "classification" else torch.float32)

        def loss_fn(model, batch):
            out = model(batch[0])
            if task == "classification":
                return F.cross_entropy(out.float(), batch[1])
            return F.mse_loss(out.float()[:, 0], batch[1])

        val = None
        if X_val is not None and len(X_val):
            val = (_tensor(X_val), torch.as_tensor(np.asarray(y_val), dtype=yt.dtype))
        train(
            ft,
            (X, yt),
            loss_fn,
            self._train_config(**train_overrides),
            val_data=val,
            checkpoint=checkpoint,
            fingerprint=fingerprint,
            log=log,
        )
        ft.eval()
        return ft

    @staticmethod
    @torch.no_grad()
    def predict_finetuned(ft: FineTuneNet, X, batch: int = 256) -> np.ndarray:
        """Compute the outputs of a fine-tuned network for segments ``X``.

        Parameters
        ----------
        ft : FineTuneNet
            A network returned by :meth:`finetune`.
        X : array-like
            (segment, time, roi) segments.
        batch : int, default 256
            Segments per forward pass.

        Returns
        -------
        numpy.ndarray
            (segment, n_out): class logits, or the standardised value in column 0.
        """
        X = _tensor(X)
        dev = next(ft.parameters()).device
        ft.eval()
        return torch.cat(
            [ft(X[i : i + batch].to(dev)).float().cpu() for i in range(0, len(X), batch)]
        ).numpy()

    def _device(self) -> torch.device:
        self._check_fitted()
        return next(self.net_.parameters()).device

    @torch.no_grad()
    def _batched(self, fn, X, batch: int = 256) -> np.ndarray:
        X = _tensor(X) if not isinstance(X, torch.Tensor) else X
        dev = self._device()
        self.net_.eval()
        outs = [fn(X[i : i + batch].to(dev), i).float().cpu() for i in range(0, len(X), batch)]
        return torch.cat(outs).numpy()

    def transform(self, X, features: str = "similarity", sequences=None) -> np.ndarray:
        """Frozen features of every segment (no masking): see :func:`segment_features`.

        Parameters
        ----------
        X : array-like
            (segment, time, roi) segments.
        features : {"similarity", "tokens", "mean", "cls"}
            The read-out; ``"cls"`` is one per sequence (the temporal encoder's [CLS] output; without it, the mean
            token of the sequence's segments).
        sequences : array-like, optional
            (sequence, context) indices into ``X`` (-1: padding): the segments are encoded in their sequences
            (the temporal encoder's context); default: each segment alone.

        Returns
        -------
        numpy.ndarray
            (segment, feature) features, or (sequence, feature) for ``"cls"``.
        """
        if features not in FEATURES:
            raise ConfigError(
                f"BrainMAE: unknown feature read-out {features!r} (allowed: {', '.join(FEATURES)})"
            )
        X = _tensor(X)
        if sequences is None and features != "cls":
            return self._batched(lambda x, i: segment_features(self.net_.encode(x), features), X)
        seqs = np.arange(len(X))[:, None] if sequences is None else np.asarray(sequences, dtype=np.int64)
        Xs, valid = _gather(X, seqs)
        if features == "cls":
            return self._batched(
                lambda x, i: self.net_.encode_sequences(x, None, valid[i : i + len(x)].to(x.device))[1],
                Xs,
                batch=64,
            )
        tok = self._batched(
            lambda x, i: self.net_.encode_sequences(x, None, valid[i : i + len(x)].to(x.device))[0],
            Xs,
            batch=64,
        )
        out = np.full(
            (len(X), *segment_features(torch.as_tensor(tok[:1, 0]), features).shape[1:]), np.nan, np.float32
        )
        v = valid.numpy()
        out[seqs[v]] = segment_features(torch.as_tensor(tok[v]), features).numpy()
        return out

    @fill_doc
    def reconstruct(
        self, X, mask: np.ndarray, shuffle_embeddings: bool = False, seed: int = 0, sequences=None
    ) -> np.ndarray:
        """Reconstruct segments with some of their ROIs hidden.

        Parameters
        ----------
        %(segments_mask)s
        shuffle_embeddings : bool, default False
            Permute the ROI embeddings (a control: reconstruction should get worse).
        seed : int, default 0
            Seed of the permutation.
        sequences : array-like, optional
            (sequence, context) indices into ``X`` (-1: padding): each segment is reconstructed in its sequence,
            every segment with its own row of ``mask`` (segments in no sequence are NaN); default: each segment
            alone.

        Returns
        -------
        numpy.ndarray
            (segment, time, roi) reconstruction.
        """
        m = torch.as_tensor(np.asarray(mask, dtype=bool))
        emb = None
        if shuffle_embeddings:
            perm = torch.as_tensor(np.random.default_rng(seed).permutation(self.n_rois_))
            emb = self.net_.roi_emb.detach()[perm.to(self._device())]
        if sequences is None:
            return self._batched(lambda x, i: self.net_(x, m[i : i + len(x)].to(x.device), emb), X)
        X = _tensor(X)
        seqs = np.asarray(sequences, dtype=np.int64)
        Xs, valid = _gather(X, seqs)
        ms = m[torch.as_tensor(seqs).clamp_min(0)]

        def fn(x, i):
            sl = slice(i, i + len(x))
            return self.net_(x, ms[sl].to(x.device), emb, valid[sl].to(x.device))

        rec = self._batched(fn, Xs, batch=64)
        out = np.full(tuple(X.shape), np.nan, np.float32)
        v = valid.numpy()
        out[seqs[v]] = rec[v]
        return out

    @fill_doc
    def score(self, X, mask: np.ndarray) -> float:
        """``1 - NMSE`` on the hidden ROIs (higher is better; see :func:`nmse`).

        Parameters
        ----------
        %(segments_mask)s

        Returns
        -------
        float
            The score.
        """
        return 1.0 - nmse(np.asarray(X), self.reconstruct(X, mask), mask)

    def roi_embeddings(self) -> np.ndarray:
        """The learned ROI embeddings.

        Returns
        -------
        numpy.ndarray
            (roi, embedding) float array, on the CPU.
        """
        return self.net_.roi_emb.detach().float().cpu().numpy()

    def graph_attention(self) -> np.ndarray | None:
        """The embedding-derived graph attention of every graph-attention layer.

        Returns
        -------
        numpy.ndarray or None
            (layer, head, R, R) attention, or None without graph attention.
        """
        out = []
        with torch.no_grad():
            for blk in self.net_.blocks:
                for a in blk.attn:
                    if isinstance(a, GraphAttention):
                        out.append(a.weights(self.net_.roi_emb).float().cpu().numpy())
        return np.stack(out) if out else None

    # -- save / load (no pickle) ------------------------------------------------------------------------------------
    def _meta(self) -> dict:
        return {"params": self.params, "n_rois": self.n_rois_, "seg_len": self.seg_len_, "format": FORMAT}

    def _state(self) -> dict:
        return {k: v.detach().cpu() for k, v in self.net_.state_dict().items()}

    @classmethod
    def _from(cls, meta: dict, state: dict, device: str) -> BrainMAE:
        model = cls(**meta["params"])
        model.n_rois_, model.seg_len_ = int(meta["n_rois"]), int(meta["seg_len"])
        model.net_ = BrainMAENet(model.n_rois_, model.seg_len_, model._net_config())
        model.net_.load_state_dict(state)
        model.net_.to(device).eval()
        return model

    def to_dataset(self) -> xr.Dataset:
        """Return the weights and hyperparameters as a ``model_fit`` dataset (role fit; no pickle).

        Returns
        -------
        xarray.Dataset
            One variable ``w__<parameter>`` per tensor, the ROI embeddings as ``roi_embedding`` (roi, feature),
            the hyperparameters in its attrs.
        """
        self._check_fitted()
        emb = self.roi_embeddings().astype(np.float64)
        ds = xr.Dataset(
            {
                **state_to_variables(self.net_.state_dict()),
                "roi_embedding": (("roi", "feature"), emb, {"long_name": "learned ROI embedding"}),
            },
            attrs={
                "model": self.model_name,
                "role": "fit",
                "format": FORMAT,
                "estimator_params": json.dumps(self.params),
                "n_rois": int(self.n_rois_),
                "seg_len": int(self.seg_len_),
            },
        )
        return ds

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> BrainMAE:
        """Read a fit written by :meth:`save` (netCDF), or a single encoder in a torch weights file.

        Parameters
        ----------
        path : str or path-like
            The file.
        device : str
            Where the network is placed.

        Returns
        -------
        BrainMAE
        """
        p = Path(path)
        if _is_torch_file(p):
            blob, meta = _load_blob(p, device)
            if meta.get("format") == FOLDS_FORMAT:
                raise InputError(
                    f"{p}: holds {len(meta['folds'])} per-fold BrainMAE encoders, not one; read it with load_fold_models"
                )
            return cls._from(meta, blob["state_dict"], device)
        return super().load(p, device=device, source=str(p))

    @classmethod
    @fill_doc
    def from_dataset(cls, ds: xr.Dataset, device: str = "cpu", source: str = "BrainMAE fit") -> BrainMAE:
        """Rebuild a fitted model from :meth:`to_dataset`.

        Parameters
        ----------
        %(fit_ds)s
        %(device)s
        %(source)s

        Returns
        -------
        BrainMAE
            The fitted model, on ``device``.
        """
        if ds.attrs.get("model") != cls.model_name or "estimator_params" not in ds.attrs:
            raise InputError(f"{source}: not a BrainMAE fit written by BrainMAE.to_dataset")
        meta = {
            "params": json.loads(ds.attrs["estimator_params"]),
            "n_rois": ds.attrs["n_rois"],
            "seg_len": ds.attrs["seg_len"],
        }
        model = cls(**meta["params"])
        model.n_rois_, model.seg_len_ = int(meta["n_rois"]), int(meta["seg_len"])
        model.net_ = BrainMAENet(model.n_rois_, model.seg_len_, model._net_config())
        model.net_.load_state_dict(variables_to_state(ds, model.net_.state_dict(), source))
        model.net_.to(device).eval()
        return model


FORMAT = "brainpipe-brainmae/1"
FOLDS_FORMAT = "brainpipe-brainmae-folds/1"


def _save_blob(path, blob: dict) -> Path:
    p = Path(path)
    with atomic_output(p) as tmp:
        torch.save(blob, tmp)
    return p


def _is_torch_file(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _load_blob(p: Path, device: str) -> tuple[dict, dict]:
    try:
        blob = torch.load(p, map_location=device, weights_only=True)
        meta = json.loads(blob["meta"])
    except Exception as err:  # torch raises many types on a bad file
        raise InputError(
            f"{p}: not a brainpipe BrainMAE weights file ({type(err).__name__}); re-run the pretraining"
        ) from None
    return blob, meta


def save_fold_models(models: list[BrainMAE], path: str | os.PathLike) -> Path:
    """One encoder per outer cross-validation fold (``models[k]`` never saw fold ``k``) in one torch file: each
    encoder's weights (state dict of tensors) and hyperparameters (JSON), no pickle."""
    meta = {"format": FOLDS_FORMAT, "folds": [m._meta() for m in models]}
    blob = {"meta": json.dumps(meta), **{f"state_dict_{k}": m._state() for k, m in enumerate(models)}}
    return _save_blob(path, blob)


def load_fold_models(path: str | os.PathLike, device: str = "cpu") -> list[BrainMAE]:
    """The per-fold encoders written by :func:`save_fold_models` (index = the outer fold each one never saw)."""
    p = Path(path)
    if p.is_file() and not _is_torch_file(p):
        raise InputError(
            f"{p}: not a torch file of per-fold encoders (a single BrainMAE encoder is saved as netCDF); "
            "re-run pretrain_brainmae"
        )
    blob, meta = _load_blob(p, device)
    if meta.get("format") != FOLDS_FORMAT:
        raise InputError(
            f"{p}: a single BrainMAE encoder (format {meta.get('format')!r}), not per-fold encoders; "
            "re-run pretrain_brainmae (it now trains one encoder per fold)"
        )
    return [BrainMAE._from(m, blob[f"state_dict_{k}"], device) for k, m in enumerate(meta["folds"])]


def nmse(X: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    """Normalised MSE on hidden ROIs: ``sum (x - pred)^2 / sum x^2`` over hidden (segment, ROI) entries, all times.
    With z-scored signals, predicting 0 (the mean) scores about 1."""
    m = np.broadcast_to(np.asarray(mask, bool)[:, None, :], X.shape)
    return float(((X - pred) ** 2)[m].sum() / max((X**2)[m].sum(), 1e-12))
