"""The scikit-learn-shaped BrainMAE estimator: masked pretraining through the shared training loop, fine-tuning,
frozen features, reconstruction and scoring (saving and loading in :mod:`brainpipe.models.brainmae.serialise`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from brainpipe._docs import fill_doc
from brainpipe.errors import ConfigError, InputError
from brainpipe.models.base import Estimator
from brainpipe.models.brainmae.blocks import FEATURES, BrainMAEConfig, GraphAttention
from brainpipe.models.brainmae.network import BrainMAENet, FineTuneNet, nmse, pretrain_loss, segment_features
from brainpipe.models.brainmae.serialise import Serialisation
from brainpipe.models.brainmae.settings import LINEAR_ALPHAS, NET_KEYS, TRAIN_DEFAULTS, chunk_sequences


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
class BrainMAE(Serialisation, Estimator):
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
    linear_path : {"none", "volume"}
        ``"volume"``: a linear path fills each hidden ROI, volume by volume, with its Gaussian conditional mean given
        the visible ROIs of the same volume (the training volumes' means and covariance, penalty ``linear_alpha``:
        a ridge of the hidden ROIs on the visible ones); the network sees the filled segments (a hidden ROI's token
        is made from its fill plus the mask token) and its output is added to the fill (a correction);
        ``"none"`` (default): the network alone. For reconstruction on short recordings, where the network alone
        does not reach a linear fill; its ROI embeddings and features then learn little (bench/README.md).
    linear_alpha : float, optional
        The linear path's penalty (relative to the ROIs' variances); None (default): chosen from
        :data:`LINEAR_ALPHAS` by the masked error of the linear fill on the validation segments ``X_val``.
    %(train_config)s

    Attributes
    ----------
    net_ : BrainMAENet
        The network.
    history_ : list of dict
        Per-epoch losses.
    best_epoch_, device_, precision_, n_rois_, seg_len_, train_seconds_, resumed_from_step_
        What the fit did.
    linear_alpha_ : float or None
        The linear path's penalty (``linear_path="volume"``), None without it.

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
        linear_path: str = "none",
        linear_alpha: float | None = None,
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
        num_workers: int = 0,
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
        self.linear_path = linear_path
        self.linear_alpha = linear_alpha
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
        self.num_workers = num_workers

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
            if self.linear_path != "none":
                raise ConfigError(
                    "fmri.brainmae.model.streaming: the linear path (linear_path: volume) needs the training "
                    "segments in memory; set streaming.enabled: false or linear_path: none"
                )
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
        self.linear_alpha_ = None
        if self.linear_path != "none":
            self.linear_alpha_ = self._fit_linear(X, X_val, sequences, sequences_val)
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

    def _fit_linear(self, X, X_val, sequences=None, sequences_val=None) -> float:
        """Set the linear path from the training segments (those in ``sequences`` when given) and its penalty
        (``linear_alpha``, or the grid value with the least masked error on the validation segments)."""

        def rows(Z, seqs):
            if seqs is None:
                return Z
            idx = np.unique(np.asarray(seqs, dtype=np.int64))
            return Z[torch.as_tensor(idx[idx >= 0])]

        self.net_.fit_linear(rows(X, sequences))
        if self.linear_alpha is not None:
            alpha = float(self.linear_alpha)
        else:
            if X_val is None or not len(X_val) or isinstance(X_val, torch.utils.data.Dataset):
                raise ConfigError(
                    "BrainMAE: linear_alpha: null chooses the linear path's penalty on validation segments; "
                    "pass X_val (in memory) or set linear_alpha"
                )
            V = rows(_tensor(X_val), sequences_val)
            R = V.shape[2]
            k = min(R - 1, max(1, int(round(self.mask_ratio * R))))
            rng = np.random.default_rng(self.seed)
            mask = torch.as_tensor(rng.random((len(V), R)).argsort(axis=1) < k)
            m = mask[:, None, :].expand_as(V)
            err = []
            with torch.no_grad():
                for a in LINEAR_ALPHAS:
                    pred = self.net_.linear_fill(V, mask, alpha=a)
                    err.append(float(((pred - V) ** 2)[m].sum()))
            alpha = float(LINEAR_ALPHAS[int(np.argmin(err))])
        self.net_.lin_alpha.fill_(alpha)
        return alpha

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
