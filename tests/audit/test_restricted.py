from __future__ import annotations

import pytest
import torch
from lightly.loss import NTXentLoss
from torch import Tensor

from lightly_krepes.audit import AuditObjective, restricted_step, step_null_space
from lightly_krepes.audit.newton import solve_newton
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF

M, H, DAMPING = 10, 3, 5.0


def _objective(bias: bool = True) -> AuditObjective:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator, dtype=torch.float64)
    views = [
        x + 0.2 * torch.randn(x.shape, generator=generator, dtype=x.dtype),
        x + 0.2 * torch.randn(x.shape, generator=generator, dtype=x.dtype),
    ]
    backbone = KernelBackbone(RBF(2.0), x[:M], out_dim=H, bias=bias)
    batches = [tuple(v[i : i + 32] for v in views) for i in (0, 32)]
    return AuditObjective(backbone, NTXentLoss(), batches, progress=False)


def _model(objective: AuditObjective, theta_step: Tensor) -> float:
    theta = objective.initial_parameters()
    _, gradient = objective.gradient(theta)
    hv = objective.hvp(theta, theta_step) + DAMPING * theta_step
    return float(gradient @ theta_step + 0.5 * theta_step @ hv)


class TestStepNullSpace:
    def test_basis__orthonormal_and_in_the_null_space(self) -> None:
        projection = torch.randn(M, M, dtype=torch.float64)
        keep = torch.tensor([0, 3, 4, 8])
        basis = step_null_space(projection, keep)
        removed = torch.ones(M, dtype=torch.bool)
        removed[keep] = False
        assert basis.shape == (M, keep.numel())
        assert torch.allclose(
            basis.T @ basis, torch.eye(keep.numel(), dtype=basis.dtype)
        )
        assert float((projection[removed] @ basis).abs().max()) < 1e-12

    def test_basis__boolean_mask_matches_indices(self) -> None:
        projection = torch.randn(M, M, dtype=torch.float64)
        mask = torch.zeros(M, dtype=torch.bool)
        mask[[1, 2, 7]] = True
        by_mask = step_null_space(projection, mask)
        by_index = step_null_space(projection, torch.tensor([1, 2, 7]))
        assert torch.allclose(by_mask @ by_mask.T, by_index @ by_index.T)

    def test_basis__keep_all_is_identity(self) -> None:
        projection = torch.randn(M, 6, dtype=torch.float64)
        assert torch.equal(
            step_null_space(projection, torch.arange(M)),
            torch.eye(6, dtype=torch.float64),
        )

    def test_basis__bad_keep_raises(self) -> None:
        projection = torch.randn(M, M, dtype=torch.float64)
        with pytest.raises(ValueError, match="outside"):
            step_null_space(projection, torch.tensor([0, M]))
        with pytest.raises(ValueError, match="shape"):
            step_null_space(projection, torch.ones(M + 1, dtype=torch.bool))


class TestRestrictedStep:
    def test_restricted_step__keep_all_is_the_audit_step(self) -> None:
        objective = _objective()
        full = solve_newton(objective, DAMPING, max_iter=200, tol=1e-10, progress=False)
        restricted = restricted_step(
            objective, DAMPING, torch.arange(M), max_iter=200, tol=1e-10
        )
        error = (
            restricted - full.delta_alpha.double()
        ).norm() / full.delta_alpha.norm()
        assert float(error) < 1e-8

    def test_restricted_step__zero_off_keep_and_optimal_on_it(self) -> None:
        objective = _objective(bias=False)
        keep = torch.tensor([0, 2, 5, 6, 9])
        delta_alpha = restricted_step(objective, DAMPING, keep, max_iter=200, tol=1e-12)
        removed = torch.ones(M, dtype=torch.bool)
        removed[keep] = False
        assert float(delta_alpha[removed].abs().max()) < 1e-10
        projection = objective.backbone.feature_projection.detach().double()
        basis = step_null_space(projection, keep)

        def as_theta(b: Tensor) -> Tensor:
            return objective.flatten((basis @ b).T, None)

        b = basis.T @ torch.linalg.solve(projection, delta_alpha)  # Delta A^T = N b
        assert torch.allclose(projection @ basis @ b, delta_alpha, atol=1e-10)
        best = _model(objective, as_theta(b))
        generator = torch.Generator().manual_seed(1)
        for _ in range(3):
            move = torch.randn(b.shape, generator=generator, dtype=b.dtype)
            assert _model(objective, as_theta(b + 1e-2 * move)) > best
        full = solve_newton(objective, DAMPING, max_iter=200, tol=1e-12, progress=False)
        # Fewer landmarks free: a higher model value than the full step, a lower
        # one than no step.
        assert _model(objective, objective.flatten(full.delta_weight, None)) < best < 0

    def test_restricted_step__non_positive_damping_raises(self) -> None:
        with pytest.raises(ValueError, match="damping"):
            restricted_step(_objective(), 0.0, torch.arange(3))
