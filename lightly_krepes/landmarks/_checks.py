"""Argument checks shared by the landmark selection methods.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import operator

from lightly_krepes.kernels.base import Kernel


def check_kernel(kernel: object) -> None:
    """Raises a TypeError unless ``kernel`` is a lightly_krepes :class:`Kernel`.

    Args:
        kernel: Object to check.

    Raises:
        TypeError: If ``kernel`` is not a :class:`Kernel`.
    """
    if not isinstance(kernel, Kernel):
        raise TypeError(
            f"kernel must be a lightly_krepes Kernel (e.g. lightly_krepes.RBF()), got "
            f"{type(kernel).__name__}."
        )


def check_num_landmarks(m: int, n: int, source: str = "x") -> int:
    """Checks the number of landmarks against the number of candidates.

    Args:
        m: Requested number of landmarks.
        n: Number of candidate samples.
        source: How the candidates are called in the error message.

    Returns:
        ``m`` as a Python int.

    Raises:
        TypeError: If ``m`` is not an integer.
        ValueError: If ``m < 1`` or ``m > n``.
    """
    if isinstance(m, bool):
        raise TypeError(f"m must be an integer, got {m!r}.")
    try:
        m = operator.index(m)
    except TypeError:
        raise TypeError(
            f"m must be an integer number of landmarks, got {type(m).__name__}."
        ) from None
    if m < 1:
        raise ValueError(
            f"m must be at least 1, got m={m}. Ask for 1 or more landmarks."
        )
    if m > n:
        raise ValueError(
            f"m={m} distinct landmarks were requested but {source} holds only n={n} "
            f"samples. Lower m to at most {n}, or pass more samples."
        )
    return m


def check_block_size(block_size: int) -> int:
    """Checks the candidate block size of accelerated RPCholesky.

    Args:
        block_size: Number of candidate pivots drawn per round.

    Returns:
        ``block_size`` as a Python int.

    Raises:
        TypeError: If ``block_size`` is not an integer.
        ValueError: If ``block_size < 1``.
    """
    if isinstance(block_size, bool):
        raise TypeError(f"block_size must be an integer, got {block_size!r}.")
    try:
        block_size = operator.index(block_size)
    except TypeError:
        raise TypeError(
            f"block_size must be an integer, got {type(block_size).__name__}."
        ) from None
    if block_size < 1:
        raise ValueError(
            f"block_size must be at least 1, got {block_size}. Use block_size=1 for "
            f"plain sequential RPCholesky."
        )
    return block_size
