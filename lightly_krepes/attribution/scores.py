"""Landmark influence scores of the KREPES audit: sample-specific and concept scores.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Kim et al., 2018, Interpretability Beyond Feature Attribution: Quantitative
  Testing with Concept Activation Vectors (TCAV), arXiv 1711.11279
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import Tensor

from lightly_krepes._validation import check_finite, check_floating
from lightly_krepes.attribution._common import (
    DEFAULT_BATCH_SIZE,
    Direction,
    check_backbone,
    check_weights,
    kernel_rows,
    landmark_coefficients,
    reference_weights,
    target_vectors,
)
from lightly_krepes.backbone import KernelBackbone


def sample_specific_influence(
    backbone: KernelBackbone,
    x: Tensor,
    weights: Tensor | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Tensor:
    """Sample-Specific Influence Score ``IS(l, x) = |k(l, x)| * ||w_l||_2``.

    The size of landmark l's term in the expansion of ``f(x)`` (``|c_l(x)|`` for
    ``w = alpha``), whatever its direction. The paper's audit uses the Gauss-Newton
    step, ``w = Delta alpha`` (the loss's contribution beyond the
    principal-component prior): pass it as ``weights``. The default, ``alpha``
    (``backbone.representer_weights``), scores the trained representation itself.

    Args:
        backbone: The kernel backbone.
        x: Tensor of shape (B, ...), samples shaped like the landmarks.
        weights: Reference weights (m, h): ``Delta alpha`` for the paper's score,
            None for ``alpha``.
        batch_size: Inputs per kernel evaluation; the result does not depend on it.

    Returns:
        Tensor of shape (B, m), non-negative.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=4)
        >>> sample_specific_influence(backbone, torch.randn(5, 3)).shape
        torch.Size([5, 16])
    """
    check_backbone(backbone)
    w = reference_weights(backbone, check_weights(backbone, weights))
    rows = kernel_rows(backbone, x, batch_size, name="x")
    scores: Tensor = rows.abs() * torch.linalg.vector_norm(w, dim=1)[None]
    return scores


def concept_activation_vector(
    concept_reps: Tensor,
    other_reps: Tensor,
    regularization: float = 1.0,
) -> Tensor:
    """Concept activation vector: the unit normal of a concept-vs-rest classifier.

    Fits an L2-regularised logistic regression separating the representations of
    concept examples (label 1) from others (label 0) and returns its weight vector,
    normalised, pointing toward the concept.

    scikit-learn's ``LogisticRegression`` (lbfgs, deterministic) is used rather
    than ``captum.concept.DefaultClassifier``: the latter trains an SGD classifier
    on a random two-thirds split drawn with Python's global ``random`` (not
    seedable per call), warns on every construction, and expects a DataLoader; a
    CAV here is a deterministic function of the two sets of representations.

    Args:
        concept_reps: Tensor of shape (n_c, h), representations of concept examples.
        other_reps: Tensor of shape (n_o, h), representations of other examples.
        regularization: Inverse L2 strength ``C`` of the classifier (> 0).

    Returns:
        Unit tensor of shape (h,), in the dtype and on the device of
        ``concept_reps``.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Kim et al., 2018, TCAV, arXiv 1711.11279

    Examples:
        >>> concept = torch.randn(20, 3) + torch.tensor([4.0, 0.0, 0.0])
        >>> cav = concept_activation_vector(concept, torch.randn(20, 3))
        >>> bool(cav[0] > 0.9)
        True
    """
    for name, reps in (("concept_reps", concept_reps), ("other_reps", other_reps)):
        check_floating(reps, name)
        if reps.dim() != 2 or reps.shape[0] == 0:
            raise ValueError(
                f"{name} must be a non-empty matrix (n, h) of representations, got "
                f"shape {tuple(reps.shape)}."
            )
        check_finite(reps, name)
    if concept_reps.shape[1] != other_reps.shape[1]:
        raise ValueError(
            f"concept_reps and other_reps must have the same dimension h, got "
            f"{concept_reps.shape[1]} and {other_reps.shape[1]}."
        )
    if not 0 < regularization < float("inf"):
        raise ValueError(
            f"regularization must be finite and positive, got {regularization}."
        )
    features = torch.cat([concept_reps, other_reps.to(concept_reps)])
    features_np = features.detach().double().cpu().numpy()
    labels = np.concatenate(
        [np.ones(concept_reps.shape[0]), np.zeros(other_reps.shape[0])]
    ).astype(np.int64)
    classifier = LogisticRegression(C=regularization, max_iter=1000)
    classifier.fit(features_np, labels)
    normal = torch.from_numpy(np.asarray(classifier.coef_[0], dtype=np.float64))
    norm = torch.linalg.vector_norm(normal)
    if not float(norm) > 0:
        raise ValueError(
            "The concept classifier has a zero normal: concept and other "
            "representations cannot be told apart linearly. Use more or more "
            "distinct examples."
        )
    unit: Tensor = normal / norm
    return unit.to(dtype=concept_reps.dtype, device=concept_reps.device)


def concept_influence(
    backbone: KernelBackbone,
    x: Tensor,
    cav: Tensor,
    weights: Tensor | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Tensor:
    """Concept-Conditioned Influence Score ``IS(l, x; v_c) = k(l, x) <w_l, v_c>``.

    Positive scores push ``x`` toward the concept along ``v_c``; negative scores
    mark *repulsive* landmarks. The scores sum (over landmarks) to the concept
    coordinate of the expansion, ``<f(x) - b, v_c>``. The paper's audit uses
    ``w = Delta alpha`` (pass it as ``weights``); the default is ``alpha``
    (``backbone.representer_weights``). Same as ``RepresenterInfluence(backbone,
    weights).influence(x, target=Direction(cav))``.

    Args:
        backbone: The kernel backbone.
        x: Tensor of shape (B, ...).
        cav: Concept direction of shape (h,), e.g. from
            :func:`concept_activation_vector` (used as given).
        weights: Reference weights (m, h): ``Delta alpha`` for the paper's score,
            None for ``alpha``.
        batch_size: Inputs per kernel evaluation.

    Returns:
        Tensor of shape (B, m).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Kim et al., 2018, TCAV, arXiv 1711.11279

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=4)
        >>> cav = torch.tensor([1.0, 0.0, 0.0, 0.0])
        >>> concept_influence(backbone, torch.randn(5, 3), cav).shape
        torch.Size([5, 16])
    """
    check_backbone(backbone)
    w = reference_weights(backbone, check_weights(backbone, weights))
    if not isinstance(cav, Tensor):
        raise TypeError(
            f"cav must be a tensor of shape (h,), got {type(cav).__name__}."
        )
    vector = target_vectors(Direction(cav), backbone.out_dim, None, w.dtype, w.device)
    rows = kernel_rows(backbone, x, batch_size, name="x")
    return rows * landmark_coefficients(w, vector)
