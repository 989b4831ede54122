"""Collecting a pool of input samples from what a Lightly user has in hand.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset


def first_view(item: Any) -> Tensor:
    """The input tensor of a dataset item or batch.

    Accepts a tensor, a tuple ``(input, label, ...)`` as torchvision and
    ``LightlyDataset`` return, and Lightly's multi-view items whose input is a list of
    views (the first view is taken).

    Args:
        item: A dataset item or a batch.

    Returns:
        The input tensor.

    Raises:
        TypeError: If no tensor can be found.
    """
    if isinstance(item, Tensor):
        return item
    if isinstance(item, list | tuple) and item:
        head = item[0]
        if isinstance(head, Tensor):
            return head
        if isinstance(head, list | tuple) and head and isinstance(head[0], Tensor):
            return head[0]
    raise TypeError(
        "Expected a tensor, an (input, label, ...) tuple or a Lightly multi-view item "
        f"([view, ...], label, ...), got {type(item).__name__}. Apply a transform "
        "that returns tensors (e.g. torchvision.transforms.ToTensor())."
    )


def collect_pool(
    data: Tensor | Dataset[Any] | Iterable[Any], pool_size: int | None, seed: int
) -> Tensor:
    """Gathers up to ``pool_size`` input samples into one tensor.

    Datasets and sequences of items are sub-sampled uniformly at random (seeded);
    loaders and other iterables are read batch by batch until the pool is full.

    Args:
        data: A tensor of shape (n, ...), a dataset or sequence of items, or an
            iterable of batches (e.g. a DataLoader).
        pool_size: Maximum number of samples; None takes everything.
        seed: Seed of the dataset sub-sampling.

    Returns:
        Tensor of shape (n_pool, ...).
    """
    if pool_size is not None and pool_size < 1:
        raise ValueError(f"pool_size must be positive, got {pool_size}.")
    if isinstance(data, Tensor):
        if pool_size is None or pool_size >= len(data):
            return data
        gen = torch.Generator().manual_seed(seed)
        return data[torch.randperm(len(data), generator=gen)[:pool_size].sort().values]
    if isinstance(data, Dataset | Sequence):
        n = len(data)  # type: ignore[arg-type]
        indices = torch.arange(n)
        if pool_size is not None and pool_size < n:
            gen = torch.Generator().manual_seed(seed)
            indices = torch.randperm(n, generator=gen)[:pool_size].sort().values
        return torch.stack([first_view(data[int(i)]) for i in indices])
    batches = []
    count = 0
    for batch in data:
        x = first_view(batch)
        batches.append(x)
        count += len(x)
        if pool_size is not None and count >= pool_size:
            break
    if not batches:
        raise ValueError("data is empty; landmarks need at least one sample.")
    pool = torch.cat(batches)
    return pool if pool_size is None else pool[:pool_size]
