"""Targets: the scalarisation ``s(x) = <g(x), v(x)>`` a landmark score explains.

A representation is a vector, so "how much does landmark l build x" needs a
direction ``v``. A :class:`Target` maps the explained outputs ``g(x)`` (shape
(B, h)) to the vectors ``v`` (shape (B, h), or (1, h) when shared by all
inputs); every landmark score is then linear in the expansion,

    s_v(l_j, x) = k(l_j, x) <w_j, v(x)>,
    sum_j s_v(l_j, x) + <b, v(x)> = <g(x), v(x)>.

One small base class with one method, in the style of TRAK's model-output
functions [1], instead of type switches in every score.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Park et al., 2023, TRAK: Attributing Model Behavior at Scale,
  arXiv 2303.14186
- [2] Kim et al., 2018, Interpretability Beyond Feature Attribution: Quantitative
  Testing with Concept Activation Vectors (TCAV), arXiv 1711.11279
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import torch
from torch import Tensor

from lightly_krepes._validation import check_finite, check_floating


class Target(ABC):
    """Base class of targets: explained outputs ``g(x)`` -> directions ``v(x)``.

    Subclasses implement :meth:`vectors`. ``depends_on_input`` is True when
    ``v`` changes with ``x`` (then landmark-side quantities that hold for every
    input, such as ``RepresenterInfluence.landmark_coefficients``, do not exist).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Park et al., 2023, TRAK, arXiv 2303.14186

    Examples:
        >>> class First(Target):
        ...     def vectors(self, outputs, offset):
        ...         v = torch.zeros_like(outputs[:1])
        ...         v[0, 0] = 1.0
        ...         return v
        >>> First().vectors(torch.randn(3, 2), torch.zeros(2))
        tensor([[1., 0.]])
    """

    @property
    def depends_on_input(self) -> bool:
        """Whether ``v`` changes with the input."""
        return False

    @abstractmethod
    def vectors(self, outputs: Tensor, offset: Tensor) -> Tensor:
        """Scalarisation vectors for a batch of explained outputs.

        Args:
            outputs: Tensor of shape (B, h), the explained expansion ``g(x)``.
            offset: Tensor of shape (h,), the expansion's offset (what is left
                when every landmark term is removed).

        Returns:
            Tensor of shape (B, h), or (1, h) for a vector shared by all inputs.
        """


@dataclass(frozen=True)
class OwnDirection(Target):
    """``v(x) = (g(x) - b) / |g(x) - b|``: "what builds x" (the default target).

    The direction of the part of the representation the landmarks build
    (``b`` the expansion's offset). The scores ``k(l_j, x) <w_j, v(x)>`` then add
    up exactly to ``|g(x) - b|``: positive scores (*proponents*) build ``x``'s
    representation, negative ones (*opponents*) point against it. An input whose
    landmark part is zero gets ``v = 0`` (all scores 0). For the audit step's
    expansion ``Delta f`` this is ``v = Delta f(x) / |Delta f(x)|``: what the SSL
    step changes at ``x``.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> OwnDirection().vectors(torch.tensor([[3.0, 5.0]]), torch.tensor([0.0, 1.0]))
        tensor([[0.6000, 0.8000]])
    """

    @property
    def depends_on_input(self) -> bool:
        return True

    def vectors(self, outputs: Tensor, offset: Tensor) -> Tensor:
        part = outputs - offset
        norms = torch.linalg.vector_norm(part, dim=1, keepdim=True)
        unit: Tensor = part / torch.where(norms > 0, norms, torch.ones_like(norms))
        return unit


@dataclass(frozen=True)
class Dimension(Target):
    """``v = e_t``: one representation dimension (Captum's integer targets).

    Args:
        index: A dimension t, or one per input (a sequence or an integer tensor
            of shape (B,)).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> Dimension(1).vectors(torch.zeros(2, 3), torch.zeros(3))
        tensor([[0., 1., 0.]])
    """

    index: int | Sequence[int] | Tensor

    @property
    def depends_on_input(self) -> bool:
        return not _is_scalar_index(self.index)

    def vectors(self, outputs: Tensor, offset: Tensor) -> Tensor:
        out_dim, num = outputs.shape[1], outputs.shape[0]
        eye = torch.eye(out_dim, dtype=outputs.dtype, device=outputs.device)
        if _is_scalar_index(self.index):
            return eye[_check_index(self.index, out_dim)][None]
        index = self.index
        values: list[Any] = (
            index.tolist() if isinstance(index, Tensor) else list(index)  # type: ignore[arg-type]
        )
        if len(values) != num:
            raise ValueError(
                f"A per-input target needs one dimension per input: got "
                f"{len(values)} for {num} inputs."
            )
        indices = [_check_index(v, out_dim) for v in values]
        return eye[torch.tensor(indices, dtype=torch.long, device=outputs.device)]


@dataclass(frozen=True)
class Direction(Target):
    """``v`` as given: a concept direction, e.g. a concept activation vector.

    Scores ``k(l_j, x) <w_j, v>`` are then concept-conditioned influence: positive
    landmarks push ``x`` toward the concept, negative ones (*repulsive*) away.

    Args:
        vector: Tensor of shape (h,), or (B, h) for one direction per input, e.g.
            from :func:`~lightly_krepes.attribution.concept_activation_vector`.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [2] Kim et al., 2018, TCAV, arXiv 1711.11279

    Examples:
        >>> target = Direction(torch.tensor([1.0, -1.0]))
        >>> target.vectors(torch.zeros(4, 2), torch.zeros(2))
        tensor([[ 1., -1.]])
    """

    vector: Tensor

    @property
    def depends_on_input(self) -> bool:
        return isinstance(self.vector, Tensor) and self.vector.dim() == 2

    def vectors(self, outputs: Tensor, offset: Tensor) -> Tensor:
        vector = _vector_batch(self.vector, "Direction.vector", outputs)
        return vector


@dataclass(frozen=True)
class Similarity(Target):
    """``v = r / |r|``: the length of the representation along a reference ``r``.

    Cosine similarity is not linear in the expansion; the dot product with the
    normalised reference, ``|g(x)| cos(g(x), r)``, is, and ranks inputs of equal
    norm like the cosine does.

    Args:
        reference: Tensor of shape (h,), or (B, h) for one reference per input
            (e.g. the representation of another view); nonzero.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> target = Similarity(torch.tensor([3.0, 4.0]))
        >>> target.vectors(torch.zeros(1, 2), torch.zeros(2))
        tensor([[0.6000, 0.8000]])
    """

    reference: Tensor

    @property
    def depends_on_input(self) -> bool:
        return isinstance(self.reference, Tensor) and self.reference.dim() == 2

    def vectors(self, outputs: Tensor, offset: Tensor) -> Tensor:
        reference = _vector_batch(self.reference, "Similarity.reference", outputs)
        norms = torch.linalg.vector_norm(reference, dim=1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError(
                "Similarity.reference has zero norm, so there is no direction to "
                "compare with; pass a nonzero reference representation."
            )
        unit: Tensor = reference / norms
        return unit


TargetSpec: TypeAlias = Target | int | Sequence[int] | Tensor | None
"""A target: a :class:`Target`, None (:class:`OwnDirection`), an int or ints
(:class:`Dimension`) or a floating tensor (:class:`Direction`)."""


def as_target(target: Any) -> Target:
    """Resolves a target argument into a :class:`Target`.

    - None: :class:`OwnDirection` ("what builds x", the default);
    - a :class:`Target`: itself;
    - an int, a sequence of ints or an integer tensor: :class:`Dimension`;
    - a floating tensor: :class:`Direction`.

    Args:
        target: The target argument.

    Returns:
        The target.

    Raises:
        TypeError: For anything else (e.g. a string or a float), with the list
            of accepted targets.

    Examples:
        >>> as_target(None)
        OwnDirection()
        >>> as_target(2)
        Dimension(index=2)
    """
    if target is None:
        return OwnDirection()
    if isinstance(target, Target):
        return target
    if isinstance(target, Tensor):
        if target.is_floating_point():
            return Direction(target)
        if target.dtype == torch.bool or target.is_complex():
            raise TypeError(
                f"A target tensor must hold integer dimensions or a floating "
                f"direction, got {target.dtype}."
            )
        if target.dim() == 0:
            return Dimension(int(target))
        if target.dim() != 1:
            raise ValueError(
                f"An integer target tensor must have shape (B,), one dimension "
                f"per input, got {tuple(target.shape)}."
            )
        return Dimension(target)
    if _is_scalar_index(target):
        return Dimension(target)
    if isinstance(target, Sequence) and not isinstance(target, str | bytes):
        return Dimension(target)
    raise TypeError(
        f"Unknown target {target!r} ({type(target).__name__}). Pass None (the "
        f"default: OwnDirection, what builds x), an int or a list of ints (one "
        f"representation dimension), a Direction or floating tensor of shape (h,) "
        f"(e.g. a concept activation vector), a Similarity(reference), or any "
        f"lightly_krepes.attribution.Target."
    )


def _is_scalar_index(value: Any) -> bool:
    if isinstance(value, bool):
        raise TypeError("A target dimension must be an int, not a bool.")
    if isinstance(value, Tensor):
        return value.dim() == 0 and not value.is_floating_point()
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def _check_index(value: Any, out_dim: int) -> int:
    if isinstance(value, bool):
        raise TypeError("A target dimension must be an int, not a bool.")
    try:
        index = operator.index(value)
    except TypeError:
        raise TypeError(
            f"Target dimensions must be integers, got {type(value).__name__}."
        ) from None
    if not 0 <= index < out_dim:
        raise ValueError(
            f"Target dimension {index} is out of range: the representation has "
            f"{out_dim} dimensions, so it must lie in [0, {out_dim - 1}]."
        )
    return index


def _vector_batch(value: Any, name: str, outputs: Tensor) -> Tensor:
    """Checks a (h,) or (B, h) vector against outputs (B, h); returns (1|B, h)."""
    num, out_dim = outputs.shape
    check_floating(value, name)
    vector: Tensor = value.detach()
    if vector.dim() == 1 and vector.shape[0] == out_dim:
        check_finite(vector, name)
        return vector[None].to(outputs)
    if vector.dim() == 2 and vector.shape == (num, out_dim):
        check_finite(vector, name)
        return vector.to(outputs)
    raise ValueError(
        f"{name} must have shape ({out_dim},) or ({num}, {out_dim}) (h = {out_dim} "
        f"is the representation dimension, {num} the number of inputs), got "
        f"{tuple(value.shape)}."
    )
