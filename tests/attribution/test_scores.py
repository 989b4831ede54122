from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from lightly_krepes.attribution import (
    Direction,
    LandmarkExpansion,
    RepresenterInfluence,
    concept_activation_vector,
    concept_influence,
    landmark_scores,
    sample_specific_influence,
    step_influence,
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
    def test_sample_specific_influence__closed_form_on_raw_step(self) -> None:
        backbone, weights = _tiny()
        x = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
        raw = LandmarkExpansion(backbone, weights, regularize=False, center=False)
        scores = sample_specific_influence(raw, x)
        e = math.exp
        expected = torch.tensor(
            [[1.0 * 5.0, e(-0.5) * 1.0], [e(-2.0) * 5.0, e(-0.5) * 1.0]],
            dtype=torch.float64,
        )
        torch.testing.assert_close(scores, expected)

    def test_sample_specific_influence__backbone_uses_explained_weights(self) -> None:
        backbone = _backbone()
        x = torch.randn(6, 3, dtype=torch.float64)
        expansion = LandmarkExpansion(backbone)
        expected = backbone.nystrom.landmark_kernel(x).abs() * expansion.weights.norm(
            dim=1
        )
        torch.testing.assert_close(sample_specific_influence(backbone, x), expected)
        torch.testing.assert_close(sample_specific_influence(expansion, x), expected)

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


class TestLandmarkScores:
    def test_landmark_scores__default_adds_up_to_what_landmarks_build(self) -> None:
        backbone = _backbone()
        x = torch.randn(5, 3, dtype=torch.float64)
        expansion = LandmarkExpansion(backbone)
        scores = landmark_scores(backbone, x)
        torch.testing.assert_close(scores, expansion.scores(x))
        torch.testing.assert_close(
            scores.sum(1), (expansion.outputs(x) - expansion.offset).norm(dim=1)
        )

    def test_landmark_scores__are_specific_to_x(self) -> None:
        # Inputs near different landmarks get different top landmarks, unlike IS
        # whose x-independent factor |w_l| decides with a flat kernel.
        landmarks = torch.linspace(-4, 4, 9, dtype=torch.float64)[:, None]
        backbone = KernelBackbone(RBF(0.7), landmarks, out_dim=4)
        top = landmark_scores(backbone, landmarks).argmax(1)
        assert len(top.unique()) >= 5

    def test_step_influence__explains_the_step_expansion(self) -> None:
        backbone = _backbone()
        x = torch.randn(5, 3, dtype=torch.float64)
        delta = torch.randn(10, 4, dtype=torch.float64)
        step = LandmarkExpansion(backbone, delta)
        scores = step_influence(backbone, x, delta)
        torch.testing.assert_close(scores, step.scores(x))
        torch.testing.assert_close(step_influence(step, x), scores)
        torch.testing.assert_close(
            scores.sum(1), (step.outputs(x) - step.offset).norm(dim=1)
        )
        with pytest.raises(ValueError, match="delta_alpha"):
            step_influence(backbone, x)


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
    def test_concept_influence__closed_form_on_raw_step(self) -> None:
        backbone, weights = _tiny()
        x = torch.tensor([[1.0]], dtype=torch.float64)
        cav = torch.tensor([0.6, 0.8], dtype=torch.float64)
        raw = LandmarkExpansion(backbone, weights, regularize=False, center=False)
        scores = concept_influence(raw, x, cav)
        # <w_0, v> = 1.8 + 3.2 = 5, <w_1, v> = -0.8; k(0, 1) = e^-1/2, k(1, 1) = 1.
        expected = torch.tensor([[math.exp(-0.5) * 5.0, -0.8]], dtype=torch.float64)
        torch.testing.assert_close(scores, expected)

    def test_concept_influence__sums_to_concept_coordinate(self) -> None:
        backbone = _backbone()
        x = torch.randn(5, 3, dtype=torch.float64)
        cav = torch.tensor([0.5, 0.5, -0.5, 0.5], dtype=torch.float64)
        expansion = LandmarkExpansion(backbone)
        scores = concept_influence(expansion, x, cav)
        torch.testing.assert_close(
            scores.sum(1), (expansion.outputs(x) - expansion.offset) @ cav
        )
        influence = RepresenterInfluence(backbone).influence(x, target=Direction(cav))
        torch.testing.assert_close(scores, influence)
        torch.testing.assert_close(concept_influence(backbone, x, cav), scores)

    def test_concept_influence__bad_cav_raises(self) -> None:
        backbone = _backbone()
        x = torch.randn(5, 3, dtype=torch.float64)
        with pytest.raises(ValueError, match="shape"):
            concept_influence(backbone, x, torch.ones(3, dtype=torch.float64))
        with pytest.raises(ValueError, match=r"shape \(h,\)"):
            concept_influence(backbone, x, torch.ones(2, 4, dtype=torch.float64))
        with pytest.raises(TypeError, match="cav"):
            concept_influence(backbone, x, [1.0, 0.0, 0.0, 0.0])  # type: ignore[arg-type]
