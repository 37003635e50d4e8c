"""Checkpoints that survive preemption: atomic writes, pickle-free loads, a run fingerprint, SIGTERM handling.

A checkpoint is one file written with ``torch.save`` (tensors, numbers, strings, lists and dicts only) to a
temporary file in the same folder and renamed over the old one, so a crash or ``kill -9`` at any moment leaves
either the previous checkpoint or the new one, never half of one. It is read with ``torch.load(...,
weights_only=True)``: nothing is unpickled. Each checkpoint carries a *fingerprint* of the run (parameters, input
hashes, package version); a checkpoint from another run is ignored, so a changed config never resumes stale state.

:class:`Checkpointer` is shared by every iterative fit (the torch loop, the switching GLM's EM): it decides when to
write (every ``every_s`` seconds, and when asked), and turns SIGTERM (what SLURM sends before preempting or at the
time limit) into "write a checkpoint at the next safe point, then raise :class:`Preempted`".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from brainpipe.data.atomic import atomic_output
from brainpipe.errors import BrainpipeError, InputError

FORMAT = "brainpipe-checkpoint/1"
log_ = logging.getLogger("brainpipe.training")


class Preempted(BrainpipeError):
    """The run was asked to stop (SIGTERM); a checkpoint was written and a rerun resumes from it."""


def fingerprint_of(obj: Any) -> str:
    """A stable hash of a JSON-able description of a run (params, input hashes, version).

    Parameters
    ----------
    obj : object
        Anything JSON can write (keys are sorted; other objects are written as their ``str``).

    Returns
    -------
    str
        32 hex digits of its sha256.
    """
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any], fingerprint: str = "") -> Path:
    """Write ``state`` atomically to ``path`` (the folder is created).

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.
    state : mapping
        Tensors, numbers, strings, lists and dicts only (read back without unpickling).
    fingerprint : str, default ""
        The run's fingerprint (:func:`fingerprint_of`), checked by :func:`load_checkpoint`.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    out = Path(path)
    # written every epoch: the path is derived by brainpipe from an output it was allowed to write, so the
    # ownership check (which reads the previous checkpoint's metadata) is skipped
    with atomic_output(out, check=False) as tmp:
        torch.save({"format": FORMAT, "fingerprint": fingerprint, "state": dict(state)}, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    return out


def load_checkpoint(path: str | os.PathLike, fingerprint: str | None = None) -> dict[str, Any] | None:
    """Read the state saved at ``path``, unless it is missing or belongs to another run.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.
    fingerprint : str, optional
        The run's fingerprint; a checkpoint with another one is ignored (None: not checked).

    Returns
    -------
    dict or None
        The saved state; None when there is no file or it belongs to another run.

    Raises
    ------
    brainpipe.errors.InputError
        The file is not a readable brainpipe checkpoint.
    """
    p = Path(path)
    if not p.exists():
        return None
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line message
        raise InputError(
            f"{p}: not a readable brainpipe checkpoint ({type(err).__name__}); delete it to start the fit afresh"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(
            f"{p}: not a brainpipe checkpoint (no '{FORMAT}' header); delete it to start the fit afresh"
        )
    if fingerprint is not None and data.get("fingerprint") != fingerprint:
        log_.warning(
            "%s: checkpoint of another run (different params, inputs or version): starting afresh", p
        )
        return None
    return data["state"]


class Checkpointer:
    """When and where an iterative fit checkpoints, and SIGTERM handling.

    >>> ckpt = Checkpointer("checkpoints/fit.pt", fingerprint=fingerprint_of(params), every_s=60)  # doctest: +SKIP
    >>> state = ckpt.load()                      # None: start afresh  # doctest: +SKIP
    >>> with ckpt.guard():                       # SIGTERM -> checkpoint, then Preempted  # doctest: +SKIP
    ...     for it in range(start, n_iter):
    ...         step()
    ...         ckpt.maybe_save(lambda: {...})   # every ``every_s`` seconds, or now if SIGTERM arrived
    >>> ckpt.done()                              # remove the file once the outputs are written  # doctest: +SKIP

    With ``path=None`` every method is a no-op (and SIGTERM keeps its default meaning).

    Parameters
    ----------
    path : str or os.PathLike or None
        The checkpoint file (None: no checkpoints).
    fingerprint : str, default ""
        The run's fingerprint (:func:`fingerprint_of`); a checkpoint of another run is not resumed.
    every_s : float, default 60.0
        Seconds between periodic saves by :meth:`maybe_save`.
    """

    def __init__(self, path: str | os.PathLike | None, fingerprint: str = "", every_s: float = 60.0):
        self.path = Path(path) if path is not None else None
        self.fingerprint = fingerprint
        self.every_s = float(every_s)
        self._last = time.monotonic()
        self._stop = threading.Event()
        self.saves = 0

    @property
    def enabled(self) -> bool:
        return self.path is not None

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Ask the fit to stop at its next safe point, as the SIGTERM handler does (callable directly in tests)."""
        self._stop.set()

    def load(self) -> dict[str, Any] | None:
        """Read this run's checkpoint, if there is one (see :func:`load_checkpoint`).

        Returns
        -------
        dict or None
            The saved state, or None: start afresh.
        """
        if self.path is None:
            return None
        state = load_checkpoint(self.path, self.fingerprint)
        if state is not None:
            log_.info("resuming from checkpoint %s", self.path)
        return state

    def save(self, state: Mapping[str, Any]) -> None:
        """Write ``state`` now (atomically, see :func:`save_checkpoint`).

        Parameters
        ----------
        state : mapping
            Tensors, numbers, strings, lists and dicts only.
        """
        if self.path is None:
            return
        save_checkpoint(self.path, state, self.fingerprint)
        self._last = time.monotonic()
        self.saves += 1

    def due(self) -> bool:
        """Whether ``every_s`` seconds have passed since the last save (False without a checkpoint path).

        Returns
        -------
        bool
            True when a periodic save is due.
        """
        return self.path is not None and time.monotonic() - self._last >= self.every_s

    def maybe_save(self, make_state, force: bool = False) -> None:
        """Save ``make_state()`` if ``every_s`` has passed, ``force`` is set or a stop was requested.

        After a stop request it raises :class:`Preempted` once saved.

        Parameters
        ----------
        make_state : callable
            Returns the state to save (called only when saving).
        force : bool, default False
            Save now whatever the time since the last save.

        Raises
        ------
        Preempted
            A stop was requested (SIGTERM).
        """
        if self.path is None:
            if self._stop.is_set():
                raise Preempted("stopped by SIGTERM (no checkpoint configured: a rerun starts afresh)")
            return
        if force or self._stop.is_set() or time.monotonic() - self._last >= self.every_s:
            self.save(make_state())
        if self._stop.is_set():
            raise Preempted(
                f"stopped by SIGTERM; checkpoint written to {self.path}: rerun the same command to resume"
            )

    def done(self) -> None:
        """The fit finished and its outputs are written: the checkpoint is no longer needed."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def guard(self):
        """Turn SIGTERM into a stop request while inside this context manager.

        Only in the main thread; elsewhere it is a no-op.

        Returns
        -------
        contextlib.AbstractContextManager
            Entering it installs the SIGTERM handler (and yields this checkpointer); leaving it restores the
            previous one.
        """
        return _SigtermGuard(self)


class _SigtermGuard:
    def __init__(self, owner: Checkpointer):
        self.owner = owner
        self.previous = None
        self.installed = False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.getsignal(signal.SIGTERM)

            def handler(signum, frame):
                log_.warning("SIGTERM received: checkpointing at the next safe point")
                self.owner.request_stop()

            signal.signal(signal.SIGTERM, handler)
            self.installed = True
        return self.owner

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous if self.previous is not None else signal.SIG_DFL)
        return False


def checkpoint_every_s(default: float = 60.0) -> float:
    """Read the seconds between periodic checkpoints from the environment, else take the default.

    Parameters
    ----------
    default : float, default 60.0
        The value when ``BRAINPIPE_CHECKPOINT_EVERY_S`` (a runtime setting, e.g. in a cluster profile's
        environment) is unset or empty.

    Returns
    -------
    float
        The seconds.

    Raises
    ------
    brainpipe.errors.InputError
        The variable is not a number >= 0.
    """
    raw = os.environ.get("BRAINPIPE_CHECKPOINT_EVERY_S")
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"BRAINPIPE_CHECKPOINT_EVERY_S={raw!r} is not a number of seconds") from None
    if value < 0:
        raise InputError(f"BRAINPIPE_CHECKPOINT_EVERY_S={raw!r} must be >= 0")
    return value


def stage_fingerprint(stage: str, params: Mapping[str, Any], inputs) -> dict[str, Any]:
    """What identifies a stage's run: stage name, params, package version and the sha256 of every input file.

    Parameters
    ----------
    stage : str
        The stage's name.
    params : mapping
        Its parameters.
    inputs : str, os.PathLike or list of them
        Its input files.

    Returns
    -------
    dict
        ``stage``, ``params``, ``version`` and ``inputs`` (the files' sha256), for a fit's ``fingerprint``.
    """
    import brainpipe
    from brainpipe.data.provenance import sha256_file

    files = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return {
        "stage": stage,
        "params": dict(params),
        "version": brainpipe.__version__,
        "inputs": [sha256_file(p) for p in files],
    }
