"""One seeded context for the package's random views.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seeds torch, NumPy and ``random`` inside, restoring their states after.

    Image transforms (torchvision, Lightly) draw from the global generators, so the
    legacy global NumPy state is the one to seed.

    Args:
        seed: The seed.

    Examples:
        >>> with seeded(0):
        ...     a = torch.rand(1)
        >>> with seeded(0):
        ...     b = torch.rand(1)
        >>> bool(a == b)
        True
    """
    py_state = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)  # noqa: NPY002
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002
