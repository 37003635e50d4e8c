"""The Neuroformer estimator: pretraining, behaviour fine-tuning and scoring (the model is described in
:mod:`brainpipe.models.neuroformer`); its connectivity read-outs (:mod:`.readouts`), generation (:mod:`.generation`)
and saving as a ``model_fit`` dataset (:mod:`.serialise`) are mixed in from their own modules."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from types import SimpleNamespace

import numpy as np
import torch
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError, InputError
from brainpipe.models.base import Estimator
from brainpipe.models.neuroformer.generation import Generation
from brainpipe.models.neuroformer.network import (
    READOUTS,
    NeuroformerNet,
    behaviour_head,
    behaviour_loss,
    pretrain_loss,
    split_batch,
)
from brainpipe.models.neuroformer.probe import LinearProbe
from brainpipe.models.neuroformer.readouts import ConnectivityReadouts
from brainpipe.models.neuroformer.serialise import MODEL_KEYS, Serialisation
from brainpipe.models.neuroformer.tokenizer import SpikeTokenizer, Windows, label_subset

__all__ = ["FINETUNE_MODES", "MODEL_KEYS", "Neuroformer", "r2_score"]

#: fine-tuning modes of :meth:`Neuroformer.fit_behaviour`
FINETUNE_MODES = ("full", "probe", "lpft")


class Neuroformer(LinearProbe, ConnectivityReadouts, Generation, Serialisation, Estimator):
    """Neuroformer in the scikit-learn shape.

    Parameters
    ----------
    tokenizer : SpikeTokenizer, optional
        Resolution, windows, block sizes, modalities and target (default: ``SpikeTokenizer()``).
    d_model, n_heads, n_layers, n_past_layers : int, default 64, 4, 2, 1
        Network size: width, attention heads, self-attention layers of the current window, layers of the past
        window's encoder (see :class:`NeuroformerNet`).
    dropout : float, default 0.1
        Dropout probability.
    contrastive_dim : int, default 0
        Size of the contrastive projection (0: none).
    contrastive_weight : float, default 0.0
        Weight of the InfoNCE alignment term in pretraining (0: off).
    readout : {"mean", "last", "mean_past"}, default "mean"
        Features of the behaviour head: the mean of the current window's real tokens, the last real token, or
        that mean with the mean embedding of the past window's spikes (see :func:`behaviour_head`).
    train : mapping, optional
        :class:`brainpipe.training.TrainConfig` fields for pretraining.
    finetune : mapping, optional
        The same for behaviour fine-tuning.
    seed : int, default 0
        Seeds everything (model initialisation, batches, label subsets, sampling).

    Attributes
    ----------
    net_ : NeuroformerNet
        The network.
    tokenizer_ : SpikeTokenizer
        The fitted tokenizer (units, bin width, modality and target layout).
    history_ : list of dict
        Per-epoch losses of pretraining.
    target_mean_, target_std_ : float
        Standardisation of a regression target.

    Examples
    --------
    >>> from brainpipe.models import Neuroformer, SpikeTokenizer
    >>> from brainpipe.preprocess import bin_spikes
    >>> from brainpipe.simulate import simulate
    >>> sim = simulate("poisson_glm_network", {"n_neurons": 5, "duration_s": 60}, seed=0)
    >>> counts = bin_spikes(sim.data, bin_width_s=0.01)
    >>> model = Neuroformer(
    ...     tokenizer=SpikeTokenizer(block_size=16, past_block_size=32), d_model=16, n_heads=2, n_layers=1,
    ...     train={"max_epochs": 1, "batch_size": 16, "device": "cpu", "progress": False},
    ... )
    >>> model = model.fit(counts)                  # next-token pretraining (seconds)  # doctest: +SKIP
    >>> loss = model.token_loss(counts, split="test")  # doctest: +SKIP
    >>> model.connectivity(counts).shape           # attention rollout, post x pre  # doctest: +SKIP
    (5, 5)
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
        readout: str = "mean",
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
        self.readout = readout
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
        if self.readout not in READOUTS:
            raise self._param_error("readout", f"must be one of {', '.join(READOUTS)}")
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
            readout=self.readout,
        )

    def _prepare(self, counts: xr.Dataset, source: str) -> Windows:
        if not hasattr(self, "tokenizer_"):
            self.tokenizer_ = self._tokenizer().fit(counts, source)
        self._check_memory(*self._memory_estimate(counts))
        win = self.tokenizer_.transform(counts, source)
        self.token_stats_ = dict(self.tokenizer_.stats_)
        for name in ("train", "validation"):
            if not np.any(win.split == SPLIT_FLAGS[name]):
                raise InputError(
                    f"{source}: no {name} window ({len(win)} windows of {self.tokenizer_.window_s} s after a past of "
                    f"{self.tokenizer_.past_window_s} s fit inside the split blocks); use shorter windows or fewer split blocks"
                )
        return win

    def _memory_estimate(self, counts: xr.Dataset) -> tuple[float, str]:
        """Peak bytes of tokenising and training: the token windows (ID, dt and targets, int64, with their tensor
        copies) and one batch's activations and attention maps (float32)."""
        tok = self.tokenizer_
        stride = float(tok.stride_s or tok.window_s)
        n_win = counts.sizes.get("time", 0) * float(counts.attrs.get("bin_width_s", tok.dt_s)) / stride
        tokens = float(tok.block_size + tok.past_block_size)
        batch = float(dict(self.train or {}).get("batch_size", 32))
        layers = float(self.n_layers + self.n_past_layers)
        windows = 8 * 6 * n_win * tokens
        acts = (
            4 * 16 * batch * tokens * self.d_model * layers
            + 4 * 2 * batch * self.n_heads * tokens**2 * layers
        )
        return windows + acts, "recording length / stride_s x block sizes, batch_size x block_size^2"

    @staticmethod
    def _train_config(d: Mapping[str, object], log=None):
        from brainpipe.training import TrainConfig

        return TrainConfig(**dict(d))

    # -- pretraining -----------------------------------------------------------------------------------------
    @fill_doc
    def fit(
        self,
        counts: xr.Dataset,
        source: str = "counts",
        checkpoint=None,
        fingerprint=None,
        log=None,
        streaming: Mapping[str, object] | None = None,
    ) -> Neuroformer:
        """Pretrain by next-token prediction on the train windows; checkpoint chosen on the validation windows.

        Parameters
        ----------
        %(counts)s
        %(source)s
        %(checkpoint)s
        %(fingerprint)s
        %(log)s
        streaming : mapping, optional
            Stream the windows from a temporary zarr store with bounded memory (``enabled``, ``chunk_windows``,
            ``cache_chunks``, ``shuffle``; :mod:`brainpipe.models.neuroformer.streaming`); default in memory.

        Returns
        -------
        Neuroformer
            ``self``, fitted.
        """
        from brainpipe.models.neuroformer.streaming import check_streaming, fit_streamed

        self._check_params()
        stream = check_streaming(streaming)
        if stream is not None:
            return fit_streamed(self, counts, source, stream, checkpoint, fingerprint, log)
        win = self._prepare(counts, source)
        self.net_ = self._build()
        tr, va = (
            win.select(win.split == SPLIT_FLAGS["train"]),
            win.select(win.split == SPLIT_FLAGS["validation"]),
        )
        return self._pretrain(tr.tensors(), va.tensors(), checkpoint, fingerprint, log)

    def _pretrain(self, train_data, val_data, checkpoint, fingerprint, log) -> Neuroformer:
        """Next-token training of ``net_`` on train windows (tensors or a streamed dataset), validation windows for
        the checkpoint choice and early stopping."""
        from brainpipe.training import train

        cw = float(self.contrastive_weight)
        res = train(
            self.net_,
            train_data,
            lambda m, b: pretrain_loss(m, b, cw),
            self._train_config(self.train or {}),
            val_data=val_data,
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

    @fill_doc
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
        max_epoch_windows: int | None = None,
        mode: str = "full",
        label_draw: int = 0,
        label_draws: int = 1,
    ) -> Neuroformer:
        """Fine-tune the behaviour head (and the network) on ``label_fraction`` of the labelled train windows.

        The labelled subset is :func:`label_subset`: ``label_fraction`` of the labelled train windows, evenly
        spaced (at least 8; draw ``label_draw`` of ``label_draws`` shifted grids).
        ``mode``: ``"full"`` trains the whole network and the head; ``"probe"`` freezes the network and fits the
        head alone (a linear probe: ridge, or class-balanced logistic regression, on the head's standardised
        features of the labelled windows, its penalty chosen on the validation windows' loss); ``"lpft"`` fits
        that probe, then trains the whole network from it (linear probing, then fine-tuning).
        After any mode, ``validation_loss_`` is the behaviour loss on the validation windows (the one the
        training loop stops on), the same measure for every mode and start.
        ``from_pretrained=False`` re-initialises the network (the from-scratch comparison). A small labelled set
        is repeated so that an epoch (one validation pass) covers at least ``min_epoch_windows`` windows; a large
        one is sampled, a fresh random ``max_epoch_windows`` of it per epoch, so that every label fraction is
        validated (and early-stopped) at the same interval; the validation loss uses at most ``max_val_windows``
        labelled validation windows, evenly spread (None: all).

        Parameters
        ----------
        %(counts)s
            It carries the target variable (see :meth:`set_target`).
        label_fraction : float, default 1.0
            Fraction of the labelled train windows used.
        from_pretrained : bool, default True
            Start from the pretrained weights (False: re-initialise the network).
        %(source)s
        %(checkpoint)s
        %(fingerprint)s
        %(log)s
        max_val_windows : int or None, default 512
            Most labelled validation windows in the validation loss.
        min_epoch_windows : int, default 1024
            Fewest windows per epoch (a small labelled set is repeated).
        max_epoch_windows : int, optional
            Most windows per epoch (a larger labelled set is sampled anew each epoch; None: one full pass).
        mode : {"full", "probe", "lpft"}, default "full"
            Train the whole network, the head alone on frozen features, or the probe's head then the network.
        label_draw : int, default 0
            Which of the ``label_draws`` labelled subsets (:func:`label_subset`).
        label_draws : int, default 1
            Number of labelled subsets drawn at this fraction.

        Returns
        -------
        Neuroformer
            ``self``, fine-tuned.
        """
        from brainpipe.training import train

        self._check_params()
        if mode not in FINETUNE_MODES:
            raise ConfigError(
                f"neuroformer finetune: mode={mode!r} is not one of {', '.join(FINETUNE_MODES)}"
            )
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
        keep = label_subset(tr, label_fraction, draw=int(label_draw), n_draws=int(label_draws))
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
            freq = np.bincount(win.target[keep, 0].astype(int), minlength=self._behaviour_out()).astype(
                np.float64
            )
            cw = torch.as_tensor(
                np.where(freq > 0, freq.sum() / np.maximum(freq, 1) / max((freq > 0).sum(), 1), 0.0),
                dtype=torch.float32,
            )
        if max_epoch_windows is not None and int(max_epoch_windows) < int(min_epoch_windows):
            raise ConfigError(
                f"neuroformer finetune: max_epoch_windows={max_epoch_windows} is below min_epoch_windows="
                f"{min_epoch_windows}; give max_epoch_windows >= min_epoch_windows (or null)"
            )
        if mode in ("probe", "lpft"):
            self.probe_ = self._fit_probe(win_y, keep, va_idx, kind, cw)
        if mode == "probe":
            loss = self._behaviour_val_loss(win_y.select(va_idx), kind, cw)
            self.finetune_history_ = []
            self.finetune_result_ = SimpleNamespace(
                steps=0, best_epoch=-1, stopped_early=False, best_val=loss
            )
            self.validation_loss_ = loss
            self.net_.eval()
            return self
        reps = max(1, int(np.ceil(min_epoch_windows / max(keep.size, 1))))
        data = win_y.select(np.tile(keep, reps)).tensors()
        collate = None
        if max_epoch_windows is not None and len(data[0]) > int(max_epoch_windows):
            data, collate = _EpochSample(data, int(max_epoch_windows)), _EpochSample.collate(data)
        res = train(
            self.net_,
            data,
            lambda m, b: behaviour_loss(m, b, kind, cw),
            self._train_config(cfg),
            val_data=win_y.select(va_idx).tensors(),
            checkpoint=checkpoint,
            fingerprint=fingerprint,
            collate_fn=collate,
            log=log,
        )
        self.finetune_history_ = list(res.history)
        self.finetune_result_ = res
        self.net_.eval()
        self.validation_loss_ = self._behaviour_val_loss(win_y.select(va_idx), kind, cw)
        return self

    @fill_doc
    def set_target(
        self, counts: xr.Dataset, target: Mapping[str, object] | None, source: str = "counts"
    ) -> Neuroformer:
        """Give a (pretrained) model a decoding target: checks it against the data and sizes a new behaviour head.

        Parameters
        ----------
        %(counts)s
        target : mapping or None
            ``source`` (``behaviour`` or ``stimulus``), ``variable`` and ``kind`` (``regression`` or
            ``classification``); None removes the target.
        %(source)s

        Returns
        -------
        Neuroformer
            ``self``.
        """
        self._check_fitted()
        self.tokenizer_.target = dict(target) if target is not None else None
        self.tokenizer_.fit(counts, source)
        out = self._behaviour_out()
        head = getattr(getattr(self, "net_", None), "head_behaviour", None)
        if head is not None and (head[-1].out_features != out or self.net_.readout != self.readout):
            torch.manual_seed(self.seed)
            self.net_.readout = self.readout
            self.net_.head_behaviour = behaviour_head(self.d_model, out, self.readout).to(
                next(self.net_.parameters()).device
            )
        return self

    @torch.no_grad()
    def _forward_windows(self, win: Windows, batch_size: int = 256, need_weights: bool = False):
        net = self.net_
        dev = next(net.parameters()).device
        outs = []
        for s in range(0, len(win), batch_size):
            b = [t[s : s + batch_size].to(dev) for t in win.tensors()]
            x_id, x_dt, y_id, _, past_id, past_dt, modality, _ = split_batch(b)
            o = net(x_id, x_dt, past_id, past_dt, modality, need_weights=need_weights)
            outs.append((o, b, y_id))
        return outs

    @fill_doc
    def predict_behaviour(
        self, counts: xr.Dataset, split: str = "test", source: str = "counts"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode the target in the labelled windows of one split.

        %(counts_split_source_parameters)s

        Returns
        -------
        tuple of numpy.ndarray
            ``(prediction, target)`` in those windows, as :meth:`decode` gives them.
        """
        return self.decode(self.labelled_windows(counts, split, source))

    @fill_doc
    def labelled_windows(
        self, counts: xr.Dataset, split: str | Sequence[str] = "test", source: str = "counts"
    ) -> Windows:
        """The windows of one or more splits that carry a value of the decoding target.

        Parameters
        ----------
        %(counts)s
        split : str or sequence of str, default "test"
            The split(s) (``train``, ``validation``, ``test``) whose windows to keep.
        %(source)s

        Returns
        -------
        Windows
            The labelled windows, in time order.
        """
        self._check_fitted()
        win = self.tokenizer_.transform(counts, source)
        flags = [SPLIT_FLAGS[s] for s in ([split] if isinstance(split, str) else split)]
        return win.select(np.isin(win.split, flags) & np.isfinite(win.target[:, 0]))

    def decode(self, win: Windows) -> tuple[np.ndarray, np.ndarray]:
        """Decode the target in labelled windows (those of :meth:`labelled_windows`).

        Parameters
        ----------
        win : Windows
            Tokenised windows with a target.

        Returns
        -------
        prediction : numpy.ndarray
            (window,) predicted values (regression) or class labels.
        target : numpy.ndarray
            (window,) the true ones.
        """
        self._check_fitted()
        self.net_.eval()
        preds = [o["behaviour"].float().cpu().numpy() for o, _, _ in self._forward_windows(win)]
        p = np.concatenate(preds) if preds else np.zeros((0, self._behaviour_out()))
        if self.target_kind == "classification":
            return self.tokenizer_.classes_[p.argmax(1)], self.tokenizer_.classes_[
                win.target[:, 0].astype(int)
            ]
        return p[:, 0] * self.target_std_ + self.target_mean_, win.target[:, 0].astype(np.float64)

    def score(self, counts: xr.Dataset, split: str = "test") -> float:
        """Held-out score of one split, higher is better.

        R2 (regression) or accuracy (classification) of behaviour decoding when the model has a target, else minus
        the mean next-token loss (nats per token, ID + dt).

        Parameters
        ----------
        counts : xarray.Dataset
            A ``spike_counts`` dataset with the model's units.
        split : {"train", "validation", "test"}
            The split to score.

        Returns
        -------
        float
            The score.
        """
        self._check_fitted()
        if self.tokenizer_.target is None:
            return -self.token_loss(counts, split)
        p, y = self.predict_behaviour(counts, split)
        if self.target_kind == "classification":
            return float(np.mean(p == y))
        return r2_score(y, p)

    @torch.no_grad()
    @fill_doc
    def token_loss(self, counts: xr.Dataset, split: str = "test", source: str = "counts") -> float:
        """Mean next-token cross-entropy (ID + dt, nats per token, PAD ignored) over the windows of one split.

        %(counts_split_source_parameters)s

        Returns
        -------
        float
            The loss, in nats per token.
        """
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


class _EpochSample:
    """Training windows for :func:`brainpipe.training.train` of which each epoch draws a fresh random ``size``.

    The loop asks ``epoch_order(generator)`` for an epoch's indices (seeded per epoch, so a resumed run draws the
    same ones) and gathers a batch with ``collate`` (one index per item).
    """

    def __init__(self, tensors: Sequence[torch.Tensor], size: int):
        self.n, self.size = int(tensors[0].shape[0]), int(size)

    def __len__(self) -> int:
        return min(self.size, self.n)

    def __getitem__(self, i: int) -> int:
        return int(i)

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(self.n, generator=generator)[: len(self)]

    @staticmethod
    def collate(tensors: Sequence[torch.Tensor]):
        return lambda ids: tuple(t[torch.as_tensor(ids, dtype=torch.long)] for t in tensors)


def r2_score(y: np.ndarray, p: np.ndarray) -> float:
    """Coefficient of determination (1 - SSE/SST); NaN for fewer than 2 samples or constant targets.

    Parameters
    ----------
    y, p : numpy.ndarray
        Targets and predictions.

    Returns
    -------
    float
        R^2.
    """
    y, p = np.asarray(y, float), np.asarray(p, float)
    sst = float(((y - y.mean()) ** 2).sum()) if y.size else 0.0
    if y.size < 2 or sst == 0:
        return float("nan")
    return 1.0 - float(((y - p) ** 2).sum()) / sst
