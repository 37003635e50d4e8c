"""Parameter texts shared by many docstrings, written once and filled in (nilearn's ``_utils/docs.py``).

A docstring names a shared text with a ``%(name)s`` placeholder on a line of its own, at the indentation of its
``Parameters`` entries; :func:`fill_doc` replaces it with ``DOCDICT[name]``, re-indented to fit:

>>> from brainpipe._docs import fill_doc
>>> @fill_doc
... def f(seed=0):
...     '''Do nothing.
...
...     Parameters
...     ----------
...     %(seed)s
...     '''
>>> print(f.__doc__.splitlines()[4])
    seed : int

A text may also be a whole section (``spike_dataset_parameters``: the ``Parameters`` title, its underline and
the entries of the Study methods that take a spike dataset), so that methods of one kind state their common
section once. Only ``%(name)s`` placeholders are replaced, so other ``%`` signs need no escaping.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", bound=Callable)

#: name -> "<parameter> : <type>" line, then its description indented by 4 spaces (no base indentation); an entry
#: may hold several parameters in a row (``train_config``), or be a whole section: its title and underline, then
#: its entries (``*_parameters``, ``*_returns``; a Returns entry is its type alone)
DOCDICT: dict[str, str] = {}

DOCDICT["counts"] = """counts : xarray.Dataset
    A ``spike_counts`` dataset (:data:`brainpipe.data.CONTRACTS`): ``counts`` (time x unit), the ``split``
    flag per bin, and optionally ``behaviour`` (time x behaviour_var); ``bin_width_s`` in its attrs."""

DOCDICT["counts_ds"] = """ds : xarray.Dataset
    A ``spike_counts`` dataset (:data:`brainpipe.data.CONTRACTS`): ``counts`` (time x unit), the ``split``
    flag per bin, and optionally ``behaviour`` (time x behaviour_var); ``bin_width_s`` in its attrs."""

DOCDICT["spike_dataset"] = """dataset : str
    A spike dataset (a key of ``spikes.datasets``)."""

DOCDICT["fmri_dataset"] = """dataset : str
    An fMRI dataset (a key of ``fmri.datasets``)."""

DOCDICT["calcium_dataset"] = """dataset : str
    A calcium dataset (a key of ``calcium.datasets``)."""

DOCDICT["connectome_study"] = """study : str
    A connectome study (a key of ``calcium.connectome.studies``)."""

DOCDICT["neuroformer_dataset"] = """dataset : str
    A spike dataset with a Neuroformer (a key of ``neuroformer.datasets``)."""

DOCDICT["switching_variant"] = """variant : str
    A switching-GLM variant (a key of ``spikes.switching_glm.variants``)."""

DOCDICT["brainmae_variant"] = """variant : str
    A BrainMAE variant (a key of ``fmri.brainmae.variants``)."""


# whole Parameters sections: those of the Study step methods, one per kind of step, and of other families
def _parameters(*names: str) -> str:
    return "\n".join(["Parameters", "----------", *(DOCDICT[name] for name in names)])


DOCDICT["spike_dataset_parameters"] = _parameters("spike_dataset")
DOCDICT["switching_parameters"] = _parameters("spike_dataset", "switching_variant")
DOCDICT["fmri_dataset_parameters"] = _parameters("fmri_dataset")
DOCDICT["brainmae_parameters"] = _parameters("fmri_dataset", "brainmae_variant")
DOCDICT["calcium_dataset_parameters"] = _parameters("calcium_dataset")
DOCDICT["connectome_study_parameters"] = _parameters("connectome_study")
DOCDICT["neuroformer_dataset_parameters"] = _parameters("neuroformer_dataset")
#: that of a function of one spike-counts dataset
DOCDICT["counts_parameters"] = _parameters("counts")

#: whole Returns sections that several Study methods share
DOCDICT["datasets_returns"] = """Returns
-------
dict
    Name -> the dataset's config entry."""

DOCDICT["simulate_returns"] = """Returns
-------
dict
    ``generator``, ``seed`` and ``params`` of the dataset's simulator."""

DOCDICT["variants_returns"] = """Returns
-------
list of str
    The variants, in order."""

DOCDICT["split"] = """split : {"train", "validation", "test"}
    Which bins (or windows) to use, by the dataset's ``split`` flags (:data:`brainpipe.data.SPLIT_FLAGS`)."""

DOCDICT["seed"] = """seed : int
    Seed of the random number generator; the same seed gives the same result."""

DOCDICT["device"] = """device : str or torch.device
    Where to compute: ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``."""

DOCDICT["path"] = """path : str or os.PathLike
    A brainpipe file: a ``.nc`` netCDF file or a ``.zarr`` store."""

DOCDICT["animals"] = """animals : sequence of AnimalTraces
    The recordings (one frame rate)."""

DOCDICT["affinity_name"] = """affinity : str
    A name in :data:`~brainpipe.preprocess.affinity.AFFINITIES`."""

DOCDICT["windows_s"] = """window_s, stride_s : float
    Window length and stride in seconds."""

DOCDICT["metrics_m"] = """m : xarray.Dataset
    A ``metrics`` file (:data:`brainpipe.data.CONTRACTS`): ``value`` per ``metric``; optionally ``bar``, ``bar_op``,
    ``passed`` and ``description``."""

DOCDICT["h5py_failure"] = """path : str or os.PathLike
    The HDF5 file h5py could not open or read.
err : BaseException
    What h5py (or a library on top of it) raised."""

DOCDICT["source"] = """source : str
    What the data is called in error messages (e.g. its file name), so that an error names it."""

DOCDICT["bin_width_s"] = """bin_width_s : float
    Width of a time bin, in seconds."""

DOCDICT["checkpoint"] = """checkpoint : str or os.PathLike, optional
    A checkpoint file: written as the fit goes (atomically, without pickle) and, when a file written with the same
    settings and ``fingerprint`` is there, resumed from. None (the default) checkpoints nothing."""

DOCDICT["fingerprint"] = """fingerprint : dict, optional
    What else identifies the run (e.g. the inputs' hashes); a checkpoint written with another fingerprint is not
    resumed."""

DOCDICT["log"] = """log : logging.Logger, optional
    Where progress is logged (the module's logger when None)."""

DOCDICT["provenance"] = """provenance : mapping, optional
    The provenance record stored in the file's ``provenance`` attr (:func:`brainpipe.data.make_provenance`: stage,
    version, params, inputs with their sha256, seed, device)."""

DOCDICT["kind"] = """kind : str
    The name of a data contract (a key of :data:`brainpipe.data.CONTRACTS`, e.g. ``"spike_counts"``)."""

#: the settings of the one training loop (:class:`brainpipe.training.TrainConfig`), which the torch models also take
DOCDICT["train_config"] = """max_epochs : int
    Most passes over the training data.
max_steps : int or None
    Most optimizer steps in all (None: no limit but ``max_epochs``).
batch_size : int
    Examples per mini-batch.
lr : float
    AdamW learning rate (after the warm-up).
weight_decay : float
    AdamW weight decay.
warmup_steps : int
    Steps of linear learning-rate warm-up.
grad_clip : float or None
    Largest gradient norm (None: no clipping).
patience : int or None
    Epochs without validation improvement before stopping early (None: no early stopping).
min_delta : float
    How much the validation loss must fall to count as an improvement.
seed : int
    Seed of the random number generator; the same seed gives the same result.
device : str or torch.device
    Where to compute: ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``.
precision : {"auto", "fp32", "bf16"}
    ``"auto"``: bf16 autocast on a CUDA device that supports it, else fp32.
checkpoint_every_s : float
    Seconds between periodic checkpoints.
progress : bool
    Show a progress bar (on a terminal).
num_workers : int
    DataLoader worker processes that read and collate batches ahead of the training step (0: in the training
    process). The batch order is drawn in the training process, so the result does not depend on it; it pays for
    streamed (zarr) training sets, whose reads and decoding then overlap the step."""

DOCDICT["fit_ds"] = """ds : xarray.Dataset
    A ``model_fit`` dataset written by :meth:`to_dataset`."""

#: the Parameters sections of a method of one spike-counts dataset (SpikeTokenizer.fit/transform), and of one of
#: its splits (Neuroformer.predict_behaviour/token_loss)
DOCDICT["counts_source_parameters"] = _parameters("counts", "source")
DOCDICT["counts_split_source_parameters"] = _parameters("counts", "split", "source")

#: segments and the ROIs hidden in each (BrainMAE.reconstruct/score)
DOCDICT["segments_mask"] = """X : array-like
    (segment, time, roi) segments.
mask : numpy.ndarray
    (segment, roi) bool: True = hidden."""

# -- the readers (brainpipe.io) ------------------------------------------------------------------------------------
DOCDICT["study_schema"] = """schema : mapping, optional
    The merged study schema (default: :func:`brainpipe.config.load_schema`)."""
DOCDICT["study_schema_parameters"] = _parameters("study_schema")

DOCDICT["reference_file_parameters"] = """Parameters
----------
path : str or pathlib.Path, optional
    The file (default: :func:`brainpipe.config._reference.reference_path`)."""

DOCDICT["png_returns"] = """Returns
-------
bytes
    PNG."""

DOCDICT["window_counts"] = """y : numpy.ndarray
    (time, unit) spike counts.
starts : numpy.ndarray
    (window,) first bin of each current window.
window_bins : int
    Bins of a current window.
past_bins : int
    Bins of a past window."""

DOCDICT["signed_centre"] = """signed : bool, default True
    Score pairs by ``M`` itself (else by ``|M - centre|``).
centre : float, default 0.0
    The no-connection value of ``M``."""

DOCDICT["counts_split_arrays"] = """counts : numpy.ndarray
    (time, unit) spike counts.
split : numpy.ndarray
    (time,) split flag of each bin."""

DOCDICT["connectivity_matrices"] = """M : numpy.ndarray
    (post, pre) connectivity scores.
connected : numpy.ndarray
    (post, pre) planted connections (bool or 0/1)."""

DOCDICT["modality"] = """modality : {"spikes", "calcium", "fmri"}
    A data modality (a key of :data:`brainpipe.io.MODALITIES`)."""

DOCDICT["frame_rate_hz"] = """frame_rate_hz : float, optional
    The frame rate in Hz (None: from the source, e.g. its JSON sidecar; a source without one is an error)."""

DOCDICT["atlas"] = """atlas : str or os.PathLike
    A 3D labels atlas image (one integer label per voxel, 0 = background) on the grid of the bold images.
atlas_labels : str or os.PathLike, optional
    A TSV/CSV with columns ``index`` and ``name`` naming the atlas labels (every listed label must have voxels);
    None: every non-zero label, named ``roi-<k>``."""

DOCDICT["participants"] = """participants : str or os.PathLike, optional
    A ``participants.tsv``; each run gets its subject's row (default: ``participants.tsv`` at the dataset root,
    where BIDS puts it)."""

DOCDICT["participant"] = """participant : mapping, optional
    The subject's row of ``participants.tsv`` (column -> value), stored with the run."""

DOCDICT["repetition_time_s"] = """repetition_time_s : float, optional
    The TR in seconds, for runs whose JSON sidecar (``RepetitionTime``) gives none (a NIfTI run with neither takes
    its header's time step; a table with neither is an error)."""

DOCDICT["repetition_time_from"] = """repetition_time_from : {"check", "sidecar", "config"}
    When both a sidecar and ``repetition_time_s`` give a TR: they must agree (``"check"``: else an error naming
    both), or the one named wins."""

DOCDICT["table_columns"] = """roi_names : sequence of str, optional
    Names of the table's columns, one per column (None: the CSV/TSV header; ``roi-<k>`` for ``.1D`` and ``.npy``).
confound_columns : sequence of str
    Columns moved into ``confounds`` (not ROIs).
drop_columns : sequence of str
    Columns ignored."""

DOCDICT["spike_times_returns"] = """Returns
-------
xarray.Dataset
    A ``spike_times`` dataset (:data:`brainpipe.data.CONTRACTS`): ``spike_time`` and ``spike_unit`` per spike and
    the ``unit`` labels; ``t_start_s``, ``t_stop_s``, ``source``, ``format`` and ``observed`` in its attrs."""

DOCDICT["calcium_traces_returns"] = """Returns
-------
xarray.Dataset
    A ``calcium_traces`` dataset (:data:`brainpipe.data.CONTRACTS`): ``fluorescence`` (time x cell), with the
    frame rate and source in its attrs."""

DOCDICT["roi_run_returns"] = """Returns
-------
xarray.Dataset
    One run as a ``roi_timeseries`` dataset (:data:`brainpipe.data.CONTRACTS`): ``signal`` (time x roi), its TR
    and BIDS entities in the attrs."""

DOCDICT["roi_runs_yields"] = """Yields
------
xarray.Dataset
    Each run as a ``roi_timeseries`` dataset (:data:`brainpipe.data.CONTRACTS`), one in memory at a time."""

DOCDICT["calcium_finish"] = """path : str or os.PathLike
    The source (named in the message).
ds : xarray.Dataset
    A reader's ``calcium_traces`` dataset."""

#: the errors of brainpipe.io.read and of its per-modality forms (read_spikes, read_calcium, iter_runs)
DOCDICT["read_raises"] = """Raises
------
brainpipe.errors.InputError
    The format is unknown or cannot be detected, a required option is missing, or the reader (or the modality's
    finishing step) refuses the data: one line naming the file.
brainpipe.errors.ConfigError
    An option the reader does not take (named)."""

DOCDICT["reader_raises"] = """Raises
------
brainpipe.errors.InputError
    The source is missing, damaged or not of this format, or holds invalid data (one line naming the file, what
    is wrong and what to do)."""

# -- the report (brainpipe.report) ---------------------------------------------------------------------------------
#: what build_report and write_report take after the page path
DOCDICT["report_page"] = """branches : mapping
    Branch name -> named file lists, e.g. ``{"spikes": {"metrics": [...], "fits": [...], "counts": [...]},
    "fmri": {...}}`` (the report rule's inputs ``<branch>__<key>``; :func:`brainpipe.layout.report_inputs`).
title : str
    Page title.
benchmarks_dir : path-like, optional
    Folder of Snakemake benchmark TSVs (run times in the provenance).
config : mapping, optional
    Study configuration, shown as YAML in the provenance.
partial : Partial, optional
    After a run in which jobs failed: what it did not finish (a banner, the failed panel, the missing models)."""

_PLACEHOLDER = re.compile(r"^([ \t]*)%\((\w+)\)s[ \t]*$", re.MULTILINE)


def _indent(text: str, indent: str) -> str:
    return "\n".join(indent + line if line else line for line in text.splitlines())


def fill_doc(obj: T) -> T:
    """Fill the ``%(name)s`` placeholders of a docstring with the shared texts of :data:`DOCDICT`.

    Each placeholder stands alone on its line; every line of the text gets that line's indentation.

    Parameters
    ----------
    obj : callable or type
        A function, method or class whose ``__doc__`` has placeholders.

    Returns
    -------
    callable or type
        ``obj`` itself, its docstring filled in.

    Raises
    ------
    KeyError
        A placeholder names no text of :data:`DOCDICT` (the message names the object and the placeholder).
    """
    doc = obj.__doc__
    if not doc:
        return obj

    def fill(m: re.Match) -> str:
        indent, name = m.group(1), m.group(2)
        if name not in DOCDICT:
            raise KeyError(
                f"{getattr(obj, '__qualname__', obj)}: no shared docstring text {name!r} in DOCDICT"
            )
        return _indent(DOCDICT[name], indent)

    obj.__doc__ = _PLACEHOLDER.sub(fill, doc)
    return obj
