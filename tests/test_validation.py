from __future__ import annotations

import pytest
import torch

from lightly_krepes._validation import (
    check_finite,
    check_non_negative,
    check_positive_int,
)


class TestCheckFinite:
    def test_check_finite__accepts_large_values_whose_sum_overflows(self) -> None:
        x = torch.full((4, 3), 3e38)
        assert not torch.isfinite(x.sum())
        check_finite(x, "x")

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
    def test_check_finite__reports_every_non_finite_value(self, bad: float) -> None:
        x = torch.zeros(5, 2)
        x[1, 0] = bad
        x[3, 1] = bad
        with pytest.raises(ValueError, match="x contains 2 NaN or infinite"):
            check_finite(x, "x")

    def test_check_finite__opposite_infinities_do_not_cancel(self) -> None:
        x = torch.tensor([float("inf"), float("-inf"), 1.0])
        with pytest.raises(ValueError, match="2 NaN or infinite"):
            check_finite(x, "x")

    def test_check_finite__empty_tensor_passes(self) -> None:
        check_finite(torch.empty(0, 3), "x")


class TestCheckNonNegative:
    @pytest.mark.parametrize("good", [0.0, 0.5, 3])
    def test_check_non_negative__accepts_finite_values_from_zero(
        self, good: float
    ) -> None:
        check_non_negative(good, "t")

    @pytest.mark.parametrize("bad", [-1e-9, float("nan"), float("inf")])
    def test_check_non_negative__rejects_negative_and_non_finite(
        self, bad: float
    ) -> None:
        with pytest.raises(ValueError, match="t must be a finite number >= 0"):
            check_non_negative(bad, "t")


class TestCheckPositiveInt:
    def test_check_positive_int__returns_an_int(self) -> None:
        assert check_positive_int(3.0, "n") == 3
        assert isinstance(check_positive_int(3.0, "n"), int)

    @pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3", None])
    def test_check_positive_int__rejects_the_rest(self, bad: object) -> None:
        with pytest.raises(ValueError, match="n must be a positive integer"):
            check_positive_int(bad, "n")
