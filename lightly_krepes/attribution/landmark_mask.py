"""A linear "landmark mask" model, so Captum's attribution methods explain landmarks.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Kokhlikyan et al., 2020, Captum: A unified and generic model interpretability
  library for PyTorch, arXiv 2009.07896
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightly_krepes._validation import check_finite, check_floating
from lightly_krepes.attribution._common import (
    TargetSpec,
    backbone_bias,
    check_backbone,
    check_inputs,
    check_weights,
    reference_weights,
    target_vectors,
)
from lightly_krepes.backbone import KernelBackbone


class LandmarkMask(nn.Module):
    """``g(mask; x) = sum_j mask_j w_j k(l_j, x) + b``: the expansion with gates.

    At ``mask = 1`` this is the representation ``f(x)`` (with the default weights
    ``w = alpha`` and bias ``b = gamma``); at ``mask = 0`` only the bias is left. The
    model is linear in ``mask`` with gradient ``w_j k(l_j, x)``, so every Captum
    attribution method run on ``mask`` with baseline 0 and ``additional_forward_args
    =(x,)`` returns exactly the contributions ``c_j(x) = w_j k(l_j, x)`` of the
    selected output: IntegratedGradients (the path integral of a constant),
    FeatureAblation (removing landmark j changes the output by ``c_j``),
    ShapleyValueSampling (every marginal contribution is ``c_j``), and
    ``captum.metrics.infidelity`` of those attributions is zero.

    Args:
        backbone: The kernel backbone.
        weights: Reference weights (m, h); None uses ``alpha`` (the backbone's
            ``representer_weights``, read at each call). Pass the audit step
            ``Delta alpha`` to explain the change of representation it makes.
        bias: Offset ``b`` of shape (h,); None uses the backbone's gamma when
            ``weights`` is None and zeros otherwise (an expansion with other
            weights, such as ``Delta alpha``, has no offset unless given one).
        target: None makes :meth:`forward` return all h outputs (select one with
            Captum's ``target=dim``). A shared scalarisation (int, Direction or
            Similarity, see :class:`RepresenterInfluence`) makes it return the
            scalar ``<g, v>`` of shape (B,) instead (then use Captum's
            ``target=None``).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Kokhlikyan et al., 2020, Captum, arXiv 2009.07896

    Examples:
        >>> from captum.attr import IntegratedGradients
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> backbone = KernelBackbone(
        ...     RBF(2.0), torch.randn(16, 3, dtype=torch.float64), out_dim=4
        ... )
        >>> mask_model = LandmarkMask(backbone)
        >>> x = torch.randn(5, 3, dtype=torch.float64)
        >>> mask = torch.ones(5, 16, dtype=torch.float64)
        >>> attributions = IntegratedGradients(mask_model).attribute(
        ...     mask, baselines=0.0, additional_forward_args=(x,), target=2
        ... )
        >>> torch.allclose(attributions, backbone.contributions(x)[:, :, 2])
        True
    """

    def __init__(
        self,
        backbone: KernelBackbone,
        weights: Tensor | None = None,
        bias: Tensor | None = None,
        target: TargetSpec | None = None,
    ) -> None:
        super().__init__()
        self.backbone = check_backbone(backbone)
        self._weights = check_weights(self.backbone, weights)
        self._bias: Tensor | None = None
        if bias is not None:
            check_floating(bias, "bias")
            if bias.shape != (self.backbone.out_dim,):
                raise ValueError(
                    f"bias must have shape (h,) = ({self.backbone.out_dim},), got "
                    f"{tuple(bias.shape)}."
                )
            check_finite(bias, "bias")
            self._bias = bias.detach().to(self.backbone.landmarks)
        elif self._weights is not None:
            self._bias = torch.zeros_like(self._weights[0])
        self._vector: Tensor | None = None
        if target is not None:
            landmarks = self.backbone.landmarks
            self._vector = target_vectors(
                target, self.backbone.out_dim, None, landmarks.dtype, landmarks.device
            )[0]

    @property
    def num_landmarks(self) -> int:
        """Number of landmarks m (the mask's width)."""
        return int(self.backbone.landmarks.shape[0])

    @property
    def weights(self) -> Tensor:
        """The reference weights in use, shape (m, h)."""
        return reference_weights(self.backbone, self._weights)

    @property
    def bias(self) -> Tensor:
        """The offset ``b`` in use, shape (h,)."""
        return backbone_bias(self.backbone) if self._bias is None else self._bias

    def __call__(self, mask: Tensor, inputs: Tensor) -> Tensor:
        # Typed wrapper around nn.Module.__call__ (hooks still run).
        out: Tensor = super().__call__(mask, inputs)
        return out

    def forward(self, mask: Tensor, inputs: Tensor) -> Tensor:
        """The gated expansion.

        Args:
            mask: Tensor of shape (B, m), one gate per landmark (1 keeps it).
            inputs: Tensor of shape (B, ...) with samples shaped like the landmarks.

        Returns:
            Tensor of shape (B, h), or (B,) when a target was set.
        """
        check_floating(mask, "mask")
        m = self.num_landmarks
        if mask.dim() != 2 or mask.shape[1] != m:
            raise ValueError(
                f"mask must have shape (B, m) with m = {m} landmarks, got "
                f"{tuple(mask.shape)}."
            )
        check_inputs(self.backbone, inputs)
        if mask.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"mask has {mask.shape[0]} rows but inputs has {inputs.shape[0]} "
                f"samples; pass one mask row per input (e.g. "
                f"torch.ones(len(inputs), {m}))."
            )
        check_finite(mask, "mask")
        rows = self.backbone.nystrom.landmark_kernel(inputs)
        out = (mask.to(rows.dtype) * rows) @ self.weights + self.bias
        if self._vector is not None:
            return out @ self._vector
        return out
