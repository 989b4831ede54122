"""Feature kernels evaluated on features computed once per candidate set.

Landmark selection asks for many kernel columns of the same candidates. For feature
kernels (the empirical NTK) each call would recompute the candidates' features (a
forward and backward pass over the pool); caching them turns every column into one
contraction. An :class:`~lightly_krepes.kernels.InducedRBF` of a feature kernel
needs only the wrapped kernel's values, so it runs on the same cache.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightly_krepes.kernels.base import FeatureKernel, Kernel
from lightly_krepes.kernels.features import KernelFeatures
from lightly_krepes.kernels.induced_rbf import InducedRBF

DEFAULT_CACHE_BYTES = 2 * 1024**3
"""Largest feature cache built for landmark selection (2 GiB)."""


class CachedFeatureKernel(Kernel):
    """A feature kernel on fixed candidates, addressed by their positions.

    Inputs are candidate positions as a float64 tensor of shape (k, 1) (see
    :meth:`positions`), so the selection algorithms can index and pass them like
    samples.

    Args:
        features: Features of the n candidates.
        chunk_size: Rows per block.
    """

    def __init__(self, features: KernelFeatures, chunk_size: int) -> None:
        super().__init__(chunk_size=chunk_size)
        self.features = features

    @staticmethod
    def build(
        kernel: Kernel, x: Tensor, max_bytes: int = DEFAULT_CACHE_BYTES
    ) -> CachedFeatureKernel | None:
        """Caches the features of ``x`` if ``kernel`` has features that fit.

        Args:
            kernel: The kernel.
            x: Candidates, shape (n, ...).
            max_bytes: Memory budget of the cache.

        Returns:
            The cached kernel, or None if the kernel has no features or the cache
            would exceed ``max_bytes`` (estimated from the first chunk).
        """
        if not (kernel.has_features and isinstance(kernel, FeatureKernel)):
            return None
        with torch.no_grad():
            head = kernel.features(x[: kernel.chunk_size])
            if head.nbytes / len(head) * x.shape[0] > max_bytes:
                return None
            rest = (
                kernel.features(x[kernel.chunk_size :]) if len(x) > len(head) else None
            )
        features = head if rest is None else KernelFeatures.cat([head, rest])
        return CachedFeatureKernel(features, chunk_size=kernel.chunk_size)

    def positions(self) -> Tensor:
        """All candidate positions, shape (n, 1), float64."""
        n = len(self.features)
        device = (
            self.features.dense.device
            if self.features.dense is not None
            else self.features.factors[0].a.device
        )
        return torch.arange(n, dtype=torch.float64, device=device)[:, None]

    def _gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        a = self.features.index(x1[:, 0].long())
        return a.cross(self.features.index(x2[:, 0].long()))

    def _diag(self, x: Tensor) -> Tensor:
        return self.features.index(x[:, 0].long()).sqnorms()


def cache_on_candidates(
    kernel: Kernel, x: Tensor, max_bytes: int = DEFAULT_CACHE_BYTES
) -> tuple[Tensor, Kernel] | None:
    """``kernel`` on the positions of the candidates ``x``, features computed once.

    Args:
        kernel: The kernel.
        x: Candidates, shape (n, ...).
        max_bytes: Memory budget of the cache.

    Returns:
        ``(positions, cached kernel)`` with positions of shape (n, 1), or None when
        nothing can be cached (see :meth:`CachedFeatureKernel.build`).
    """
    if isinstance(kernel, InducedRBF):
        inner = cache_on_candidates(kernel.kernel, x, max_bytes)
        if inner is None:
            return None
        positions, cached = inner
        return positions, InducedRBF(cached, kernel.lengthscale)
    built = CachedFeatureKernel.build(kernel, x, max_bytes)
    return None if built is None else (built.positions(), built)
