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
from tqdm.auto import tqdm

from lightly_krepes.attribution._common import (
    DEFAULT_BATCH_SIZE,
    TargetSpec,
    check_backbone,
    check_batch_size,
    check_weights,
    collect_inputs,
    kernel_rows,
    landmark_coefficients,
    reference_weights,
    target_vectors,
)
from lightly_krepes.backbone import KernelBackbone


class RepresenterInfluence(DataInfluence):  # type: ignore[misc]
    """Influence of each landmark on a scalarised representation.

    The "training set" whose influence is scored is the backbone's ``m`` landmarks.
    For a scalarisation ``s(x) = <f(x), v>`` selected by ``target`` (see below) the
    representation decomposes exactly as ``s(x) = sum_j k(l_j, x) <w_j, v> +
    <gamma, v>``, and the influence of landmark ``j`` on test input ``x`` is its term

        influence[x, j] = k(l_j, x) <w_j, v>.

    With the default reference weights ``w = alpha`` (``backbone.representer_
    weights``) and ``target=t`` these are the contributions ``alpha_jt k(l_j, x)`` of
    :meth:`~lightly_krepes.KernelBackbone.contributions`; pass ``weights=delta_alpha``
    (the audit step ``Delta alpha``, shape (m, h)) to score the loss's contribution
    beyond the principal-component prior instead.

    The surface mirrors Captum's ``TracInCPBase``: :meth:`influence` (scores or the
    k most influential landmarks), :meth:`self_influence` and
    :meth:`compute_intermediate_quantities`. Scores are exact (no approximation),
    computed in batches of test inputs, and do not depend on the batch size.

    Targets (``target`` argument of the methods):

    - ``int`` t: representation dimension t, ``v = e_t``.
    - a list of ints / integer tensor (B,): one dimension per test input
      (:meth:`influence` only).
    - :class:`~lightly_krepes.attribution.Direction` (or a floating tensor (h,)):
      a concept direction, scores ``k(l_j, x) <w_j, v>``.
    - :class:`~lightly_krepes.attribution.Similarity`: similarity to a reference
      representation ``r``, linearised as the dot product with ``r / |r|``.

    Args:
        backbone: The kernel backbone whose landmarks are scored.
        weights: Reference weights of shape (m, h); None uses ``alpha`` (read from
            the backbone at each call, so it follows training).

    Attributes:
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
        >>> influence.influence(x, target=1).shape
        torch.Size([5, 16])
        >>> top = influence.influence(x, k=3, target=1)
        >>> top.indices.shape, top.influence_scores.shape
        (torch.Size([5, 3]), torch.Size([5, 3]))
    """

    def __init__(self, backbone: KernelBackbone, weights: Tensor | None = None) -> None:
        # Captum 0.9's DataInfluence spells its initialiser `__init_`, so there is no
        # base initialiser to call: the attributes it would set are set here.
        self.backbone = check_backbone(backbone)
        self.model = self.backbone
        self.train_dataset = self.backbone.landmarks
        self._weights = check_weights(self.backbone, weights)

    @property
    def weights(self) -> Tensor:
        """The reference weights in use (``alpha`` or the given ones), shape (m, h)."""
        return reference_weights(self.backbone, self._weights)

    @property
    def num_landmarks(self) -> int:
        """Number of landmarks m."""
        return int(self.backbone.landmarks.shape[0])

    def influence(
        self,
        inputs: Any,
        k: int | None = None,
        proponents: bool = True,
        target: TargetSpec = 0,
        show_progress: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Tensor | KMostInfluentialResults:
        """Influence scores of all landmarks, or the k most influential ones.

        Args:
            inputs: Test inputs: a tensor (n, ...), a tuple ``(x,)`` or
                ``(x, labels)`` (labels are ignored), or an iterable of such
                batches (e.g. a DataLoader).
            k: None returns all scores; an int returns the ``k`` highest
                (``proponents=True``) or lowest (``proponents=False``) scores per
                test input, in ``1 <= k <= m``.
            proponents: Whether to seek proponents (highest scores) or opponents
                (lowest, i.e. most negative: landmarks pulling against the target).
            target: The scalarisation (see the class docstring).
            show_progress: Show a progress bar over the batches of test inputs.
            batch_size: Test inputs per kernel evaluation.

        Returns:
            With ``k=None`` a tensor of shape (n, m), ``scores[i, j]`` the influence
            of landmark j on test input i. Otherwise ``KMostInfluentialResults
            (indices, influence_scores)``, both of shape (n, k), sorted from the
            highest (proponents) or lowest (opponents) score.

        Raises:
            ValueError: For a bad ``k``, target, shape or NaN/inf inputs.
            TypeError: For inputs or targets of the wrong type.
        """
        if k is None:
            return self._influence(inputs, target, show_progress, batch_size)
        return self._get_k_most_influential(
            inputs, k, proponents, target, show_progress, batch_size
        )

    def _influence(
        self,
        inputs: Any,
        target: TargetSpec = 0,
        show_progress: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Tensor:
        rows = self.compute_intermediate_quantities(inputs, show_progress, batch_size)
        vectors = target_vectors(
            target, self.backbone.out_dim, rows.shape[0], rows.dtype, rows.device
        )
        return rows * landmark_coefficients(self.weights, vectors)

    def _get_k_most_influential(
        self,
        inputs: Any,
        k: int = 5,
        proponents: bool = True,
        target: TargetSpec = 0,
        show_progress: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> KMostInfluentialResults:
        m = self.num_landmarks
        if isinstance(k, bool) or int(k) != k or not 1 <= k <= m:
            raise ValueError(
                f"k must be an integer between 1 and the number of landmarks ({m}), "
                f"got {k}."
            )
        scores = self._influence(inputs, target, show_progress, batch_size)
        values, indices = torch.topk(scores, int(k), dim=1, largest=bool(proponents))
        return KMostInfluentialResults(indices=indices, influence_scores=values)

    def self_influence(
        self,
        inputs: None = None,
        show_progress: bool = False,
        target: TargetSpec = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Tensor:
        """Influence of each landmark on itself, ``k(l_j, l_j) <w_j, v>``.

        The diagonal of ``influence(landmarks)``, computed batch by batch without
        the full (m, m) matrix ever being held. Only landmarks carry weights, so
        self-influence is defined for them alone.

        Args:
            inputs: Must be None (the landmarks are used); kept for Captum's
                signature.
            show_progress: Show a progress bar over the batches of landmarks.
            target: A target shared by all landmarks (int, Direction, Similarity).
            batch_size: Landmarks per kernel evaluation.

        Returns:
            Tensor of shape (m,).
        """
        if inputs is not None:
            raise ValueError(
                "self_influence scores the landmarks on themselves; other samples "
                "have no representer weights. Call it with inputs=None, and use "
                "influence(inputs) for the landmark scores of other samples."
            )
        coefficients = self.landmark_coefficients(target)
        landmarks = self.backbone.landmarks
        batch_size = check_batch_size(batch_size)
        starts = range(0, self.num_landmarks, batch_size)
        diagonal = [
            kernel_rows(self.backbone, landmarks[i : i + batch_size])[
                :, i : i + batch_size
            ].diagonal()
            for i in tqdm(starts, disable=not show_progress, desc="self-influence")
        ]
        return torch.cat(diagonal) * coefficients

    def compute_intermediate_quantities(
        self,
        inputs: Any,
        show_progress: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Tensor:
        """Test-side vectors: the kernel rows ``k_m(x) = [k(l_1, x) .. k(l_m, x)]``.

        Their dot products with the landmark-side vectors of
        :meth:`landmark_quantities` (rows of ``diag(<w_j, v>)``) are the scores:
        ``influence(x) = compute_intermediate_quantities(x) @
        landmark_quantities(target).T``. The test side does not depend on the
        target or the weights.

        Args:
            inputs: Test inputs as in :meth:`influence`.
            show_progress: Show a progress bar over the batches.
            batch_size: Inputs per kernel evaluation.

        Returns:
            Tensor of shape (n, m).
        """
        x = collect_inputs(inputs)
        return kernel_rows(self.backbone, x, batch_size, show_progress)

    def landmark_coefficients(self, target: TargetSpec = 0) -> Tensor:
        """``u_j = <w_j, v>`` for a target shared by all inputs, shape (m,)."""
        weights = self.weights
        vectors = target_vectors(
            target, self.backbone.out_dim, None, weights.dtype, weights.device
        )
        return landmark_coefficients(weights, vectors)[0]

    def landmark_quantities(self, target: TargetSpec = 0) -> Tensor:
        """Landmark-side vectors ``diag(<w_j, v>)``, shape (m, m); row j: landmark j.

        Args:
            target: A target shared by all inputs (int, Direction, Similarity).

        Returns:
            Tensor of shape (m, m).
        """
        return torch.diag(self.landmark_coefficients(target))
