from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from lightly.loss import NTXentLoss, VICRegLoss
from torch import Tensor
from torch.func import functional_call, hessian

from lightly_krepes.audit import (
    AuditObjective,
    estimate_curvature,
    estimate_min_eigenvalue,
    select_damping,
    spectral_entropy,
)
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF


def _backbone() -> KernelBackbone:
    landmarks = torch.randn(
        8, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    return KernelBackbone(RBF(2.0), landmarks, out_dim=3)


def _batches(seed: int = 1) -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        x = torch.randn(10, 4, generator=gen, dtype=torch.float64)
        noise = torch.randn((2, *x.shape), generator=gen, dtype=torch.float64)
        out.append((x + 0.3 * noise[0], x + 0.3 * noise[1]))
    return out


@functools.cache
def _objective() -> AuditObjective:
    return AuditObjective(_backbone(), VICRegLoss(), _batches(), progress=False)


def _psd(seed: int, n: int, rank: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    factor = torch.randn(n, rank, generator=gen, dtype=torch.float64)
    return factor @ factor.T


@functools.cache
def _dense_hessian() -> Tensor:
    objective = _objective()
    backbone = objective.backbone
    out_dim, r = backbone.linear.weight.shape
    batches = _batches()

    def dense(theta: Tensor) -> Tensor:
        params = {
            "linear.weight": theta[: out_dim * r].reshape(out_dim, r),
            "linear.bias": theta[out_dim * r :],
        }
        losses = [
            VICRegLoss()(*(functional_call(backbone, params, (v,)) for v in views))
            for views in batches
        ]
        return torch.stack(losses).mean()

    h: Tensor = hessian(dense)(objective.initial_parameters())
    return h


class TestSpectralEntropy:
    @given(n=st.integers(1, 12), scale=st.floats(1e-6, 1e6))
    def test_spectral_entropy__identity_is_log_n(self, n: int, scale: float) -> None:
        result = spectral_entropy(scale * torch.eye(n, dtype=torch.float64))
        assert result.entropy == pytest.approx(math.log(n), abs=1e-12)
        assert result.normalized == pytest.approx(1.0)

    @given(seed=st.integers(0, 2**16), n=st.integers(2, 10))
    def test_spectral_entropy__rank_one_is_zero(self, seed: int, n: int) -> None:
        result = spectral_entropy(_psd(seed, n, 1))
        assert result.entropy == pytest.approx(0.0, abs=1e-10)
        assert result.normalized == pytest.approx(0.0, abs=1e-10)

    @given(
        seed=st.integers(0, 2**16),
        rank=st.integers(1, 6),
        scale=st.floats(1e-4, 1e4),
    )
    def test_spectral_entropy__scale_invariant(
        self, seed: int, rank: int, scale: float
    ) -> None:
        matrix = _psd(seed, 6, rank)
        a, b = spectral_entropy(matrix), spectral_entropy(scale * matrix)
        assert a.entropy == pytest.approx(b.entropy, abs=1e-9)
        assert 0.0 <= a.normalized <= 1.0

    def test_spectral_entropy__closed_form_and_max_rank(self) -> None:
        diag = torch.diag(torch.tensor([1.0, 1.0, 2.0, 0.0], dtype=torch.float64))
        p = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
        expected = float(-(p * p.log()).sum())
        result = spectral_entropy(diag)
        assert result.entropy == pytest.approx(expected)
        assert result.normalized == pytest.approx(expected / math.log(4))
        capped = spectral_entropy(diag, max_rank=3)
        assert capped.normalized == pytest.approx(expected / math.log(3))
        # A_0^T A_0 for A_0 = [I 0]: full entropy relative to the rank h of A.
        weight = torch.eye(3, 7, dtype=torch.float64)
        full = spectral_entropy(weight.T @ weight, max_rank=3)
        assert full.normalized == pytest.approx(1.0, abs=1e-12)
        assert spectral_entropy(weight.T @ weight).normalized < 1.0

    def test_spectral_entropy__rejects_bad_input(self) -> None:
        with pytest.raises(ValueError, match="square"):
            spectral_entropy(torch.ones(2, 3))
        with pytest.raises(ValueError, match="symmetric"):
            spectral_entropy(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
        with pytest.raises(ValueError, match="positive semi-definite"):
            spectral_entropy(torch.diag(torch.tensor([1.0, -1.0])))
        with pytest.raises(ValueError, match="zero"):
            spectral_entropy(torch.zeros(3, 3))
        with pytest.raises(ValueError, match="NaN"):
            spectral_entropy(torch.full((2, 2), torch.nan))
        with pytest.raises(ValueError, match="max_rank"):
            spectral_entropy(torch.eye(3), max_rank=4)
        with pytest.raises(TypeError, match="dtype"):
            spectral_entropy(torch.eye(3, dtype=torch.int64))


class TestSelectDamping:
    # On this problem dampings <= 1 meet negative curvature, and the step at 10
    # keeps a normalised entropy of about 0.995: the threshold decides between them.
    @pytest.mark.parametrize(
        ("threshold", "expected"), [(0.9, 100.0), (0.9999, 1000.0)]
    )
    def test_select_damping__smallest_eligible_damping(
        self, threshold: float, expected: float
    ) -> None:
        objective = _objective()
        grid = [1.0, 10.0, 100.0, 1000.0, 10000.0]
        selection = select_damping(
            objective, dampings=grid[::-1], threshold=threshold, progress=False
        )
        assert [c.damping for c in selection.candidates] == grid
        weight0, _ = objective.unflatten(objective.initial_parameters())
        eligible = []
        for c in selection.candidates:
            weight = weight0 + c.step.delta_weight
            entropy = spectral_entropy(weight.T @ weight, max_rank=3)
            assert c.entropy == pytest.approx(entropy.entropy)
            assert c.normalized_entropy == pytest.approx(entropy.normalized)
            assert c.loss_after == c.step.loss_after
            ok = (
                entropy.normalized >= threshold
                and not c.step.negative_curvature
                and math.isfinite(c.step.loss_after)
                and c.step.loss_after <= c.step.loss_before
            )
            assert c.eligible == ok
            if ok:
                eligible.append(c.damping)
        assert eligible, "the test problem must have an eligible damping"
        assert selection.damping == min(eligible) == expected
        assert selection.step is selection.candidates[grid.index(min(eligible))].step
        assert not selection.fallback
        assert selection.curvature_scale is None
        # The largest damping barely moves A_0, whose entropy is maximal.
        assert selection.candidates[-1].normalized_entropy > 0.99

    def test_select_damping__default_grid_is_relative_to_curvature(self) -> None:
        objective = _objective()
        selection = select_damping(
            objective, num_candidates=4, solver="cg", progress=False
        )
        scale = estimate_curvature(objective)
        lam_min = estimate_min_eigenvalue(objective, scale=scale, num_iter=30)
        assert selection.solver == "cg"
        assert selection.curvature_scale == pytest.approx(scale)
        assert selection.min_eigenvalue == pytest.approx(lam_min)
        shift = 1.1 * max(0.0, -lam_min)
        expected = [shift + scale * 10**e for e in torch.linspace(-4, 1, 4).tolist()]
        assert [c.damping for c in selection.candidates] == pytest.approx(expected)
        again = select_damping(objective, num_candidates=4, solver="cg", progress=False)
        assert again.damping == selection.damping
        # 10 + 30 + 1 power-iteration products, then one per CG iteration (and
        # one more for a candidate stopped by negative curvature).
        solves = sum(
            c.step.cg_iterations + c.step.negative_curvature
            for c in selection.candidates
        )
        assert selection.hvp_count == 41 + solves

    def test_select_damping__default_grid_from_ritz_values(self) -> None:
        objective = _objective()
        lam = torch.linalg.eigvalsh(_dense_hessian())
        selection = select_damping(objective, num_candidates=4, progress=False)
        assert selection.solver == "lanczos"
        assert selection.curvature_scale is not None
        assert selection.min_eigenvalue is not None
        # Ritz values lie inside the spectrum; here the Krylov space of g holds
        # both extreme eigenvectors, so they are found to round-off.
        radius = float(lam.abs().max())
        assert selection.min_eigenvalue >= float(lam[0]) - 1e-9 * radius
        assert selection.min_eigenvalue == pytest.approx(float(lam[0]), rel=1e-8)
        assert selection.curvature_scale == pytest.approx(radius, rel=1e-8)
        shift = 1.1 * max(0.0, -selection.min_eigenvalue)
        expected = [
            shift + selection.curvature_scale * 10**e
            for e in torch.linspace(-4, 1, 4).tolist()
        ]
        assert [c.damping for c in selection.candidates] == pytest.approx(expected)
        again = select_damping(objective, num_candidates=4, progress=False)
        assert again.damping == selection.damping
        torch.testing.assert_close(
            again.step.delta_weight, selection.step.delta_weight, rtol=0, atol=0
        )

    @pytest.mark.parametrize("loss", ["vicreg", "ntxent"])
    def test_select_damping__lanczos_matches_cg(self, loss: str) -> None:
        objective = (
            _objective()
            if loss == "vicreg"
            else AuditObjective(
                _backbone(), NTXentLoss(temperature=0.5), _batches(), progress=False
            )
        )
        cg = select_damping(objective, num_candidates=6, solver="cg", progress=False)
        # The same grid for both; it includes dampings below -lambda_min, which
        # meet negative curvature in both solvers.
        grid = [c.damping for c in cg.candidates]
        if cg.min_eigenvalue is not None and cg.min_eigenvalue < 0:
            grid += [0.3 * -cg.min_eigenvalue, 0.9 * -cg.min_eigenvalue]
        runs = {
            solver: select_damping(
                objective,
                dampings=grid,
                tol=1e-12,
                max_iter=500,
                progress=False,
                solver=solver,
            )
            for solver in ("cg", "lanczos")
        }
        exact_cg, krylov = runs["cg"], runs["lanczos"]
        assert krylov.damping == exact_cg.damping
        assert krylov.fallback == exact_cg.fallback
        assert not krylov.fallback
        for a, b in zip(krylov.candidates, exact_cg.candidates, strict=True):
            assert a.damping == b.damping
            assert a.eligible == b.eligible
            assert a.step.negative_curvature == b.step.negative_curvature
            assert a.step.cg_iterations == b.step.cg_iterations
            assert a.step.converged == b.step.converged
            if b.step.cg_iterations > 0:
                rel = (a.step.delta_weight - b.step.delta_weight).norm() / (
                    b.step.delta_weight.norm()
                )
                assert float(rel) < 1e-8
                assert a.loss_after == pytest.approx(b.loss_after, rel=1e-8)
            else:
                assert float(a.step.delta_weight.abs().max()) == 0.0
        torch.testing.assert_close(
            krylov.step.delta_weight, exact_cg.step.delta_weight, rtol=1e-8, atol=0
        )
        assert loss != "vicreg" or any(
            c.step.negative_curvature for c in krylov.candidates
        )
        # One Krylov space: as many products as the slowest candidate's iterations.
        slowest = max(c.step.cg_iterations for c in krylov.candidates)
        assert krylov.hvp_count == slowest
        assert exact_cg.hvp_count == sum(
            c.step.cg_iterations + c.step.negative_curvature
            for c in exact_cg.candidates
        )
        assert krylov.hvp_count * 3 < exact_cg.hvp_count

    def test_select_damping__lanczos_uses_fewer_hvps(self) -> None:
        objective = _objective()
        cg = select_damping(objective, solver="cg", progress=False)
        krylov = select_damping(objective, progress=False)
        assert krylov.hvp_count is not None and cg.hvp_count is not None
        assert krylov.hvp_count <= 200  # max_iter in all, not per candidate
        assert krylov.hvp_count * 2 < cg.hvp_count
        # The grids differ only by the two estimates of the spectrum.
        assert krylov.damping == pytest.approx(cg.damping, rel=1e-3)

    def test_select_damping__shifted_grid_avoids_negative_curvature(self) -> None:
        # VICReg is not convex in the representation: the Hessian is indefinite,
        # and an unshifted grid's small dampings stop CG on negative curvature.
        objective = _objective()
        selection = select_damping(objective, num_candidates=5, progress=False)
        assert selection.min_eigenvalue is not None and selection.min_eigenvalue < 0
        assert not any(c.step.negative_curvature for c in selection.candidates)
        assert not selection.fallback
        step = selection.step
        assert step.loss_after < step.loss_before
        assert float(step.delta_weight.norm()) > 0

    def test_estimate_min_eigenvalue__matches_dense_hessian(self) -> None:
        h = _dense_hessian()
        lam = torch.linalg.eigvalsh(h)
        estimate = estimate_min_eigenvalue(_objective(), num_iter=150)
        assert estimate == pytest.approx(float(lam[0]), rel=1e-3)
        assert estimate_min_eigenvalue(_objective(), num_iter=3) >= float(lam[0])

    def test_select_damping__falls_back_to_largest(self) -> None:
        with pytest.warns(UserWarning, match="largest"):
            selection = select_damping(
                _objective(), dampings=[0.5, 5.0], threshold=1.0, progress=False
            )
        assert selection.fallback
        assert selection.damping == 5.0
        assert not any(c.eligible for c in selection.candidates)

    def test_select_damping__rejects_bad_input(self) -> None:
        objective = _objective()
        with pytest.raises(ValueError, match="threshold"):
            select_damping(objective, threshold=1.5)
        with pytest.raises(ValueError, match="empty"):
            select_damping(objective, dampings=[])
        with pytest.raises(ValueError, match="damping"):
            select_damping(objective, dampings=[1.0, -1.0])
        with pytest.raises(ValueError, match="relative_range"):
            select_damping(objective, relative_range=(1.0, 0.1))
        with pytest.raises(ValueError, match="num_candidates"):
            select_damping(objective, num_candidates=0)
        with pytest.raises(ValueError, match="solver"):
            select_damping(objective, solver="qr")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="num_iter"):
            select_damping(objective, power_iterations=0)
        with pytest.raises(ValueError, match="max_iter"):
            select_damping(objective, max_iter=0)

    def test_estimate_curvature__matches_dense_spectral_radius(self) -> None:
        objective = _objective()
        h = _dense_hessian()
        radius = float(torch.linalg.eigvalsh(h).abs().max())
        assert estimate_curvature(objective, num_iter=200) == pytest.approx(
            radius, rel=1e-3
        )
