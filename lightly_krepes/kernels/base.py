"""The kernel interface shared by the whole package.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lightly_krepes._validation import (
    check_same_sample_shape,
    check_samples,
)
from lightly_krepes.kernels.features import KernelFeatures


class Kernel(nn.Module, ABC):
    """Base class of all kernels: ``kernel(x1, x2)`` is the ``(n1, n2)`` Gram matrix.

    Subclasses implement :meth:`_gram` and :meth:`_diag` on validated inputs; this
    class validates the inputs, splits them into row chunks of at most
    ``chunk_size`` samples so that memory stays bounded, and returns an exactly
    symmetric matrix when ``x2`` is omitted. Results are differentiable with
    respect to both inputs.

    Args:
        chunk_size: Maximum number of rows of ``x1`` and of ``x2`` per block.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> x = torch.randn(5, 3)
        >>> RBF(lengthscale=1.0)(x).shape
        torch.Size([5, 5])
    """

    def __init__(self, chunk_size: int = 4096) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
        self.chunk_size = chunk_size

    def __call__(self, x1: Tensor, x2: Tensor | None = None) -> Tensor:
        # Typed wrapper around nn.Module.__call__ (hooks still run).
        gram: Tensor = super().__call__(x1, x2)
        return gram

    def forward(self, x1: Tensor, x2: Tensor | None = None) -> Tensor:
        """Computes the Gram matrix ``K[i, j] = k(x1[i], x2[j])``.

        Args:
            x1: Tensor of shape (n1, ...), one sample per row.
            x2: Tensor of shape (n2, ...). Defaults to ``x1``, in which case the
                result is exactly symmetric.

        Returns:
            Tensor of shape (n1, n2).
        """
        check_samples(x1, "x1")
        if x2 is None:
            return self._symmetric_gram(x1)
        check_samples(x2, "x2")
        check_same_sample_shape(x1, x2)
        return self._cross_gram(x1, x2)

    def _cross_gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        c = self.chunk_size
        rows = []
        for i in range(0, x1.shape[0], c):
            a = x1[i : i + c]
            rows.append(
                torch.cat(
                    [self._gram(a, x2[j : j + c]) for j in range(0, x2.shape[0], c)],
                    dim=1,
                )
            )
        return torch.cat(rows, dim=0)

    def diag(self, x: Tensor) -> Tensor:
        """Computes the diagonal ``k(x[i], x[i])`` without the full Gram matrix.

        Args:
            x: Tensor of shape (n, ...).

        Returns:
            Tensor of shape (n,).
        """
        check_samples(x, "x")
        c = self.chunk_size
        return torch.cat([self._diag(x[i : i + c]) for i in range(0, x.shape[0], c)])

    def _symmetric_gram(self, x: Tensor) -> Tensor:
        # Only blocks on and above the diagonal are computed; the lower ones are
        # their transposes, so the result is symmetric bit for bit.
        c = self.chunk_size
        starts = list(range(0, x.shape[0], c))
        blocks: dict[tuple[int, int], Tensor] = {}
        for bi, i in enumerate(starts):
            for bj in range(bi, len(starts)):
                j = starts[bj]
                block = self._gram(x[i : i + c], x[j : j + c])
                if bi == bj:
                    block = 0.5 * (block + block.T)
                blocks[(bi, bj)] = block
        rows = [
            torch.cat(
                [
                    blocks[(bi, bj)] if bj >= bi else blocks[(bj, bi)].T
                    for bj in range(len(starts))
                ],
                dim=1,
            )
            for bi in range(len(starts))
        ]
        return torch.cat(rows, dim=0)

    def against(self, fixed: Tensor) -> Callable[[Tensor], Tensor]:
        """``x -> k(x, fixed)`` for many batches against one fixed set.

        Kernels that can compute ``fixed``'s side once override this
        (:class:`~lightly_krepes.kernels.InducedRBF`); Nyström calls it for its
        landmarks.

        Args:
            fixed: Tensor (m, ...), e.g. landmarks; no gradient flows to it.

        Returns:
            A function from a validated batch (n, ...) to its rows (n, m).
        """
        return lambda x: self._cross_gram(x, fixed)

    @property
    def has_features(self) -> bool:
        """Whether the kernel exposes explicit features (see :class:`FeatureKernel`)."""
        return False

    @abstractmethod
    def _gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Gram block of two validated chunks, shape (n1, n2)."""

    @abstractmethod
    def _diag(self, x: Tensor) -> Tensor:
        """Diagonal of a validated chunk, shape (n,)."""


class FeatureKernel(Kernel):
    """A kernel with explicit, possibly factored features: ``k(x, y) = <F(x), F(y)>``.

    Gradient inner-product kernels (the empirical NTK, the linear kernel) are of this
    kind. Exposing the features lets :class:`~lightly_krepes.nystrom.Nystrom` fold
    the landmark side into one matrix, so that a query costs one feature pass plus a
    contraction, and lets the Gram matrix reuse the features of each chunk.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
    """

    @property
    def has_features(self) -> bool:
        """Whether the kernel exposes explicit features."""
        return True

    def features(self, x: Tensor) -> KernelFeatures:
        """Computes the features of a batch after validating it.

        Args:
            x: Tensor of shape (n, ...).

        Returns:
            :class:`KernelFeatures` of n samples.
        """
        check_samples(x, "x")
        c = self.chunk_size
        return KernelFeatures.cat(
            [self._features(x[i : i + c]) for i in range(0, x.shape[0], c)]
        )

    @abstractmethod
    def _features(self, x: Tensor) -> KernelFeatures:
        """Features of a validated chunk."""

    def _gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self._features(x1).cross(self._features(x2))

    def _cross_gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        # Wrappers (Normalized, SumKernel) have features only when their parts do;
        # otherwise the plain blockwise Gram applies.
        if not self.has_features:
            return super()._cross_gram(x1, x2)
        # Features of x2 are computed once, not once per row chunk of x1; memory
        # grows with x2's features (use Nystrom for large x2).
        c = self.chunk_size
        right = [self._features(x2[j : j + c]) for j in range(0, x2.shape[0], c)]
        rows = []
        for i in range(0, x1.shape[0], c):
            left = self._features(x1[i : i + c])
            rows.append(torch.cat([left.cross(f) for f in right], dim=1))
        return torch.cat(rows, dim=0)

    def _diag(self, x: Tensor) -> Tensor:
        return self._features(x).sqnorms()

    def _symmetric_gram(self, x: Tensor) -> Tensor:
        if not self.has_features:
            return super()._symmetric_gram(x)
        # Features of each chunk are computed once instead of once per block.
        c = self.chunk_size
        feats = [self._features(x[i : i + c]) for i in range(0, x.shape[0], c)]
        rows: list[Tensor] = []
        for bi, fa in enumerate(feats):
            row = []
            for bj, fb in enumerate(feats):
                if bj < bi:
                    row.append(rows[bj][:, bi * c : bi * c + len(fa)].T)
                    continue
                block = fa.cross(fb)
                row.append(0.5 * (block + block.T) if bi == bj else block)
            rows.append(torch.cat(row, dim=1))
        return torch.cat(rows, dim=0)
