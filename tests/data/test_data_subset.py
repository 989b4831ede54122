from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightly_krepes.data import select_indices


class TestSelectIndices:
    def test_select_indices__keeps_everything(self) -> None:
        labels = np.array([2, 0, 1], dtype=np.int64)
        assert select_indices(labels, None).tolist() == [0, 1, 2]
        assert select_indices(labels, 5).tolist() == [0, 1, 2]

    def test_select_indices__stratified(self) -> None:
        labels = np.repeat(np.arange(3), [50, 30, 20]).astype(np.int64)
        idx = select_indices(labels, 10, seed=0)
        assert np.bincount(labels[idx]).tolist() == [5, 3, 2]
        assert np.all(np.diff(idx) > 0)

    def test_select_indices__remainder_to_largest_fraction(self) -> None:
        labels = np.repeat(np.arange(3), [4, 4, 2]).astype(np.int64)
        # Exact shares 2.8, 2.8, 1.4: floors 2, 2, 1 and two extra samples for
        # the two largest fractional parts (ties to the smaller label).
        idx = select_indices(labels, 7, seed=0)
        assert np.bincount(labels[idx]).tolist() == [3, 3, 1]

    def test_select_indices__seeded(self) -> None:
        labels = np.arange(100, dtype=np.int64) % 4
        a = select_indices(labels, 20, seed=1)
        assert np.array_equal(a, select_indices(labels, 20, seed=1))
        assert not np.array_equal(a, select_indices(labels, 20, seed=2))

    def test_select_indices__not_stratified(self) -> None:
        labels = np.zeros(50, dtype=np.int64)
        idx = select_indices(labels, 7, seed=0, stratify=False)
        assert idx.shape == (7,)
        assert len(set(idx.tolist())) == 7

    def test_select_indices__negative(self) -> None:
        with pytest.raises(ValueError, match="non-negative"):
            select_indices(np.zeros(3, dtype=np.int64), -1)

    @settings(max_examples=50, deadline=None)
    @given(
        labels=st.lists(st.integers(0, 4), min_size=1, max_size=60),
        fraction=st.floats(0.0, 1.0),
        seed=st.integers(0, 10),
    )
    def test_select_indices__proportions(
        self, labels: list[int], fraction: float, seed: int
    ) -> None:
        y = np.array(labels, dtype=np.int64)
        k = round(fraction * len(y))
        idx = select_indices(y, k, seed=seed)
        assert idx.shape == (k,)
        assert len(set(idx.tolist())) == k
        assert np.all(np.diff(idx) > 0)
        counts = np.bincount(y, minlength=5)
        chosen = np.bincount(y[idx], minlength=5)
        assert np.all(np.abs(chosen - k * counts / len(y)) < 1.0 + 1e-9)
