"""Seeded random draws shared by the landmark selection methods.

All randomness comes from one CPU ``torch.Generator`` and all probabilities are
moved to the CPU in float64 before sampling, so a fixed seed gives the same
landmarks on every run and on every device. Draws use inverse-CDF and
exponential-race sampling, whose outcomes change continuously with the weights:
tiny differences between devices in the kernel values rarely change the result.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor


def make_generator(seed: int | torch.Generator) -> torch.Generator:
    """Returns a CPU generator: a fresh one seeded with ``seed``, or ``seed`` itself.

    Args:
        seed: Integer seed, or a CPU ``torch.Generator`` to draw from (it advances).

    Returns:
        A CPU ``torch.Generator``.

    Raises:
        TypeError: If ``seed`` is neither an integer nor a generator.
        ValueError: If ``seed`` is a generator on another device than the CPU.
    """
    if isinstance(seed, torch.Generator):
        if seed.device.type != "cpu":
            raise ValueError(
                f"seed must be an integer or a CPU torch.Generator, got a generator "
                f"on {seed.device}. Landmarks are always sampled on the CPU so that "
                f"they do not depend on the device; pass an integer seed."
            )
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(
            f"seed must be an integer or a CPU torch.Generator, got "
            f"{type(seed).__name__}."
        )
    return torch.Generator().manual_seed(seed)


def draw_with_replacement(
    weights: Tensor, num: int, generator: torch.Generator
) -> Tensor:
    """Draws ``num`` indices iid with probabilities proportional to ``weights``.

    Args:
        weights: Tensor of shape (n,), non-negative with a positive sum.
        num: Number of draws.
        generator: CPU generator.

    Returns:
        CPU long tensor of shape (num,); entries with zero weight are never drawn.
    """
    w = weights.detach().to(device="cpu", dtype=torch.float64)
    cumulative = torch.cumsum(w, 0)
    u = torch.rand(num, generator=generator, dtype=torch.float64)
    # side="right" skips zero-weight entries; u * total may round up to total.
    index = torch.searchsorted(cumulative, u * cumulative[-1], right=True)
    last_positive = int(torch.nonzero(w > 0)[-1, 0])
    return index.clamp_max(last_positive)


def draw_without_replacement(
    weights: Tensor, num: int, generator: torch.Generator
) -> Tensor:
    """Draws up to ``num`` distinct indices, successively proportional to ``weights``.

    Each draw picks among the remaining indices with probability proportional to
    their weights (exponential race: the ``num`` smallest ``E_i / w_i`` with
    ``E_i ~ Exp(1)``). Fewer than ``num`` indices come back when fewer weights are
    positive.

    Args:
        weights: Tensor of shape (n,), non-negative.
        num: Maximum number of indices.
        generator: CPU generator.

    Returns:
        CPU long tensor of shape (min(num, number of positive weights),), in draw
        order.
    """
    w = weights.detach().to(device="cpu", dtype=torch.float64)
    u = torch.rand(w.shape[0], generator=generator, dtype=torch.float64)
    positive = w > 0
    keys = torch.full_like(w, float("inf"))
    keys[positive] = -torch.log1p(-u[positive]) / w[positive]
    count = min(num, int(positive.sum()))
    return torch.argsort(keys, stable=True)[:count]


def fill_uniformly(
    selected: Tensor,
    n: int,
    m: int,
    generator: torch.Generator,
    method: str,
    reason: str,
) -> Tensor:
    """Completes a short selection with uniformly drawn unselected indices, warning.

    Used when the kernel's numerical rank on the candidates is below ``m``: the
    caller asked for ``m`` distinct landmarks, and silently returning fewer would
    break shapes downstream.

    Args:
        selected: CPU long tensor of shape (k,), k < m, distinct indices.
        n: Number of candidates.
        m: Requested number of landmarks.
        generator: CPU generator.
        method: Name of the selection method, for the warning.
        reason: Why the selection stopped at k, for the warning.

    Returns:
        CPU long tensor of shape (m,): ``selected`` followed by m - k new indices.

    Warns:
        UserWarning: Always; it says k and what to do.
    """
    k = int(selected.numel())
    unselected = torch.ones(n, dtype=torch.bool)
    unselected[selected] = False
    rest = torch.nonzero(unselected)[:, 0]
    extra = rest[torch.randperm(rest.numel(), generator=generator)[: m - k]]
    warnings.warn(
        f"select_landmarks(method={method!r}): {reason} The numerical rank of the "
        f"kernel on these {n} samples, at the precision of the selection's working "
        f"dtype, was reached at {k} pivot(s), below m={m}, so the remaining {m - k} "
        f"landmark(s) were drawn uniformly at random from the unselected samples; "
        f"they add only directions below that precision (a KernelBackbone, which "
        f"forms its landmark Gram in float64, keeps them but damps them). Ask for "
        f"fewer landmarks (m <= {k}), select in float64 (pass float64 samples and "
        f"network), remove duplicated samples, or use a kernel of higher rank (e.g. "
        f"RBF instead of Linear).",
        UserWarning,
        stacklevel=3,
    )
    return torch.cat([selected, extra])
