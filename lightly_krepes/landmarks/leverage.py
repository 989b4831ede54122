"""Landmarks sampled by approximate ridge leverage scores.

The ridge leverage score of sample i is ``tau_i = [K (K + lambda I)^{-1}]_ii``, the
importance of i for a ridge-regularised kernel fit; sampling Nyström landmarks by
it gives spectral approximation guarantees with about ``d_eff(lambda) log n``
landmarks. The exact scores need the full Gram matrix; a uniform sketch S of s
samples gives estimates from ``n s`` kernel entries,

    tau_i ~ (K_ii - K_iS (K_SS + lambda (s / n) I)^{-1} K_Si) / lambda,

one level of the recursive scheme of [1]. The ridge is scaled by ``s / n``, the
squared inverse weight of a uniformly sampled column, because ``K_SS`` stands in
for a Gram matrix of all n samples (about n / s times larger); with the unscaled
ridge a cluster of many similar samples would keep a large residual and swamp the
scores of isolated samples.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Musco, Musco, 2017, Recursive Sampling for the Nyström Method, NeurIPS,
  arXiv 1605.07583
- [2] Alaoui, Mahoney, 2015, Fast Randomized Kernel Ridge Regression with
  Statistical Guarantees, NeurIPS
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor

from lightly_krepes._validation import check_positive, check_samples
from lightly_krepes.kernels.base import Kernel
from lightly_krepes.landmarks._checks import check_kernel, check_num_landmarks
from lightly_krepes.landmarks._sampling import (
    draw_without_replacement,
    fill_uniformly,
    make_generator,
)
from lightly_krepes.nystrom.nystrom import default_rcond


def ridge_leverage_scores(
    x: Tensor,
    kernel: Kernel,
    ridge: float,
    *,
    sketch_size: int | None = None,
    seed: int | torch.Generator = 0,
) -> Tensor:
    """Estimates ridge leverage scores from a uniform sketch.

    With ``sketch_size=None`` (or >= n) the sketch is all of ``x`` and the scores
    are exact, ``[K (K + ridge I)^{-1}]_ii``, at the price of the full Gram matrix.
    Smaller sketches give estimates from ``n * sketch_size`` entries (see the module
    docstring for the formula). The
    arithmetic runs in float64; residuals at or below ``s * eps(dtype)`` times the
    largest kernel diagonal (s the sketch size) count as zero.

    Args:
        x: Tensor of shape (n, ...), the samples, one per row.
        kernel: The kernel.
        ridge: Positive regularisation ``lambda``, on the scale of the kernel
            values (``trace(K) / m`` targets about m effective dimensions).
        sketch_size: Number of uniformly drawn sketch samples; None uses all.
        seed: Integer seed or CPU ``torch.Generator`` for the sketch.

    Returns:
        Tensor of shape (n,), float64 on the device of ``x``, non-negative.

    Raises:
        TypeError: If ``kernel`` is not a :class:`~lightly_krepes.kernels.Kernel`
            or ``x`` is not a floating point tensor.
        ValueError: If ``x`` is empty or has NaN or infinite values, ``ridge`` is
            not positive, or ``sketch_size < 1``.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Musco, Musco, 2017, arXiv 1605.07583
        - [2] Alaoui, Mahoney, 2015, NeurIPS

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> x = torch.randn(50, 3)
        >>> scores = ridge_leverage_scores(x, RBF(lengthscale=1.0), ridge=1.0)
        >>> bool((scores >= 0).all() and (scores <= 1).all())
        True
    """
    check_kernel(kernel)
    check_samples(x, "x")
    check_positive(ridge, "ridge")
    n = int(x.shape[0])
    if n == 0:
        raise ValueError("x is empty; pass at least one sample.")
    size = n if sketch_size is None else operator.index(sketch_size)
    if size < 1:
        raise ValueError(
            f"sketch_size must be at least 1, got {sketch_size}; None uses all "
            f"samples (exact scores)."
        )
    generator = make_generator(seed)
    with torch.no_grad():
        kernel_diag = kernel.diag(x.detach())
        return _ridge_scores(
            x.detach(), kernel, kernel_diag, float(ridge), min(size, n), generator
        )


def leverage_landmarks(
    x: Tensor,
    kernel: Kernel,
    m: int,
    *,
    seed: int | torch.Generator = 0,
    ridge: float | None = None,
    sketch_size: int | None = None,
) -> Tensor:
    """Samples m landmarks without replacement proportionally to ridge leverage.

    Scores come from :func:`ridge_leverage_scores` with a uniform sketch; the m
    landmarks are then drawn one after the other, each proportionally to the scores
    of the samples not yet drawn. Costs ``(sketch_size + 1) n`` kernel entries.
    If fewer than m samples have a positive score, the rest are drawn uniformly from
    the unselected samples, with a warning.

    Args:
        x: Tensor of shape (n, ...), the candidate samples, one per row.
        kernel: The kernel.
        m: Number of landmarks, 1 <= m <= n.
        seed: Integer seed or CPU ``torch.Generator``; all randomness is drawn on
            the CPU, so the result does not depend on the device of ``x``.
        ridge: Regularisation ``lambda``; None uses ``trace(K) / m``, so that the
            effective dimension is at most m.
        sketch_size: Size of the uniform sketch; None uses ``min(n, 2 m)``.

    Returns:
        CPU long tensor of shape (m,): distinct indices into ``x`` in the order
        drawn.

    Raises:
        TypeError: If ``kernel`` is not a :class:`~lightly_krepes.kernels.Kernel`
            or ``x`` is not a floating point tensor.
        ValueError: If ``x`` has NaN or infinite values, ``m`` is not in
            ``[1, n]``, ``ridge`` is not positive, or ``sketch_size < 1``.

    Warns:
        UserWarning: If fewer than m samples have a positive score.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Musco, Musco, 2017, arXiv 1605.07583
        - [2] Alaoui, Mahoney, 2015, NeurIPS

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> x = torch.randn(200, 3)
        >>> leverage_landmarks(x, RBF(lengthscale=1.0), m=20).shape
        torch.Size([20])
    """
    check_kernel(kernel)
    check_samples(x, "x")
    n = int(x.shape[0])
    m = check_num_landmarks(m, n)
    if ridge is not None:
        check_positive(ridge, "ridge")
    size = min(n, 2 * m) if sketch_size is None else operator.index(sketch_size)
    if size < 1:
        raise ValueError(
            f"sketch_size must be at least 1, got {sketch_size}; None uses min(n, 2 m)."
        )
    generator = make_generator(seed)
    with torch.no_grad():
        kernel_diag = kernel.diag(x.detach())
        trace = float(kernel_diag.to(torch.float64).sum())
        lam = trace / m if ridge is None else float(ridge)
        if lam > 0:
            scores = _ridge_scores(
                x.detach(), kernel, kernel_diag, lam, min(size, n), generator
            )
        else:
            # A kernel that is zero on every sample has no informative landmark.
            scores = torch.zeros(n, dtype=torch.float64)
    chosen = draw_without_replacement(scores, m, generator)
    if chosen.numel() < m:
        chosen = fill_uniformly(
            chosen,
            n,
            m,
            generator,
            method="leverage",
            reason=(
                f"Only {chosen.numel()} sample(s) have a ridge leverage score above "
                f"the numerical noise level."
            ),
        )
    return chosen


def _ridge_scores(
    x: Tensor,
    kernel: Kernel,
    kernel_diag: Tensor,
    ridge: float,
    sketch_size: int,
    generator: torch.Generator,
) -> Tensor:
    """Sketched ridge leverage scores, float64 of shape (n,)."""
    n = int(x.shape[0])
    sketch = torch.randperm(n, generator=generator)[:sketch_size].to(x.device)
    columns = kernel(x, x[sketch]).to(torch.float64)
    small = columns[sketch]
    small = 0.5 * (small + small.T)
    # An eigendecomposition instead of a Cholesky factor stays valid when rounding
    # makes the sketch Gram matrix slightly indefinite.
    eigenvalues, eigenvectors = torch.linalg.eigh(small)
    sketch_ridge = ridge * sketch_size / n
    whitened = (columns @ eigenvectors) / (
        eigenvalues.clamp_min(0.0) + sketch_ridge
    ).sqrt()
    diag = kernel_diag.to(torch.float64)
    residual = diag - whitened.pow(2).sum(1)
    tol = default_rcond(sketch_size, kernel_diag.dtype) * max(float(diag.max()), 0.0)
    scores: Tensor = residual.masked_fill(residual <= tol, 0.0) / ridge
    return scores
