"""BrainMAE on the fMRI evaluation protocol (:mod:`brainpipe.evaluate.fmri`): one encoder pretrained per outer fold,
then scored: masked-ROI reconstruction on held-out fold 0, ROI embeddings vs planted modules, and cross-validated
linear probes and fine-tuning in which test fold ``k`` only ever meets encoder ``k`` (which never saw fold ``k``).

Everything takes a ``roi_segments`` dataset and explicit parameters, and runs without snakemake:

>>> from brainpipe.evaluate.brainmae import pretrain_folds, score_encoders
>>> models = pretrain_folds(ds, {"d_model": 16, "max_epochs": 3, "device": "cpu"})  # doctest: +SKIP
>>> values = score_encoders(ds, models, mask_ratio=0.5, n_patterns=4, seed=0)  # doctest: +SKIP

Modules: :mod:`~brainpipe.evaluate.brainmae.pretraining` (sequences, per-fold pretraining, seeds, the encoders'
dataset), :mod:`~brainpipe.evaluate.brainmae.streaming` (streamed pretraining),
:mod:`~brainpipe.evaluate.brainmae.probes` (probes and fine-tuning) and :mod:`~brainpipe.evaluate.brainmae.scoring` (:func:`score_encoders`); every name is
importable from here.
"""

from brainpipe.evaluate.brainmae.pretraining import (
    _context,
    _pretrain_one,
    _reconstruct,
    _temporal,
    by_seed,
    fold_checkpoint,
    folds_to_dataset,
    log_,
    over_seeds,
    pretrain_folds,
    segment_sequences,
)
from brainpipe.evaluate.brainmae.probes import (
    cross_validate_finetune,
    cross_validate_probe,
    cross_validate_probe_select,
    fold_features,
)
from brainpipe.evaluate.brainmae.scoring import score_encoders
from brainpipe.evaluate.brainmae.streaming import _LazySignal, _streamed_fit, open_segments

__all__ = [
    "by_seed",
    "cross_validate_finetune",
    "over_seeds",
    "cross_validate_probe",
    "cross_validate_probe_select",
    "fold_checkpoint",
    "fold_features",
    "folds_to_dataset",
    "open_segments",
    "pretrain_folds",
    "score_encoders",
    "segment_sequences",
]
#: private helpers that were importable from the old single module (kept so)
_PRIVATE = (_context, _pretrain_one, _reconstruct, _temporal, _LazySignal, _streamed_fit, log_)
