from __future__ import annotations

import pytest
import torch

from lightly_krepes._validation import check_finite


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
