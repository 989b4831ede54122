"""Landmark scores: what builds x, the audit's concept and sample-specific scores.

All of them read one :class:`~lightly_krepes.attribution.LandmarkExpansion`
(pass it, or a backbone and optional weights, which are wrapped with its
defaults: ridge-refit weights, landmark-mean reference row).

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
from lightly_krepes.attribution.expansion import LandmarkExpansion, as_expansion
from lightly_krepes.attribution.targets import Direction, TargetSpec
from lightly_krepes.backbone import KernelBackbone


def landmark_scores(
    source: KernelBackbone | LandmarkExpansion,
    x: Tensor,
    target: TargetSpec = None,
    *,
    weights: Tensor | None = None,
) -> Tensor:
    """Signed scores specific to x: ``s_v(l, x) = (k(l, x) - mu_l) <w_l, v(x)>``.

    The default target ``v(x) = (g(x) - f_0) / |g(x) - f_0|`` ranks the landmarks
    by how much of x's representation they build: the scores add up exactly to
    ``|g(x) - f_0|`` (``f_0`` the expansion's offset), proponents are positive and
    opponents negative. Same as ``LandmarkExpansion.scores`` and
    ``RepresenterInfluence.influence``.

    Args:
        source: A LandmarkExpansion, or a backbone (wrapped with the defaults).
        x: Tensor of shape (B, ...).
        target: None ("what builds x"), or any target (a Direction, ints, ...).
        weights: With a backbone only: weights (m, h) to explain, e.g. the audit
            step ``Delta alpha`` (see :func:`step_influence`).

    Returns:
        Tensor of shape (B, m).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=4)
        >>> landmark_scores(backbone, torch.randn(5, 3)).shape
        torch.Size([5, 16])
    """
    return as_expansion(source, weights).scores(x, target)


def step_influence(
    source: KernelBackbone | LandmarkExpansion,
    x: Tensor,
    delta_alpha: Tensor | None = None,
) -> Tensor:
    """What the SSL step changes at x: the signed scores of the step's expansion.

    ``Delta f(x) = sum_l Delta alpha_l k(l, x)`` is the change the audit's Newton
    step makes to the representation; with ``v = Delta f(x) / |Delta f(x)|`` (the
    default target on that expansion) the scores add up to ``|Delta f(x)|``
    (relative to the reference row, see
    :class:`~lightly_krepes.attribution.LandmarkExpansion`).

    Args:
        source: The surrogate backbone with ``delta_alpha`` (ridge-refit with the
            defaults), or a LandmarkExpansion of the step built by the caller
            (then ``delta_alpha`` must be None).
        x: Tensor of shape (B, ...).
        delta_alpha: The step ``Delta alpha`` (m, h), e.g.
            ``result.step.delta_alpha`` of the audit.

    Returns:
        Tensor of shape (B, m).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=4)
        >>> step_influence(backbone, torch.randn(5, 3), torch.randn(16, 4)).shape
        torch.Size([5, 16])
    """
    if isinstance(source, KernelBackbone) and delta_alpha is None:
        raise ValueError(
            "step_influence needs the step: pass delta_alpha (m, h), e.g. "
            "result.step.delta_alpha, or a LandmarkExpansion built from it."
        )
    return as_expansion(source, delta_alpha, "source").scores(x)


def sample_specific_influence(
    source: KernelBackbone | LandmarkExpansion,
    x: Tensor,
    weights: Tensor | None = None,
) -> Tensor:
    """The paper's Sample-Specific Influence Score ``IS(l, x) = |k(l, x)| |w_l|``.

    An unsigned bound on the size of landmark l's term, whatever its direction.
    It is not specific to x: with a flat (e.g. cosine-normalised) kernel the
    x-independent factor ``|w_l|`` decides the ranking and a few landmarks top
    every input; :func:`landmark_scores` is the signed, additive alternative.
    The paper uses the audit step, ``w = Delta alpha`` (pass it as ``weights``);
    for the paper's exact score on the raw step pass
    ``LandmarkExpansion(backbone, delta_alpha, regularize=False)``.

    Args:
        source: A LandmarkExpansion, or a backbone (wrapped with the defaults).
        x: Tensor of shape (B, ...), samples shaped like the landmarks.
        weights: With a backbone only: weights (m, h), e.g. ``Delta alpha``.

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
    return as_expansion(source, weights).sample_specific_influence(x)


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
    source: KernelBackbone | LandmarkExpansion,
    x: Tensor,
    cav: Tensor,
    weights: Tensor | None = None,
) -> Tensor:
    """Concept-Conditioned Influence Score ``IS(l, x; v_c) = k(l, x) <w_l, v_c>``.

    Positive scores push ``x`` toward the concept along ``v_c``; negative scores
    mark *repulsive* landmarks. With the expansion's reference row the kernel
    value is ``k(l, x) - mu_l``, and the scores add up with ``<f_0, v_c>`` to the
    concept coordinate ``<g(x), v_c>``. The paper's audit uses ``w = Delta
    alpha`` (pass it as ``weights``). Same as ``landmark_scores(source, x,
    Direction(cav))``.

    Args:
        source: A LandmarkExpansion, or a backbone (wrapped with the defaults).
        x: Tensor of shape (B, ...).
        cav: Concept direction of shape (h,), e.g. from
            :func:`concept_activation_vector` (used as given).
        weights: With a backbone only: weights (m, h), e.g. ``Delta alpha``.

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
    if not isinstance(cav, Tensor):
        raise TypeError(
            f"cav must be a tensor of shape (h,), got {type(cav).__name__}."
        )
    if cav.dim() != 1:
        raise ValueError(
            f"cav must be one concept direction of shape (h,), got {tuple(cav.shape)}."
        )
    return as_expansion(source, weights).scores(x, Direction(cav))
