"""Gaussian kernel of the distance that another kernel induces.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Schoenberg, 1938, Metric Spaces and Positive Definite Functions
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from lightly_krepes._validation import check_positive
from lightly_krepes.kernels.base import FeatureKernel, Kernel
from lightly_krepes.kernels.features import KernelFeatures

# One chunk as the wrapped kernel sees it: its features (or the raw samples when it
# has none) and its diagonal k(x, x).
_Side = tuple[KernelFeatures | Tensor, Tensor]


class InducedRBF(Kernel):
    """``k(x, y) = exp(-d(x, y)^2 / (2 lengthscale^2))``, d the distance of a kernel.

    ``d(x, y)^2 = b(x, x) + b(y, y) - 2 b(x, y)`` is the squared distance of x and y
    in the feature space of the wrapped kernel ``b``, so ``k`` is positive definite
    for every positive definite ``b`` [1]. For a cosine-normalised kernel
    ``d^2 = 2 (1 - b)`` and ``k = exp(-(1 - b) / lengthscale^2)``: a monotone,
    sharper version of ``b`` with the same nearest neighbours. Wrapping
    ``Normalized(EmpiricalNTK(encoder))`` makes the kernel surrogate *local*: a
    representation is built mostly by the landmarks the network's gradients call
    similar, and its landmark terms cancel less (``docs/auditing.md``). With
    ``Linear()`` it is the plain :class:`~lightly_krepes.kernels.RBF`.

    The wrapped kernel's features of a fixed right-hand side (Nyström's landmarks)
    are computed once (:meth:`against`), so a query costs one feature pass.

    Args:
        kernel: The kernel ``b`` whose feature-space distance is used.
        lengthscale: Positive length scale, in the units of ``d``
            (:func:`median_lengthscale` gives the median heuristic).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Schoenberg, 1938, Trans. Amer. Math. Soc. 44

    Examples:
        >>> from lightly_krepes.kernels import RBF, Linear
        >>> x = torch.randn(5, 3, dtype=torch.float64)
        >>> torch.allclose(InducedRBF(Linear(), 2.0)(x), RBF(2.0)(x))
        True
    """

    def __init__(self, kernel: Kernel, lengthscale: float) -> None:
        if not isinstance(kernel, Kernel):
            raise TypeError(
                "InducedRBF wraps a lightly_krepes Kernel, got "
                f"{type(kernel).__name__}."
            )
        check_positive(lengthscale, "lengthscale")
        super().__init__(chunk_size=kernel.chunk_size)
        self.kernel = kernel
        self.lengthscale = float(lengthscale)

    def _side(self, x: Tensor) -> _Side:
        if isinstance(self.kernel, FeatureKernel):
            feats = self.kernel._features(x)
            return feats, feats.sqnorms()
        return x, self.kernel._diag(x)

    def _block(self, left: _Side, right: _Side) -> Tensor:
        (a, diag_a), (b, diag_b) = left, right
        if isinstance(a, KernelFeatures) and isinstance(b, KernelFeatures):
            cross = a.cross(b)
        else:
            assert isinstance(a, Tensor) and isinstance(b, Tensor)
            cross = self.kernel._gram(a, b)
        squared = (diag_a[:, None] + diag_b[None, :] - 2.0 * cross).clamp_min(0.0)
        return torch.exp(squared * (-0.5 / self.lengthscale**2))

    def _gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self._block(self._side(x1), self._side(x2))

    def _diag(self, x: Tensor) -> Tensor:
        return torch.ones(x.shape[0], dtype=x.dtype, device=x.device)

    def _rows(self, x1: Tensor, right: list[_Side]) -> Tensor:
        c = self.chunk_size
        rows = []
        for i in range(0, x1.shape[0], c):
            left = self._side(x1[i : i + c])  # once per chunk, not per right block
            rows.append(torch.cat([self._block(left, r) for r in right], 1))
        return torch.cat(rows)

    def _cross_gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        # The right-hand side's features are computed once, not once per row chunk.
        c = self.chunk_size
        return self._rows(x1, [self._side(x2[j : j + c]) for j in range(0, len(x2), c)])

    def against(self, fixed: Tensor) -> Callable[[Tensor], Tensor]:
        """``x -> k(x, fixed)``, with the wrapped kernel's side of ``fixed`` kept.

        Args:
            fixed: Tensor (m, ...), e.g. landmarks; no gradient flows to it.

        Returns:
            A function from a validated batch (n, ...) to its rows (n, m).
        """
        c = self.chunk_size
        with torch.no_grad():
            right = [self._side(fixed[j : j + c]) for j in range(0, len(fixed), c)]
        return lambda x: self._rows(x, right)

    def extra_repr(self) -> str:
        return f"lengthscale={self.lengthscale:.4g}"


def median_lengthscale(kernel: Kernel, x: Tensor, scale: float = 1.0) -> float:
    """The median heuristic in the feature space of ``kernel``, times ``sqrt(scale)``.

    ``lengthscale^2 = scale * median(d^2) / 2`` over the pairs of the two halves of
    ``x``, d the distance that ``kernel`` induces (see :class:`InducedRBF`); at
    ``scale = 1`` a typical pair has ``k = exp(-1)``, smaller values are more local.

    Args:
        kernel: The wrapped kernel ``b``.
        x: Tensor (n, ...) of n >= 2 samples, e.g. a seeded sample of the data.
        scale: Positive factor on the squared length scale.

    Returns:
        The length scale.

    Raises:
        ValueError: If ``x`` has fewer than 2 samples, ``scale`` is not positive,
            or every pair of samples is at distance 0.

    Examples:
        >>> from lightly_krepes.kernels import Linear
        >>> x = torch.tensor([[0.0], [1.0], [3.0], [4.0]], dtype=torch.float64)
        >>> round(median_lengthscale(Linear(), x) ** 2, 6)  # d^2: 9, 16, 4, 9
        4.5
    """
    check_positive(scale, "scale")
    if len(x) < 2:
        raise ValueError(
            f"median_lengthscale needs at least 2 samples, got {len(x)}; pass more."
        )
    half = len(x) // 2
    a, b = x[:half], x[half : 2 * half]
    with torch.no_grad():
        squared = kernel.diag(a)[:, None] + kernel.diag(b)[None, :] - 2 * kernel(a, b)
    median = float(squared.clamp_min(0.0).double().median())
    if not median > 0:
        raise ValueError(
            "The median squared distance of the samples under the kernel is 0 (the "
            "samples coincide in its feature space); pass more diverse samples."
        )
    return math.sqrt(scale * median / 2.0)
