"""Classic kernels on flattened inputs: RBF, Laplace, linear and polynomial.

They matter for tabular data and as baselines for the empirical NTK. Samples of any
shape are flattened to vectors.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightly_krepes._validation import check_positive
from lightly_krepes.kernels.base import FeatureKernel, Kernel
from lightly_krepes.kernels.features import KernelFeatures


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def squared_distances(x1: Tensor, x2: Tensor) -> Tensor:
    """Squared Euclidean distances between the rows of two matrices.

    Uses the GEMM expansion ``|a|^2 + |b|^2 - 2 a.b`` (clamped at zero), which is
    what makes RBF Gram matrices fast; ``torch.cdist`` would pick the same route but
    its backward pass at zero distance returns NaN.

    Args:
        x1: Tensor of shape (n1, d).
        x2: Tensor of shape (n2, d).

    Returns:
        Tensor of shape (n1, n2).
    """
    sq1 = x1.pow(2).sum(1, keepdim=True)
    sq2 = x2.pow(2).sum(1, keepdim=True)
    return (sq1 + sq2.T - 2.0 * (x1 @ x2.T)).clamp_min(0.0)


class RBF(Kernel):
    """Gaussian kernel ``k(x, y) = exp(-|x - y|^2 / (2 lengthscale^2))``.

    Args:
        lengthscale: Positive length scale. ``lengthscale = sqrt(d / 2)`` is a common
            default for standardised d-dimensional inputs.
        chunk_size: Maximum rows per block (see :class:`Kernel`).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> x = torch.randn(4, 3)
        >>> K = RBF(lengthscale=2.0)(x)
        >>> torch.allclose(K.diagonal(), torch.ones(4))
        True
    """

    def __init__(self, lengthscale: float = 1.0, chunk_size: int = 4096) -> None:
        super().__init__(chunk_size=chunk_size)
        check_positive(lengthscale, "lengthscale")
        self.lengthscale = float(lengthscale)

    def _gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        a, b = _flat(x1), _flat(x2)
        scale = -0.5 / self.lengthscale**2
        if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
            return torch.exp(squared_distances(a, b) * scale)
        # Without autograd the block is built in place: one GEMM into the output
        # and no (n1, n2) temporaries, which is most of the time for large blocks.
        out = torch.addmm(a.pow(2).sum(1, keepdim=True), a, b.T, alpha=-2.0)
        out.add_(b.pow(2).sum(1)[None, :]).clamp_min_(0.0)
        return out.mul_(scale).exp_()

    def _diag(self, x: Tensor) -> Tensor:
        return torch.ones(x.shape[0], dtype=x.dtype, device=x.device)

    def extra_repr(self) -> str:
        return f"lengthscale={self.lengthscale}"


class Laplace(Kernel):
    """Laplace kernel ``k(x, y) = exp(-|x - y|_1 / lengthscale)``.

    The L1 distance matches scikit-learn's ``laplacian_kernel`` with
    ``gamma = 1 / lengthscale``.

    Args:
        lengthscale: Positive length scale.
        chunk_size: Maximum rows per block (see :class:`Kernel`).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> x = torch.randn(4, 3)
        >>> Laplace(lengthscale=3.0)(x).shape
        torch.Size([4, 4])
    """

    def __init__(self, lengthscale: float = 1.0, chunk_size: int = 1024) -> None:
        super().__init__(chunk_size=chunk_size)
        check_positive(lengthscale, "lengthscale")
        self.lengthscale = float(lengthscale)

    def _gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        a, b = _flat(x1), _flat(x2)
        if a.dtype in (torch.float16, torch.bfloat16):
            # torch.cdist has no half-precision kernels on CPU.
            a, b = a.float(), b.float()
        distances = torch.cdist(a, b, p=1.0)
        return torch.exp(distances / -self.lengthscale).to(x1.dtype)

    def _diag(self, x: Tensor) -> Tensor:
        return torch.ones(x.shape[0], dtype=x.dtype, device=x.device)

    def extra_repr(self) -> str:
        return f"lengthscale={self.lengthscale}"


class Linear(FeatureKernel):
    """Linear kernel ``k(x, y) = <x, y>`` on flattened inputs.

    Its features are the inputs themselves, so :class:`~lightly_krepes.Nystrom`
    folds the landmarks into a ``(d, r)`` matrix.

    Args:
        chunk_size: Maximum rows per block (see :class:`Kernel`).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> x = torch.randn(4, 3)
        >>> torch.allclose(Linear()(x), x @ x.T)
        True
    """

    def __init__(self, chunk_size: int = 4096) -> None:
        super().__init__(chunk_size=chunk_size)

    def _features(self, x: Tensor) -> KernelFeatures:
        return KernelFeatures(dense=_flat(x))


class Polynomial(Kernel):
    """Polynomial kernel ``k(x, y) = (scale <x, y> + offset)^degree``.

    Args:
        degree: Positive integer degree.
        scale: Positive factor on the inner product (scikit-learn's ``gamma``).
        offset: Non-negative constant (scikit-learn's ``coef0``); non-negative keeps
            the kernel positive semi-definite.
        chunk_size: Maximum rows per block (see :class:`Kernel`).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> x = torch.randn(4, 3)
        >>> torch.allclose(Polynomial(degree=1, offset=0.0)(x), x @ x.T)
        True
    """

    def __init__(
        self,
        degree: int = 3,
        scale: float = 1.0,
        offset: float = 1.0,
        chunk_size: int = 4096,
    ) -> None:
        super().__init__(chunk_size=chunk_size)
        if int(degree) != degree or degree < 1:
            raise ValueError(f"degree must be a positive integer, got {degree}.")
        check_positive(scale, "scale")
        if not offset >= 0:
            raise ValueError(
                f"offset must be non-negative so that the kernel stays positive "
                f"semi-definite, got {offset}."
            )
        self.degree = int(degree)
        self.scale = float(scale)
        self.offset = float(offset)

    def _gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        return (self.scale * (_flat(x1) @ _flat(x2).T) + self.offset) ** self.degree

    def _diag(self, x: Tensor) -> Tensor:
        return (self.scale * _flat(x).pow(2).sum(1) + self.offset) ** self.degree

    def extra_repr(self) -> str:
        return f"degree={self.degree}, scale={self.scale}, offset={self.offset}"
