from __future__ import annotations

import pytest
import torch
from captum.attr import (
    Attribution,
    FeatureAblation,
    IntegratedGradients,
    Saliency,
)
from captum.metrics import infidelity, sensitivity_max
from torch import Tensor, nn

from lightly_krepes.attribution import (
    Direction,
    LandmarkAttribution,
    LandmarkExpansion,
    Similarity,
    TargetSpec,
)
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF, EmpiricalNTK

M, H, D, B = 10, 3, 4, 5


def _data(n: int, seed: int, d: int = D) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64)


def _randomise(backbone: KernelBackbone) -> KernelBackbone:
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        backbone.linear.weight.normal_(generator=generator)
        assert backbone.linear.bias is not None
        backbone.linear.bias.normal_(generator=generator)
    return backbone


def _rbf_backbone() -> KernelBackbone:
    return _randomise(KernelBackbone(RBF(1.5), _data(M, seed=0), out_dim=H))


def _entk_backbone() -> KernelBackbone:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 2)).double().eval()
    return _randomise(KernelBackbone(EmpiricalNTK(net), _data(M, seed=0), out_dim=H))


def _perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
    noise = 0.01 * torch.randn_like(inputs)
    return noise, inputs - noise


class TestLandmarkAttribution:
    def test_init__follows_captum_conventions(self) -> None:
        explainer = LandmarkAttribution(_rbf_backbone())
        assert isinstance(explainer, Attribution)
        assert explainer.multiplies_by_inputs is True
        assert explainer.has_convergence_delta() is True
        assert explainer.get_name() == "Landmark Attribution"
        assert explainer.forward_func is explainer.backbone

    @pytest.mark.parametrize("make", [_rbf_backbone, _entk_backbone])
    def test_attribute__raw_terms_with_zero_convergence_delta(self, make: type) -> None:
        backbone = make()
        expansion = LandmarkExpansion(backbone, regularize=False, center=False)
        explainer = LandmarkAttribution(expansion)
        x = _data(B, seed=2)
        contributions = backbone.contributions(x).detach()
        v = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
        own = torch.nn.functional.normalize(contributions.sum(1), dim=1)
        cases: list[tuple[TargetSpec, Tensor]] = [
            (None, torch.einsum("bmh,bh->bm", contributions, own)),
            (1, contributions[:, :, 1]),
            ([2, 0, 1, 1, 0], contributions[torch.arange(B), :, [2, 0, 1, 1, 0]]),
            (Direction(v), contributions @ v),
            (Similarity(v), contributions @ (v / v.norm())),
        ]
        for target, expected in cases:
            attributions, delta = explainer.attribute(
                x, target=target, return_convergence_delta=True
            )
            torch.testing.assert_close(attributions, expected)
            assert delta.shape == (B,)
            assert float(delta.abs().max()) < 1e-9
            wrong = explainer.compute_convergence_delta(attributions * 1.1, x, target)
            assert float(wrong.abs().max()) > 1e-6

    def test_convergence_delta__is_the_refit_residual(self) -> None:
        backbone = _rbf_backbone()
        explainer = LandmarkAttribution(LandmarkExpansion(backbone, eta=1e-2))
        x = _data(B, seed=2)
        _, delta = explainer.attribute(x, target=0, return_convergence_delta=True)
        with torch.no_grad():
            residual = explainer.expansion.outputs(x)[:, 0] - backbone(x)[:, 0]
        torch.testing.assert_close(delta, residual)
        assert float(delta.abs().max()) > 1e-6

    def test_attribute__tuple_inputs_give_tuple(self) -> None:
        explainer = LandmarkAttribution(_rbf_backbone())
        x = _data(B, seed=2)
        out = explainer.attribute((x,), target=0)
        assert isinstance(out, tuple) and len(out) == 1
        torch.testing.assert_close(out[0], explainer.attribute(x, target=0))
        with pytest.raises(ValueError, match="single input"):
            explainer.attribute((x, x), target=0)

    def test_attribute__reenables_grad_under_no_grad(self) -> None:
        explainer = LandmarkAttribution(_entk_backbone())
        x = _data(4, seed=2).requires_grad_(True)
        with torch.no_grad():
            attributions = explainer.attribute(x)
        assert attributions.requires_grad
        attributions.sum().backward()
        assert x.grad is not None

    def test_attribute__matches_integrated_gradients_on_mask(self) -> None:
        explainer = LandmarkAttribution(_rbf_backbone())
        x = _data(B, seed=2)
        ig = IntegratedGradients(explainer.mask_model).attribute(
            torch.ones(B, M, dtype=torch.float64),
            baselines=0.0,
            additional_forward_args=(x,),
            target=1,
        )
        torch.testing.assert_close(explainer.attribute(x, target=1), ig)

    def test_attribute__step_completes_its_own_expansion(self) -> None:
        backbone = _rbf_backbone()
        delta_alpha = _data(M, seed=8, d=H)
        explainer = LandmarkAttribution(backbone, weights=delta_alpha)
        x = _data(B, seed=2)
        attributions, delta = explainer.attribute(
            x, target=0, return_convergence_delta=True
        )
        expansion = explainer.expansion
        torch.testing.assert_close(
            attributions, expansion.rows(x) * expansion.weights[:, 0]
        )
        raw = backbone.nystrom.landmark_kernel(x) @ delta_alpha
        torch.testing.assert_close(delta, expansion.outputs(x)[:, 0] - raw[:, 0])

    def test_metrics__infidelity_on_mask_and_sensitivity_max(self) -> None:
        explainer = LandmarkAttribution(_rbf_backbone())
        x = _data(B, seed=2)
        attributions = explainer.attribute(x, target=2)
        torch.manual_seed(0)
        score = infidelity(
            explainer.mask_model,
            _perturb,
            torch.ones(B, M, dtype=torch.float64),
            attributions,
            additional_forward_args=(x,),
            target=2,
            n_perturb_samples=5,
        )
        assert float(score.abs().max()) < 1e-20
        for target in (None, 2, Direction(torch.ones(H, dtype=torch.float64))):
            sensitivity = sensitivity_max(
                explainer.attribute, x, target=target, n_perturb_samples=4
            )
            assert sensitivity.shape == (B,)
            assert torch.isfinite(sensitivity).all()
            assert float(sensitivity.min()) > 0

    def test_compute_convergence_delta__bad_shapes_raise(self) -> None:
        explainer = LandmarkAttribution(_rbf_backbone())
        x = _data(B, seed=2)
        with pytest.raises(ValueError, match=r"shape \(B, m\)"):
            explainer.compute_convergence_delta(torch.zeros(B, M + 1), x)
        with pytest.raises(ValueError, match="out of range"):
            explainer.attribute(x, target=H)
        with pytest.raises(TypeError, match="Unknown target"):
            explainer.attribute(x, target="dim")
        bad = x.clone()
        bad[0, 0] = float("nan")
        with pytest.raises(ValueError, match="NaN or infinite"):
            explainer.attribute(bad)


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
class TestInputSpaceAttribution:
    """Captum's gradient methods run directly on a KernelBackbone."""

    @pytest.mark.parametrize("make", [_rbf_backbone, _entk_backbone])
    def test_saliency__matches_finite_differences(self, make: type) -> None:
        backbone = make()
        x = _data(3, seed=2)
        saliency = Saliency(backbone).attribute(x.clone(), target=1, abs=False)
        eps = 1e-6
        expected = torch.zeros_like(x)
        with torch.no_grad():
            for i in range(D):
                step = torch.zeros_like(x)
                step[:, i] = eps
                up, down = backbone(x + step)[:, 1], backbone(x - step)[:, 1]
                expected[:, i] = (up - down) / (2 * eps)
        assert float(expected.abs().max()) > 1e-3
        torch.testing.assert_close(saliency, expected, rtol=1e-5, atol=1e-7)

    @pytest.mark.parametrize("make", [_rbf_backbone, _entk_backbone])
    def test_integrated_gradients__complete_and_pass_metrics(self, make: type) -> None:
        backbone = make()
        x = _data(3, seed=2)
        ig = IntegratedGradients(backbone)
        attributions, delta = ig.attribute(
            x, target=0, n_steps=64, return_convergence_delta=True
        )
        assert attributions.shape == x.shape
        assert float(delta.abs().max()) < 1e-6
        torch.manual_seed(0)
        score = infidelity(
            backbone, _perturb, x, attributions, target=0, n_perturb_samples=4
        )
        sensitivity = sensitivity_max(
            ig.attribute, x, target=0, n_perturb_samples=2, n_steps=16
        )
        saliency_sensitivity = sensitivity_max(
            Saliency(backbone).attribute, x, target=0, n_perturb_samples=3
        )
        for value in (score, sensitivity, saliency_sensitivity):
            assert value.shape == (3,)
            assert torch.isfinite(value).all()

    def test_feature_ablation__runs_on_backbone(self) -> None:
        backbone = _rbf_backbone()
        x = _data(3, seed=2)
        attributions = FeatureAblation(backbone).attribute(x, target=2)
        assert attributions.shape == x.shape
        assert torch.isfinite(attributions).all()
