from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lightly.loss import BarlowTwinsLoss
from torch import Tensor

from lightly_krepes.backbone import (
    CachedViews,
    KernelBackbone,
    barlow_twins_objective,
    fit_closed_form,
    spectral_contrastive_objective,
    view_moments,
)
from lightly_krepes.kernels import RBF
from lightly_krepes.loss import SpectralContrastiveLoss


def _views(n: int = 300, p: int = 2, seed: int = 0) -> tuple[Tensor, list[Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    views = [
        x + 0.3 * torch.randn(n, 4, generator=gen, dtype=x.dtype) for _ in range(p)
    ]
    return x, views


def _backbone(x: Tensor, out_dim: int = 3, bias: bool = True) -> KernelBackbone:
    return KernelBackbone(RBF(1.5), x[:24], out_dim=out_dim, bias=bias)


def _descend(objective, weight: Tensor, bias: Tensor | None, steps: int) -> list[float]:  # type: ignore[no-untyped-def]
    params = [weight] if bias is None else [weight, bias]
    optimizer = torch.optim.Adam(params, lr=0.02)
    values = []
    for _ in range(steps):
        value = objective(weight, bias)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        values.append(float(value))
    return values


class TestFitClosedForm:
    @pytest.mark.parametrize("bias", [True, False])
    def test_spectral_contrastive__gradient_descent_reaches_and_never_beats_it(
        self, bias: bool
    ) -> None:
        x, views = _views()
        backbone = fit_closed_form(_backbone(x, bias=bias), views)
        moments = view_moments(backbone, views)
        with torch.no_grad():
            optimum = float(
                spectral_contrastive_objective(
                    moments, backbone.linear.weight, backbone.linear.bias
                )
            )
        gen = torch.Generator().manual_seed(1)
        weight = 0.1 * torch.randn(3, backbone.linear.in_features, generator=gen)
        weight = weight.double().requires_grad_()
        b = torch.zeros(3, dtype=torch.float64, requires_grad=True) if bias else None
        values = _descend(
            lambda w, c: spectral_contrastive_objective(moments, w, c), weight, b, 3000
        )
        assert min(values) >= optimum - 1e-6 * abs(optimum)
        assert values[-1] == pytest.approx(optimum, rel=1e-3)

    def test_spectral_contrastive__matches_lightly_style_batch_loss(self) -> None:
        x, views = _views(n=2000)
        backbone = fit_closed_form(_backbone(x), views)
        moments = view_moments(backbone, views)
        population = float(
            spectral_contrastive_objective(
                moments, backbone.linear.weight, backbone.linear.bias
            )
        )
        with torch.no_grad():
            batch = SpectralContrastiveLoss()(backbone(views[0]), backbone(views[1]))
        assert float(batch) == pytest.approx(population, rel=0.05)

    def test_barlow_twins__gradient_descent_reaches_and_never_beats_it(self) -> None:
        x, views = _views(p=3)
        backbone = fit_closed_form(_backbone(x), views, "barlow_twins")
        moments = view_moments(backbone, views)
        optimum = float(barlow_twins_objective(moments, backbone.linear.weight))
        gen = torch.Generator().manual_seed(2)
        weight = torch.randn(3, backbone.linear.in_features, generator=gen).double()
        weight.requires_grad_()
        values = _descend(
            lambda w, c: barlow_twins_objective(moments, w), weight, None, 2000
        )
        assert min(values) >= optimum - 1e-8
        assert values[-1] == pytest.approx(optimum, abs=1e-3)

    def test_barlow_twins__outputs_whitened_and_lightly_loss_is_low(self) -> None:
        x, views = _views(n=1000)
        backbone = fit_closed_form(_backbone(x), views, "barlow_twins")
        with torch.no_grad():
            z = torch.cat([backbone(v) for v in views])
            fitted = BarlowTwinsLoss()(backbone(views[0]), backbone(views[1]))
            start = BarlowTwinsLoss()(_backbone(x)(views[0]), _backbone(x)(views[1]))
        torch.testing.assert_close(
            z.mean(0), torch.zeros(3).double(), atol=1e-8, rtol=0
        )
        torch.testing.assert_close(
            torch.cov(z.T, correction=0), torch.eye(3).double(), atol=1e-8, rtol=0
        )
        assert float(fitted) < float(start)

    @pytest.mark.parametrize("ridge", [1e-3, 0.1])
    def test_barlow_twins__ridge_whitens_the_ridged_covariance(
        self, ridge: float
    ) -> None:
        # Canonical ridge: A (S + ridge lam_max I) A^T = I, A S_+ A^T diagonal.
        x, views = _views(p=3)
        backbone = fit_closed_form(_backbone(x), views, "barlow_twins", ridge=ridge)
        s, s_plus = view_moments(backbone, views).centred()
        ridged = s + ridge * torch.linalg.eigvalsh(s).max() * torch.eye(len(s))
        a = backbone.linear.weight.detach().double()
        torch.testing.assert_close(a @ ridged @ a.T, torch.eye(3).double())
        cross = a @ s_plus @ a.T
        torch.testing.assert_close(cross, torch.diag(cross.diagonal()))
        exact = fit_closed_form(_backbone(x), views, "barlow_twins")
        assert not torch.allclose(exact.linear.weight, backbone.linear.weight)

    def test_spectral_contrastive__ridge_squares_the_ridged_moment(self) -> None:
        # A = diag(mu^1/2) V^T (C + ridge lam_max I)^{-1/2}:
        # A (C + ridge lam_max I) A^T = diag(mu) and A C_+ A^T = diag(mu)^2.
        x, views = _views(p=3)
        backbone = fit_closed_form(_backbone(x), views, ridge=0.01)
        c, c_plus = view_moments(backbone, views).augmented(True)
        ridged = c + 0.01 * torch.linalg.eigvalsh(c).max() * torch.eye(len(c))
        a = torch.cat(
            [backbone.linear.weight, backbone.linear.bias[:, None]], dim=1
        ).detach()
        mu = a @ ridged @ a.T
        torch.testing.assert_close(mu, torch.diag(mu.diagonal()))
        torch.testing.assert_close(a @ c_plus @ a.T, mu @ mu)

    @settings(max_examples=10, deadline=None)
    @given(
        seed=st.integers(0, 1000),
        loss=st.sampled_from(["spectral_contrastive", "barlow_twins"]),
    )
    def test_fit__invariant_to_landmark_order(self, seed: int, loss: str) -> None:
        x, views = _views(n=200)
        perm = torch.randperm(24, generator=torch.Generator().manual_seed(seed))
        a = fit_closed_form(_backbone(x), views, loss)  # type: ignore[arg-type]
        b = fit_closed_form(
            KernelBackbone(RBF(1.5), x[:24][perm], out_dim=3),
            views,
            loss,  # type: ignore[arg-type]
        )
        with torch.no_grad():
            za, zb = a(views[0]), b(views[0])
        # Equal up to the sign of each output (eigenvectors' signs are arbitrary).
        signs = torch.sign((za * zb).sum(0))
        torch.testing.assert_close(za, zb * signs, rtol=1e-6, atol=1e-6)

    def test_fit__accepts_cached_views(self) -> None:
        x, views = _views()
        backbone = _backbone(x)
        with torch.no_grad():
            features = torch.stack([backbone.features(v) for v in views])
        direct = fit_closed_form(_backbone(x), views).linear.weight.detach().clone()
        from_cache = fit_closed_form(backbone, CachedViews(features)).linear.weight
        torch.testing.assert_close(from_cache.detach(), direct)

    def test_fit__accepts_an_iterable_of_view_batches(self) -> None:
        x, views = _views()
        whole = fit_closed_form(_backbone(x), views).linear.weight.detach().clone()
        batches = iter([tuple(v[i : i + 64] for v in views) for i in range(0, 300, 64)])
        streamed = fit_closed_form(_backbone(x), batches).linear.weight.detach()
        torch.testing.assert_close(streamed, whole)

    def test_fit__rejects_bad_input(self) -> None:
        x, views = _views()
        backbone = _backbone(x)
        with pytest.raises(ValueError, match="No closed form for loss 'vicreg'"):
            fit_closed_form(backbone, views, "vicreg")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="p >= 2 views"):
            fit_closed_form(backbone, views[:1])
        with pytest.raises(ValueError, match="different numbers of samples"):
            fit_closed_form(backbone, [views[0], views[1][:-1]])
        with pytest.raises(TypeError, match="list of p >= 2 view tensors"):
            fit_closed_form(backbone, views[0])  # type: ignore[arg-type]
        for ridge in (-1e-3, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="ridge must be a finite number"):
                fit_closed_form(backbone, views, ridge=ridge)
        tiny = [v[:2] for v in views]
        with pytest.raises(ValueError, match="exceeds the rank 3 of the views"):
            fit_closed_form(_backbone(x, out_dim=5), tiny, "barlow_twins")
