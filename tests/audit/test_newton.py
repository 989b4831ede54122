from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Literal

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from lightly.loss import (
    BarlowTwinsLoss,
    NegativeCosineSimilarity,
    NTXentLoss,
    VICRegLoss,
)
from lightly.models.modules import SimCLRProjectionHead
from torch import Tensor
from torch.func import functional_call, hessian

from lightly_krepes.audit import (
    AuditObjective,
    NewtonStep,
    apply_step,
    newton_step,
    solve_newton,
)
from lightly_krepes.audit.newton import _newton_step
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF
from lightly_krepes.loss import SpectralContrastiveLoss

Batches = list[tuple[Tensor, ...]]


def _backbone(
    out_dim: int = 3,
    m: int = 6,
    bias: bool = True,
    init: Literal["whitened", "pc"] = "whitened",
) -> KernelBackbone:
    landmarks = torch.randn(
        m, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    return KernelBackbone(RBF(2.0), landmarks, out_dim=out_dim, bias=bias, init=init)


def _batches(
    num_batches: int = 2, batch_size: int = 12, seed: int = 1, noise: float = 0.3
) -> Batches:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num_batches):
        x = torch.randn(batch_size, 4, generator=gen, dtype=torch.float64)
        v0 = x + noise * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        v1 = x + noise * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        out.append((v0, v1))
    return out


def _least_squares(z0: Tensor, z1: Tensor) -> Tensor:
    # Strictly convex in (A, gamma) when [psi(v0), 1] has full column rank.
    return (z0 - 1.0).pow(2).mean() + (z0 - z1).pow(2).mean()


def _dense_objective(
    backbone: KernelBackbone,
    loss: Callable[..., Tensor],
    batches: Batches,
) -> Callable[[Tensor], Tensor]:
    """The objective through the backbone's own forward pass, independent of the
    audit's feature cache."""
    out_dim, r = backbone.linear.weight.shape

    def objective(theta: Tensor) -> Tensor:
        params = {
            "linear.weight": theta[: out_dim * r].reshape(out_dim, r),
            "linear.bias": theta[out_dim * r :],
        }
        total = torch.zeros((), dtype=theta.dtype)
        for views in batches:
            zs = [functional_call(backbone, params, (v,)) for v in views]
            total = total + loss(*zs)
        return total / len(batches)

    return objective


def _theta0(backbone: KernelBackbone) -> Tensor:
    linear = backbone.linear
    assert linear.bias is not None
    return torch.cat([linear.weight.detach().reshape(-1), linear.bias.detach()])


def _flat(step: NewtonStep) -> Tensor:
    assert step.delta_bias is not None
    return torch.cat([step.delta_weight.reshape(-1), step.delta_bias])


@functools.cache
def _ntxent_problem() -> tuple[AuditObjective, Tensor]:
    """A tiny NTXent objective and its dense Hessian, built once per session."""
    backbone = _backbone()
    batches = _batches()
    loss = NTXentLoss(temperature=0.5)
    h = hessian(_dense_objective(backbone, loss, batches))(_theta0(backbone))
    return AuditObjective(backbone, loss, batches, progress=False), h


LOSSES: list[Callable[[], Callable[..., Tensor]]] = [
    NTXentLoss,
    VICRegLoss,
    BarlowTwinsLoss,
    NegativeCosineSimilarity,
    SpectralContrastiveLoss,
]


class TestNewtonStep:
    @pytest.mark.parametrize(
        "loss", [NTXentLoss(temperature=0.5), SpectralContrastiveLoss()]
    )
    def test_newton_step__matches_dense_solve(
        self, loss: Callable[..., Tensor]
    ) -> None:
        backbone = _backbone()
        batches = _batches()
        objective = _dense_objective(backbone, loss, batches)
        theta = _theta0(backbone)
        g = torch.func.grad(objective)(theta)
        h = hessian(objective)(theta)
        damping = 2.0 * float(torch.linalg.eigvalsh(h).abs().max())
        eye = torch.eye(len(theta), dtype=torch.float64)
        expected = torch.linalg.solve(h + damping * eye, -g)

        step = newton_step(
            backbone, loss, batches, damping=damping, tol=1e-13, progress=False
        )

        assert step.converged and not step.negative_curvature
        torch.testing.assert_close(_flat(step), expected, atol=1e-8, rtol=0)
        assert step.loss_before == pytest.approx(float(objective(theta)), abs=1e-12)
        assert step.loss_after == pytest.approx(
            float(objective(theta + expected)), abs=1e-10
        )
        assert step.gradient_norm == pytest.approx(float(g.norm()), rel=1e-10)
        assert step.cg_residual <= 1e-13
        assert step.damping == damping

    @given(seed=st.integers(0, 2**16))
    def test_hvp__equals_dense_hessian_times_vector(self, seed: int) -> None:
        objective, h = _ntxent_problem()
        theta = objective.initial_parameters()
        v = torch.randn(
            theta.shape,
            generator=torch.Generator().manual_seed(seed),
            dtype=theta.dtype,
        )
        torch.testing.assert_close(
            objective.hvp(theta, v), h @ v, atol=1e-10, rtol=1e-10
        )

    def test_newton_step__exact_minimiser_of_strictly_convex_quadratic(self) -> None:
        backbone = _backbone()
        batches = _batches(num_batches=3)
        step = newton_step(
            backbone,
            _least_squares,
            batches,
            damping=1e-10,
            tol=1e-14,
            max_iter=500,
            progress=False,
        )
        audited = apply_step(backbone, step)
        objective = _dense_objective(audited, _least_squares, batches)
        gradient = torch.func.grad(objective)(_theta0(audited))

        assert step.loss_after < step.loss_before
        assert float(gradient.norm()) < 1e-7 * step.gradient_norm
        assert step.loss_after == pytest.approx(
            float(objective(_theta0(audited))), abs=1e-12
        )

    @given(damping=st.floats(1e-3, 1e3))
    def test_newton_step__lowers_quadratic_loss(self, damping: float) -> None:
        step = newton_step(
            _backbone(), _least_squares, _batches(), damping=damping, progress=False
        )
        assert step.converged
        assert step.loss_after < step.loss_before

    @pytest.mark.parametrize("make_loss", LOSSES)
    def test_newton_step__works_with_ssl_losses(
        self, make_loss: Callable[[], Callable[..., Tensor]]
    ) -> None:
        backbone = _backbone(out_dim=3, m=8)
        batches = _batches(batch_size=8)
        steps = [
            newton_step(
                backbone,
                make_loss(),
                batches,
                damping=100.0,
                max_iter=30,
                progress=False,
            )
            for _ in range(2)
        ]
        step = steps[0]
        assert not step.negative_curvature
        assert torch.isfinite(step.delta_weight).all()
        assert step.delta_bias is not None and torch.isfinite(step.delta_bias).all()
        assert abs(step.loss_after) < float("inf")
        assert step.loss_after != step.loss_before
        assert step.cg_iterations >= 1
        assert torch.equal(step.delta_weight, steps[1].delta_weight)
        assert step.loss_after == steps[1].loss_after
        # The objective the step was taken on is the mean of the batch losses.
        expected = torch.stack(
            [make_loss()(*(backbone(v) for v in views)) for views in batches]
        ).mean()
        assert step.loss_before == pytest.approx(float(expected), rel=1e-10)

    def test_newton_step__float32_backbone(self) -> None:
        backbone = _backbone().float()
        batches = [tuple(v.float() for v in views) for views in _batches()]
        step = newton_step(
            backbone, NTXentLoss(), batches, damping=10.0, progress=False
        )
        assert step.delta_weight.dtype == torch.float32
        assert step.delta_alpha.dtype == torch.float32
        assert step.loss_after < step.loss_before

    def test_delta_alpha__explains_change_of_representations(self) -> None:
        backbone = _backbone(m=8, init="pc")
        step = newton_step(
            backbone,
            SpectralContrastiveLoss(),
            _batches(),
            damping=50.0,
            progress=False,
        )
        assert not step.negative_curvature
        assert step.delta_alpha.abs().max() > 1e-3
        audited = apply_step(backbone, step)
        x = torch.randn(5, 4, dtype=torch.float64)
        kernel_rows = backbone.nystrom.landmark_kernel(x)
        assert step.delta_alpha.shape == (8, 3)
        assert step.delta_bias is not None
        torch.testing.assert_close(
            audited(x) - backbone(x),
            kernel_rows @ step.delta_alpha + step.delta_bias,
            atol=1e-10,
            rtol=1e-10,
        )
        torch.testing.assert_close(
            audited.representer_weights - backbone.representer_weights,
            step.delta_alpha,
        )

    def test_newton_step__without_bias(self) -> None:
        backbone = _backbone(bias=False)
        step = newton_step(
            backbone, _least_squares, _batches(), damping=1.0, progress=False
        )
        assert step.delta_bias is None
        assert apply_step(backbone, step).linear.bias is None

    def test_newton_step__with_projection_head(self) -> None:
        torch.manual_seed(0)
        head = SimCLRProjectionHead(3, 8, 4).double()
        state = copy.deepcopy(head.state_dict())
        step = newton_step(
            _backbone(),
            NTXentLoss(),
            _batches(batch_size=8),
            damping=10.0,
            head=head,
            max_iter=10,
            progress=False,
        )
        assert step.loss_after < step.loss_before
        for key, value in head.state_dict().items():
            assert torch.equal(value, state[key]), key  # running stats untouched
        assert all(p.requires_grad for p in head.parameters())

    def test_hvp__with_train_mode_batchnorm_head_equals_dense_hessian(self) -> None:
        torch.manual_seed(0)
        head = SimCLRProjectionHead(3, 8, 4).double().train()
        objective = AuditObjective(
            _backbone(), NTXentLoss(), _batches(batch_size=8), head=head, progress=False
        )
        theta = objective.initial_parameters()

        def dense(t: Tensor) -> Tensor:
            losses = [objective._batch_loss(t, f) for f in objective.features]
            return torch.stack(losses).mean()

        h = hessian(dense)(theta)
        gen = torch.Generator().manual_seed(2)
        for _ in range(2):  # the second product reuses the kept gradient graphs
            v = torch.randn(theta.shape, generator=gen, dtype=theta.dtype)
            torch.testing.assert_close(objective.hvp(theta, v), h @ v)
        objective.graph_cache_bytes = 0  # recomputed graphs give the same product
        torch.testing.assert_close(objective.hvp(theta, v), h @ v)

    def test_newton_step__head_of_wrong_size(self) -> None:
        head = SimCLRProjectionHead(5, 8, 4).double()
        with pytest.raises(ValueError, match="input size must equal"):
            newton_step(_backbone(), NTXentLoss(), _batches(), damping=1.0, head=head)

    def test_newton_step__negative_curvature_is_reported(self) -> None:
        def concave(z0: Tensor, z1: Tensor) -> Tensor:
            return -(z0.pow(2).mean() + z1.pow(2).mean())

        with pytest.warns(RuntimeWarning, match="Increase damping"):
            step = newton_step(
                _backbone(), concave, _batches(), damping=1e-6, progress=False
            )
        assert step.negative_curvature
        assert not step.converged
        assert torch.isfinite(step.delta_weight).all()

    def test_apply_step__copies_backbone(self) -> None:
        backbone = _backbone()
        weight = backbone.linear.weight.detach().clone()
        step = newton_step(
            backbone, _least_squares, _batches(), damping=1.0, progress=False
        )
        audited = apply_step(backbone, step)
        assert torch.equal(backbone.linear.weight, weight)
        torch.testing.assert_close(
            audited.linear.weight, weight + step.delta_weight, rtol=0, atol=0
        )
        with pytest.raises(ValueError, match="shape"):
            apply_step(_backbone(out_dim=2), step)
        with pytest.raises(ValueError, match="no bias"):
            apply_step(_backbone(bias=False), step)

    @given(
        damping=st.one_of(
            st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf"))
        )
    )
    def test_newton_step__rejects_non_positive_damping(self, damping: float) -> None:
        with pytest.raises(ValueError, match="damping"):
            newton_step(_backbone(), NTXentLoss(), _batches(), damping=damping)

    def test_newton_step__rejects_bad_input(self) -> None:
        backbone = _backbone()
        x = torch.randn(8, 4, dtype=torch.float64)
        with pytest.raises(ValueError, match="empty"):
            newton_step(backbone, NTXentLoss(), [], damping=1.0)
        with pytest.raises(ValueError, match="mismatched shapes"):
            newton_step(backbone, NTXentLoss(), [(x, x[:6])], damping=1.0)
        with pytest.raises(TypeError, match="list or tuple"):
            newton_step(backbone, NTXentLoss(), [x], damping=1.0)
        with pytest.raises(ValueError, match="NaN"):
            newton_step(
                backbone, NTXentLoss(), [(x, torch.full_like(x, torch.nan))], damping=1
            )
        with pytest.raises(ValueError, match="scalar"):
            newton_step(backbone, lambda a, b: a - b, [(x, x)], damping=1.0)
        with pytest.raises(ValueError, match="finite"):
            newton_step(
                backbone, lambda a, b: (a - b).sum() / 0.0 * 0.0, [(x, x)], damping=1
            )
        with pytest.raises(ValueError, match="different values"):
            newton_step(
                backbone,
                lambda a, b: (a - b).pow(2).sum() + torch.rand(()),
                [(x, x)],
                damping=1.0,
            )
        with pytest.raises(ValueError, match="max_iter"):
            newton_step(backbone, NTXentLoss(), [(x, x)], damping=1.0, max_iter=0)

    def test_solve_newton__reuses_features(self) -> None:
        backbone = _backbone()
        batches = _batches()
        objective = AuditObjective(backbone, NTXentLoss(), batches, progress=False)
        direct = newton_step(
            backbone, NTXentLoss(), batches, damping=30.0, progress=False
        )
        reused = solve_newton(objective, 30.0, progress=False)
        assert not direct.negative_curvature and direct.delta_weight.abs().max() > 0
        torch.testing.assert_close(direct.delta_weight, reused.delta_weight)
        assert objective.num_batches == 2
        assert objective.num_samples == 24
        assert objective.num_parameters == 3 * (6 + 1)

    def test_newton_step__from_solution_matches_solve_newton(self) -> None:
        # The helper that every solver (CG, one Lanczos space for many dampings)
        # uses to turn delta into a NewtonStep.
        objective, h = _ntxent_problem()
        theta = objective.initial_parameters()
        loss_before, gradient = objective.gradient(theta)
        damping = 2.0 * float(torch.linalg.eigvalsh(h).abs().max())
        eye = torch.eye(len(theta), dtype=torch.float64)
        solution = torch.linalg.solve(h + damping * eye, -gradient)
        step = _newton_step(
            objective,
            theta,
            loss_before,
            gradient,
            damping,
            solution,
            iterations=7,
            residual=1e-9,
            converged=True,
            negative_curvature=False,
        )
        reference = solve_newton(objective, damping, tol=1e-13, progress=False)
        torch.testing.assert_close(step.delta_weight, reference.delta_weight)
        assert step.delta_bias is not None and reference.delta_bias is not None
        torch.testing.assert_close(step.delta_bias, reference.delta_bias)
        torch.testing.assert_close(step.delta_alpha, reference.delta_alpha)
        assert step.loss_after == pytest.approx(reference.loss_after, rel=1e-10)
        assert step.loss_before == reference.loss_before
        assert step.gradient_norm == reference.gradient_norm
        assert (step.cg_iterations, step.cg_residual, step.converged) == (7, 1e-9, True)
        with pytest.warns(RuntimeWarning, match="Increase damping"):
            flagged = _newton_step(
                objective,
                theta,
                loss_before,
                gradient,
                damping,
                torch.zeros_like(theta),
                iterations=0,
                residual=1.0,
                converged=False,
                negative_curvature=True,
            )
        assert flagged.negative_curvature and flagged.loss_after == loss_before
