"""A weighted sum of kernels, with explicit features when every part has them.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Rasmussen and Williams, 2006, Gaussian Processes for Machine Learning,
  section 4.2.4 (sums of kernels are kernels)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from lightly_krepes._validation import check_samples
from lightly_krepes.kernels.base import FeatureKernel, Kernel
from lightly_krepes.kernels.features import Factor, KernelFeatures


class SumKernel(FeatureKernel):
    """``k(x, y) = sum_i w_i k_i(x, y)`` for kernels ``k_i`` and weights ``w_i > 0``.

    A sum of positive semi-definite kernels is one, and its feature map is the
    concatenation of the parts' maps scaled by ``sqrt(w_i)``. When every part
    exposes features (the empirical NTK, :class:`~lightly_krepes.kernels.PatchKernel`,
    the linear kernel, their :class:`~lightly_krepes.kernels.Normalized` versions)
    the sum does too, so Nyström still folds its landmarks: an eNTK of a network
    and a patch kernel of the images then cost one feature pass each per query.
    Otherwise the Gram blocks are summed. :meth:`balanced` weights the parts so
    that each contributes the same mean diagonal on a sample, since kernels of
    different origins differ in scale by orders of magnitude.

    Args:
        kernels: The parts, at least two.
        weights: One positive weight per part; None weights every part 1.

    Raises:
        TypeError: If a part is not a lightly_krepes ``Kernel``.
        ValueError: For fewer than two parts, or weights that are not one finite,
            positive number per part.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Rasmussen and Williams, 2006, section 4.2.4

    Examples:
        >>> from lightly_krepes.kernels import RBF, Linear
        >>> x = torch.randn(5, 3, dtype=torch.float64)
        >>> kernel = SumKernel([RBF(1.0), Linear()], weights=[2.0, 0.5])
        >>> torch.allclose(kernel(x), 2.0 * RBF(1.0)(x) + 0.5 * Linear()(x))
        True
    """

    def __init__(
        self, kernels: Sequence[Kernel], weights: Sequence[float] | None = None
    ) -> None:
        parts = list(kernels)
        for part in parts:
            if not isinstance(part, Kernel):
                raise TypeError(
                    f"SumKernel adds lightly_krepes Kernels, got {type(part).__name__}."
                )
        if len(parts) < 2:
            raise ValueError(
                f"SumKernel needs at least two kernels, got {len(parts)}; use the "
                f"kernel itself for one."
            )
        values = [1.0] * len(parts) if weights is None else list(weights)
        if len(values) != len(parts):
            raise ValueError(
                f"weights must hold one weight per kernel: {len(parts)} kernels, "
                f"{len(values)} weights."
            )
        for value in values:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 < value < math.inf
            ):
                raise ValueError(
                    f"weights must be finite, positive numbers (a sum of kernels "
                    f"with a negative weight need not be positive semi-definite), "
                    f"got {values}."
                )
        super().__init__(chunk_size=min(part.chunk_size for part in parts))
        self.kernels = nn.ModuleList(parts)
        # A buffer, so that the weights travel with the state_dict.
        self.register_buffer(
            "weights", torch.tensor([float(v) for v in values], dtype=torch.float64)
        )

    @classmethod
    def balanced(cls, kernels: Sequence[Kernel], x: Tensor) -> SumKernel:
        """The sum with ``w_i = 1 / mean_j k_i(x_j, x_j)``: every part weighs the same.

        Args:
            kernels: The parts, at least two.
            x: Tensor of shape (n, ...), a sample of the data (e.g. a few hundred
                pool rows).

        Returns:
            The weighted sum; each part's mean diagonal on ``x`` is 1 in it.

        Raises:
            ValueError: If a part's mean diagonal on ``x`` is not positive.
        """
        check_samples(x, "x")
        weights = []
        with torch.no_grad():
            for part in kernels:
                mean = float(part.diag(x).double().mean())
                if not 0 < mean < math.inf:
                    raise ValueError(
                        f"{type(part).__name__} has mean diagonal {mean} on x; "
                        f"balanced weights need a positive, finite one (pass "
                        f"weights to SumKernel instead)."
                    )
                weights.append(1.0 / mean)
        return cls(kernels, weights)

    @property
    def parts(self) -> list[Kernel]:
        """The summed kernels, in order."""
        return [cast(Kernel, part) for part in self.kernels]

    @property
    def has_features(self) -> bool:
        """Whether every part exposes explicit features."""
        return all(part.has_features for part in self.parts)

    def _scales(self, like: Tensor) -> list[Tensor]:
        weights = self.get_buffer("weights")
        return list(weights.to(dtype=like.dtype, device=like.device).unbind())

    def _features(self, x: Tensor) -> KernelFeatures:
        dense: list[Tensor] = []
        factors: list[Factor] = []
        for part, weight in zip(self.parts, self._scales(x), strict=True):
            if not isinstance(part, FeatureKernel):
                raise TypeError(
                    f"{type(part).__name__} has no explicit features; use the Gram "
                    f"matrix instead."
                )
            feats = part._features(x)
            root = weight.sqrt()
            if feats.dense is not None:
                dense.append(feats.dense * root)
            factors.extend(Factor(f.a * root, f.b) for f in feats.factors)
        return KernelFeatures(
            dense=torch.cat(dense, dim=1) if dense else None, factors=tuple(factors)
        )

    def _gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        if self.has_features:
            return super()._gram(x1, x2)
        scales = self._scales(x1)
        parts = zip(self.parts, scales, strict=True)
        return torch.stack([w * p._gram(x1, x2) for p, w in parts]).sum(0)

    def _diag(self, x: Tensor) -> Tensor:
        scales = self._scales(x)
        diags = [w * p._diag(x) for p, w in zip(self.parts, scales, strict=True)]
        return torch.stack(diags).sum(0)
