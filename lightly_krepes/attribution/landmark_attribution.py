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

from lightly_krepes.attribution.expansion import LandmarkExpansion, as_expansion
from lightly_krepes.attribution.landmark_mask import LandmarkMask
from lightly_krepes.attribution.targets import TargetSpec, as_target
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

    For ``s(x) = <g(x), v(x)>`` (``v`` chosen by ``target``; None is "what builds
    x", see :class:`~lightly_krepes.attribution.RepresenterInfluence`) the
    attribution of landmark ``j`` is its term of the explained expansion,

        attr_j(x) = (k(l_j, x) - mu_j) <w_j, v(x)>,   sum_j attr_j + <f_0, v> = s(x),

    which is what IntegratedGradients, FeatureAblation and ShapleyValueSampling
    return on a :class:`LandmarkMask` with the same target (computed here in closed
    form, no sampling). Attributions live on landmarks, not on input features, so
    their shape is (B, m) whatever the input shape; they are "mask gradient times
    mask" at ``mask = 1`` against the empty expansion ``mask = 0``, hence
    :attr:`multiplies_by_inputs` is True. :meth:`attribute` re-enables gradients
    (Captum's metrics call it under ``torch.no_grad()``), so the attributions are
    differentiable in inputs that require grad.

    Use with Captum's metrics: ``sensitivity_max(explainer.attribute, x)``
    measures how the landmark attributions move under input noise.
    ``infidelity`` needs inputs shaped like the attributions, so evaluate it on
    the mask: ``infidelity(LandmarkMask(expansion, target=t), perturb,
    torch.ones(B, m), explainer.attribute(x, target=t),
    additional_forward_args=(x,))`` (zero for these exact attributions).

    Args:
        source: A KernelBackbone (wrapped with the expansion's defaults) or a
            LandmarkExpansion.
        weights: With a backbone only: weights (m, h), e.g. ``Delta alpha``.

    Attributes:
        forward_func: The backbone (the model explained).
        expansion: The LandmarkExpansion.
        mask_model: The matching :class:`LandmarkMask` (all h outputs).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Kokhlikyan et al., 2020, Captum, arXiv 2009.07896

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3).double(), out_dim=4)
        >>> raw = LandmarkExpansion(backbone, regularize=False)
        >>> explainer = LandmarkAttribution(raw)
        >>> x = torch.randn(5, 3).double()
        >>> attributions, delta = explainer.attribute(x, return_convergence_delta=True)
        >>> attributions.shape, bool(delta.abs().max() < 1e-8)
        (torch.Size([5, 16]), True)
    """

    def __init__(
        self,
        source: KernelBackbone | LandmarkExpansion,
        weights: Tensor | None = None,
    ) -> None:
        self.expansion = as_expansion(source, weights)
        super().__init__(self.expansion.backbone)
        self.backbone = self.expansion.backbone
        self.mask_model = LandmarkMask(self.expansion)

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
    ) -> Tensor: ...

    @overload
    def attribute(
        self,
        inputs: tuple[Tensor, ...],
        target: TargetSpec = ...,
        return_convergence_delta: Literal[False] = ...,
    ) -> tuple[Tensor, ...]: ...

    @overload
    def attribute(
        self,
        inputs: Tensor,
        target: TargetSpec = ...,
        *,
        return_convergence_delta: Literal[True],
    ) -> tuple[Tensor, Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: tuple[Tensor, ...],
        target: TargetSpec = ...,
        *,
        return_convergence_delta: Literal[True],
    ) -> tuple[tuple[Tensor, ...], Tensor]: ...

    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetSpec = None,
        return_convergence_delta: bool = False,
    ) -> Tensor | tuple[Tensor, ...] | tuple[Tensor | tuple[Tensor, ...], Tensor]:
        """Landmark attributions ``(k(l_j, x) - mu_j) <w_j, v(x)>``.

        Args:
            inputs: Tensor of shape (B, ...) or a tuple ``(x,)`` of one.
            target: None ("what builds x"), an int dimension, per-sample ints
                (list or integer tensor of shape (B,)), a Direction (or floating
                tensor of shape (h,)), a Similarity or any Target.
            return_convergence_delta: Also return :meth:`compute_convergence_delta`.

        Returns:
            Attributions of shape (B, m), a tuple of one such tensor for tuple
            inputs; with ``return_convergence_delta`` also the (B,) deltas.
        """
        x, is_tuple = _single_input(inputs)
        with torch.enable_grad():
            attributions = self.expansion.scores(x, target)
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
        target: TargetSpec = None,
    ) -> Tensor:
        """Completeness gap ``sum_j attr_j + <f_0, v> - <f(x), v>`` per sample.

        ``f`` is the model (:meth:`LandmarkExpansion.model_outputs`: the
        backbone's forward pass for its own weights, a different computation
        than the expansion). The gap is round-off (about 1e-6 in float32) for the
        raw weights; for ridge-refit weights it is the part of ``s(x)`` the
        explained expansion misses, small when :attr:`LandmarkExpansion.refit`
        reports a high fidelity.

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
        m = self.expansion.num_landmarks
        if attr.dim() != 2 or attr.shape != (x.shape[0], m):
            raise ValueError(
                f"attributions must have shape (B, m) = ({x.shape[0]}, {m}) for "
                f"{x.shape[0]} inputs, got {tuple(attr.shape)}."
            )
        with torch.no_grad():
            expansion = self.expansion
            outputs = expansion.outputs(x)
            vectors = as_target(target).vectors(outputs, expansion.offset)
            model = expansion.model_outputs(x)
        scalar = (model * vectors).sum(1)
        offset = (expansion.offset[None] * vectors).sum(1)
        gap: Tensor = attr.sum(1) + offset - scalar
        return gap
