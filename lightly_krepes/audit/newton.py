"""One damped Newton step on an SSL loss, solved by conjugate gradients.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Martens, 2010, Deep learning via Hessian-free optimization, ICML
- [2] Nocedal, Wright, 2006, Numerical Optimization, 2nd ed., Algorithms 5.2, 7.2
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lightly_krepes._validation import check_positive
from lightly_krepes.audit.objective import AuditObjective
from lightly_krepes.backbone import KernelBackbone


@dataclass
class NewtonStep:
    """A damped Newton step ``delta = -(H + damping I)^{-1} g`` in (A, gamma).

    Attributes:
        delta_weight: Delta A, shape (out_dim, r).
        delta_bias: Delta gamma, shape (out_dim,), or None without a bias.
        delta_alpha: The step in landmark space, ``P Delta A^T`` with ``P`` the
            backbone's ``feature_projection``, shape (m, out_dim): row l is the
            change of landmark l's representer weight.
        loss_before: Objective at the expansion point.
        loss_after: Objective after the step (may be infinite for a too small
            damping, with a warning).
        gradient_norm: Euclidean norm of the gradient g.
        cg_iterations: Conjugate-gradient iterations run.
        cg_residual: Final relative residual ``|(H + damping I) delta + g| / |g|``.
        converged: Whether CG reached its tolerance.
        damping: The damping used.
        negative_curvature: Whether CG stopped on non-positive curvature (the
            step is then the last CG iterate, not the Newton step).
    """

    delta_weight: Tensor
    delta_bias: Tensor | None
    delta_alpha: Tensor
    loss_before: float
    loss_after: float
    gradient_norm: float
    cg_iterations: int
    cg_residual: float
    converged: bool
    damping: float
    negative_curvature: bool = False


@dataclass
class _CGResult:
    solution: Tensor
    iterations: int
    residual: float
    converged: bool
    negative_curvature: bool


def _conjugate_gradient(
    operator: Callable[[Tensor], Tensor],
    rhs: Tensor,
    *,
    max_iter: int,
    tol: float,
    progress: bool,
) -> _CGResult:
    """Solves ``operator(x) = rhs`` for a symmetric operator, starting at zero.

    Written by hand: torch has no CG for an operator given as a function, and
    scipy's ``cg`` with a ``LinearOperator`` would round-trip through float64 NumPy
    on the CPU every iteration, leaving the GPU and autograd for each
    Hessian-vector product. Stops at the first direction of non-positive curvature
    and returns the previous iterate, which still decreases the quadratic model
    (Steihaug's rule [2]).
    """
    x = torch.zeros_like(rhs)
    rhs_norm = float(torch.linalg.vector_norm(rhs))
    if rhs_norm == 0.0:
        return _CGResult(x, 0, 0.0, True, False)
    r = rhs.clone()
    p = r.clone()
    rr = float(r @ r)
    iterations = 0
    bar = tqdm(total=max_iter, disable=not progress, desc="CG")
    try:
        while iterations < max_iter:
            if math.sqrt(rr) <= tol * rhs_norm:
                break
            q = operator(p)
            curvature = float(p @ q)
            if not curvature > 0:
                return _CGResult(x, iterations, math.sqrt(rr) / rhs_norm, False, True)
            step = rr / curvature
            x = x + step * p
            r = r - step * q
            rr_new = float(r @ r)
            p = r + (rr_new / rr) * p
            rr = rr_new
            iterations += 1
            bar.update(1)
            bar.set_postfix(residual=f"{math.sqrt(rr) / rhs_norm:.2e}")
    finally:
        bar.close()
    residual = math.sqrt(rr) / rhs_norm
    return _CGResult(x, iterations, residual, residual <= tol, False)


def _check_solver_options(max_iter: int, tol: float) -> None:
    if int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter}.")
    if not 0 <= tol < 1:
        raise ValueError(f"tol is a relative residual in [0, 1), got {tol}.")


def _newton_step(
    objective: AuditObjective,
    theta: Tensor,
    loss_before: float,
    gradient: Tensor,
    damping: float,
    solution: Tensor,
    *,
    iterations: int,
    residual: float,
    converged: bool,
    negative_curvature: bool,
    stacklevel: int = 2,
) -> NewtonStep:
    """Turns a solution of ``(H + damping I) delta = -g`` into a :class:`NewtonStep`.

    The one place that evaluates the loss after the step, warns and maps delta
    to (Delta A, Delta gamma, Delta alpha), whichever Krylov solver found it:
    per-damping CG (:func:`solve_newton`) or one Lanczos space for a grid of
    dampings (``select_damping``). ``stacklevel`` is the warnings' level as seen
    from the caller of this function.
    """
    if negative_curvature:
        warnings.warn(
            f"The Krylov solve (CG) met non-positive curvature "
            f"p^T (H + damping I) p <= 0 after {iterations} iteration(s): "
            f"the loss is non-convex here and damping={damping:.3g} is below the "
            f"magnitude of the most negative Hessian eigenvalue. The returned step "
            f"is the last CG iterate, not the Newton step. Increase damping (or let "
            f"select_damping choose it).",
            RuntimeWarning,
            stacklevel=stacklevel + 1,
        )
    delta = solution.to(theta)
    loss_after = objective.value(theta + delta, check=False)
    if not abs(loss_after) < float("inf"):
        warnings.warn(
            f"The loss after the step is {loss_after}: the step is too large. "
            f"Increase damping (now {damping:.3g}).",
            RuntimeWarning,
            stacklevel=stacklevel + 1,
        )
    backbone = objective.backbone
    weight, bias = objective.unflatten(delta)
    linear_weight = backbone.linear.weight
    delta_weight = weight.to(linear_weight)
    delta_alpha = backbone.feature_projection.double() @ weight.double().T
    return NewtonStep(
        delta_weight=delta_weight,
        delta_bias=None if bias is None else bias.to(linear_weight),
        delta_alpha=delta_alpha.to(linear_weight.dtype),
        loss_before=loss_before,
        loss_after=loss_after,
        gradient_norm=float(torch.linalg.vector_norm(gradient)),
        cg_iterations=int(iterations),
        cg_residual=float(residual),
        converged=bool(converged),
        damping=float(damping),
        negative_curvature=bool(negative_curvature),
    )


def _solve(
    objective: AuditObjective,
    theta: Tensor,
    loss_before: float,
    gradient: Tensor,
    damping: float,
    *,
    max_iter: int,
    tol: float,
    progress: bool,
    hvp: Callable[[Tensor], Tensor] | None = None,
) -> NewtonStep:
    """CG on ``(H + damping I) delta = -g``; ``hvp`` replaces ``v -> H v``."""
    product = hvp if hvp is not None else (lambda v: objective.hvp(theta, v))

    def operator(v: Tensor) -> Tensor:
        return product(v) + damping * v

    result = _conjugate_gradient(
        operator, -gradient, max_iter=max_iter, tol=tol, progress=progress
    )
    return _newton_step(
        objective,
        theta,
        loss_before,
        gradient,
        damping,
        result.solution,
        iterations=result.iterations,
        residual=result.residual,
        converged=result.converged,
        negative_curvature=result.negative_curvature,
        stacklevel=3,
    )


def solve_newton(
    objective: AuditObjective,
    damping: float,
    *,
    max_iter: int = 200,
    tol: float = 1e-6,
    progress: bool = True,
) -> NewtonStep:
    """Takes one damped Newton step on a prepared :class:`AuditObjective`.

    Solves ``(H + damping I) delta = -g`` at the backbone's current parameters by
    conjugate gradients from Hessian-vector products. Use it to try several
    dampings on features computed once; :func:`newton_step` is the one-call form.

    Args:
        objective: The cached objective.
        damping: Tikhonov damping, a finite positive number.
        max_iter: Maximum number of CG iterations (each costs one
            Hessian-vector product over all batches).
        tol: Relative residual at which CG stops.
        progress: Show a progress bar over the CG iterations.

    Returns:
        The step.

    Raises:
        ValueError: If damping, max_iter or tol are invalid, or the loss, gradient
            or curvature are not finite.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> from lightly_krepes.loss import SpectralContrastiveLoss
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=2)
        >>> x = torch.randn(8, 3)
        >>> objective = AuditObjective(
        ...     backbone, SpectralContrastiveLoss(), [(x, x + 0.1)], progress=False
        ... )
        >>> step = solve_newton(objective, damping=100.0, progress=False)
        >>> step.delta_weight.shape == backbone.linear.weight.shape
        True
    """
    check_positive(damping, "damping")
    _check_solver_options(max_iter, tol)
    theta = objective.initial_parameters()
    loss_before, gradient = objective.gradient(theta)
    return _solve(
        objective,
        theta,
        loss_before,
        gradient,
        float(damping),
        max_iter=max_iter,
        tol=tol,
        progress=progress,
    )


def newton_step(
    backbone: KernelBackbone,
    loss: Callable[..., Tensor],
    view_batches: Iterable[Sequence[Tensor]],
    *,
    damping: float,
    head: nn.Module | None = None,
    max_iter: int = 200,
    tol: float = 1e-6,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> NewtonStep:
    """One damped Newton step of a kernel backbone on an SSL loss [0].

    The objective is the mean over batches of
    ``loss(head(f(v0)), head(f(v1)), ...)`` with ``f`` the backbone, as a function
    of its linear map ``theta = (A, gamma)``. Starting at the backbone's current
    parameters (the principal-component initialisation ``A_0 = [I 0]``,
    ``gamma_0 = 0`` of a fresh backbone), the step solves

        (H + damping I) delta = -g

    with g and H the gradient and Hessian of the objective, by conjugate gradients
    from Hessian-vector products (``torch.func``; H is never formed) [1]. Without
    a head ``f`` is linear in theta, so H equals the Gauss-Newton matrix; with a
    nonlinear head it also holds the head's curvature. Any loss works through
    autograd: Lightly's ``NTXentLoss``, ``VICRegLoss``, ``BarlowTwinsLoss``,
    ``NegativeCosineSimilarity``, or this package's ``SpectralContrastiveLoss``.

    The Nyström features of all views are computed once, so each CG iteration
    costs only matrix products with the cached features. SSL losses are
    non-convex: if CG meets non-positive curvature it stops, warns and flags the
    step (``negative_curvature``); increase the damping then.

    Args:
        backbone: The kernel backbone, e.g. the eNTK surrogate of an encoder.
        loss: Callable mapping one (B, d) tensor per view to a scalar loss.
        view_batches: Iterable of batches, each a list or tuple of view tensors
            ``(v0, v1, ...)`` of shape (B, ...) shaped like the landmarks; row i of
            every view belongs to sample i.
        damping: Tikhonov damping, a finite positive number.
        head: Optional frozen module applied to each representation before the
            loss (e.g. a Lightly projection head), with input size out_dim.
        max_iter: Maximum number of CG iterations.
        tol: Relative residual at which CG stops.
        dtype: Floating dtype of the objective's evaluations and the solve.
        progress: Show progress bars over the feature pass and CG.

    Returns:
        The step, with ``delta_alpha`` the change of the representer weights.

    Raises:
        ValueError: If damping is not positive, there are no batches, views
            mismatch, the loss is not a finite deterministic scalar, or features
            are not finite.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Martens, 2010, Deep learning via Hessian-free optimization, ICML

    Examples:
        >>> from lightly.loss import NTXentLoss
        >>> from lightly_krepes.kernels import RBF
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=4)
        >>> x = torch.randn(8, 3)
        >>> step = newton_step(
        ...     backbone, NTXentLoss(), [(x, x + 0.1)], damping=100.0, progress=False
        ... )
        >>> step.delta_alpha.shape
        torch.Size([16, 4])
    """
    check_positive(damping, "damping")
    _check_solver_options(max_iter, tol)
    objective = AuditObjective(
        backbone, loss, view_batches, head=head, dtype=dtype, progress=progress
    )
    return solve_newton(
        objective, damping, max_iter=max_iter, tol=tol, progress=progress
    )


def apply_step(backbone: KernelBackbone, step: NewtonStep) -> KernelBackbone:
    """A copy of the backbone with the step added to A and gamma.

    Args:
        backbone: The backbone the step was computed for.
        step: The step.

    Returns:
        A deep copy with ``A + Delta A`` and ``gamma + Delta gamma``; the input is
        unchanged.

    Raises:
        ValueError: If the step's shapes do not match the backbone.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=2)
        >>> step = NewtonStep(
        ...     torch.ones_like(backbone.linear.weight), None,
        ...     torch.zeros(16, 2), 0.0, 0.0, 0.0, 0, 0.0, True, 1.0,
        ... )
        >>> float(apply_step(backbone, step).linear.weight[0, 0])
        2.0
    """
    linear = backbone.linear
    if step.delta_weight.shape != linear.weight.shape:
        raise ValueError(
            f"The step's delta_weight has shape {tuple(step.delta_weight.shape)} but "
            f"the backbone's A has shape {tuple(linear.weight.shape)}; apply the step "
            f"to the backbone it was computed for."
        )
    if step.delta_bias is not None and linear.bias is None:
        raise ValueError(
            "The step changes gamma but the backbone has no bias; apply the step to "
            "the backbone it was computed for."
        )
    audited = copy.deepcopy(backbone)
    with torch.no_grad():
        audited.linear.weight.add_(step.delta_weight.to(linear.weight))
        if step.delta_bias is not None and audited.linear.bias is not None:
            audited.linear.bias.add_(step.delta_bias.to(audited.linear.bias))
    return audited
