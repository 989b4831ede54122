"""Targets, reference weights and input checks shared by the attribution tools.

Every representation of a :class:`~lightly_krepes.KernelBackbone` is an exact sum
over landmarks, ``f(x) = sum_j alpha_j k(l_j, x) + gamma``. The attribution tools
score landmarks for one *scalarisation* of ``f``: ``s(x) = <f(x), v>`` with a
vector ``v`` chosen by the ``target`` argument, so that every score is linear in
the expansion: ``s(x) = sum_j k(l_j, x) <w_j, v> + <gamma, v>``.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lightly_krepes._validation import check_finite, check_floating, check_samples
from lightly_krepes.backbone import KernelBackbone


@dataclass(frozen=True)
class Direction:
    """Scalarises a representation by a direction: ``s(x) = <f(x), v>``.

    ``v`` is used as given (not normalised), e.g. a concept activation vector from
    :func:`~lightly_krepes.attribution.concept_activation_vector` (unit length).
    Landmark ``j`` then scores ``k(l_j, x) <w_j, v>``. A floating tensor passed as
    ``target`` means the same; wrap it in :class:`Direction` when the target goes
    through Captum's metrics (``sensitivity_max`` repeats tensor targets per
    perturbation, as it does for per-sample class indices).

    Args:
        vector: Tensor of shape (h,), or (B, h) for one direction per sample.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Kim et al., 2018, Interpretability Beyond Feature Attribution:
          Quantitative Testing with Concept Activation Vectors (TCAV),
          arXiv 1711.11279

    Examples:
        >>> Direction(torch.tensor([1.0, 0.0])).vector.shape
        torch.Size([2])
    """

    vector: Tensor


@dataclass(frozen=True)
class Similarity:
    """Scalarises a representation by similarity to a reference ``r``.

    Cosine similarity is not linear in the expansion, so the scalar is the dot
    product with the *normalised* reference, ``s(x) = <f(x), r / |r|>``
    ``= |f(x)| cos(f(x), r)``: the length of ``f(x)`` along ``r``. It decomposes
    exactly over landmarks, ``k(l_j, x) <w_j, r / |r|>``, and ranks inputs of equal
    norm like the cosine does.

    Args:
        reference: Tensor of shape (h,), or (B, h) for one reference per sample
            (e.g. the representation of another augmented view); nonzero.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> Similarity(torch.tensor([3.0, 4.0])).reference.shape
        torch.Size([2])
    """

    reference: Tensor


TargetSpec: TypeAlias = int | Sequence[int] | Tensor | Direction | Similarity
"""A scalarisation of the representation (see :func:`target_vectors`)."""

DEFAULT_BATCH_SIZE = 512


def check_backbone(backbone: Any) -> KernelBackbone:
    """Returns ``backbone`` after checking that it is a KernelBackbone."""
    if not isinstance(backbone, KernelBackbone):
        raise TypeError(
            "backbone must be a lightly_krepes KernelBackbone (its representations "
            "are kernel expansions over landmarks), got "
            f"{type(backbone).__name__}."
        )
    return backbone


def check_batch_size(batch_size: int) -> int:
    """Returns ``batch_size`` as an int after checking it is positive."""
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    return int(batch_size)


def check_weights(backbone: KernelBackbone, weights: Tensor | None) -> Tensor | None:
    """Checks caller-supplied reference weights (e.g. the audit step Delta alpha).

    Args:
        backbone: The backbone whose landmarks the weights belong to.
        weights: None, or a tensor of shape (m, h).

    Returns:
        None, or the weights detached and cast to the landmarks' dtype and device.
    """
    if weights is None:
        return None
    check_floating(weights, "weights")
    m, h = backbone.landmarks.shape[0], backbone.out_dim
    if weights.shape != (m, h):
        raise ValueError(
            f"weights must have shape (m, h) = ({m}, {h}): one row per landmark and "
            f"one column per representation dimension, got {tuple(weights.shape)}. "
            f"Pass e.g. backbone.representer_weights or the audit step Delta alpha."
        )
    check_finite(weights, "weights")
    landmarks = backbone.landmarks
    return weights.detach().to(dtype=landmarks.dtype, device=landmarks.device)


def reference_weights(backbone: KernelBackbone, weights: Tensor | None) -> Tensor:
    """The weights to use: ``weights`` or else ``alpha`` (detached), shape (m, h)."""
    if weights is not None:
        return weights
    return backbone.representer_weights.detach()


def backbone_bias(backbone: KernelBackbone) -> Tensor:
    """The backbone's gamma (zeros without bias), detached, shape (h,)."""
    bias = backbone.linear.bias
    if bias is None:
        weight = backbone.linear.weight
        return torch.zeros(backbone.out_dim, dtype=weight.dtype, device=weight.device)
    return bias.detach()


def check_inputs(backbone: KernelBackbone, x: Tensor, name: str = "inputs") -> None:
    """Checks a batch of inputs against the landmarks: dtype, shape, finiteness."""
    check_samples(x, name)
    landmarks = backbone.landmarks
    if x.shape[1:] != landmarks.shape[1:]:
        raise ValueError(
            f"{name} must hold samples of shape {tuple(landmarks.shape[1:])} like the "
            f"landmarks, got shape {tuple(x.shape)}. Add a batch dimension with "
            f"{name}.unsqueeze(0) for a single sample."
        )
    if x.dtype != landmarks.dtype:
        raise TypeError(
            f"{name} is {x.dtype} but the backbone works in {landmarks.dtype}; cast "
            f"with {name}.to({landmarks.dtype})."
        )


def kernel_rows(
    backbone: KernelBackbone,
    x: Tensor,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool = False,
    name: str = "inputs",
) -> Tensor:
    """Kernel rows ``k_m(x)`` against the landmarks, computed row-batch by batch.

    Args:
        backbone: The backbone.
        x: Tensor of shape (n, ...).
        batch_size: Rows per batch; the result does not depend on it.
        show_progress: Show a tqdm progress bar over the batches.
        name: Name of ``x`` in error messages.

    Returns:
        Tensor of shape (n, m) with entries ``k(l_j, x_i)``.
    """
    check_inputs(backbone, x, name)
    batch_size = check_batch_size(batch_size)
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass at least one sample.")
    starts = range(0, x.shape[0], batch_size)
    rows = [
        backbone.nystrom.landmark_kernel(x[i : i + batch_size])
        for i in tqdm(starts, disable=not show_progress, desc="kernel rows")
    ]
    return torch.cat(rows)


def _check_vector_batch(
    value: Tensor, name: str, out_dim: int, num_samples: int | None
) -> Tensor:
    check_floating(value, name)
    if value.dim() == 1 and value.shape[0] == out_dim:
        check_finite(value, name)
        return value[None]
    if value.dim() == 2 and value.shape[1] == out_dim:
        if num_samples is None:
            raise ValueError(
                f"A per-sample {name} of shape {tuple(value.shape)} is not supported "
                f"here; pass one of shape ({out_dim},)."
            )
        if value.shape[0] == num_samples:
            check_finite(value, name)
            return value
    expected = f"({out_dim},)"
    if num_samples is not None:
        expected += f" or ({num_samples}, {out_dim})"
    raise ValueError(
        f"{name} must have shape {expected} (h = {out_dim} is the representation "
        f"dimension), got {tuple(value.shape)}."
    )


def _check_index(value: Any, out_dim: int) -> int:
    if isinstance(value, bool):
        raise TypeError("target must be an int, not a bool.")
    try:
        index = operator.index(value)
    except TypeError:
        raise TypeError(
            f"target indices must be integers, got {type(value).__name__}."
        ) from None
    if not 0 <= index < out_dim:
        raise ValueError(
            f"target {index} is out of range: the representation has {out_dim} "
            f"dimensions, so integer targets must lie in [0, {out_dim - 1}]."
        )
    return index


def target_vectors(
    target: TargetSpec,
    out_dim: int,
    num_samples: int | None,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """Resolves a target into scalarisation vectors ``v``: ``s(x) = <f(x), v>``.

    Accepted targets:

    - ``int`` t: the representation dimension t (``v = e_t``).
    - list/tuple of ints, or an integer tensor of shape (B,): one dimension per
      sample (Captum's per-example targets).
    - :class:`Direction` or a floating tensor of shape (h,) (or (B, h)): ``v``.
    - :class:`Similarity`: ``v = r / |r|``.

    Args:
        target: The target.
        out_dim: Representation dimension h.
        num_samples: Number of samples B, or None where only one target shared by
            all samples is meaningful.
        dtype: dtype of the result.
        device: Device of the result.

    Returns:
        Tensor of shape (1, h) for a shared target or (B, h) for per-sample ones.
    """
    eye = torch.eye(out_dim, dtype=dtype, device=device)
    if isinstance(target, Similarity):
        reference = _check_vector_batch(
            target.reference, "Similarity.reference", out_dim, num_samples
        )
        norms = torch.linalg.vector_norm(reference, dim=1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError(
                "Similarity.reference has zero norm, so no direction to compare "
                "with; pass a nonzero reference representation."
            )
        unit: Tensor = reference / norms
        return unit.to(dtype=dtype, device=device)
    if isinstance(target, Direction):
        vector = _check_vector_batch(
            target.vector, "Direction.vector", out_dim, num_samples
        )
        return vector.to(dtype=dtype, device=device)
    if isinstance(target, Tensor):
        if target.is_floating_point():
            return _check_vector_batch(
                target, "target direction", out_dim, num_samples
            ).to(dtype=dtype, device=device)
        if target.dtype == torch.bool or target.is_complex():
            raise TypeError(
                f"target tensors must hold integer dimensions or a floating "
                f"direction, got {target.dtype}."
            )
        if target.dim() == 0:
            return eye[_check_index(int(target), out_dim)][None]
        if target.dim() != 1:
            raise ValueError(
                f"An integer target tensor must have shape (B,), one dimension per "
                f"sample, got {tuple(target.shape)}."
            )
        target = [int(t) for t in target.tolist()]
    if isinstance(target, Sequence) and not isinstance(target, str):
        if num_samples is None:
            raise ValueError(
                "Per-sample targets are not supported here; pass one int, a "
                "Direction or a Similarity shared by all samples."
            )
        if len(target) != num_samples:
            raise ValueError(
                f"A per-sample target needs one entry per sample: got "
                f"{len(target)} entries for {num_samples} samples."
            )
        indices = [_check_index(t, out_dim) for t in target]
        return eye[torch.tensor(indices, dtype=torch.long, device=device)]
    try:
        index = _check_index(target, out_dim)
    except TypeError:
        raise TypeError(
            f"target must be an int, a sequence of ints, a tensor, a Direction or a "
            f"Similarity, got {type(target).__name__}."
        ) from None
    return eye[index][None]


def landmark_coefficients(weights: Tensor, vectors: Tensor) -> Tensor:
    """``u[b, j] = <w_j, v_b>``: shape (B or 1, m) for weights (m, h), v (B or 1, h)."""
    return vectors @ weights.T


def collect_inputs(inputs: Any, name: str = "inputs") -> Tensor:
    """Turns Captum-style inputs into one tensor of samples.

    Accepts a tensor (n, ...); a tuple/list ``(x,)`` or ``(x, labels)`` (Captum's
    influence convention: the last element of a longer batch holds the labels,
    which are ignored here); or an iterable of such batches (e.g. a DataLoader),
    whose inputs are concatenated.
    """
    if isinstance(inputs, Tensor):
        return inputs
    if isinstance(inputs, tuple | list):
        if len(inputs) in (1, 2) and isinstance(inputs[0], Tensor):
            return inputs[0]
        raise ValueError(
            f"{name} given as a tuple must be (x,) or (x, labels) with x a tensor "
            f"of samples (a KernelBackbone takes one input), got a "
            f"{type(inputs).__name__} of length {len(inputs)}."
        )
    if isinstance(inputs, Iterable):
        batches = [collect_inputs(batch, name) for batch in inputs]
        if not batches:
            raise ValueError(f"{name} yielded no batches.")
        return torch.cat(batches)
    raise TypeError(
        f"{name} must be a tensor, a tuple (x,) or (x, labels), or an iterable of "
        f"such batches (e.g. a DataLoader), got {type(inputs).__name__}."
    )
