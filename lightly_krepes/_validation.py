"""Input checks shared by the whole package.

Every public entry point validates its tensors with these helpers so that bad input
fails early with a message that says what is wrong and how to fix it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_FLOATING_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_floating(x: Tensor, name: str) -> None:
    """Raises a TypeError unless ``x`` is a real floating point tensor.

    Args:
        x: Tensor to check.
        name: Name of the argument, used in the error message.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.dtype not in _FLOATING_DTYPES:
        raise TypeError(
            f"{name} has dtype {x.dtype}, but only float16, bfloat16, float32 and "
            f"float64 are supported. Convert it first, e.g. {name}.float()."
        )


def check_finite(x: Tensor, name: str) -> None:
    """Raises a ValueError if ``x`` contains NaN or infinite values.

    Args:
        x: Tensor to check.
        name: Name of the argument, used in the error message.
    """
    x = x.detach()
    # Fast path: NaN and inf propagate into a sum (inf - inf is NaN), so a finite
    # sum proves a finite tensor without an (n, ...) boolean temporary; only a
    # non-finite sum (possibly overflow of large finite values) is checked exactly.
    if x.numel() == 0 or bool(torch.isfinite(x.sum())):
        return
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        num_bad = int((~finite).sum())
        raise ValueError(
            f"{name} contains {num_bad} NaN or infinite value(s). Remove or impute "
            f"them (e.g. torch.nan_to_num) before computing kernels."
        )


def check_samples(x: Tensor, name: str, min_dim: int = 1) -> None:
    """Checks a batch of samples: floating dtype, finite, at least ``min_dim`` dims.

    Args:
        x: Tensor of shape (n, ...), one sample per row.
        name: Name of the argument, used in the error message.
        min_dim: Minimum number of dimensions, the sample dimension included.
    """
    check_floating(x, name)
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s) with one sample per "
            f"row, got shape {tuple(x.shape)}. Add a batch dimension with "
            f"{name}.unsqueeze(0) for a single sample."
        )
    check_finite(x, name)


def check_same_sample_shape(x1: Tensor, x2: Tensor) -> None:
    """Checks that two batches hold samples of the same shape and dtype.

    Args:
        x1: Tensor of shape (n1, ...).
        x2: Tensor of shape (n2, ...).
    """
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(
            f"x1 and x2 must hold samples of the same shape, got x1 with samples of "
            f"shape {tuple(x1.shape[1:])} and x2 with samples of shape "
            f"{tuple(x2.shape[1:])}."
        )
    if x1.dtype != x2.dtype:
        raise TypeError(
            f"x1 has dtype {x1.dtype} but x2 has dtype {x2.dtype}. Cast both to the "
            f"same dtype, e.g. x2.to(x1.dtype)."
        )
    if x1.device != x2.device:
        raise ValueError(
            f"x1 is on {x1.device} but x2 is on {x2.device}. Move both to the same "
            f"device."
        )


def check_positive(value: float, name: str) -> None:
    """Raises a ValueError unless ``value`` is a finite positive number."""
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"{name} must be a finite positive number, got {value}.")


def check_non_negative(value: float, name: str) -> None:
    """Raises a ValueError unless ``value`` is a finite number ``>= 0``."""
    if not (value >= 0 and value < float("inf")):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}.")


def check_positive_int(value: Any, name: str) -> int:
    """Returns ``value`` as an int after checking it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if int(value) != value:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)
