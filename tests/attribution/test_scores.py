from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from lightly_krepes.attribution import (
    Direction,
    RepresenterInfluence,
    concept_activation_vector,
    concept_influence,
    sample_specific_influence,
)
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF


def _tiny() -> tuple[KernelBackbone, Tensor]:
    """Two 1-d landmarks at 0 and 1, RBF(1), and hand-picked weights (2, 2)."""
    landmarks = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    backbone = KernelBackbone(RBF(1.0), landmarks, out_dim=2)
    weights = torch.tensor([[3.0, 4.0], [0.0, -1.0]], dtype=torch.float64)
    return backbone, weights


def _backbone() -> KernelBackbone:
    generator = torch.Generator().manual_seed(0)
    landmarks = torch.randn(10, 3, generator=generator, dtype=torch.float64)
    backbone = KernelBackbone(RBF(1.5), landmarks, out_dim=4)
    with torch.no_grad():
        backbone.linear.weight.normal_(generator=generator)
        assert backbone.linear.bias is not None
        backbone.linear.bias.normal_(generator=generator)
    return backbone


class TestSampleSpecificInfluence:
    def test_sample_specific_influence__closed_form(self) -> None:
        backbone, weights = _tiny()
        x = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
        scores = sample_specific_influence(backbone, x, weights)
        e = math.exp
        expected = torch.tensor(
            [[1.0 * 5.0, e(-0.5) * 1.0], [e(-2.0) * 5.0, e(-0.5) * 1.0]],
            dtype=torch.float64,
        )
        torch.testing.assert_close(scores, expected)

    def test_sample_specific_influence__default_is_contribution_norm(self) -> None:
        backbone = _backbone()
        x = torch.randn(6, 3, dtype=torch.float64)
        expected = torch.linalg.vector_norm(backbone.contributions(x), dim=2)
        torch.testing.assert_close(
            sample_specific_influence(backbone, x), expected.detach()
        )
        torch.testing.assert_close(
            sample_specific_influence(backbone, x, batch_size=2), expected.detach()
        )

    def test_sample_specific_influence__bad_inputs_raise(self) -> None:
        backbone, weights = _tiny()
        with pytest.raises(ValueError, match="weights must have shape"):
            sample_specific_influence(
                backbone, torch.zeros(1, 1).double(), weights.T[:1]
            )
        with pytest.raises(ValueError, match="NaN or infinite"):
            sample_specific_influence(
                backbone, torch.tensor([[float("nan")]], dtype=torch.float64)
            )
        with pytest.raises(ValueError, match="shape"):
            sample_specific_influence(backbone, torch.zeros(2, 3, dtype=torch.float64))


class TestConceptActivationVector:
    def test_concept_activation_vector__unit_normal_toward_concept(self) -> None:
        generator = torch.Generator().manual_seed(0)
        shift = torch.tensor([0.0, 3.0, 0.0], dtype=torch.float64)
        concept = torch.randn(40, 3, generator=generator, dtype=torch.float64) + shift
        other = torch.randn(40, 3, generator=generator, dtype=torch.float64) - shift
        cav = concept_activation_vector(concept, other)
        assert cav.shape == (3,) and cav.dtype == torch.float64
        assert float(cav.norm()) == pytest.approx(1.0)
        assert float(cav[1]) > 0.95
        torch.testing.assert_close(
            concept_activation_vector(other, concept), -cav, rtol=1e-4, atol=1e-4
        )

    def test_concept_activation_vector__bad_inputs_raise(self) -> None:
        a = torch.randn(5, 3)
        with pytest.raises(ValueError, match="same dimension"):
            concept_activation_vector(a, torch.randn(5, 4))
        with pytest.raises(ValueError, match="non-empty"):
            concept_activation_vector(a, torch.randn(0, 3))
        with pytest.raises(ValueError, match="NaN or infinite"):
            concept_activation_vector(a, torch.full((5, 3), float("inf")))
        with pytest.raises(ValueError, match="regularization"):
            concept_activation_vector(a, torch.randn(5, 3), regularization=0.0)


class TestConceptInfluence:
    def test_concept_influence__closed_form(self) -> None:
        backbone, weights = _tiny()
        x = torch.tensor([[1.0]], dtype=torch.float64)
        cav = torch.tensor([0.6, 0.8], dtype=torch.float64)
        scores = concept_influence(backbone, x, cav, weights)
        # <w_0, v> = 1.8 + 3.2 = 5, <w_1, v> = -0.8; k(0, 1) = e^-1/2, k(1, 1) = 1.
        expected = torch.tensor([[math.exp(-0.5) * 5.0, -0.8]], dtype=torch.float64)
        torch.testing.assert_close(scores, expected)

    def test_concept_influence__sums_to_concept_coordinate(self) -> None:
        backbone = _backbone()
        x = torch.randn(5, 3, dtype=torch.float64)
        cav = torch.tensor([0.5, 0.5, -0.5, 0.5], dtype=torch.float64)
        scores = concept_influence(backbone, x, cav)
        bias = backbone.linear.bias
        assert bias is not None
        torch.testing.assert_close(scores.sum(1), ((backbone(x) - bias) @ cav).detach())
        influence = RepresenterInfluence(backbone).influence(x, target=Direction(cav))
        torch.testing.assert_close(scores, influence)

    def test_concept_influence__bad_cav_raises(self) -> None:
        backbone = _backbone()
        x = torch.randn(5, 3, dtype=torch.float64)
        with pytest.raises(ValueError, match="shape"):
            concept_influence(backbone, x, torch.ones(3, dtype=torch.float64))
        with pytest.raises(TypeError, match="cav"):
            concept_influence(backbone, x, [1.0, 0.0, 0.0, 0.0])  # type: ignore[arg-type]
