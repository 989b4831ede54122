from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from lightly_krepes.evaluation import linear_probe


def _blobs(
    n_per_class: int, num_classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = 6.0 * np.eye(num_classes, 5)
    x = np.concatenate([rng.normal(size=(n_per_class, 5)) + c for c in centers])
    y = np.repeat(np.arange(num_classes), n_per_class)
    return x, y


class TestLinearProbe:
    def test_linear_probe__separable_data(self) -> None:
        x, y = _blobs(100)
        x_test, y_test = _blobs(50, seed=1)
        result = linear_probe(x, y, x_test, y_test, label_fraction=0.1)
        assert result.accuracy > 0.97
        assert result.num_labeled == 30

    def test_linear_probe__digits(self) -> None:
        x, y = load_digits(return_X_y=True)
        result = linear_probe(
            x[:1200], y[:1200], x[1200:], y[1200:], label_fraction=0.2
        )
        assert 0.8 < result.accuracy <= 1.0

    def test_linear_probe__random_labels_at_chance(self) -> None:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(400, 5))
        y = rng.integers(2, size=400)
        result = linear_probe(x[:200], y[:200], x[200:], y[200:], label_fraction=1.0)
        assert 0.35 < result.accuracy < 0.65

    def test_linear_probe__stratified_fraction_keeps_all_classes(self) -> None:
        rng = np.random.default_rng(0)
        counts = [300, 150, 100, 60, 40, 30, 20, 20, 20, 10]
        y = np.repeat(np.arange(10), counts)
        x = rng.normal(size=(len(y), 4))
        result = linear_probe(x, y, x[:5], y[:5], label_fraction=0.1)
        labeled = y[result.labeled_indices]
        assert result.num_labeled == len(result.labeled_indices) == 75
        assert len(np.unique(result.labeled_indices)) == 75
        assert set(labeled.tolist()) == set(range(10))
        expected = 0.1 * np.array(counts) * 75 / 75
        assert np.all(np.abs(np.bincount(labeled, minlength=10) - expected) <= 1)

    def test_linear_probe__deterministic_in_seed(self) -> None:
        x, y = _blobs(100)
        first = linear_probe(x, y, x, y, label_fraction=0.2, seed=3)
        second = linear_probe(x, y, x, y, label_fraction=0.2, seed=3)
        other = linear_probe(x, y, x, y, label_fraction=0.2, seed=4)
        assert np.array_equal(first.labeled_indices, second.labeled_indices)
        assert first.accuracy == second.accuracy
        assert not np.array_equal(first.labeled_indices, other.labeled_indices)

    def test_linear_probe__full_fraction_uses_all_rows(self) -> None:
        x, y = _blobs(20)
        result = linear_probe(x, y, x, y, label_fraction=1.0)
        assert np.array_equal(result.labeled_indices, np.arange(60))

    def test_linear_probe__tensors_and_arrays_agree(self) -> None:
        x, y = _blobs(40)
        from_numpy = linear_probe(x, y, x, y, label_fraction=0.5)
        from_torch = linear_probe(
            torch.from_numpy(x),
            torch.from_numpy(y),
            torch.from_numpy(x),
            torch.from_numpy(y),
            label_fraction=0.5,
        )
        assert from_numpy.accuracy == from_torch.accuracy
        proba = from_torch.classifier.predict_proba(x)
        assert proba.shape == (120, 3)

    @pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5, float("nan")])
    def test_linear_probe__rejects_invalid_fraction(self, fraction: float) -> None:
        x, y = _blobs(10)
        with pytest.raises(ValueError, match="label_fraction"):
            linear_probe(x, y, x, y, label_fraction=fraction)

    def test_linear_probe__rejects_too_small_fraction(self) -> None:
        x, y = _blobs(10)
        with pytest.raises(ValueError, match="fewer than the 3 classes"):
            linear_probe(x, y, x, y, label_fraction=0.05)

    def test_linear_probe__rejects_mismatched_lengths(self) -> None:
        x, y = _blobs(10)
        with pytest.raises(ValueError, match="rows"):
            linear_probe(x, y[:-1], x, y)
        with pytest.raises(ValueError, match="dimension"):
            linear_probe(x, y, x[:, :3], y)

    def test_linear_probe__rejects_non_finite(self) -> None:
        x, y = _blobs(10)
        x[0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            linear_probe(x, y, x, y)

    def test_linear_probe__rejects_lists(self) -> None:
        x, y = _blobs(10)
        with pytest.raises(TypeError, match="numpy"):
            linear_probe(list(x), y, x, y)  # type: ignore[arg-type]
