"""Checks that landmark scores are meaningful: precision@1, deletion, coverage.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Wu, Xiong, Yu, Lin, 2018, Unsupervised Feature Learning via Non-Parametric
  Instance Discrimination (weighted kNN), arXiv 1805.01978
- [2] Hooker et al., 2019, A Benchmark for Interpretability Methods in Deep Neural
  Networks (deletion and remove-and-retrain), arXiv 1806.10758
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lightly_krepes._validation import check_finite, check_floating, check_positive_int
from lightly_krepes.attribution._checks import (
    check_backbone,
    check_count,
    check_inputs,
    check_labels,
    check_positive,
)
from lightly_krepes.attribution.expansion import LandmarkExpansion, as_expansion
from lightly_krepes.attribution.targets import TargetSpec
from lightly_krepes.backbone import KernelBackbone


@dataclass(frozen=True)
class ClassCoverage:
    """Outcome of :func:`class_coverage_kappa`.

    Attributes:
        kappa: Number of top-norm landmarks needed to cover every class.
        normalized: ``kappa / m`` in (0, 1].
    """

    kappa: int
    normalized: float


@dataclass(frozen=True)
class DeletionResult:
    """Outcome of :func:`deletion_test`: kNN confidence drops per input.

    Each drop is the kNN confidence of the class predicted before deletion minus
    the same confidence after deleting k terms of x's expansion.

    Attributes:
        k: Number of terms deleted per input.
        predictions: Tensor (n,), the kNN class of each input before deletion.
        confidence: Tensor (n,), its kNN confidence before deletion.
        top_drops: Tensor (n,), drops when x's top-k landmarks (by the ranking)
            are deleted.
        random_drops: Tensor (n,), drops for k random landmarks, averaged over
            the draws.
        kernel_nearest_drops: Tensor (n,), drops for the k landmarks with the
            largest kernel values ``k(l, x)`` (a baseline that ignores the
            weights).
    """

    k: int
    predictions: Tensor
    confidence: Tensor
    top_drops: Tensor
    random_drops: Tensor
    kernel_nearest_drops: Tensor

    @property
    def top_drop(self) -> float:
        """Mean drop for the top-k landmarks."""
        return float(self.top_drops.double().mean())

    @property
    def random_drop(self) -> float:
        """Mean drop for k random landmarks."""
        return float(self.random_drops.double().mean())

    @property
    def kernel_nearest_drop(self) -> float:
        """Mean drop for the k kernel-nearest landmarks."""
        return float(self.kernel_nearest_drops.double().mean())

    @property
    def ratio(self) -> float:
        """``top_drop / random_drop`` (inf when random deletions change nothing)."""
        random = self.random_drop
        return self.top_drop / random if random > 0 else float("inf")


def class_coverage_kappa(
    weights: Tensor | LandmarkExpansion, landmark_labels: Tensor
) -> ClassCoverage:
    """How many top-norm landmarks it takes to cover all classes.

    Landmarks are sorted by ``||w_l||_2``, largest first (ties keep landmark
    order); ``kappa`` is the length of the shortest prefix containing every class
    present in ``landmark_labels``. Small ``kappa`` means the strongest landmarks
    already span the classes, which tracks linear-probe accuracy in the paper.

    Args:
        weights: Weights (m, h), e.g. the audit step ``Delta alpha`` (the
            paper's choice) or ``backbone.representer_weights``, or a
            LandmarkExpansion (its explained, ridge-refit weights).
        landmark_labels: Integer tensor (m,), the landmarks' classes.

    Returns:
        A :class:`ClassCoverage` with ``kappa`` and ``kappa / m``.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> weights = torch.tensor([[3.0], [2.0], [1.0]])
        >>> class_coverage_kappa(weights, torch.tensor([0, 0, 1]))
        ClassCoverage(kappa=3, normalized=1.0)
    """
    if isinstance(weights, LandmarkExpansion):
        weights = weights.weights
    check_floating(weights, "weights")
    if weights.dim() != 2 or weights.shape[0] == 0:
        raise ValueError(
            f"weights must have shape (m, h) with m >= 1, got {tuple(weights.shape)}."
        )
    check_finite(weights, "weights")
    m = weights.shape[0]
    labels = check_labels(landmark_labels, m, "landmark_labels", "landmark")
    norms = torch.linalg.vector_norm(weights.detach(), dim=1)
    order = torch.sort(norms, descending=True, stable=True).indices
    sorted_labels = labels.to(order.device)[order]
    num_classes = int(torch.unique(labels).numel())
    seen: set[int] = set()
    kappa = m
    for position, label in enumerate(sorted_labels.tolist()):
        seen.add(int(label))
        if len(seen) == num_classes:
            kappa = position + 1
            break
    return ClassCoverage(kappa=kappa, normalized=kappa / m)


def _check_ranking(ranking: Tensor, n: int, m: int) -> Tensor:
    check_floating(ranking, "ranking")
    if ranking.shape != (n, m):
        raise ValueError(
            f"ranking must hold one score per input and landmark, shape (n, m) = "
            f"({n}, {m}), got {tuple(ranking.shape)}."
        )
    check_finite(ranking, "ranking")
    return ranking


def precision_at_1(
    source: KernelBackbone | LandmarkExpansion,
    x: Tensor,
    labels: Tensor,
    landmark_labels: Tensor,
    target: TargetSpec = None,
    *,
    ranking: Tensor | None = None,
    weights: Tensor | None = None,
) -> float:
    """Fraction of inputs whose top landmark shares their class.

    The top landmark of ``x`` has the largest score ``s_v(l, x)`` of the
    expansion (by default "what builds x", see
    :meth:`~lightly_krepes.attribution.LandmarkExpansion.scores`), or the largest
    entry of ``ranking`` when given (e.g. the paper's
    ``expansion.sample_specific_influence(x)``). Compare with
    :func:`nearest_landmark_precision` (cosine-, kernel- or input-nearest
    landmark) and chance.

    Args:
        source: A LandmarkExpansion, or a backbone (wrapped with the defaults).
        x: Tensor of shape (B, ...).
        labels: Integer tensor (B,), the classes of ``x``.
        landmark_labels: Integer tensor (m,), the classes of the landmarks.
        target: Target of the scores (None: what builds x).
        ranking: Scores (B, m) to rank by instead.
        weights: With a backbone only: weights (m, h) to explain.

    Returns:
        Precision@1 in [0, 1].

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> landmarks = torch.tensor([[-3.0], [-2.0], [2.0], [3.0]]).double()
        >>> backbone = KernelBackbone(RBF(1.0), landmarks, out_dim=2)
        >>> x = torch.tensor([[-2.5], [2.5]]).double()
        >>> labels, landmark_labels = torch.tensor([0, 1]), torch.tensor([0, 0, 1, 1])
        >>> precision_at_1(backbone, x, labels, landmark_labels)
        1.0
    """
    expansion = as_expansion(source, weights)
    m = expansion.num_landmarks
    landmark_labels = check_labels(landmark_labels, m, "landmark_labels", "landmark")
    rows = expansion.rows(x)
    labels = check_labels(labels, x.shape[0], "labels", "sample of x")
    if ranking is None:
        top = expansion.top(k=1, target=target, rows=rows).indices[:, 0]
    else:
        top = _check_ranking(ranking, x.shape[0], m).argmax(1)
    hits = landmark_labels.to(top.device)[top] == labels.to(top.device)
    return float(hits.double().mean())


def nearest_landmark_precision(
    source: KernelBackbone | LandmarkExpansion,
    x: Tensor,
    labels: Tensor,
    landmark_labels: Tensor,
    space: Literal["representation", "kernel", "input"] = "representation",
) -> float:
    """Baselines of :func:`precision_at_1`: the nearest landmark's class.

    The nearest landmark of ``x`` maximises

    - ``"representation"`` (the paper's baseline): the cosine similarity of the
      backbone's representations ``f(x)`` and ``f(l)``;
    - ``"kernel"``: the kernel value ``k(l, x)``;
    - ``"input"``: the cosine similarity of the flattened inputs.

    Args:
        source: A backbone or a LandmarkExpansion (its backbone is used).
        x: Tensor of shape (B, ...).
        labels: Integer tensor (B,).
        landmark_labels: Integer tensor (m,).
        space: ``"representation"``, ``"kernel"`` or ``"input"``.

    Returns:
        Precision@1 of the nearest landmark, in [0, 1].

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> landmarks = torch.tensor([[-3.0, 1.0], [-2.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
        >>> backbone = KernelBackbone(RBF(1.0), landmarks, out_dim=2)
        >>> x = torch.tensor([[-2.5, 1.0], [2.5, 1.0]])
        >>> nearest_landmark_precision(
        ...     backbone, x, torch.tensor([0, 1]), torch.tensor([0, 0, 1, 1]),
        ...     space="kernel",
        ... )
        1.0
    """
    backbone = (
        source.backbone
        if isinstance(source, LandmarkExpansion)
        else check_backbone(source)
    )
    landmarks = backbone.landmarks
    m = landmarks.shape[0]
    landmark_labels = check_labels(landmark_labels, m, "landmark_labels", "landmark")
    check_inputs(landmarks, x, "x")
    labels = check_labels(labels, x.shape[0], "labels", "sample of x")
    with torch.no_grad():
        if space == "representation":
            similarity = (
                F.normalize(backbone(x), dim=1)
                @ F.normalize(backbone(landmarks), dim=1).T
            )
        elif space == "kernel":
            similarity = backbone.nystrom.landmark_kernel(x)
        elif space == "input":
            similarity = (
                F.normalize(x.reshape(x.shape[0], -1), dim=1)
                @ F.normalize(landmarks.reshape(m, -1), dim=1).T
            )
        else:
            raise ValueError(
                f"space must be 'representation', 'kernel' or 'input', got {space!r}."
            )
    nearest = similarity.argmax(1)
    hits = landmark_labels.to(nearest.device)[nearest] == labels.to(nearest.device)
    return float(hits.double().mean())


def _knn_shares(
    queries: Tensor,
    bank: Tensor,
    bank_labels: Tensor,
    num_classes: int,
    k: int,
    temperature: float,
) -> Tensor:
    """Weighted kNN class shares (Lightly's ``knn_predict`` votes); (q, classes)."""
    # Not lightly's knn_predict itself: it returns only the ranked class ids, and
    # the confidence needs the vote shares.
    similarity = F.normalize(queries, dim=1) @ F.normalize(bank, dim=1).T
    top_similarity, top_indices = similarity.topk(k, dim=1)
    votes = (top_similarity / temperature).exp()
    shares = torch.zeros(
        queries.shape[0], num_classes, dtype=votes.dtype, device=votes.device
    )
    shares.scatter_add_(1, bank_labels[top_indices], votes)
    return shares / shares.sum(1, keepdim=True)


def deletion_test(
    source: KernelBackbone | LandmarkExpansion,
    x: Tensor,
    bank: Tensor,
    bank_labels: Tensor,
    *,
    k: int = 10,
    k_neighbors: int = 50,
    num_random: int = 5,
    seed: int = 0,
    target: TargetSpec = None,
    ranking: Tensor | None = None,
    temperature: float = 0.1,
    weights: Tensor | None = None,
) -> DeletionResult:
    """kNN confidence drop when x's top-k terms are deleted, against random ones.

    The paper's removal test, done on the explained (faithful, ridge-refit)
    expansion: for each input ``x`` a cosine kNN over the bank (Lightly's rule:
    the ``k_neighbors`` most similar bank representations vote with weights
    ``exp(cos / temperature)``) gives class shares; the *confidence* is the share
    of the class predicted before deletion. Then ``k`` terms of **x's** expansion
    are deleted (each falls back to its reference, ``k(l, x) -> mu_l``, with the
    weights fixed) and the confidence of the same class is measured again. The
    bank's representations are never changed. Arms: x's top-k landmarks by the
    scores (by default "what builds x") or by ``ranking``; ``k`` random landmarks
    (``num_random`` seeded draws, averaged); the ``k`` kernel-nearest landmarks.

    The paper reports drops of .05-.08 for the top-10 against .0001-.001 for 10
    random landmarks. Deleting terms with the weights fixed is not a
    counterfactual (remove-and-refit is): it tests whether the ranking finds the
    terms x's position in the representation depends on.

    Args:
        source: A LandmarkExpansion, or a backbone (wrapped with the defaults).
        x: Tensor of shape (n, ...), the inputs explained.
        bank: Tensor of shape (N, ...), the kNN bank (e.g. training samples).
        bank_labels: Integer tensor (N,).
        k: Terms deleted per input, ``1 <= k <= m``.
        k_neighbors: Neighbours of the kNN, ``1 <= k_neighbors <= N``.
        num_random: Number of random draws (>= 1).
        seed: Seed of the random draws.
        target: Target of the ranking scores (None: what builds x).
        ranking: Scores (n, m) to rank by instead (e.g. the paper's IS).
        temperature: Positive kNN temperature.
        weights: With a backbone only: weights (m, h) to explain.

    Returns:
        A :class:`DeletionResult`.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Wu et al., 2018, arXiv 1805.01978
        - [2] Hooker et al., 2019, arXiv 1806.10758

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3).double(), out_dim=4)
        >>> bank = torch.randn(40, 3).double()
        >>> result = deletion_test(
        ...     backbone, torch.randn(6, 3).double(), bank, (bank[:, 0] > 0).long(),
        ...     k=3, k_neighbors=10,
        ... )
        >>> result.top_drops.shape
        torch.Size([6])
    """
    expansion = as_expansion(source, weights)
    m = expansion.num_landmarks
    k = check_count(k, m, "k")
    num_random = check_positive_int(num_random, "num_random")
    temperature = check_positive(temperature, "temperature")
    with torch.no_grad():
        rows = expansion.rows(x)
        bank_outputs = expansion.outputs(bank)
        n_bank = bank_outputs.shape[0]
        labels = check_labels(bank_labels, n_bank, "bank_labels", "bank sample")
        labels = labels.to(bank_outputs.device)
        if (
            isinstance(k_neighbors, bool)
            or int(k_neighbors) != k_neighbors
            or not 1 <= k_neighbors <= n_bank
        ):
            raise ValueError(
                f"k_neighbors must be an integer between 1 and the bank size "
                f"({n_bank}), got {k_neighbors}."
            )
        if ranking is None:
            top_indices = expansion.top(k=k, target=target, rows=rows).indices
        else:
            ranked = _check_ranking(ranking, rows.shape[0], m)
            top_indices = ranked.topk(k, dim=1).indices
        num_classes = int(labels.max()) + 1
        knn_k = int(k_neighbors)

        def confidence(remove: Tensor | None, predicted: Tensor | None) -> Tensor:
            queries = expansion.outputs(rows=rows, remove=remove)
            shares = _knn_shares(
                queries, bank_outputs, labels, num_classes, knn_k, temperature
            )
            chosen = shares.argmax(1) if predicted is None else predicted
            out: Tensor = shares.gather(1, chosen[:, None])[:, 0]
            return out

        queries = expansion.outputs(rows=rows)
        shares = _knn_shares(
            queries, bank_outputs, labels, num_classes, knn_k, temperature
        )
        predictions = shares.argmax(1)
        before = shares.gather(1, predictions[:, None])[:, 0]
        top = before - confidence(top_indices, predictions)
        raw_rows = rows + expansion.reference_row
        nearest = before - confidence(raw_rows.topk(k, dim=1).indices, predictions)
        generator = torch.Generator().manual_seed(int(seed))
        random = torch.zeros_like(before)
        for _ in range(num_random):
            draws = torch.rand(rows.shape[0], m, generator=generator).argsort(dim=1)
            random += before - confidence(draws[:, :k].to(rows.device), predictions)
        random /= num_random
    return DeletionResult(
        k=k,
        predictions=predictions,
        confidence=before,
        top_drops=top,
        random_drops=random,
        kernel_nearest_drops=nearest,
    )
