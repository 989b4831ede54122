"""Label-free choice of the audit step's damping by the spectral entropy of A^T A.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Roy, Vetterli, 2007, The effective rank: a measure of effective
  dimensionality, EUSIPCO
- [2] Frommer, Maass, 1999, Fast CG-based methods for Tikhonov-Phillips
  regularization, SIAM J. Sci. Comput. 20(5)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from lightly_krepes._validation import check_floating, check_positive
from lightly_krepes.audit.krylov import Lanczos
from lightly_krepes.audit.newton import (
    NewtonStep,
    _check_solver_options,
    _newton_step,
    _solve,
)
from lightly_krepes.audit.objective import AuditObjective


class SpectralEntropy(NamedTuple):
    """Entropy of a normalised spectrum.

    Attributes:
        entropy: ``-sum_i p_i log p_i`` with ``p = lam / sum(lam)`` (natural log).
        normalized: ``entropy / log(max_rank)`` in [0, 1]; 1 for max_rank 1.
    """

    entropy: float
    normalized: float


def spectral_entropy(matrix: Tensor, *, max_rank: int | None = None) -> SpectralEntropy:
    """Spectral entropy of a symmetric positive semi-definite matrix.

    With ``lam`` the eigenvalues and ``p = lam / sum(lam)``, the entropy
    ``H = -sum_i p_i log p_i`` (``0 log 0 = 0``) is ``log`` of the effective rank
    [1]: ``log n`` for a multiple of the n x n identity, 0 for rank one, invariant
    to scaling. It is normalised by ``log(max_rank)``, the largest entropy the
    matrix can reach. For ``A^T A`` with A of shape (h, r), pass ``max_rank=h``:
    the rank is at most h, so ``A_0 = [I 0]`` scores exactly 1 and a collapsed A
    less. (Dividing by the numerical rank instead would score a collapse onto two
    equal directions as 1 too.) Computed in float64; round-off negative
    eigenvalues are clipped to zero.

    Args:
        matrix: Tensor of shape (n, n), symmetric positive semi-definite.
        max_rank: The normaliser's rank; None uses n.

    Returns:
        The entropy and its normalised value.

    Raises:
        ValueError: If the matrix is not square, symmetric, finite, positive
            semi-definite or is zero.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Roy, Vetterli, 2007, EUSIPCO

    Examples:
        >>> spectral_entropy(torch.eye(4)).normalized
        1.0
        >>> round(spectral_entropy(torch.eye(4)).entropy, 6) == round(math.log(4), 6)
        True
        >>> spectral_entropy(torch.diag(torch.tensor([3.0, 0.0]))).entropy
        0.0
    """
    check_floating(matrix, "matrix")
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.numel() == 0:
        raise ValueError(
            f"matrix must be square and non-empty, got shape {tuple(matrix.shape)}. "
            f"For a map A of shape (h, r) pass A.T @ A."
        )
    n = matrix.shape[0]
    if max_rank is not None and (int(max_rank) != max_rank or not 1 <= max_rank <= n):
        raise ValueError(f"max_rank must be an integer in [1, {n}], got {max_rank}.")
    # Round-off of the input's own precision is tolerated in the checks below.
    eps = 100 * n * torch.finfo(matrix.dtype).eps
    m = matrix.detach().double()
    if not bool(torch.isfinite(m).all()):
        raise ValueError("matrix contains NaN or infinite values.")
    scale = float(m.abs().max())
    if scale == 0.0:
        raise ValueError("matrix is zero; its spectrum has no entropy.")
    if not torch.allclose(m, m.T, rtol=0.0, atol=eps * scale):
        raise ValueError(
            "matrix must be symmetric (a Gram matrix such as A.T @ A); symmetrise "
            "it with 0.5 * (M + M.T) if it differs by round-off."
        )
    lam = torch.linalg.eigvalsh(0.5 * (m + m.T))
    if float(lam[0]) < -eps * float(lam[-1].abs()):
        raise ValueError(
            f"matrix must be positive semi-definite, but its smallest eigenvalue is "
            f"{float(lam[0]):.3g} (largest {float(lam[-1]):.3g})."
        )
    lam = lam.clamp_min(0.0)
    p = lam / lam.sum()
    p = p[p > 0]
    entropy = max(0.0, float(-(p * p.log()).sum()))
    rank = n if max_rank is None else int(max_rank)
    normalized = 1.0 if rank == 1 else min(entropy / math.log(rank), 1.0)
    return SpectralEntropy(entropy, normalized)


@dataclass
class DampingCandidate:
    """One damping tried by :func:`select_damping`.

    Attributes:
        damping: The damping.
        entropy: Spectral entropy of ``A^T A`` after the step.
        normalized_entropy: The entropy divided by ``log(out_dim)``.
        loss_after: Objective after the step.
        eligible: Whether the step met the selection rule.
        step: The step itself.
    """

    damping: float
    entropy: float
    normalized_entropy: float
    loss_after: float
    eligible: bool
    step: NewtonStep = field(repr=False)


@dataclass
class DampingSelection:
    """The damping chosen by :func:`select_damping` and every candidate.

    Attributes:
        damping: The chosen damping.
        step: The step at the chosen damping.
        candidates: All candidates, by increasing damping.
        threshold: Minimum normalised spectral entropy of an eligible step,
            relative to that of the starting ``A_0``.
        curvature_scale: The estimate of ``|lambda|_max(H)`` the default grid is
            relative to (None when the grid was given).
        min_eigenvalue: The estimate of ``lambda_min(H)`` whose negative part
            shifts the default grid (None when the grid was given).
        fallback: Whether no candidate was eligible and the largest damping was
            taken.
        hvp_count: Hessian-vector products used in all (spectrum estimate and
            solves; each is a pass over all batches), None if not counted.
        solver: ``"lanczos"`` (one Krylov space for the grid) or ``"cg"`` (CG per
            candidate).
    """

    damping: float
    step: NewtonStep
    candidates: list[DampingCandidate]
    threshold: float
    curvature_scale: float | None
    fallback: bool
    min_eigenvalue: float | None = None
    hvp_count: int | None = None
    solver: str = "lanczos"


class _CountedHVP:
    """``v -> H(theta) v`` that counts its calls, for :class:`DampingSelection`."""

    def __init__(self, objective: AuditObjective, theta: Tensor) -> None:
        self.objective = objective
        self.theta = theta
        self.count = 0

    def __call__(self, vector: Tensor) -> Tensor:
        self.count += 1
        return self.objective.hvp(self.theta, vector)


def _check_num_iter(num_iter: int) -> None:
    if int(num_iter) != num_iter or num_iter < 1:
        raise ValueError(f"num_iter must be a positive integer, got {num_iter}.")


def _power_iteration(
    apply: Callable[[Tensor], Tensor], like: Tensor, *, num_iter: int, seed: int
) -> tuple[Tensor, float]:
    """Power iteration from a seeded unit vector: the last vector and ``|apply(v)|``.

    Written by hand rather than with ``scipy.sparse.linalg.eigsh``: each product is
    a full pass over the cached batches, and a fixed, small number of them with a
    deterministic result is what the damping grid needs; ARPACK's Lanczos would
    round-trip through float64 NumPy and may raise on non-convergence.
    """
    _check_num_iter(num_iter)
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(like.shape, generator=gen, dtype=like.dtype).to(like.device)
    v /= torch.linalg.vector_norm(v)
    norm = 0.0
    for _ in range(int(num_iter)):
        w = apply(v)
        norm = float(torch.linalg.vector_norm(w))
        if norm == 0.0:
            break
        v = w / norm
    return v, norm


def estimate_curvature(
    objective: AuditObjective, *, num_iter: int = 10, seed: int = 0
) -> float:
    """Estimates ``|lambda|_max`` of the Hessian at the expansion point.

    Power iteration with Hessian-vector products from a seeded random start.

    Args:
        objective: The cached objective.
        num_iter: Number of power iterations (Hessian-vector products).
        seed: Seed of the start vector.

    Returns:
        The estimate, ``|H v|`` for the final unit vector v (0 for a flat loss).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes.backbone import KernelBackbone
        >>> from lightly_krepes.kernels import RBF
        >>> from lightly_krepes.loss import SpectralContrastiveLoss
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=2)
        >>> x = torch.randn(8, 3)
        >>> objective = AuditObjective(
        ...     backbone, SpectralContrastiveLoss(), [(x, x + 0.1)], progress=False
        ... )
        >>> estimate_curvature(objective) >= 0
        True
    """
    theta = objective.initial_parameters()
    _, norm = _power_iteration(
        lambda v: objective.hvp(theta, v), theta, num_iter=num_iter, seed=seed
    )
    return norm


def _min_eigenvalue(
    hvp: Callable[[Tensor], Tensor],
    like: Tensor,
    *,
    scale: float,
    num_iter: int,
    seed: int,
) -> float:
    if scale == 0.0:
        return 0.0
    # 1.5 x: the estimate of |lambda|_max errs low, and a shift below it would
    # let the largest positive eigenvalue dominate instead.
    shift = 1.5 * float(scale)
    v, _ = _power_iteration(
        lambda u: shift * u - hvp(u), like, num_iter=num_iter, seed=seed + 1
    )
    return float(v @ hvp(v))


def estimate_min_eigenvalue(
    objective: AuditObjective,
    *,
    scale: float | None = None,
    num_iter: int = 30,
    seed: int = 0,
) -> float:
    """Estimates the smallest (most negative) eigenvalue ``lambda_min`` of the Hessian.

    SSL losses are not convex in the representation, so the Hessian in ``(A,
    gamma)`` is usually indefinite. Power iteration on the shifted operator
    ``scale I - H``, whose dominant eigenvalue is ``scale - lambda_min`` when
    ``scale >= |lambda|_max``, finds it with Hessian-vector products only; the
    Rayleigh quotient of the final vector is returned. Like every power
    iteration it approaches the extreme eigenvalue from inside the spectrum, so
    the estimate errs towards zero.

    Args:
        objective: The cached objective.
        scale: ``|lambda|_max(H)``; None estimates it with
            :func:`estimate_curvature`.
        num_iter: Number of power iterations (Hessian-vector products).
        seed: Seed of the start vector.

    Returns:
        The estimate of ``lambda_min(H)`` (0 for a flat loss).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly.loss import VICRegLoss
        >>> from lightly_krepes.backbone import KernelBackbone
        >>> from lightly_krepes.kernels import RBF
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=2)
        >>> x = torch.randn(8, 3)
        >>> objective = AuditObjective(
        ...     backbone, VICRegLoss(), [(x, x + 0.1)], progress=False
        ... )
        >>> estimate_min_eigenvalue(objective) <= estimate_curvature(objective)
        True
    """
    _check_num_iter(num_iter)
    if scale is None:
        scale = estimate_curvature(objective, seed=seed)
    theta = objective.initial_parameters()
    return _min_eigenvalue(
        lambda u: objective.hvp(theta, u),
        theta,
        scale=float(scale),
        num_iter=num_iter,
        seed=seed,
    )


_SOLVERS = ("lanczos", "cg")


def select_damping(
    objective: AuditObjective,
    *,
    dampings: list[float] | None = None,
    num_candidates: int = 10,
    relative_range: tuple[float, float] = (1e-4, 10.0),
    threshold: float = 0.9,
    power_iterations: int = 10,
    max_iter: int = 200,
    tol: float = 1e-6,
    seed: int = 0,
    progress: bool = True,
    solver: Literal["lanczos", "cg"] = "lanczos",
) -> DampingSelection:
    """Chooses the audit step's damping without labels by the spectral entropy.

    KREPES tunes the audit label-free by the spectral entropy of ``A^T A`` [0]
    with ``A = A_0 + Delta A``. Plain "largest entropy" is useless here: the
    principal-component initialisation ``A_0 A_0^T = I`` already has the maximal
    entropy ``log(out_dim)``, so it would always pick the largest damping, the
    smallest step. Our reading of the rule is a constraint instead:

    1. Try a log-spaced grid of dampings: ``num_candidates`` values spanning
       ``relative_range`` times the curvature scale ``|lambda|_max(H)``, each
       shifted by ``1.1 max(0, -lambda_min(H))`` so that ``H + damping I`` is
       positive definite and the solve returns a proper damped Newton step; or
       the given ``dampings``. (Without the shift, every damping below
       ``-lambda_min`` meets negative curvature, usually in the first
       iteration, and gives no step: SSL losses are not convex in the
       representation.)
    2. A candidate is *eligible* if its solve met no non-positive curvature,
       its step keeps the objective finite and does not increase it, and the
       updated A keeps the normalised spectral entropy of ``A^T A`` (divided by
       ``log(out_dim)``, see :func:`spectral_entropy`) at or above
       ``threshold`` times that of the starting ``A_0``: the step does not
       collapse the representation's dimensions. For the principal-component
       initialisation ``A_0 = [I 0]`` the starting value is 1; a surrogate
       fitted to the encoder (``build_surrogate(..., fit="ridge")``) starts at
       the encoder's own spectrum, which an absolute threshold would often
       reject before any step.
    3. Choose the smallest eligible damping, i.e. the largest step that keeps the
       representation's dimensionality. If none is eligible, fall back to the
       largest damping (with a warning).

    With ``solver="lanczos"`` (default) all candidates are solved in one Krylov
    space (:class:`~lightly_krepes.audit.krylov.Lanczos` started at ``-g``): the
    systems ``(H + damping I) delta = -g`` differ only by a shift, so one
    Hessian-vector product per step serves the whole grid [2], and each
    candidate's step is CG's iterate (same stopping rule, same negative-curvature
    test). The curvature scale and ``lambda_min`` of the default grid are the
    extreme Ritz values after the first ``4 * power_iterations`` steps, which
    the solves then continue from, so the estimate is nearly free. Ritz values
    lie inside the spectrum and miss eigenvectors orthogonal to g, so
    ``lambda_min`` may be lower; the solves live in the same space and do not
    see those directions, and the 1.1 margin covers the rest (a candidate that
    still meets negative curvature is marked ineligible). With ``solver="cg"``
    the estimate is by power iteration (``power_iterations`` products for
    ``|lambda|_max``, ``3 * power_iterations + 1`` for ``lambda_min``, see
    :func:`estimate_curvature`, :func:`estimate_min_eigenvalue`) and each
    candidate gets its own CG, as before: up to ``num_candidates * max_iter``
    products where Lanczos needs ``max_iter``.

    All candidates, with their entropy, loss and step, are returned so callers can
    apply another rule. The Nyström features are computed once, in ``objective``,
    the gradient once for all candidates, and the loss after each step once per
    candidate.

    Args:
        objective: The cached objective.
        dampings: Explicit grid (finite, positive); None builds the default one.
        num_candidates: Size of the default grid.
        relative_range: Smallest and largest damping of the default grid relative
            to the curvature scale.
        threshold: Minimum normalised spectral entropy relative to the starting
            point's, in [0, 1].
        power_iterations: Budget of the default grid's spectrum estimate:
            ``4 * power_iterations`` Lanczos steps (``solver="lanczos"``, at most
            ``max_iter``), or ``power_iterations`` power iterations for the
            curvature scale and three times as many for ``lambda_min``
            (``solver="cg"``). Unused when ``dampings`` is given.
        max_iter: Maximum iterations per candidate: CG iterations each
            (``"cg"``), or Lanczos steps in all (``"lanczos"``), each one
            Hessian-vector product.
        tol: Relative residual ``|(H + damping I) delta + g| / |g|`` at which a
            candidate's solve stops.
        seed: Seed of the power iteration (``solver="cg"`` only: Lanczos starts
            at the gradient and is deterministic).
        progress: Show progress bars.
        solver: ``"lanczos"``, one Krylov space for all candidates, or ``"cg"``,
            conjugate gradients per candidate (for comparison).

    Returns:
        The selection, with ``hvp_count`` the Hessian-vector products used.

    Raises:
        ValueError: If the grid, threshold, solver or solver options are invalid.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [2] Frommer, Maass, 1999, SIAM J. Sci. Comput. 20(5)

    Examples:
        >>> from lightly.loss import VICRegLoss
        >>> from lightly_krepes.backbone import KernelBackbone
        >>> from lightly_krepes.kernels import RBF
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=3)
        >>> x = torch.randn(8, 3)
        >>> objective = AuditObjective(
        ...     backbone, VICRegLoss(), [(x, x + 0.1)], progress=False
        ... )
        >>> selection = select_damping(objective, num_candidates=3, progress=False)
        >>> len(selection.candidates)
        3
        >>> cg = select_damping(
        ...     objective, num_candidates=3, solver="cg", progress=False
        ... )
        >>> selection.hvp_count < cg.hvp_count
        True
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}.")
    _check_solver_options(max_iter, tol)
    if solver not in _SOLVERS:
        raise ValueError(
            f"solver must be one of {_SOLVERS}, got {solver!r}: 'lanczos' solves all "
            f"dampings in one Krylov space, 'cg' runs CG per damping."
        )
    _check_num_iter(power_iterations)
    theta = objective.initial_parameters()
    hvp = _CountedHVP(objective, theta)
    loss_before, gradient = objective.gradient(theta)
    lanczos = Lanczos(hvp, -gradient) if solver == "lanczos" else None
    curvature_scale: float | None = None
    min_eigenvalue: float | None = None
    if dampings is None:
        if int(num_candidates) != num_candidates or num_candidates < 1:
            raise ValueError(
                f"num_candidates must be a positive integer, got {num_candidates}."
            )
        low, high = relative_range
        check_positive(low, "relative_range[0]")
        check_positive(high, "relative_range[1]")
        if low > high:
            raise ValueError(
                f"relative_range must be (low, high) with low <= high, got "
                f"{relative_range}."
            )
        if lanczos is not None:
            lanczos.extend(min(4 * int(power_iterations), max_iter), progress=progress)
            ritz = lanczos.ritz_values()
            # A zero gradient leaves the Krylov space empty: every step is zero.
            curvature_scale = float(ritz.abs().max()) if ritz.numel() else 0.0
            min_eigenvalue = float(ritz[0]) if ritz.numel() else 0.0
        else:
            _, curvature_scale = _power_iteration(
                hvp, theta, num_iter=power_iterations, seed=seed
            )
            min_eigenvalue = _min_eigenvalue(
                hvp,
                theta,
                scale=curvature_scale,
                num_iter=3 * power_iterations,
                seed=seed,
            )
        # A flat loss has no curvature scale; the grid is then absolute.
        scale = curvature_scale if curvature_scale > 0 else 1.0
        # 1.1 x: both the power-iteration and the Ritz estimate of lambda_min
        # err towards zero.
        shift = 1.1 * max(0.0, -min_eigenvalue)
        grid = (
            shift
            + torch.logspace(
                math.log10(low), math.log10(high), num_candidates, dtype=torch.float64
            )
            * scale
        ).tolist()
    else:
        if not dampings:
            raise ValueError("dampings is empty; give at least one damping.")
        for value in dampings:
            check_positive(value, "every damping")
        grid = sorted(float(d) for d in dampings)

    weight0, _ = objective.unflatten(theta)
    # The rule is relative to the starting point: A_0 = [I 0] scores 1, but a
    # surrogate fitted to the encoder starts at the encoder's own spectrum.
    try:
        start = spectral_entropy(weight0 @ weight0.T, max_rank=objective.out_dim)
        minimum = threshold * start.normalized
    except ValueError:
        # A_0 = 0 has no spectrum; the threshold is then absolute.
        minimum = threshold
    solves = (
        None
        if lanczos is None
        else lanczos.run(grid, tol=tol, max_iter=max_iter, progress=progress)
    )
    candidates = []
    for index, damping in enumerate(grid):
        with warnings.catch_warnings():
            # Non-positive curvature or an infinite loss mark the candidate
            # ineligible instead.
            warnings.simplefilter("ignore", RuntimeWarning)
            if solves is None:
                step = _solve(
                    objective,
                    theta,
                    loss_before,
                    gradient,
                    damping,
                    max_iter=max_iter,
                    tol=tol,
                    progress=progress,
                    hvp=hvp,
                )
            else:
                step = _newton_step(
                    objective,
                    theta,
                    loss_before,
                    gradient,
                    damping,
                    solves.solutions[index],
                    iterations=int(solves.iterations[index]),
                    residual=float(solves.residuals[index]),
                    converged=bool(solves.converged[index]),
                    negative_curvature=bool(solves.negative_curvature[index]),
                )
        weight = weight0 + step.delta_weight.to(weight0)
        try:
            # A A^T has the non-zero spectrum of A^T A, at (h x h) not (r x r).
            entropy = spectral_entropy(weight @ weight.T, max_rank=objective.out_dim)
        except ValueError:
            # A step that overflows A has no spectrum to speak of.
            entropy = SpectralEntropy(math.nan, math.nan)
        eligible = (
            not step.negative_curvature
            and math.isfinite(step.loss_after)
            and step.loss_after <= loss_before
            and entropy.normalized >= minimum
        )
        candidates.append(
            DampingCandidate(
                damping=damping,
                entropy=entropy.entropy,
                normalized_entropy=entropy.normalized,
                loss_after=step.loss_after,
                eligible=eligible,
                step=step,
            )
        )
    chosen = next((c for c in candidates if c.eligible), None)
    fallback = chosen is None
    if chosen is None:
        chosen = candidates[-1]
        warnings.warn(
            f"No damping in [{grid[0]:.3g}, {grid[-1]:.3g}] gave a step that keeps "
            f"the normalised spectral entropy >= {minimum:.3g} ({threshold} x the "
            f"starting point's) without non-positive "
            f"curvature or a loss increase; using the largest, {grid[-1]:.3g}. "
            f"Try larger dampings or a lower threshold.",
            UserWarning,
            stacklevel=2,
        )
    return DampingSelection(
        damping=chosen.damping,
        step=chosen.step,
        candidates=candidates,
        threshold=threshold,
        curvature_scale=curvature_scale,
        fallback=fallback,
        min_eigenvalue=min_eigenvalue,
        hvp_count=hvp.count,
        solver=solver,
    )
