"""A linear "landmark mask" model, so Captum's attribution methods explain landmarks.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Kokhlikyan et al., 2020, Captum: A unified and generic model interpretability
  library for PyTorch, arXiv 2009.07896
"""

from __future__ import annotations

from torch import Tensor, nn

from lightly_krepes._validation import check_finite, check_floating
from lightly_krepes.attribution.expansion import LandmarkExpansion, as_expansion
from lightly_krepes.attribution.targets import Target, TargetSpec, as_target
from lightly_krepes.backbone import KernelBackbone


class LandmarkMask(nn.Module):
    """``g(mask; x) = sum_j mask_j c_j(x) + f_0``: the explained expansion with gates.

    ``c_j(x) = w_j (k(l_j, x) - mu_j)`` are the terms of a
    :class:`~lightly_krepes.attribution.LandmarkExpansion` and ``f_0`` its offset:
    at ``mask = 1`` the output is the explained representation ``g(x)``, at
    ``mask = 0`` only ``f_0`` is left. The model is linear in ``mask`` with
    gradient ``c_j(x)``, so every Captum attribution method run on ``mask`` with
    baseline 0 and ``additional_forward_args=(x,)`` returns exactly the terms
    ``c_j(x)`` of the selected output: IntegratedGradients (the path integral of
    a constant), FeatureAblation (removing landmark j changes the output by
    ``c_j``), ShapleyValueSampling (every marginal contribution is ``c_j``), and
    ``captum.metrics.infidelity`` of those attributions is zero.

    Args:
        source: A KernelBackbone (wrapped with the expansion's defaults) or a
            LandmarkExpansion.
        weights: With a backbone only: weights (m, h) to explain, e.g. the audit
            step ``Delta alpha``.
        target: None makes :meth:`forward` return all h outputs (select one with
            Captum's ``target=dim``). A target (an int, a Direction, a
            Similarity, ``OwnDirection()``, ...) makes it return the scalar
            ``<g(mask; x), v(x)>`` of shape (B,) (then use Captum's
            ``target=None``); ``v(x)`` is evaluated at ``mask = 1``, so the model
            stays linear in the mask and the attributions are the scores
            ``s_v(l_j, x)``.

    Attributes:
        expansion: The LandmarkExpansion.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Kokhlikyan et al., 2020, Captum, arXiv 2009.07896

    Examples:
        >>> import torch
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
        >>> terms = mask_model.expansion.contributions(x)[:, :, 2]
        >>> torch.allclose(attributions, terms)
        True
    """

    def __init__(
        self,
        source: KernelBackbone | LandmarkExpansion,
        weights: Tensor | None = None,
        target: TargetSpec = None,
    ) -> None:
        super().__init__()
        self.expansion = as_expansion(source, weights)
        self._target: Target | None = None if target is None else as_target(target)

    @property
    def backbone(self) -> KernelBackbone:
        """The backbone."""
        return self.expansion.backbone

    @property
    def num_landmarks(self) -> int:
        """Number of landmarks m (the mask's width)."""
        return self.expansion.num_landmarks

    @property
    def weights(self) -> Tensor:
        """The weights explained, shape (m, h)."""
        return self.expansion.weights

    @property
    def offset(self) -> Tensor:
        """The output at ``mask = 0``, ``f_0``, shape (h,)."""
        return self.expansion.offset

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
        if isinstance(inputs, Tensor) and mask.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"mask has {mask.shape[0]} rows but inputs has {inputs.shape[0]} "
                f"samples; pass one mask row per input (e.g. "
                f"torch.ones(len(inputs), {m}))."
            )
        check_finite(mask, "mask")
        rows = self.expansion.rows(inputs)
        expansion = self.expansion
        gated = mask.to(rows.dtype) * rows
        out: Tensor = gated @ expansion.weights + expansion.offset
        if self._target is None:
            return out
        full = rows @ expansion.weights + expansion.offset
        vectors = self._target.vectors(full, expansion.offset)
        scalar: Tensor = (out * vectors).sum(1)
        return scalar
