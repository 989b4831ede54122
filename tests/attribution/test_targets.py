from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from lightly_krepes.attribution import (
    Dimension,
    Direction,
    OwnDirection,
    Similarity,
    Target,
    as_target,
)

H = 3


def _outputs(n: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, H, generator=generator, dtype=torch.float64)


class TestAsTarget:
    def test_as_target__none_is_own_direction(self) -> None:
        assert isinstance(as_target(None), OwnDirection)

    @pytest.mark.parametrize(
        ("spec", "kind"),
        [
            (1, Dimension),
            ([0, 2], Dimension),
            (torch.tensor([0, 1]), Dimension),
            (torch.tensor(2), Dimension),
            (torch.ones(H, dtype=torch.float64), Direction),
            (Similarity(torch.ones(H)), Similarity),
        ],
    )
    def test_as_target__resolves_shorthands(self, spec: Any, kind: type) -> None:
        assert isinstance(as_target(spec), kind)

    @pytest.mark.parametrize(
        ("spec", "error", "match"),
        [
            ("similarity", TypeError, "Unknown target"),
            (0.5, TypeError, "Unknown target"),
            (True, TypeError, "bool"),
            (torch.ones(2, dtype=torch.bool), TypeError, "integer dimensions"),
            (torch.ones(2, 2, dtype=torch.long), ValueError, r"shape \(B,\)"),
        ],
    )
    def test_as_target__unknown_targets_raise(
        self, spec: Any, error: type[Exception], match: str
    ) -> None:
        with pytest.raises(error, match=match):
            as_target(spec)


class TestTargets:
    @given(seed=st.integers(0, 1000))
    def test_own_direction__unit_vectors_of_landmark_part(self, seed: int) -> None:
        outputs, offset = _outputs(5, seed), _outputs(1, seed + 1)[0]
        vectors = OwnDirection().vectors(outputs, offset)
        torch.testing.assert_close(
            (vectors * (outputs - offset)).sum(1), (outputs - offset).norm(dim=1)
        )
        torch.testing.assert_close(vectors.norm(dim=1), torch.ones(5).double())

    def test_own_direction__zero_part_gives_zero_vector(self) -> None:
        offset = torch.ones(H, dtype=torch.float64)
        vectors = OwnDirection().vectors(offset[None], offset)
        assert torch.equal(vectors, torch.zeros(1, H, dtype=torch.float64))
        assert OwnDirection().depends_on_input

    def test_dimension__shared_and_per_input(self) -> None:
        outputs = _outputs(3, 0)
        torch.testing.assert_close(
            Dimension(1).vectors(outputs, outputs[0]),
            torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64),
        )
        per_input = Dimension([2, 0, 1]).vectors(outputs, outputs[0])
        assert torch.equal(per_input, torch.eye(H, dtype=torch.float64)[[2, 0, 1]])
        assert not Dimension(1).depends_on_input
        assert Dimension([2, 0, 1]).depends_on_input
        with pytest.raises(ValueError, match="out of range"):
            Dimension(H).vectors(outputs, outputs[0])
        with pytest.raises(ValueError, match="one dimension per input"):
            Dimension([0, 1]).vectors(outputs, outputs[0])

    def test_direction_and_similarity__shapes_and_scaling(self) -> None:
        outputs = _outputs(4, 0)
        v = torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)
        assert torch.equal(Direction(v).vectors(outputs, outputs[0]), v[None])
        torch.testing.assert_close(
            Similarity(v).vectors(outputs, outputs[0]), (v / 5.0)[None]
        )
        per_input = _outputs(4, 1)
        assert Direction(per_input).depends_on_input
        torch.testing.assert_close(
            Direction(per_input).vectors(outputs, outputs[0]), per_input
        )
        with pytest.raises(ValueError, match="shape"):
            Direction(torch.ones(H + 1)).vectors(outputs, outputs[0])
        with pytest.raises(ValueError, match="shape"):
            Direction(torch.ones(2, H)).vectors(outputs, outputs[0])
        with pytest.raises(ValueError, match="zero norm"):
            Similarity(torch.zeros(H)).vectors(outputs, outputs[0])
        with pytest.raises(ValueError, match="NaN or infinite"):
            Direction(torch.full((H,), float("nan"))).vectors(outputs, outputs[0])

    def test_target__custom_subclass_is_accepted(self) -> None:
        class Last(Target):
            def vectors(self, outputs: Tensor, offset: Tensor) -> Tensor:
                return torch.eye(outputs.shape[1], dtype=outputs.dtype)[-1:]

        target = Last()
        assert as_target(target) is target
        assert not target.depends_on_input
