"""Interventional connectivity of a fitted Neuroformer: what the generative model predicts for neuron ``j``'s
next-window spike count when neuron ``i``'s spikes are put into (or taken out of) the past window.

The model's expected count of neuron ``j`` in a current window is ``sum_pos p(next ID = j | prefix, past)`` over
the positions that predict a real token (the recorded current tokens as the prefix, as in training): the number
of ``j`` tokens the model expects, not a share of one softmax. An intervention edits only the past tokens
(re-sorted in time, then neuron order, as the tokeniser writes them) and the read-out is the log ratio of the
expected counts summed over the windows (a log rate ratio), per lag of the inserted spike."""

from __future__ import annotations

import numpy as np
import torch

from brainpipe.errors import ConfigError
from brainpipe.models.neuroformer.network import NeuroformerNet, split_batch
from brainpipe.models.neuroformer.tokenizer import Windows

__all__ = [
    "LAG_AGGREGATES",
    "aggregate_lags",
    "expected_counts",
    "insert_past_spike",
    "lag_effects",
    "remove_past_unit",
]

LAG_AGGREGATES = ("sum", "dominant", "range")


def _resort(
    pid: torch.Tensor, pdt: torch.Tensor, pad_id: int, n_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Past tokens back in the tokeniser's order: SOS first, then by dt token and neuron, PAD last (stable)."""
    key = torch.where(pid == pad_id, torch.full_like(pid, torch.iinfo(torch.int64).max), pdt * n_id + pid)
    key[:, 0] = -1  # the start token stays first
    order = torch.sort(key, dim=1, stable=True).indices
    return pid.gather(1, order), pdt.gather(1, order)


def remove_past_unit(
    past_id: torch.Tensor, past_dt: torch.Tensor, unit: int, pad_id: int, pad_dt: int, n_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The past tokens without one neuron's spikes (the others keep their order; PAD fills the end).

    Parameters
    ----------
    past_id, past_dt : torch.Tensor
        (batch, past position) past tokens, SOS first.
    unit : int
        The neuron whose spikes are removed.
    pad_id, pad_dt : int
        The PAD tokens of the ID and dt vocabularies.
    n_id : int
        Size of the ID vocabulary.

    Returns
    -------
    tuple of torch.Tensor
        The edited ``past_id`` and ``past_dt``.
    """
    hit = past_id == int(unit)
    return _resort(past_id.masked_fill(hit, pad_id), past_dt.masked_fill(hit, pad_dt), pad_id, n_id)


def insert_past_spike(
    past_id: torch.Tensor, past_dt: torch.Tensor, unit: int, dt: int, pad_id: int, n_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The past tokens with one more spike of ``unit`` at dt token ``dt``, in the tokeniser's order.

    A past sequence that grows too long loses its earliest spike (the tokeniser keeps the latest ones).

    Parameters
    ----------
    past_id, past_dt : torch.Tensor
        (batch, past position) past tokens, SOS first.
    unit : int
        The neuron that spikes.
    dt : int
        Its dt token (the bin inside the past window; the last bin is ``n_past_dt - 1``).
    pad_id : int
        The PAD token of the ID vocabulary.
    n_id : int
        Size of the ID vocabulary.

    Returns
    -------
    tuple of torch.Tensor
        The edited ``past_id`` and ``past_dt``.
    """
    B = past_id.shape[0]
    pid = torch.cat([past_id, past_id.new_full((B, 1), pad_id)], 1)  # one more slot
    pdt = torch.cat([past_dt, past_dt[:, -1:]], 1)  # PAD's dt wherever the row has room
    at = (pid != pad_id).sum(1, keepdim=True)  # the first PAD position
    pid.scatter_(1, at, torch.full_like(at, int(unit)))
    pdt.scatter_(1, at, torch.full_like(at, int(dt)))
    pid, pdt = _resort(pid, pdt, pad_id, n_id)
    full = pid[:, -1] != pad_id
    if bool(full.any()):  # too long: drop the earliest spike (position 1), as the tokeniser does
        pid[full, 1:-1], pdt[full, 1:-1] = pid[full, 2:].clone(), pdt[full, 2:].clone()
    return pid[:, :-1], pdt[:, :-1]


def expected_counts(
    net: NeuroformerNet,
    x_id: torch.Tensor,
    x_dt: torch.Tensor,
    y_id: torch.Tensor,
    past_id: torch.Tensor,
    past_dt: torch.Tensor,
    modality: torch.Tensor,
    n_units: int,
) -> torch.Tensor:
    """The model's expected spike count of every neuron in each current window.

    ``sum_pos p(next ID = j)`` over the positions whose next token is real (a spike or EOS), given the recorded
    current tokens before it and the (possibly edited) past.

    Parameters
    ----------
    net : NeuroformerNet
        The network (eval mode).
    x_id, x_dt, y_id : torch.Tensor
        (batch, position) current input tokens and their next ID tokens (:func:`split_batch`).
    past_id, past_dt : torch.Tensor
        (batch, past position) past tokens.
    modality : torch.Tensor
        (batch, modality position, variable) modality values.
    n_units : int
        Number of neurons.

    Returns
    -------
    torch.Tensor
        (batch, n_units) expected counts.
    """
    p = torch.softmax(net(x_id, x_dt, past_id, past_dt, modality)["id_logits"].float(), -1)[..., :n_units]
    return (p * (y_id != net.pad_id).float()[..., None]).sum(1)


@torch.no_grad()
def lag_effects(
    net: NeuroformerNet,
    win: Windows,
    n_units: int,
    n_lags: int,
    batch_size: int = 64,
    insert: bool = True,
    remove: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Log rate ratios of one inserted past spike per neuron and lag, and of removing each neuron's past spikes.

    Parameters
    ----------
    net : NeuroformerNet
        The network.
    win : Windows
        The windows to average over.
    n_units : int
        Number of neurons.
    n_lags : int
        Number of dt steps of the past window (lag ``l`` puts the spike at dt token ``n_lags - l``).
    batch_size : int, default 64
        Windows per batch (each batch runs ``n_units`` edited copies at once).
    insert, remove : bool, default True
        Which of the two interventions to run (the other is returned as None).

    Returns
    -------
    insert : numpy.ndarray or None
        (lag, post, pre) ``log sum_w E_post(spike of pre at lag) - log sum_w E_post(recorded past)``; lag 1 first.
    remove : numpy.ndarray or None
        (post, pre) ``log sum_w E_post(recorded) - log sum_w E_post(pre's spikes removed)`` over the windows in which
        ``pre`` spiked in the past.
    """
    net.eval()
    dev = next(net.parameters()).device
    n = int(n_units)
    base = torch.zeros(n, dtype=torch.float64)
    ins = torch.zeros(n_lags, n, n, dtype=torch.float64)  # (lag, pre, post)
    rm_base = torch.zeros(n, n, dtype=torch.float64)  # (pre, post)
    rm = torch.zeros(n, n, dtype=torch.float64)
    tensors = win.tensors()
    pad = net.pad_id
    n_cur, n_past = (tensors[0] != pad).sum(1), (tensors[2] != pad).sum(1)
    order = torch.as_tensor(np.lexsort((n_past.numpy(), n_cur.numpy())))  # similar lengths share a batch
    for s in range(0, len(win), batch_size):
        idx = order[s : s + batch_size]
        b = [t[idx].to(dev) for t in tensors]
        x_id, x_dt, y_id, _, past_id, past_dt, modality, _ = split_batch(b)
        # trailing PAD positions change nothing (causal self-attention, masked past keys): cut them
        Lr = max(int((y_id != pad).sum(1).max()), 1)
        Pr = min(int((past_id != pad).sum(1).max()) + 1, past_id.shape[1])  # room for one inserted spike
        x_id, x_dt, y_id, past_id, past_dt = (
            x_id[:, :Lr],
            x_dt[:, :Lr],
            y_id[:, :Lr],
            past_id[:, :Pr],
            past_dt[:, :Pr],
        )
        B = x_id.shape[0]
        e0 = expected_counts(net, x_id, x_dt, y_id, past_id, past_dt, modality, n)  # (B, n)
        base += e0.sum(0).double().cpu()
        rep = [t.repeat(n, *([1] * (t.dim() - 1))) for t in (x_id, x_dt, y_id, modality)]
        for lag in range(1, n_lags + 1 if insert else 1):
            pid, pdt = zip(
                *(
                    insert_past_spike(past_id, past_dt, i, n_lags - lag, net.pad_id, net.n_id)
                    for i in range(n)
                ),
                strict=True,
            )
            e = expected_counts(net, rep[0], rep[1], rep[2], torch.cat(pid), torch.cat(pdt), rep[3], n)
            ins[lag - 1] += e.view(n, B, n).sum(1).double().cpu()
        if not remove:
            continue
        pid, pdt = zip(
            *(remove_past_unit(past_id, past_dt, i, net.pad_id, net.pad_dt, net.n_id) for i in range(n)),
            strict=True,
        )
        e = expected_counts(net, rep[0], rep[1], rep[2], torch.cat(pid), torch.cat(pdt), rep[3], n).view(
            n, B, n
        )
        had = torch.stack([(past_id == i).any(1) for i in range(n)]).float()[..., None]  # (pre, B, 1)
        rm += (e * had).sum(1).double().cpu()
        rm_base += (e0[None] * had).sum(1).double().cpu()
    tiny = 1e-12
    li = torch.log(ins.clamp_min(tiny)) - torch.log(base.clamp_min(tiny))[None, None, :]
    lr = torch.log(rm_base.clamp_min(tiny)) - torch.log(rm.clamp_min(tiny))
    return (li.transpose(1, 2).numpy() if insert else None), (lr.T.numpy() if remove else None)


def aggregate_lags(effect: np.ndarray, how: str = "sum") -> np.ndarray:
    """One (post, pre) score from per-lag log rate ratios.

    Parameters
    ----------
    effect : numpy.ndarray
        (lag, post, pre) log rate ratios (:func:`lag_effects`).
    how : {"sum", "dominant", "range"}, default "sum"
        ``sum``: the total over lags (the log rate change of a spike at every lag); ``dominant``: the sum over the
        lags where the effect is positive or the sum where it is negative, whichever is larger in magnitude (with
        its sign); ``range``: the largest minus the smallest effect over lags (unsigned: how much the effect
        depends on the spike's timing; an effect equal at every lag, such as a slow common drive the model infers
        from any spike, scores 0).

    Returns
    -------
    numpy.ndarray
        (post, pre) signed scores (0 = no effect).
    """
    if how not in LAG_AGGREGATES:
        raise ConfigError(
            f"neuroformer connectivity: lag aggregate {how!r} is not one of {', '.join(LAG_AGGREGATES)}"
        )
    if how == "sum":
        return effect.sum(0)
    if how == "range":
        return effect.max(0) - effect.min(0)
    pos, neg = np.maximum(effect, 0.0).sum(0), np.minimum(effect, 0.0).sum(0)
    return np.where(pos >= -neg, pos, neg)
