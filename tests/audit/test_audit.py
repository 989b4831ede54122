from __future__ import annotations

import doctest
import importlib
import itertools
import warnings
from typing import Any

import pytest
import torch
from lightly.loss import NTXentLoss
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lightly_krepes.audit import (
    AuditResult,
    SurrogateFit,
    apply_step,
    audit,
    audit_encoder,
    audit_views,
    build_surrogate,
)
from lightly_krepes.audit.audit import (
    DEFAULT_REFINE_RESIDUAL,
    _view_batches,
    batch_seed,
    refine_step,
)
from lightly_krepes.audit.newton import NewtonStep, solve_newton
from lightly_krepes.audit.objective import AuditObjective
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF, EmpiricalNTK
from lightly_krepes.loss import SpectralContrastiveLoss


def _mlp(out: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, out)).eval()


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    ).eval()


def _tabular(n: int = 48) -> Tensor:
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(3))


def _noise_views(x: Tensor) -> list[Tensor]:
    return [x + 0.2 * torch.randn_like(x), x + 0.2 * torch.randn_like(x)]


class _ViewDataset(Dataset[Any]):
    """Items ([view_0, view_1], label, filename) as LightlyDataset returns them."""

    def __init__(self, n: int = 24) -> None:
        self.images = torch.rand(n, 3, 6, 6, generator=torch.Generator().manual_seed(4))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[list[Tensor], int, str]:
        x = self.images[i]
        views = [
            (x.flip(-1) if bool(torch.rand(()) < 0.5) else x)
            + 0.05 * torch.randn_like(x)
            for _ in range(2)
        ]
        return views, i % 2, f"{i}.png"


class _ItemDataset(Dataset[Any]):
    """A map-style data set of given items."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


def _audit(**kwargs: Any) -> AuditResult:
    options: dict[str, Any] = {
        "transform": _noise_views,
        "num_landmarks": 12,
        "damping": 50.0,
        "batch_size": 16,
        "max_iter": 30,
        "progress": False,
    }
    options.update(kwargs)
    data = options.pop("data", _tabular())
    loss = options.pop("loss", NTXentLoss())
    return audit_encoder(options.pop("encoder", _mlp()), data, loss, **options)


class TestAuditEncoder:
    def test_audit_encoder__tabular_mlp(self) -> None:
        encoder = _mlp()
        rng_state = torch.get_rng_state()
        result = _audit(encoder=encoder)
        assert torch.equal(torch.get_rng_state(), rng_state)

        backbone = result.backbone
        assert backbone.out_dim == 4  # the encoder's output dimension
        assert backbone.landmarks.shape == (12, 5)
        record = SurrogateFit.of(backbone)
        assert record is not None and record.method == "ridge"
        assert record.ridge is not None and record.ridge.r2 > 0.9
        indices = backbone.landmark_indices
        assert indices is not None
        torch.testing.assert_close(backbone.landmarks, _tabular()[indices])
        assert result.damping == 50.0 and result.selection is None
        assert result.step.delta_alpha.shape == (12, 4)
        assert result.step.loss_after < result.step.loss_before
        expected = apply_step(backbone, result.step)
        x = _tabular(6)
        torch.testing.assert_close(result.audited(x), expected(x))

        again = _audit()
        assert torch.equal(again.step.delta_alpha, result.step.delta_alpha)
        other_seed = _audit(seed=1)
        assert not torch.equal(other_seed.step.delta_alpha, result.step.delta_alpha)

    def test_audit_encoder__pc_initialisation(self) -> None:
        result = _audit(fit="pc")
        weight = result.backbone.linear.weight
        assert torch.equal(weight, torch.eye(*weight.shape))
        assert result.backbone.linear.bias is not None
        assert not result.backbone.linear.bias.any()
        record = SurrogateFit.of(result.backbone)
        assert record is not None and record.method == "pc" and record.ridge is None

    def test_audit_encoder__selects_damping_label_free(self) -> None:
        result = _audit(damping=None, loss=SpectralContrastiveLoss(), max_iter=15)
        assert result.selection is not None
        assert result.damping == result.selection.damping
        assert result.step is result.selection.step
        assert len(result.selection.candidates) == 10

    def test_audit_encoder__cnn_with_lightly_dataset(self) -> None:
        dataset = _ViewDataset()
        options: dict[str, Any] = {
            "transform": None,
            "num_landmarks": 8,
            "batch_size": 12,
            "data": dataset,
            "encoder": _cnn(),
            "max_iter": 10,
        }
        result = _audit(**options)
        assert result.backbone.landmarks.shape == (8, 3, 6, 6)
        assert result.backbone.out_dim == 3
        assert torch.isfinite(result.step.delta_alpha).all()
        assert result.step.loss_after < result.step.loss_before
        assert torch.equal(_audit(**options).step.delta_alpha, result.step.delta_alpha)

        # Loaders' batches are used as they are; iterating one draws its own seed,
        # so its views differ from the dataset's but are as reproducible.
        options["data"] = DataLoader(dataset, batch_size=12, shuffle=True)
        from_loader = _audit(**options)
        assert torch.isfinite(from_loader.step.delta_alpha).all()
        assert not torch.equal(from_loader.step.delta_alpha, result.step.delta_alpha)
        assert torch.equal(
            _audit(**options).step.delta_alpha, from_loader.step.delta_alpha
        )

    def test_audit_encoder__out_dim_capped_by_rank(self) -> None:
        result = _audit(encoder=_mlp(out=32), num_landmarks=6, fit="pc")
        assert result.backbone.out_dim == result.backbone.nystrom.rank <= 6
        with pytest.raises(ValueError, match="exceeds the rank"):
            _audit(encoder=_mlp(out=32), num_landmarks=6, out_dim=20, fit="pc")
        # The ridge fit reproduces all 32 outputs, which 6 landmarks cannot.
        with pytest.raises(ValueError, match="num_landmarks >= 64"):
            _audit(encoder=_mlp(out=32), num_landmarks=6)

    def test_audit_encoder__unnormalized_trace_kernel(self) -> None:
        result = _audit(output="trace", normalized=False, out_dim=2, fit="pc")
        kernel = result.backbone.nystrom.kernel
        assert isinstance(kernel, EmpiricalNTK) and kernel.output == "trace"
        assert result.step.delta_weight.shape == (2, result.backbone.nystrom.rank)

    def test_audit_encoder__rejects_bad_input(self) -> None:
        encoder = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4))
        with pytest.raises(ValueError, match="eval"):
            _audit(encoder=encoder)
        with pytest.raises(ValueError, match="transform"):
            _audit(transform=None)
        with pytest.raises(ValueError, match="transform"):
            _audit(data=_ViewDataset())
        with pytest.raises(TypeError, match="views"):
            items = [(torch.randn(5), 0)] * 16
            _audit(data=_ItemDataset(items), transform=None, num_landmarks=4, fit="pc")
        with pytest.raises(ValueError, match="mismatched shapes"):
            _audit(transform=lambda x: [x, x[:3]])
        with pytest.raises(ValueError, match="p >= 2"):
            _audit(transform=lambda x: [x + 0.1])
        with pytest.raises(ValueError, match="empty"):
            _audit(data=torch.empty(0, 5))
        with pytest.raises(ValueError, match="damping"):
            _audit(damping=0.0)
        with pytest.raises(ValueError, match="damping"):
            _audit(damping=-1.0)
        with pytest.raises(ValueError, match="NaN"):
            _audit(data=torch.full((8, 5), torch.nan))
        with pytest.raises(ValueError, match="fit"):
            _audit(fit="kpca")


def _generated(data: Tensor, seed: int) -> list[tuple[Tensor, ...]]:
    batches = list(_view_batches(data, _noise_views, 16, seed))
    assert all(batch is not None for batch in batches)
    return [batch for batch in batches if batch is not None]


class TestViewGeneration:
    def test_view_batches__seeded_by_global_batch_index(self) -> None:
        x = _tabular()
        three = _generated(x, 0)
        two = _generated(x[:32], 0)
        # A batch's views do not depend on the batches generated before it ...
        for a, b in zip(two, three[:2], strict=True):
            assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
        # ... and batches of the same samples get different draws.
        same = _generated(torch.cat([x[:16], x[:16]]), 0)
        assert not torch.equal(same[0][0], same[1][0])
        other = _generated(x, 1)
        assert not torch.equal(other[0][0], three[0][0])
        assert batch_seed(0, 1) == batch_seed(0, 1) != batch_seed(1, 0)

    def test_view_batches__shard_skips_other_processes_batches(self) -> None:
        x = _tabular()
        # Without a process group a shard is the whole data.
        sharded = list(_view_batches(x, _noise_views, 16, 0, shard=True))
        assert all(batch is not None for batch in sharded)
        assert len(sharded) == 3


def _refine_problem(
    curvature_rows: int | None, *, subsample_values: bool = False
) -> AuditObjective:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(128, 4, generator=gen, dtype=torch.float64)
    noise = 0.3 * torch.randn(2, 128, 4, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    backbone = KernelBackbone(RBF(2.0), x[:16], out_dim=3)
    batches = [
        (x[i : i + 16] + noise[0, i : i + 16], x[i : i + 16] + noise[1, i : i + 16])
        for i in range(0, 128, 16)
    ]
    return AuditObjective(
        backbone,
        NTXentLoss(),
        batches,
        curvature_rows=curvature_rows,
        subsample_values=subsample_values,
        progress=False,
    )


class TestRefineStep:
    @pytest.mark.parametrize("damping", [0.05, 0.5, 5.0])
    @pytest.mark.parametrize("subsample_values", [False, True])
    def test_refine_step__never_raises_the_full_data_model(
        self, damping: float, subsample_values: bool
    ) -> None:
        # 0.05 and 0.5 lie below the Hessian's most negative eigenvalue: the
        # rounds must stop at non-positive curvature instead of heading for a
        # saddle.
        half = _refine_problem(64, subsample_values=subsample_values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            plain = solve_newton(half, damping, progress=False)
            refined = refine_step(half, plain, rounds=3)
        theta = half.initial_parameters()
        _, gradient = half.gradient(theta)

        def model(step: NewtonStep) -> float:
            d = half.flatten(step.delta_weight, step.delta_bias)
            curvature = half.hvp(theta, d, subsample=False) + damping * d
            return float(gradient @ d + 0.5 * d @ curvature)

        assert model(refined) <= model(plain) + 1e-12 * abs(model(plain))
        assert refined is plain or refined.cg_iterations > plain.cg_iterations
        # The step's own loss figures stay on the objective's values.
        assert refined.loss_after == half.value(
            theta + half.flatten(refined.delta_weight, refined.delta_bias),
            check=False,
        )

    def test_refine_step__squares_the_subsampling_error(self) -> None:
        full, half = _refine_problem(None), _refine_problem(64)
        assert len(half.curvature_batches) == 4
        damping = 20.0
        exact = solve_newton(full, damping, tol=1e-12, progress=False).delta_alpha
        plain = solve_newton(half, damping, tol=1e-12, progress=False)
        refined = refine_step(half, plain, rounds=1, tol=1e-12)
        twice = refine_step(half, plain, rounds=2, tol=1e-12, residual_tol=0.0)

        def error(step: NewtonStep) -> float:
            return float((step.delta_alpha - exact).norm() / exact.norm())

        # Measured 0.17 -> 0.038 (about 0.17 squared) -> below 0.01.
        assert error(plain) > 0.05
        assert error(refined) < 0.3 * error(plain)
        assert error(twice) < 0.3 * error(refined)
        assert refined.cg_iterations > plain.cg_iterations
        assert refined.loss_before == plain.loss_before
        assert refined.loss_after == full.value(
            full.initial_parameters()
            + full.flatten(refined.delta_weight, refined.delta_bias)
        )

    def test_refine_step__converges_where_plain_refinement_diverges(self) -> None:
        # One batch of eight for the curvature at a small damping: plain
        # iterative refinement (delta += M^-1 r) diverged here, 0.50 -> 0.95 ->
        # 1.5 -> 2.9 -> 5.3 -> 10 over 5 rounds; flexible PCG measured 0.50 ->
        # 0.34 -> 0.21 -> 0.020 -> 0.005 -> 0.0025.
        full, half = _refine_problem(None), _refine_problem(16)
        assert len(half.curvature_batches) == 1
        damping = 8.0
        exact = solve_newton(full, damping, tol=1e-12, max_iter=500, progress=False)
        plain = solve_newton(half, damping, tol=1e-12, max_iter=500, progress=False)
        assert not exact.negative_curvature and not plain.negative_curvature
        theta = full.initial_parameters()
        target = full.flatten(exact.delta_weight, exact.delta_bias)

        def a_norm_error(step: NewtonStep) -> float:
            error = full.flatten(step.delta_weight, step.delta_bias) - target
            return float(error @ (full.hvp(theta, error) + damping * error))

        errors = [a_norm_error(plain)]
        for rounds in range(1, 6):
            errors.append(
                a_norm_error(refine_step(half, plain, rounds=rounds, residual_tol=0))
            )
        # Each round is an exact line search in the A-norm: it never grows.
        assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(errors))
        refined = refine_step(half, plain, rounds=5, residual_tol=0)
        relative = float((refined.delta_alpha - exact.delta_alpha).norm())
        assert relative / float(exact.delta_alpha.norm()) < 0.02
        # By default the rounds stop at the residual DEFAULT_REFINE_RESIDUAL.
        auto = refine_step(half, plain)
        assert auto.converged
        assert auto.cg_residual <= DEFAULT_REFINE_RESIDUAL
        # cg_residual is the full-data residual relative to |g|.
        _, gradient = full.gradient(theta)
        delta = full.flatten(refined.delta_weight, refined.delta_bias)
        residual = -gradient - full.hvp(theta, delta) - damping * delta
        assert refined.cg_residual == pytest.approx(
            float(residual.norm() / gradient.norm()), rel=1e-6
        )

    def test_refine_step__full_curvature_or_no_rounds_unchanged(self) -> None:
        full, half = _refine_problem(None), _refine_problem(64)
        step = solve_newton(full, 20.0, progress=False)
        assert refine_step(full, step) is step
        sub_step = solve_newton(half, 20.0, progress=False)
        assert refine_step(half, sub_step, rounds=0) is sub_step
        with pytest.raises(ValueError, match="rounds"):
            refine_step(half, sub_step, rounds=-1)
        with pytest.raises(ValueError, match="correction_tol"):
            refine_step(half, sub_step, correction_tol=0.0)
        with pytest.raises(ValueError, match="residual_tol"):
            refine_step(half, sub_step, residual_tol=1.0)


def _fixed_views(x: Tensor) -> list[Tensor]:
    # Deterministic, so audit_encoder's per-sample views can be rebuilt exactly.
    return [0.9 * x, x + 0.1]


class TestAudit:
    def test_audit__build_surrogate_then_audit_equals_audit_encoder(self) -> None:
        x = _tabular()
        options: dict[str, Any] = {"num_landmarks": 12, "progress": False}
        composed = audit_encoder(
            _mlp(),
            x,
            NTXentLoss(),
            transform=_fixed_views,
            damping=50.0,
            batch_size=16,
            max_iter=30,
            **options,
        )
        surrogate = build_surrogate(_mlp(), x, **options)
        result = audit(
            surrogate,
            NTXentLoss(),
            _fixed_views(x),
            damping=50.0,
            batch_size=16,
            max_iter=30,
            progress=False,
        )
        torch.testing.assert_close(result.backbone(x), composed.backbone(x))
        torch.testing.assert_close(result.step.delta_alpha, composed.step.delta_alpha)
        torch.testing.assert_close(result.audited(x), composed.audited(x))
        assert result.damping == composed.damping == 50.0
        assert result.selection is None

    def test_audit__list_of_views_equals_view_batches(self) -> None:
        x = _tabular()
        surrogate = build_surrogate(_mlp(), x, num_landmarks=12, progress=False)
        v0, v1 = _noise_views(x)
        views = [v0, v1]
        batches = [(v0[i : i + 16], v1[i : i + 16]) for i in range(0, 48, 16)]
        from_list = audit(
            surrogate, NTXentLoss(), views, damping=50.0, batch_size=16, progress=False
        )
        from_batches = audit(
            surrogate, NTXentLoss(), iter(batches), damping=50.0, progress=False
        )
        assert torch.equal(from_list.step.delta_alpha, from_batches.step.delta_alpha)
        # One batch of all 48 samples is another objective (in-batch negatives).
        whole = audit(surrogate, NTXentLoss(), views, damping=50.0, progress=False)
        assert not torch.equal(whole.step.delta_alpha, from_list.step.delta_alpha)
        # The input backbone is the result's, unchanged.
        assert from_list.backbone is surrogate
        torch.testing.assert_close(from_list.backbone(x), surrogate(x))

    def test_audit__curvature_rows_threads_to_the_objective(self) -> None:
        x = _tabular()
        surrogate = build_surrogate(_mlp(), x, num_landmarks=12, progress=False)
        views = _fixed_views(x)

        def run(**options: Any) -> Tensor:
            result = audit(
                surrogate,
                NTXentLoss(),
                views,
                damping=50.0,
                batch_size=16,
                max_iter=30,
                progress=False,
                **options,
            )
            delta: Tensor = result.step.delta_alpha
            return delta

        full = run(curvature_rows=None)
        # 48 rows in 3 batches: a subsample covering them is all batches.
        assert torch.equal(run(curvature_rows=48), full)
        assert torch.equal(run(), full)
        one_batch = run(curvature_rows=16)
        assert not torch.allclose(one_batch, full)
        assert not torch.equal(run(curvature_rows=16, seed=1), one_batch)

    def test_audit__three_views(self) -> None:
        x = _tabular()
        surrogate = build_surrogate(_mlp(), x, num_landmarks=12, progress=False)
        views = [x, x + 0.1, x - 0.1]
        ntxent = NTXentLoss()

        def loss(z0: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
            return ntxent(z0, z1) + ntxent(z0, z2)

        result = audit(surrogate, loss, views, damping=50.0, progress=False)
        assert result.step.loss_after < result.step.loss_before

    def test_audit__rejects_bad_views(self) -> None:
        x = _tabular()
        surrogate = build_surrogate(_mlp(), x, num_landmarks=12, progress=False)
        loss = NTXentLoss()
        with pytest.raises(ValueError, match="p >= 2"):
            audit(surrogate, loss, [x], damping=1.0)
        with pytest.raises(ValueError, match="p >= 2"):
            audit(surrogate, loss, iter([(x,)]), damping=1.0)
        with pytest.raises(ValueError, match=r"samples \[48, 40\]"):
            audit(surrogate, loss, [x, x[:40]], damping=1.0)
        with pytest.raises(ValueError, match="different numbers of samples"):
            audit(surrogate, loss, iter([(x, x), (x, x[:5])]), damping=1.0)
        with pytest.raises(TypeError, match="list"):
            audit(surrogate, loss, torch.stack([x, x]), damping=1.0)
        with pytest.raises(ValueError, match="like the landmarks"):
            audit(surrogate, loss, [x[:, :3], x[:, :3]], damping=1.0)
        with pytest.raises(ValueError, match="damping"):
            audit(surrogate, loss, [x, x], damping=0.0)
        with pytest.raises(ValueError, match="damping"):
            audit(surrogate, loss, [x, x], damping=-2.0)
        with pytest.raises(ValueError, match="batch_size"):
            audit(surrogate, loss, [x, x], damping=1.0, batch_size=0)
        with pytest.raises(TypeError, match="KernelBackbone"):
            audit(_mlp(), loss, [x, x], damping=1.0)  # type: ignore[arg-type]


class TestExamples:
    @pytest.mark.parametrize(
        "module", ["objective", "newton", "damping", "audit", "surrogate", "cache"]
    )
    def test_docstrings__examples_run(self, module: str) -> None:
        mod = importlib.import_module(f"lightly_krepes.audit.{module}")
        torch.manual_seed(0)
        result = doctest.testmod(mod, extraglobs={"torch": torch}, verbose=False)
        assert result.attempted > 0
        assert result.failed == 0


class TestAuditViews:
    def test_audit_views__reproduce_audit_encoders_step(self) -> None:
        x = _tabular(64)
        result = audit_encoder(
            _mlp(),
            x,
            NTXentLoss(),
            transform=_noise_views,
            num_landmarks=12,
            damping=100.0,
            batch_size=32,
            progress=False,
        )
        views = audit_views(x, transform=_noise_views, batch_size=32)
        assert [len(b[0]) for b in views] == [32, 32]
        again = audit(
            result.backbone,
            NTXentLoss(),
            views,
            damping=result.damping,
            progress=False,
        )
        torch.testing.assert_close(
            again.step.delta_alpha, result.step.delta_alpha, rtol=1e-10, atol=1e-12
        )

    def test_audit_views__other_seed_other_views(self) -> None:
        x = _tabular(16)
        first = audit_views(x, transform=_noise_views, batch_size=8, seed=0)
        other = audit_views(x, transform=_noise_views, batch_size=8, seed=1)
        assert not torch.equal(first[0][0], other[0][0])
