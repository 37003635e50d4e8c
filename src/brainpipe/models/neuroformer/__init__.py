"""Neuroformer: multimodal generative pretraining over spike tokens, behaviour decoding, attention connectivity.

After Antoniades et al. (ICLR 2024), re-implemented from the paper and the notes in ``shared/notes/models-deep.md``,
with the reference's flaws fixed: time-block splits (a window and its past window never cross a split or trial
boundary), checkpoints chosen on the validation split, the behaviour head pooling real tokens only (not PAD), a
past window that is never empty (a start token, so attention never sees only masked keys), the vocabulary stored
with the weights and checked on load, and weights saved without pickle (as a ``model_fit`` dataset).

Tokenisation (:class:`SpikeTokenizer`), from a ``spike_counts`` dataset (counts at a fine bin):

1. resolution: ``dt_s`` must be an integer multiple ``k`` of the counts' ``bin_width_s`` (else a ConfigError);
   a spike's dt token is its bin's offset inside its window divided by ``k`` (rounded down): rebinning by ``k``;
   ``window_s`` and ``past_window_s`` must be multiples of ``dt_s``;
2. windows: current windows of ``window_s`` on a grid of ``stride_s`` inside each contiguous segment (same split,
   same trial, no gap; :func:`brainpipe.preprocess.spikes.segments`), each preceded by a past window of
   ``past_window_s`` inside the same segment (windows whose past would cross a boundary are not made);
3. current sequence: ``[SOS] + spikes + [EOS]`` padded with ``PAD`` to ``block_size``; spikes ordered by time bin,
   then neuron index; a count ``c > 1`` in a bin gives ``c`` repeated tokens. Each token has a neuron-ID token
   (``0..n_units-1``; SOS = n_units, EOS = n_units + 1, PAD = n_units + 2) and a dt token (``0..n_dt-1``; the
   specials have their own dt tokens ``n_dt`` (SOS), ``n_dt + 1`` (EOS), ``n_dt + 2`` (PAD));
4. truncation: a window with more than ``block_size - 2`` spikes keeps its *earliest* ``block_size - 2`` spikes
   (the prefix a generator would produce) and has no EOS; the number of such windows and of dropped spikes are
   counted (``stats_``). The past sequence is ``[SOS] + spikes`` padded to ``past_block_size``; when too long, its
   *latest* spikes are kept (those nearest the current window) and the rest counted;
5. modalities: each named modality is a list of variables of the counts file (``behaviour`` or ``stimulus``),
   sampled at every fine bin of the past and current windows; the decoding target is one variable: the mean
   over the current window (regression) or its value at the window's last bin (classification).

Model (:class:`NeuroformerNet`): token + dt + position embeddings; ``n_past_layers`` cross-attention blocks to the
past-window tokens; one cross-attention block per modality (each modality through a small MLP encoder with a
learned time embedding); ``n_layers`` causal self-attention blocks; heads for the next ID and the next dt; a
behaviour head on the mean of the real (non-PAD) tokens (``readout``: or the last one, or the mean with the past
window's mean spike embedding beside it); optional contrastive (InfoNCE) alignment between the
pooled neural embedding and a pooled modality embedding. Attention is ``F.scaled_dot_product_attention`` (explicit
softmax only when attention maps are asked for, for connectivity).

Modules: :mod:`~brainpipe.models.neuroformer.tokenizer` (:class:`SpikeTokenizer`, :class:`Windows`,
:func:`align_modality`), :mod:`~brainpipe.models.neuroformer.network` (:class:`NeuroformerNet`, its attention
blocks and losses), :mod:`~brainpipe.models.neuroformer.estimator` (:class:`Neuroformer`: fitting, decoding,
scoring) with its mixins :mod:`~brainpipe.models.neuroformer.readouts` (connectivity; its interventional read-outs in
:mod:`~brainpipe.models.neuroformer.interventions`),
:mod:`~brainpipe.models.neuroformer.generation` (sampling), :mod:`~brainpipe.models.neuroformer.probe` (the
behaviour head's linear probe) and :mod:`~brainpipe.models.neuroformer.serialise` (``model_fit`` datasets); every public name is importable from here.
"""

from brainpipe.models.neuroformer.estimator import FINETUNE_MODES, MODEL_KEYS, Neuroformer, r2_score
from brainpipe.models.neuroformer.interventions import (
    LAG_AGGREGATES,
    aggregate_lags,
    expected_counts,
    insert_past_spike,
    lag_effects,
    remove_past_unit,
)
from brainpipe.models.neuroformer.network import (
    READOUTS,
    Attention,
    Block,
    NeuroformerNet,
    behaviour_head,
    behaviour_loss,
    filter_logits,
    pretrain_loss,
    split_batch,
)
from brainpipe.models.neuroformer.tokenizer import (
    MODALITY_SOURCES,
    N_SPECIAL,
    SpikeTokenizer,
    Windows,
    align_modality,
    label_subset,
)

__all__ = [
    "MODALITY_SOURCES",
    "FINETUNE_MODES",
    "LAG_AGGREGATES",
    "MODEL_KEYS",
    "N_SPECIAL",
    "READOUTS",
    "Attention",
    "Block",
    "Neuroformer",
    "NeuroformerNet",
    "SpikeTokenizer",
    "Windows",
    "aggregate_lags",
    "align_modality",
    "behaviour_head",
    "behaviour_loss",
    "expected_counts",
    "filter_logits",
    "insert_past_spike",
    "label_subset",
    "lag_effects",
    "pretrain_loss",
    "r2_score",
    "remove_past_unit",
    "split_batch",
]
