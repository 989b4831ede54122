"""The landmark expansion that every explanation explains, validated once.

A :class:`~lightly_krepes.KernelBackbone` computes ``f(x) = sum_j alpha_j k(l_j, x)
+ gamma`` exactly. Read naively, that sum explains badly: the Nyström weights
``alpha`` load on eigen-directions of the landmark Gram matrix that barely change
``f``, and a flat kernel (a cosine-normalised eNTK varies by a few percent across
inputs) adds the same large term ``alpha_j k`` for every input, so the terms
cancel: ``sum_j |c_j(x)| / |f(x)|`` in the hundreds. :class:`LandmarkExpansion`
fixes the expansion an explanation reads, in two exact steps:

1. **Ridge refit** of the weights, ``w_eta = (K_mm + eta lam_1 I)^{-1} K_mm w``
   (Yeh et al. [1] refit the model's own predictions; Engel et al. [2] penalise
   per-point weights), with ``eta`` chosen as the largest value on a grid that
   keeps the expansion faithful to the model (correlation >= 0.99 on held-out
   inputs). The same filter applies to any weights, e.g. the audit step
   ``Delta alpha``.
2. **A reference kernel row** ``mu``: the terms are ``c_j(x) = w_j (k(l_j, x) -
   mu_j)`` and the offset ``f_0 = b + sum_j w_j mu_j``. With the landmarks' mean
   kernel row, ``mu_j = mean_i k(l_j, l_i)``, ``f_0`` is the average landmark's
   representation and removing a landmark's term means replacing its kernel
   value by its average (mean ablation), not by 0, which for a flat kernel would
   move every representation by the same large vector. By default the reference
   (0 or the landmark mean) is the one whose terms cancel least.

Both are exact rewrites of the explained expansion ``g(x) = sum_j c_j(x) + f_0``
(``g = f`` for the raw weights). :class:`RidgeRefit` reports the fidelity of ``g``
to the model and the cancellation ratio before and after.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Yeh et al., 2018, Representer Point Selection for Explaining Deep Neural
  Networks, arXiv 1811.09720
- [2] Engel et al., 2024, Faithful and Efficient Explanations for Neural Networks
  via Neural Tangent Kernel Surrogate Models, arXiv 2305.14585
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from captum.influence._utils.common import KMostInfluentialResults
from torch import Tensor
from tqdm.auto import tqdm

from lightly_krepes._validation import check_finite, check_floating, check_positive_int
from lightly_krepes.attribution._checks import (
    DEFAULT_BATCH_SIZE,
    check_backbone,
    check_count,
    check_inputs,
)
from lightly_krepes.attribution.targets import TargetSpec, as_target
from lightly_krepes.backbone import KernelBackbone

DEFAULT_ETAS: tuple[float, ...] = (
    1e-7,
    1e-6,
    1e-5,
    3e-5,
    1e-4,
    3e-4,
    1e-3,
    3e-3,
    1e-2,
    3e-2,
    1e-1,
)
"""Relative ridges tried by the automatic choice (``eta = 0``, no ridge, always)."""


@dataclass(frozen=True)
class RidgeRefit:
    """How faithful the explained weights are and how much their terms cancel.

    Attributes:
        eta: Relative ridge used: ``w_eta = (K_mm + eta lam_1 I)^{-1} K_mm w``
            (0: the raw weights).
        fidelity: Correlation between the explained expansion ``g(x)`` and the
            model (``backbone(x)`` for the backbone's own weights, the raw
            expansion for given weights) on the evaluation inputs, every output
            dimension centred over the inputs and all pooled.
        cancellation: Median over the evaluation inputs of
            ``sum_j |c_j(x)| / |sum_j c_j(x)|`` with the explained weights: 1
            means the terms do not cancel at all, 50 that they are 50 times
            larger than what they add up to.
        cancellation_raw: The same ratio with the raw weights (same reference
            row), for comparison.
        held_out: True when the fidelity was measured on given inputs (the
            held-out half of them when ``eta`` was chosen), False when no inputs
            were given and the landmarks were used instead.
        num_inputs: Number of evaluation inputs.
        min_fidelity: Fidelity the automatic choice had to keep.
        grid: ``(eta, fidelity on the selection inputs)`` for every ridge tried.
        reference: The reference kernel row used: ``"none"`` (0, the plain
            expansion), ``"landmark mean"`` or ``"given"``.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
    """

    eta: float
    fidelity: float
    cancellation: float
    cancellation_raw: float
    held_out: bool
    num_inputs: int
    min_fidelity: float
    grid: tuple[tuple[float, float], ...]
    reference: str


def _correlation(a: Tensor, b: Tensor) -> float:
    """Pooled correlation of two (n, h) outputs, each column centred over n."""
    ac, bc = a - a.mean(0), b - b.mean(0)
    norm_a, norm_b = float(ac.norm()), float(bc.norm())
    if norm_a == 0 or norm_b == 0:
        # Constant outputs: faithful only if they are the same constant.
        return 1.0 if bool(torch.allclose(a, b)) else 0.0
    return float((ac * bc).sum()) / (norm_a * norm_b)


def _median_ratio(numerator: Tensor, denominator: Tensor) -> float:
    valid = denominator > 0
    if not bool(valid.any()):
        return math.inf
    return float((numerator[valid] / denominator[valid]).median())


class LandmarkExpansion:
    """``g(x) = sum_j w_j (k(l_j, x) - mu_j) + f_0``: the expansion explanations read.

    Built once from a backbone (checks, the landmark Gram matrix, the ridge refit
    and its report), then serves kernel rows in batches, outputs with gates or
    removed landmarks, per-landmark terms and every score:

    - :meth:`scores`: ``s_v(l_j, x) = (k(l_j, x) - mu_j) <w_j, v(x)>``, which add up
      exactly with ``<f_0, v(x)>`` to ``<g(x), v(x)>``. The default target
      (:class:`~lightly_krepes.attribution.OwnDirection`) is ``v(x) = (g(x) -
      f_0) / |g(x) - f_0|``, "what builds x": the scores add up to
      ``|g(x) - f_0|``, proponents are positive, opponents negative.
    - :meth:`sample_specific_influence`: the paper's
      ``IS(l, x) = |k(l, x)| |w_l|`` (unsigned, an upper bound on a term's size).

    Args:
        backbone: The kernel backbone.
        weights: Weights (m, h) to explain, e.g. the audit step ``Delta alpha``;
            None explains the backbone itself (``alpha``, its
            ``representer_weights``, with offset gamma).
        bias: Offset b (h,); None uses gamma for the backbone's own weights and
            zeros for given weights (``Delta f`` has no offset).
        regularize: Ridge-refit the weights (see the module docstring); False
            explains them as they are.
        eta: A fixed relative ridge (> 0); None chooses it on ``etas``.
        inputs: Held-out inputs (n, ...) on which the fidelity is measured
            (e.g. test samples). When ``eta`` is chosen they are split (seeded)
            in two halves: one to choose, one to report. None uses the landmarks,
            which are not held out (``RidgeRefit.held_out`` is False).
        etas: Relative ridges (each > 0) for the automatic choice.
        min_fidelity: Fidelity the chosen ``eta`` must keep, in (0, 1].
        center: The reference kernel row ``mu``: ``"auto"`` (default) takes
            whichever of 0 and the landmarks' mean kernel row makes the terms
            cancel least on the selection inputs (a flat kernel such as a
            cosine-normalised eNTK needs the mean, a local one such as a narrow
            RBF is best left at 0); True for the mean, False for 0 (the plain
            expansion ``sum_j w_j k(l_j, x) + b``), or a tensor (m,), e.g. the
            mean kernel row over a data set.
        seed: Seed of the split of ``inputs``.
        batch_size: Inputs per kernel evaluation; results do not depend on it.

    Attributes:
        backbone: The backbone.
        weights: Tensor (m, h), the explained weights ``w_eta``.
        raw_weights: Tensor (m, h), the weights before the refit.
        bias: Tensor (h,), b.
        reference_row: Tensor (m,), ``mu``.
        offset: Tensor (h,), ``f_0 = b + mu @ w_eta``: what is left when every
            term is removed.
        refit: The :class:`RidgeRefit` report.
        own: Whether the backbone's own weights are explained.

    Raises:
        ValueError: For weights or bias of the wrong shape, NaN/inf values, a
            non-positive ``eta`` or grid value, ``min_fidelity`` outside (0, 1],
            or fewer than 4 inputs for the automatic choice.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Yeh et al., 2018, arXiv 1811.09720
        - [2] Engel et al., 2024, arXiv 2305.14585

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(32, 3).double(), out_dim=4)
        >>> expansion = LandmarkExpansion(backbone, inputs=torch.randn(40, 3).double())
        >>> expansion.refit.fidelity >= 0.98
        True
        >>> x = torch.randn(5, 3).double()
        >>> scores = expansion.scores(x)  # default target: what builds x
        >>> built = (expansion.outputs(x) - expansion.offset).norm(dim=1)
        >>> torch.allclose(scores.sum(1), built)
        True
    """

    def __init__(
        self,
        backbone: KernelBackbone,
        weights: Tensor | None = None,
        bias: Tensor | None = None,
        *,
        regularize: bool = True,
        eta: float | None = None,
        inputs: Tensor | None = None,
        etas: Sequence[float] | None = None,
        min_fidelity: float = 0.99,
        center: bool | str | Tensor = "auto",
        seed: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.backbone = check_backbone(backbone)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        landmarks = self.backbone.landmarks
        dtype, device = landmarks.dtype, landmarks.device
        m, h = landmarks.shape[0], self.backbone.out_dim
        self.own = weights is None
        if weights is None:
            raw = self.backbone.representer_weights.detach()
        else:
            check_floating(weights, "weights")
            if weights.shape != (m, h):
                raise ValueError(
                    f"weights must have shape (m, h) = ({m}, {h}): one row per "
                    f"landmark and one column per representation dimension, got "
                    f"{tuple(weights.shape)}. Pass e.g. the audit step Delta alpha "
                    f"(result.step.delta_alpha)."
                )
            check_finite(weights, "weights")
            raw = weights.detach()
        self.raw_weights = raw.to(dtype=dtype, device=device)
        gamma = self.backbone.linear.bias
        if bias is None and self.own and gamma is not None:
            bias = gamma
        self.bias = self._check_bias(bias, h, dtype, device)
        mode, grid = self._check_grid(regularize, eta, etas, min_fidelity)

        with torch.no_grad():
            gram = self._kernel_rows(landmarks)
            gram64 = gram.double()
            gram64 = 0.5 * (gram64 + gram64.T)
            references = self._check_center(center, gram64)
            evaluation = self._evaluation_inputs(inputs, gram64, mode == "auto", seed)
            weights64, mu64, report = self._refit(
                gram64, references, evaluation, mode, grid, float(min_fidelity)
            )
            report = dataclasses.replace(report, held_out=inputs is not None)
        self.weights = weights64.to(dtype=dtype, device=device)
        self.reference_row = mu64.to(dtype=dtype, device=device)
        self.offset = self.bias + self.reference_row @ self.weights
        self.refit = report
        self._gram = gram

    # ------------------------------------------------------------ construction
    @staticmethod
    def _check_bias(
        bias: Tensor | None, h: int, dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        if bias is None:
            return torch.zeros(h, dtype=dtype, device=device)
        check_floating(bias, "bias")
        if bias.shape != (h,):
            raise ValueError(
                f"bias must have shape (h,) = ({h},), one offset per representation "
                f"dimension, got {tuple(bias.shape)}."
            )
        check_finite(bias, "bias")
        return bias.detach().to(dtype=dtype, device=device)

    @classmethod
    def _check_grid(
        cls,
        regularize: bool,
        eta: float | None,
        etas: Sequence[float] | None,
        min_fidelity: float,
    ) -> tuple[str, list[float]]:
        """The refit mode ("raw", "fixed" or "auto") and the ridges it tries."""
        if isinstance(min_fidelity, bool) or not 0 < min_fidelity <= 1:
            raise ValueError(
                f"min_fidelity must lie in (0, 1] (a correlation), got {min_fidelity}."
            )
        if eta is not None:
            if not regularize:
                raise ValueError(
                    "eta was given with regularize=False; drop eta to explain the "
                    "raw weights, or set regularize=True to refit at that ridge."
                )
            return "fixed", [cls._check_eta(eta, "eta")]
        if not regularize:
            return "raw", []
        values = DEFAULT_ETAS if etas is None else tuple(etas)
        if not values:
            raise ValueError("etas is empty; pass at least one positive ridge.")
        return "auto", sorted(cls._check_eta(v, "etas entries") for v in values)

    @staticmethod
    def _check_eta(value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
        if not 0 < value < float("inf"):
            raise ValueError(
                f"{name} must be a finite, positive relative ridge (the refit solves "
                f"(K_mm + eta lam_1 I) w = K_mm alpha), got {value}. Use "
                f"regularize=False for the raw weights."
            )
        return float(value)

    @staticmethod
    def _check_center(
        center: bool | str | Tensor, gram64: Tensor
    ) -> list[tuple[str, Tensor]]:
        """Candidate reference rows ``(name, mu)``; the least cancelling wins."""
        m = gram64.shape[0]
        zero = ("none", torch.zeros(m, dtype=torch.float64, device=gram64.device))
        mean = ("landmark mean", gram64.mean(0))
        if isinstance(center, bool):
            return [mean] if center else [zero]
        if isinstance(center, str):
            if center != "auto":
                raise ValueError(
                    f"center must be 'auto', True, False or a reference kernel row "
                    f"of shape (m,) = ({m},), got {center!r}."
                )
            return [zero, mean]
        check_floating(center, "center")
        if center.shape != (m,):
            raise ValueError(
                f"center must be 'auto', True, False or a reference kernel row of "
                f"shape (m,) = ({m},), got shape {tuple(center.shape)}."
            )
        check_finite(center, "center")
        return [("given", center.detach().double().to(gram64.device))]

    def _evaluation_inputs(
        self,
        inputs: Tensor | None,
        gram64: Tensor,
        split: bool,
        seed: int,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Kernel rows and model outputs of the selection and evaluation inputs."""
        if inputs is None:
            rows = gram64
            model = self._model_outputs(self.backbone.landmarks, rows)
            return rows, model, rows, model
        x = check_inputs(self.backbone.landmarks, inputs, "inputs")
        rows = self._kernel_rows(x).double()
        model = self._model_outputs(x, rows)
        if not split:
            if x.shape[0] < 2:
                raise ValueError(
                    "inputs must hold at least 2 samples to measure a correlation."
                )
            return rows, model, rows, model
        n = x.shape[0]
        if n < 4:
            raise ValueError(
                f"inputs must hold at least 4 samples to choose eta on one half and "
                f"report the fidelity on the other, got {n}. Pass more held-out "
                f"inputs, or fix eta."
            )
        order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
        order = order.to(rows.device)
        select, report = order[: n // 2], order[n // 2 :]
        return rows[select], model[select], rows[report], model[report]

    def _model_outputs(self, x: Tensor, rows64: Tensor) -> Tensor:
        if self.own:
            return self.backbone(x).double()
        return rows64 @ self.raw_weights.double() + self.bias.double()

    def _refit(
        self,
        gram64: Tensor,
        references: list[tuple[str, Tensor]],
        evaluation: tuple[Tensor, Tensor, Tensor, Tensor],
        mode: str,
        grid: list[float],
        min_fidelity: float,
    ) -> tuple[Tensor, Tensor, RidgeRefit]:
        select_rows, select_model, report_rows, report_model = evaluation
        raw64 = self.raw_weights.double()
        bias64 = self.bias.double()
        weights64 = raw64
        chosen = 0.0
        tried: list[tuple[float, float]] = []
        if mode != "raw":
            # One eigendecomposition serves every ridge: the refit is the filter
            # lam / (lam + eta lam_1) on the Gram matrix's eigen-directions.
            lam, vecs = torch.linalg.eigh(gram64)
            lam = lam.clamp_min(0.0)
            lam_max = float(lam.max())
            coefficients = vecs.T @ raw64
            projected = select_rows @ vecs
            for eta in grid:
                filt = lam / (lam + eta * lam_max)
                outputs = projected @ (filt[:, None] * coefficients) + bias64
                tried.append((eta, _correlation(outputs, select_model)))
            if mode == "fixed":
                chosen = grid[0]
            else:
                # The largest ridge that keeps the expansion faithful; eta = 0
                # (the raw weights, exact) when none does.
                faithful = [eta for eta, fid in tried if fid >= min_fidelity]
                chosen = max(faithful, default=0.0)
            if chosen > 0:
                filt = lam / (lam + chosen * lam_max)
                weights64 = vecs @ (filt[:, None] * coefficients)
        fidelity = _correlation(report_rows @ weights64 + bias64, report_model)

        def ratio(rows: Tensor, mu: Tensor, w: Tensor) -> float:
            centred = rows - mu
            return _median_ratio(
                centred.abs() @ torch.linalg.vector_norm(w, dim=1),
                torch.linalg.vector_norm(centred @ w, dim=1),
            )

        # The reference row whose terms cancel least on the selection inputs (a
        # flat kernel needs the landmark mean, a local one is best left at 0).
        name, mu64 = min(
            references, key=lambda ref: ratio(select_rows, ref[1], weights64)
        )
        report = RidgeRefit(
            eta=chosen,
            fidelity=fidelity,
            cancellation=ratio(report_rows, mu64, weights64),
            cancellation_raw=ratio(report_rows, mu64, raw64),
            held_out=False,
            num_inputs=int(report_rows.shape[0]),
            min_fidelity=min_fidelity,
            grid=tuple(tried),
            reference=name,
        )
        return weights64, mu64, report

    # ------------------------------------------------------------------ basics
    @property
    def landmarks(self) -> Tensor:
        """The landmarks, shape (m, ...)."""
        return self.backbone.landmarks

    @property
    def num_landmarks(self) -> int:
        """Number of landmarks m."""
        return int(self.weights.shape[0])

    @property
    def out_dim(self) -> int:
        """Representation dimension h."""
        return int(self.weights.shape[1])

    def __repr__(self) -> str:
        r = self.refit
        return (
            f"LandmarkExpansion(m={self.num_landmarks}, h={self.out_dim}, "
            f"own={self.own}, eta={r.eta:.3g}, fidelity={r.fidelity:.4f}, "
            f"cancellation={r.cancellation:.3g} (raw {r.cancellation_raw:.3g}))"
        )

    def _kernel_rows(self, x: Tensor, show_progress: bool = False) -> Tensor:
        starts = range(0, x.shape[0], self.batch_size)
        rows = [
            self.backbone.nystrom.landmark_kernel(x[i : i + self.batch_size])
            for i in tqdm(starts, disable=not show_progress, desc="kernel rows")
        ]
        return torch.cat(rows)

    def rows(self, x: Tensor, *, show_progress: bool = False) -> Tensor:
        """The expansion's kernel rows ``k(l_j, x) - mu_j``, batch by batch.

        Every other method accepts them as ``rows=`` so that the (expensive)
        kernel evaluations are done once. Differentiable in ``x`` when gradients
        are enabled.

        Args:
            x: Tensor of shape (n, ...), samples shaped like the landmarks.
            show_progress: Show a progress bar over the batches.

        Returns:
            Tensor of shape (n, m).
        """
        check_inputs(self.landmarks, x, "x")
        return self._kernel_rows(x, show_progress) - self.reference_row

    @property
    def landmark_rows(self) -> Tensor:
        """The expansion's rows of the landmarks themselves, shape (m, m)."""
        return self._gram - self.reference_row

    def _resolve(self, x: Tensor | None, rows: Tensor | None) -> Tensor:
        if (x is None) == (rows is None):
            raise ValueError(
                "Pass exactly one of x (inputs) and rows (from expansion.rows(x))."
            )
        if rows is None:
            assert x is not None
            return self.rows(x)
        check_floating(rows, "rows")
        if rows.dim() != 2 or rows.shape[1] != self.num_landmarks:
            raise ValueError(
                f"rows must have shape (n, m) with m = {self.num_landmarks} "
                f"landmarks (from expansion.rows(x)), got {tuple(rows.shape)}."
            )
        return rows

    # ----------------------------------------------------------------- outputs
    def outputs(
        self,
        x: Tensor | None = None,
        *,
        rows: Tensor | None = None,
        mask: Tensor | None = None,
        remove: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> Tensor:
        """The explained outputs ``g(x)``, with gated, removed or kept terms.

        A removed term falls back to the reference (``k(l_j, x)`` replaced by
        ``mu_j``), with the weights fixed.

        Args:
            x: Tensor of shape (n, ...); or pass ``rows``.
            rows: Tensor (n, m) from :meth:`rows`.
            mask: Gates (n, m) or (m,): ``sum_j mask_j c_j(x) + f_0``.
            remove: Landmark indices (n, k) (per input) or (k,) whose terms
                are removed.
            keep: Landmark indices (n, k) or (k,) whose terms are the only
                ones kept.

        Returns:
            Tensor of shape (n, h).
        """
        r = self._resolve(x, rows)
        given = [v is not None for v in (mask, remove, keep)]
        if sum(given) > 1:
            raise ValueError("Pass at most one of mask, remove and keep.")
        if remove is not None:
            mask = 1.0 - self._index_mask(remove, r.shape[0], "remove")
        elif keep is not None:
            mask = self._index_mask(keep, r.shape[0], "keep")
        elif mask is not None:
            mask = self._check_mask(mask, r.shape[0])
        if mask is not None:
            r = r * mask.to(r.dtype)
        out: Tensor = r @ self.weights + self.offset
        return out

    def _check_mask(self, mask: Tensor, n: int) -> Tensor:
        check_floating(mask, "mask")
        m = self.num_landmarks
        if mask.shape not in ((m,), (n, m)):
            raise ValueError(
                f"mask must have shape (m,) = ({m},) or (n, m) = ({n}, {m}), one "
                f"gate per landmark (and input), got {tuple(mask.shape)}."
            )
        check_finite(mask, "mask")
        return mask

    def _index_mask(self, indices: Tensor, n: int, name: str) -> Tensor:
        m = self.num_landmarks
        if not isinstance(indices, Tensor) or indices.is_floating_point():
            raise TypeError(f"{name} must be an integer tensor of landmark indices.")
        if indices.dim() == 1:
            indices = indices[None].expand(n, -1)
        if indices.dim() != 2 or indices.shape[0] != n:
            raise ValueError(
                f"{name} must have shape (k,) or (n, k) = ({n}, k), landmark indices "
                f"per input, got {tuple(indices.shape)}."
            )
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= m):
            raise ValueError(f"{name} holds indices outside [0, {m - 1}].")
        mask = torch.zeros(n, m, dtype=self.weights.dtype, device=self.weights.device)
        return mask.scatter(1, indices.to(mask.device).long(), 1.0)

    def contributions(
        self, x: Tensor | None = None, *, rows: Tensor | None = None
    ) -> Tensor:
        """Per-landmark terms ``c_j(x) = w_j (k(l_j, x) - mu_j)``, shape (n, m, h).

        They add up with :attr:`offset` to :meth:`outputs`.
        """
        r = self._resolve(x, rows)
        return r[:, :, None] * self.weights[None]

    def cancellation(
        self, x: Tensor | None = None, *, rows: Tensor | None = None
    ) -> Tensor:
        """``sum_j |c_j(x)| / |sum_j c_j(x)|`` per input, shape (n,); >= 1.

        1 means the terms all point the same way; large values mean they cancel.
        Inputs whose terms add up to 0 get ``inf``.
        """
        r = self._resolve(x, rows)
        numerator = r.abs() @ torch.linalg.vector_norm(self.weights, dim=1)
        denominator = torch.linalg.vector_norm(r @ self.weights, dim=1)
        ratio: Tensor = numerator / denominator
        return ratio

    def model_outputs(self, x: Tensor) -> Tensor:
        """What the expansion is faithful to, shape (n, h).

        ``backbone(x)`` for the backbone's own weights; the raw expansion
        ``sum_j w_j k(l_j, x) + b`` (before the ridge refit) for given weights.
        """
        check_inputs(self.landmarks, x, "x")
        if self.own:
            out: Tensor = self.backbone(x)
            return out
        rows = self._kernel_rows(x)
        raw: Tensor = rows @ self.raw_weights + self.bias
        return raw

    def fidelity(self, x: Tensor) -> float:
        """Correlation of :meth:`outputs` with :meth:`model_outputs` on ``x``.

        Every output dimension is centred over the inputs and all are pooled (as
        in :class:`RidgeRefit`); needs at least 2 inputs.
        """
        with torch.no_grad():
            model = self.model_outputs(x).double()
            return _correlation(self.outputs(x).double(), model)

    # ------------------------------------------------------------------ scores
    def target_vectors(
        self,
        target: TargetSpec = None,
        x: Tensor | None = None,
        *,
        rows: Tensor | None = None,
    ) -> Tensor:
        """The vectors ``v(x)`` of a target, shape (n, h) or (1, h)."""
        resolved = as_target(target)
        r = self._resolve(x, rows)
        return resolved.vectors(r @ self.weights + self.offset, self.offset)

    def scores(
        self,
        x: Tensor | None = None,
        target: TargetSpec = None,
        *,
        rows: Tensor | None = None,
    ) -> Tensor:
        """``s_v(l_j, x) = (k(l_j, x) - mu_j) <w_j, v(x)>``, shape (n, m).

        They add up with ``<f_0, v(x)>`` to ``<g(x), v(x)>``.

        Args:
            x: Tensor of shape (n, ...); or pass ``rows``.
            target: None for "what builds x" (``OwnDirection``), an int or ints
                (dimensions), a Direction (e.g. a concept), a Similarity or any
                :class:`~lightly_krepes.attribution.Target`.
            rows: Tensor (n, m) from :meth:`rows`.

        Returns:
            Tensor of shape (n, m).
        """
        resolved = as_target(target)
        r = self._resolve(x, rows)
        vectors = resolved.vectors(r @ self.weights + self.offset, self.offset)
        scores: Tensor = r * (vectors @ self.weights.T)
        return scores

    def top(
        self,
        x: Tensor | None = None,
        k: int = 10,
        target: TargetSpec = None,
        *,
        proponents: bool = True,
        contrast: bool = False,
        rows: Tensor | None = None,
    ) -> KMostInfluentialResults:
        """The ``k`` highest (proponents) or lowest (opponents) scores per input.

        A term ``s_v(l_j, x) = (k(l_j, x) - mu_j) <w_j, v(x)>`` is positive in two
        ways: landmark j resembles x more than the reference row does and its
        weight points along ``v(x)``, or it resembles x *less* and its weight
        points away (a product of two negatives). Only the first kind are
        representer landmarks of x: in the paper's uncentred expansion every
        kernel value is positive, so the second kind never arises, and ranking it
        first lets landmarks unlike x explain it (on Adult the top landmark then
        shares x's class less often than the cosine-nearest one; without these
        contrast terms more often). So by default landmarks with
        ``k(l_j, x) - mu_j > 0`` are ranked first, by their score, and the others
        after them (also by score), so that ``k`` results always come back. Their
        scores are returned unchanged and still add up as :meth:`scores` says.

        Args:
            x: Tensor of shape (n, ...); or pass ``rows``.
            k: Number of landmarks per input, ``1 <= k <= m``.
            target: The target of the scores (None: what builds x).
            proponents: Highest scores (True) or lowest, most negative (False).
            contrast: Rank by the scores alone, contrast terms included.
            rows: Tensor (n, m) from :meth:`rows`.

        Returns:
            ``KMostInfluentialResults(indices, influence_scores)``, both (n, k).
        """
        k = check_count(k, self.num_landmarks)
        r = self._resolve(x, rows)
        scores = self.scores(target=target, rows=r)
        return rank_terms(scores, None if contrast else r > 0, k, proponents=proponents)

    def coefficients(self, target: TargetSpec) -> Tensor:
        """``<w_j, v>`` for a target shared by all inputs, shape (m,).

        Raises:
            ValueError: For targets that depend on the input (the default
                ``OwnDirection``, per-input dimensions or directions).
        """
        resolved = as_target(target)
        if resolved.depends_on_input:
            raise ValueError(
                f"{resolved!r} depends on the input, so there are no landmark "
                f"coefficients shared by all inputs; use scores(x, target) or pass "
                f"a fixed target (an int, a Direction or a Similarity of shape (h,))."
            )
        probe = torch.zeros_like(self.offset)[None]
        vector = resolved.vectors(probe, self.offset)
        coefficients: Tensor = (vector @ self.weights.T)[0]
        return coefficients

    def sample_specific_influence(
        self, x: Tensor | None = None, *, rows: Tensor | None = None
    ) -> Tensor:
        """The paper's ``IS(l, x) = |k(l, x)| |w_l|``, shape (n, m), non-negative.

        An unsigned bound on the size of a term whatever its direction; with a
        flat kernel the x-independent factor ``|w_l|`` decides it, so it is not
        specific to x (use :meth:`scores` for that).
        """
        r = self._resolve(x, rows) + self.reference_row
        scores: Tensor = r.abs() * torch.linalg.vector_norm(self.weights, dim=1)
        return scores


def rank_terms(
    scores: Tensor, similar: Tensor | None, k: int, *, proponents: bool = True
) -> KMostInfluentialResults:
    """The ``k`` highest (or lowest) scores per row, similar landmarks first.

    The one ranking behind :meth:`LandmarkExpansion.top`, the influence adapter,
    the validation checks and the pictures.

    Args:
        scores: Tensor (n, m) of term scores.
        similar: Boolean tensor (n, m), True where ``k(l_j, x) - mu_j > 0``; those
            landmarks are ranked before the others. None ranks by score alone.
        k: Results per row, ``1 <= k <= m``.
        proponents: Highest scores (True) or lowest (False).

    Returns:
        ``KMostInfluentialResults(indices, influence_scores)``, both (n, k).

    Examples:
        >>> scores = torch.tensor([[3.0, 2.0, 1.0]])
        >>> similar = torch.tensor([[False, True, True]])
        >>> rank_terms(scores, similar, 2).indices
        tensor([[1, 2]])
        >>> rank_terms(scores, None, 2).indices
        tensor([[0, 1]])
    """
    k = check_count(k, int(scores.shape[1]))
    key = scores if proponents else -scores
    if similar is not None:
        if similar.shape != scores.shape:
            raise ValueError(
                f"similar must have the shape of scores {tuple(scores.shape)}, got "
                f"{tuple(similar.shape)}."
            )
        # Shifting every dissimilar landmark's key below the row's minimum puts
        # them after all similar ones and keeps the order within both groups.
        spread = key.amax(1, keepdim=True) - key.amin(1, keepdim=True) + 1.0
        key = torch.where(similar, key, key - spread)
    indices = torch.topk(key, k, dim=1).indices
    return KMostInfluentialResults(
        indices=indices, influence_scores=scores.gather(1, indices)
    )


def as_expansion(
    source: KernelBackbone | LandmarkExpansion,
    weights: Tensor | None = None,
    name: str = "source",
) -> LandmarkExpansion:
    """A :class:`LandmarkExpansion` from an expansion or a backbone (+ weights).

    A backbone is wrapped with the defaults (ridge refit chosen on the landmarks,
    landmark-mean reference row); build the expansion yourself to pass held-out
    inputs or other options, and to reuse it across calls.
    """
    if isinstance(source, LandmarkExpansion):
        if weights is not None:
            raise ValueError(
                f"{name} is already a LandmarkExpansion (it carries its weights); "
                f"pass weights only with a KernelBackbone."
            )
        return source
    if isinstance(source, KernelBackbone):
        return LandmarkExpansion(source, weights)
    raise TypeError(
        f"{name} must be a KernelBackbone or a LandmarkExpansion, got "
        f"{type(source).__name__}."
    )
