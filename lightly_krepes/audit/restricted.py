"""The audit step restricted to a subset of landmarks, without refitting the map.

Removing landmarks from the *step* (their ``Delta alpha`` rows held at zero, the
Nyström map and the prior unchanged) asks what the loss would have changed with
only the kept landmarks free to move. It is the counterfactual behind
:class:`~lightly_krepes.attribution.CounterfactualInfluence` and the linear
datamodeling score of ``benchmarks/explanations``.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightly_krepes._validation import check_positive
from lightly_krepes.audit.newton import _conjugate_gradient
from lightly_krepes.audit.objective import AuditObjective


def step_null_space(projection: Tensor, keep: Tensor) -> Tensor:
    """Orthonormal basis of the steps whose ``Delta alpha`` vanishes off ``keep``.

    ``Delta alpha = P Delta A^T`` is zero on the removed landmarks iff
    ``Delta A^T`` lies in the null space of their rows of ``P``. The basis is
    orthonormal so that CG keeps its metric: with every landmark kept it is the
    identity and the restricted solve runs the audit's own CG iterations,
    converged or not (a pseudo-inverse basis changes the metric and, at a capped
    iteration count, solves another problem).

    Args:
        projection: The backbone's ``feature_projection`` P, shape (m, r).
        keep: Indices of the landmarks kept, shape (s,), or a boolean mask (m,).

    Returns:
        Tensor of shape (r, q), q the dimension of the null space (``r - (m - s)``
        at full rank, 0 columns when no direction is left).

    Raises:
        ValueError: If ``keep`` holds an index outside ``[0, m)``.
    """
    m, r = projection.shape
    removed = torch.ones(m, dtype=torch.bool, device=projection.device)
    keep = torch.as_tensor(keep, device=projection.device)
    if keep.dtype == torch.bool:
        if keep.shape != (m,):
            raise ValueError(f"A boolean keep mask must have shape ({m},).")
        removed = ~keep
    else:
        keep = keep.long().reshape(-1)
        if keep.numel() and not bool(((keep >= 0) & (keep < m)).all()):
            raise ValueError(f"keep holds indices outside [0, {m}).")
        removed[keep] = False
    if not bool(removed.any()):
        return torch.eye(r, dtype=projection.dtype, device=projection.device)
    constraints = projection[removed]
    _, singular, vh = torch.linalg.svd(constraints, full_matrices=True)
    # Relative cut-off: the numerical rank of the removed rows.
    cutoff = singular.max() * max(constraints.shape) * torch.finfo(singular.dtype).eps
    rank = int((singular > cutoff).sum())
    basis: Tensor = vh[rank:].T.contiguous()
    return basis


def restricted_step(
    objective: AuditObjective,
    damping: float,
    keep: Tensor,
    *,
    max_iter: int = 200,
    tol: float = 1e-6,
) -> Tensor:
    """``Delta alpha`` of the damped Newton step with only ``keep``'s rows free.

    Minimises the audit's quadratic model ``g^T d + d^T (H + damping I) d / 2``
    over the steps ``d = (Delta A, Delta gamma)`` whose ``Delta alpha = P Delta
    A^T`` is zero on the removed landmarks (``gamma`` stays free), by the
    audit's CG in an orthonormal basis of that subspace (:func:`step_null_space`).
    The Hessian products are the objective's (its curvature subsample). With
    every landmark kept it is the audit's own step.

    Args:
        objective: The audit's objective at the surrogate's parameters.
        damping: The audit's damping.
        keep: Indices (s,) or a boolean mask (m,) of the landmarks kept.
        max_iter: Maximum CG iterations (the audit's ``max_iter``).
        tol: Relative CG residual (the audit's ``tol``).

    Returns:
        ``Delta alpha`` of the restricted step, shape (m, out_dim), float64, zero
        on the removed rows.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly.loss import NTXentLoss
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> x = torch.randn(64, 3)
        >>> backbone = KernelBackbone(RBF(2.0), x[:8], out_dim=4)
        >>> views = [(x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x))]
        >>> objective = AuditObjective(backbone, NTXentLoss(), views, progress=False)
        >>> delta_alpha = restricted_step(objective, 1.0, torch.arange(4))
        >>> delta_alpha.shape, bool(delta_alpha[4:].abs().max() < 1e-10)
        (torch.Size([8, 4]), True)
    """
    check_positive(damping, "damping")
    theta = objective.initial_parameters()
    _, gradient = objective.gradient(theta)
    projection = objective.backbone.feature_projection.detach().to(theta)
    basis = step_null_space(projection, keep)
    h, q = objective.out_dim, basis.shape[1]

    def to_theta(u: Tensor) -> Tensor:
        bias = u[q * h :] if objective.has_bias else None
        return objective.flatten((basis @ u[: q * h].reshape(q, h)).T, bias)

    def from_theta(t: Tensor) -> Tensor:
        weight, bias = objective.unflatten(t)
        parts = [(basis.T @ weight.T).reshape(-1)]
        return torch.cat(parts if bias is None else [*parts, bias])

    def operator(u: Tensor) -> Tensor:
        d = to_theta(u)
        return from_theta(objective.hvp(theta, d) + damping * d)

    solution = _conjugate_gradient(
        operator, -from_theta(gradient), max_iter=max_iter, tol=tol, progress=False
    ).solution
    weight, _ = objective.unflatten(to_theta(solution))
    return (projection @ weight.T).to(torch.float64)
