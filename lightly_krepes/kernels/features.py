"""Explicit, possibly factored kernel features.

A feature kernel is ``k(x, y) = <F(x), F(y)>``. ``F`` has a dense part (a matrix with
one row per sample) and structured parts. A structured part stands for per-sample
outer-product features ``sum_t b_t a_t^T`` (the per-sample gradient of a linear or
convolutional layer: back-propagated signal ``b`` times layer input ``a`` at each
position ``t``) without forming them; their inner product is

    <F(x), F(y)> = sum_{t, s} (a_x[t] . a_y[s]) (b_x[t] . b_y[s]),

which costs ``T^2 (d_a + d_b)`` per pair instead of ``d_a * d_b``.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class Factor:
    """Per-sample outer-product features ``sum_t b[t] a[t]^T`` kept factored.

    Attributes:
        a: Tensor of shape (n, T, d_a), e.g. layer inputs (with a ones column for
            the bias).
        b: Tensor of shape (n, T, d_b), e.g. back-propagated signals.
    """

    a: Tensor
    b: Tensor

    def cross(self, other: Factor) -> Tensor:
        """Inner products with the features of ``other``, shape (n1, n2)."""
        if self.a.shape[1] == 1:
            # One position: the Gram matrix of the outer products is the
            # element-wise product of two small Gram matrices.
            return (self.a[:, 0] @ other.a[:, 0].T) * (self.b[:, 0] @ other.b[:, 0].T)
        ga = torch.einsum("ita,jsa->ijts", self.a, other.a)
        gb = torch.einsum("itb,jsb->ijts", self.b, other.b)
        return (ga * gb).sum(dim=(2, 3))

    def sqnorms(self) -> Tensor:
        """Squared feature norms, shape (n,)."""
        if self.a.shape[1] == 1:
            return self.a[:, 0].pow(2).sum(1) * self.b[:, 0].pow(2).sum(1)
        ga = torch.einsum("ita,isa->its", self.a, self.a)
        gb = torch.einsum("itb,isb->its", self.b, self.b)
        return (ga * gb).sum(dim=(1, 2))

    def materialize(self) -> Tensor:
        """The dense features ``sum_t b[t] a[t]^T`` flattened, shape (n, d_b * d_a)."""
        return torch.einsum("ntb,nta->nba", self.b, self.a).flatten(1)


@dataclass(frozen=True)
class KernelFeatures:
    """Features of n samples: a dense block and factored blocks.

    Attributes:
        dense: Tensor of shape (n, D) or None.
        factors: Factored blocks, each describing n samples.
    """

    dense: Tensor | None = None
    factors: tuple[Factor, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.dense is None and not self.factors:
            raise ValueError("KernelFeatures needs a dense block or factors.")

    def __len__(self) -> int:
        if self.dense is not None:
            return int(self.dense.shape[0])
        return int(self.factors[0].a.shape[0])

    def cross(self, other: KernelFeatures) -> Tensor:
        """Gram matrix ``<F(x_i), F(y_j)>`` between two feature sets, shape (n1, n2)."""
        out: Tensor | None = None
        if self.dense is not None and other.dense is not None:
            out = self.dense @ other.dense.T
        for fa, fb in zip(self.factors, other.factors, strict=True):
            block = fa.cross(fb)
            out = block if out is None else out + block
        assert out is not None
        return out

    def sqnorms(self) -> Tensor:
        """Squared norms ``<F(x_i), F(x_i)>``, shape (n,)."""
        out: Tensor | None = None
        if self.dense is not None:
            out = self.dense.pow(2).sum(1)
        for f in self.factors:
            out = f.sqnorms() if out is None else out + f.sqnorms()
        assert out is not None
        return out

    def scale(self, s: Tensor) -> KernelFeatures:
        """Multiplies each sample's features by ``s[i]`` (shape (n,))."""
        return KernelFeatures(
            dense=None if self.dense is None else self.dense * s[:, None],
            factors=tuple(Factor(f.a * s[:, None, None], f.b) for f in self.factors),
        )

    def index(self, indices: Tensor) -> KernelFeatures:
        """Features of the samples at ``indices`` (a long tensor of shape (k,))."""
        return KernelFeatures(
            dense=None if self.dense is None else self.dense[indices],
            factors=tuple(Factor(f.a[indices], f.b[indices]) for f in self.factors),
        )

    @property
    def nbytes(self) -> int:
        """Memory held by the feature tensors, in bytes."""
        tensors = [] if self.dense is None else [self.dense]
        for f in self.factors:
            tensors += [f.a, f.b]
        # Factors of one layer share their activation tensor across probes.
        unique = {id(t): t for t in tensors}.values()
        return sum(t.numel() * t.element_size() for t in unique)

    def detach(self) -> KernelFeatures:
        """Features cut from the autograd graph."""
        return KernelFeatures(
            dense=None if self.dense is None else self.dense.detach(),
            factors=tuple(Factor(f.a.detach(), f.b.detach()) for f in self.factors),
        )

    def to(self, dtype: torch.dtype) -> KernelFeatures:
        """Features cast to ``dtype``."""
        return KernelFeatures(
            dense=None if self.dense is None else self.dense.to(dtype),
            factors=tuple(Factor(f.a.to(dtype), f.b.to(dtype)) for f in self.factors),
        )

    @staticmethod
    def cat(parts: Sequence[KernelFeatures]) -> KernelFeatures:
        """Concatenates feature sets of the same layout along the sample axis."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        dense = None
        if first.dense is not None:
            dense = torch.cat([p.dense for p in parts if p.dense is not None])
        factors = tuple(
            Factor(
                torch.cat([p.factors[k].a for p in parts]),
                torch.cat([p.factors[k].b for p in parts]),
            )
            for k in range(len(first.factors))
        )
        return KernelFeatures(dense=dense, factors=factors)
