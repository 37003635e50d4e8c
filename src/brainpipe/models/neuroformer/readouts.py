"""Connectivity read-outs of a fitted Neuroformer (a mixin of :class:`~brainpipe.models.neuroformer.Neuroformer`):
attention rollout, cross-attention alone, gradient x input, the ablation of a neuron's past, and the interventional
rate ratios of :mod:`~brainpipe.models.neuroformer.interventions` (a spike inserted at each lag, or a neuron's past
spikes removed)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError
from brainpipe.models.neuroformer.interventions import LAG_AGGREGATES, aggregate_lags, lag_effects
from brainpipe.models.neuroformer.network import split_batch
from brainpipe.models.neuroformer.tokenizer import Windows

METHODS = ("rollout", "cross", "grad", "ablation", "insert", "remove")


class ConnectivityReadouts:
    """Neuron x neuron read-outs of a fitted Neuroformer (mixed into :class:`Neuroformer`; needs ``net_``,
    ``tokenizer_`` and ``_forward_windows``)."""

    @torch.no_grad()
    def _ablation_connectivity(self, win: Windows, n: int, batch_size: int = 128) -> np.ndarray:
        """``1 + D`` of :meth:`connectivity` (``method="ablation"``): the drop of each neuron's next-spike
        log-probability when one neuron's past spikes are removed, averaged over the windows it spiked in."""
        net = self.net_
        self.net_.eval()
        dev = next(net.parameters()).device
        D, m = np.zeros((n, n)), np.zeros(n)
        for s in range(0, len(win), batch_size):
            b = [t[s : s + batch_size].to(dev) for t in win.tensors()]
            x_id, x_dt, _, _, past_id, past_dt, modality, _ = split_batch(b)
            real = (x_id != net.pad_id).float()[..., None]  # positions that predict a next token
            base = torch.log_softmax(net(x_id, x_dt, past_id, past_dt, modality)["id_logits"].float(), -1)
            for j in range(n):
                has = past_id == j
                pid = past_id.masked_fill(has, net.pad_id)
                rows = has.any(1) & (pid != net.pad_id).any(1)  # j spiked, and some other past token is left
                if not bool(rows.any()):
                    continue
                lp = torch.log_softmax(
                    net(x_id[rows], x_dt[rows], pid[rows], past_dt[rows], modality[rows])[
                        "id_logits"
                    ].float(),
                    -1,
                )
                D[:, j] += ((base[rows][..., :n] - lp[..., :n]) * real[rows]).sum((0, 1)).cpu().numpy()
                m[j] += float(real[rows].sum())
        D = D / np.maximum(m, 1.0)[None, :]
        off = ~np.eye(n, dtype=bool)
        self.attention_received_ = np.where(off, np.maximum(D, 0.0), 0.0).sum(0)
        return 1.0 + D

    def _gradient_windows(self, win: Windows, batch_size: int = 128):
        """Like :meth:`_forward_windows`, with ``o["attribution"]`` (B, L, P): gradient x input of each current
        position's log-probability of its next ID token with respect to each past token's embedding."""
        net = self.net_
        dev = next(net.parameters()).device
        outs = []
        for s in range(0, len(win), batch_size):
            b = [t[s : s + batch_size].to(dev) for t in win.tensors()]
            x_id, x_dt, y_id, _, past_id, past_dt, modality, _ = split_batch(b)
            grabbed = []

            def grab(_m, _inp, out, grabbed=grabbed):
                if len(grabbed) == 1:  # the second call of the token embedding is the past's
                    out.retain_grad()
                grabbed.append(out)

            h = net.tok.register_forward_hook(grab)
            try:
                with torch.enable_grad():
                    o = net(x_id, x_dt, past_id, past_dt, modality)
                    logp = torch.log_softmax(o["id_logits"].float(), -1)
                    tgt = y_id.clamp(max=logp.shape[-1] - 1)
                    lp = logp.gather(-1, tgt[..., None])[..., 0]  # (B, L)
                    emb = grabbed[1]
                    att = torch.zeros(lp.shape[0], lp.shape[1], emb.shape[1], device=dev)
                    for pos in range(lp.shape[1]):
                        (g,) = torch.autograd.grad(lp[:, pos].sum(), emb, retain_graph=pos < lp.shape[1] - 1)
                        att[:, pos] = (g * emb).sum(-1).abs().detach()
            finally:
                h.remove()
            outs.append(({"attribution": att}, b, y_id))
        return outs

    @fill_doc
    def connectivity(
        self,
        counts: xr.Dataset,
        split: str = "test",
        by: str = "target",
        max_windows: int | None = None,
        method: str = "rollout",
        centre_rows: bool = False,
        lags: str = "sum",
    ) -> np.ndarray:
        """Neuron x neuron (post, pre) matrix from attention rollout, current-window tokens -> past-window tokens.

        Rollout: ``R = prod_self (0.5 I + 0.5 A_self) @ mean_past(A_past)`` (attention averaged over heads), i.e.
        how much each current position draws on each past token through the cross-attention and the later
        self-attention layers. ``S[i, j]`` sums ``R`` over current positions whose next token (``by="target"``,
        the neuron being predicted) or own token (``by="query"``) is neuron ``i`` and past tokens of neuron
        ``j``; the result is the lift ``(S[i, j] / n_i) / (sum_i S[i, j] / sum_i n_i)``: how much more the model
        attends to ``j`` when ``i`` comes next than on average (1 = no preference). Also sets
        ``attention_received_``: the mean attention a single past token of each neuron receives per current
        position (the model's own hub score: the neurons whose past spikes it draws on most).

        Parameters
        ----------
        %(counts)s
        %(split)s
        by : {"target", "query"}
            Attribute a current position to the neuron it predicts next, or to its own token's neuron.
        max_windows : int, optional
            Use at most this many windows of the split, evenly spread over it (None: all).
        method : {"rollout", "cross", "grad", "ablation", "insert", "remove"}, default "rollout"
            What a current position draws from each past token: the attention rollout above; ``"cross"``, the
            cross-attention to the past alone (heads and past layers averaged, no rollout through the
            self-attention); ``"grad"``, gradient x input: ``|d log p(next ID) / d e_p . e_p|`` for each past
            token embedding ``e_p`` (one backward pass per current position). The same lift in these three.
            ``"ablation"`` is interventional instead: ``1 + D[i, j]``, where ``D[i, j]`` is the mean drop of the
            predicted log-probability that the next spike is neuron ``i`` (every current position, not only those
            where ``i`` comes next) when neuron ``j``'s past spikes are removed, over the windows where ``j``
            spiked in the past (``by`` does not apply; ``attention_received_`` is then each neuron's summed
            positive effect on the others). ``"insert"`` and ``"remove"`` are interventional rate ratios
            (:func:`~brainpipe.models.neuroformer.interventions.lag_effects`): the model's expected count of
            neuron ``i`` in the current window (summed next-token probabilities, not a share) with one spike of
            ``j`` inserted at each lag of the past window, against the recorded past, combined over lags by
            ``lags``; or with ``j``'s past spikes removed. Returned as ``exp`` of the log ratio (1 = no effect;
            ``by`` does not apply; ``lag_effect_`` (lag, post, pre) or ``removal_effect_`` keep the log ratios;
            ``attention_received_`` is each neuron's summed positive effect on the others).
        centre_rows : bool, default False
            Remove each post neuron's own level: divide its row of the lift by the geometric mean of its
            off-diagonal entries (ablation, insert, remove: subtract the mean of the effect), so that neurons that
            are simply easy or hard to predict do not rank all their pairs high or low.
        lags : {"sum", "dominant", "range"}, default "sum"
            How ``"insert"`` combines its lags (:func:`~brainpipe.models.neuroformer.interventions.aggregate_lags`).

        Returns
        -------
        numpy.ndarray
            (post, pre) attention lift; 1 = no preference.
        """
        if method not in METHODS:
            raise ConfigError(
                f"neuroformer connectivity: method={method!r} is not one of {', '.join(METHODS)}"
            )
        if lags not in LAG_AGGREGATES:
            raise ConfigError(
                f"neuroformer connectivity: lags={lags!r} is not one of {', '.join(LAG_AGGREGATES)}"
            )
        if by not in ("target", "query"):
            raise ConfigError(f"neuroformer connectivity: by={by!r} is not one of target, query")
        win = self.tokenizer_.transform(counts)
        win = win.select(win.split == SPLIT_FLAGS[split])
        if max_windows is not None and len(win) > max_windows:  # evenly spread over the split
            keep = np.linspace(0, len(win) - 1, int(max_windows)).round().astype(int)
            win = win.select(np.isin(np.arange(len(win)), keep))
        n = self.tokenizer_.vocab["n_units"]
        if method in ("insert", "remove"):
            tok = self.tokenizer_
            ins, rem = lag_effects(
                self.net_,
                win,
                n,
                tok.past_bins_ // tok.rebin_,
                insert=method == "insert",
                remove=method == "remove",
            )
            self.lag_effect_, self.removal_effect_ = ins, rem
            E = aggregate_lags(ins, lags) if ins is not None else rem
            E = _centre_rows(E) if centre_rows else E
            off = ~np.eye(n, dtype=bool)
            self.attention_received_ = np.where(off, np.maximum(E, 0.0), 0.0).sum(0)
            return np.exp(E)
        if method == "ablation":
            M = self._ablation_connectivity(win, n)
            return _centre_rows(M - 1.0) + 1.0 if centre_rows else M
        S = np.zeros((n, n))
        cnt = np.zeros(n)
        n_tok_past, n_win = np.zeros(n), 0
        self.net_.eval()
        batches = (
            self._gradient_windows(win, batch_size=128)
            if method == "grad"
            else self._forward_windows(win, batch_size=128, need_weights=True)
        )
        for o, b, y_id in batches:
            if method == "grad":
                roll = o["attribution"]
            else:
                maps = o["attention"]
                A = torch.stack(maps["past"]).float().mean(0).mean(1)  # (B, L, P)
                R = None
                for w in maps["self"] if method == "rollout" else []:
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
        lift = a / np.maximum(base, 1e-12)[None, :]
        return np.exp(_centre_rows(np.log(np.maximum(lift, 1e-12)))) if centre_rows else lift


def _centre_rows(X: np.ndarray) -> np.ndarray:
    """Each row minus the mean of its off-diagonal entries."""
    off = ~np.eye(X.shape[0], dtype=bool)
    mean = np.where(off, X, 0.0).sum(1, keepdims=True) / max(X.shape[1] - 1, 1)
    return X - mean
