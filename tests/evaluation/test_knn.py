from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from lightly_krepes.evaluation import knn_accuracy


def _data(n: int, seed: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(3, (n,), generator=generator)
    centers = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    x = centers[labels] + noise * torch.randn(n, 3, generator=generator)
    return x.double(), labels


class TestKnnAccuracy:
    def test_knn_accuracy__easy_problem(self) -> None:
        x, y = _data(300, seed=0, noise=0.05)
        x_test, y_test = _data(100, seed=1, noise=0.05)
        assert knn_accuracy(x, y, x_test, y_test, k=20) == 1.0

    def test_knn_accuracy__matches_sklearn_weighted_cosine_knn(self) -> None:
        x, y = _data(300, seed=0, noise=0.8)
        x_test, y_test = _data(200, seed=1, noise=0.8)
        k, temperature = 25, 0.1
        ours = knn_accuracy(x, y, x_test, y_test, k=k, temperature=temperature)
        sklearn_knn = KNeighborsClassifier(
            n_neighbors=k,
            metric="cosine",
            algorithm="brute",
            weights=lambda d: np.exp((1.0 - d) / temperature),
        ).fit(x.numpy(), y.numpy())
        expected = sklearn_knn.score(x_test.numpy(), y_test.numpy())
        assert 0.4 < expected < 0.95  # a problem where the two could disagree
        assert ours == pytest.approx(expected, abs=1.0 / 200)

    def test_knn_accuracy__batching_does_not_change_result(self) -> None:
        x, y = _data(200, seed=0, noise=0.8)
        x_test, y_test = _data(101, seed=1, noise=0.8)
        full = knn_accuracy(x, y, x_test, y_test, k=15)
        batched = knn_accuracy(x, y, x_test, y_test, k=15, batch_size=7)
        assert full == batched

    def test_knn_accuracy__accepts_numpy(self) -> None:
        x, y = _data(100, seed=0, noise=0.3)
        ours = knn_accuracy(x, y, x, y, k=10)
        assert knn_accuracy(x.numpy(), y.numpy(), x.numpy(), y.numpy(), k=10) == ours

    def test_knn_accuracy__float32_features(self) -> None:
        x, y = _data(100, seed=0, noise=0.05)
        assert knn_accuracy(x.float(), y, x.float(), y, k=5) == 1.0

    @pytest.mark.parametrize("k", [0, 101, 2.5])
    def test_knn_accuracy__rejects_invalid_k(self, k: int) -> None:
        x, y = _data(100, seed=0, noise=0.1)
        with pytest.raises(ValueError, match="k must"):
            knn_accuracy(x, y, x, y, k=k)

    def test_knn_accuracy__rejects_invalid_temperature(self) -> None:
        x, y = _data(10, seed=0, noise=0.1)
        with pytest.raises(ValueError, match="temperature"):
            knn_accuracy(x, y, x, y, k=3, temperature=0.0)

    def test_knn_accuracy__rejects_mismatched_lengths(self) -> None:
        x, y = _data(10, seed=0, noise=0.1)
        with pytest.raises(ValueError, match="rows"):
            knn_accuracy(x, y[:-1], x, y, k=3)

    def test_knn_accuracy__rejects_bad_labels(self) -> None:
        x, y = _data(10, seed=0, noise=0.1)
        with pytest.raises(TypeError, match="integer"):
            knn_accuracy(x, y.float(), x, y, k=3)
        with pytest.raises(ValueError, match="non-negative"):
            knn_accuracy(x, y - 1, x, y, k=3)
