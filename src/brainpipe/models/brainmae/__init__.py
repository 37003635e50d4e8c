"""BrainMAE: masked ROI reconstruction with region-aware graph attention (re-implemented from the paper's description).

BrainMAE (Yang et al., arXiv 2406.17086) has no public code; this follows the notes in
``shared/notes/models-deep.md``. What is **confirmed** there: tokens are ROI x segment (15 s); learnable ROI
embeddings drive a "region-aware graph attention"; the loss is ``lambda * MSE(masked) + (1 - lambda) *
MSE(visible)`` with ``lambda = 0.75``; downstream uses a linear head or fine-tuning. What is **inferred** here (sizes,
the temporal encoder, the decoder, the read-outs) is marked in the docstrings.

Architecture (one segment ``x`` of ``L`` volumes x ``R`` ROIs):

* **segment encoder** (inferred): each ROI's segment (``L`` samples) -> ``d_model`` by a 2-layer MLP;
* **ROI embeddings** ``E`` (``R x d_model``): learned (default) or fixed sinusoidal positional codes (ablation);
  added to the tokens; a hidden (masked) ROI's token is a learned mask token (+ its embedding);
* **region-aware graph attention**: the ROI-to-ROI attention of each head is ``softmax(E Wq (E Wk)^T / sqrt(d_h))``,
  computed from the embeddings only (not from the data), with the diagonal removed (self-loops off; an ablation
  turns them on); the tokens' values are mixed with it. ``attention = "self"`` replaces it by plain content-based
  self-attention (ablation), ``"both"`` is the transformer variant (self-attention then graph attention per block);
* pre-LayerNorm residual blocks with an MLP; a linear-MLP **decoder** maps each ROI token back to its ``L`` samples.

Against the paper (options; ``shared/notes/models-deep.md`` section 2.8):

* **masking**: segment-wise ROI masking (all volumes of the hidden ROIs); ``mask_sampling="uniform"`` with
  ``mask_ratio=0.8`` is the paper's per-segment ratio drawn in 0-0.8, ``"fixed"`` (default) hides ``mask_ratio``
  of the ROIs in every segment;
* **loss**: ``masked_weight=0.75`` is the paper's lambda; ``masking=False`` is its "vanilla-BrainAE" ablation;
* **ablations**: ``roi_embedding="fixed"`` (PosSG-BrainMAE), ``self_loops=True`` (SG-BrainMAE(SL)),
  ``attention="self"`` (no embedding-informed attention), ``"both"`` (AG-TSE-like: self- then graph attention);
* **temporal transformer** (``temporal_encoder="transformer"``; the paper's "temporal transformer" that
  "captures rich temporal dynamics", inferred design): a subject's run is cut into sequences of ``context``
  time-ordered, non-overlapping segments; after the ROI blocks each segment's state (its mean ROI token) goes,
  with sinusoidal positional codes over the segment index and a learned [CLS] token in front, through
  ``temporal_layers`` self-attention blocks; each segment's output is added back to its ROI tokens before the
  decoder, and the [CLS] output is the sequence's representation (``features="cls"``). Masks hide the same ROIs in
  every segment of a sequence (``sequence_mask="shared"``, as evaluated: a hidden ROI is never seen at another
  time; ``"independent"``: each segment its own draw, the paper's per-segment masking). ``"none"`` (default) keeps
  the per-segment model (each segment encoded alone) for comparison;
* **read-outs**: ``features="mean"`` is a pooled (mean-token) segment representation, ``"similarity"`` the
  cosine similarity of ROI tokens, ``"cls"`` the [CLS] output of a sequence; a subject is the mean over its
  segments (sequences).

:class:`BrainMAE` is the scikit-learn-shaped wrapper: ``fit`` (masked pretraining through the shared training loop
:mod:`brainpipe.training`), ``transform`` (frozen features for a probe), ``reconstruct``, ``score``
(``1 - NMSE`` on masked ROIs), ``save``/``load`` (weights and hyperparameters, no pickle);
:func:`save_fold_models`/:func:`load_fold_models` keep one encoder per outer cross-validation fold in one file.

Modules: :mod:`~brainpipe.models.brainmae.blocks` (:class:`BrainMAEConfig`, the attention and encoder blocks, the
temporal encoder), :mod:`~brainpipe.models.brainmae.network` (:class:`BrainMAENet`, masks, the pretraining loss,
read-outs, :class:`FineTuneNet`), :mod:`~brainpipe.models.brainmae.settings` (training defaults and the checks of
the study settings), :mod:`~brainpipe.models.brainmae.estimator` (:class:`BrainMAE`) with its mixin
:mod:`~brainpipe.models.brainmae.serialise` (``model_fit`` datasets, per-fold weights files); every name is
importable from here.
"""

from brainpipe.models.brainmae.blocks import (
    FEATURES,
    Block,
    BrainMAEConfig,
    GraphAttention,
    SelfAttention,
    TemporalBlock,
    TemporalEncoder,
    sinusoidal_codes,
)
from brainpipe.models.brainmae.estimator import (
    BrainMAE,
    _gather,
    _tensor,
)
from brainpipe.models.brainmae.network import (
    BrainMAENet,
    FineTuneNet,
    masked_loss,
    nmse,
    pretrain_loss,
    random_mask,
    segment_features,
    sequence_mask,
)
from brainpipe.models.brainmae.serialise import (
    FOLDS_FORMAT,
    FORMAT,
    Serialisation,
    _is_torch_file,
    _load_blob,
    _save_blob,
    load_fold_models,
    save_fold_models,
)
from brainpipe.models.brainmae.settings import (
    LINEAR_ALPHAS,
    NET_KEYS,
    STREAMING_DEFAULTS,
    TRAIN_DEFAULTS,
    chunk_sequences,
    seeds,
    select_grid,
    split_kwargs,
    streaming_settings,
)

__all__ = [
    "Block",
    "BrainMAE",
    "BrainMAEConfig",
    "BrainMAENet",
    "FEATURES",
    "FOLDS_FORMAT",
    "FORMAT",
    "FineTuneNet",
    "GraphAttention",
    "LINEAR_ALPHAS",
    "NET_KEYS",
    "STREAMING_DEFAULTS",
    "SelfAttention",
    "Serialisation",
    "TRAIN_DEFAULTS",
    "TemporalBlock",
    "TemporalEncoder",
    "chunk_sequences",
    "load_fold_models",
    "masked_loss",
    "nmse",
    "pretrain_loss",
    "random_mask",
    "save_fold_models",
    "seeds",
    "segment_features",
    "select_grid",
    "sequence_mask",
    "sinusoidal_codes",
    "split_kwargs",
    "streaming_settings",
]
#: private helpers that were importable from the old single module (kept so)
_PRIVATE = (_gather, _is_torch_file, _load_blob, _save_blob, _tensor)
