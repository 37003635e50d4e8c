"""Device and precision choice at run time: CUDA when present, else CPU; bf16 autocast on CUDA only."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from brainpipe.errors import ConfigError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Pick the device to compute on: ``"auto"`` (or None) is CUDA when present, else the CPU.

    Parameters
    ----------
    device : str, torch.device or None, default "auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``.

    Returns
    -------
    torch.device
        The device.

    Raises
    ------
    brainpipe.errors.ConfigError
        A name that is not a device, or a CUDA device that is not present (one line saying what there is).
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"device {device!r} is not a device name (use 'auto', 'cpu', 'cuda' or 'cuda:N')"
        ) from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"device {device!r}: no CUDA device is present here (use 'auto' or 'cpu')")
        if dev.index is not None and dev.index >= n:
            raise ConfigError(
                f"device {device!r}: only {n} CUDA device(s) are visible (cuda:0..cuda:{n - 1})"
            )
    elif dev.type != "cpu":
        raise ConfigError(f"device {device!r} is not supported (use 'auto', 'cpu', 'cuda' or 'cuda:N')")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """Pick the precision: ``"auto"`` is ``"bf16"`` on a CUDA device that supports it, else ``"fp32"``.

    ``"bf16"`` on the CPU is refused (CPU bf16 autocast is slow and changes results; the loop is fp32 there).

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16"}
        The requested precision.
    device : torch.device
        The resolved device (:func:`resolve_device`).

    Returns
    -------
    str
        ``"fp32"`` or ``"bf16"``.

    Raises
    ------
    brainpipe.errors.ConfigError
        An unknown precision, or bf16 on the CPU.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision {precision!r} is not one of auto, fp32, bf16")
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if precision == "bf16" and device.type != "cuda":
        raise ConfigError("precision 'bf16' needs a CUDA device (use 'auto' or 'fp32' on the CPU)")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (a no-op for fp32).

    Parameters
    ----------
    device : torch.device
        The device computed on.
    precision : {"fp32", "bf16"}
        A resolved precision (:func:`resolve_precision`).

    Returns
    -------
    contextlib.AbstractContextManager
        ``torch.autocast`` to bfloat16 for bf16, else a context that does nothing.
    """
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move a batch (tensor, or nested tuple/list/dict of tensors; other leaves unchanged) to ``device``.

    Parameters
    ----------
    batch : object
        A tensor, or a (named) tuple, list or mapping of them, nested at will.
    device : torch.device
        Where to move the tensors.
    non_blocking : bool, default False
        Passed to ``Tensor.to``.

    Returns
    -------
    object
        The same structure (same container types), its tensors on ``device``.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return type(batch)((k, to_device(v, device, non_blocking)) for k, v in batch.items())
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    return batch
