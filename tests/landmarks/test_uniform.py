from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lightly_krepes.landmarks import uniform_landmarks


class TestUniformLandmarks:
    @given(n=st.integers(1, 200), fraction=st.floats(0, 1), seed=st.integers(0, 99))
    def test_uniform_landmarks__distinct_valid_indices(
        self, n: int, fraction: float, seed: int
    ) -> None:
        m = max(1, round(fraction * n))
        indices = uniform_landmarks(n, m, seed=seed)
        assert indices.dtype == torch.long
        assert indices.shape == (m,)
        assert indices.unique().numel() == m
        assert int(indices.min()) >= 0 and int(indices.max()) < n

    def test_uniform_landmarks__deterministic_for_fixed_seed(self) -> None:
        first = uniform_landmarks(1000, 10, seed=1)
        assert torch.equal(first, uniform_landmarks(1000, 10, seed=1))
        assert not torch.equal(first, uniform_landmarks(1000, 10, seed=2))

    def test_uniform_landmarks__rejects_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match="at least 1"):
            uniform_landmarks(5, 0)
        with pytest.raises(ValueError, match=r"only n=5 samples"):
            uniform_landmarks(5, 6)
        with pytest.raises(TypeError, match="m must be an integer"):
            uniform_landmarks(5, 2.0)  # type: ignore[arg-type]
