"""The BrainMAE network (:class:`BrainMAENet`), its masks and pretraining loss, the segment read-outs and the
fine-tuning head."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from brainpipe.errors import ConfigError
from brainpipe.models.brainmae.blocks import (
    FEATURES,
    Block,
    BrainMAEConfig,
    TemporalEncoder,
    sinusoidal_codes,
)


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
        self.linear = cfg.linear_path == "volume"
        if self.linear:  # the linear path's statistics (set by fit_linear) and penalty
            self.register_buffer("lin_mean", torch.zeros(n_rois))
            self.register_buffer("lin_cov", torch.eye(n_rois))
            self.register_buffer("lin_alpha", torch.tensor(float(cfg.linear_alpha or 1.0)))

    @torch.no_grad()
    def fit_linear(self, X: torch.Tensor) -> None:
        """Set the linear path's ROI means and covariance from training segments ``X`` (N, L, R), their volumes
        pooled (float64)."""
        v = X.reshape(-1, X.shape[-1]).double()
        mu = v.mean(0)
        cov = (v - mu).T @ (v - mu) / max(v.shape[0] - 1, 1)
        self.lin_mean.copy_(mu.to(self.lin_mean.dtype))
        self.lin_cov.copy_(cov.to(self.lin_cov.dtype))

    def linear_fill(self, x: torch.Tensor, mask: torch.Tensor | None, alpha=None) -> torch.Tensor:
        """The linear path: segments ``x`` (B, L, R) with the hidden ROIs (``mask`` (B, R) True) replaced, volume
        by volume, by their Gaussian conditional mean given the visible ROIs of the same volume,
        ``mu_h + S_hv (S_vv + alpha I)^-1 (x_v - mu_v)`` (``S``, ``mu``: the training volumes' covariance and
        means; the same as a ridge of the hidden ROIs on the visible ones with penalty ``alpha`` per volume);
        visible ROIs are ``x``. ``alpha`` overrides the path's penalty."""
        if mask is None:
            return x
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf, S = x.float(), self.lin_cov.float()
            a = self.lin_alpha.float() if alpha is None else float(alpha)
            v = (~mask).float()  # (B, R) 1: visible
            A = S * (v[:, :, None] * v[:, None, :]) + torch.diag_embed(v * a + (1.0 - v))
            rhs = ((xf - self.lin_mean.float()) * v[:, None, :]).transpose(
                1, 2
            )  # (B, R, L), 0 at hidden ROIs
            pred = (S @ torch.linalg.solve(A, rhs)).transpose(1, 2) + self.lin_mean.float()
            return torch.where(mask[:, None, :], pred, xf).to(x.dtype)

    def _roi_tokens(self, x: torch.Tensor, mask: torch.Tensor | None, emb: torch.Tensor) -> torch.Tensor:
        if self.linear and mask is not None:
            # the linear path: a hidden ROI's token is made from its linear fill (visible information only) plus the
            # mask token, and it is a graph source like the others
            tok = self.temporal(self.linear_fill(x, mask).transpose(1, 2))
            tok = tok + mask[..., None].to(tok.dtype) * self.mask_token.to(tok.dtype)
            mask = None
        else:
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
            out = self.decoder(h).transpose(2, 3)
            if self.linear:  # the transformer's output corrects the linear path
                B, K, L, R = x.shape
                m = None if mask is None else mask.reshape(B * K, R)
                out = out + self.linear_fill(x.reshape(B * K, L, R), m).view(B, K, L, R).to(out.dtype)
            return out
        out = self.decoder(self.encode(x, mask, emb)).transpose(1, 2)
        return out + self.linear_fill(x, mask).to(out.dtype) if self.linear else out


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


def nmse(X: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    """Normalised MSE on hidden ROIs: ``sum (x - pred)^2 / sum x^2`` over hidden (segment, ROI) entries, all times.
    With z-scored signals, predicting 0 (the mean) scores about 1."""
    m = np.broadcast_to(np.asarray(mask, bool)[:, None, :], X.shape)
    return float(((X - pred) ** 2)[m].sum() / max((X**2)[m].sum(), 1e-12))
