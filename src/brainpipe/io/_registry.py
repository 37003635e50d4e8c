"""The one reader registry of :mod:`brainpipe.io`, for every modality (``spikes``, ``calcium``, ``fmri``).

A reader is a function ``reader(path, <option>=..., ...)`` and one call to :func:`register` in its modality's
module (:mod:`brainpipe.io.spikes`, :mod:`brainpipe.io.calcium`, :mod:`brainpipe.io.fmri`) giving

* ``name``: the value of ``format:`` in the study config (and of the schema's enum),
* ``modality``: one of :data:`MODALITIES`,
* ``detect``: a function ``detect(path) -> bool``, "does this path look like my format?", called with an existing
  path (a file or a folder). It may take keyword options of the reader as well (e.g. ``counts_key``): the ones it
  names in its signature are passed when the caller gave them. It may raise
  :class:`~brainpipe.errors.InputError` when the path is unreadable in a way worth saying (a corrupt archive);
* ``looks_for``: a few words on what ``detect`` accepts, for the message when nothing matches.

The reader's options are its keyword parameters after the path (:attr:`Reader.options`); parameters without a
default are required (:attr:`Reader.required`). :func:`read` refuses an option the reader lacks by name
(:class:`~brainpipe.errors.ConfigError`) and a missing required one (:class:`~brainpipe.errors.InputError`).
``format="auto"`` tries the readers of the modality in registration order and takes the first whose ``detect``
says yes (so a more specific layout registers before a more general one); when none does, one line names the
path, what it is, the formats tried with what each looks for, and says to set ``format:``.

Each modality has one finishing step applied to every reader's result (:func:`register_modality`): calcium
checks the ROIs (:func:`brainpipe.io.calcium.check_cells`, option ``drop_bad_cells``), fMRI streams its runs one
at a time; spikes has none. fMRI datasets configure the options of all fMRI readers as flat keys of the dataset
(``shared_options``), so an fMRI option that belongs to another fMRI format is left out (logged) instead of
refused.

>>> from brainpipe.io import detect, formats, read
>>> formats("spikes")
('nwb', 'phy', 'trialized_npz', 'binned', 'table', 'matclust')
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainpipe._docs import fill_doc
from brainpipe.errors import ConfigError, InputError
from brainpipe.io._common import npz_shapes, short

LOG = logging.getLogger("brainpipe.io")

#: The modalities a reader can belong to, with the word used for them in messages.
MODALITIES: dict[str, str] = {"spikes": "spike", "calcium": "calcium", "fmri": "fMRI"}


def _option_names(func: Callable[..., Any], skip: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(all, required) keyword-option names of ``func`` after its first ``skip`` parameters."""
    params = list(inspect.signature(func).parameters.values())[skip:]
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if len(named) != len(params):
        raise TypeError(f"{func.__qualname__}: a reader takes named options only (no *args/**kwargs)")
    return tuple(p.name for p in named), tuple(p.name for p in named if p.default is p.empty)


@fill_doc
@dataclass(frozen=True)
class Reader:
    """One registered reader (see :func:`register`).

    Parameters
    ----------
    name : str
        The format name (``format:`` in the config).
    %(modality)s
    function : callable
        ``function(path, **options)``: a Dataset (spikes, calcium) or an iterator of per-run Datasets (fMRI).
    detect : callable
        ``detect(path, **hints) -> bool`` on an existing path.
    looks_for : str
        What ``detect`` accepts, in a few words.
    """

    name: str
    modality: str
    function: Callable[..., Any]
    detect: Callable[..., bool]
    looks_for: str

    @property
    def options(self) -> tuple[str, ...]:
        """The reader's option names: its parameters after the path, in order."""
        return _option_names(self.function, 1)[0]

    @property
    def required(self) -> tuple[str, ...]:
        """The options without a default (a dataset of this format must set them)."""
        return _option_names(self.function, 1)[1]

    def matches(self, path: Path, options: Mapping[str, Any] | None = None) -> bool:
        """Whether ``path`` looks like this format.

        Parameters
        ----------
        path : Path
            An existing file or folder.
        options : mapping, optional
            Reader options; those ``detect`` names in its signature are passed to it.

        Returns
        -------
        bool
            True when the reader's ``detect`` accepts ``path``.
        """
        hints = _option_names(self.detect, 1)[0]
        given = {k: v for k, v in (options or {}).items() if k in hints and v is not None}
        return bool(self.detect(path, **given))


@dataclass(frozen=True)
class _Modality:
    finish: Callable[..., Any] | None
    shared_options: bool

    @property
    def options(self) -> tuple[str, ...]:
        return _option_names(self.finish, 2)[0] if self.finish is not None else ()


_READERS: dict[str, dict[str, Reader]] = {m: {} for m in MODALITIES}
_MODALITY: dict[str, _Modality] = {m: _Modality(None, False) for m in MODALITIES}


def _check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; one of {', '.join(MODALITIES)}")


@fill_doc
def register(
    function: Callable[..., Any], *, name: str, modality: str, detect: Callable[..., bool], looks_for: str
) -> Callable[..., Any]:
    """Register ``function`` as the reader of format ``name`` for ``modality``.

    Parameters
    ----------
    function : callable
        ``function(path, <option>=..., ...)``; named parameters only after the path. The same function may be
        registered under several names (e.g. one array reader for ``npy``, ``csv`` and ``hdf5``).
    name : str
        The format name; unique within the modality.
    %(modality)s
    detect : callable
        ``detect(path, **hints) -> bool`` (see the module docstring). Detection tries the readers of a modality in
        registration order.
    looks_for : str
        What ``detect`` accepts, for the message when no format matches (e.g. ``"a .nwb file"``).

    Returns
    -------
    callable
        ``function`` itself, so ``register`` can wrap a definition.
    """
    _check_modality(modality)
    if name in _READERS[modality] or name == "auto":
        raise ValueError(f"{modality} format {name!r} is already registered (or reserved)")
    reader = Reader(name, modality, function, detect, looks_for)
    reader.options  # noqa: B018  (fails now, not at the first read, on a signature with *args/**kwargs)
    clash = set(reader.options) & set(_MODALITY[modality].options)
    if clash:
        raise ValueError(
            f"{function.__qualname__}: option(s) {', '.join(sorted(clash))} belong to the modality"
        )
    _READERS[modality][name] = reader
    return function


@fill_doc
def register_modality(
    modality: str, *, finish: Callable[..., Any] | None = None, shared_options: bool = False
) -> None:
    """Set the finishing step of a modality (applied to every reader's result) and how its options are shared.

    Parameters
    ----------
    %(modality)s
    finish : callable, optional
        ``finish(path, result, <option>=...) -> result``; its options (after ``path`` and ``result``) are taken
        by :func:`read` for every format of the modality.
    shared_options : bool
        True when the datasets of this modality give the options of all its readers as one flat set (fMRI): an
        option of another reader of the modality is then left out (logged) rather than refused.

    Raises
    ------
    ValueError
        A finishing option has the name of a reader option of the modality.
    """
    _check_modality(modality)
    mod = _Modality(finish, shared_options)
    clash = {o for r in _READERS[modality].values() for o in r.options} & set(mod.options)
    if clash:
        raise ValueError(f"{modality}: finishing option(s) {', '.join(sorted(clash))} are reader options")
    _MODALITY[modality] = mod


def readers(modality: str | None = None) -> tuple[Reader, ...]:
    """The registered readers, in registration order.

    Parameters
    ----------
    modality : str, optional
        Only this modality's readers (default: all of them).

    Returns
    -------
    tuple of Reader
        Each with its format name, modality, function, detector and what it looks for.
    """
    if modality is not None:
        _check_modality(modality)
    mods = MODALITIES if modality is None else (modality,)
    return tuple(r for m in mods for r in _READERS[m].values())


@fill_doc
def formats(modality: str) -> tuple[str, ...]:
    """The format names of ``modality`` in registration order (without ``"auto"``).

    Parameters
    ----------
    %(modality)s

    Returns
    -------
    tuple of str
        The names a dataset's ``format:`` may take besides ``"auto"``.

    Examples
    --------
    >>> from brainpipe.io import formats
    >>> formats("fmri")
    ('fmriprep', 'nifti', 'table')
    """
    _check_modality(modality)
    return tuple(_READERS[modality])


@fill_doc
def get_reader(path: str | os.PathLike, modality: str, format: str) -> Reader:
    """The reader of ``format`` (a registered name; not ``"auto"``).

    Parameters
    ----------
    path : str or PathLike
        The data path (named in the message).
    %(modality)s
    format : str
        A format name of ``modality``.

    Returns
    -------
    Reader
        The registered reader.

    Raises
    ------
    brainpipe.errors.InputError
        ``format`` is not a format of ``modality`` (one line naming the path and the formats there are).
    """
    _check_modality(modality)
    if format not in _READERS[modality]:
        raise InputError(
            f"{path}: unknown {MODALITIES[modality]} data format {format!r}; set 'format:' for this dataset to one "
            f"of auto, {', '.join(formats(modality))}"
        )
    return _READERS[modality][format]


def _describe(p: Path) -> str:
    """What a path is, in a few words, for the message when no format matches."""
    if p.is_dir():
        names = sorted(c.name + ("/" if c.is_dir() else "") for c in p.iterdir())
        return f"a folder holding {short(names)}" if names else "an empty folder"
    if p.name.lower().endswith(".npz"):
        try:
            found = ", ".join(f"{k}{tuple(s)}" for k, s in npz_shapes(p).items()) or "no arrays"
        except InputError:
            found = "no readable arrays"
        return f"an .npz archive with {found}"
    suffix = "".join(p.suffixes[-2:]) if p.name.lower().endswith(".gz") else p.suffix
    return f"a '{suffix}' file" if suffix else "a file without a suffix"


@fill_doc
def detect(path: str | os.PathLike, modality: str, **options: Any) -> str:
    """The format of ``path``: the first reader of ``modality`` (in registration order) whose ``detect`` says yes.

    Parameters
    ----------
    path : str or PathLike
        A file or folder.
    %(modality)s
    **options
        Reader options; those a detector names (e.g. ``counts_key`` of the trial-array reader) are passed to it.

    Returns
    -------
    str
        The format name.

    Raises
    ------
    InputError
        One line: the path does not exist, or it matches no format (naming the formats tried and what each looks
        for, and saying to set ``format:``).
    """
    _check_modality(modality)
    p = Path(path)
    word = MODALITIES[modality]
    if not p.exists():
        raise InputError(
            f"{p}: {word} data path does not exist; check the path (relative paths are taken from the working "
            "directory)"
        )
    tried = readers(modality)
    for reader in tried:
        if reader.matches(p, options):
            return reader.name
    names = ", ".join(r.name for r in tried)
    looks = "; ".join(f"{r.name}: {r.looks_for}" for r in tried)
    raise InputError(
        f"{p}: is {_describe(p)}, which matches none of the {word} formats tried ({looks}); set 'format:' for this "
        f"dataset to one of {names}, or give data in one of these layouts"
    )


def _split_options(path, reader: Reader, options: Mapping[str, Any]) -> tuple[dict, dict]:
    """(reader options, finishing options); unknown ones refused by name, other readers' ones dropped (shared)."""
    mod = _MODALITY[reader.modality]
    finish = {k: v for k, v in options.items() if k in mod.options}
    own = {k: v for k, v in options.items() if k in reader.options}
    rest = sorted(set(options) - set(finish) - set(own))
    if rest and mod.shared_options:
        others = {o for r in readers(reader.modality) for o in r.options}
        skipped = [k for k in rest if k in others]
        if skipped:
            LOG.info(
                "%s: option(s) %s do not apply to format '%s'; left out",
                path,
                ", ".join(skipped),
                reader.name,
            )
        rest = [k for k in rest if k not in others]
    if rest:
        allowed = ", ".join(reader.options + mod.options) or "none"
        raise ConfigError(
            f"{MODALITIES[reader.modality]} reader '{reader.name}' ({path}) has no option(s) {', '.join(rest)}; "
            f"its options: {allowed}"
        )
    missing = [k for k in reader.required if own.get(k) is None]
    if missing:
        raise InputError(
            f"{path}: format '{reader.name}' needs {', '.join(missing)}; set {', '.join(missing)} for this dataset "
            f"(see brainpipe.io.{reader.function.__name__})"
        )
    return own, finish


@fill_doc
def read(path: str | os.PathLike, modality: str, format: str = "auto", **options: Any) -> Any:
    """Read ``path`` with the reader of ``format`` (``"auto"``: :func:`detect`), then the modality's finishing step.

    Parameters
    ----------
    path : str or PathLike
        The data (a file or a folder).
    %(modality)s
    format : str
        ``"auto"`` or a format name of ``modality`` (:func:`formats`).
    **options
        The reader's options (:attr:`Reader.options`) and the modality's (calcium: ``drop_bad_cells``).

    Returns
    -------
    xarray.Dataset or iterator of xarray.Dataset
        A ``spike_times`` or ``calcium_traces`` dataset (without provenance), or for fMRI an iterator of
        ``roi_timeseries`` datasets, one run at a time.

    %(read_raises)s
    """
    _check_modality(modality)
    name = detect(path, modality, **options) if format == "auto" else format
    reader = get_reader(path, modality, name)
    own, finish_opts = _split_options(path, reader, options)
    result = reader.function(path, **own)
    finish = _MODALITY[modality].finish
    return finish(path, result, **finish_opts) if finish is not None else result


def has_suffix(*suffixes: str) -> Callable[[Path], bool]:
    """A detector: a file whose name ends with one of ``suffixes`` (case-insensitive, e.g. ``".nii.gz"``).

    Parameters
    ----------
    *suffixes : str
        Name endings, with the dot.

    Returns
    -------
    callable
        ``detect(path) -> bool``.
    """
    ends = tuple(s.lower() for s in suffixes)

    def detect(path: Path) -> bool:
        return path.is_file() and path.name.lower().endswith(ends)

    detect.__name__ = f"has_suffix{ends}"
    return detect
