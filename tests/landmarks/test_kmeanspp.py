from __future__ import annotations

import pytest
import torch
from torch import Tensor

from lightly_krepes.kernels import RBF, Linear
from lightly_krepes.landmarks import kmeanspp_landmarks


class CountingRBF(RBF):
    """RBF kernel that records the shape of every Gram block and diagonal."""

    def __init__(self, lengthscale: float) -> None:
        super().__init__(lengthscale=lengthscale)
        self.blocks: list[tuple[int, int]] = []
        self.diagonals: list[int] = []

    def _gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        self.blocks.append((x1.shape[0], x2.shape[0]))
        return super()._gram(x1, x2)

    def _diag(self, x: Tensor) -> Tensor:
        self.diagonals.append(x.shape[0])
        return super()._diag(x)


class TestKMeansPP:
    def test_kmeanspp_landmarks__distinct_valid_indices(self) -> None:
        x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
        indices = kmeanspp_landmarks(x, RBF(lengthscale=1.0), 12, seed=1)
        assert indices.dtype == torch.long
        assert indices.shape == (12,)
        assert indices.unique().numel() == 12
        assert int(indices.min()) >= 0 and int(indices.max()) < 50

    def test_kmeanspp_landmarks__deterministic_for_fixed_seed(self) -> None:
        x = torch.randn(60, 2, generator=torch.Generator().manual_seed(1))
        kernel = RBF(lengthscale=1.0)
        first = kmeanspp_landmarks(x, kernel, 8, seed=4)
        assert torch.equal(first, kmeanspp_landmarks(x, kernel, 8, seed=4))
        assert not torch.equal(first, kmeanspp_landmarks(x, kernel, 8, seed=5))

    def test_kmeanspp_landmarks__covers_separated_clusters(self) -> None:
        # Five tight, far-apart clusters of very different sizes: D^2 seeding puts
        # one landmark in each, which uniform sampling almost never does.
        gen = torch.Generator().manual_seed(0)
        sizes = [200, 3, 3, 3, 3]
        x = torch.cat(
            [
                10.0 * c + 0.01 * torch.randn(size, 2, generator=gen)
                for c, size in enumerate(sizes)
            ]
        )
        labels = torch.repeat_interleave(torch.arange(5), torch.tensor(sizes))
        for seed in range(3):
            indices = kmeanspp_landmarks(x, RBF(lengthscale=1.0), 5, seed=seed)
            assert labels[indices].unique().numel() == 5

    def test_kmeanspp_landmarks__evaluates_m_minus_1_columns(self) -> None:
        n, m = 40, 7
        x = torch.randn(n, 3, generator=torch.Generator().manual_seed(2))
        kernel = CountingRBF(lengthscale=1.0)
        kmeanspp_landmarks(x, kernel, m)
        assert kernel.diagonals == [n]
        assert kernel.blocks == [(n, 1)] * (m - 1)

    def test_kmeanspp_landmarks__warns_and_fills_when_distances_vanish(self) -> None:
        points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        x = points.repeat(4, 1)
        with pytest.warns(UserWarning, match=r"distances.*reached at 3 pivot"):
            indices = kmeanspp_landmarks(x, Linear(), 5, seed=0)
        assert indices.unique().numel() == 5
        # The three genuine centres are the three distinct points.
        assert x[indices[:3]].unique(dim=0).shape[0] == 3

    def test_kmeanspp_landmarks__rejects_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match=r"only n=4 samples\. Lower m"):
            kmeanspp_landmarks(torch.randn(4, 2), RBF(), 5)
        with pytest.raises(TypeError, match="kernel must be a lightly_krepes Kernel"):
            kmeanspp_landmarks(torch.randn(4, 2), "rbf", 2)  # type: ignore[arg-type]
