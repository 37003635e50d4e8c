"""Neuroformer's network (:class:`NeuroformerNet`: attention blocks over the current, past and modality tokens)
and its losses (next-token pretraining with optional contrastive alignment; behaviour decoding)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from brainpipe.errors import ConfigError

PAST_ATTENTIONS = ("softmax", "sigmoid")


class Attention(nn.Module):
    """Multi-head attention with ``F.scaled_dot_product_attention``; explicit weights on request.

    ``kind="sigmoid"`` (not in the paper): each weight is ``sigmoid(score + b)`` with a learned per-head bias ``b``
    started at ``-log(n_keys)`` (Ramapuram et al. 2024), masked keys weigh 0; the weights are not normalised over
    the keys, so the keys' contributions add instead of being averaged.
    """

    def __init__(self, d: int, n_heads: int, dropout: float, kind: str = "softmax", n_keys: int = 1):
        super().__init__()
        if d % n_heads:
            raise ConfigError(f"neuroformer model: d_model={d} must be divisible by n_heads={n_heads}")
        if kind not in PAST_ATTENTIONS:
            raise ConfigError(
                f"neuroformer model: past_attention={kind!r} is not one of {', '.join(PAST_ATTENTIONS)}"
            )
        self.h, self.dk, self.p, self.kind = n_heads, d // n_heads, dropout, kind
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        if kind == "sigmoid":  # the parameter exists only here: the softmax network's weights are unchanged
            self.bias = nn.Parameter(torch.full((n_heads, 1, 1), -math.log(max(int(n_keys), 1))))
        else:
            self.register_parameter("bias", None)

    def _sigmoid_weights(self, q, k, mask):
        """Unnormalised weights ``sigmoid(q.k / sqrt(d_head) + b)``, 0 where ``mask`` is False."""
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.dk) + self.bias.to(q.dtype)
        w = torch.sigmoid(s.float()).to(q.dtype)
        return w if mask is None else w.masked_fill(~mask, 0.0)

    def kv(self, mem):
        """Keys and values (batch, head, position, d_head) of ``mem`` (what a key-value cache keeps)."""
        B, M, _ = mem.shape
        k = self.k(mem).view(B, M, self.h, self.dk).transpose(1, 2)
        return k, self.v(mem).view(B, M, self.h, self.dk).transpose(1, 2)

    def attend(self, x, k, v, mask=None):
        """Attention of the queries of ``x`` to cached keys ``k`` and values ``v`` (eval: no dropout)."""
        B, L, D = x.shape
        q = self.q(x).view(B, L, self.h, self.dk).transpose(1, 2)
        if self.kind == "sigmoid":
            out = self._sigmoid_weights(q, k, mask) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o(out.transpose(1, 2).reshape(B, L, D))

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
        if self.kind == "sigmoid":
            w = self._sigmoid_weights(q, k, mask)
            out = F.dropout(w, self.p, self.training) @ v
            w = w if need_weights else None
        elif need_weights:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(self.dk)
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            w = torch.softmax(s.float(), dim=-1).to(q.dtype)
            out = w @ v
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.p if self.training else 0.0
            )
        return self.o(out.transpose(1, 2).reshape(B, L, D)), w


class Block(nn.Module):
    """Pre-LN block: ``x + Attn(LN(x), LN(mem))``, then ``x + MLP(LN(x))``."""

    def __init__(
        self, d: int, n_heads: int, dropout: float, cross: bool, attention: str = "softmax", n_keys: int = 1
    ):
        super().__init__()
        self.cross = cross
        self.ln1 = nn.LayerNorm(d)
        self.ln_mem = nn.LayerNorm(d) if cross else None
        self.attn = Attention(d, n_heads, dropout, kind=attention, n_keys=n_keys)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mem=None, mask=None, need_weights=False):
        h = self.ln1(x)
        m = self.ln_mem(mem) if self.cross else h
        a, w = self.attn(h, m, mask=mask, causal=not self.cross, need_weights=need_weights)
        x = x + self.drop(a)
        return x + self.mlp(self.ln2(x)), w

    def step(self, x, cache: dict, mask=None):
        """One new position ``x`` (batch, 1, d) given the ``cache`` of this block (eval mode).

        A cross block's cache holds its memory's keys/values (``k``, ``v``); a self-attention block's cache
        holds those of the positions so far, and this position's are appended (so it attends to itself and the
        earlier positions: causal).
        """
        h = self.ln1(x)
        if not self.cross:
            k, v = self.attn.kv(h)
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        x = x + self.attn.attend(h, cache["k"], cache["v"], mask=mask)
        return x + self.mlp(self.ln2(x))


class NeuroformerNet(nn.Module):
    """The torch module. ``forward(cur_id, cur_dt, past_id, past_dt, modality)`` takes the input part of the
    current sequence (``block_size - 1`` tokens) and returns a dict with ``id_logits``, ``dt_logits``,
    ``behaviour`` (head output), ``pooled`` and, when ``need_weights``, the attention maps.

    ``modality_dropout`` > 0 gives each modality a learned absent embedding (:meth:`modality_memory`): pretraining
    (:func:`pretrain_loss`) replaces each modality of each window by it with that probability, ``forward(...,
    absent=mask)`` where ``mask[b, k]`` drops modality ``k`` of window ``b``, and the modalities listed in
    :attr:`absent` are absent from every window (their values never read: a decoder whose target is one of their
    variables). Not in the paper: an option (like a null condition in classifier-free guidance) so that one
    pretrained model serves connectivity with every modality and decoding of a modality's variable without it.

    ``past_positions=False`` leaves the learned sequence-position embedding out of the past tokens (not in the
    paper, whose past tokens carry one): a past token's rank among the window's spikes is not its time, which the dt
    token gives; the inserted-spike read-out (:mod:`~brainpipe.models.neuroformer.interventions`) then no longer
    shifts the positions of the later past spikes either.

    ``past_attention="sigmoid"`` (not in the paper, whose attention is a softmax everywhere) makes the current
    window's cross-attention to the past tokens a sigmoid attention (:class:`Attention`; bias started at
    ``-log(past_block_size)``, learned per head): a past spike's weight no longer shrinks as the window holds more
    spikes, their contributions add like a Poisson GLM's sum over the spike history. Self-attention and the
    modalities' cross-attention stay softmax; ``"softmax"`` (default) is the paper's network, weights included."""

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
        readout: str = "mean",
        modality_dropout: float = 0.0,
        past_positions: bool = True,
        past_attention: str = "softmax",
    ):
        super().__init__()
        self.readout = str(readout)
        #: add the learned position embedding (a token's rank in the past sequence) to the past tokens; False: their
        #: time is given by the dt tokens alone (the parameter stays, unused, so weights and initialisation match)
        self.past_positions = bool(past_positions)
        self.modality_dropout = float(modality_dropout)
        #: modalities (indices) absent from every window: the learned absent embedding stands in, their values are
        #: never read (a decoder whose target is part of one of them; set by the estimator)
        self.absent: tuple[int, ...] = ()
        d = d_model
        self.n_id, self.n_dt, self.pad_id, self.pad_dt = n_id, n_dt, n_id - 1, n_dt - 1
        self.modality_dims = [int(m) for m in modality_dims]
        self.tok = nn.Embedding(n_id, d)
        self.dt = nn.Embedding(n_dt, d)
        self.pos = nn.Parameter(torch.zeros(1, block_size, d))
        self.pos_past = nn.Parameter(torch.zeros(1, past_block_size, d))
        #: the current window's cross-attention to the past tokens: "softmax" (the paper's) or "sigmoid" (adds)
        self.past_attention = str(past_attention)
        self.past_blocks = nn.ModuleList(
            Block(d, n_heads, dropout, cross=True, attention=self.past_attention, n_keys=past_block_size)
            for _ in range(n_past_layers)
        )
        self.mod_enc = nn.ModuleList(
            nn.Sequential(nn.Linear(m, d), nn.GELU(), nn.Linear(d, d)) for m in self.modality_dims
        )
        self.mod_pos = nn.Parameter(torch.zeros(1, modality_len, d))
        self.mod_blocks = nn.ModuleList(Block(d, n_heads, dropout, cross=True) for _ in self.modality_dims)
        self.blocks = nn.ModuleList(Block(d, n_heads, dropout, cross=False) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head_id = nn.Linear(d, n_id, bias=False)
        self.head_dt = nn.Linear(d, n_dt, bias=False)
        self.head_behaviour = behaviour_head(d, behaviour_out, self.readout)
        # the contrastive projections exist only with a modality to align to (else the network is unchanged)
        self.proj_neural = nn.Linear(d, contrastive_dim) if contrastive_dim and self.modality_dims else None
        self.proj_modality = nn.Linear(d, contrastive_dim) if contrastive_dim and self.modality_dims else None
        self.drop = nn.Dropout(dropout)
        self.apply(self._init)
        for p in (self.pos, self.pos_past, self.mod_pos):
            nn.init.normal_(p, std=0.02)
        # the learned 'absent' embedding of each modality exists only with modality dropout (without it, the
        # network, its initialisation and its weights are those of a network without the option)
        if self.modality_dropout > 0 and self.modality_dims:
            self.mod_absent = nn.Parameter(torch.randn(len(self.modality_dims), d) * 0.02)
        else:
            self.register_parameter("mod_absent", None)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def modality_memory(self, modality: torch.Tensor, dtype: torch.dtype, absent: torch.Tensor | None = None):
        """The encoded memory of each modality, and which windows have it.

        A modality's memory is its values through its encoder plus its time embedding; where the modality is absent
        (``absent``, or every window for the modalities in :attr:`absent`), it is its learned absent embedding plus
        the time embedding instead (the values are then not read).

        Parameters
        ----------
        modality : torch.Tensor
            (batch, modality position, variable) modality values.
        dtype : torch.dtype
            The activations' type.
        absent : torch.Tensor, optional
            (batch, modality) bool: the windows whose modality is dropped (modality dropout; None: none).

        Returns
        -------
        list of tuple
            Per modality ``(memory, present)``: (batch, position, d_model) and (batch,) bool, or None when every
            window has it.
        """
        B, Lm = modality.shape[0], modality.shape[1]
        out, start = [], 0
        for k, (dim, enc) in enumerate(zip(self.modality_dims, self.mod_enc, strict=True)):
            pos = self.mod_pos[:, :Lm]
            if k in self.absent:
                if self.mod_absent is None:
                    raise ConfigError(
                        "neuroformer: a modality is absent but the network has no absent embedding; "
                        "pretrain with model.modality_dropout > 0"
                    )
                out.append(
                    (
                        (self.mod_absent[k].to(dtype) + pos).expand(B, -1, -1),
                        torch.zeros(B, dtype=torch.bool, device=modality.device),
                    )
                )
            else:
                m = enc(modality[..., start : start + dim].to(dtype)) + pos
                present = None
                if absent is not None and self.mod_absent is not None:
                    present = ~absent[:, k]
                    m = torch.where(present[:, None, None], m, self.mod_absent[k].to(dtype) + pos)
                out.append((m, present))
            start += dim
        return out

    def _past_embedding(self, past_id, past_dt):
        """The past tokens' embeddings: neuron ID + dt token (+ sequence position with ``past_positions``)."""
        past = self.tok(past_id) + self.dt(past_dt)
        return past + self.pos_past[:, : past_id.shape[1]] if self.past_positions else past

    def forward(self, cur_id, cur_dt, past_id, past_dt, modality, need_weights=False, absent=None):
        L = cur_id.shape[1]
        x = self.drop(self.tok(cur_id) + self.dt(cur_dt) + self.pos[:, :L])
        past = self._past_embedding(past_id, past_dt)
        past_mask = (past_id != self.pad_id)[:, None, None, :]
        maps: dict[str, list[torch.Tensor]] = {"past": [], "self": []}
        for blk in self.past_blocks:
            x, w = blk(x, past, mask=past_mask, need_weights=need_weights)
            maps["past"].append(w)
        mods = self.modality_memory(modality, x.dtype, absent)
        for (m, _), blk in zip(mods, self.mod_blocks, strict=True):
            x, _ = blk(x, m)
        for blk in self.blocks:
            x, w = blk(x, need_weights=need_weights)
            maps["self"].append(w)
        x = self.ln_f(x)
        real = (cur_id != self.pad_id).to(x.dtype)[..., None]
        pooled = (x * real).sum(1) / real.sum(1).clamp_min(1.0)
        if self.readout == "last":  # the last real (non-PAD) current token
            last = (real[..., 0].sum(1).long() - 1).clamp_min(0)
            feat = x[torch.arange(x.shape[0], device=x.device), last]
        elif (
            self.readout == "mean_past"
        ):  # and the mean embedding of the past window's spikes (a count summary)
            pm = past_mask[:, 0, 0, :, None].to(past.dtype)
            feat = torch.cat([pooled, (past * pm).sum(1) / pm.sum(1).clamp_min(1.0)], -1)
        else:
            feat = pooled
        out = {
            "id_logits": self.head_id(x),
            "dt_logits": self.head_dt(x),
            "pooled": pooled,
            "behaviour": self.head_behaviour(feat),
        }
        if self.proj_neural is not None and self.proj_modality is not None and mods:
            out["z_neural"] = F.normalize(self.proj_neural(pooled), dim=-1)
            feats = torch.stack([m.mean(1) for m, _ in mods])  # (modality, batch, d)
            if all(p is None for _, p in mods):
                zm = feats.mean(0)
            else:  # the mean over the modalities a window has; windows without any leave the contrastive term
                w = torch.stack(
                    [torch.ones_like(pooled[:, 0]) if p is None else p.to(pooled.dtype) for _, p in mods]
                )
                zm = (feats * w[..., None]).sum(0) / w.sum(0).clamp_min(1.0)[:, None]
                out["modality_present"] = w.sum(0) > 0
            out["z_modality"] = F.normalize(self.proj_modality(zm), dim=-1)
        if need_weights:
            out["attention"] = maps
        return out

    # -- key-value cached decoding (generation) ------------------------------------------------------------------
    def init_cache(self, past_id, past_dt, modality) -> dict:
        """The key-value cache of a batch of windows before the first current token (eval mode).

        Holds the keys/values of the past tokens (one entry per past block), of the encoded modalities (one per
        modality block) and empty self-attention caches, so that :meth:`step` costs one position per token.

        Parameters
        ----------
        past_id, past_dt : torch.Tensor
            (batch, past position) past tokens.
        modality : torch.Tensor
            (batch, modality position, variable) modality values.

        Returns
        -------
        dict
            The cache (``past``, ``modality``, ``self`` lists of per-block dicts, ``past_mask``, ``pos``).
        """
        past = self._past_embedding(past_id, past_dt)
        cache: dict = {"past_mask": (past_id != self.pad_id)[:, None, None, :], "pos": 0}
        cache["past"] = [dict(zip("kv", b.attn.kv(b.ln_mem(past)), strict=True)) for b in self.past_blocks]
        cache["modality"] = [
            dict(zip("kv", blk.attn.kv(blk.ln_mem(m)), strict=True))
            for (m, _), blk in zip(self.modality_memory(modality, past.dtype), self.mod_blocks, strict=True)
        ]
        cache["self"] = [{} for _ in self.blocks]
        return cache

    def step(self, tok_id, tok_dt, cache: dict) -> dict:
        """Next-token logits after appending one token per window, from and into a key-value ``cache``.

        Gives the logits :meth:`forward` gives at that position (eval mode), at the cost of one position.

        Parameters
        ----------
        tok_id, tok_dt : torch.Tensor
            (batch,) the token at the cache's next position (``cache["pos"]``, starting at 0 with SOS).
        cache : dict
            From :meth:`init_cache`; updated in place.

        Returns
        -------
        dict
            ``id_logits`` and ``dt_logits`` (batch, vocabulary) of the token after it.
        """
        t = int(cache["pos"])
        x = (self.tok(tok_id) + self.dt(tok_dt))[:, None] + self.pos[:, t : t + 1]
        for blk, c in zip(self.past_blocks, cache["past"], strict=True):
            x = blk.step(x, c, mask=cache["past_mask"])
        for blk, c in zip(self.mod_blocks, cache["modality"], strict=True):
            x = blk.step(x, c)
        for blk, c in zip(self.blocks, cache["self"], strict=True):
            x = blk.step(x, c)
        cache["pos"] = t + 1
        x = self.ln_f(x)[:, 0]
        return {"id_logits": self.head_id(x), "dt_logits": self.head_dt(x)}


READOUTS = ("mean", "last", "mean_past")


def behaviour_head(d_model: int, out: int, readout: str = "mean") -> nn.Module:
    """The behaviour head of a read-out: LayerNorm and a linear layer on its features.

    Parameters
    ----------
    d_model : int
        Width of the network.
    out : int
        Outputs (1 for regression, the number of classes for classification).
    readout : {"mean", "last", "mean_past"}, default "mean"
        The features: the mean of the current window's real tokens, its last real token, or the mean with the mean
        embedding of the past window's spikes beside it (twice the width).

    Returns
    -------
    torch.nn.Module
        The head.
    """
    if readout not in READOUTS:
        raise ValueError(f"readout {readout!r} is not one of {', '.join(READOUTS)}")
    d = 2 * d_model if readout == "mean_past" else d_model
    return nn.Sequential(nn.LayerNorm(d), nn.Linear(d, out))


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Top-k and nucleus (top-p) filtering: logits outside the kept set become -inf.

    Parameters
    ----------
    logits : torch.Tensor
        (..., vocabulary) logits (already -inf where a token may not be sampled).
    top_k : int, optional
        Keep the ``top_k`` largest logits (None or 0: all).
    top_p : float, optional
        Keep the smallest set of most likely tokens whose probability reaches ``top_p`` (None or 1: all).

    Returns
    -------
    torch.Tensor
        The filtered logits (the most likely token is always kept).
    """
    if top_k:
        kth = torch.topk(logits, min(int(top_k), logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        srt, idx = torch.sort(logits, dim=-1, descending=True)
        p = torch.softmax(srt, dim=-1)
        drop = (p.cumsum(-1) - p) >= float(top_p)  # the mass before a token already reaches top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, idx, drop), float("-inf"))
    return logits


def split_batch(batch):
    """Inputs and next-token targets of a batch of :meth:`~brainpipe.models.neuroformer.tokenizer.Windows.tensors`
    (the current tokens shifted by one).

    Parameters
    ----------
    batch : sequence of torch.Tensor
        ``(cur_id, cur_dt, past_id, past_dt, modality, target)``.

    Returns
    -------
    tuple of torch.Tensor
        ``(x_id, x_dt, y_id, y_dt, past_id, past_dt, modality, target)``.
    """
    cur_id, cur_dt, past_id, past_dt, modality, target = batch
    return cur_id[:, :-1], cur_dt[:, :-1], cur_id[:, 1:], cur_dt[:, 1:], past_id, past_dt, modality, target


def pretrain_loss(model: NeuroformerNet, batch, contrastive_weight: float = 0.0, temperature: float = 0.1):
    """Next-ID + next-dt cross-entropy (PAD targets ignored; EOS kept), plus optional InfoNCE alignment.

    In training mode, a network with ``modality_dropout`` > 0 has each modality of each window dropped (its absent
    embedding instead) with that probability, drawn from torch's seeded generator.

    Parameters
    ----------
    model : NeuroformerNet
        The network.
    batch : sequence of torch.Tensor
        A batch of :meth:`~brainpipe.models.neuroformer.tokenizer.Windows.tensors`.
    contrastive_weight : float
        Weight of the InfoNCE term between pooled neural and modality embeddings (0: off; windows whose every
        modality is dropped leave it).
    temperature : float
        InfoNCE temperature.

    Returns
    -------
    dict of torch.Tensor
        ``loss`` (with gradient), and detached ``loss_id``, ``loss_dt`` and (when used) ``loss_contrastive``.
    """
    x_id, x_dt, y_id, y_dt, past_id, past_dt, modality, _ = split_batch(batch)
    absent = None
    if model.training and model.modality_dropout > 0 and model.modality_dims:
        # modality dropout: each modality of each window replaced by its absent embedding with this probability
        # (drawn from torch's generator, which the training loop seeds)
        absent = (
            torch.rand(x_id.shape[0], len(model.modality_dims), device=x_id.device) < model.modality_dropout
        )
    out = model(x_id, x_dt, past_id, past_dt, modality, absent=absent)
    loss_id = F.cross_entropy(
        out["id_logits"].flatten(0, 1).float(), y_id.flatten(), ignore_index=model.pad_id
    )
    loss_dt = F.cross_entropy(
        out["dt_logits"].flatten(0, 1).float(), y_dt.flatten(), ignore_index=model.pad_dt
    )
    loss = loss_id + loss_dt
    res = {"loss_id": loss_id.detach(), "loss_dt": loss_dt.detach()}
    zn, zm = out.get("z_neural"), out.get("z_modality")
    if zn is not None and "modality_present" in out:
        # windows without any modality leave the contrastive term
        keep = out["modality_present"]
        zn, zm = zn[keep], zm[keep]
    if contrastive_weight > 0 and zn is not None and zn.shape[0] > 1:
        sim = zn.float() @ zm.float().T / temperature
        lab = torch.arange(sim.shape[0], device=sim.device)
        clip = 0.5 * (F.cross_entropy(sim, lab) + F.cross_entropy(sim.T, lab))
        loss = loss + contrastive_weight * clip
        res["loss_contrastive"] = clip.detach()
    res["loss"] = loss
    return res


def behaviour_loss(
    model: NeuroformerNet, batch, kind: str = "regression", class_weight: torch.Tensor | None = None
):
    """Behaviour head loss: MSE on standardised targets (regression) or class-weighted cross-entropy
    (classification; weights inverse to the class frequencies of the labelled windows, so the decoder is trained
    for balanced accuracy rather than for the majority class).

    Parameters
    ----------
    model : NeuroformerNet
        The network (with its behaviour head).
    batch : sequence of torch.Tensor
        A batch of :meth:`~brainpipe.models.neuroformer.tokenizer.Windows.tensors`.
    kind : {"regression", "classification"}
        The target's kind.
    class_weight : torch.Tensor, optional
        Per-class weights of the cross-entropy.

    Returns
    -------
    torch.Tensor
        The scalar loss.
    """
    x_id, x_dt, _, _, past_id, past_dt, modality, target = split_batch(batch)
    out = model(x_id, x_dt, past_id, past_dt, modality)
    if kind == "classification":
        w = class_weight.to(out["behaviour"].device) if class_weight is not None else None
        return F.cross_entropy(out["behaviour"].float(), target[:, 0].long(), weight=w)
    return F.mse_loss(out["behaviour"].float(), target.float())
