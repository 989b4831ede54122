from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from lightly_krepes import KernelBackbone, Nystrom
from lightly_krepes.kernels import (
    RBF,
    EmpiricalNTK,
    Kernel,
    Linear,
    Normalized,
    PatchKernel,
    SumKernel,
)


def _images(seed: int, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 7, 7, generator=gen, dtype=torch.float64)


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(75, 4)
    ).double()


def _patches() -> PatchKernel:
    gen = torch.Generator().manual_seed(1)
    filters = torch.randn(3, 2, 3, 3, generator=gen, dtype=torch.float64)
    return PatchKernel(filters, threshold=0.2, grid=2)


def _parts(feature_parts: bool) -> list[Kernel]:
    """Feature kernels of both layouts (factored eNTK, dense patches), or an RBF too."""
    parts: list[Kernel] = [Normalized(EmpiricalNTK(_network())), _patches()]
    if not feature_parts:
        parts.append(RBF(6.0))
    return parts


class TestSumKernel:
    @given(
        seed=st.integers(0, 2**16),
        feature_parts=st.booleans(),
        weights=st.lists(st.floats(0.01, 10.0), min_size=3, max_size=3),
    )
    def test_forward__is_the_weighted_sum_of_the_parts(
        self, seed: int, feature_parts: bool, weights: list[float]
    ) -> None:
        parts = _parts(feature_parts)
        weights = weights[: len(parts)]
        kernel = SumKernel(parts, weights)
        assert kernel.has_features == feature_parts
        x1, x2 = _images(seed, 3), _images(seed + 1, 4)
        expected = sum(w * p(x1, x2) for p, w in zip(parts, weights, strict=True))
        torch.testing.assert_close(kernel(x1, x2), expected)
        expected_diag = sum(w * p.diag(x1) for p, w in zip(parts, weights, strict=True))
        torch.testing.assert_close(kernel.diag(x1), expected_diag)

    @given(seed=st.integers(0, 2**16), n=st.integers(1, 6))
    def test_forward__symmetric_and_psd(self, seed: int, n: int) -> None:
        gram = SumKernel(_parts(True), [0.5, 2.0])(_images(seed, n))
        assert torch.equal(gram, gram.T)
        eigenvalues = torch.linalg.eigvalsh(gram)
        assert eigenvalues.min() >= -1e-10 * eigenvalues.abs().max().clamp_min(1.0)

    def test_features__concatenate_scaled_parts(self) -> None:
        x1, x2 = _images(0, 3), _images(1, 2)
        kernel = SumKernel(_parts(True), [0.5, 2.0])
        feats = kernel.features(x1)
        assert feats.dense is not None  # the patch kernel's block
        assert len(feats.factors) > 0  # the eNTK's factored blocks
        torch.testing.assert_close(feats.cross(kernel.features(x2)), kernel(x1, x2))

    def test_nystrom__folds_landmarks_of_mixed_features(self) -> None:
        landmarks, x = _images(2, 6), _images(3, 5)
        feature_sum = SumKernel(_parts(True), [0.5, 2.0])
        # The same kernel through summed Gram blocks (an RBF with weight ~0).
        gram_sum = SumKernel([*_parts(True), RBF(1.0)], [0.5, 2.0, 1e-300])
        assert feature_sum.has_features and not gram_sum.has_features
        torch.testing.assert_close(
            Nystrom(feature_sum, landmarks).transform(x),
            Nystrom(gram_sum, landmarks).transform(x),
        )

    def test_balanced__every_part_has_unit_mean_diagonal(self) -> None:
        x = _images(4, 8)
        parts: list[Kernel] = [Linear(), _patches()]
        kernel = SumKernel.balanced(parts, x)
        weights = kernel.weights
        for part, weight in zip(parts, weights, strict=True):
            assert float(weight * part.diag(x).mean()) == pytest.approx(1.0)
        assert float(kernel.diag(x).mean()) == pytest.approx(2.0)

    def test_state_dict__restores_weights_with_weights_only_load(self) -> None:
        landmarks = _images(5, 6)
        backbone = KernelBackbone(SumKernel(_parts(True), [0.5, 2.0]), landmarks, 3)
        buffer = io.BytesIO()
        torch.save(backbone.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        other = KernelBackbone(SumKernel(_parts(True), [1.0, 1.0]), landmarks, 3)
        other.load_state_dict(state)
        x = _images(6, 4)
        torch.testing.assert_close(other(x), backbone(x))

    def test_init__rejects_bad_parts_and_weights(self) -> None:
        with pytest.raises(ValueError, match="at least two kernels"):
            SumKernel([Linear()])
        with pytest.raises(TypeError, match="adds lightly_krepes Kernels"):
            SumKernel([Linear(), nn.Linear(2, 2)])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="one weight per kernel"):
            SumKernel([Linear(), RBF(1.0)], [1.0])
        for bad in (-1.0, 0.0, math.inf, math.nan, True):
            with pytest.raises(ValueError, match="finite, positive"):
                SumKernel([Linear(), RBF(1.0)], [1.0, bad])

    def test_balanced__rejects_a_part_with_zero_diagonal(self) -> None:
        with pytest.raises(ValueError, match="mean diagonal"):
            SumKernel.balanced([Linear(), RBF(1.0)], torch.zeros(3, 2))
