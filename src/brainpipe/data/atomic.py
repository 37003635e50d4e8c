"""Output safety: every file or folder brainpipe writes appears atomically, and brainpipe replaces only its own.

One helper, :func:`atomic_output`, is used by every writer (contract files, zarr stores, folders of files, the
report, the metrics table, weights and checkpoints). It

1. refuses, before anything is computed or written, an existing path that brainpipe did not write
   (:func:`owner` cannot recognise it as a brainpipe output, or it was written by another stage): a user's
   folder or file at an output path is never replaced or removed;
2. hands the caller a temporary sibling path (in a fresh hidden folder beside the target, so on the same file
   system) to write into;
3. when the caller is done, renames the temporary path into place (``os.replace``; a previous brainpipe output
   there is first moved aside and removed only after the new one is in place); when the caller fails, removes
   only the temporary folder. A crash leaves the target as it was, never half written.

Folders that brainpipe writes carry a small marker file (:data:`MARKER`) naming the stage, so a rerun recognises
its own folder. Files are recognised by their content: netCDF/HDF5 and zarr outputs by their
``brainpipe_contract`` attribute (and the stage in their provenance), the HTML report by its generator tag, the
metrics table by its header, torch files by the ``brainpipe-`` format tag in their metadata (read from the zip
archive without unpickling anything).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from brainpipe.errors import OutputError

#: file inside every folder written by brainpipe: ``{"stage": ..., "version": ...}``
MARKER = ".brainpipe-output"
#: owner returned for a brainpipe file whose writing stage cannot be told (torch weights, checkpoints)
ANY_STAGE = "*"
#: header of the metrics table written by the ``metrics_table`` stage
METRICS_TABLE_HEADER = "dataset\tmodel\tmetric\tvalue\tbar_op\tbar\tstatus\tfile"

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CONTRACT_ATTR = (
    "brainpipe_contract"  # == brainpipe.data.contracts.CONTRACT_ATTR (no import: contracts imports io)
)


def owner(path: str | os.PathLike) -> str | None:
    """The stage that wrote ``path``, when brainpipe wrote it; ``None`` for anything else.

    Parameters
    ----------
    path : str or path-like
        A file or folder.

    Returns
    -------
    str or None
        The writing stage's name (e.g. ``"bin_spikes"``); :data:`ANY_STAGE` for a brainpipe file that does not
        record its stage, or a contract file written outside a stage; ``None`` when ``path`` does not exist, cannot
        be read, or was not written by brainpipe.
    """
    p = Path(path)
    try:
        if p.is_symlink() or not p.exists():
            return None
        if p.is_dir():
            return _folder_owner(p)
        with open(p, "rb") as fh:
            head = fh.read(4096)
        if head.startswith(_HDF5_SIGNATURE):
            return _hdf5_owner(p)
        if head.startswith(b"PK\x03\x04"):
            return _torch_owner(p)
        text = head.decode("utf-8", errors="replace")
        if '<meta name="generator" content="brainpipe' in text:
            return "report"
        if text.split("\n", 1)[0].rstrip("\r") == METRICS_TABLE_HEADER:
            return "metrics_table"
    except (OSError, ValueError):
        return None
    return None


def _stage_of(attrs: dict) -> str | None:
    if _CONTRACT_ATTR not in attrs:
        return None
    try:
        stage = json.loads(attrs.get("provenance", "{}")).get("stage")
    except (TypeError, ValueError, AttributeError):
        stage = None
    return str(stage) if stage else ANY_STAGE


def _hdf5_owner(p: Path) -> str | None:
    import h5py

    with h5py.File(p, "r") as fh:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in fh.attrs.items()}
    return _stage_of({k: str(v) for k, v in attrs.items()})


def _folder_owner(p: Path) -> str | None:
    marker = p / MARKER
    if marker.is_file():
        try:
            return str(json.loads(marker.read_text()).get("stage") or ANY_STAGE)
        except (OSError, ValueError, AttributeError):
            return None
    for meta in (p / ".zattrs", p / "zarr.json"):  # zarr v2 / v3 store
        if meta.is_file():
            try:
                attrs = json.loads(meta.read_text())
            except (OSError, ValueError):
                return None
            attrs = attrs.get("attributes", attrs) if meta.name == "zarr.json" else attrs
            return _stage_of({k: str(v) for k, v in attrs.items()}) if isinstance(attrs, dict) else None
    return None


def _torch_owner(p: Path) -> str | None:
    with zipfile.ZipFile(p) as zf:
        names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(names) != 1:
            return None
        with zf.open(names[0]) as fh:  # read as bytes, never unpickled
            return ANY_STAGE if b"brainpipe-" in fh.read(1 << 20) else None


def _describe(p: Path) -> str:
    return "a folder" if p.is_dir() else "a file"


def check_replaceable(path: str | os.PathLike, stage: str | None = None, what: str | None = None) -> None:
    """Raise :class:`~brainpipe.errors.OutputError` when ``path`` exists and brainpipe may not replace it.

    Parameters
    ----------
    path : str or path-like
        The output path.
    stage : str, optional
        The stage about to write it: an existing path is replaced only when that stage wrote it (or a brainpipe
        file that does not record its stage). ``None``: any brainpipe output may be replaced.
    what : str, optional
        How to name the output in the message (e.g. ``"output 'counts' of stage bin_spikes"``).
    """
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        return
    who = owner(p)
    label = what or "output"
    if who is None:
        raise OutputError(
            f"{p}: {label} is {_describe(p)} that brainpipe did not write; brainpipe never replaces or removes what it "
            "did not write: choose another output path, or move this one away yourself"
        )
    if stage is not None and who not in (stage, ANY_STAGE):
        raise OutputError(
            f"{p}: {label} is {_describe(p)} written by stage {who}, not {stage}; choose another output path, "
            "or move this one away yourself"
        )


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike, stage: str | None = None, folder: bool = False, check: bool = True
) -> Iterator[Path]:
    """Write ``path`` atomically: yield a temporary sibling to write, rename it into place on success.

    Parameters
    ----------
    path : str or path-like
        The final file or folder.
    stage : str, optional
        The writing stage (checked with :func:`check_replaceable`, and recorded in a folder's marker).
    folder : bool, default False
        Create the temporary path as a folder, with the :data:`MARKER` file in it.
    check : bool, default True
        Check that an existing ``path`` may be replaced (before and again right before the rename). Only for
        paths that brainpipe derives itself (checkpoints beside an output).

    Yields
    ------
    pathlib.Path
        The temporary path, with the same name as ``path``, inside a hidden folder beside it.

    Examples
    --------
    >>> with atomic_output("results/table.tsv") as tmp:  # doctest: +SKIP
    ...     frame.to_csv(tmp, sep="\\t")
    """
    path = Path(path)
    if check:
        check_replaceable(path, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp = tmpdir / path.name
    try:
        if folder:
            tmp.mkdir()
            import brainpipe

            (tmp / MARKER).write_text(
                json.dumps({"stage": stage or ANY_STAGE, "version": brainpipe.__version__}) + "\n"
            )
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise FileNotFoundError(f"{path}: the writer produced nothing")
        if check:
            check_replaceable(path, stage)  # nothing appeared meanwhile that is not ours
        if path.exists() and (path.is_dir() or tmp.is_dir()):
            # os.replace cannot put a folder over a folder (or mix kinds): move ours aside, then rename
            os.replace(path, tmpdir / ".previous")
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def identity(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """``(device, inode, mtime_ns)`` of ``path`` (``None`` when absent): tells whether a path was replaced."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


def remove_if_new(path: str | os.PathLike, before: tuple[int, int, int] | None) -> bool:
    """Remove ``path`` when it was created or replaced since ``before`` (its :func:`identity` then); else keep it.

    Returns whether something was removed.
    """
    p = Path(path)
    now = identity(p)
    if now is None or now == before:
        return False
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)
    return True
