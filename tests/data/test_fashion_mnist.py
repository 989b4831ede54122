from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from lightly.data import LightlyDataset
from lightly.transforms.simclr_transform import SimCLRTransform
from numpy.typing import DTypeLike, NDArray
from PIL import Image
from torch.utils.data import DataLoader

from lightly_krepes.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_NORMALIZE,
    FashionMNISTDataset,
    load_fashion_mnist,
    read_idx,
)

_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B}
_NUM = {"train": 30, "t10k": 10}


def _real_folder() -> Path:
    env = os.environ.get("LIGHTLY_KREPES_DATA")
    root = Path(env) if env else Path(__file__).parents[2].parent / "shared" / "data"
    folder = root / "fashion-mnist"
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"real Fashion-MNIST not found at {folder}; set LIGHTLY_KREPES_DATA to "
            "the folder holding fashion-mnist/ to run this test."
        )
    return root


def _idx_bytes(array: NDArray[np.generic]) -> bytes:
    header = bytes([0, 0, _CODES[array.dtype], array.ndim])
    dims = np.array(array.shape, dtype=">u4").tobytes()
    return header + dims + array.tobytes()


def _write_idx(path: Path, array: NDArray[np.generic], gz: bool) -> Path:
    data = _idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _make_files(folder: Path, gz: bool = True) -> dict[str, NDArray[np.uint8]]:
    rng = np.random.default_rng(0)
    arrays: dict[str, NDArray[np.uint8]] = {}
    for prefix, n in _NUM.items():
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
        arrays[f"{prefix}_images"] = images
        arrays[f"{prefix}_labels"] = labels
    return arrays


@pytest.fixture
def root(tmp_path: Path) -> Path:
    _make_files(tmp_path / "fashion-mnist")
    return tmp_path


class TestReadIdx:
    @pytest.mark.parametrize("gz", [True, False])
    @pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2"])
    def test_read_idx__roundtrip(
        self, tmp_path: Path, gz: bool, dtype: DTypeLike
    ) -> None:
        array = np.arange(-12, 12).reshape(2, 3, 4).astype(dtype)
        path = _write_idx(tmp_path / "x-idx3", array, gz)
        out = read_idx(path)
        assert out.shape == (2, 3, 4)
        assert out.dtype.isnative
        np.testing.assert_array_equal(out, array)

    def test_read_idx__gzip_detected_by_content(self, tmp_path: Path) -> None:
        path = tmp_path / "labels-idx1-ubyte"
        path.write_bytes(gzip.compress(_idx_bytes(np.arange(5, dtype=np.uint8))))
        assert read_idx(path).tolist() == [0, 1, 2, 3, 4]

    @pytest.mark.parametrize("gz", [True, False])
    def test_read_idx__bad_magic(self, tmp_path: Path, gz: bool) -> None:
        data = bytearray(_idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8)))
        data[0:4] = b"\x12\x34\x08\x03"
        path = tmp_path / "images-idx3-ubyte"
        path.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
        with pytest.raises(ValueError, match="bad magic number") as info:
            read_idx(path)
        assert str(path) in str(info.value)

    def test_read_idx__unknown_type_code(self, tmp_path: Path) -> None:
        data = bytearray(_idx_bytes(np.zeros(4, dtype=np.uint8)))
        data[2] = 0x42
        path = tmp_path / "labels-idx1-ubyte"
        path.write_bytes(bytes(data))
        with pytest.raises(ValueError, match="bad magic number"):
            read_idx(path)

    def test_read_idx__truncated(self, tmp_path: Path) -> None:
        data = _idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8))
        path = tmp_path / "images-idx3-ubyte"
        path.write_bytes(data[:-10])
        with pytest.raises(ValueError, match="corrupt IDX file"):
            read_idx(path)
        path.write_bytes(data[:9])
        with pytest.raises(ValueError, match="truncated"):
            read_idx(path)

    def test_read_idx__corrupt_gzip(self, tmp_path: Path) -> None:
        data = gzip.compress(_idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8)))
        path = tmp_path / "images-idx3-ubyte.gz"
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="corrupt gzip"):
            read_idx(path)

    def test_read_idx__missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            read_idx(tmp_path / "nothing-idx1-ubyte")


class TestLoadFashionMNIST:
    def test_load_fashion_mnist__gz(self, tmp_path: Path) -> None:
        arrays = _make_files(tmp_path / "fashion-mnist")
        images, labels = load_fashion_mnist("train", tmp_path)
        assert images.shape == (30, 28, 28)
        assert images.dtype == torch.uint8
        assert labels.dtype == torch.int64
        np.testing.assert_array_equal(images.numpy(), arrays["train_images"])
        np.testing.assert_array_equal(labels.numpy(), arrays["train_labels"])
        images, labels = load_fashion_mnist("test", tmp_path)
        np.testing.assert_array_equal(images.numpy(), arrays["t10k_images"])

    @pytest.mark.parametrize(
        "subfolder", [".", "fashion-mnist", "FashionMNIST/raw", "raw"]
    )
    @pytest.mark.parametrize("gz", [True, False])
    def test_load_fashion_mnist__layouts(
        self, tmp_path: Path, subfolder: str, gz: bool
    ) -> None:
        arrays = _make_files(tmp_path / subfolder, gz=gz)
        images, labels = load_fashion_mnist("test", tmp_path)
        np.testing.assert_array_equal(images.numpy(), arrays["t10k_images"])
        np.testing.assert_array_equal(labels.numpy(), arrays["t10k_labels"])
        # The dataset folder itself is accepted too.
        images, _ = load_fashion_mnist("test", tmp_path / subfolder)
        assert images.shape == (10, 28, 28)

    def test_load_fashion_mnist__as_float(self, root: Path) -> None:
        images, _ = load_fashion_mnist("train", root, as_float=True)
        raw, _ = load_fashion_mnist("train", root)
        assert images.shape == (30, 1, 28, 28)
        assert images.dtype == torch.float32
        assert torch.allclose(images[:, 0] * 255, raw.float())

    def test_load_fashion_mnist__max_samples(self, root: Path) -> None:
        images, labels = load_fashion_mnist("train", root, max_samples=10, seed=3)
        assert images.shape == (10, 28, 28)
        assert labels.bincount().tolist() == [1] * 10
        again, _ = load_fashion_mnist("train", root, max_samples=10, seed=3)
        assert torch.equal(images, again)
        other, _ = load_fashion_mnist("train", root, max_samples=10, seed=4)
        assert not torch.equal(images, other)

    def test_load_fashion_mnist__missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError) as info:
            load_fashion_mnist("train", tmp_path)
        message = str(info.value)
        assert str(tmp_path / "fashion-mnist" / "train-images-idx3-ubyte") in message
        assert str(tmp_path / "FashionMNIST" / "raw") in message
        assert "torchvision.datasets.FashionMNIST(root, download=True)" in message

    def test_load_fashion_mnist__mismatched_labels(self, tmp_path: Path) -> None:
        _make_files(tmp_path)
        _write_idx(
            tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8), True
        )
        with pytest.raises(ValueError, match=re.escape("must hold 10 labels")):
            load_fashion_mnist("test", tmp_path)

    def test_load_fashion_mnist__corrupt_file(self, tmp_path: Path) -> None:
        _make_files(tmp_path)
        path = tmp_path / "train-images-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(b"\x08\x08\x08\x08garbage"))
        with pytest.raises(ValueError, match="bad magic number"):
            load_fashion_mnist("train", tmp_path)


class TestFashionMNISTDataset:
    def test___getitem____tensor_without_transform(self, root: Path) -> None:
        dataset = FashionMNISTDataset(root, split="test")
        assert len(dataset) == 10
        assert dataset.classes == list(FASHION_MNIST_CLASSES)
        image, target = dataset[3]
        assert isinstance(image, torch.Tensor)
        assert image.shape == (1, 28, 28)
        assert image.dtype == torch.float32
        assert target == 3
        assert torch.allclose(
            image[0] * 255, torch.from_numpy(dataset.data[3]).float(), atol=1e-4
        )

    def test___getitem____pil_with_transform(self, root: Path) -> None:
        dataset = FashionMNISTDataset(
            root,
            split="train",
            transform=lambda image: image,
            target_transform=lambda target: FASHION_MNIST_CLASSES[target],
        )
        image, target = dataset[1]
        assert isinstance(image, Image.Image)
        assert image.mode == "L"
        assert image.size == (28, 28)
        np.testing.assert_array_equal(np.asarray(image), dataset.data[1])
        assert target == "Trouser"

    def test_lightly__simclr_views(self, root: Path) -> None:
        transform = SimCLRTransform(
            input_size=28, normalize=FASHION_MNIST_NORMALIZE, random_gray_scale=0.0
        )
        dataset = LightlyDataset.from_torch_dataset(
            FashionMNISTDataset(root, split="train"), transform=transform
        )
        views, target, _ = dataset[0]
        assert [tuple(v.shape) for v in views] == [(1, 28, 28)] * 2
        assert target == 0
        batch_views, targets, _ = next(iter(DataLoader(dataset, batch_size=5)))
        assert [v.shape for v in batch_views] == [(5, 1, 28, 28)] * 2
        assert targets.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.data
class TestFashionMNISTRealData:
    def test_load_fashion_mnist__real_files(self) -> None:
        root = _real_folder()
        images, labels = load_fashion_mnist("train", root)
        assert images.shape == (60000, 28, 28)
        assert labels.bincount().tolist() == [6000] * 10
        pixels = images.numpy().astype(np.float64) / 255
        assert abs(pixels.mean() - 0.2860) < 1e-3
        assert abs(pixels.std() - 0.3530) < 1e-3
        test_images, test_labels = load_fashion_mnist("test", root)
        assert test_images.shape == (10000, 28, 28)
        assert test_labels.bincount().tolist() == [1000] * 10

    def test_lightly__real_simclr(self) -> None:
        base = FashionMNISTDataset(_real_folder(), split="test", max_samples=50)
        transform = SimCLRTransform(input_size=28, normalize=FASHION_MNIST_NORMALIZE)
        dataset = LightlyDataset.from_torch_dataset(base, transform=transform)
        views, targets, _ = next(iter(DataLoader(dataset, batch_size=8)))
        assert [v.shape for v in views] == [(8, 1, 28, 28)] * 2
        assert targets.shape == (8,)
