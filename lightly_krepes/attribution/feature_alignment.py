"""Feature consistency of landmarks and the Feature Alignment Gap (tabular data).

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from lightly_krepes._validation import check_positive_int, check_samples
from lightly_krepes.attribution._checks import check_count
from lightly_krepes.attribution.expansion import LandmarkExpansion, as_expansion
from lightly_krepes.attribution.targets import TargetSpec
from lightly_krepes.backbone import KernelBackbone

Feature = int | slice | Sequence[int]
"""A column index, or a slice/list of columns forming one categorical group."""


@dataclass(frozen=True)
class FeatureAlignmentGap:
    """Outcome of :func:`feature_alignment_gap`.

    Attributes:
        gap: ``AG = mean_x [Psi(x) - Psi_random(x)]``; > 0 means the influential
            landmarks agree with x on the feature more than random ones do.
        per_sample: Tensor (B,), ``Psi(x) - Psi_random(x)``.
        psi: Tensor (B,), influence-weighted consistency of the top-k landmarks.
        psi_random: Tensor (B,), the same for k random landmarks, averaged over
            the random draws.
    """

    gap: float
    per_sample: Tensor
    psi: Tensor
    psi_random: Tensor


def _columns(feature: Feature, num_columns: int) -> list[int] | int:
    """Resolves ``feature`` into one column (int) or a group (list of columns)."""
    if isinstance(feature, bool):
        raise TypeError("feature must be a column index, a slice or a list of them.")
    if isinstance(feature, int):
        if not -num_columns <= feature < num_columns:
            raise ValueError(
                f"feature {feature} is out of range for {num_columns} columns."
            )
        return feature % num_columns
    if isinstance(feature, slice):
        group = list(range(num_columns))[feature]
    elif isinstance(feature, Sequence) and not isinstance(feature, str):
        group = []
        for column in feature:
            if isinstance(column, bool) or not isinstance(column, int):
                raise TypeError(
                    f"A feature group must list integer columns, got {column!r}."
                )
            if not -num_columns <= column < num_columns:
                raise ValueError(
                    f"Column {column} of the feature group is out of range for "
                    f"{num_columns} columns."
                )
            group.append(column % num_columns)
    else:
        raise TypeError(
            "feature must be a column index (int), or a slice or list of the columns "
            f"of one one-hot group, got {type(feature).__name__}."
        )
    if len(group) < 2 or len(set(group)) != len(group):
        raise ValueError(
            f"A feature group needs at least 2 distinct columns (the one-hot columns "
            f"of a categorical feature), got {group}; pass an int for one column."
        )
    return group


def feature_consistency(
    x: Tensor,
    landmarks: Tensor,
    feature: Feature,
    value_range: float | None = None,
) -> Tensor:
    """Consistency of each landmark with each sample on one tabular feature.

    - One column ``xi`` (an int): ``v(x, l) = 1 - min(|x_xi - l_xi| / R, 1)``, 1 for
      equal values and 0 at a distance of ``R`` or more.
    - A group of columns (a slice or list: the one-hot encoding of a categorical
      feature): *agreement*, ``v(x, l) = 1`` if x and l have the same category
      (the same arg-max column within the group) and 0 otherwise. The arg-max is
      unchanged by per-column standardisation, so encoded one-hot data works as
      is; ``value_range`` is unused.

    Args:
        x: Tensor of shape (B, d), tabular samples.
        landmarks: Tensor of shape (m, d), e.g. ``backbone.landmarks``.
        feature: Column index, or slice/list of the columns of one group.
        value_range: The range R of the feature (> 0), e.g. max - min over the
            training data. None uses the range of the column over ``x`` and the
            landmarks together (consistency 1 everywhere if it is constant).

    Returns:
        Tensor of shape (B, m) with values in [0, 1].

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> x = torch.tensor([[0.0], [1.0]])
        >>> feature_consistency(x, torch.tensor([[0.0], [4.0]]), 0, value_range=4.0)
        tensor([[1.0000, 0.0000],
                [0.7500, 0.2500]])
    """
    check_samples(x, "x")
    check_samples(landmarks, "landmarks")
    if x.dim() != 2 or landmarks.dim() != 2 or x.shape[1] != landmarks.shape[1]:
        raise ValueError(
            f"x and landmarks must be tabular matrices (n, d) with the same d, got "
            f"shapes {tuple(x.shape)} and {tuple(landmarks.shape)}."
        )
    landmarks = landmarks.to(x)
    columns = _columns(feature, x.shape[1])
    if isinstance(columns, list):
        same = x[:, columns].argmax(1)[:, None] == landmarks[:, columns].argmax(1)[None]
        return same.to(x.dtype)
    xs, ls = x[:, columns], landmarks[:, columns]
    if value_range is None:
        both = torch.cat([xs, ls])
        value_range = float(both.max() - both.min())
        if value_range == 0:
            return torch.ones(x.shape[0], landmarks.shape[0], dtype=x.dtype)
    elif not 0 < value_range < float("inf"):
        raise ValueError(
            f"value_range must be finite and positive (the feature's range R), got "
            f"{value_range}."
        )
    distance = (xs[:, None] - ls[None]).abs() / value_range
    return 1.0 - distance.clamp(max=1.0)


def _weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Row-wise weighted mean; rows whose weights sum to zero use uniform weights."""
    total = weights.sum(1)
    uniform = values.mean(1)
    weighted = (values * weights).sum(1) / torch.where(total > 0, total, 1.0)
    return torch.where(total > 0, weighted, uniform)


def feature_alignment_gap(
    source: KernelBackbone | LandmarkExpansion,
    x: Tensor,
    feature: Feature,
    value_range: float | None = None,
    *,
    target: TargetSpec = None,
    score: Literal["signed", "sample_specific"] = "signed",
    weights: Tensor | None = None,
    top_k: int = 10,
    num_random: int = 10,
    seed: int = 0,
) -> FeatureAlignmentGap:
    """Feature Alignment Gap ``AG = E_x[Psi(x; v) - Psi_random(x; v)]``.

    With ``s(l, x)`` a landmark score and ``v`` the feature consistency
    (:func:`feature_consistency`):

    - ``Psi(x; v)``: the ``|s|``-weighted mean of ``v(x, l)`` over the ``top_k``
      landmarks of x (the highest scores);
    - ``Psi_random(x; v)``: the same weighted mean over ``top_k`` landmarks drawn
      uniformly without replacement, averaged over ``num_random`` seeded draws.
      The same estimator on both sides means the gap measures only *which*
      landmarks are influential.

    ``score="signed"`` (default) uses the expansion's scores specific to x,
    ``(k(l, x) - mu_l) <w_l, v(x)>`` for ``target`` (None: what builds x); the
    top landmarks are x's proponents. ``score="sample_specific"`` uses the
    paper's ``IS(l, x) = |k(l, x)| |w_l|``. A set whose weights sum to zero falls
    back to the unweighted mean. ``AG >> 0`` means the learned geometry amplifies
    the feature: the landmarks that build x's representation share x's value of
    it. The paper's audit explains the step: pass ``weights = Delta alpha`` (with
    a backbone) or its LandmarkExpansion.

    Args:
        source: A LandmarkExpansion, or a backbone (wrapped with the defaults),
            with tabular landmarks (m, d).
        x: Tensor of shape (B, d).
        feature: Column index, or slice/list of the columns of one one-hot group.
        value_range: The feature's range R (see :func:`feature_consistency`).
        target: Target of the signed scores.
        score: ``"signed"`` or ``"sample_specific"``.
        weights: With a backbone only: weights (m, h), e.g. ``Delta alpha``.
        top_k: Number of landmarks per sample, ``1 <= top_k <= m``.
        num_random: Number of random draws (>= 1).
        seed: Seed of the random draws.

    Returns:
        A :class:`FeatureAlignmentGap`.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=4)
        >>> result = feature_alignment_gap(
        ...     backbone, torch.randn(8, 3), 0, 6.0, top_k=4, num_random=3
        ... )
        >>> result.per_sample.shape
        torch.Size([8])
    """
    expansion = as_expansion(source, weights)
    landmarks = expansion.landmarks
    if landmarks.dim() != 2:
        raise ValueError(
            f"feature_alignment_gap needs tabular landmarks of shape (m, d), got "
            f"{tuple(landmarks.shape)}."
        )
    m = landmarks.shape[0]
    top_k = check_count(top_k, m, "top_k")
    num_random = check_positive_int(num_random, "num_random")
    with torch.no_grad():
        rows = expansion.rows(x)
        if score == "signed":
            scores = expansion.scores(target=target, rows=rows)
            top_indices = expansion.top(k=top_k, target=target, rows=rows).indices
        elif score == "sample_specific":
            scores = expansion.sample_specific_influence(rows=rows)
            top_indices = scores.topk(top_k, dim=1).indices
        else:
            raise ValueError(
                f"score must be 'signed' or 'sample_specific', got {score!r}."
            )
    consistency = feature_consistency(x, landmarks, feature, value_range)
    magnitude = scores.abs()

    psi = _weighted_mean(
        consistency.gather(1, top_indices), magnitude.gather(1, top_indices)
    )

    generator = torch.Generator().manual_seed(int(seed))
    batch = x.shape[0]
    psi_random = torch.zeros_like(psi)
    for _ in range(num_random):
        draws = torch.rand(batch, m, generator=generator).argsort(dim=1)[:, :top_k]
        draws = draws.to(x.device)
        psi_random += _weighted_mean(
            consistency.gather(1, draws), magnitude.gather(1, draws)
        )
    psi_random /= num_random
    per_sample = psi - psi_random
    return FeatureAlignmentGap(
        gap=float(per_sample.mean()),
        per_sample=per_sample,
        psi=psi,
        psi_random=psi_random,
    )
