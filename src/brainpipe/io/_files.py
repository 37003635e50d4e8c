"""Shared helpers of the readers: one-line errors, files and folders that must exist, ``.npy``/``.npz`` read through
their headers.

Part of :mod:`brainpipe.io._common`, which re-exports its public names.
"""

from __future__ import annotations

import io
import logging
import os
import tokenize
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brainpipe.errors import InputError

LOG = logging.getLogger("brainpipe.io.spikes")


def fail(path: str | os.PathLike, what: str, todo: str) -> InputError:
    """An :class:`InputError` reading ``"<path>: <what>; <todo>"`` (one line)."""
    return InputError(f"{path}: {what}; {todo}")


def _existing(path: str | os.PathLike, kind: str) -> Path:
    """``path`` as a Path, or a one-line :class:`InputError` when nothing is there."""
    p = Path(path)
    if not p.exists():
        raise fail(
            p,
            f"{kind} does not exist",
            "check the path (relative paths are taken from the working directory)",
        )
    return p


def require_file(path: str | os.PathLike, kind: str, *, allow_empty: bool = False) -> Path:
    """``path`` as a Path, or a one-line :class:`InputError`: it does not exist, is a folder, or is empty.

    Parameters
    ----------
    path : str or PathLike
        The file.
    kind : str
        What the file is, in a few words (``"spike table"``), for the message.
    allow_empty : bool
        Accept a zero-byte file.

    Returns
    -------
    Path
        ``path``, a file.
    """
    p = _existing(path, kind)
    if p.is_dir():
        raise fail(p, f"is a folder where the {kind} (a file) is expected", "give the file itself")
    if not allow_empty and p.stat().st_size == 0:
        raise fail(
            p, f"is empty (0 bytes), so the {kind} was not written completely", "export or copy it again"
        )
    return p


def require_dir(path: str | os.PathLike, kind: str, holds: str = "spike_times.npy") -> Path:
    """``path`` as a Path, or a one-line :class:`InputError`: it does not exist or is a file.

    Parameters
    ----------
    path : str or PathLike
        The folder.
    kind : str
        What the folder is (``"phy folder"``), for the message.
    holds : str
        A file the folder should hold, named in the message when ``path`` is a file.

    Returns
    -------
    Path
        ``path``, a folder.
    """
    p = _existing(path, kind)
    if not p.is_dir():
        raise fail(
            p, f"is a file where the {kind} (a folder) is expected", f"give the folder that holds {holds}"
        )
    return p


def oneline(err: BaseException, n: int = 160) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= n else text[: n - 3] + "..."


_NPY_MAGIC = b"\x93NUMPY"
#: What numpy raises on a damaged .npy header (it parses the header dict as Python text).
_NPY_HEADER_ERRORS = (ValueError, TypeError, SyntaxError, tokenize.TokenError)


def _npy_header(fh, where: str, size: int) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran_order, data bytes needed) from the header of a ``.npy`` stream of ``size`` bytes.

    Raises a one-line :class:`InputError` naming ``where``: not a ``.npy`` (no magic string), a header cut short,
    an unreadable header, Python objects (which would need unpickling), or fewer data bytes than the header says.
    """
    fmt = np.lib.format
    head = fh.read(len(_NPY_MAGIC))
    if not head.startswith(_NPY_MAGIC[: len(head)]) or not head:
        raise InputError(
            f"{where}: is not a .npy array (it does not start with the NumPy magic string); give an array saved with "
            "numpy.save"
        )
    if len(head) < len(_NPY_MAGIC):
        raise InputError(f"{where}: is truncated (the .npy header is incomplete); export or copy it again")
    fh.seek(fh.tell() - len(_NPY_MAGIC))
    try:
        version = fmt.read_magic(fh)
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = reader(fh)
    except _NPY_HEADER_ERRORS as err:
        cut = "EOF" in str(err)
        what = (
            "is truncated (the .npy header is incomplete)"
            if cut
            else f"has a damaged .npy header ({oneline(err)})"
        )
        raise InputError(f"{where}: {what}; export or copy it again") from None
    if dtype.hasobject:
        raise InputError(
            f"{where}: holds Python objects (dtype {dtype}), which only unpickling could read and brainpipe never "
            "unpickles files; save a plain numeric or string array (e.g. arr.astype(float) or arr.astype(str))"
        )
    need = int(np.prod([int(n) for n in shape], dtype=object)) * dtype.itemsize
    have = size - fh.tell()
    if have < need:
        raise InputError(
            f"{where}: is truncated or damaged: its .npy header says shape {tuple(shape)} {dtype} ({need} bytes of "
            f"data) but it holds {max(have, 0)} bytes; export or copy it again"
        )
    return tuple(int(n) for n in shape), dtype, bool(fortran), need


def _check_kinds(where: str, arr: np.ndarray, kinds: str | None, what: str) -> np.ndarray:
    if kinds is not None and arr.dtype.kind not in kinds:
        words = "numbers" if set(kinds) <= set("biuf") else f"dtype kind(s) {kinds!r}"
        raise InputError(f"{where}: holds {arr.dtype} values, not {words}; {what}")
    return arr


def load_npy(path: str | os.PathLike, kind: str, kinds: str | None = "biuf", todo: str = "") -> np.ndarray:
    """A ``.npy`` array, loaded without pickle after its header is checked; every failure is one line.

    Parameters
    ----------
    path : str or PathLike
        The ``.npy`` file.
    kind : str
        What the file holds (``"fluorescence (F.npy)"``), for the messages.
    kinds : str or None
        Accepted ``dtype.kind`` letters (default numbers: ``"biuf"``); None accepts any non-object dtype.
    todo : str
        What to do when the dtype is not accepted (default: save a numeric array).

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    InputError
        Missing, a folder, empty, not a ``.npy``, truncated (fewer data bytes than the header says), an object
        array (never unpickled), or values of another dtype kind.
    """
    p = require_file(path, kind)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        _npy_header(fh, str(p), size)
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:  # the header was fine: the data does not fit it
        raise fail(p, f"cannot be read as a .npy array ({oneline(err)})", "export or copy it again") from None
    return _check_kinds(str(p), arr, kinds, todo or f"give the {kind} as a numeric array")


def _zip_error(p: Path, err: BaseException) -> InputError:
    with open(p, "rb") as fh:
        head = fh.read(4)
    zipped = b"PK\x03\x04".startswith(head) if len(head) < 4 else head == b"PK\x03\x04"
    if isinstance(err, zipfile.BadZipFile) and "not a zip file" in str(err) and not zipped:
        return fail(p, "is not an .npz archive (not a zip file)", "give an archive written by numpy.savez")
    what = (
        "is truncated (the zip directory at its end is missing)"
        if "not a zip file" in str(err)
        else (f"is a damaged .npz archive ({type(err).__name__}: {oneline(err)})")
    )
    return fail(p, what, "export or copy it again")


_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


def load_npz(path: str | os.PathLike, kind: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, each header checked before it is read, never unpickled.

    Parameters
    ----------
    path : str or PathLike
        The ``.npz`` file.
    kind : str
        What the archive is (``"spike table .npz"``), for the messages.

    Returns
    -------
    dict
        ``{array name: array}`` in archive order.

    Raises
    ------
    InputError
        Missing, a folder, empty, not a zip archive, truncated or damaged (zip CRC, compression), an array that is
        not a ``.npy``, or an object array (named; never unpickled).
    """
    p = require_file(path, kind)
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(p) as zf:
            for member in zf.namelist():
                if not member.endswith(".npy"):
                    continue
                raw = zf.read(member)  # checks the CRC: a damaged member fails here
                where = f"{p} (array '{member[:-4]}')"
                fh = io.BytesIO(raw)
                _npy_header(fh, where, len(raw))
                fh.seek(0)
                try:
                    out[member[:-4]] = np.lib.format.read_array(fh, allow_pickle=False)
                except (ValueError, EOFError) as err:
                    raise InputError(
                        f"{where}: cannot be read as a .npy array ({oneline(err)}); export it again"
                    ) from None
    except _ZIP_ERRORS as err:
        raise _zip_error(p, err) from None
    return out


def npz_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The shape of every array in an ``.npz`` archive, read from the array headers (no data loaded, no pickle).

    Parameters
    ----------
    path : str or PathLike
        An existing ``.npz`` file.

    Returns
    -------
    dict
        ``{array name: shape}`` in archive order.

    Raises
    ------
    InputError
        The file is empty, not a zip archive, truncated or damaged, or an array header is unreadable.
    """
    p = require_file(path, ".npz archive")
    out: dict[str, tuple[int, ...]] = {}
    try:
        with zipfile.ZipFile(p) as zf:
            for info in zf.infolist():
                member = info.filename
                if not member.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    head = io.BytesIO(fh.read(65536 + 16))  # the header only (a .npy header is < 64 KiB)
                out[member[:-4]] = _npy_header_shape(head, f"{p} (array '{member[:-4]}')", info.file_size)
    except _ZIP_ERRORS as err:
        raise _zip_error(p, err) from None
    return out


def _npy_header_shape(fh, where: str, size: int) -> tuple[int, ...]:
    """The shape in a ``.npy`` header (object arrays and cut-short data are fine here: only the shape is read)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape = reader(fh)[0]
    except _NPY_HEADER_ERRORS as err:
        raise InputError(
            f"{where}: has a damaged .npy header ({oneline(err)}); export or copy it again"
        ) from None
    return tuple(int(n) for n in shape)


def short(items: Sequence, n: int = 5) -> str:
    """``'a, b, c, ... (12 in all)'``: a short list for a message."""
    items = [str(i) for i in items]
    head = ", ".join(items[:n])
    return head if len(items) <= n else f"{head}, ... ({len(items)} in all)"
