"""Argument checks shared by the attribution tools (clear errors for bad input).

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightly_krepes._inputs import iter_batches, split_batch
from lightly_krepes._validation import check_finite, check_floating
from lightly_krepes.backbone import KernelBackbone

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


def check_count(value: Any, m: int, name: str = "k") -> int:
    """Checks a number of landmarks ``1 <= value <= m``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or int(value) != value
        or not 1 <= value <= m
    ):
        raise ValueError(
            f"{name} must be an integer between 1 and the number of landmarks "
            f"({m}), got {value!r}."
        )
    return int(value)


def check_inputs(landmarks: Tensor, inputs: Any, name: str = "inputs") -> Tensor:
    """Checks a batch of inputs against the landmarks: type, shape, dtype, finite."""
    check_floating(inputs, name)
    x: Tensor = inputs
    if x.dim() != landmarks.dim() or x.shape[1:] != landmarks.shape[1:]:
        raise ValueError(
            f"{name} must hold samples of shape {tuple(landmarks.shape[1:])} like the "
            f"landmarks, i.e. a tensor of shape (n, "
            f"{', '.join(str(s) for s in landmarks.shape[1:])}), got shape "
            f"{tuple(x.shape)}. Add a batch dimension with {name}.unsqueeze(0) for a "
            f"single sample."
        )
    if x.dtype != landmarks.dtype:
        raise TypeError(
            f"{name} is {x.dtype} but the backbone works in {landmarks.dtype}; cast "
            f"with {name}.to({landmarks.dtype})."
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass at least one sample.")
    check_finite(x, name)
    return x


def check_labels(labels: Any, length: int, name: str, per: str) -> Tensor:
    """Checks integer class ids of shape (length,)."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(labels).__name__}.")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class ids, got {labels.dtype}.")
    if labels.shape != (length,):
        raise ValueError(
            f"{name} must have shape ({length},), one label per {per}, got "
            f"{tuple(labels.shape)}."
        )
    if bool((labels < 0).any()):
        raise ValueError(f"{name} must be non-negative class ids.")
    return labels.long()


def check_positive(value: Any, name: str) -> float:
    """Checks a finite, strictly positive number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be finite and positive, got {value}.")
    return float(value)


def collect_inputs(inputs: Any, name: str = "inputs") -> Tensor:
    """Turns Captum-style inputs into one tensor of samples.

    Accepts a tensor (n, ...); a tuple/list ``(x,)`` or ``(x, labels)`` (Captum's
    influence convention: labels are ignored here); or a data set or an iterable
    of such batches (e.g. a DataLoader), whose inputs are concatenated.
    """
    if isinstance(inputs, Tensor):
        return inputs
    if isinstance(inputs, tuple | list):
        if len(inputs) in (1, 2) and isinstance(inputs[0], Tensor):
            return split_batch(inputs)[0]
        raise ValueError(
            f"{name} given as a tuple must be (x,) or (x, labels) with x a tensor "
            f"of samples (a KernelBackbone takes one input), got a "
            f"{type(inputs).__name__} of length {len(inputs)}."
        )
    try:
        batches = list(iter_batches(inputs, DEFAULT_BATCH_SIZE))
    except TypeError as error:
        raise TypeError(
            f"{name} must be a tensor, a tuple (x,) or (x, labels), or a data set "
            f"or iterable of such batches (e.g. a DataLoader), got "
            f"{type(inputs).__name__}: {error}"
        ) from None
    return torch.cat(batches)
