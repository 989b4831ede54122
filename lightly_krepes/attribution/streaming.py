"""Top-k landmark scores of many inputs, batch by batch, never an (n, m) matrix.

At a million rows and a thousand landmarks the scores of
:meth:`LandmarkExpansion.scores <lightly_krepes.attribution.LandmarkExpansion.scores>`
would be an (n, m) matrix of 8 GB in float64; :func:`streamed_top` keeps only the
k best landmarks of every row, computing the scores of one batch at a time with
:meth:`LandmarkExpansion.top <lightly_krepes.attribution.LandmarkExpansion.top>`
(the one home of the score formula).

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from typing import Any

import torch
from captum.influence._utils.common import KMostInfluentialResults
from torch import Tensor

from lightly_krepes._inputs import iter_batches, num_samples
from lightly_krepes._validation import check_positive_int
from lightly_krepes.attribution._checks import (
    DEFAULT_BATCH_SIZE,
    check_count,
)
from lightly_krepes.attribution.expansion import LandmarkExpansion, as_expansion
from lightly_krepes.attribution.targets import (
    Dimension,
    Direction,
    Similarity,
    Target,
    TargetSpec,
    as_target,
)
from lightly_krepes.backbone import KernelBackbone


def _batch_target(target: Target, start: int, stop: int, n: int | None) -> Target:
    """The rows ``start:stop`` of a per-input target; shared targets as they are."""
    if not target.depends_on_input:
        return target
    if isinstance(target, Dimension):
        index = target.index
        values = index if isinstance(index, Tensor) else list(index)  # type: ignore[arg-type]
        _check_rows(len(values), n, "Dimension.index")
        return Dimension(values[start:stop])
    if isinstance(target, Direction):
        _check_rows(len(target.vector), n, "Direction.vector")
        return Direction(target.vector[start:stop])
    if isinstance(target, Similarity):
        _check_rows(len(target.reference), n, "Similarity.reference")
        return Similarity(target.reference[start:stop])
    # OwnDirection and custom targets read only the batch's own outputs.
    return target


def _check_rows(rows: int, n: int | None, name: str) -> None:
    if n is not None and rows != n:
        raise ValueError(
            f"{name} holds {rows} per-input entries but the data holds {n} inputs; "
            f"give one per input, in the data's order."
        )


def streamed_top(
    source: KernelBackbone | LandmarkExpansion,
    data: Any,
    k: int = 10,
    target: TargetSpec = None,
    *,
    proponents: bool = True,
    weights: Tensor | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> KMostInfluentialResults:
    """The ``k`` highest (or lowest) landmark scores of every input, streamed.

    For each batch of ``batch_size`` inputs, ``expansion.top(x, k, target)``
    computes the (B, m) scores ``s_v(l_j, x) = (k(l_j, x) - mu_j) <w_j, v(x)>``
    (see :class:`~lightly_krepes.attribution.LandmarkExpansion`) and keeps their
    top k; only the (n, k) results are kept, so memory is
    ``O(batch_size * m + n * k)``. Equal to ``expansion.top(x, k, target)`` on
    all of x at once (ties aside).

    Args:
        source: A LandmarkExpansion, or a backbone (wrapped with the defaults,
            see :func:`~lightly_krepes.attribution.as_expansion`).
        data: A tensor (n, ...), a map-style data set, an iterable data set or a
            loader (read by :func:`~lightly_krepes._inputs.iter_batches`); the
            inputs are cast to the landmarks' dtype and device.
        k: Number of landmarks per input, ``1 <= k <= m``.
        target: Any target of :meth:`LandmarkExpansion.scores`; per-input
            targets (a Dimension with one index per input, a Direction or
            Similarity of shape (n, h)) are sliced batch by batch.
        proponents: Highest scores (True) or lowest (False, opponents).
        weights: With a backbone only: the weights (m, h) to explain, e.g. the
            audit step ``Delta alpha``.
        batch_size: Inputs per batch for tensors and data sets (a loader's own
            batches are used as they come).
        progress: Show a progress bar over the batches.

    Returns:
        ``KMostInfluentialResults(indices, influence_scores)``, both of shape
        (n, k), on the CPU: landmark indices (long) and their scores, best first.

    Raises:
        ValueError: If k or batch_size is invalid, the data is empty, or a
            per-input target does not hold one entry per input.
        TypeError: If ``source`` is neither a backbone nor an expansion.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=4)
        >>> expansion = LandmarkExpansion(backbone)
        >>> x = torch.randn(100, 3)
        >>> top = streamed_top(expansion, x, k=3, batch_size=32, progress=False)
        >>> top.indices.shape, top.influence_scores.shape
        (torch.Size([100, 3]), torch.Size([100, 3]))
        >>> torch.equal(top.indices, expansion.top(x, 3).indices)
        True
    """
    expansion = as_expansion(source, weights)
    k = check_count(k, expansion.num_landmarks)
    batch_size = check_positive_int(batch_size, "batch_size")
    resolved = as_target(target)
    n = num_samples(data)
    landmarks = expansion.landmarks
    indices: list[Tensor] = []
    values: list[Tensor] = []
    start = 0
    batches = iter_batches(data, batch_size, progress=progress, desc="top landmarks")
    with torch.no_grad():
        for x in batches:
            stop = start + int(x.shape[0])
            x = x.to(dtype=landmarks.dtype, device=landmarks.device)
            batch_target = _batch_target(resolved, start, stop, n)
            top = expansion.top(x, k, batch_target, proponents=proponents)
            indices.append(top.indices.cpu())
            values.append(top.influence_scores.cpu())
            start = stop
    if n is not None and start != n:
        raise ValueError(f"data yielded {start} inputs but reports {n}.")
    return KMostInfluentialResults(
        indices=torch.cat(indices), influence_scores=torch.cat(values)
    )


__all__ = ["streamed_top"]
