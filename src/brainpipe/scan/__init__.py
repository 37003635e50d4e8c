"""Find the datasets in a user's folders and write a commented study file (``brainpipe init``).

:func:`scan` walks the given folders and files. A path is a dataset when a reader of the registry
(:func:`brainpipe.io.readers`) detects it and a look inside agrees (a folder detected as a suite2p plane must hold
``F.npy``; a ``.csv`` claimed by the spike, calcium and fMRI readers is decided by its header: ``unit,time`` is a
spike table, ROI names or a ``RepetitionTime`` sidecar an fMRI ROI table, a ``frame_rate_hz`` sidecar calcium
traces; a ``.nwb`` file is a spike dataset when it holds Units and a calcium dataset when it holds ophys traces,
possibly both). Otherwise a folder is walked into. Hidden files, documentation (README, LICENSE, ``.md``, text)
and files no reader claims are skipped and listed.

What the files say is read cheaply: headers (``.npy``/``.npz``/NIfTI/HDF5 shapes, ``params.py``, JSON sidecars,
``participants.tsv``), and for spike data up to :data:`FULL_READ_BYTES` the reader itself (units, duration,
behaviour and per-trial variables are then exactly what the pipeline will see). A reader registered without a
look-inside here is still found: its ``detect`` decides, and a small file is read through the registry.

:func:`study_yaml` writes the study: each dataset with what was read as a comment, the models that fit the data
enabled (spikes: Poisson GLM, switching GLM, and Neuroformer when there is a behaviour or trial variable to
decode; fMRI: BrainMAE, with ``classification``/``regression`` from ``participants.tsv``; calcium: preprocessing
and a connectome study per folder of animals). What could not be determined is a commented line
``# <key>: <placeholder>  # could not determine: <what to look at>``; a value the study cannot run without is
never made up (:attr:`FoundDataset.missing` lists those, and :func:`check_study` says whether the study is
complete).

>>> from brainpipe.scan import scan, study_yaml
>>> found = scan(["resources/"])  # doctest: +SKIP
>>> print(study_yaml(found, name="my-study"))  # doctest: +SKIP
"""

from __future__ import annotations

from brainpipe.scan._found import FULL_READ_BYTES, NAME_PATTERN, FoundDataset, Question, Scan
from brainpipe.scan._study import check_study, study_yaml
from brainpipe.scan._walk import SNIFFERS, scan
from brainpipe.scan._walk import _schema_has as _schema_has  # the schema lookup the init tests share

__all__ = [
    "FULL_READ_BYTES",
    "NAME_PATTERN",
    "SNIFFERS",
    "FoundDataset",
    "Question",
    "Scan",
    "check_study",
    "scan",
    "study_yaml",
]
