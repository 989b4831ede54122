"""One entry point for landmark selection: ``select_landmarks``.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Chen, Epperly, Tropp, Webber, 2023, arXiv 2207.06503
- [2] Epperly, Tropp, Webber, 2024, arXiv 2410.03969
- [3] Arthur, Vassilvitskii, 2007, k-means++, SODA
- [4] Musco, Musco, 2017, Recursive Sampling for the Nyström Method, arXiv 1605.07583
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lightly_krepes._inputs import gather, is_map_style, pool_indices
from lightly_krepes._validation import check_samples
from lightly_krepes.kernels.base import Kernel
from lightly_krepes.landmarks._cached import cache_on_candidates
from lightly_krepes.landmarks._checks import (
    check_block_size,
    check_kernel,
    check_num_landmarks,
)
from lightly_krepes.landmarks._sampling import make_generator
from lightly_krepes.landmarks.kmeanspp import kmeanspp_landmarks
from lightly_krepes.landmarks.leverage import leverage_landmarks
from lightly_krepes.landmarks.rpcholesky import (
    DEFAULT_BLOCK_SIZE,
    rpcholesky_landmarks,
)
from lightly_krepes.landmarks.uniform import uniform_landmarks

LANDMARK_METHODS: tuple[str, ...] = ("rpcholesky", "kmeans++", "leverage", "uniform")
"""Valid values of ``select_landmarks(method=...)``."""


def select_landmarks(
    x: Tensor | Dataset[Any],
    kernel: Kernel,
    m: int,
    method: str = "rpcholesky",
    seed: int = 0,
    pool_size: int | None = None,
    progress: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
    device: torch.device | str | None = None,
) -> Tensor:
    """Selects m distinct landmarks among the samples of ``x``.

    Methods:

    - ``"rpcholesky"`` (default): accelerated randomly pivoted Cholesky
      (:func:`rpcholesky_landmarks`), near-optimal Nyström approximations from
      about ``(m + 1) n`` kernel entries.
    - ``"kmeans++"``: D^2 seeding with kernel distances
      (:func:`kmeanspp_landmarks`), ``m n`` entries.
    - ``"leverage"``: sampling by approximate ridge leverage scores with
      ``lambda = trace(K) / m`` and a uniform sketch of ``min(n, 2 m)`` samples
      (:func:`leverage_landmarks`), ``(2 m + 1) n`` entries.
    - ``"uniform"``: a uniform random subset (:func:`uniform_landmarks`); no
      kernel entries and no sample is read.

    With ``pool_size`` the method runs on a uniform random pool of that many
    samples, which bounds time and memory on large data sets (the brief's advice
    for RPCholesky); the indices are mapped back to ``x``. The pool is the one
    :func:`lightly_krepes._inputs.collect_pool` draws for the same seed, so
    ``select_landmarks(x, ..., seed=s, pool_size=p)`` picks the landmarks of
    ``KernelBackbone.from_data(x, ..., seed=s, pool_size=p)``. A data set is read
    only at the pool's items. If the kernel's numerical rank on the candidates is below
    m (e.g. duplicated samples), the missing landmarks are drawn uniformly from the
    unselected candidates and a UserWarning says so.

    Args:
        x: Tensor of shape (n, ...), one sample per row, or a map-style data set of
            length n (``__len__`` and ``__getitem__``, e.g.
            ``lightly.data.LightlyDataset``) whose items are tensors, tuples whose
            first element is a tensor (e.g. ``(image, label)``) or Lightly
            multi-view items ``([view0, ...], label, filename)`` (first view).
        kernel: The kernel.
        m: Number of landmarks, 1 <= m <= n (and m <= ``pool_size``).
        method: One of :data:`LANDMARK_METHODS`.
        seed: Seed of a CPU ``torch.Generator`` that draws all randomness; the same
            seed gives the same landmarks on every run and device.
        pool_size: If given and smaller than n, select within a uniform random
            pool of this many samples.
        progress: Show a tqdm progress bar over pivots ("rpcholesky" and
            "kmeans++").
        block_size: Candidates per round of accelerated RPCholesky; 1 is plain
            sequential RPCholesky. Ignored by the other methods.
        device: Device to move the candidate samples to before evaluating the
            kernel (e.g. the device of an empirical NTK's network); None keeps
            them where they are.

    Returns:
        CPU long tensor of shape (m,): distinct indices into ``x`` in the order
        selected.

    Raises:
        TypeError: If ``kernel`` is not a Kernel, ``x`` is neither a tensor nor a
            map-style data set, the samples are not floating point tensors, or a
            data set item holds no tensor (e.g. a PIL image: add a ``ToTensor``
            transform).
        ValueError: If ``x`` is empty or has NaN or infinite values, ``m < 1``,
            ``m > n``, ``pool_size < m``, ``block_size < 1``, the method is
            unknown, or data set items differ in shape.

    Warns:
        UserWarning: If the numerical rank of the kernel on the candidates is below
            m.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Chen, Epperly, Tropp, Webber, 2023, arXiv 2207.06503
        - [2] Epperly, Tropp, Webber, 2024, arXiv 2410.03969
        - [3] Arthur, Vassilvitskii, 2007, SODA
        - [4] Musco, Musco, 2017, arXiv 1605.07583

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> x = torch.randn(500, 3)
        >>> indices = select_landmarks(x, RBF(lengthscale=1.0), m=20, pool_size=200)
        >>> indices.shape, indices.unique().numel()
        (torch.Size([20]), 20)
        >>> landmarks = x[indices]
    """
    if method not in LANDMARK_METHODS:
        raise ValueError(
            f"Unknown landmark selection method {method!r}. Valid methods: "
            f"{', '.join(repr(name) for name in LANDMARK_METHODS)}."
        )
    check_kernel(kernel)
    n = _num_samples(x)
    m = check_num_landmarks(m, n)
    block_size = check_block_size(block_size)
    generator = make_generator(seed)
    _check_pool_size(pool_size, m, n)
    # The package's one pool sampler, with a generator of its own for an integer
    # seed: the pool equals collect_pool(x, pool_size, seed)'s, and selecting in
    # it equals select_landmarks(pool, seed=seed), as KernelBackbone.from_data does.
    pool = pool_indices(n, pool_size, seed)
    num_candidates = n if pool is None else int(pool.numel())
    if method == "uniform":
        local = uniform_landmarks(num_candidates, m, seed=generator)
    else:
        candidates = gather(x, pool, name="x")
        if device is not None:
            candidates = candidates.to(device)
        cached = cache_on_candidates(kernel, candidates)
        if cached is not None:
            candidates, kernel = cached
        if method == "rpcholesky":
            local = rpcholesky_landmarks(
                candidates,
                kernel,
                m,
                seed=generator,
                block_size=block_size,
                progress=progress,
            )
        elif method == "kmeans++":
            local = kmeanspp_landmarks(
                candidates, kernel, m, seed=generator, progress=progress
            )
        else:
            local = leverage_landmarks(candidates, kernel, m, seed=generator)
    return local if pool is None else pool[local]


def _num_samples(x: Tensor | Dataset[Any]) -> int:
    """Number of samples of a tensor or data set, rejecting empty and bad input."""
    if isinstance(x, Tensor):
        check_samples(x, "x")
    elif not is_map_style(x):
        raise TypeError(
            f"x must be a tensor of shape (n, ...) or a map-style data set with "
            f"__len__ and __getitem__ (e.g. lightly.data.LightlyDataset), got "
            f"{type(x).__name__}. The landmarks are returned as indices into x; for "
            f"a DataLoader, collect a pool first with "
            f"lightly_krepes._inputs.collect_pool(loader, pool_size, seed)."
        )
    n = len(x)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError(
            "x is empty: there are no samples to select landmarks from. Pass at "
            "least m samples."
        )
    return n


def _check_pool_size(pool_size: int | None, m: int, n: int) -> None:
    if pool_size is None:
        return
    if isinstance(pool_size, bool) or not isinstance(pool_size, int):
        raise TypeError(
            f"pool_size must be an integer or None, got {type(pool_size).__name__}."
        )
    if pool_size < m:
        raise ValueError(
            f"pool_size={pool_size} is smaller than m={m}: the landmarks are chosen "
            f"within the pool. Raise pool_size to at least m, lower m, or pass "
            f"pool_size=None to use all {n} samples."
        )
