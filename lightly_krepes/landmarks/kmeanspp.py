"""Landmarks by k-means++ seeding in the kernel's feature space.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Arthur, Vassilvitskii, 2007, k-means++: The advantages of careful seeding,
  SODA
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lightly_krepes._validation import check_samples
from lightly_krepes.kernels.base import Kernel
from lightly_krepes.landmarks._checks import check_kernel, check_num_landmarks
from lightly_krepes.landmarks._sampling import (
    draw_with_replacement,
    fill_uniformly,
    make_generator,
)
from lightly_krepes.nystrom.nystrom import default_rcond


def kmeanspp_landmarks(
    x: Tensor,
    kernel: Kernel,
    m: int,
    *,
    seed: int | torch.Generator = 0,
    progress: bool = False,
) -> Tensor:
    """Selects m landmarks by kernel k-means++ (D^2) seeding.

    The first landmark is uniform; each next one is drawn with probability
    proportional to the squared kernel distance to the closest landmark so far,
    ``d(x, y)^2 = k(x, x) + k(y, y) - 2 k(x, y)``. This costs the diagonal plus one
    kernel column per landmark (``m n`` entries), never the full Gram matrix.
    Distances are accumulated in float64; those at or below ``m * eps(dtype)``
    times the largest kernel diagonal count as zero. If every remaining distance is
    zero before m landmarks (duplicated samples, a low-rank kernel), the rest are
    drawn uniformly from the unselected samples, with a warning.

    Args:
        x: Tensor of shape (n, ...), the candidate samples, one per row.
        kernel: The kernel.
        m: Number of landmarks, 1 <= m <= n.
        seed: Integer seed or CPU ``torch.Generator``; all randomness is drawn on
            the CPU, so the result does not depend on the device of ``x``.
        progress: Show a tqdm progress bar over landmarks.

    Returns:
        CPU long tensor of shape (m,): distinct indices into ``x`` in the order
        selected.

    Raises:
        TypeError: If ``kernel`` is not a :class:`~lightly_krepes.kernels.Kernel`
            or ``x`` is not a floating point tensor.
        ValueError: If ``x`` has NaN or infinite values or ``m`` is not in
            ``[1, n]``.

    Warns:
        UserWarning: If all remaining kernel distances vanish before m landmarks.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Arthur, Vassilvitskii, 2007, SODA

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> x = torch.randn(200, 3)
        >>> kmeanspp_landmarks(x, RBF(lengthscale=1.0), m=20).shape
        torch.Size([20])
    """
    check_kernel(kernel)
    check_samples(x, "x")
    n = int(x.shape[0])
    m = check_num_landmarks(m, n)
    generator = make_generator(seed)
    with torch.no_grad():
        centers = _kmeanspp(x.detach(), kernel, m, generator, progress)
    if centers.numel() < m:
        centers = fill_uniformly(
            centers,
            n,
            m,
            generator,
            method="kmeans++",
            reason=(
                "All remaining kernel distances to the chosen landmarks became "
                "numerically zero (relative to the largest kernel diagonal)."
            ),
        )
    return centers


def _kmeanspp(
    x: Tensor, kernel: Kernel, m: int, generator: torch.Generator, progress: bool
) -> Tensor:
    """Centres of k-means++ seeding; fewer than m if all distances vanish."""
    n = int(x.shape[0])
    kernel_diag = kernel.diag(x)
    diag = kernel_diag.to(torch.float64)
    tol = default_rcond(m, kernel_diag.dtype) * max(float(diag.max()), 0.0)
    centers = [int(torch.randint(n, (1,), generator=generator))]
    distances: Tensor | None = None
    with tqdm(total=m, disable=not progress, desc="k-means++ landmarks") as bar:
        bar.update(1)
        while len(centers) < m:
            c = centers[-1]
            column = kernel(x, x[c : c + 1])[:, 0].to(torch.float64)
            to_new = diag + diag[c] - 2.0 * column
            distances = (
                to_new if distances is None else torch.minimum(distances, to_new)
            )
            distances = distances.masked_fill(distances <= tol, 0.0)
            distances[c] = 0.0
            if not bool((distances > 0).any()):
                break
            centers.append(int(draw_with_replacement(distances, 1, generator)[0]))
            bar.update(1)
    return torch.tensor(centers, dtype=torch.long)
