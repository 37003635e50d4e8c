"""BrainMAE's training defaults and the checks of its study settings (seeds, validation grids, streaming), and
the sequences of segments the temporal encoder reads."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np

from brainpipe.errors import ConfigError
from brainpipe.models.brainmae.blocks import BrainMAEConfig

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
    "num_workers": 0,
}
NET_KEYS = tuple(f.name for f in fields(BrainMAEConfig))
#: penalties of the linear path (``linear_path="volume"``) tried on the validation segments when ``linear_alpha`` is
#: None (relative to the ROIs' variances)
LINEAR_ALPHAS = tuple(float(a) for a in np.logspace(-3, 1, 9))


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
    from brainpipe.training.streaming import streaming_settings as check

    return check(value, STREAMING_DEFAULTS, "fmri.brainmae.model.streaming")


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
    from brainpipe.models.brainmae.estimator import BrainMAE

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
