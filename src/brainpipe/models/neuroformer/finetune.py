"""Behaviour fine-tuning of a Neuroformer (a mixin of :class:`~brainpipe.models.neuroformer.Neuroformer`): the
decoding target, the labelled windows chosen from their splits and targets, fine-tuning in memory or from an
on-disk store of windows (``streaming``), and decoding.

The windows a fine-tuning run uses are chosen before any is tokenised (:class:`WindowSource`: each window's split
and target come from :meth:`SpikeTokenizer.window_targets`), so with ``streaming`` only the validation windows in
use, a probe's features and one chunk of train windows are in memory; the labelled train windows go through a
temporary zarr store (:func:`~brainpipe.models.neuroformer.streaming.window_store`). Decoding reads the labelled
windows a chunk at a time (:meth:`BehaviourFinetuning.decode_labelled`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import SimpleNamespace

import numpy as np
import torch
import xarray as xr

from brainpipe._docs import fill_doc
from brainpipe.data.contracts import SPLIT_FLAGS
from brainpipe.errors import ConfigError, InputError
from brainpipe.models.neuroformer.network import behaviour_head, behaviour_loss, split_batch
from brainpipe.models.neuroformer.probe import LinearProbe
from brainpipe.models.neuroformer.tokenizer import Windows, label_subset

__all__ = ["FINETUNE_MODES", "BehaviourFinetuning", "EpochSample", "WindowSource"]

#: fine-tuning modes of :meth:`BehaviourFinetuning.fit_behaviour`
FINETUNE_MODES = ("full", "probe", "lpft")
#: windows tokenised at a time where they are read in chunks (a multiple of the 256-window inference batches, so
#: chunked inference gives the same batches as one pass)
CHUNK_WINDOWS = 4096


class WindowSource:
    """The windows of a ``spike_counts`` dataset, known by their splits and targets before they are tokenised.

    ``source(idx)`` gives the windows ``idx`` (indices into :attr:`starts`) as :class:`Windows`, with the target
    replaced by :attr:`y` once it is set (the standardised fine-tuning target): from all windows tokenised once
    (``in_memory``), or tokenised on demand (only those asked for).

    Parameters
    ----------
    tokenizer : SpikeTokenizer
        A fitted tokeniser.
    counts : xarray.Dataset
        The ``spike_counts`` dataset.
    source : str
        Its name in error messages.
    in_memory : bool, default True
        Tokenise every window now (False: on demand).
    require : bool, default True
        Raise one line when no train or no validation window fits (for fitting; decoding needs neither).

    Attributes
    ----------
    starts, split, target : numpy.ndarray
        Every window's first bin, split flag and target (:meth:`SpikeTokenizer.window_targets`).
    y : numpy.ndarray or None
        The target given to training (None: :attr:`target`).
    """

    def __init__(
        self, tokenizer, counts: xr.Dataset, source: str, in_memory: bool = True, require: bool = True
    ):
        self.tokenizer, self.counts, self.source = tokenizer, counts, source
        self.all = tokenizer.transform(counts, source) if in_memory else None
        if self.all is not None:
            self.starts, self.split, self.target = self.all.start, self.all.split, self.all.target
            self.stats = dict(tokenizer.stats_)
        else:
            self.starts = tokenizer.window_starts(counts)
            self.split = tokenizer.window_splits(counts, self.starts)
            self.target = tokenizer.window_targets(counts, self.starts, source)
            self.stats = {"n_windows": int(self.starts.size)}
        self.y: np.ndarray | None = None
        if require:
            tokenizer.require_windows(self.split, source)

    def __call__(self, idx: np.ndarray) -> Windows:
        idx = np.asarray(idx, dtype=np.int64)
        win = (
            self.all.select(idx)
            if self.all is not None
            else self.tokenizer.transform(self.counts, self.source, self.starts[idx])
        )
        if self.y is not None:
            win = Windows(**{**win.__dict__, "target": self.y[idx]})
        return win

    def chunks(self, idx: np.ndarray, size: int = CHUNK_WINDOWS) -> Iterator[Windows]:
        """The windows ``idx``, ``size`` at a time (one piece when in memory)."""
        idx = np.asarray(idx, dtype=np.int64)
        step = idx.size if self.all is not None else int(size)
        for i in range(0, idx.size, max(step, 1)):
            yield self(idx[i : i + step])


class EpochSample(torch.utils.data.Dataset):
    """Training windows of which each epoch draws a fresh random ``size`` (for :func:`brainpipe.training.train`).

    The loop asks ``epoch_order(generator)`` for an epoch's indices (seeded per epoch, so a resumed run draws the
    same ones): a random ``size`` of the tensors' windows, gathered by the ``collate`` of :meth:`of`; or the first
    ``size`` of a streamed store's epoch order (its chunks shuffled: a few chunk reads a batch).

    Parameters
    ----------
    data : tuple of torch.Tensor or torch.utils.data.Dataset
        The windows (tensors with equal first dimension, or a dataset with ``epoch_order``).
    size : int
        Windows per epoch.
    """

    def __init__(self, data, size: int):
        self.data = data
        self.tensors = isinstance(data, (tuple, list))
        self.n = int(data[0].shape[0]) if self.tensors else len(data)
        self.size = int(size)

    @classmethod
    def of(cls, data, size: int):
        """``(dataset, collate)`` for :func:`brainpipe.training.train` (collate None: the default)."""
        sample = cls(data, size)
        if not sample.tensors:
            return sample, None
        tensors = data
        return sample, lambda ids: tuple(t[torch.as_tensor(ids, dtype=torch.long)] for t in tensors)

    def __len__(self) -> int:
        return min(self.size, self.n)

    def __getitem__(self, i: int):
        return int(i) if self.tensors else self.data[int(i)]

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        if self.tensors:
            return torch.randperm(self.n, generator=generator)[: len(self)]
        return self.data.epoch_order(generator)[: len(self)]


def _n_examples(data) -> int:
    return int(data[0].shape[0]) if isinstance(data, (tuple, list)) else len(data)


class BehaviourFinetuning(LinearProbe):
    """Behaviour fine-tuning and decoding (mixed into :class:`Neuroformer`; needs ``net_``, ``tokenizer_``,
    ``_build`` and ``_train_config``)."""

    def _window_source(self, counts: xr.Dataset, source: str, in_memory: bool) -> WindowSource:
        if not hasattr(self, "tokenizer_"):
            self.tokenizer_ = self._tokenizer().fit(counts, source)
        if in_memory:
            self._check_memory(*self._memory_estimate(counts))
        take = WindowSource(self.tokenizer_, counts, source, in_memory)
        self.token_stats_ = dict(take.stats)
        return take

    def _targets(self, target: np.ndarray) -> np.ndarray:
        y = np.asarray(target, dtype=np.float32).copy()
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
        streaming: Mapping[str, object] | None = None,
    ) -> BehaviourFinetuning:
        """Fine-tune the behaviour head (and the network) on ``label_fraction`` of the labelled train windows.

        The labelled subset is :func:`label_subset`: ``label_fraction`` of the labelled train windows, evenly
        spaced (at least 8; draw ``label_draw`` of ``label_draws`` shifted grids).
        ``mode``: ``"full"`` trains the whole network and the head; ``"probe"`` freezes the network and fits the
        head alone (a linear probe: ridge, or class-balanced logistic regression, on the head's standardised
        features of the labelled windows, its penalty chosen on the validation windows' loss); ``"lpft"`` fits
        that probe, then trains the whole network from it (linear probing, then fine-tuning), the probe being the
        first checkpoint the validation loss chooses among (kept, with best epoch -1, when no epoch beats it).
        After any mode, ``validation_loss_`` is the behaviour loss on the validation windows (the one the
        training loop stops on), the same measure for every mode and start.
        ``from_pretrained=False`` re-initialises the network (the from-scratch comparison). A small labelled set
        is repeated so that an epoch (one validation pass) covers at least ``min_epoch_windows`` windows; a large
        one is sampled, a fresh random ``max_epoch_windows`` of it per epoch, so that every label fraction is
        validated (and early-stopped) at the same interval; the validation loss uses at most ``max_val_windows``
        labelled validation windows, evenly spread (None: all). The windows are chosen from their splits and
        targets alone (:meth:`SpikeTokenizer.window_targets`), then tokenised: all of them in memory, or with
        ``streaming`` only those in use, the train windows through an on-disk store.

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
        streaming : mapping, optional
            Keep only the windows in use in memory (``enabled``, ``chunk_windows``, ``cache_chunks``, ``shuffle``;
            :func:`~brainpipe.models.neuroformer.streaming.check_streaming`): the windows are selected from their
            targets and splits before any is tokenised, the labelled train windows are written ``chunk_windows`` at
            a time to a temporary zarr store and trained from it (a labelled set smaller than
            ``min_epoch_windows`` stays in memory), the probe's features are computed a chunk at a time. With
            ``shuffle: global`` the weights equal the in-memory fine-tuning's. Default: every window in memory.

        Returns
        -------
        Neuroformer
            ``self``, fine-tuned.
        """
        from brainpipe.models.neuroformer.streaming import check_streaming, window_store
        from brainpipe.training import train

        self._check_params()
        if mode not in FINETUNE_MODES:
            raise ConfigError(
                f"neuroformer finetune: mode={mode!r} is not one of {', '.join(FINETUNE_MODES)}"
            )
        if self._tokenizer().target is None:
            raise ConfigError("neuroformer: fit_behaviour needs a tokenizer target")
        if max_epoch_windows is not None and int(max_epoch_windows) < int(min_epoch_windows):
            raise ConfigError(
                f"neuroformer finetune: max_epoch_windows={max_epoch_windows} is below min_epoch_windows="
                f"{min_epoch_windows}; give max_epoch_windows >= min_epoch_windows (or null)"
            )
        stream = check_streaming(streaming, "neuroformer.finetune.streaming")
        take = self._window_source(counts, source, stream is None)
        if not from_pretrained or not hasattr(self, "net_"):
            self.net_ = self._build()
        split, target = take.split, take.target
        lab = np.isfinite(target[:, 0])
        tr = np.flatnonzero((split == SPLIT_FLAGS["train"]) & lab)
        va = (split == SPLIT_FLAGS["validation"]) & lab
        if tr.size == 0 or not va.any():
            raise InputError(f"{source}: no labelled train or validation windows for the decoding target")
        keep = label_subset(tr, label_fraction, draw=int(label_draw), n_draws=int(label_draws))
        self.n_labelled_ = int(keep.size)
        va_idx = np.flatnonzero(va)
        if max_val_windows is not None and va_idx.size > max_val_windows:
            va_idx = va_idx[np.linspace(0, va_idx.size - 1, max_val_windows).round().astype(int)]
        self.n_validation_ = int(va_idx.size)
        if self.target_kind == "regression":
            self.target_mean_ = float(target[keep, 0].mean())
            self.target_std_ = float(target[keep, 0].std() + 1e-6)
        take.y = self._targets(target)
        kind = self.target_kind
        cw = None
        if kind == "classification":
            freq = np.bincount(target[keep, 0].astype(int), minlength=self._behaviour_out()).astype(
                np.float64
            )
            cw = torch.as_tensor(
                np.where(freq > 0, freq.sum() / np.maximum(freq, 1) / max((freq > 0).sum(), 1), 0.0),
                dtype=torch.float32,
            )
        val = take(va_idx)
        start = None
        if mode in ("probe", "lpft"):
            self.probe_ = self._fit_probe(take, keep, va_idx, kind, cw)
        if mode == "lpft":  # the probe is where training starts: a checkpoint it must beat to replace
            start = (
                self._behaviour_val_loss(val, kind, cw),
                {k: v.detach().clone() for k, v in self.net_.state_dict().items()},
            )
        if mode == "probe":
            loss = self._behaviour_val_loss(val, kind, cw)
            self.finetune_history_ = []
            self.finetune_result_ = SimpleNamespace(
                steps=0, best_epoch=-1, stopped_early=False, best_val=loss
            )
            self.validation_loss_ = loss
            self.net_.eval()
            return self
        reps = max(1, int(np.ceil(min_epoch_windows / max(keep.size, 1))))
        with window_store(take, np.tile(keep, reps), stream if reps == 1 else None) as data:
            collate = None
            if max_epoch_windows is not None and _n_examples(data) > int(max_epoch_windows):
                data, collate = EpochSample.of(data, int(max_epoch_windows))
            res = train(
                self.net_,
                data,
                lambda m, b: behaviour_loss(m, b, kind, cw),
                self._train_config(dict(self.finetune or {})),
                val_data=val.tensors(),
                checkpoint=checkpoint,
                fingerprint=fingerprint,
                collate_fn=collate,
                log=log,
            )
        self.finetune_history_ = list(res.history)
        self.finetune_result_ = res
        self.net_.eval()
        self.validation_loss_ = self._behaviour_val_loss(val, kind, cw)
        if start is not None and start[0] <= self.validation_loss_:
            # no epoch beat the probe it started from on the validation windows: keep the probe (best epoch -1)
            self.net_.load_state_dict(start[1])
            self.validation_loss_ = start[0]
            res.best_epoch = -1
        return self

    @fill_doc
    def set_target(
        self, counts: xr.Dataset, target: Mapping[str, object] | None, source: str = "counts"
    ) -> BehaviourFinetuning:
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
        absent = self._absent_modalities()  # the modalities holding the target: absent for the decoder
        if hasattr(self, "net_"):
            self.net_.absent = absent
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

    @torch.no_grad()
    def decode_labelled(
        self,
        counts: xr.Dataset,
        split: str | Sequence[str] = "test",
        source: str = "counts",
        chunk_windows: int | None = CHUNK_WINDOWS,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Decode the labelled windows of one or more splits, tokenising them ``chunk_windows`` at a time.

        The same predictions as :meth:`decode` of :meth:`labelled_windows`, with at most one chunk of windows in
        memory (for recordings whose windows do not fit).

        Parameters
        ----------
        counts : xarray.Dataset
            A ``spike_counts`` dataset with the model's units and the target.
        split : str or sequence of str, default "test"
            The split(s) whose labelled windows to decode.
        source : str, default "counts"
            What the counts are called in error messages.
        chunk_windows : int or None, default 4096
            Windows tokenised at a time (None: all at once).

        Returns
        -------
        prediction : numpy.ndarray
            (window,) as :meth:`decode`.
        target : numpy.ndarray
            (window,) the true values.
        windows : dict of numpy.ndarray
            ``split``, ``t_start`` (s) and ``start`` (first bin) of each decoded window.
        """
        self._check_fitted()
        take = WindowSource(self.tokenizer_, counts, source, in_memory=False, require=False)
        flags = [SPLIT_FLAGS[s] for s in ([split] if isinstance(split, str) else split)]
        idx = np.flatnonzero(np.isin(take.split, flags) & np.isfinite(take.target[:, 0]))
        preds, tgts = [], []
        for win in take.chunks(idx, int(chunk_windows or max(idx.size, 1))) if idx.size else [take(idx)]:
            p, t = self.decode(win)
            preds.append(p)
            tgts.append(t)
        start = take.starts[idx]
        t_start = np.asarray(counts["time"].values)[start] - 0.5 * self.tokenizer_.bin_width_s_
        windows = {"split": take.split[idx], "t_start": t_start.astype(np.float64), "start": start}
        return np.concatenate(preds), np.concatenate(tgts), windows
