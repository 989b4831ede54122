from __future__ import annotations

import doctest
import functools
import importlib
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lightly.loss import NTXentLoss, VICRegLoss
from torch import Tensor

from lightly_krepes.audit import AuditObjective
from lightly_krepes.audit.krylov import Lanczos
from lightly_krepes.audit.newton import _conjugate_gradient
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF

LOSSES: dict[str, Callable[[], Callable[..., Tensor]]] = {
    "ntxent": lambda: NTXentLoss(temperature=0.5),
    "vicreg": VICRegLoss,
}


def _batches(seed: int = 1) -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        x = torch.randn(10, 4, generator=gen, dtype=torch.float64)
        noise = torch.randn((2, *x.shape), generator=gen, dtype=torch.float64)
        out.append((x + 0.3 * noise[0], x + 0.3 * noise[1]))
    return out


@functools.cache
def _problem(name: str) -> tuple[AuditObjective, Tensor, Tensor, Tensor]:
    """A tiny objective, its parameters, gradient and dense Hessian (via hvp)."""
    landmarks = torch.randn(
        8, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    backbone = KernelBackbone(RBF(2.0), landmarks, out_dim=3)
    objective = AuditObjective(backbone, LOSSES[name](), _batches(), progress=False)
    theta = objective.initial_parameters()
    _, gradient = objective.gradient(theta)
    eye = torch.eye(objective.num_parameters, dtype=torch.float64)
    columns = [objective.hvp(theta, e) for e in eye]
    hessian = torch.stack(columns, dim=1)
    return objective, theta, gradient, 0.5 * (hessian + hessian.T)


def _hvp(objective: AuditObjective, theta: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda v: objective.hvp(theta, v)


def _relative(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _orthogonal(seed: int, n: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q


class TestLanczos:
    @pytest.mark.parametrize("name", ["ntxent", "vicreg"])
    def test_solve_shifted__matches_cg(self, name: str) -> None:
        objective, theta, gradient, hessian = _problem(name)
        lam = torch.linalg.eigvalsh(hessian)
        radius = float(lam.abs().max())
        base = 1.1 * max(0.0, -float(lam[0]))
        shifts = [base + radius * 10.0**e for e in (-3, -2, -1, 0, 1)]
        lanczos = Lanczos(_hvp(objective, theta), -gradient)
        solves = lanczos.run(shifts, tol=1e-12, max_iter=200, progress=False)
        assert bool(solves.converged.all())
        assert not bool(solves.negative_curvature.any())
        assert solves.solutions.shape == (5, objective.num_parameters)
        for i, shift in enumerate(shifts):
            cg = _conjugate_gradient(
                lambda v, s=shift: objective.hvp(theta, v) + s * v,
                -gradient,
                max_iter=500,
                tol=1e-12,
                progress=False,
            )
            assert cg.converged
            assert _relative(solves.solutions[i], cg.solution) < 1e-8
            assert float(solves.residuals[i]) <= 1e-12
        # One Hessian-vector product per step serves every shift.
        assert lanczos.hvp_count == lanczos.num_steps == int(solves.iterations.max())

    def test_solve_shifted__negative_curvature_as_cg(self) -> None:
        # VICReg's Hessian is indefinite: shifts below -lambda_min make CG stop on
        # p^T (H + sigma I) p <= 0; the shifted pivots must flag the same shifts at
        # the same iteration with the same iterate.
        objective, theta, gradient, hessian = _problem("vicreg")
        lam_min = float(torch.linalg.eigvalsh(hessian)[0])
        assert lam_min < 0
        shifts = [0.1, 0.5 * -lam_min, 0.9 * -lam_min, 2.0 * -lam_min]
        solves = Lanczos(_hvp(objective, theta), -gradient).run(
            shifts, tol=1e-12, max_iter=200, progress=False
        )
        assert bool(solves.negative_curvature[:3].all())
        assert not bool(solves.negative_curvature[3])
        for i, shift in enumerate(shifts):
            cg = _conjugate_gradient(
                lambda v, s=shift: objective.hvp(theta, v) + s * v,
                -gradient,
                max_iter=500,
                tol=1e-12,
                progress=False,
            )
            assert cg.negative_curvature == bool(solves.negative_curvature[i])
            assert cg.iterations == int(solves.iterations[i])
            assert cg.converged == bool(solves.converged[i])
            if cg.iterations == 0:
                assert float(solves.solutions[i].abs().max()) == 0.0
            else:
                assert _relative(solves.solutions[i], cg.solution) < 1e-8

    @pytest.mark.parametrize("name", ["ntxent", "vicreg"])
    def test_solve_shifted__residual_estimate_is_true_residual(self, name: str) -> None:
        objective, theta, gradient, hessian = _problem(name)
        lam = torch.linalg.eigvalsh(hessian)
        shifts = [1.1 * max(0.0, -float(lam[0])) + float(lam[-1]) * s for s in (1, 10)]
        lanczos = Lanczos(_hvp(objective, theta), -gradient)
        lanczos.extend(4)
        solves = lanczos.solve_shifted(shifts)
        eye = torch.eye(len(theta), dtype=torch.float64)
        for i, shift in enumerate(shifts):
            true = (hessian + shift * eye) @ solves.solutions[i] + gradient
            expected = float(true.norm() / gradient.norm())
            assert expected > 1e-10  # not converged yet: the estimate is tested
            assert float(solves.residuals[i]) == pytest.approx(expected, rel=1e-6)
        assert solves.iterations.tolist() == [4, 4]

    @pytest.mark.parametrize("name", ["ntxent", "vicreg"])
    def test_ritz_values__match_dense_eigenvalues(self, name: str) -> None:
        objective, theta, gradient, hessian = _problem(name)
        lam = torch.linalg.eigvalsh(hessian)
        n = objective.num_parameters
        # From a generic start the steps span the whole space, up to repeated
        # eigenvalues (VICReg's), each of which a Krylov space sees only once.
        start = torch.randn(
            n, generator=torch.Generator().manual_seed(3), dtype=torch.float64
        )
        full = Lanczos(_hvp(objective, theta), start)
        full.extend(n + 5)
        assert full.exhausted and full.num_steps <= n
        distinct = len(torch.unique(lam.round(decimals=6)))
        assert full.num_steps == distinct
        scale = float(lam.abs().max())
        ritz = full.ritz_values()
        assert float(ritz[0]) == pytest.approx(float(lam[0]), abs=1e-9 * scale)
        assert float(ritz[-1]) == pytest.approx(float(lam[-1]), abs=1e-9 * scale)
        gaps = (ritz[:, None] - lam[None, :]).abs().min(dim=1).values
        assert float(gaps.max()) <= 1e-9 * scale
        if name == "ntxent":
            assert full.num_steps == n
            torch.testing.assert_close(ritz, lam, rtol=0, atol=1e-9 * scale)
        basis = full.basis
        torch.testing.assert_close(
            basis @ basis.T,
            torch.eye(full.num_steps, dtype=torch.float64),
            rtol=0,
            atol=1e-12,
        )
        # From the gradient, Ritz values interlace: they lie inside the spectrum.
        krylov = Lanczos(_hvp(objective, theta), -gradient)
        krylov.extend(n)
        ritz = krylov.ritz_values()
        assert float(ritz[0]) >= float(lam[0]) - 1e-9 * scale
        assert float(ritz[-1]) <= float(lam[-1]) + 1e-9 * scale

    def test_run__stops_at_tol_or_max_iter(self) -> None:
        objective, theta, gradient, hessian = _problem("ntxent")
        lam = torch.linalg.eigvalsh(hessian)
        base = 1.1 * max(0.0, -float(lam[0]))
        shifts = [base + 0.01 * float(lam[-1]), base + float(lam[-1])]
        lanczos = Lanczos(_hvp(objective, theta), -gradient)
        short = lanczos.run(shifts, tol=1e-12, max_iter=3, progress=False)
        assert lanczos.num_steps == 3
        assert short.iterations.tolist() == [3, 3]
        assert not bool(short.converged.any() or short.negative_curvature.any())
        # Continuing the same space; a looser tol freezes shifts earlier.
        loose = lanczos.run(shifts, tol=1e-3, max_iter=200, progress=False)
        tight = lanczos.run(shifts, tol=1e-10, max_iter=200, progress=False)
        assert bool(loose.converged.all()) and bool(tight.converged.all())
        assert bool((loose.residuals <= 1e-3).all())
        assert bool((tight.residuals <= 1e-10).all())
        assert bool((loose.iterations <= tight.iterations).all())
        assert lanczos.num_steps == int(tight.iterations.max())
        assert lanczos.num_steps < objective.num_parameters
        capped = lanczos.solve_shifted(shifts, max_iter=2)
        assert capped.iterations.tolist() == [2, 2]

    def test_run__zero_start_gives_zero_solutions(self) -> None:
        lanczos = Lanczos(lambda v: 2.0 * v, torch.zeros(5, dtype=torch.float64))
        solves = lanczos.run([1.0, 2.0], tol=1e-8, max_iter=10, progress=False)
        assert lanczos.num_steps == 0 and lanczos.exhausted
        assert float(solves.solutions.abs().max()) == 0.0
        assert bool(solves.converged.all())
        assert solves.iterations.tolist() == [0, 0]
        assert lanczos.ritz_values().numel() == 0

    def test_run__rejects_bad_input(self) -> None:
        lanczos = Lanczos(lambda v: v, torch.ones(3, dtype=torch.float64))
        with pytest.raises(ValueError, match="non-empty"):
            lanczos.run([], tol=1e-6, max_iter=10)
        with pytest.raises(ValueError, match="finite"):
            lanczos.run([1.0, float("nan")], tol=1e-6, max_iter=10)
        with pytest.raises(ValueError, match="finite"):
            lanczos.solve_shifted([float("inf")])
        with pytest.raises(ValueError, match="max_iter"):
            lanczos.run([1.0], tol=1e-6, max_iter=0)
        with pytest.raises(ValueError, match="tol"):
            lanczos.run([1.0], tol=1.0, max_iter=10)
        with pytest.raises(ValueError, match="num_steps"):
            lanczos.extend(0)
        with pytest.raises(ValueError, match="shape"):
            Lanczos(lambda v: v, torch.ones(2, 2))
        with pytest.raises(ValueError, match="NaN"):
            Lanczos(lambda v: v, torch.tensor([1.0, float("nan")]))
        with pytest.raises(ValueError, match="same shape"):
            Lanczos(lambda v: v[:2], torch.ones(3)).extend(1)

    @settings(deadline=None, max_examples=50)
    @given(
        seed=st.integers(0, 2**16),
        n=st.integers(1, 8),
        shifts=st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=4),
    )
    def test_solve_shifted__spd_matches_dense_solve(
        self, seed: int, n: int, shifts: list[float]
    ) -> None:
        q = _orthogonal(seed, n)
        gen = torch.Generator().manual_seed(seed + 1)
        lam = 0.1 + 10 * torch.rand(n, generator=gen, dtype=torch.float64)
        matrix = q @ torch.diag(lam) @ q.T
        rhs = torch.randn(n, generator=gen, dtype=torch.float64)
        solves = Lanczos(lambda v: matrix @ v, rhs).run(
            shifts, tol=1e-13, max_iter=n, progress=False
        )
        eye = torch.eye(n, dtype=torch.float64)
        assert not bool(solves.negative_curvature.any())
        for i, shift in enumerate(shifts):
            expected = torch.linalg.solve(matrix + shift * eye, rhs)
            assert _relative(solves.solutions[i], expected) < 1e-8

    @settings(deadline=None, max_examples=50)
    @given(seed=st.integers(0, 2**16), n=st.integers(2, 8))
    def test_solve_shifted__flags_exactly_the_indefinite_shifts(
        self, seed: int, n: int
    ) -> None:
        # A full space (k = n) from a generic start sees every eigenvector, so
        # T_n + sigma I is positive definite exactly when H + sigma I is.
        q = _orthogonal(seed, n)
        lam = torch.linspace(-2.0, 3.0, n, dtype=torch.float64)
        matrix = q @ torch.diag(lam) @ q.T
        rhs = torch.randn(
            n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
        lanczos = Lanczos(lambda v: matrix @ v, rhs)
        lanczos.extend(n)
        solves = lanczos.solve_shifted([1.5, 2.5, 10.0])
        assert solves.negative_curvature.tolist() == [True, False, False]


class TestExamples:
    def test_docstrings__examples_run(self) -> None:
        module = importlib.import_module("lightly_krepes.audit.krylov")
        result = doctest.testmod(module, extraglobs={"torch": torch}, verbose=False)
        assert result.attempted > 0
        assert result.failed == 0
