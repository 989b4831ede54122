"""Exact landmark attributions of representations, as a Captum attribution method.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Kokhlikyan et al., 2020, Captum: A unified and generic model interpretability
  library for PyTorch, arXiv 2009.07896
"""

from __future__ import annotations

from typing import Literal, overload

import torch
from captum.attr import Attribution
from torch import Tensor

from lightly_krepes.attribution._common import (
    TargetSpec,
    check_backbone,
    kernel_rows,
    landmark_coefficients,
    target_vectors,
)
from lightly_krepes.attribution.landmark_mask import LandmarkMask
from lightly_krepes.backbone import KernelBackbone


def _single_input(inputs: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, bool]:
    if isinstance(inputs, Tensor):
        return inputs, False
    if isinstance(inputs, tuple) and len(inputs) == 1 and isinstance(inputs[0], Tensor):
        return inputs[0], True
    raise ValueError(
        "inputs must be a tensor of samples or a tuple (x,) of one tensor: a "
        "KernelBackbone takes a single input, got "
        f"{type(inputs).__name__}"
        + (f" of length {len(inputs)}" if isinstance(inputs, tuple) else "")
        + "."
    )


class LandmarkAttribution(Attribution):  # type: ignore[misc]
    """Attributes a scalarised representation to the landmarks, exactly.

    For ``s(x) = <f(x), v>`` (``v`` chosen by ``target``, see
    :class:`~lightly_krepes.attribution.RepresenterInfluence`) the attribution of
    landmark ``j`` is its term of the kernel expansion,

        attr_j(x) = k(l_j, x) <w_j, v>,    sum_j attr_j(x) + <b, v> = s(x),

    which is what IntegratedGradients, FeatureAblation and ShapleyValueSampling
    return on a :class:`LandmarkMask` (computed here in closed form, no sampling).
    With the default weights ``w = alpha`` and bias ``b = gamma`` they complete the
    backbone's output; pass ``weights=delta_alpha`` (the audit step) to attribute
    the change it makes (then ``b = 0`` unless a bias is given).

    Attributions live on landmarks, not on input features, so their shape is
    (B, m) whatever the input shape; they play the role of "gradient times input"
    for the mask at ``mask = 1`` against the empty expansion ``mask = 0``, hence
    :attr:`multiplies_by_inputs` is True. No gradients are needed, so
    :meth:`attribute` runs under ``torch.no_grad()`` (as Captum's metrics call it);
    with gradients enabled the result is differentiable in the inputs.

    Use with Captum's metrics: ``sensitivity_max(explainer.attribute, x,
    target=...)`` measures how the landmark attributions move under input noise.
    ``infidelity`` needs inputs shaped like the attributions, so evaluate it on the
    mask: ``infidelity(explainer.mask_model, perturb, torch.ones(B, m),
    explainer.attribute(x, target=t), additional_forward_args=(x,), target=t)``
    (zero for these exact attributions).

    Args:
        backbone: The kernel backbone.
        weights: Reference weights (m, h); None uses ``alpha``
            (``backbone.representer_weights``).
        bias: Offset (h,); None uses gamma with the default weights, zeros otherwise.

    Attributes:
        forward_func: The backbone (the model explained).
        mask_model: The matching :class:`LandmarkMask` (all h outputs).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Kokhlikyan et al., 2020, Captum, arXiv 2009.07896

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=4)
        >>> explainer = LandmarkAttribution(backbone)
        >>> x = torch.randn(5, 3)
        >>> attributions, delta = explainer.attribute(
        ...     x, target=0, return_convergence_delta=True
        ... )
        >>> attributions.shape, bool(delta.abs().max() < 1e-4)
        (torch.Size([5, 16]), True)
    """

    def __init__(
        self,
        backbone: KernelBackbone,
        weights: Tensor | None = None,
        bias: Tensor | None = None,
    ) -> None:
        check_backbone(backbone)
        super().__init__(backbone)
        self.backbone = backbone
        self.mask_model = LandmarkMask(backbone, weights, bias)
        self._own_expansion = weights is None and bias is None

    @property
    def multiplies_by_inputs(self) -> bool:
        """True: attributions are global (mask gradient times mask, against 0)."""
        return True

    def has_convergence_delta(self) -> bool:
        """True: see :meth:`compute_convergence_delta`."""
        return True

    @overload
    def attribute(
        self,
        inputs: Tensor,
        target: TargetSpec = ...,
        return_convergence_delta: Literal[False] = ...,
        batch_size: int = ...,
    ) -> Tensor: ...

    @overload
    def attribute(
        self,
        inputs: tuple[Tensor, ...],
        target: TargetSpec = ...,
        return_convergence_delta: Literal[False] = ...,
        batch_size: int = ...,
    ) -> tuple[Tensor, ...]: ...

    @overload
    def attribute(
        self,
        inputs: Tensor,
        target: TargetSpec = ...,
        *,
        return_convergence_delta: Literal[True],
        batch_size: int = ...,
    ) -> tuple[Tensor, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: tuple[Tensor, ...],
        target: TargetSpec = ...,
        *,
        return_convergence_delta: Literal[True],
        batch_size: int = ...,
    ) -> tuple[tuple[Tensor, ...], Tensor]: ...

    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetSpec = 0,
        return_convergence_delta: bool = False,
        batch_size: int = 512,
    ) -> Tensor | tuple[Tensor, ...] | tuple[Tensor | tuple[Tensor, ...], Tensor]:
        """Landmark attributions ``k(l_j, x) <w_j, v>``.

        Args:
            inputs: Tensor of shape (B, ...) or a tuple ``(x,)`` of one.
            target: Scalarisation: an int dimension, per-sample ints (list or
                integer tensor of shape (B,)), a Direction (or floating tensor of
                shape (h,)) or a Similarity.
            return_convergence_delta: Also return :meth:`compute_convergence_delta`.
            batch_size: Inputs per kernel evaluation; results do not depend on it.

        Returns:
            Attributions of shape (B, m), a tuple of one such tensor for tuple
            inputs; with ``return_convergence_delta`` also the (B,) deltas.
        """
        x, is_tuple = _single_input(inputs)
        rows = kernel_rows(self.backbone, x, batch_size)
        vectors = target_vectors(
            target, self.backbone.out_dim, x.shape[0], rows.dtype, rows.device
        )
        attributions = rows * landmark_coefficients(self.mask_model.weights, vectors)
        result: Tensor | tuple[Tensor, ...] = (
            (attributions,) if is_tuple else attributions
        )
        if not return_convergence_delta:
            return result
        delta = self.compute_convergence_delta(result, inputs, target)
        return result, delta

    def compute_convergence_delta(
        self,
        attributions: Tensor | tuple[Tensor, ...],
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetSpec = 0,
    ) -> Tensor:
        """Completeness gap ``sum_j attr_j + <b, v> - s(x)`` per sample (about 0).

        ``s(x) = <f(x), v>`` is the model's output: with the default weights and
        bias, the backbone's forward pass (Nyström map and linear layer, a
        different computation than the expansion); otherwise the
        :class:`LandmarkMask` at ``mask = 1``.

        Args:
            attributions: Tensor (B, m) or a tuple of one, e.g. from
                :meth:`attribute`.
            inputs: The inputs they explain, tensor (B, ...) or tuple of one.
            target: The target they were computed for.

        Returns:
            Tensor of shape (B,).
        """
        attr, _ = _single_input(attributions)
        x, _ = _single_input(inputs)
        m = self.mask_model.num_landmarks
        if attr.dim() != 2 or attr.shape != (x.shape[0], m):
            raise ValueError(
                f"attributions must have shape (B, m) = ({x.shape[0]}, {m}) for "
                f"{x.shape[0]} inputs, got {tuple(attr.shape)}."
            )
        with torch.no_grad():
            if self._own_expansion:
                outputs = self.backbone(x)
            else:
                outputs = self.mask_model(torch.ones_like(attr), x)
        vectors = target_vectors(
            target, self.backbone.out_dim, x.shape[0], outputs.dtype, outputs.device
        )
        scalar = (outputs * vectors).sum(1)
        offset = (self.mask_model.bias[None] * vectors).sum(1)
        return attr.sum(1) + offset - scalar
