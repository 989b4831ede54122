"""Landmark influence on representations, in Captum's data-influence interface.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Pruthi et al., 2020, Estimating Training Data Influence by Tracing Gradient
  Descent (TracIn), arXiv 2002.08484
- [2] Yeh et al., 2018, Representer Point Selection for Explaining Deep Neural
  Networks, arXiv 1811.09720
- [3] Kokhlikyan et al., 2020, Captum: A unified and generic model interpretability
  library for PyTorch, arXiv 2009.07896
"""

from __future__ import annotations

from typing import Any

import torch
from captum.influence import DataInfluence
from captum.influence._utils.common import KMostInfluentialResults
from torch import Tensor

from lightly_krepes.attribution._checks import check_count, collect_inputs
from lightly_krepes.attribution.expansion import (
    LandmarkExpansion,
    RidgeRefit,
    as_expansion,
)
from lightly_krepes.attribution.targets import TargetSpec
from lightly_krepes.backbone import KernelBackbone


class RepresenterInfluence(DataInfluence):  # type: ignore[misc]
    """Influence of each landmark on each test input's representation.

    The "training set" whose influence is scored is the ``m`` landmarks of a
    :class:`~lightly_krepes.attribution.LandmarkExpansion` (weights ``w``,
    reference row ``mu``, offset ``f_0``). The influence of landmark ``j`` on test
    input ``x`` is its exact term of the scalarised representation,

        influence[x, j] = (k(l_j, x) - mu_j) <w_j, v(x)>,
        sum_j influence[x, j] + <f_0, v(x)> = <g(x), v(x)>.

    With no ``target`` (the default) ``v(x) = (g(x) - f_0) / |g(x) - f_0|``:
    "what builds x", the scores add up to ``|g(x) - f_0|``, positive landmarks
    (proponents) build x's representation and negative ones (opponents) pull
    against it. Other targets: an int or ints (dimensions), a
    :class:`~lightly_krepes.attribution.Direction` (a concept: concept influence),
    a :class:`~lightly_krepes.attribution.Similarity`, any
    :class:`~lightly_krepes.attribution.Target`.

    Given a backbone, the expansion is built with its defaults: the backbone's
    own ``alpha`` (or ``weights``, e.g. the audit step ``Delta alpha``, for
    "what the step changes at x") ridge-refit as faithfully as correlation 0.99
    allows. :attr:`weights` are the (m, h) weights explained and :attr:`refit`
    reports their fidelity and cancellation. The weights are read once: build a
    new instance after training the backbone.

    The surface mirrors Captum's ``TracInCPBase``: :meth:`influence` (scores or
    the k most influential landmarks), :meth:`self_influence` and
    :meth:`compute_intermediate_quantities`. Scores are exact and do not depend
    on the batch size.

    Args:
        source: A KernelBackbone or a LandmarkExpansion.
        weights: With a backbone only: weights (m, h) to explain instead of
            ``alpha``, e.g. ``Delta alpha``.

    Attributes:
        expansion: The LandmarkExpansion explained.
        model: The backbone (Captum's name).
        train_dataset: The landmarks, shape (m, ...): the examples being scored.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Pruthi et al., 2020, TracIn, arXiv 2002.08484
        - [2] Yeh et al., 2018, Representer Point Selection, arXiv 1811.09720
        - [3] Kokhlikyan et al., 2020, Captum, arXiv 2009.07896

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=4)
        >>> influence = RepresenterInfluence(backbone)
        >>> x = torch.randn(5, 3)
        >>> influence.influence(x).shape
        torch.Size([5, 16])
        >>> top = influence.influence(x, k=3)
        >>> top.indices.shape, top.influence_scores.shape
        (torch.Size([5, 3]), torch.Size([5, 3]))
        >>> influence.weights.shape
        torch.Size([16, 4])
    """

    def __init__(
        self,
        source: KernelBackbone | LandmarkExpansion,
        weights: Tensor | None = None,
    ) -> None:
        # Captum 0.9's DataInfluence spells its initialiser `__init_`, so there is no
        # base initialiser to call: the attributes it would set are set here.
        self.expansion = as_expansion(source, weights)
        self.backbone = self.expansion.backbone
        self.model = self.backbone
        self.train_dataset = self.backbone.landmarks

    @property
    def weights(self) -> Tensor:
        """The weights explained, shape (m, h) (ridge-refit by default)."""
        return self.expansion.weights

    @property
    def refit(self) -> RidgeRefit:
        """Fidelity and cancellation of :attr:`weights`."""
        return self.expansion.refit

    @property
    def num_landmarks(self) -> int:
        """Number of landmarks m."""
        return self.expansion.num_landmarks

    def influence(
        self,
        inputs: Any,
        k: int | None = None,
        proponents: bool = True,
        target: TargetSpec = None,
        show_progress: bool = False,
    ) -> Tensor | KMostInfluentialResults:
        """Influence scores of all landmarks, or the k most influential ones.

        Args:
            inputs: Test inputs: a tensor (n, ...), a tuple ``(x,)`` or
                ``(x, labels)`` (labels are ignored), or a data set or iterable
                of such batches (e.g. a DataLoader).
            k: None returns all scores; an int returns the ``k`` highest
                (``proponents=True``) or lowest (``proponents=False``) scores per
                test input, ``1 <= k <= m``.
            proponents: Whether to seek proponents (highest scores) or opponents
                (lowest, most negative: landmarks pulling against the target).
            target: None for "what builds x" (see the class docstring), or any
                target.
            show_progress: Show a progress bar over the batches of test inputs.

        Returns:
            With ``k=None`` a tensor of shape (n, m), ``scores[i, j]`` the influence
            of landmark j on test input i. Otherwise ``KMostInfluentialResults
            (indices, influence_scores)``, both of shape (n, k), sorted from the
            highest (proponents) or lowest (opponents) score.

        Raises:
            ValueError: For a bad ``k``, shape or NaN/inf inputs.
            TypeError: For inputs or targets of an unknown type.
        """
        if k is not None:
            k = check_count(k, self.num_landmarks)
        rows = self.compute_intermediate_quantities(inputs, show_progress)
        if k is None:
            return self.expansion.scores(target=target, rows=rows)
        return self.expansion.top(k=k, target=target, proponents=proponents, rows=rows)

    def self_influence(
        self,
        inputs: None = None,
        show_progress: bool = False,
        target: TargetSpec = None,
    ) -> Tensor:
        """Influence of each landmark on itself, ``(k(l_j, l_j) - mu_j) <w_j, v(l_j)>``.

        The diagonal of ``influence(landmarks)``. Only landmarks carry weights, so
        self-influence is defined for them alone.

        Args:
            inputs: Must be None (the landmarks are used); kept for Captum's
                signature.
            show_progress: Unused (the landmarks' kernel rows are cached); kept
                for Captum's signature.
            target: None (each landmark's own direction) or any target shared by
                all landmarks or given per landmark.

        Returns:
            Tensor of shape (m,).
        """
        if inputs is not None:
            raise ValueError(
                "self_influence scores the landmarks on themselves; other samples "
                "have no representer weights. Call it with inputs=None, and use "
                "influence(inputs) for the landmark scores of other samples."
            )
        scores = self.expansion.scores(target=target, rows=self.expansion.landmark_rows)
        return scores.diagonal()

    def compute_intermediate_quantities(
        self, inputs: Any, show_progress: bool = False
    ) -> Tensor:
        """Test-side vectors: the expansion's kernel rows ``k(l_j, x) - mu_j``.

        For a target shared by all inputs their products with
        :meth:`landmark_quantities` (``diag(<w_j, v>)``) are the scores:
        ``influence(x, target=t) = compute_intermediate_quantities(x) @
        landmark_quantities(t).T``. The test side depends on neither the target
        nor the weights.

        Args:
            inputs: Test inputs as in :meth:`influence`.
            show_progress: Show a progress bar over the batches.

        Returns:
            Tensor of shape (n, m).
        """
        x = collect_inputs(inputs)
        return self.expansion.rows(x, show_progress=show_progress)

    def landmark_coefficients(self, target: TargetSpec) -> Tensor:
        """``u_j = <w_j, v>`` for a target shared by all inputs, shape (m,)."""
        return self.expansion.coefficients(target)

    def landmark_quantities(self, target: TargetSpec) -> Tensor:
        """Landmark-side vectors ``diag(<w_j, v>)``, shape (m, m); row j: landmark j.

        Args:
            target: A target shared by all inputs (an int, a Direction or a
                Similarity of shape (h,)); the default "what builds x" depends on
                the input and has none.

        Returns:
            Tensor of shape (m, m).
        """
        return torch.diag(self.landmark_coefficients(target))
