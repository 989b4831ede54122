from __future__ import annotations

import pytest
import torch
from captum.attr import FeatureAblation, IntegratedGradients, ShapleyValueSampling
from captum.metrics import infidelity
from torch import Tensor

from lightly_krepes.attribution import (
    Direction,
    LandmarkExpansion,
    LandmarkMask,
    OwnDirection,
    Similarity,
)
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF, Linear

M, H, D, B = 8, 3, 4, 5


def _data(n: int, seed: int, d: int = D) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64)


def _backbone(linear: bool = False) -> KernelBackbone:
    kernel = Linear() if linear else RBF(1.5)
    backbone = KernelBackbone(kernel, _data(M, seed=0), out_dim=H)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        backbone.linear.weight.normal_(generator=generator)
        assert backbone.linear.bias is not None
        backbone.linear.bias.normal_(generator=generator)
    return backbone


def _ones() -> Tensor:
    return torch.ones(B, M, dtype=torch.float64)


def _perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
    noise = 0.3 * torch.randn_like(inputs)
    return noise, inputs - noise


class TestLandmarkMask:
    @pytest.mark.parametrize("linear", [False, True])
    def test_forward__ones_give_output_zeros_give_offset(self, linear: bool) -> None:
        expansion = LandmarkExpansion(_backbone(linear), eta=1e-3)
        model = LandmarkMask(expansion)
        x = _data(B, seed=2)
        torch.testing.assert_close(model(_ones(), x), expansion.outputs(x))
        torch.testing.assert_close(
            model(torch.zeros(B, M, dtype=torch.float64), x),
            expansion.offset.expand(B, H),
        )

    def test_forward__raw_plain_expansion_is_the_backbone(self) -> None:
        backbone = _backbone()
        model = LandmarkMask(
            LandmarkExpansion(backbone, regularize=False, center=False)
        )
        x = _data(B, seed=2)
        mask = _data(B, seed=3, d=M)
        expected = torch.einsum("bm,bmh->bh", mask, backbone.contributions(x))
        torch.testing.assert_close(
            model(mask, x), (expected + backbone.linear.bias).detach()
        )

    @pytest.mark.parametrize(
        "method", [IntegratedGradients, FeatureAblation, ShapleyValueSampling]
    )
    def test_captum_methods__return_exact_terms(self, method: type) -> None:
        # The default expansion: ridge-refit weights and a reference row.
        model = LandmarkMask(_backbone())
        x = _data(B, seed=2)
        terms = model.expansion.contributions(x).detach()
        explainer = method(model)
        for target in (0, 2, [0, 1, 2, 1, 0]):
            kwargs = {"n_samples": 3} if method is ShapleyValueSampling else {}
            attributions = explainer.attribute(
                _ones(),
                baselines=0.0,
                additional_forward_args=(x,),
                target=target,
                **kwargs,
            )
            index = torch.tensor(target).expand(B)
            expected = terms[torch.arange(B), :, index]
            if method is FeatureAblation:
                # Exact in float64: ablating landmark j changes the output by c_j.
                torch.testing.assert_close(
                    attributions, expected, rtol=1e-12, atol=1e-14
                )
            else:
                # Captum weights IG's quadrature in float32 and accumulates Shapley
                # values in float32: exact up to float32 rounding of its own sums.
                torch.testing.assert_close(
                    attributions.double(), expected, rtol=1e-6, atol=1e-9
                )

    @pytest.mark.parametrize(
        "method", [IntegratedGradients, FeatureAblation, ShapleyValueSampling]
    )
    def test_captum_methods__return_default_scores_with_own_direction(
        self, method: type
    ) -> None:
        model = LandmarkMask(_backbone(), target=OwnDirection())
        x = _data(B, seed=2)
        kwargs = {"n_samples": 3} if method is ShapleyValueSampling else {}
        attributions = method(model).attribute(
            _ones(), baselines=0.0, additional_forward_args=(x,), **kwargs
        )
        torch.testing.assert_close(
            attributions.double(),
            model.expansion.scores(x).detach(),
            rtol=1e-6,
            atol=1e-9,
        )

    def test_infidelity__zero_for_terms_not_for_others(self) -> None:
        model = LandmarkMask(_backbone())
        x = _data(B, seed=2)
        terms = model.expansion.contributions(x).detach()[:, :, 1]
        torch.manual_seed(0)
        exact = infidelity(
            model,
            _perturb,
            _ones(),
            terms,
            additional_forward_args=(x,),
            target=1,
            n_perturb_samples=8,
        )
        assert exact.shape == (B,)
        assert float(exact.abs().max()) < 1e-20
        wrong = infidelity(
            model,
            _perturb,
            _ones(),
            terms.flip(1),
            additional_forward_args=(x,),
            target=1,
            n_perturb_samples=8,
        )
        assert float(wrong.min()) > 1e-6

    def test_target__scalarises_output(self) -> None:
        expansion = LandmarkExpansion(_backbone(), eta=1e-3)
        x = _data(B, seed=2)
        v = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        full = LandmarkMask(expansion)(_ones(), x)
        torch.testing.assert_close(
            LandmarkMask(expansion, target=Direction(v))(_ones(), x), full @ v
        )
        torch.testing.assert_close(
            LandmarkMask(expansion, target=Similarity(3 * v))(_ones(), x),
            full @ (v / v.norm()),
        )
        torch.testing.assert_close(
            LandmarkMask(expansion, target=2)(_ones(), x), full[:, 2]
        )
        own = LandmarkMask(expansion, target=OwnDirection())(_ones(), x)
        torch.testing.assert_close(
            own - (expansion.offset * expansion.target_vectors(None, x)).sum(1),
            (full - expansion.offset).norm(dim=1),
        )

    def test_weights__step_expansion_has_no_offset_by_default(self) -> None:
        backbone = _backbone()
        delta = _data(M, seed=7, d=H)
        x = _data(B, seed=2)
        rows = backbone.nystrom.landmark_kernel(x)
        step = LandmarkExpansion(backbone, delta, regularize=False, center=False)
        model = LandmarkMask(step)
        torch.testing.assert_close(model(_ones(), x), rows @ delta)
        attributions = FeatureAblation(model).attribute(
            _ones(), baselines=0.0, additional_forward_args=(x,), target=1
        )
        torch.testing.assert_close(attributions, rows * delta[:, 1])
        # A backbone with weights is wrapped with the defaults (ridge refit).
        wrapped = LandmarkMask(backbone, delta)
        assert not torch.equal(wrapped.weights, delta)

    def test_forward__bad_inputs_raise(self) -> None:
        model = LandmarkMask(_backbone())
        x = _data(B, seed=2)
        with pytest.raises(ValueError, match=r"shape \(B, m\)"):
            model(torch.ones(B, M + 1, dtype=torch.float64), x)
        with pytest.raises(ValueError, match="one mask row per input"):
            model(torch.ones(B + 1, M, dtype=torch.float64), x)
        mask = _ones()
        mask[0, 0] = float("nan")
        with pytest.raises(ValueError, match="NaN or infinite"):
            model(mask, x)
        bad = x.clone()
        bad[0, 0] = float("inf")
        with pytest.raises(ValueError, match="NaN or infinite"):
            model(_ones(), bad)
        with pytest.raises(TypeError, match="dtype"):
            model(torch.ones(B, M, dtype=torch.long), x)
        with pytest.raises(TypeError, match="Unknown target"):
            LandmarkMask(_backbone(), target="own")
        with pytest.raises(ValueError, match="out of range"):
            LandmarkMask(_backbone(), target=H)(_ones(), x)
