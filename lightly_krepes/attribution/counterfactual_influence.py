"""Counterfactual landmark influence on the audit step: Banzhaf values over halves.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Wang and Jia, 2023, Data Banzhaf: A Robust Data Valuation Framework for
  Machine Learning, arXiv 2205.15466
- [2] Park et al., 2023, TRAK: Attributing Model Behavior at Scale, arXiv
  2303.14186
- [3] Kokhlikyan et al., 2020, Captum, arXiv 2009.07896
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from captum.influence import DataInfluence
from captum.influence._utils.common import KMostInfluentialResults
from torch import Tensor, nn
from tqdm.auto import tqdm

from lightly_krepes._inputs import view_batches
from lightly_krepes._validation import check_finite
from lightly_krepes.attribution._checks import check_count, collect_inputs
from lightly_krepes.attribution.expansion import rank_terms
from lightly_krepes.audit.audit import AuditResult
from lightly_krepes.audit.objective import DEFAULT_CURVATURE_ROWS, AuditObjective
from lightly_krepes.audit.restricted import restricted_step

#: Landmark halves drawn by default (half of them the complements of the others).
#: On CIFAR-10 (m = 256) the centred LDS of the values was .28 / .36 / .46 / .59 at
#: 32 / 64 / 128 / 256 halves (``benchmarks/explanations``, seed 0).
DEFAULT_NUM_SUBSETS = 128


class CounterfactualInfluence(DataInfluence):  # type: ignore[misc]
    """Which landmarks the audit step needs to change each input as it does.

    The representer scores of :class:`RepresenterInfluence` split the step's
    change ``Delta f(x) = sum_j k(l_j, x) Delta alpha_j`` into its terms. With many
    similar landmarks those terms cancel and stand in for one another: take a
    landmark out of the step and the others absorb its part, so a large term
    need not be one the step depends on. This adapter measures dependence
    instead. It re-solves the audit's damped Newton problem with only a random
    half ``S`` of the landmarks free to move (:func:`~lightly_krepes.audit.
    restricted_step`; map and prior fixed), records what each restricted step
    does at x along the full step's direction,
    ``y_S(x) = <Delta f_S(x), v(x)>``, ``v(x) = Delta f(x) / |Delta f(x)|``,
    and scores landmark ``j`` by its Banzhaf value [1], estimated over the
    halves by maximum sample reuse:

        influence[x, j] = mean_{S contains j} y_S(x) - mean_{S omits j} y_S(x).

    The Banzhaf value is the coefficient of the best additive model of
    ``y_S(x)`` over random subsets (a linear datamodel, [2]), so the scores are
    what the counterfactual check of ``benchmarks/explanations`` (the linear
    datamodeling score over halves) asks for. Half of the halves are the
    complements of the others, so every landmark is in exactly half of them.
    Unlike the representer scores they do not add up to ``Delta f(x)``.

    Cost: ``num_subsets`` restricted CG solves at construction (each as many
    Hessian-vector products as the audit's own step), then two GEMMs per query.
    Memory: ``num_subsets * m * out_dim`` float64 values.

    Args:
        result: The audit (``audit`` or ``audit_encoder``).
        loss: The loss the audit used.
        views: The audit's views: a list of p >= 2 tensors (n, ...) or an
            iterable of view batches, as for :func:`~lightly_krepes.audit.audit`;
            for :func:`~lightly_krepes.audit.audit_encoder`, its own views from
            :func:`~lightly_krepes.audit.audit_views` (same data, transform,
            batch size and seed).
        head: The frozen head the audit used, if any.
        num_subsets: Halves to draw, an even number >= 2.
        batch_size: Samples per loss batch for a list of p tensors (the audit's).
        max_iter: Maximum CG iterations per restricted solve (the audit's).
        tol: Relative CG residual (the audit's).
        curvature_rows: Curvature subsample of the Hessian products (the audit's
            default; None uses every batch).
        seed: Seed of the halves and of the curvature subsample. Do not evaluate
            the scores on halves drawn with the same seed.
        progress: Show a progress bar over the restricted solves.

    Attributes:
        subsets: Boolean tensor (num_subsets, m): row s marks the landmarks of
            half s.
        restricted_steps: Tensor (num_subsets, m, out_dim), float64: the
            restricted steps' ``Delta alpha``.
        delta_alpha: The full step's ``Delta alpha`` (m, out_dim), float64.
        model: The audited backbone (Captum's name).
        train_dataset: The landmarks (m, ...).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Wang and Jia, 2023, Data Banzhaf, arXiv 2205.15466
        - [2] Park et al., 2023, TRAK, arXiv 2303.14186
        - [3] Kokhlikyan et al., 2020, Captum, arXiv 2009.07896

    Examples:
        >>> from lightly.loss import NTXentLoss
        >>> from lightly_krepes.audit import audit, build_surrogate
        >>> encoder = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh())
        >>> x = torch.randn(64, 5)
        >>> surrogate = build_surrogate(encoder, x, num_landmarks=8, progress=False)
        >>> views = [x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)]
        >>> result = audit(surrogate, NTXentLoss(), views, damping=10.0,
        ...                batch_size=32, progress=False)
        >>> influence = CounterfactualInfluence(
        ...     result, NTXentLoss(), views, num_subsets=4, batch_size=32,
        ...     progress=False)
        >>> influence.influence(x[:3]).shape
        torch.Size([3, 8])
        >>> influence.influence(x[:3], k=2).indices.shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        result: AuditResult,
        loss: Callable[..., Tensor],
        views: Sequence[Tensor] | Iterable[Sequence[Tensor]],
        *,
        head: nn.Module | None = None,
        num_subsets: int = DEFAULT_NUM_SUBSETS,
        batch_size: int | None = None,
        max_iter: int = 200,
        tol: float = 1e-6,
        curvature_rows: int | None = DEFAULT_CURVATURE_ROWS,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        if not isinstance(result, AuditResult):
            raise TypeError(
                "result must be an AuditResult (from audit or audit_encoder), got "
                f"{type(result).__name__}."
            )
        if (
            isinstance(num_subsets, bool)
            or not isinstance(num_subsets, int)
            or num_subsets < 2
            or num_subsets % 2
        ):
            raise ValueError(
                "num_subsets must be an even integer >= 2 (each half is drawn with "
                f"its complement), got {num_subsets!r}."
            )
        self.backbone = result.audited
        self.model = self.backbone
        self.train_dataset = self.backbone.landmarks
        m = int(self.backbone.landmarks.shape[0])
        if m < 2:
            raise ValueError("Counterfactual influence needs at least 2 landmarks.")
        self.delta_alpha = result.step.delta_alpha.detach().cpu().to(torch.float64)
        objective = AuditObjective(
            result.backbone,
            loss,
            view_batches(views, batch_size),
            head=head,
            curvature_rows=curvature_rows,
            seed=seed,
            progress=False,
        )
        generator = torch.Generator().manual_seed(seed)
        masks = []
        for _ in range(num_subsets // 2):
            half = torch.zeros(m, dtype=torch.bool)
            half[torch.randperm(m, generator=generator)[: m // 2]] = True
            masks += [half, ~half]
        self.subsets = torch.stack(masks)
        steps = [
            restricted_step(
                objective, result.damping, mask, max_iter=max_iter, tol=tol
            ).cpu()
            for mask in tqdm(
                masks, desc="restricted steps", disable=not progress, leave=False
            )
        ]
        self.restricted_steps = torch.stack(steps)

    @property
    def num_landmarks(self) -> int:
        """Number of landmarks m."""
        return int(self.subsets.shape[1])

    def compute_intermediate_quantities(
        self, inputs: Any, show_progress: bool = False
    ) -> Tensor:
        """``y_S(x)`` of every half: shape (n, num_subsets).

        Args:
            inputs: Test inputs: a tensor (n, ...), a tuple ``(x,)`` or ``(x,
                labels)``, or a data set or iterable of batches.
            show_progress: Unused (one kernel pass); kept for Captum's signature.

        Returns:
            Tensor (n, num_subsets), float64.
        """
        x = collect_inputs(inputs)
        check_finite(x, "inputs")
        with torch.no_grad():
            kernel = self.backbone.nystrom.landmark_kernel(x).detach().cpu().double()
        direction = F.normalize(kernel @ self.delta_alpha, dim=1)
        k, m, h = self.restricted_steps.shape
        stacked = self.restricted_steps.permute(1, 0, 2).reshape(m, k * h)
        changes = (kernel @ stacked).reshape(-1, k, h)
        return torch.einsum("nkh,nh->nk", changes, direction)

    def influence(
        self,
        inputs: Any,
        k: int | None = None,
        proponents: bool = True,
        show_progress: bool = False,
    ) -> Tensor | KMostInfluentialResults:
        """Banzhaf values of all landmarks, or the k most influential ones.

        Args:
            inputs: Test inputs as in :meth:`compute_intermediate_quantities`.
            k: None returns all values; an int the ``k`` highest
                (``proponents=True``) or lowest values per input.
            proponents: Highest values (landmarks the step needs to move x along
                its change) or lowest (landmarks whose presence holds it back).
            show_progress: Unused; kept for Captum's signature.

        Returns:
            With ``k=None`` a tensor (n, m), float64; otherwise
            ``KMostInfluentialResults(indices, influence_scores)``, both (n, k).

        Raises:
            ValueError: For a bad ``k``, shape or NaN/inf inputs.
        """
        if k is not None:
            k = check_count(k, self.num_landmarks)
        values = self.compute_intermediate_quantities(inputs, show_progress)
        member = self.subsets.to(torch.float64)
        with_j = values @ member / member.sum(0)
        without_j = values @ (1.0 - member) / (1.0 - member).sum(0)
        scores = with_j - without_j
        if k is None:
            return scores
        return rank_terms(scores, None, k, proponents=proponents)

    def self_influence(
        self, inputs: None = None, show_progress: bool = False
    ) -> Tensor:
        """Banzhaf value of each landmark for the step's change at itself, (m,)."""
        if inputs is not None:
            raise ValueError(
                "self_influence scores the landmarks on themselves; use "
                "influence(inputs) for other samples."
            )
        scores = self.influence(self.backbone.landmarks)
        return cast(Tensor, scores).diagonal()
