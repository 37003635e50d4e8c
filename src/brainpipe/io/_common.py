"""Shared helpers of the readers: one-line errors, .npz headers and the assembly of a ``spike_times`` dataset."""

from __future__ import annotations

import io
import logging
import os
import tokenize
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from brainpipe._docs import fill_doc
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


def check_train(path, label: str, t: np.ndarray, *, require_sorted: bool, where: str = "") -> np.ndarray:
    """One unit's spike times as float64 seconds; rejects non-finite and negative times (and unsorted ones)."""
    t = np.asarray(t, dtype=np.float64).ravel()
    what = f"unit {label}{where}"
    if t.size and not np.all(np.isfinite(t)):
        raise fail(path, f"{what} has non-finite spike times", "spike times must be finite seconds")
    if t.size and t.min() < 0:
        raise fail(
            path,
            f"{what} has negative spike times (min {t.min():.6g} s)",
            "spike times are seconds on the session clock (>= 0); shift or fix the times in the source",
        )
    if require_sorted and t.size > 1:
        bad = np.flatnonzero(np.diff(t) < 0)
        if bad.size:
            i = int(bad[0])
            raise fail(
                path,
                f"{what} has spike times that go back in time ({bad.size} place(s), first: {t[i]:.9g} s then "
                f"{t[i + 1]:.9g} s)",
                "spike times within a unit must be non-decreasing; re-export the sorting",
            )
    return t


def check_finite(path, values: np.ndarray, names: Sequence[str]) -> None:
    """Raise naming the first behaviour variable (column of ``values``) with a NaN or infinite value."""
    values = np.asarray(values, dtype=np.float64).reshape(values.shape[0], -1)
    for k, name in enumerate(names):
        n_bad = int(np.count_nonzero(~np.isfinite(values[:, k])))
        if n_bad:
            raise fail(
                path,
                f"behaviour variable '{name}' has {n_bad} NaN or infinite value(s) of {values.shape[0]}",
                "fill or drop the gaps (e.g. interpolate tracking losses) before reading, or read without behaviour",
            )


def behaviour_block(
    path,
    time: np.ndarray,
    values: np.ndarray,
    names: Sequence[str],
    units: Sequence[str] | str,
) -> dict:
    """Validate one behaviour block (finite values, strictly increasing time) for :func:`assemble`."""
    time = np.asarray(time, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64).reshape(time.size, -1)
    if isinstance(units, str):
        units = [units] * values.shape[1]
    if not np.all(np.isfinite(time)):
        raise fail(path, "behaviour timestamps have non-finite values", "fix the timestamps in the source")
    if time.size > 1 and not np.all(np.diff(time) > 0):
        raise fail(
            path, "behaviour timestamps are not strictly increasing", "drop repeated samples in the source"
        )
    check_finite(path, values, names)
    return {
        "time": time,
        "values": values,
        "names": [str(n) for n in names],
        "units": [str(u) for u in units],
    }


def assemble(
    path,
    trains: Sequence[np.ndarray],
    labels: Sequence[str],
    *,
    fmt: str,
    t_start: float,
    t_stop: float,
    observed: str,
    trials: Mapping | None = None,
    behaviour: Mapping | None = None,
    attrs: Mapping | None = None,
) -> xr.Dataset:
    """Build the ``spike_times`` dataset from per-unit spike trains (already validated, in seconds).

    ``trials``: ``{"start": array, "stop": array, "covariates": {name: array}}`` (names without ``trial_``);
    ``behaviour``: the dict of :func:`behaviour_block`. Spikes are sorted by time, ties by unit index.
    """
    labels = [str(lab) for lab in labels]
    if len(set(labels)) != len(labels):
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        raise fail(path, f"unit labels are not unique ({short(dup)})", "give every unit its own id")
    lengths = np.array([len(t) for t in trains], dtype=np.int64)
    t = np.concatenate([np.asarray(x, dtype=np.float64) for x in trains]) if trains else np.zeros(0)
    u = np.repeat(np.arange(len(trains), dtype=np.int32), lengths)
    order = np.lexsort((u, t))
    empty = [lab for lab, n in zip(labels, lengths, strict=True) if n == 0]
    if empty:
        LOG.warning(
            "%s: %d of %d unit(s) have no spikes (%s); kept, the QC stage reports or drops them",
            path,
            len(empty),
            len(labels),
            short(empty),
        )
    ds = xr.Dataset(
        {
            "spike_time": ("spike", t[order], {"units": "s", "long_name": "spike time"}),
            "spike_unit": ("spike", u[order], {"long_name": "index of the spike's unit in 'unit'"}),
        },
        coords={"unit": ("unit", np.array(labels, dtype=str), {"long_name": "unit identifier"})},
    )
    if trials is not None:
        start = np.asarray(trials["start"], dtype=np.float64)
        stop = np.asarray(trials["stop"], dtype=np.float64)
        if start.size and not np.all(stop > start):
            k = int(np.flatnonzero(~(stop > start))[0])
            raise fail(
                path,
                f"trial {k} stops ({stop[k]:.9g} s) before it starts ({start[k]:.9g} s)",
                "fix the trial table",
            )
        ds["trial_start"] = ("trial", start, {"units": "s", "long_name": "trial start"})
        ds["trial_stop"] = ("trial", stop, {"units": "s", "long_name": "trial stop"})
        for name, val in trials.get("covariates", {}).items():
            ds[f"trial_{name}"] = (
                "trial",
                np.asarray(val, dtype=np.float64),
                {"long_name": f"trial covariate {name}"},
            )
    if behaviour is not None and len(behaviour["names"]):
        units = list(dict.fromkeys(behaviour["units"]))
        battrs = {"long_name": "behaviour", "units": units[0] if len(units) == 1 else "mixed"}
        if len(units) > 1:
            battrs["units_by_var"] = "; ".join(
                f"{n}={x}" for n, x in zip(behaviour["names"], behaviour["units"], strict=True)
            )
        ds = ds.assign_coords(
            behaviour_time=(
                "behaviour_time",
                behaviour["time"],
                {"units": "s", "long_name": "behaviour sample time"},
            ),
            behaviour_var=("behaviour_var", np.array(behaviour["names"], dtype=str)),
        )
        ds["behaviour"] = (("behaviour_time", "behaviour_var"), behaviour["values"], battrs)
    ds.attrs.update(
        {
            "t_start_s": float(t_start),
            "t_stop_s": float(t_stop),
            "source": str(path),
            "format": fmt,
            "observed": observed,
        }
    )
    if attrs:
        ds.attrs.update(attrs)
    return ds


def window(path, t_all: np.ndarray, t_start: float | None, t_stop: float | None) -> tuple[float, float]:
    """The observation window: the given bounds, widened to hold every spike (just past the last one)."""
    t_all = np.asarray(t_all, dtype=np.float64)
    lo = [float(t_all.min())] if t_all.size else []
    hi = [float(np.nextafter(t_all.max(), np.inf))] if t_all.size else []
    if t_start is not None:
        lo.append(float(t_start))
    if t_stop is not None:
        hi.append(float(t_stop))
    if not lo or not hi:
        raise fail(
            path, "holds no spikes and no observation window", "check that the sorting exported any units"
        )
    t0, t1 = min(lo), max(hi)
    if not t1 > t0:
        t1 = float(np.nextafter(t0, np.inf))
    return t0, t1


def increasing_mask(t: np.ndarray) -> np.ndarray:
    """True for samples whose time is later than every earlier sample (drops repeats and steps back)."""
    t = np.asarray(t, dtype=np.float64)
    if t.size == 0:
        return np.zeros(0, dtype=bool)
    prev_max = np.maximum.accumulate(t)
    return np.concatenate([[True], t[1:] > prev_max[:-1]])


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
