"""Landmarks by randomly pivoted Cholesky, accelerated by block rejection sampling.

RPCholesky picks each pivot with probability proportional to the diagonal of the
residual kernel matrix ``K - F F^T``, where ``F`` is the partial Cholesky factor of
the pivots picked so far. The Nyström approximation at its pivots is near-optimal
in trace norm and costs about ``(m + 1) n`` kernel entries, never the full Gram
matrix. The accelerated variant proposes a block of candidates at once and thins
them by rejection sampling, which draws exactly from the sequential distribution
while computing kernel columns in blocks.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Chen, Epperly, Tropp, Webber, 2023, Randomly pivoted Cholesky: Practical
  approximation of a kernel matrix with few entry evaluations, arXiv 2207.06503
- [2] Epperly, Tropp, Webber, 2024, Embrace rejection: Kernel matrix approximation
  by accelerated randomly pivoted Cholesky, arXiv 2410.03969
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lightly_krepes._validation import check_samples
from lightly_krepes.kernels.base import Kernel
from lightly_krepes.landmarks._checks import (
    check_block_size,
    check_kernel,
    check_num_landmarks,
)
from lightly_krepes.landmarks._sampling import (
    draw_with_replacement,
    fill_uniformly,
    make_generator,
)
from lightly_krepes.nystrom.nystrom import default_rcond

DEFAULT_BLOCK_SIZE = 100
"""Candidates proposed per round; rejections only cost ``block_size^2`` entries."""


def rpcholesky_landmarks(
    x: Tensor,
    kernel: Kernel,
    m: int,
    *,
    seed: int | torch.Generator = 0,
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: bool = False,
) -> Tensor:
    """Selects m landmarks by accelerated randomly pivoted Cholesky.

    Each round draws ``block_size`` candidates iid with probabilities proportional
    to the residual diagonal ``d``, forms the residual block
    ``H = K(s, s) - F(s, :) F(s, :)^T`` and walks through it, accepting candidate
    ``i`` with probability ``H[i, i] / d[s_i]`` and eliminating it from ``H`` (one
    Cholesky step) when accepted. The accepted pivots are distributed exactly as in
    sequential RPCholesky [2]. Their residual columns ``G`` extend the
    factor by ``G L^{-T}``, with ``L`` the Cholesky factor that the rejection loop
    built on ``H``, and ``d`` drops by the squared row norms of the new columns.

    Residual arithmetic runs in float64 on the device of ``x`` (the kernel itself in
    the dtype of ``x``). Residual entries at or below ``m * eps(dtype)`` times the
    largest kernel diagonal are numerically zero: the Nyström map would drop the
    eigenvalues they create (see :func:`~lightly_krepes.nystrom.default_rcond`). If
    the residual vanishes before m pivots, the remaining landmarks are drawn
    uniformly from the unselected samples, with a warning.

    Args:
        x: Tensor of shape (n, ...), the candidate samples, one per row.
        kernel: The kernel.
        m: Number of landmarks, 1 <= m <= n.
        seed: Integer seed or CPU ``torch.Generator``; all randomness is drawn on
            the CPU, so the result does not depend on the device of ``x``.
        block_size: Candidates proposed per round. 1 is plain sequential
            RPCholesky; larger blocks need fewer kernel calls (fewer passes over
            ``x``) and waste at most ``block_size^2`` entries per round on rejected
            candidates.
        progress: Show a tqdm progress bar over pivots.

    Returns:
        CPU long tensor of shape (m,): distinct indices into ``x`` in the order
        selected.

    Raises:
        TypeError: If ``kernel`` is not a :class:`~lightly_krepes.kernels.Kernel`
            or ``x`` is not a floating point tensor.
        ValueError: If ``x`` has NaN or infinite values, ``m`` is not in
            ``[1, n]``, or ``block_size < 1``.

    Warns:
        UserWarning: If the numerical rank of the kernel on ``x`` is below m.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Chen, Epperly, Tropp, Webber, 2023, arXiv 2207.06503
        - [2] Epperly, Tropp, Webber, 2024, arXiv 2410.03969

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> x = torch.randn(200, 3)
        >>> indices = rpcholesky_landmarks(x, RBF(lengthscale=1.0), m=20, seed=1)
        >>> indices.shape, indices.unique().numel()
        (torch.Size([20]), 20)
    """
    check_kernel(kernel)
    check_samples(x, "x")
    n = int(x.shape[0])
    m = check_num_landmarks(m, n)
    block_size = check_block_size(block_size)
    generator = make_generator(seed)
    with torch.no_grad():
        pivots = _accelerated_rpcholesky(
            x.detach(), kernel, m, block_size, generator, progress
        )
    if pivots.numel() < m:
        pivots = fill_uniformly(
            pivots,
            n,
            m,
            generator,
            method="rpcholesky",
            reason=(
                "The residual kernel diagonal became numerically zero (relative "
                "to the largest kernel diagonal)."
            ),
        )
    return pivots


def _accelerated_rpcholesky(
    x: Tensor,
    kernel: Kernel,
    m: int,
    block_size: int,
    generator: torch.Generator,
    progress: bool,
) -> Tensor:
    """Pivots of accelerated RPCholesky; fewer than m if the residual vanishes."""
    n = int(x.shape[0])
    kernel_diag = kernel.diag(x)
    residual = kernel_diag.to(torch.float64)
    scale = float(residual.max())
    tol = default_rcond(m, kernel_diag.dtype) * max(scale, 0.0)
    residual = residual.masked_fill(residual <= tol, 0.0)
    factor = residual.new_zeros(n, m)
    pivots: list[int] = []
    with tqdm(total=m, disable=not progress, desc="RPCholesky pivots") as bar:
        while len(pivots) < m and bool((residual > 0).any()):
            k = len(pivots)
            candidates = draw_with_replacement(residual, block_size, generator)
            on_device = candidates.to(x.device)
            f_cand = factor[on_device, :k]
            block = kernel(x[on_device]).to(torch.float64) - f_cand @ f_cand.T
            uniforms = torch.rand(block_size, generator=generator, dtype=torch.float64)
            accepted, chol = _rejection_cholesky(
                block.cpu(),
                residual[on_device].cpu(),
                uniforms,
                candidates,
                m - k,
                tol,
            )
            # A freshly computed residual at the noise level beats the running one,
            # whose rounding errors accumulate; zeroing it keeps such candidates
            # from being proposed again and again.
            residual[on_device[block.diagonal() <= tol]] = 0.0
            if accepted.numel() == 0:
                continue
            new = candidates[accepted]
            new_on_device = new.to(x.device)
            columns = kernel(x, x[new_on_device]).to(torch.float64)
            columns -= factor[:, :k] @ factor[new_on_device, :k].T
            new_factor = torch.linalg.solve_triangular(
                chol.to(x.device), columns.T, upper=False
            ).T
            factor[:, k : k + new.numel()] = new_factor
            residual = residual - new_factor.pow(2).sum(1)
            residual[new_on_device] = 0.0
            residual = residual.masked_fill(residual <= tol, 0.0)
            pivots.extend(int(i) for i in new)
            bar.update(new.numel())
    return torch.tensor(pivots, dtype=torch.long)


def _rejection_cholesky(
    block: Tensor,
    proposal: Tensor,
    uniforms: Tensor,
    candidates: Tensor,
    limit: int,
    tol: float,
) -> tuple[Tensor, Tensor]:
    """Rejection sampling through a residual block, the inner loop of [2].

    Args:
        block: Residual block ``H`` of shape (b, b), float64 on the CPU.
        proposal: Residual diagonal at the candidates, shape (b,), from which they
            were drawn.
        uniforms: Uniform numbers in [0, 1), shape (b,).
        candidates: Candidate indices, shape (b,), possibly repeated.
        limit: Maximum number of acceptances.
        tol: Residuals at or below it are numerically zero and never accepted.

    Returns:
        Positions of the accepted candidates in the block, shape (l,), and the
        lower Cholesky factor of ``H`` on them, shape (l, l).
    """
    h = block.clone()
    b = int(h.shape[0])
    accepted: list[int] = []
    taken: set[int] = set()
    for j in range(b):
        pivot = float(h[j, j])
        index = int(candidates[j])
        # A repeated candidate has zero residual after its first acceptance, so
        # skipping it only removes rounding noise.
        if pivot <= tol or index in taken:
            continue
        if float(uniforms[j]) * float(proposal[j]) >= pivot:
            continue
        column = h[j:, j] / math.sqrt(pivot)
        h[j:, j] = column
        h[j + 1 :, j + 1 :] -= torch.outer(column[1:], column[1:])
        accepted.append(j)
        taken.add(index)
        if len(accepted) == limit:
            break
    positions = torch.tensor(accepted, dtype=torch.long)
    chol = h[positions][:, positions].tril()
    return positions, chol
