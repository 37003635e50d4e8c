"""The Neuroformer estimator: pretraining, behaviour fine-tuning and scoring (the model is described in
:mod:`brainpipe.models.neuroformer`); its connectivity read-outs (:mod:`.readouts`), generation (:mod:`.generation`)
and saving as a ``model_fit`` dataset (:mod:`.serialise`) are mixed in from their own modules."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError, InputError
from brainpipe.models.base import Estimator
from brainpipe.models.neuroformer.finetune import CHUNK_WINDOWS, FINETUNE_MODES, BehaviourFinetuning
from brainpipe.models.neuroformer.generation import Generation
from brainpipe.models.neuroformer.network import (
    PAST_ATTENTIONS,
    READOUTS,
    NeuroformerNet,
    pretrain_loss,
)
from brainpipe.models.neuroformer.readouts import ConnectivityReadouts
from brainpipe.models.neuroformer.serialise import MODEL_KEYS, Serialisation
from brainpipe.models.neuroformer.tokenizer import SpikeTokenizer, Windows

__all__ = ["FINETUNE_MODES", "MODEL_KEYS", "Neuroformer", "r2_score"]


class Neuroformer(BehaviourFinetuning, ConnectivityReadouts, Generation, Serialisation, Estimator):
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
    modality_dropout : float, default 0.0
        Probability that pretraining replaces a modality of a window by the modality's learned absent embedding
        (:class:`NeuroformerNet`; 0: off, the network without the option). Not in the paper: with it one
        pretrained model reads connectivity with every modality present and decodes a variable of a modality with
        that modality absent (a decoding target inside an input modality needs it; the decoder never reads it).
    past_positions : bool, default True
        Add the learned sequence-position embedding to the past tokens (the paper's); False: a past token's time
        is given by its dt token alone, not by its rank among the window's spikes (not in the paper).
    past_attention : {"softmax", "sigmoid"}, default "softmax"
        The current window's cross-attention to the past tokens: the paper's softmax (which averages over the past
        spikes) or a sigmoid attention whose past spikes' contributions add, like a GLM's sum over the spike
        history (not in the paper; see :class:`NeuroformerNet`).
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
        modality_dropout: float = 0.0,
        past_positions: bool = True,
        past_attention: str = "softmax",
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
        self.modality_dropout = modality_dropout
        self.past_positions = past_positions
        self.past_attention = past_attention
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
        for name in ("dropout", "modality_dropout"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise self._param_error(name, "must be in [0, 1)")
        if self.readout not in READOUTS:
            raise self._param_error("readout", f"must be one of {', '.join(READOUTS)}")
        if self.past_attention not in PAST_ATTENTIONS:
            raise self._param_error("past_attention", f"must be one of {', '.join(PAST_ATTENTIONS)}")
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
        net = NeuroformerNet(
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
            modality_dropout=float(self.modality_dropout),
            past_positions=bool(self.past_positions),
            past_attention=str(self.past_attention),
        )
        net.absent = self._absent_modalities()
        return net

    def _absent_modalities(self) -> tuple[int, ...]:
        """The modalities (indices) that hold the decoding target: absent from every window of the decoder.

        Raises a one-line :class:`ConfigError` when there are some but the model has no absent embedding
        (``modality_dropout`` 0): the decoder would see its own target.
        """
        tok = self.tokenizer_
        t = tok.target
        if t is None:
            return ()
        src, var = str(t["source"]), str(t["variable"])
        idx = tuple(k for k, (_, s, v) in enumerate(tok.mod_layout_) if s == src and var in v)
        if idx and not float(self.modality_dropout) > 0:
            raise ConfigError(
                f"neuroformer: the decoding target {src} {var!r} is part of input modality "
                f"{tok.mod_layout_[idx[0]][0]!r} of a model pretrained without modality dropout, so the decoder "
                "would see its own target; pretrain with model.modality_dropout > 0 (the modality is then absent "
                "when decoding) or remove the variable from the modality"
            )
        return idx

    def _prepare(self, counts: xr.Dataset, source: str) -> Windows:
        """Every window of ``counts``, tokenised (the tokeniser fitted first if need be); one line without train or
        validation windows."""
        return self._window_source(counts, source, in_memory=True).all

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
        starts = self.tokenizer_.window_starts(counts)
        starts = starts[self.tokenizer_.window_splits(counts, starts) == SPLIT_FLAGS[split]]
        if starts.size == 0:
            raise InputError(f"{source}: no {split} window to score")
        dev = next(self.net_.parameters()).device
        total, n = 0.0, 0
        for c in range(
            0, starts.size, CHUNK_WINDOWS
        ):  # a chunk of windows at a time: the same 256-window batches
            tensors = self.tokenizer_.transform(counts, source, starts[c : c + CHUNK_WINDOWS]).tensors()
            for i in range(0, tensors[0].shape[0], 256):
                b = [t[i : i + 256].to(dev) for t in tensors]
                total += float(pretrain_loss(self.net_, b)["loss"]) * b[0].shape[0]
                n += b[0].shape[0]
        return total / n


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
