from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from lightly.data import LightlyDataset
from lightly.transforms.multi_view_transform import MultiViewTransform
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset
from torchvision import transforms as T

from lightly_krepes._inputs import (
    collect_pool,
    first_tensor,
    gather,
    is_map_style,
    iter_batches,
    iter_split_batches,
    num_samples,
    pool_indices,
    split_batch,
)
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.backbone import collect_pool as backbone_collect_pool
from lightly_krepes.evaluation import extract_features
from lightly_krepes.kernels import RBF
from lightly_krepes.landmarks import select_landmarks
from lightly_krepes.nystrom import Nystrom


class PlainDataset:
    """Map-style data set that is not a torch Dataset; records the items read."""

    def __init__(self, x: Tensor, labels: Tensor | None = None) -> None:
        self.x = x
        self.labels = labels
        self.read: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> object:
        if index >= len(self.x):
            raise IndexError(index)
        self.read.append(index)
        if self.labels is None:
            return self.x[index]
        return self.x[index], int(self.labels[index])


class ItemStream(IterableDataset[tuple[Tensor, int]]):
    def __init__(self, x: Tensor) -> None:
        self.x = x

    def __iter__(self) -> Iterator[tuple[Tensor, int]]:
        return ((row, i) for i, row in enumerate(self.x))


def _data(seed: int, n: int, d: int = 3) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two class folders of 4 random 8x8 RGB PNGs each."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir()
        for i in range(4):
            pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def _stacked(dataset: LightlyDataset) -> tuple[Tensor, Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([x for x, _, _ in items]), torch.tensor([y for _, y, _ in items])


class TestFirstTensor:
    def test_first_tensor__items_and_batches(self) -> None:
        x = torch.zeros(2, 3)
        assert first_tensor(x) is x
        assert first_tensor((x, 1, "f.png")) is x
        assert first_tensor([x, torch.ones(2)]) is x
        assert first_tensor(([x, x + 1], 0, "f.png")) is x
        assert first_tensor(((x, x + 1), torch.zeros(2), ["a", "b"])) is x

    def test_first_tensor__rejects_pil_with_advice(self) -> None:
        image = Image.new("RGB", (4, 4))
        for item in (image, (image, 0, "f.png"), ([image, image], 0, "f.png")):
            with pytest.raises(TypeError, match=r"PIL image.*ToTensor"):
                first_tensor(item)

    @pytest.mark.parametrize(
        ("item", "match"),
        [
            (np.zeros(3), r"ndarray.*torch\.as_tensor"),
            (("a", 1), "first element is a str"),
            ([], "is a list"),
            ({"x": torch.zeros(2)}, "is a dict"),
        ],
    )
    def test_first_tensor__rejects_items_without_tensor(
        self, item: object, match: str
    ) -> None:
        with pytest.raises(TypeError, match=match):
            first_tensor(item)


class TestSplitBatch:
    def test_split_batch__labels_only_when_a_tensor_per_sample(self) -> None:
        x, y = torch.zeros(3, 2), torch.arange(3)
        assert split_batch(x) == (x, None)
        inputs, labels = split_batch((x, y, ["a", "b", "c"]))
        assert inputs is x and labels is y
        assert split_batch((x, ["a", "b", "c"]))[1] is None
        assert split_batch(([x, x], y))[1] is y


class TestIsMapStyle:
    def test_is_map_style__kinds(self, image_dir: Path) -> None:
        x = _data(0, 4)
        assert is_map_style(TensorDataset(x))
        assert is_map_style(PlainDataset(x))
        assert is_map_style(LightlyDataset(input_dir=str(image_dir)))
        assert is_map_style([(x[0], 0)]) and is_map_style((x[0],))
        for other in (x, iter([x]), DataLoader(TensorDataset(x)), ItemStream(x)):
            assert not is_map_style(other)


class TestNumSamples:
    def test_num_samples__known_and_unknown(self, image_dir: Path) -> None:
        x = _data(0, 5)
        assert num_samples(x) == 5
        assert num_samples(PlainDataset(x)) == 5
        assert num_samples(LightlyDataset(input_dir=str(image_dir))) == 8
        assert num_samples(DataLoader(TensorDataset(x), batch_size=2)) is None
        with pytest.raises(TypeError, match="got int"):
            num_samples(3)


class TestIterBatches:
    def test_iter_batches__same_samples_from_every_kind(self) -> None:
        x, y = _data(0, 11), torch.arange(11) % 3
        sources: list[object] = [
            x,
            TensorDataset(x, y),
            PlainDataset(x, y),
            DataLoader(TensorDataset(x, y), batch_size=4),
            iter(torch.split(x, 5)),
            list(zip(x, y, strict=True)),
            ItemStream(x),
        ]
        for data in sources:
            batches = list(iter_batches(data, batch_size=4))
            assert all(len(b) <= 5 for b in batches)
            torch.testing.assert_close(torch.cat(batches), x)

    def test_iter_split_batches__labels_from_items_and_batches(self) -> None:
        x, y = _data(0, 7), torch.arange(7) % 2
        for data in (
            PlainDataset(x, y),
            TensorDataset(x, y),
            DataLoader(TensorDataset(x, y), batch_size=3),
        ):
            labels = [b for _, b in iter_split_batches(data, batch_size=3)]
            assert all(b is not None for b in labels)
            assert torch.equal(torch.cat(labels), y)  # type: ignore[arg-type]
        assert all(b is None for _, b in iter_split_batches(PlainDataset(x), 3))

    def test_iter_batches__lightly_dataset_is_read_per_image(
        self, image_dir: Path
    ) -> None:
        dataset = LightlyDataset(input_dir=str(image_dir), transform=T.ToTensor())
        expected, labels = _stacked(dataset)
        assert expected.shape == (8, 3, 8, 8)
        batches = list(iter_split_batches(dataset, batch_size=3))
        assert [len(x) for x, _ in batches] == [3, 3, 2]
        torch.testing.assert_close(torch.cat([x for x, _ in batches]), expected)
        assert torch.equal(torch.cat([y for _, y in batches]), labels)  # type: ignore[misc]

    def test_iter_batches__multi_view_items_and_batches_give_first_view(
        self, image_dir: Path
    ) -> None:
        views = MultiViewTransform([T.ToTensor(), T.Compose([T.ToTensor(), T.Pad(1)])])
        dataset = LightlyDataset(input_dir=str(image_dir), transform=views)
        expected, _ = _stacked(
            LightlyDataset(input_dir=str(image_dir), transform=T.ToTensor())
        )
        from_items = torch.cat(list(iter_batches(dataset, batch_size=5)))
        from_loader = torch.cat(
            list(iter_batches(DataLoader(dataset, batch_size=5), batch_size=5))
        )
        torch.testing.assert_close(from_items, expected)
        torch.testing.assert_close(from_loader, expected)

    def test_iter_batches__bad_arguments_fail_at_the_call(self) -> None:
        with pytest.raises(ValueError, match="batch_size must be a positive"):
            iter_batches(_data(0, 3), batch_size=0)
        with pytest.raises(TypeError, match="got int"):
            iter_batches(3, batch_size=2)

    @pytest.mark.parametrize(
        ("data", "error", "match"),
        [
            (torch.empty(0, 3), ValueError, "empty"),
            (TensorDataset(torch.empty(0, 3)), ValueError, "empty"),
            (
                DataLoader(TensorDataset(_data(0, 3)), batch_size=4, drop_last=True),
                ValueError,
                "empty",
            ),
            ([], ValueError, "empty"),
            (torch.tensor([[0.0, float("inf")]]), ValueError, "NaN or infinite"),
            (iter([torch.zeros(2, 3), torch.zeros(2, 4)]), ValueError, r"\(4,\)"),
            (iter([torch.zeros(2, 3), ["a"]]), TypeError, "Expected batches"),
            ([torch.zeros(3), ("a", 0)], TypeError, "Item 1 of data is a tuple"),
            (np.zeros((3, 2)), TypeError, "torch.as_tensor"),
            ("images/", TypeError, "got str"),
        ],
    )
    def test_iter_batches__rejects_bad_data(
        self, data: object, error: type[Exception], match: str
    ) -> None:
        with pytest.raises(error, match=match):
            list(iter_batches(data, batch_size=2))

    def test_iter_batches__ragged_items_say_which(self) -> None:
        class Ragged:
            def __len__(self) -> int:
                return 3

            def __getitem__(self, index: int) -> Tensor:
                return torch.zeros(2 + (index == 2))

        with pytest.raises(ValueError, match=r"different shapes: item 2 has shape"):
            list(iter_batches(Ragged(), batch_size=3))

    def test_iter_batches__pil_items_ask_for_to_tensor(self, image_dir: Path) -> None:
        dataset = LightlyDataset(input_dir=str(image_dir))
        with pytest.raises(TypeError, match=r"Item 0 of data holds a PIL image"):
            list(iter_batches(dataset, batch_size=2))


class TestPoolIndices:
    @given(
        n=st.integers(1, 200),
        pool_size=st.one_of(st.none(), st.integers(1, 250)),
        seed=st.integers(0, 2**31),
    )
    def test_pool_indices__sorted_distinct_and_deterministic(
        self, n: int, pool_size: int | None, seed: int
    ) -> None:
        indices = pool_indices(n, pool_size, seed)
        if pool_size is None or pool_size >= n:
            assert indices is None
            return
        assert indices is not None
        assert len(indices) == pool_size == len(set(indices.tolist()))
        assert torch.equal(indices, indices.sort().values)
        assert int(indices.min()) >= 0 and int(indices.max()) < n
        assert torch.equal(indices, pool_indices(n, pool_size, seed))  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("pool_size", "error", "match"),
        [
            (0, ValueError, "positive"),
            (2.0, TypeError, "integer"),
            (True, TypeError, "integer"),
        ],
    )
    def test_pool_indices__rejects_bad_pool_size(
        self, pool_size: object, error: type[Exception], match: str
    ) -> None:
        with pytest.raises(error, match=match):
            pool_indices(10, pool_size, 0)  # type: ignore[arg-type]


class TestCollectPool:
    def test_collect_pool__indices_locate_the_pool(self) -> None:
        x = _data(1, 50)
        pool, indices = collect_pool(x, pool_size=12, seed=3)
        assert pool.shape == (12, 3) and indices.dtype == torch.long
        assert torch.equal(pool, x[indices])
        everything, all_indices = collect_pool(x, pool_size=None, seed=3)
        assert everything is x and torch.equal(all_indices, torch.arange(50))

    def test_collect_pool__dataset_reads_only_the_pool_once(self) -> None:
        x = _data(1, 50)
        dataset = PlainDataset(x, torch.zeros(50))
        pool, indices = collect_pool(dataset, pool_size=12, seed=3)
        assert sorted(dataset.read) == indices.tolist()
        assert torch.equal(pool, x[indices])

    def test_collect_pool__loader_pool_is_the_stream_prefix(self) -> None:
        x = _data(1, 50)
        loader = DataLoader(TensorDataset(x), batch_size=8)
        pool, indices = collect_pool(loader, pool_size=12, seed=3)
        assert torch.equal(pool, x[:12]) and torch.equal(indices, torch.arange(12))
        assert len(collect_pool(loader, None, seed=0)[0]) == 50

    def test_collect_pool__one_pool_for_one_seed_at_every_call_site(
        self, image_dir: Path
    ) -> None:
        dataset = LightlyDataset(input_dir=str(image_dir), transform=T.ToTensor())
        x, _ = _stacked(dataset)
        kernel = RBF(lengthscale=20.0)
        for seed in range(3):
            pool, indices = collect_pool(x, pool_size=5, seed=seed)
            from_dataset, dataset_indices = collect_pool(dataset, 5, seed=seed)
            assert torch.equal(indices, dataset_indices)
            torch.testing.assert_close(from_dataset, pool)
            assert torch.equal(backbone_collect_pool(x, 5, seed)[1], indices)
            # select_landmarks' pool and KernelBackbone.from_data's are this pool,
            # and the landmarks picked within it agree.
            selected = select_landmarks(x, kernel, 3, seed=seed, pool_size=5)
            in_dataset = select_landmarks(dataset, kernel, 3, seed=seed, pool_size=5)
            backbone = KernelBackbone.from_data(
                kernel, dataset, num_landmarks=3, out_dim=2, pool_size=5, seed=seed
            )
            assert set(selected.tolist()) <= set(indices.tolist())
            assert torch.equal(selected, in_dataset)
            assert torch.equal(backbone.landmark_indices, selected)  # type: ignore[arg-type]
            torch.testing.assert_close(backbone.nystrom.landmarks, x[selected])

    @pytest.mark.parametrize(
        ("data", "kwargs", "error", "match"),
        [
            (_data(0, 5), {"pool_size": 0}, ValueError, "pool_size must be positive"),
            (torch.zeros(5, 2, dtype=torch.long), {}, TypeError, "dtype"),
            (TensorDataset(torch.empty(0, 2)), {}, ValueError, "empty"),
            (torch.tensor(1.0), {}, ValueError, "0-dimensional"),
            (PlainDataset(torch.full((3, 2), float("nan"))), {}, ValueError, "NaN"),
        ],
    )
    def test_collect_pool__rejects_bad_input(
        self,
        data: object,
        kwargs: dict[str, object],
        error: type[Exception],
        match: str,
    ) -> None:
        arguments: dict[str, object] = {"pool_size": 2, "seed": 0, **kwargs}
        with pytest.raises(error, match=match):
            collect_pool(data, **arguments)  # type: ignore[arg-type]

    def test_gather__rejects_loaders(self) -> None:
        loader = DataLoader(TensorDataset(_data(0, 4)))
        with pytest.raises(TypeError, match="collect_pool"):
            gather(loader, None)


class TestLightlyDatasetEverywhere:
    """``LightlyDataset`` is not a torch Dataset; every entry point takes it."""

    def test_from_data__lightly_dataset_matches_its_stacked_images(
        self, image_dir: Path
    ) -> None:
        dataset = LightlyDataset(input_dir=str(image_dir), transform=T.ToTensor())
        x, _ = _stacked(dataset)
        kernel = RBF(lengthscale=20.0)
        backbone = KernelBackbone.from_data(kernel, dataset, num_landmarks=4, out_dim=3)
        reference = KernelBackbone.from_data(kernel, x, num_landmarks=4, out_dim=3)
        assert backbone.nystrom.landmarks.shape == (4, 3, 8, 8)
        torch.testing.assert_close(
            backbone.nystrom.landmarks, reference.nystrom.landmarks
        )
        assert torch.equal(backbone.landmark_indices, reference.landmark_indices)  # type: ignore[arg-type]

    def test_nystrom_transform__lightly_dataset_and_its_loader(
        self, image_dir: Path
    ) -> None:
        dataset = LightlyDataset(input_dir=str(image_dir), transform=T.ToTensor())
        x, _ = _stacked(dataset)
        nystrom = Nystrom(RBF(lengthscale=20.0), x[:4])
        expected = nystrom(x)
        for data in (dataset, DataLoader(dataset, batch_size=3)):
            out = nystrom.transform(data, batch_size=3, progress=False)
            torch.testing.assert_close(out, expected)

    def test_extract_features__lightly_dataset_with_labels(
        self, image_dir: Path
    ) -> None:
        dataset = LightlyDataset(input_dir=str(image_dir), transform=T.ToTensor())
        x, labels = _stacked(dataset)
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        features, got = extract_features(model, dataset, batch_size=3, progress=False)
        with torch.no_grad():
            torch.testing.assert_close(features, model(x))
        assert got is not None and torch.equal(got, labels)
        assert sorted(set(labels.tolist())) == [0, 1]
