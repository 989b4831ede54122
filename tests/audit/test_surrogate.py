from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.distance import pdist
from scipy.stats import kendalltau
from sklearn.linear_model import Ridge
from torch import Tensor, nn

from lightly_krepes.audit import (
    RidgeMoments,
    SurrogateFit,
    build_surrogate,
    fit_ridge,
    solve_ridge,
)
from lightly_krepes.audit.surrogate import PENALTY_GRID
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF, InducedRBF, Normalized, median_lengthscale


def _mlp(out: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, out)).double().eval()
    )


def _data(n: int = 80) -> Tensor:
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(3)).double()


def _regression(
    n: int = 60, r: int = 6, h: int = 3, seed: int = 0
) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(n, r, generator=gen, dtype=torch.float64)
    noise = torch.randn(n, h, generator=gen, dtype=torch.float64)
    y = f @ torch.randn(r, h, generator=gen, dtype=torch.float64) + 0.5 * noise + 2.0
    return f, y


class TestSolveRidge:
    @pytest.mark.parametrize("bias", [True, False])
    def test_solve_ridge__equals_sklearn_ridge(self, bias: bool) -> None:
        f, y = _regression()
        fit = solve_ridge(RidgeMoments.from_data(f, y, bias=bias), penalty=0.3)
        reference = Ridge(alpha=len(f) * 0.3, fit_intercept=bias).fit(
            f.numpy(), y.numpy()
        )
        np.testing.assert_allclose(fit.weight.numpy(), reference.coef_, atol=1e-10)
        if bias:
            assert fit.bias is not None
            np.testing.assert_allclose(
                fit.bias.numpy(), reference.intercept_, atol=1e-10
            )
        else:
            assert fit.bias is None
        assert not fit.selected and fit.penalty == 0.3

    def test_solve_ridge__gcv_matches_hat_matrix(self) -> None:
        f, y = _regression()
        n = len(f)
        fit = solve_ridge(RidgeMoments.from_data(f, y), penalty=0.05)
        fc, yc = f - f.mean(0), y - y.mean(0)
        hat = fc @ torch.linalg.solve(
            fc.T @ fc + n * 0.05 * torch.eye(f.shape[1], dtype=torch.float64), fc.T
        )
        residual = yc - hat @ yc
        df = float(torch.trace(hat)) + 1.0  # the intercept
        rss = float((residual**2).sum())
        assert fit.degrees_of_freedom == pytest.approx(df, rel=1e-10)
        assert fit.gcv == pytest.approx((rss / n) / (1 - df / n) ** 2, rel=1e-9)
        assert fit.r2 == pytest.approx(1 - rss / float((yc**2).sum()), rel=1e-10)

    def test_solve_ridge__gcv_chooses_grid_minimum(self) -> None:
        f, y = _regression(n=40, r=12)
        moments = RidgeMoments.from_data(f, y)
        chosen = solve_ridge(moments)
        assert chosen.selected
        top = float(torch.linalg.eigvalsh(moments.gram)[-1])
        scores = [
            solve_ridge(moments, penalty=g * top / len(f)).gcv for g in PENALTY_GRID
        ]
        assert chosen.gcv == pytest.approx(min(scores), rel=1e-12)
        # Pure noise targets: GCV prefers heavy shrinkage.
        noise = torch.randn(40, 3, generator=torch.Generator().manual_seed(5))
        assert solve_ridge(RidgeMoments.from_data(f, noise)).penalty > chosen.penalty

    @given(
        penalty=st.floats(1e-6, 1e2),
        seed=st.integers(0, 1000),
        bias=st.booleans(),
    )
    def test_solve_ridge__solves_normal_equations(
        self, penalty: float, seed: int, bias: bool
    ) -> None:
        f, y = _regression(n=30, r=8, h=2, seed=seed)
        fit = solve_ridge(RidgeMoments.from_data(f, y, bias=bias), penalty=penalty)
        pred = f @ fit.weight.T + (0.0 if fit.bias is None else fit.bias)
        residual = y - pred
        # Gradient of (1/n)|Y - F A^T - gamma|^2 + lambda |A|^2 vanishes.
        grad_a = -2 * residual.T @ f / len(f) + 2 * penalty * fit.weight
        scale = float(y.abs().max() * f.abs().max())
        assert float(grad_a.abs().max()) <= 1e-9 * scale
        if bias:
            assert float(residual.mean(0).abs().max()) <= 1e-9 * scale

    def test_solve_ridge__rejects_bad_input(self) -> None:
        f, y = _regression()
        moments = RidgeMoments.from_data(f, y)
        with pytest.raises(ValueError, match="penalty"):
            solve_ridge(moments, penalty=0.0)
        with pytest.raises(ValueError, match="penalty"):
            solve_ridge(moments, penalty=-1.0)
        with pytest.raises(ValueError, match="grid"):
            solve_ridge(moments, grid=())
        constant = RidgeMoments.from_data(torch.ones(10, 3), torch.randn(10, 2))
        with pytest.raises(ValueError, match="constant"):
            solve_ridge(constant)
        with pytest.raises(ValueError, match="same n"):
            RidgeMoments.from_data(f, y[:5])


class TestFitRidge:
    def test_fit_ridge__reproduces_a_kernel_machine(self) -> None:
        x = _data(120)
        backbone = KernelBackbone(RBF(3.0), x[:24], out_dim=3)
        teacher = KernelBackbone(RBF(3.0), x[:24], out_dim=3)
        with torch.no_grad():
            teacher.linear.weight.normal_(generator=torch.Generator().manual_seed(1))
            assert teacher.linear.bias is not None
            teacher.linear.bias.fill_(0.5)
            targets = teacher(x)
        fit = fit_ridge(backbone, x, targets)
        assert fit.r2 > 0.9999
        torch.testing.assert_close(backbone(x), targets, atol=1e-3, rtol=0)

    def test_fit_ridge__rejects_bad_targets(self) -> None:
        x = _data(20)
        backbone = KernelBackbone(RBF(3.0), x[:8], out_dim=2)
        with pytest.raises(ValueError, match="targets"):
            fit_ridge(backbone, x, torch.randn(20, 3, dtype=torch.float64))
        with pytest.raises(ValueError, match="targets"):
            fit_ridge(backbone, x, torch.randn(19, 2, dtype=torch.float64))


def _distance_tau(a: Tensor, b: Tensor) -> float:
    tau = kendalltau(pdist(a.detach().numpy()), pdist(b.detach().numpy()))
    return float(tau.statistic)


class TestBuildSurrogate:
    def test_build_surrogate__ridge_matches_encoder_better_than_pc(self) -> None:
        encoder, x = _mlp(), _data()
        ridge = build_surrogate(encoder, x, num_landmarks=24, progress=False)
        pc = build_surrogate(encoder, x, num_landmarks=24, fit="pc", progress=False)
        with torch.no_grad():
            target = encoder(x)
            f_ridge, f_pc = ridge(x), pc(x)
        r2 = 1 - float(
            ((f_ridge - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum()
        )
        assert r2 > 0.95
        record = SurrogateFit.of(ridge)
        assert record is not None and record.ridge is not None
        assert record.ridge.r2 == pytest.approx(r2, abs=1e-8)
        tau_ridge = _distance_tau(f_ridge, target)
        tau_pc = _distance_tau(f_pc, target)
        assert tau_ridge > 0.8, (tau_ridge, tau_pc)
        assert tau_ridge > tau_pc + 0.1, (tau_ridge, tau_pc)

    def test_build_surrogate__given_landmarks_skip_selection(self) -> None:
        encoder, x = _mlp(), _data()
        selected = build_surrogate(encoder, x, num_landmarks=16, progress=False)
        indices = selected.landmark_indices
        assert indices is not None and indices.shape == (16,)
        torch.testing.assert_close(selected.landmarks, x[indices])
        given = build_surrogate(
            encoder, x, landmarks=selected.landmarks, progress=False
        )
        assert given.landmark_indices is None
        assert torch.equal(given.landmarks, selected.landmarks)
        torch.testing.assert_close(given(x), selected(x))
        record = SurrogateFit.of(given)
        assert record is not None and not record.selected
        pc = build_surrogate(
            encoder, x, landmarks=selected.landmarks[:6], fit="pc", progress=False
        )
        assert pc.landmarks.shape == (6, 5) and pc.out_dim == 4

    def test_build_surrogate__record_is_not_state(self) -> None:
        surrogate = build_surrogate(_mlp(), _data(), num_landmarks=16, progress=False)
        record = SurrogateFit.of(surrogate)
        assert record is not None
        assert record.method == "ridge" and record.encoder_dim == 4
        assert record.num_fit_samples == 80 and record.selected
        assert not any("surrogate_fit" in key for key in surrogate.state_dict())
        hand_made = KernelBackbone(RBF(1.0), _data(8), out_dim=2)
        assert SurrogateFit.of(hand_made) is None

    def test_build_surrogate__default_landmarks_cover_ridge_rank(self) -> None:
        # h = 40 outputs need rank >= 40: the default m is 2 h, not sqrt(n).
        surrogate = build_surrogate(_mlp(out=40), _data(100), progress=False)
        assert surrogate.nystrom.num_landmarks == 80
        assert surrogate.out_dim == 40

    def test_build_surrogate__bandwidth_builds_a_local_surrogate(self) -> None:
        encoder, x = _mlp(), _data()
        local = build_surrogate(
            encoder, x, num_landmarks=24, bandwidth=0.5, progress=False
        )
        kernel = local.nystrom.kernel
        assert isinstance(kernel, InducedRBF)
        assert isinstance(kernel.kernel, Normalized)
        expected = median_lengthscale(kernel.kernel, x, scale=0.5)
        record = SurrogateFit.of(local)
        assert record is not None and record.lengthscale == pytest.approx(expected)
        assert kernel.lengthscale == pytest.approx(expected)
        # A monotone function of the eNTK it wraps, and the ridge fit still
        # follows the encoder.
        plain = build_surrogate(encoder, x, num_landmarks=24, progress=False)
        assert record.ridge is not None and record.ridge.r2 > 0.9
        with torch.no_grad():
            cosine = plain.nystrom.kernel(x[:20], x[20:40])
            torch.testing.assert_close(
                kernel(x[:20], x[20:40]), torch.exp((cosine - 1) / expected**2)
            )
        # A refit on its landmarks repeats the construction, lengthscale included.
        again = build_surrogate(
            encoder, x, landmarks=local.landmarks, bandwidth=0.5, progress=False
        )
        again_record = SurrogateFit.of(again)
        assert again_record is not None
        assert again_record.lengthscale == record.lengthscale
        torch.testing.assert_close(again(x), local(x))

    def test_build_surrogate__rejects_bad_input(self) -> None:
        encoder, x = _mlp(), _data()
        for bad in (0.0, -1.0, float("nan")):
            with pytest.raises(ValueError, match="bandwidth"):
                build_surrogate(encoder, x, bandwidth=bad, progress=False)
        with pytest.raises(ValueError, match="fit"):
            build_surrogate(encoder, x, fit="kpca", progress=False)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="penalty"):
            build_surrogate(encoder, x, fit="pc", penalty=1.0, progress=False)
        with pytest.raises(ValueError, match="penalty"):
            build_surrogate(encoder, x, penalty=0.0, progress=False)
        with pytest.raises(ValueError, match="out_dim must be 4"):
            build_surrogate(encoder, x, out_dim=2, progress=False)
        with pytest.raises(ValueError, match="at least one landmark"):
            build_surrogate(encoder, x, landmarks=x[:0], progress=False)
        with pytest.raises(ValueError, match="num_landmarks"):
            build_surrogate(encoder, x, num_landmarks=0, progress=False)
        with pytest.raises(ValueError, match="Nyström rank"):
            build_surrogate(_mlp(out=12), x, num_landmarks=6, progress=False)
