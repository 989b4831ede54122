from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.special import softmax

from lightly_krepes.evaluation import surrogate_fidelity


def _pairwise_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall tau-a by counting pairs (equals tau-b without ties)."""
    n = len(a)
    score = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            score += np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    return score / (n * (n - 1) / 2)


class TestSurrogateFidelity:
    def test_surrogate_fidelity__identical_predictions(self) -> None:
        rng = np.random.default_rng(0)
        logits = rng.normal(size=(50, 4))
        labels = rng.integers(4, size=50)
        result = surrogate_fidelity(logits, logits, labels)
        assert result.kendall_tau == pytest.approx(1.0)
        assert result.agreement == 1.0
        assert result.accuracy_gap == 0.0
        assert result.kernel_accuracy == float((logits.argmax(1) == labels).mean())

    def test_surrogate_fidelity__matches_pairwise_count(self) -> None:
        rng = np.random.default_rng(1)
        kernel = rng.normal(size=(40, 3))
        network = kernel + rng.normal(size=(40, 3))
        labels = rng.integers(3, size=40)
        result = surrogate_fidelity(kernel, network, labels)
        rows = np.arange(40)
        expected = _pairwise_tau(
            softmax(kernel, axis=1)[rows, labels],
            softmax(network, axis=1)[rows, labels],
        )
        assert result.kendall_tau == pytest.approx(expected)
        assert 0.0 < result.kendall_tau < 1.0
        assert 0.0 <= result.kendall_pvalue <= 1.0

    def test_surrogate_fidelity__reversed_ranking(self) -> None:
        p = np.linspace(0.1, 0.9, 9)
        kernel = np.stack([1 - p, p], axis=1)
        network = np.stack([p, 1 - p], axis=1)
        labels = np.ones(9, dtype=np.int64)
        result = surrogate_fidelity(kernel, network, labels, scores="probabilities")
        assert result.kendall_tau == pytest.approx(-1.0)
        assert result.kernel_accuracy == pytest.approx(4 / 9)
        assert result.network_accuracy == pytest.approx(4 / 9)
        assert result.agreement == pytest.approx(1 / 9)  # only the tie at 0.5 agrees

    def test_surrogate_fidelity__accuracies_and_gap(self) -> None:
        labels = np.array([0, 1, 1, 0])
        kernel = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        network = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
        result = surrogate_fidelity(kernel, network, labels)
        assert result.kernel_accuracy == 0.5
        assert result.network_accuracy == 1.0
        assert result.accuracy_gap == 0.5
        assert result.agreement == 0.5

    def test_surrogate_fidelity__binary_scores_match_two_columns(self) -> None:
        rng = np.random.default_rng(2)
        kernel = rng.normal(size=30)
        network = kernel + 0.5 * rng.normal(size=30)
        labels = rng.integers(2, size=30)
        one_column = surrogate_fidelity(kernel, network, labels)
        two_columns = surrogate_fidelity(
            np.stack([np.zeros(30), kernel], 1),
            np.stack([np.zeros(30), network], 1),
            labels,
        )
        for field in dataclasses.fields(one_column):
            assert getattr(one_column, field.name) == pytest.approx(
                getattr(two_columns, field.name)
            )
        assert one_column.kendall_tau > 0.5

    def test_surrogate_fidelity__accepts_tensors(self) -> None:
        logits = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
        labels = torch.randint(3, (20,), generator=torch.Generator().manual_seed(1))
        result = surrogate_fidelity(logits, 2 * logits, labels)
        assert result.agreement == 1.0

    def test_surrogate_fidelity__constant_scores_give_nan_tau(self) -> None:
        network = np.random.default_rng(0).random((5, 2))
        result = surrogate_fidelity(np.zeros((5, 2)), network, np.zeros(5, dtype=int))
        assert math.isnan(result.kendall_tau)

    def test_surrogate_fidelity__rejects_shape_mismatch(self) -> None:
        with pytest.raises(ValueError, match="same shape"):
            surrogate_fidelity(
                np.zeros((5, 2)), np.zeros((5, 3)), np.zeros(5, dtype=int)
            )
        with pytest.raises(ValueError, match="labels"):
            surrogate_fidelity(
                np.zeros((5, 2)), np.zeros((5, 2)), np.zeros(4, dtype=int)
            )

    def test_surrogate_fidelity__rejects_bad_labels(self) -> None:
        with pytest.raises(ValueError, match=r"\[0, 2\)"):
            surrogate_fidelity(np.zeros((3, 2)), np.zeros((3, 2)), np.array([0, 1, 2]))
        with pytest.raises(ValueError, match="integer"):
            surrogate_fidelity(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3))

    def test_surrogate_fidelity__rejects_unknown_score_kind(self) -> None:
        with pytest.raises(ValueError, match="scores"):
            surrogate_fidelity(
                np.zeros((3, 2)),
                np.zeros((3, 2)),
                np.zeros(3, dtype=int),
                scores="x",  # type: ignore[arg-type]
            )
