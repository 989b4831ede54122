"""Landmarks drawn uniformly at random.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Williams, Seeger, 2001, Using the Nyström Method to Speed Up Kernel Machines,
  NeurIPS
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor

from lightly_krepes.landmarks._checks import check_num_landmarks
from lightly_krepes.landmarks._sampling import make_generator


def uniform_landmarks(n: int, m: int, *, seed: int | torch.Generator = 0) -> Tensor:
    """Selects m of n samples uniformly at random, without replacement.

    Needs no kernel evaluation and no access to the samples; the baseline that the
    other methods have to beat.

    Args:
        n: Number of candidate samples.
        m: Number of landmarks, 1 <= m <= n.
        seed: Integer seed or CPU ``torch.Generator``.

    Returns:
        CPU long tensor of shape (m,): distinct indices in ``[0, n)`` in the order
        drawn.

    Raises:
        TypeError: If ``n`` or ``m`` is not an integer.
        ValueError: If ``m`` is not in ``[1, n]``.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Williams, Seeger, 2001, NeurIPS

    Examples:
        >>> indices = uniform_landmarks(100, 10, seed=3)
        >>> indices.shape, indices.unique().numel()
        (torch.Size([10]), 10)
    """
    n = operator.index(n)
    m = check_num_landmarks(m, n)
    generator = make_generator(seed)
    return torch.randperm(n, generator=generator)[:m]
