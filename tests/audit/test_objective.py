"""AuditObjective: subsampled curvature and the batch bookkeeping of sharding."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from lightly.loss import NTXentLoss
from torch import Tensor

from lightly_krepes.audit import AuditObjective, solve_newton
from lightly_krepes.audit.objective import DEFAULT_CURVATURE_ROWS, curvature_subsample
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF

ViewBatches = list[tuple[Tensor, Tensor]]


def _backbone() -> KernelBackbone:
    landmarks = torch.randn(
        16, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    torch.manual_seed(0)
    return KernelBackbone(RBF(2.0), landmarks, out_dim=3)


def _varied_batches(num_batches: int = 8, size: int = 16) -> ViewBatches:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(num_batches * size, 4, generator=gen, dtype=torch.float64)
    noise = 0.3 * torch.randn(2, *x.shape, generator=gen, dtype=torch.float64)
    return [
        (
            x[s : s + size] + noise[0, s : s + size],
            x[s : s + size] + noise[1, s : s + size],
        )
        for s in range(0, len(x), size)
    ]


def _homogeneous_batches(num_batches: int = 16, size: int = 32) -> ViewBatches:
    # The same samples in every batch with small fresh noise: the per-batch
    # Hessians are nearly equal, so half of them estimate the mean well.
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(size, 4, generator=gen, dtype=torch.float64)
    return [
        tuple(  # type: ignore[misc]
            x + 0.02 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
            for _ in range(2)
        )
        for _ in range(num_batches)
    ]


def _objective(
    batches: ViewBatches,
    curvature_rows: int | None,
    *,
    subsample_values: bool = False,
    distributed: bool | None = None,
) -> AuditObjective:
    return AuditObjective(
        _backbone(),
        NTXentLoss(),
        batches,
        progress=False,
        curvature_rows=curvature_rows,
        subsample_values=subsample_values,
        distributed=distributed,
    )


def _direction(objective: AuditObjective) -> Tensor:
    gen = torch.Generator().manual_seed(4)
    return torch.randn(objective.num_parameters, generator=gen, dtype=torch.float64)


class TestCurvatureSubsample:
    @given(
        num_batches=st.integers(1, 60),
        rows=st.integers(1, 64),
        curvature_rows=st.integers(1, 5000),
        seed=st.integers(0, 2**31),
    )
    def test_curvature_subsample__whole_batches_covering_the_rows(
        self, num_batches: int, rows: int, curvature_rows: int, seed: int
    ) -> None:
        n = num_batches * rows
        chosen = curvature_subsample(num_batches, n, curvature_rows, seed)
        assert chosen == sorted(set(chosen))
        assert all(0 <= i < num_batches for i in chosen)
        expected = (
            num_batches
            if curvature_rows >= n
            else min(num_batches, math.ceil(curvature_rows / rows))
        )
        assert len(chosen) == expected
        assert len(chosen) * rows >= min(curvature_rows, n)
        assert chosen == curvature_subsample(num_batches, n, curvature_rows, seed)

    def test_curvature_subsample__none_is_every_batch(self) -> None:
        assert curvature_subsample(5, 10**9, None, seed=0) == [0, 1, 2, 3, 4]
        assert DEFAULT_CURVATURE_ROWS == 16_384

    def test_curvature_subsample__seed_changes_the_draw(self) -> None:
        draws = {tuple(curvature_subsample(100, 10_000, 1000, s)) for s in range(5)}
        assert len(draws) == 5

    @pytest.mark.parametrize("rows", [0, -3, 2.5, True, "all"])
    def test_curvature_subsample__rejects_bad_rows(self, rows: object) -> None:
        with pytest.raises(ValueError, match="curvature_rows"):
            curvature_subsample(4, 40, rows, seed=0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="curvature_rows"):
            _objective(_varied_batches(), rows)  # type: ignore[arg-type]


class TestAuditObjective:
    def test_hvp__subsample_is_the_mean_over_its_batches(self) -> None:
        batches = _varied_batches()
        objective = _objective(batches, curvature_rows=48)
        assert len(objective.curvature_batches) == 3
        theta = objective.initial_parameters()
        v = _direction(objective)
        expected = torch.stack(
            [
                _objective([batches[b]], None).hvp(theta, v)
                for b in objective.curvature_batches
            ]
        ).mean(0)
        torch.testing.assert_close(
            objective.hvp(theta, v), expected, rtol=1e-12, atol=0
        )

    def test_hvp__subsample_of_all_batches_equals_the_full_hessian(self) -> None:
        batches = _varied_batches()
        full = _objective(batches, None)
        covering = _objective(batches, curvature_rows=full.num_samples)
        assert covering.curvature_batches == list(range(8))
        theta = full.initial_parameters()
        v = _direction(full)
        assert torch.equal(full.hvp(theta, v), covering.hvp(theta, v))
        a = solve_newton(full, 20.0, max_iter=50, progress=False)
        b = solve_newton(covering, 20.0, max_iter=50, progress=False)
        assert torch.equal(a.delta_alpha, b.delta_alpha)

    def test_hvp__subsample_false_is_the_full_product(self) -> None:
        batches = _varied_batches()
        full = _objective(batches, None)
        sub = _objective(batches, curvature_rows=48)
        theta = full.initial_parameters()
        v = _direction(full)
        expected = full.hvp(theta, v)
        sampled = sub.hvp(theta, v)  # builds the subsample's graphs
        torch.testing.assert_close(
            sub.hvp(theta, v, subsample=False), expected, rtol=1e-13, atol=0
        )
        assert not torch.allclose(sampled, expected)
        # The cached subsample graphs survive a full product.
        assert torch.equal(sub.hvp(theta, v), sampled)

    def test_gradient__averages_all_batches_whatever_the_subsample(self) -> None:
        batches = _varied_batches()
        full = _objective(batches, None)
        sub = _objective(batches, curvature_rows=16)
        theta = full.initial_parameters()
        value_full, gradient_full = full.gradient(theta)
        value_sub, gradient_sub = sub.gradient(theta)
        assert torch.equal(gradient_full, gradient_sub)
        assert value_full == value_sub == full.value(theta) == sub.value(theta)

    def test_value__subsample_values_average_the_subsample(self) -> None:
        batches = _varied_batches()
        sub = _objective(batches, curvature_rows=48, subsample_values=True)
        theta = sub.initial_parameters()
        singles = [_objective([b], None).value(theta) for b in batches]
        expected = sum(singles[i] for i in sub.curvature_batches) / 3
        assert sub.value(theta) == pytest.approx(expected, rel=1e-12)
        assert sub.gradient(theta)[0] == pytest.approx(expected, rel=1e-12)
        assert sub.value(theta) != pytest.approx(sum(singles) / 8, rel=1e-6)

    def test_value__subsample_argument_overrides_subsample_values(self) -> None:
        batches = _varied_batches()
        sub = _objective(batches, curvature_rows=48, subsample_values=True)
        full = _objective(batches, curvature_rows=48, subsample_values=False)
        theta = sub.initial_parameters()
        assert sub.value(theta, subsample=False) == full.value(theta)
        assert full.value(theta, subsample=True) == sub.value(theta)

    def test_gradient__repeated_at_one_theta_is_reused_not_recomputed(self) -> None:
        objective = _objective(_varied_batches(), None)
        theta = objective.initial_parameters()
        value, gradient = objective.gradient(theta)
        calls = 0
        loss = objective.loss

        def counted(*views: Tensor) -> Tensor:
            nonlocal calls
            calls += 1
            return loss(*views)

        objective.loss = counted
        again_value, again = objective.gradient(theta.clone())
        assert calls == 0
        assert again_value == value and torch.equal(again, gradient)
        again.zero_()  # a copy: the kept gradient is not changed by the caller
        assert torch.equal(objective.gradient(theta)[1], gradient)
        objective.gradient(theta + 1e-3)
        assert calls == objective.num_batches

    def test_solve_newton__half_the_batches_close_to_the_full_step(self) -> None:
        batches = _homogeneous_batches()
        full = _objective(batches, None)
        half = _objective(batches, curvature_rows=full.num_samples // 2)
        assert len(half.curvature_batches) == 8
        # Above the most negative Hessian eigenvalue (about -10.4; the top is 2.2).
        damping = 14.0
        a = solve_newton(full, damping, max_iter=200, tol=1e-10, progress=False)
        b = solve_newton(half, damping, max_iter=200, tol=1e-10, progress=False)
        difference = float(
            (a.delta_alpha - b.delta_alpha).norm() / a.delta_alpha.norm()
        )
        # Measured 0.007; dividing the subsample's sum by all 16 batches
        # (H / 2) gives 0.46.
        assert difference < 0.05, difference

    def test_init__tracks_global_batches_without_a_process_group(self) -> None:
        objective = _objective(_varied_batches(num_batches=5), None)
        assert not objective.distributed
        assert objective.batch_indices == [0, 1, 2, 3, 4]
        assert objective.num_batches == 5
        assert objective.num_samples == 80

    def test_init__rejects_gathering_losses_when_distributed(self) -> None:
        # Whole batches live on different processes, so a loss gathering
        # negatives across processes would mix batches (and hang).
        with pytest.raises(ValueError, match="gather_distributed"):
            AuditObjective(
                _backbone(),
                NTXentLoss(gather_distributed=True),
                _varied_batches(),
                progress=False,
                distributed=True,
            )
