"""The one training loop for the torch models, and the checkpoint machinery every iterative fit shares.

>>> from brainpipe.training import TrainConfig, train
>>> result = train(model,  # doctest: +SKIP
...                (x_train, y_train), lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(),
...                TrainConfig(max_epochs=20, seed=0), val_data=(x_val, y_val), checkpoint="ckpt/run.pt")

See :mod:`brainpipe.training.loop` (the loop), :mod:`brainpipe.training.checkpoint` (atomic, pickle-free,
fingerprinted checkpoints; SIGTERM -> checkpoint -> :class:`Preempted`) and :mod:`brainpipe.training.device`.
"""

from brainpipe.training.checkpoint import (
    Checkpointer,
    Preempted,
    checkpoint_every_s,
    fingerprint_of,
    load_checkpoint,
    save_checkpoint,
    stage_fingerprint,
)
from brainpipe.training.device import autocast, resolve_device, resolve_precision, to_device
from brainpipe.training.loop import TrainConfig, TrainResult, train

__all__ = [
    "Checkpointer",
    "Preempted",
    "TrainConfig",
    "TrainResult",
    "autocast",
    "checkpoint_every_s",
    "stage_fingerprint",
    "fingerprint_of",
    "load_checkpoint",
    "resolve_device",
    "resolve_precision",
    "save_checkpoint",
    "to_device",
    "train",
]
