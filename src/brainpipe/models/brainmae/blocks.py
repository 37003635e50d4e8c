"""BrainMAE's network settings (:class:`BrainMAEConfig`) and building blocks: the region-aware graph attention,
plain self-attention, the encoder block, and the temporal encoder across a sequence of segments."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from brainpipe.errors import ConfigError

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
    linear_path: str = "none"  # none | volume
    linear_alpha: float | None = None  # None: chosen on the validation segments

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
            (self.linear_path in ("none", "volume"), "linear_path must be none or volume"),
            (
                self.linear_alpha is None
                or (isinstance(self.linear_alpha, (int, float)) and float(self.linear_alpha) > 0),
                "linear_alpha must be a number > 0 or null (chosen on the validation segments)",
            ),
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
        a = self.weights(emb)
        v = self.v(h)
        mix = self._mix if self.fused else self._mix_reference
        return self.o(mix(a, v, hidden))

    #: False: mix with :meth:`_mix_reference` (the original formulation; kept to test the fused one against)
    fused = True

    def _mix(self, a: torch.Tensor, v: torch.Tensor, hidden: torch.Tensor | None) -> torch.Tensor:
        """``A_h`` (heads, R, R) applied to the values ``v`` (B, R, d) of every segment in one matmul per head.

        The graph is the same for every segment, so the batch goes into the columns: ``A_h @ [v_1h ... v_Bh]``,
        (R, R) @ (R, B * d_h). A hidden ROI is removed as a source by zeroing its value and dividing each row by
        the attention mass its visible sources keep (``A_h @ visible``): the same as renormalising the masked
        weights, without building the (B, heads, R, R) tensor of them (the reference's memory and time sink)."""
        B, R, d = v.shape
        H, dh = self.h, self.dh
        if hidden is not None:
            visible = (~hidden).to(a.dtype)  # (B, R)
            v = v * visible[..., None].to(v.dtype)
        cols = v.view(B, R, H, dh).permute(2, 1, 0, 3).reshape(H, R, B * dh)
        out = torch.bmm(a.to(cols.dtype), cols).view(H, R, B, dh)
        if hidden is not None:
            with torch.autocast(device_type=a.device.type, enabled=False):  # the row sums in float32
                # (H, R, B); multiplying by its inverse is cheaper than dividing (forward and backward)
                inv = 1.0 / (a @ visible.t()).clamp_min(1e-12)
            out = (out * inv[..., None]).to(v.dtype)
        return out.permute(2, 1, 0, 3).reshape(B, R, d)

    def _mix_reference(self, a: torch.Tensor, v: torch.Tensor, hidden: torch.Tensor | None) -> torch.Tensor:
        """The original mixing: renormalised (B, heads, R, R) weights times the values (slow, for tests)."""
        B, R, d = v.shape
        if hidden is not None:
            a = a[None] * (~hidden)[:, None, None, :].to(a.dtype)
            a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
        v = v.view(B, R, self.h, self.dh).permute(0, 2, 1, 3)
        return (a.to(v.dtype) @ v).permute(0, 2, 1, 3).reshape(B, R, d)


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
