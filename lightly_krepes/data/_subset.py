"""Seeded, optionally class-stratified selection of a subset of samples.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def select_indices(
    labels: NDArray[np.int64],
    max_samples: int | None,
    seed: int = 0,
    stratify: bool = True,
) -> NDArray[np.int64]:
    """Picks at most ``max_samples`` sample indices, reproducibly.

    With ``stratify=True`` every class keeps its share of the samples: class c with
    ``n_c`` of ``n`` samples gets ``floor(max_samples * n_c / n)`` of them and the
    remainder goes to the classes with the largest fractional parts (ties to the
    smaller label). Within a class, and for ``stratify=False`` over all samples, the
    choice is a uniform draw without replacement from ``numpy.random.default_rng``.
    The result is sorted, so the subset keeps the dataset's order.

    Args:
        labels: Integer labels of shape (n,).
        max_samples: Number of samples to keep. ``None`` or a value of at least n
            keeps everything.
        seed: Seed of the random draw.
        stratify: Whether to keep the class proportions.

    Returns:
        Sorted int64 indices of shape (min(max_samples, n),).

    Raises:
        ValueError: If ``max_samples`` is negative.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
        >>> idx = select_indices(labels, 4, seed=0)
        >>> np.bincount(labels[idx]).tolist()
        [2, 2]
    """
    n = int(labels.shape[0])
    if max_samples is None or max_samples >= n:
        return np.arange(n, dtype=np.int64)
    if max_samples < 0:
        raise ValueError(f"max_samples must be non-negative, got {max_samples}.")
    rng = np.random.default_rng(seed)
    if not stratify:
        chosen = rng.choice(n, size=max_samples, replace=False)
        return np.sort(chosen).astype(np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    exact = max_samples * counts / n
    quota = np.floor(exact).astype(np.int64)
    remainder = max_samples - int(quota.sum())
    # Stable sort on the negated fractional part: ties go to the smaller label.
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[:remainder]] += 1
    parts = []
    for c, q in zip(classes, quota, strict=True):
        members = np.flatnonzero(labels == c)
        parts.append(members[rng.permutation(members.shape[0])[:q]])
    return np.sort(np.concatenate(parts)).astype(np.int64)
