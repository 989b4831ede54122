from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader, TensorDataset

from lightly_krepes.attribution import (
    Dimension,
    Direction,
    LandmarkExpansion,
    Similarity,
    streamed_top,
)
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF, EmpiricalNTK

M, H, D = 20, 4, 3


def _data(n: int, seed: int) -> Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed)).double()


def _expansion() -> LandmarkExpansion:
    backbone = KernelBackbone(RBF(1.5), _data(M, 0), out_dim=H)
    with torch.no_grad():
        backbone.linear.weight.normal_(generator=torch.Generator().manual_seed(1))
    return LandmarkExpansion(backbone)


def _entk_expansion() -> LandmarkExpansion:
    torch.manual_seed(2)
    mlp = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, H)).double().eval()
    return LandmarkExpansion(KernelBackbone(EmpiricalNTK(mlp), _data(M, 3), out_dim=H))


def _max_allocation(fn: object) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()  # type: ignore[operator]
    return max((e.cpu_memory_usage for e in prof.events()), default=0)


class TestStreamedTop:
    @given(
        n=st.integers(1, 70),
        batch_size=st.integers(1, 80),
        k=st.integers(1, M),
        proponents=st.booleans(),
    )
    def test_streamed_top__equals_dense_top(
        self, n: int, batch_size: int, k: int, proponents: bool
    ) -> None:
        expansion = _expansion()
        x = _data(n, 4)
        dense = expansion.top(x, k, proponents=proponents)
        top = streamed_top(
            expansion, x, k, proponents=proponents, batch_size=batch_size,
            progress=False,
        )  # fmt: skip
        assert top.indices.shape == top.influence_scores.shape == (n, k)
        assert torch.equal(top.indices, dense.indices)
        torch.testing.assert_close(
            top.influence_scores, dense.influence_scores, rtol=1e-12, atol=1e-12
        )

    def test_streamed_top__entk_dataset_and_loader(self) -> None:
        expansion = _entk_expansion()
        x = _data(45, 5)
        dense = expansion.top(x, 5)
        dataset = TensorDataset(x, torch.zeros(45))
        loader = DataLoader(dataset, batch_size=7)
        for data in (dataset, loader):
            top = streamed_top(expansion, data, 5, batch_size=8, progress=False)
            assert torch.equal(top.indices, dense.indices)
            torch.testing.assert_close(top.influence_scores, dense.influence_scores)

    @pytest.mark.parametrize("kind", ["dimension", "direction", "similarity"])
    def test_streamed_top__per_input_target_is_sliced(self, kind: str) -> None:
        expansion = _expansion()
        x = _data(30, 6)
        gen = torch.Generator().manual_seed(7)
        target = {
            "dimension": Dimension(torch.randint(0, H, (30,), generator=gen)),
            "direction": Direction(torch.randn(30, H, generator=gen).double()),
            "similarity": Similarity(torch.randn(30, H, generator=gen).double()),
        }[kind]
        dense = expansion.top(x, 4, target)
        top = streamed_top(expansion, x, 4, target, batch_size=8, progress=False)
        assert torch.equal(top.indices, dense.indices)
        torch.testing.assert_close(top.influence_scores, dense.influence_scores)

    def test_streamed_top__per_input_target_of_wrong_length_raises(self) -> None:
        target = Direction(torch.randn(29, H).double())
        with pytest.raises(ValueError, match=r"29 per-input entries .* 30 inputs"):
            streamed_top(_expansion(), _data(30, 6), 3, target, progress=False)

    def test_streamed_top__backbone_with_step_weights(self) -> None:
        expansion = _expansion()
        weights = torch.randn(M, H, generator=torch.Generator().manual_seed(8))
        x = _data(25, 9)
        dense = LandmarkExpansion(expansion.backbone, weights.double()).top(x, 3)
        top = streamed_top(
            expansion.backbone, x, 3, weights=weights.double(), batch_size=10,
            progress=False,
        )  # fmt: skip
        assert torch.equal(top.indices, dense.indices)

    def test_streamed_top__never_allocates_n_by_m(self) -> None:
        expansion = _expansion()
        n, batch_size, k = 4000, 50, 3
        x = _data(n, 10)
        full = n * M * 8  # one float64 (n, m) score matrix
        streamed = _max_allocation(
            lambda: streamed_top(expansion, x, k, batch_size=batch_size, progress=False)
        )
        dense = _max_allocation(lambda: expansion.top(x, k))
        # The dense path does allocate (n, m): the measurement can see it.
        assert dense >= full
        # Largest buffer streamed: the (n, k) result or a (batch_size, m) block.
        assert streamed <= max(n * k * 8, 4 * batch_size * M * 8) < full

    @pytest.mark.parametrize(("k", "batch_size"), [(0, 8), (M + 1, 8), (3, 0)])
    def test_streamed_top__bad_arguments_raise(self, k: int, batch_size: int) -> None:
        with pytest.raises(ValueError, match=r"k must be|batch_size must be"):
            streamed_top(_expansion(), _data(5, 1), k, batch_size=batch_size)
