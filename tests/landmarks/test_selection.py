from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from lightly_krepes.kernels import RBF, InducedRBF, Linear
from lightly_krepes.landmarks import LANDMARK_METHODS, select_landmarks


class RecordingDataset(Dataset[tuple[Tensor, int]]):
    """(sample, label) data set that records which items were read."""

    def __init__(self, x: Tensor) -> None:
        self.x = x
        self.read: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        self.read.append(index)
        return self.x[index], 0


class ListDataset(Dataset[object]):
    def __init__(self, items: list[object]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> object:
        return self.items[index]


def _data(seed: int, n: int, d: int = 3) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


METHODS = st.sampled_from(LANDMARK_METHODS)


class TestSelectLandmarks:
    @given(
        method=METHODS,
        n=st.integers(1, 30),
        fraction=st.floats(0, 1),
        seed=st.integers(0, 2**16),
        duplicates=st.integers(0, 10),
        double=st.booleans(),
    )
    def test_select_landmarks__distinct_valid_indices(
        self,
        method: str,
        n: int,
        fraction: float,
        seed: int,
        duplicates: int,
        double: bool,
    ) -> None:
        x = _data(seed, n)
        x = torch.cat([x, x[:duplicates]])
        x = x.double() if double else x
        m = max(1, round(fraction * len(x)))
        with warnings.catch_warnings():
            # Duplicates and m close to n legitimately reach the numerical rank.
            warnings.simplefilter("ignore", UserWarning)
            indices = select_landmarks(
                x, RBF(lengthscale=1.0), m, method=method, seed=seed, block_size=4
            )
        assert indices.dtype == torch.long
        assert indices.device.type == "cpu"
        assert indices.shape == (m,)
        assert indices.unique().numel() == m
        assert int(indices.min()) >= 0 and int(indices.max()) < len(x)

    @pytest.mark.parametrize("method", LANDMARK_METHODS)
    def test_select_landmarks__deterministic_for_fixed_seed(self, method: str) -> None:
        x = _data(0, 120)
        kernel = RBF(lengthscale=1.0)
        first = select_landmarks(x, kernel, 10, method=method, seed=3)
        assert torch.equal(
            first, select_landmarks(x, kernel, 10, method=method, seed=3)
        )
        other = select_landmarks(x, kernel, 10, method=method, seed=4)
        assert not torch.equal(first, other)

    @pytest.mark.parametrize("method", LANDMARK_METHODS)
    def test_select_landmarks__dataset_matches_tensor(self, method: str) -> None:
        x = _data(1, 50, d=4).reshape(50, 1, 2, 2)
        kernel = RBF(lengthscale=2.0)
        expected = select_landmarks(x, kernel, 8, method=method, seed=2)
        labelled = TensorDataset(x, torch.arange(50))
        assert torch.equal(
            select_landmarks(labelled, kernel, 8, method=method, seed=2), expected
        )
        plain = ListDataset(list(x))
        assert torch.equal(
            select_landmarks(plain, kernel, 8, method=method, seed=2), expected
        )

    @pytest.mark.parametrize("method", LANDMARK_METHODS)
    def test_select_landmarks__pool_maps_back_to_x(self, method: str) -> None:
        x = _data(2, 100)
        dataset = RecordingDataset(x)
        kernel = RBF(lengthscale=1.0)
        indices = select_landmarks(
            dataset, kernel, 6, method=method, seed=5, pool_size=30
        )
        assert indices.unique().numel() == 6
        assert int(indices.min()) >= 0 and int(indices.max()) < 100
        if method == "uniform":
            assert dataset.read == []
        else:
            # Only the pool is read, once per item, and the landmarks come from it.
            assert len(dataset.read) == 30 == len(set(dataset.read))
            assert set(indices.tolist()) <= set(dataset.read)
        from_tensor = select_landmarks(
            x, kernel, 6, method=method, seed=5, pool_size=30
        )
        assert torch.equal(indices, from_tensor)

    def test_select_landmarks__pool_larger_than_n_is_no_pool(self) -> None:
        x = _data(3, 40)
        kernel = RBF(lengthscale=1.0)
        assert torch.equal(
            select_landmarks(x, kernel, 5, seed=1, pool_size=40),
            select_landmarks(x, kernel, 5, seed=1),
        )

    def test_select_landmarks__pool_subsampling_still_beats_uniform(self) -> None:
        # Landmarks picked by RPCholesky in a pool of 120 still cover the 4 small,
        # far-away clusters that a uniform draw misses.
        gen = torch.Generator().manual_seed(0)
        sizes = [400, 30, 30, 30, 30]
        x = torch.cat(
            [
                10.0 * c + 0.1 * torch.randn(size, 2, generator=gen)
                for c, size in enumerate(sizes)
            ]
        )
        labels = torch.repeat_interleave(torch.arange(5), torch.tensor(sizes))
        for seed in range(3):
            indices = select_landmarks(
                x, RBF(lengthscale=1.0), 8, seed=seed, pool_size=120
            )
            assert labels[indices].unique().numel() == 5

    @pytest.mark.parametrize("method", ["rpcholesky", "kmeans++"])
    def test_select_landmarks__warns_below_numerical_rank(self, method: str) -> None:
        points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
        x = points.repeat(5, 1)
        with pytest.warns(UserWarning, match="numerical rank"):
            indices = select_landmarks(x, Linear(), 5, method=method)
        assert indices.unique().numel() == 5

    def test_select_landmarks__progress_bar(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        select_landmarks(_data(0, 30), RBF(), 4, method="kmeans++", progress=True)
        assert "k-means++" in capsys.readouterr().err

    def test_select_landmarks__ignores_autograd(self) -> None:
        x = _data(0, 30).requires_grad_()
        indices = select_landmarks(x, RBF(), 4)
        assert not indices.requires_grad

    @pytest.mark.parametrize("method", ["rpcholesky", "kmeans++", "leverage"])
    def test_select_landmarks__induced_rbf_on_cached_features(
        self, method: str
    ) -> None:
        # InducedRBF(Linear()) is RBF, selected through the wrapped kernel's cached
        # features instead of recomputed ones: the same landmarks.
        x = _data(0, 60, 4).double()
        cached = select_landmarks(x, InducedRBF(Linear(), 1.5), 12, method=method)
        direct = select_landmarks(x, RBF(1.5), 12, method=method)
        assert torch.equal(cached, direct)

    @pytest.mark.parametrize(
        ("x", "kwargs", "error", "match"),
        [
            (_data(0, 10), {"m": 0}, ValueError, "m must be at least 1"),
            (_data(0, 10), {"m": 11}, ValueError, r"only n=10 samples\. Lower m"),
            (
                _data(0, 10),
                {"method": "kmeans"},
                ValueError,
                r"Valid methods:.*'kmeans\+\+'",
            ),
            (torch.empty(0, 3), {}, ValueError, "x is empty"),
            (TensorDataset(torch.empty(0, 3)), {}, ValueError, "x is empty"),
            (
                torch.tensor([[0.0, float("nan")], [1.0, 2.0], [3.0, 4.0]]),
                {},
                ValueError,
                "NaN or infinite",
            ),
            (torch.ones(5, 2, dtype=torch.long), {}, TypeError, "dtype"),
            (
                _data(0, 10),
                {"pool_size": 2},
                ValueError,
                "pool_size=2 is smaller than m=3",
            ),
            (
                _data(0, 10),
                {"pool_size": 4.0},
                TypeError,
                "pool_size must be an integer",
            ),
            (
                _data(0, 10),
                {"block_size": 0},
                ValueError,
                "block_size must be at least 1",
            ),
            (_data(0, 10), {"kernel": "rbf"}, TypeError, "lightly_krepes Kernel"),
            (_data(0, 10), {"seed": "0"}, TypeError, "seed must be an integer"),
            (42, {}, TypeError, "tensor of shape"),
            (ListDataset([[1.0, 2.0]] * 4), {}, TypeError, "Item 0 of x is a list"),
            (ListDataset([("a", 1)] * 4), {}, TypeError, "first element is a str"),
            (
                ListDataset([torch.zeros(2), torch.zeros(3)] * 2),
                {},
                ValueError,
                "different shapes",
            ),
        ],
    )
    def test_select_landmarks__rejects_bad_input(
        self,
        x: object,
        kwargs: dict[str, object],
        error: type[Exception],
        match: str,
    ) -> None:
        arguments: dict[str, object] = {"kernel": RBF(), "m": 3, **kwargs}
        with pytest.raises(error, match=match):
            select_landmarks(x, **arguments)  # type: ignore[arg-type]

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    @pytest.mark.parametrize("method", LANDMARK_METHODS)
    def test_select_landmarks__independent_of_device(self, method: str) -> None:
        x = _data(0, 200).double()
        kernel = RBF(lengthscale=1.0)
        on_cpu = select_landmarks(x, kernel, 20, method=method, seed=1)
        on_gpu = select_landmarks(x.cuda(), kernel, 20, method=method, seed=1)
        assert on_gpu.device.type == "cpu"
        assert torch.equal(on_cpu, on_gpu)
