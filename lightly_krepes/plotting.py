"""Pictures of representer landmarks (matplotlib, saved as PNG).

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files only

import matplotlib.pyplot as plt
import torch
from torch import Tensor


def _as_image(x: Tensor) -> Any:
    """A (C, H, W) or (H, W) tensor as an (H, W[, 3]) array for ``imshow``."""
    x = x.detach().float().cpu()
    if x.dim() == 3:
        x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
    low, high = x.min(), x.max()
    return ((x - low) / (high - low).clamp_min(1e-12)).numpy()


def plot_representer_landmarks(
    images: Tensor,
    landmark_images: Tensor,
    top_indices: Tensor,
    top_scores: Tensor,
    path: str | Path,
    titles: Sequence[str] | None = None,
    landmark_titles: Sequence[str] | None = None,
) -> Path:
    """Saves a grid: each row a query image beside its top representer landmarks.

    Args:
        images: Tensor of shape (B, C, H, W) or (B, H, W), the query images.
        landmark_images: Tensor of shape (m, C, H, W) or (m, H, W).
        top_indices: Long tensor of shape (B, k), landmark indices per query.
        top_scores: Tensor of shape (B, k), the scores shown under the landmarks.
        path: Output PNG path; parent folders are created.
        titles: Optional B titles of the queries (e.g. their labels).
        landmark_titles: Optional m titles of the landmarks (e.g. their labels).

    Returns:
        The path written.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
    """
    if top_indices.shape != top_scores.shape or top_indices.shape[0] != len(images):
        raise ValueError(
            f"top_indices {tuple(top_indices.shape)} and top_scores "
            f"{tuple(top_scores.shape)} must both have shape (B, k) with B = "
            f"{len(images)} query images."
        )
    rows, k = top_indices.shape
    top_scores = top_scores.detach().cpu()
    fig, axes = plt.subplots(
        rows, k + 1, figsize=(1.6 * (k + 1), 1.75 * rows), squeeze=False
    )
    for row in range(rows):
        axes[row, 0].imshow(_as_image(images[row]), cmap="gray")
        axes[row, 0].set_title(titles[row] if titles else "query", fontsize=8)
        for col in range(k):
            j = int(top_indices[row, col])
            ax = axes[row, col + 1]
            ax.imshow(_as_image(landmark_images[j]), cmap="gray")
            label = f"{landmark_titles[j]} " if landmark_titles else ""
            ax.set_title(f"{label}{float(top_scores[row, col]):.2g}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("query | top representer landmarks (score)", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def top_representer_landmarks(
    contributions: Tensor, k: int, score: str = "projection"
) -> tuple[Tensor, Tensor]:
    """Top-k landmarks of each query by a scalar score of ``c_j(x)``.

    Scores of the contributions ``c_j(x) = alpha_j k(l_j, x)``:

    - ``"projection"``: ``<c_j(x), u(x)>`` with ``u(x)`` the unit vector of
      ``sum_j c_j(x) = f(x) - gamma``; the scores sum to ``|f(x) - gamma|``, so
      they say how much of the representation each landmark builds (negative:
      landmarks that pull against it).
    - ``"norm"``: ``|c_j(x)|``, the size of the term whatever its direction.

    Args:
        contributions: Tensor of shape (B, m, h) from
            :meth:`~lightly_krepes.KernelBackbone.contributions`.
        k: Number of landmarks per query.
        score: ``"projection"`` or ``"norm"``.

    Returns:
        Indices (B, k) and scores (B, k), largest first.
    """
    if not 1 <= k <= contributions.shape[1]:
        raise ValueError(
            f"k must lie between 1 and the number of landmarks "
            f"({contributions.shape[1]}), got {k}."
        )
    if score == "projection":
        direction = torch.nn.functional.normalize(contributions.sum(1), dim=1)
        scores = torch.einsum("bmh,bh->bm", contributions, direction)
    elif score == "norm":
        scores = torch.linalg.vector_norm(contributions, dim=2)
    else:
        raise ValueError(f"score must be 'projection' or 'norm', got {score!r}.")
    values, indices = scores.topk(k, dim=1)
    return indices, values
