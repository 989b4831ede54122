from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lightly_krepes.kernels import RBF, Linear
from lightly_krepes.landmarks import leverage_landmarks, ridge_leverage_scores


def isolated_and_clustered() -> torch.Tensor:
    """195 samples in one tight cluster, then 5 isolated samples."""
    gen = torch.Generator().manual_seed(0)
    cluster = 0.05 * torch.randn(195, 2, generator=gen)
    isolated = 10.0 * torch.arange(1, 6, dtype=torch.float32)[:, None].repeat(1, 2)
    return torch.cat([cluster, isolated])


class TestRidgeLeverageScores:
    @given(seed=st.integers(0, 2**16), ridge=st.floats(1e-2, 1e2))
    def test_ridge_leverage_scores__exact_without_sketch(
        self, seed: int, ridge: float
    ) -> None:
        x = torch.randn(25, 3, generator=torch.Generator().manual_seed(seed)).double()
        kernel = RBF(lengthscale=1.5)
        gram = kernel(x)
        expected = torch.linalg.solve(
            gram + ridge * torch.eye(25, dtype=torch.float64), gram
        ).diagonal()
        scores = ridge_leverage_scores(x, kernel, ridge)
        torch.testing.assert_close(scores, expected, rtol=1e-8, atol=1e-10)

    def test_ridge_leverage_scores__sketch_within_constant_factor(self) -> None:
        x = torch.randn(200, 3, generator=torch.Generator().manual_seed(0)).double()
        kernel = RBF(lengthscale=1.0)
        exact = ridge_leverage_scores(x, kernel, 10.0)
        sketched = ridge_leverage_scores(x, kernel, 10.0, sketch_size=40, seed=0)
        ratio = sketched / exact
        # Measured: 0.69 to 1.65.
        assert float(ratio.min()) > 0.4 and float(ratio.max()) < 2.5

    def test_ridge_leverage_scores__isolated_samples_score_highest(self) -> None:
        x = isolated_and_clustered()
        for seed in range(3):
            scores = ridge_leverage_scores(
                x, RBF(lengthscale=1.0), 20.0, sketch_size=20, seed=seed
            )
            assert float(scores[195:].min()) > 4 * float(scores[:195].max())

    def test_ridge_leverage_scores__rejects_bad_arguments(self) -> None:
        x = torch.randn(5, 2)
        with pytest.raises(ValueError, match="ridge must be a finite positive"):
            ridge_leverage_scores(x, RBF(), 0.0)
        with pytest.raises(ValueError, match="sketch_size must be at least 1"):
            ridge_leverage_scores(x, RBF(), 1.0, sketch_size=0)
        with pytest.raises(ValueError, match="x is empty"):
            ridge_leverage_scores(torch.empty(0, 2), RBF(), 1.0)


class TestLeverageLandmarks:
    def test_leverage_landmarks__distinct_valid_indices(self) -> None:
        x = torch.randn(80, 3, generator=torch.Generator().manual_seed(0))
        indices = leverage_landmarks(x, RBF(lengthscale=1.0), 20, seed=3)
        assert indices.dtype == torch.long
        assert indices.shape == (20,)
        assert indices.unique().numel() == 20
        assert int(indices.min()) >= 0 and int(indices.max()) < 80

    def test_leverage_landmarks__deterministic_for_fixed_seed(self) -> None:
        x = torch.randn(80, 3, generator=torch.Generator().manual_seed(1))
        kernel = RBF(lengthscale=1.0)
        first = leverage_landmarks(x, kernel, 10, seed=7)
        assert torch.equal(first, leverage_landmarks(x, kernel, 10, seed=7))
        assert not torch.equal(first, leverage_landmarks(x, kernel, 10, seed=8))

    def test_leverage_landmarks__prefers_isolated_samples(self) -> None:
        # The 5 isolated samples are 2.5% of the data; uniform sampling would draw
        # 2.5 of them in 10 runs of 10 landmarks (measured here: 17).
        x = isolated_and_clustered()
        hits = 0
        for seed in range(10):
            indices = leverage_landmarks(x, RBF(lengthscale=1.0), 10, seed=seed)
            hits += int((indices >= 195).sum())
        assert hits >= 10

    def test_leverage_landmarks__warns_and_fills_for_zero_kernel(self) -> None:
        with pytest.warns(UserWarning, match=r"Only 0 sample.*reached at 0 pivot"):
            indices = leverage_landmarks(torch.zeros(8, 2), Linear(), 3)
        assert indices.unique().numel() == 3
