"""The process group of this process: :class:`Comm` (rank, world, the loop's collectives), :func:`init`,
:func:`current` and :func:`shutdown`.

Part of :mod:`brainpipe.training.distributed`, which re-exports its public names.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist

from brainpipe.errors import ConfigError
from brainpipe.training._distributed_setup import KEY, log_, rendezvous, wants_cuda


class Comm:
    """This process's view of an initialised process group: rank, world size, backend, and the loop's collectives.

    Parameters
    ----------
    local_rank : int, default 0
        The rank on this node (the CUDA device index with NCCL).
    """

    def __init__(self, local_rank: int = 0):
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.local_rank = int(local_rank)
        self.backend = str(dist.get_backend())
        self.device = torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes."""
        return self.rank == 0

    def shard(self, idx: torch.Tensor) -> tuple[torch.Tensor, float]:
        """This rank's part of a global batch, and its weight (its share of the batch's examples).

        A rank left without an example (a last batch smaller than the world) gets the batch's first example with
        weight 0, so that it still takes part in the all-reduce without changing the result.

        Parameters
        ----------
        idx : torch.Tensor
            The global batch's example indices.

        Returns
        -------
        tuple of (torch.Tensor, float)
            The local indices and their weight.
        """
        local = torch.tensor_split(idx, self.world)[self.rank]
        if len(local) == 0:
            return idx[:1], 0.0
        return local, len(local) / len(idx)

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Sum a short vector of floats over ranks (float64).

        Parameters
        ----------
        values : sequence of float
            This rank's values.

        Returns
        -------
        list of float
            The sums, the same on every rank.
        """
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.cpu().tolist()

    def broadcast_float(self, value: float) -> float:
        """Rank 0's ``value`` on every rank.

        Parameters
        ----------
        value : float
            The value (used on rank 0 only).

        Returns
        -------
        float
            Rank 0's value.
        """
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(t, 0)
        return float(t.item())

    def broadcast_module(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers (as DDP does when it wraps a model).

        Parameters
        ----------
        model : torch.nn.Module
            The model, on this rank's device.
        """
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(t.data, 0)

    def reduce_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum the gradients over ranks in one flat all-reduce.

        A parameter without a gradient on any rank keeps none; one with a gradient on some ranks only gets the sum
        (zeros for the others).

        Parameters
        ----------
        params : sequence of torch.nn.Parameter
            The trained parameters (the same order on every rank).
        """
        parts, flags = [], []
        for p in params:
            g = p.grad
            flags.append(0.0 if g is None else 1.0)
            parts.append(
                torch.zeros(p.numel(), dtype=p.dtype, device=p.device) if g is None else g.reshape(-1)
            )
        flat = torch.cat([torch.cat(parts).float(), torch.tensor(flags, device=parts[0].device)])
        dist.all_reduce(flat)
        off = 0
        n_all = len(flat) - len(flags)
        for i, p in enumerate(params):
            n = p.numel()
            if float(flat[n_all + i]) > 0:
                g = flat[off : off + n].view_as(p).to(p.dtype)
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)
            off += n

    def gather_rng(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """Every rank's RNG state, in rank order (for rank 0's checkpoint).

        Parameters
        ----------
        state : dict
            This rank's RNG state (tensors).

        Returns
        -------
        list of dict
            The states of ranks 0..world-1 (on the CPU).
        """
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, {k: v.cpu() for k, v in state.items()})
        return out

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.local_rank])
        else:
            dist.barrier()


_COMM: Comm | None = None


def current() -> Comm | None:
    """The process group this process trains in, or None (one ordinary process).

    Returns
    -------
    Comm or None
        The rank, world size and backend of the initialised group.
    """
    global _COMM
    if not (dist.is_available() and dist.is_initialized()):
        _COMM = None
        return None
    if _COMM is None:
        _COMM = Comm(int(os.environ.get("LOCAL_RANK", 0)))
    return _COMM


def init(
    backend: str = "auto",
    device: str | None = "auto",
    environ: Mapping[str, str] | None = None,
    timeout_s: float = 600.0,
) -> Comm | None:
    """Join the process group described by the environment (:func:`rendezvous`).

    Parameters
    ----------
    backend : {"auto", "gloo", "nccl"}, default "auto"
        ``auto``: NCCL when training on CUDA (:func:`wants_cuda`), else gloo.
    device : str or None, default "auto"
        The training device setting.
    environ : mapping, optional
        The environment (default: ``os.environ``).
    timeout_s : float, default 600.0
        How long the ranks wait for each other.

    Returns
    -------
    Comm or None
        The group; None outside any launcher.

    Raises
    ------
    brainpipe.errors.InputError
        A missing rendezvous variable under SLURM.
    brainpipe.errors.ConfigError
        NCCL without CUDA, or more processes on this node than devices.
    """
    global _COMM
    if dist.is_initialized():
        return current()
    where = rendezvous(environ)
    if not where:
        return None
    cuda = wants_cuda(device)
    if backend == "auto":
        backend = "nccl" if cuda else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError(f"{KEY}.backend: nccl needs CUDA devices and none is present here (use gloo)")
    if cuda:
        n = torch.cuda.device_count()
        if where["local_rank"] >= n:
            raise ConfigError(
                f"{KEY}.processes_per_node: local rank {where['local_rank']} has no GPU of its own "
                f"(only {n} CUDA device(s) are visible on this node)"
            )
        torch.cuda.set_device(where["local_rank"])
    os.environ["MASTER_ADDR"] = str(where["master_addr"])
    os.environ["MASTER_PORT"] = str(where["master_port"])
    os.environ["LOCAL_RANK"] = str(where["local_rank"])
    dist.init_process_group(
        backend,
        init_method="env://",
        rank=where["rank"],
        world_size=where["world_size"],
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    _COMM = Comm(where["local_rank"])
    log_.info(
        "rank %d of %d (%s, %s, master %s:%s)",
        _COMM.rank,
        _COMM.world,
        backend,
        where["launcher"],
        where["master_addr"],
        where["master_port"],
    )
    return _COMM


def shutdown() -> None:
    """Leave the process group (no-op when none)."""
    global _COMM
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _COMM = None


def free_port() -> int:
    """A free TCP port on this machine, for a local rendezvous.

    Returns
    -------
    int
        The port.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
