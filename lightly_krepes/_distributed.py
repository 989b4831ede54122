"""The few torch.distributed helpers of the audit, in one place.

The same user code runs on every process (``torchrun``, Ray Train, Spark's
``TorchDistributor``, ``torch.multiprocessing.spawn``). Work is split by whole
batches, round robin on the global batch index, and partial sums are all-reduced
in float64 on the tensor's device (gloo on CPU, NCCL on GPU). Without an
initialised process group (or with one process) every helper is the identity.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")


def is_distributed() -> bool:
    """Whether a torch.distributed process group with more than one process runs.

    Examples:
        >>> is_distributed()
        False
    """
    return bool(
        dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    )


def world_size() -> int:
    """Number of processes (1 without a process group).

    Examples:
        >>> world_size()
        1
    """
    return int(dist.get_world_size()) if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a process group).

    Examples:
        >>> rank()
        0
    """
    return int(dist.get_rank()) if is_distributed() else 0


def owns(index: int, *, distributed: bool | None = None) -> bool:
    """Whether this process holds global batch ``index`` (round robin).

    Rank r holds batches r, r + W, r + 2W, ...; a world size that does not divide
    the number of batches leaves some ranks one batch fewer.

    Args:
        index: The global batch index.
        distributed: Shard across processes; None: when :func:`is_distributed`.

    Examples:
        >>> owns(3)
        True
    """
    if distributed is False or (distributed is None and not is_distributed()):
        return True
    return index % world_size() == rank()


def shard(
    items: Iterable[T], *, distributed: bool | None = None
) -> Iterator[tuple[int, T]]:
    """This process's ``(global_index, item)`` pairs of an iterable of batches.

    The iterable must yield the same sequence on every process; items of other
    processes are consumed but not used.

    Args:
        items: The global batches.
        distributed: Shard across processes; None: when :func:`is_distributed`.

    Yields:
        Pairs of the global index and the item, for the batches of this rank.

    Examples:
        >>> list(shard("abc"))
        [(0, 'a'), (1, 'b'), (2, 'c')]
    """
    for index, item in enumerate(items):
        if owns(index, distributed=distributed):
            yield index, item


def _reduce_device(tensor: Tensor) -> torch.device:
    # NCCL reduces CUDA tensors only; gloo takes CPU (and CUDA) tensors.
    if tensor.device.type == "cpu" and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


def all_reduce_sum_float64(
    tensor: Tensor, *, distributed: bool | None = None
) -> Tensor:
    """The sum of ``tensor`` over all processes, in float64, on its device.

    The input is not modified. Without distribution the result is the input in
    float64.

    Args:
        tensor: This process's partial sum, any shape.
        distributed: Reduce across processes; None: when :func:`is_distributed`.

    Returns:
        A float64 tensor of the input's shape and device.

    Examples:
        >>> all_reduce_sum_float64(torch.ones(2)).dtype
        torch.float64
    """
    if distributed is False or (distributed is None and not is_distributed()):
        return tensor.to(torch.float64)
    device = tensor.device
    buffer = tensor.detach().to(_reduce_device(tensor), torch.float64, copy=True)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return buffer.to(device)


def all_reduce_max(value: float, *, distributed: bool | None = None) -> float:
    """The maximum of a number over all processes.

    Args:
        value: This process's number.
        distributed: Reduce across processes; None: when :func:`is_distributed`.

    Examples:
        >>> all_reduce_max(2.0)
        2.0
    """
    if distributed is False or (distributed is None and not is_distributed()):
        return float(value)
    buffer = torch.tensor([float(value)], dtype=torch.float64)
    buffer = buffer.to(_reduce_device(buffer))
    dist.all_reduce(buffer, op=dist.ReduceOp.MAX)
    return float(buffer.item())


def agree(error: BaseException | None, *, distributed: bool | None = None) -> None:
    """Raises on every process when one of them failed, instead of hanging.

    A process that raises between collectives leaves the others waiting in the
    next one; each process passes its own exception (or None) here, and all
    raise together: the failing ones their own error, the others a
    RuntimeError naming the failed ranks.

    Args:
        error: This process's exception, or None.
        distributed: Synchronise across processes; None: when
            :func:`is_distributed`.

    Raises:
        BaseException: ``error`` on the processes that failed.
        RuntimeError: On the others, when any process failed.

    Examples:
        >>> agree(None)
    """
    if distributed is False or (distributed is None and not is_distributed()):
        if error is not None:
            raise error
        return
    flags = torch.zeros(world_size(), dtype=torch.float64)
    flags[rank()] = float(error is not None)
    flags = all_reduce_sum_float64(flags, distributed=True)
    if error is not None:
        raise error
    failed = [int(r) for r in torch.nonzero(flags).flatten()]
    if failed:
        raise RuntimeError(
            f"The audit failed on process(es) {failed}; see their error messages."
        )


def check_same(tensor: Tensor, what: str, *, distributed: bool | None = None) -> None:
    """Checks that a tensor is identical on every process (rank 0's is the reference).

    Args:
        tensor: This process's tensor; the same shape on every process.
        what: What it is, for the error message.
        distributed: Check across processes; None: when :func:`is_distributed`.

    Raises:
        RuntimeError: On every process, if any process's tensor differs.

    Examples:
        >>> check_same(torch.arange(3), "the landmarks")
    """
    if distributed is False or (distributed is None and not is_distributed()):
        return
    # A fingerprint rather than the tensor: landmarks of images can be large.
    # Equal tensors give bitwise equal fingerprints (the same computation).
    values = tensor.detach().to(torch.float64).flatten()
    ramp = torch.linspace(1.0, 2.0, len(values), dtype=torch.float64)
    fingerprint = torch.stack(
        [values.sum(), (values * values).sum(), (values * ramp.to(values)).sum()]
    )
    fingerprint = fingerprint.to(_reduce_device(fingerprint))
    reference = fingerprint.clone()
    dist.broadcast(reference, src=0)
    differs = not torch.equal(reference, fingerprint)
    if all_reduce_max(float(differs), distributed=True) > 0:
        raise RuntimeError(
            f"{what} differ between processes. Every process must run the same code "
            f"on the same data with the same seed (the audit shards the work "
            f"itself; do not give each process a different part of the data)."
        )
