"""BrainMAE on the fMRI evaluation protocol (:mod:`brainpipe.evaluate.fmri`): one encoder pretrained per outer fold,
then scored: masked-ROI reconstruction on held-out fold 0, ROI embeddings vs planted modules, and cross-validated
linear probes and fine-tuning in which test fold ``k`` only ever meets encoder ``k`` (which never saw fold ``k``).

Everything takes a ``roi_segments`` dataset and explicit parameters, and runs without snakemake:

>>> from brainpipe.evaluate.brainmae import pretrain_folds, score_encoders
>>> models = pretrain_folds(ds, {"d_model": 16, "max_epochs": 3, "device": "cpu"})  # doctest: +SKIP
>>> values = score_encoders(ds, models, mask_ratio=0.5, n_patterns=4, seed=0)  # doctest: +SKIP
"""

from brainpipe.evaluate.brainmae.pretraining import (  # noqa: F401
    __all__,  # noqa: F401
    _context,
    _LazySignal,
    _pretrain_one,
    _reconstruct,
    _streamed_fit,
    _temporal,
    by_seed,
    cross_validate_finetune,
    cross_validate_probe,
    cross_validate_probe_select,
    fold_checkpoint,
    fold_features,
    folds_to_dataset,
    log_,
    open_segments,
    over_seeds,
    pretrain_folds,
    score_encoders,
    segment_sequences,
)
