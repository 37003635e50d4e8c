"""Damaged HDF5 and NIfTI files told apart from wrong content: what is wrong with a file (:func:`hdf5_problem`,
:func:`hdf5_error`) and a NIfTI image loaded with one-line errors (:func:`load_nifti`).

Part of :mod:`brainpipe.io._common`, which re-exports its public names.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from brainpipe._docs import fill_doc
from brainpipe.errors import InputError
from brainpipe.io._files import fail, oneline, require_file

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _hdf5_stored_eof(head: bytes) -> int | None:
    """The end-of-file address an HDF5 superblock at the start of ``head`` records (None: ``head`` is too short).

    Superblock versions 0 and 1 store it after the base and free-space addresses; versions 2 and 3 after the base
    and superblock-extension addresses (the HDF5 file format specification, section II.A).
    """
    if len(head) < 14:
        return None
    version, size = head[8], head[13] if head[8] < 2 else head[9]
    start = {0: 24, 1: 28}.get(version, 12)
    at = start + 2 * size
    if size not in (2, 4, 8) or len(head) < at + size:
        return None
    return int.from_bytes(head[at : at + size], "little")


@fill_doc
def hdf5_problem(path: str | os.PathLike, err: BaseException) -> str:
    """What is wrong with an HDF5 file h5py could not open or read: a few words for a one-line message.

    Parameters
    ----------
    %(h5py_failure)s

    Returns
    -------
    str
        ``"is not an HDF5 file (...)"``, ``"is truncated: ..."`` (with the sizes, from the superblock) or ``"is
        damaged (...)"``.
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(64)
    if len(head) < len(_HDF5_SIGNATURE) and _HDF5_SIGNATURE.startswith(head):
        return f"is truncated (it ends inside the HDF5 signature, after {size} bytes)"
    if not head.startswith(_HDF5_SIGNATURE):
        return "is not an HDF5 file (no HDF5 signature at its start)"
    eof = _hdf5_stored_eof(head)
    if eof is None:
        return f"is truncated (it ends inside its HDF5 superblock, after {size} bytes)"
    if eof > size:
        return f"is truncated: its HDF5 superblock says {eof} bytes but the file holds {size}"
    return f"is damaged ({type(err).__name__}: {oneline(err)})"


@fill_doc
def hdf5_error(path: str | os.PathLike, err: BaseException, kind: str) -> InputError:
    """One line for an error h5py raised on ``path`` (see :func:`hdf5_problem`).

    Parameters
    ----------
    %(h5py_failure)s
    kind : str
        What the file should be (``"an NWB (HDF5) file"``), for the message.

    Returns
    -------
    InputError
    """
    problem = hdf5_problem(path, err)
    todo = f"give {kind}" if problem.startswith("is not") else "copy or export the file again"
    return fail(
        path, problem.replace("an HDF5 file", kind, 1) if problem.startswith("is not") else problem, todo
    )


def _gzip_size(p: Path) -> int | None:
    """The uncompressed size a gzip file records in its trailer (modulo 2**32), or None when it has none."""
    size = p.stat().st_size
    if size < 18:
        return None
    with open(p, "rb") as fh:
        fh.seek(size - 4)
        return int.from_bytes(fh.read(4), "little")


def _gzip_problem(p: Path) -> str | None:
    """What is wrong with the gzip stream of ``p`` (read to its end), or None when it decompresses whole."""
    import gzip

    try:
        with gzip.open(p, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except EOFError:
        return "is truncated (its gzip stream ends early)"
    except (gzip.BadGzipFile, zlib.error, OSError) as err:
        return f"is damaged (gzip: {oneline(err)})"
    return None


def _nifti_header_error(p: Path, err: BaseException, gz: bool, kind: str) -> InputError:
    again = "copy or export the image again"
    problem = _gzip_problem(p) if gz else None
    if problem is not None:
        return fail(p, problem, again)
    if not gz and p.stat().st_size < 348:  # the NIfTI-1 header is 348 bytes
        return fail(p, f"is truncated (it holds {p.stat().st_size} bytes, less than a NIfTI header)", again)
    return fail(
        p,
        f"cannot be read as a NIfTI image ({type(err).__name__}: {oneline(err)})",
        f"give the {kind} as .nii/.nii.gz (a damaged header cannot be read either: {again})",
    )


def _gz_data(p: Path, img, offset: int, need: int) -> np.ndarray:
    """The scaled data of a ``.nii.gz``, read through the whole gzip stream so that its end is checked too.

    nibabel stops reading at the last byte of the data, so a file cut inside the gzip trailer (or with a bad CRC)
    would read as whole; reading on to the end of the stream makes gzip check the trailer (EOFError when it is cut,
    BadGzipFile on a CRC or length mismatch).
    """
    import gzip

    from nibabel.volumeutils import apply_read_scaling

    buf = bytearray(offset + need)
    with gzip.open(p, "rb") as fh:
        got = fh.readinto(buf)
        if got < len(buf):
            raise EOFError(f"the data stops after {got - offset} of {need} bytes")
        while fh.read(1 << 20):  # to the end of the stream: gzip checks the CRC and length there
            pass
    proxy = img.dataobj  # nibabel's ArrayProxy: dtype, memory order and scaling as nibabel applies them
    dtype = np.dtype(proxy.dtype)
    arr = np.frombuffer(buf, dtype=dtype, count=need // dtype.itemsize, offset=offset)
    arr = arr.reshape(img.shape, order=getattr(proxy, "order", "F"))
    slope, inter = np.asanyarray(proxy.slope), np.asanyarray(proxy.inter)
    if np.can_cast(inter, slope.dtype):
        inter = inter.astype(slope.dtype)
    return apply_read_scaling(arr, slope, inter)


def load_nifti(path: str | os.PathLike, kind: str):
    """A NIfTI image (``.nii``/``.nii.gz``) with its data read into memory; every failure is one line.

    The header is checked against the file before the data is read, so a header that claims more data than the
    file holds (a truncated file, or a damaged dimension field) is refused with both sizes instead of an
    allocation of what the header claims.

    Parameters
    ----------
    path : str or PathLike
        The image.
    kind : str
        What the image is (``"bold image"``, ``"atlas image"``), for the messages.

    Returns
    -------
    nibabel.nifti1.Nifti1Image
        The image with its data in memory (same affine and header).

    Raises
    ------
    InputError
        Missing, a folder, empty, not NIfTI, a damaged header, truncated, or damaged compressed data.
    """
    import gzip

    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    p = require_file(path, kind)
    gz = p.name.lower().endswith(".gz")
    again = "copy or export the image again"
    try:
        img = nib.load(p)
    except (ImageFileError, HeaderDataError, EOFError, OSError, ValueError, zlib.error) as err:
        # nibabel reads the header through the decompressor: a cut or damaged stream surfaces as any of these
        raise _nifti_header_error(p, err, gz, kind) from None
    header = img.header
    try:
        shape = tuple(int(n) for n in img.shape)
        dtype = np.dtype(header.get_data_dtype())
        offset = int(getattr(img.dataobj, "offset", header.get_data_offset()))
    except (HeaderDataError, TypeError, ValueError) as err:
        raise fail(p, f"has a damaged NIfTI header ({oneline(err)})", again) from None
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    size = p.stat().st_size
    said = f"its header says shape {shape} {dtype} ({need} bytes of data from byte {offset})"
    if not gz and offset + need > size:
        raise fail(p, f"is truncated or its header is damaged: {said} but the file holds {size} bytes", again)
    if need == 0:  # nothing to read (e.g. no volumes): the caller names what is missing
        return img
    if gz and (need > 1100 * size or (offset + need < 2**32 and (_gzip_size(p) or 0) < offset + need)):
        # deflate expands at most ~1032:1; the gzip trailer records the uncompressed size (mod 2**32)
        raise fail(
            p, f"is truncated or its header is damaged: {said}, more than the compressed file holds", again
        )
    try:
        data = _gz_data(p, img, offset, need) if gz else np.asanyarray(img.dataobj)
    except EOFError as err:
        raise fail(p, f"is truncated (the compressed data ends early: {oneline(err)})", again) from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise fail(p, f"is damaged (gzip: {oneline(err)})", again) from None
    except (OSError, ValueError) as err:
        raise fail(
            p, f"is truncated or damaged: {said} but it could not be read ({oneline(err)})", again
        ) from None
    return img.__class__(data, img.affine, header)
