from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from lightly_krepes.attribution import (
    LandmarkExpansion,
    feature_alignment_gap,
    feature_consistency,
)
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF


def _tabular(n: int, seed: int) -> Tensor:
    """Column 0 spread widely (it dominates RBF distances), column 1 small noise."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return x * torch.tensor([3.0, 0.3], dtype=torch.float64)


def _backbone() -> KernelBackbone:
    return KernelBackbone(RBF(1.0), _tabular(16, seed=0), out_dim=4)


class TestFeatureConsistency:
    def test_feature_consistency__closed_form(self) -> None:
        x = torch.tensor([[0.0, 5.0], [1.0, 5.0]])
        landmarks = torch.tensor([[0.0, 0.0], [4.0, 0.0], [-9.0, 0.0]])
        consistency = feature_consistency(x, landmarks, 0, value_range=4.0)
        expected = torch.tensor([[1.0, 0.0, 0.0], [0.75, 0.25, 0.0]])
        torch.testing.assert_close(consistency, expected)
        # The default range spans x and the landmarks: 4 - (-9) = 13.
        torch.testing.assert_close(
            feature_consistency(x, landmarks, 0),
            1.0 - (x[:, :1] - landmarks[:, 0]).abs() / 13.0,
        )
        constant = torch.full((3, 1), 5.0)
        assert torch.all(feature_consistency(x[:, 1:], constant, 0) == 1.0)

    def test_feature_consistency__group_agreement(self) -> None:
        # One-hot group in columns 1..3; column 0 is numeric.
        x = torch.tensor([[0.5, 1.0, 0.0, 0.0], [0.5, 0.0, 0.0, 1.0]])
        landmarks = torch.tensor(
            [[9.0, 1.0, 0.0, 0.0], [9.0, 0.0, 1.0, 0.0], [9.0, 0.0, 0.0, 1.0]]
        )
        expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        torch.testing.assert_close(
            feature_consistency(x, landmarks, [1, 2, 3]), expected
        )
        torch.testing.assert_close(
            feature_consistency(x, landmarks, slice(1, 4)), expected
        )
        # Standardising the columns keeps the agreement.
        both = torch.cat([x, landmarks])
        mean, std = both.mean(0), both.std(0)
        torch.testing.assert_close(
            feature_consistency((x - mean) / std, (landmarks - mean) / std, [1, 2, 3]),
            expected,
        )

    def test_feature_consistency__bad_inputs_raise(self) -> None:
        x, landmarks = torch.zeros(2, 3), torch.zeros(4, 3)
        with pytest.raises(ValueError, match="value_range"):
            feature_consistency(x, landmarks, 0, value_range=0.0)
        with pytest.raises(ValueError, match="out of range"):
            feature_consistency(x, landmarks, 3)
        with pytest.raises(ValueError, match="at least 2 distinct"):
            feature_consistency(x, landmarks, [1])
        with pytest.raises(ValueError, match="same d"):
            feature_consistency(x, torch.zeros(4, 2), 0)
        with pytest.raises(TypeError, match="feature"):
            feature_consistency(x, landmarks, 1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="NaN or infinite"):
            feature_consistency(torch.full((2, 3), float("nan")), landmarks, 0)


class TestFeatureAlignmentGap:
    @pytest.mark.parametrize("score", ["signed", "sample_specific"])
    def test_feature_alignment_gap__matches_definition_for_top_one(
        self, score: str
    ) -> None:
        backbone = _backbone()
        x = _tabular(9, seed=1)
        expansion = LandmarkExpansion(backbone)
        result = feature_alignment_gap(
            expansion,
            x,
            0,
            6.0,
            top_k=1,
            num_random=4,
            score=score,  # type: ignore[arg-type]
        )
        scores = (
            expansion.scores(x)
            if score == "signed"
            else expansion.sample_specific_influence(x)
        )
        consistency = feature_consistency(x, backbone.landmarks, 0, 6.0)
        expected_psi = consistency.gather(1, scores.argmax(1, keepdim=True))[:, 0]
        torch.testing.assert_close(result.psi, expected_psi)
        torch.testing.assert_close(result.per_sample, result.psi - result.psi_random)
        assert result.gap == pytest.approx(float(result.per_sample.mean()))

    @given(seed=st.integers(0, 10_000))
    def test_feature_alignment_gap__zero_when_all_landmarks_are_taken(
        self, seed: int
    ) -> None:
        backbone = _backbone()
        x = _tabular(5, seed=seed)
        result = feature_alignment_gap(
            backbone, x, 1, 2.0, top_k=16, num_random=2, seed=seed
        )
        torch.testing.assert_close(result.psi, result.psi_random)
        assert result.gap == pytest.approx(0.0, abs=1e-12)

    def test_feature_alignment_gap__amplified_feature_has_larger_gap(self) -> None:
        backbone = _backbone()
        x = _tabular(40, seed=1)
        dominant = feature_alignment_gap(backbone, x, 0, 6.0, top_k=3)
        minor = feature_alignment_gap(backbone, x, 1, 0.6, top_k=3)
        assert dominant.gap > 0.1
        assert dominant.gap > minor.gap + 0.1

    def test_feature_alignment_gap__seeded(self) -> None:
        backbone = _backbone()
        x = _tabular(8, seed=1)
        first = feature_alignment_gap(backbone, x, 0, 6.0, top_k=3, seed=3)
        again = feature_alignment_gap(backbone, x, 0, 6.0, top_k=3, seed=3)
        other = feature_alignment_gap(backbone, x, 0, 6.0, top_k=3, seed=4)
        torch.testing.assert_close(first.psi_random, again.psi_random)
        assert not torch.equal(first.psi_random, other.psi_random)

    def test_feature_alignment_gap__bad_arguments_raise(self) -> None:
        backbone = _backbone()
        x = _tabular(4, seed=1)
        with pytest.raises(ValueError, match="top_k"):
            feature_alignment_gap(backbone, x, 0, 6.0, top_k=17)
        with pytest.raises(ValueError, match="top_k"):
            feature_alignment_gap(backbone, x, 0, 6.0, top_k=0)
        with pytest.raises(ValueError, match="num_random"):
            feature_alignment_gap(backbone, x, 0, 6.0, num_random=0)
        with pytest.raises(ValueError, match="score must be"):
            feature_alignment_gap(backbone, x, 0, 6.0, score="norm")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="weights must have shape"):
            feature_alignment_gap(
                backbone, x, 0, 6.0, weights=torch.ones(3, 4, dtype=torch.float64)
            )
