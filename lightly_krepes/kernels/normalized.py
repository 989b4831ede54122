"""Cosine normalisation of a kernel.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Engel et al., 2023, Faithful and Efficient Explanations for Neural Networks via
  Neural Tangent Kernel Surrogate Models, arXiv 2305.14585
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightly_krepes.kernels.base import FeatureKernel, Kernel
from lightly_krepes.kernels.features import KernelFeatures


def _inverse_sqrt(d: Tensor) -> Tensor:
    # Samples with k(x, x) = 0 (e.g. zero gradient) get zero features instead of NaN.
    tiny = torch.finfo(d.dtype).tiny
    return torch.where(d > 0, d.clamp_min(tiny).rsqrt(), torch.zeros_like(d))


class Normalized(FeatureKernel):
    """Cosine-normalised kernel ``k(x, y) / sqrt(k(x, x) k(y, y))``.

    The result has unit diagonal and values in ``[-1, 1]``; published comparisons
    find cosine-normalised NTK surrogates markedly more faithful to the network [1].
    When the wrapped kernel exposes features (the empirical NTK, the linear kernel)
    the normalised kernel does too, so Nyström still folds its landmarks.
    Samples with ``k(x, x) = 0`` have zero similarity to everything.

    Args:
        kernel: The kernel to normalise.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Engel et al., 2023, arXiv 2305.14585

    Examples:
        >>> from lightly_krepes.kernels import Linear
        >>> x = torch.randn(4, 3)
        >>> K = Normalized(Linear())(x)
        >>> torch.allclose(K.diagonal(), torch.ones(4))
        True
    """

    def __init__(self, kernel: Kernel) -> None:
        if not isinstance(kernel, Kernel):
            raise TypeError(
                "Normalized wraps a lightly_krepes Kernel, got "
                f"{type(kernel).__name__}."
            )
        super().__init__(chunk_size=kernel.chunk_size)
        self.kernel = kernel

    def forward(self, x1: Tensor, x2: Tensor | None = None) -> Tensor:
        # Cauchy-Schwarz holds exactly only in exact arithmetic.
        return super().forward(x1, x2).clamp(-1.0, 1.0)

    @property
    def has_features(self) -> bool:
        """Whether the wrapped kernel exposes explicit features."""
        return self.kernel.has_features

    def _features(self, x: Tensor) -> KernelFeatures:
        if not isinstance(self.kernel, FeatureKernel):
            raise TypeError(
                f"{type(self.kernel).__name__} has no explicit features; use the Gram "
                f"matrix instead."
            )
        feats = self.kernel._features(x)
        return feats.scale(_inverse_sqrt(feats.sqnorms()))

    def _gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        if self.has_features:
            return super()._gram(x1, x2)
        k = self.kernel._gram(x1, x2)
        s1 = _inverse_sqrt(self.kernel._diag(x1))
        s2 = _inverse_sqrt(self.kernel._diag(x2))
        return k * s1[:, None] * s2[None, :]

    def _diag(self, x: Tensor) -> Tensor:
        return (self.kernel._diag(x) > 0).to(x.dtype)
