from __future__ import annotations

import math

import pytest
import torch
from lightly.transforms.multi_view_transform import MultiViewTransform
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightly_krepes.transforms import (
    GaussianNoise,
    RandomFeatureCorruption,
    TabularMultiViewTransform,
    TabularViewTransform,
)

N_REF, D = 50, 8


def _marginals() -> Tensor:
    # Entry (i, j) = 1000 j + i + 1: every value identifies its reference row and
    # column, and no value is <= 0.
    rows = torch.arange(N_REF, dtype=torch.float32)[:, None]
    cols = torch.arange(D, dtype=torch.float32)[None, :]
    return 1000.0 * cols + rows + 1.0


def _rows(n: int) -> Tensor:
    return -torch.rand(n, D, generator=torch.Generator().manual_seed(123)) - 1.0


class _RowDataset(Dataset[tuple[list[Tensor], int]]):
    def __init__(self, rows: Tensor, transform: MultiViewTransform) -> None:
        self.rows = rows
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[list[Tensor], int]:
        return self.transform(self.rows[index]), index


class TestRandomFeatureCorruption:
    @pytest.mark.parametrize("rate", [0.25, 0.6, 1.0])
    def test_call__values_come_from_column_marginals(self, rate: float) -> None:
        marginals = _marginals()
        x = _rows(64)
        out = RandomFeatureCorruption(marginals, rate, seed=0)(x)
        corrupted = out != x
        assert (corrupted.sum(1) == math.floor(rate * D + 0.5)).all()
        columns = torch.arange(D).expand_as(out)
        # Value 1000 j + i + 1 must sit in column j and name a valid reference row.
        assert (
            torch.div(out[corrupted], 1000, rounding_mode="floor") == columns[corrupted]
        ).all()
        reference_rows = out[corrupted] % 1000 - 1
        assert ((reference_rows >= 0) & (reference_rows < N_REF)).all()
        assert torch.equal(out[~corrupted], x[~corrupted])

    def test_call__rate_zero_is_identity(self) -> None:
        x = _rows(10)
        out = RandomFeatureCorruption(_marginals(), 0.0, seed=0)(x)
        assert torch.equal(out, x)
        assert out.data_ptr() != x.data_ptr()

    def test_call__rate_one_replaces_every_feature(self) -> None:
        marginals = _marginals()
        out = RandomFeatureCorruption(marginals, 1.0, seed=0)(_rows(200))
        assert (out > 0).all()
        for j in range(D):
            assert torch.isin(out[:, j], marginals[:, j]).all()

    def test_call__draws_reference_rows_independently_per_feature(self) -> None:
        out = RandomFeatureCorruption(_marginals(), 1.0, seed=1)(_rows(500))
        reference_rows = out % 1000
        same_row = (reference_rows == reference_rows[:, :1]).all(1)
        assert same_row.float().mean() < 0.01
        # Every reference row is used, roughly uniformly (500 * 8 / 50 = 80 each).
        counts = torch.bincount((reference_rows - 1).long().flatten(), minlength=N_REF)
        assert counts.min() > 40 and counts.max() < 130

    def test_call__groups_keep_one_hot_blocks_valid(self) -> None:
        generator = torch.Generator().manual_seed(0)
        numeric = torch.randn(N_REF, 3, generator=generator)
        categories = torch.randint(4, (N_REF,), generator=generator)
        one_hot = torch.nn.functional.one_hot(categories, 4).float()
        marginals = torch.cat(
            [numeric, one_hot, torch.randn(N_REF, 1, generator=generator)], 1
        )
        block = [3, 4, 5, 6]
        x = torch.cat(
            [
                torch.full((300, 3), 99.0),
                torch.zeros(300, 4),
                torch.full((300, 1), 99.0),
            ],
            1,
        )
        x[:, 3] = 1.0  # every input row is category 0
        corruption = RandomFeatureCorruption(marginals, 0.5, groups=[block], seed=0)
        assert corruption.num_groups == 5
        out = corruption(x)
        out_block = out[:, block]
        assert torch.equal(out_block.sum(1), torch.ones(300))
        assert ((out_block == 0) | (out_block == 1)).all()
        # Each block equals the block of some reference row (or the original).
        matches = (out_block[:, None, :] == one_hot[None, :, :]).all(-1).any(1)
        assert matches.all()
        # The block was corrupted as a whole in about half of the rows.
        changed = (out_block != x[:, block]).any(1)
        assert 0.2 < changed.float().mean() < 0.8
        assert ((out != x).sum(1) <= 3 + 4).all()

    def test_call__group_columns_share_one_reference_row(self) -> None:
        x = _rows(400)
        corruption = RandomFeatureCorruption(
            _marginals(), 0.5, groups=[[1, 2, 5]], seed=2
        )
        out = corruption(x)
        corrupted = out != x
        group = corrupted[:, [1, 2, 5]]
        assert (group.all(1) | ~group.any(1)).all()  # all or nothing
        assert 0.2 < group.all(1).float().mean() < 0.8
        reference_rows = (out % 1000)[group.all(1)][:, [1, 2, 5]]
        assert (reference_rows == reference_rows[:, :1]).all()
        # 6 groups at rate 0.5: 3 corrupted groups, i.e. 3 or 5 columns.
        assert set(corrupted.sum(1).tolist()) <= {3, 5}

    def test_call__single_row_and_batch(self) -> None:
        marginals = _marginals()
        row = _rows(1)[0]
        out_row = RandomFeatureCorruption(marginals, 0.5, seed=3)(row)
        out_batch = RandomFeatureCorruption(marginals, 0.5, seed=3)(row[None])
        assert out_row.shape == (D,)
        assert torch.equal(out_row, out_batch[0])

    def test_call__keeps_dtype(self) -> None:
        x = _rows(4).double()
        out = RandomFeatureCorruption(_marginals(), 0.5, seed=0)(x)
        assert out.dtype == torch.float64

    def test_call__deterministic_with_seed(self) -> None:
        marginals, x = _marginals(), _rows(32)
        first = RandomFeatureCorruption(marginals, 0.6, seed=7)(x)
        second = RandomFeatureCorruption(marginals, 0.6, seed=7)(x)
        other = RandomFeatureCorruption(marginals, 0.6, seed=8)(x)
        assert torch.equal(first, second)
        assert not torch.equal(first, other)
        generator = torch.Generator().manual_seed(7)
        third = RandomFeatureCorruption(marginals, 0.6, generator=generator)(x)
        assert torch.equal(first, third)

    @pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
    def test_init__rejects_rate_outside_unit_interval(self, rate: float) -> None:
        with pytest.raises(ValueError, match="corruption_rate"):
            RandomFeatureCorruption(_marginals(), rate)

    def test_init__rejects_bad_marginals(self) -> None:
        with pytest.raises(ValueError, match="marginals"):
            RandomFeatureCorruption(torch.randn(D), 0.5)
        with pytest.raises(ValueError, match="n_ref, d"):
            RandomFeatureCorruption(torch.randn(2, 3, 4), 0.5)
        with pytest.raises(ValueError, match="n_ref, d"):
            RandomFeatureCorruption(torch.randn(0, 3), 0.5)

    @pytest.mark.parametrize(
        ("groups", "match"),
        [([[0, 1], [1, 2]], "disjoint"), ([[0, D]], "out of range"), ([[]], "empty")],
    )
    def test_init__rejects_bad_groups(
        self, groups: list[list[int]], match: str
    ) -> None:
        with pytest.raises(ValueError, match=match):
            RandomFeatureCorruption(_marginals(), 0.5, groups=groups)

    def test_init__rejects_seed_and_generator(self) -> None:
        with pytest.raises(ValueError, match="not both"):
            RandomFeatureCorruption(
                _marginals(), 0.5, generator=torch.Generator(), seed=0
            )

    def test_call__rejects_wrong_dimensions(self) -> None:
        corruption = RandomFeatureCorruption(_marginals(), 0.5)
        with pytest.raises(ValueError, match="features"):
            corruption(torch.randn(4, D + 1))
        with pytest.raises(ValueError, match="shape"):
            corruption(torch.randn(2, 4, D))
        with pytest.raises(TypeError, match="dtype"):
            corruption(torch.ones(D, dtype=torch.long))


class TestGaussianNoise:
    def test_call__perturbs_only_given_columns(self) -> None:
        x = torch.zeros(4000, 5)
        out = GaussianNoise(std=0.1, columns=[0, 3], seed=0)(x)
        assert torch.equal(out[:, [1, 2, 4]], x[:, [1, 2, 4]])
        std = out[:, [0, 3]].std(0)
        assert torch.allclose(std, torch.full((2,), 0.1), rtol=0.05)

    def test_call__all_columns_by_default(self) -> None:
        out = GaussianNoise(std=1.0, seed=0)(torch.zeros(3))
        assert out.shape == (3,)
        assert (out != 0).all()

    def test_call__zero_std_is_identity(self) -> None:
        x = torch.randn(4, 3)
        assert torch.equal(GaussianNoise(std=0.0)(x), x)

    def test_call__deterministic_with_seed(self) -> None:
        x = torch.zeros(8, 3)
        assert torch.equal(GaussianNoise(seed=1)(x), GaussianNoise(seed=1)(x))
        assert not torch.equal(GaussianNoise(seed=1)(x), GaussianNoise(seed=2)(x))

    @pytest.mark.parametrize("std", [-0.1, float("inf"), float("nan")])
    def test_init__rejects_invalid_std(self, std: float) -> None:
        with pytest.raises(ValueError, match="std"):
            GaussianNoise(std=std)

    def test_init__rejects_repeated_columns(self) -> None:
        with pytest.raises(ValueError, match="distinct"):
            GaussianNoise(columns=[1, 1])

    def test_call__rejects_out_of_range_column(self) -> None:
        with pytest.raises(ValueError, match="columns"):
            GaussianNoise(columns=[5])(torch.zeros(3))


class TestTabularViewTransform:
    def test_call__corrupts_then_adds_noise(self) -> None:
        marginals = _marginals()
        x = _rows(16)
        transform = TabularViewTransform(marginals, 1.0, noise_std=0.01, seed=0)
        out = transform(x)
        assert (out > 0).all()  # every feature replaced by a positive marginal value
        assert not torch.isin(out, marginals).all()  # and then perturbed


class TestTabularMultiViewTransform:
    def test_call__inside_multi_view_transform(self) -> None:
        marginals = _marginals()
        transform = MultiViewTransform(
            transforms=[
                RandomFeatureCorruption(marginals, 0.6, seed=0),
                GaussianNoise(std=0.1, seed=1),
            ]
        )
        row = _rows(1)[0]
        views = transform(row)
        assert isinstance(views, list) and len(views) == 2
        assert all(view.shape == row.shape for view in views)
        assert (views[0] != row).sum() == 5

    def test_call__returns_list_of_views(self) -> None:
        transform = TabularMultiViewTransform(_marginals(), num_views=3, seed=0)
        row = _rows(1)[0]
        views = transform(row)
        assert isinstance(transform, MultiViewTransform)
        assert len(views) == 3
        assert all((view != row).sum() == 5 for view in views)
        assert not torch.equal(views[0], views[1])

    def test_call__include_original(self) -> None:
        transform = TabularMultiViewTransform(
            _marginals(), include_original=True, seed=0
        )
        row = _rows(1)[0]
        original, corrupted = transform(row)
        assert torch.equal(original, row)
        assert not torch.equal(corrupted, row)

    def test_call__deterministic_with_seed(self) -> None:
        row = _rows(1)[0]
        first = TabularMultiViewTransform(_marginals(), seed=4)(row)
        second = TabularMultiViewTransform(_marginals(), seed=4)(row)
        assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))

    def test_call__in_dataloader(self) -> None:
        transform = TabularMultiViewTransform(_marginals(), noise_std=0.1, seed=0)
        loader = DataLoader(_RowDataset(_rows(10), transform), batch_size=4)
        views, indices = next(iter(loader))
        assert len(views) == 2
        assert views[0].shape == (4, D) and views[1].shape == (4, D)
        assert indices.tolist() == [0, 1, 2, 3]

    def test_init__rejects_invalid_num_views(self) -> None:
        with pytest.raises(ValueError, match="num_views"):
            TabularMultiViewTransform(_marginals(), num_views=0)
