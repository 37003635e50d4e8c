"""The keys each step of a study takes and the config layers its parameters are merged from (:data:`LAYERS`,
:func:`merged`), for :class:`brainpipe.config.Study`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def merged(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep merge of two config mappings (``override`` wins; neither is changed).

    Parameters
    ----------
    base, override : mapping or None
        The two mappings; nested mappings are merged key by key, any other value of ``override`` replaces
        ``base``'s.

    Returns
    -------
    dict
        A new, deep-copied mapping.

    Examples
    --------
    >>> merged({"bin": {"bin_width_s": 0.05, "n_blocks": 5}}, {"bin": {"bin_width_s": 0.01}})
    {'bin': {'bin_width_s': 0.01, 'n_blocks': 5}}
    """
    out = copy.deepcopy(dict(base or {}))
    for k, v in (override or {}).items():
        out[k] = (
            merged(out[k], v)
            if isinstance(v, Mapping) and isinstance(out.get(k), Mapping)
            else copy.deepcopy(v)
        )
    return out


def _pick(d: Mapping[str, Any], keys) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in d.items() if k in keys}


SPIKE_INGEST_KEYS = ("path", "format", "options", "t_start_s", "t_stop_s")
CALCIUM_INGEST_KEYS = ("path", "format", "frame_rate_hz", "options", "drop_bad_cells", "kind")
#: the fMRI dataset keys the readers take (the rules pass them; the ingest stage gives all but path/format to the reader)
FMRI_READER_KEYS = (
    "path",
    "format",
    "atlas",
    "atlas_labels",
    "participants",
    "confounds",
    "task",
    "space",
    "session",
    "repetition_time_s",
    "repetition_time_from",
    "roi_names",
    "confound_columns",
    "drop_columns",
)
FMRI_FILE_KEYS = ("atlas", "atlas_labels", "participants")
#: how a connectome study's animals are put on one clock and one set of neurons (global, or per study)
CONNECTOME_ALIGN_KEYS = ("target_rate_hz", "rate_tolerance", "match_by")
NF_SECTIONS = ("tokenizer", "model", "pretrain", "finetune", "evaluate", "bars")

#: step -> the config keys its parameters are merged from, global first (``{0}``, ``{1}``: the dataset or study,
#: then the variant); :meth:`Study.where` names the layer each value comes from
LAYERS: dict[str, tuple[str, ...]] = {
    "bin": ("spikes.bin", "spikes.datasets.{0}.bin"),
    "switching": (
        "spikes.switching_glm.model",
        "spikes.switching_glm.variants.{1}",
        "spikes.switching_glm.datasets.{0}.model",
    ),
    "fmri_clean": ("fmri.clean", "fmri.datasets.{0}.clean"),
    "brainmae": ("fmri.brainmae.model", "fmri.brainmae.variants.{1}", "fmri.brainmae.datasets.{0}.model"),
    "calcium_preprocess": ("calcium.preprocess", "calcium.datasets.{0}.preprocess"),
    "connectome": ("calcium.connectome.model", "calcium.connectome.studies.{0}.model"),
}
