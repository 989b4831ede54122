from __future__ import annotations

import io
import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from lightly.data import LightlyDataset
from lightly.transforms.multi_view_transform import MultiViewTransform
from lightly.transforms.simclr_transform import SimCLRTransform
from PIL import Image
from torch.utils.data import DataLoader

from lightly_krepes.data import (
    CIFAR10_CLASSES,
    CIFAR10Dataset,
    load_cifar10,
    resolve_cache_dir,
)

# Classes are written in non-sorted order on purpose; each has a solid colour so
# that the label of a decoded image can be checked from its pixels.
_COLORS = {"dog": (0, 0, 255), "airplane": (255, 0, 0), "cat": (0, 255, 0)}
_SORTED = sorted(_COLORS)
_PER_SPLIT = {"train": 4, "test": 2}


def _real_data_root() -> Path:
    env = os.environ.get("LIGHTLY_KREPES_DATA")
    return Path(env) if env else Path(__file__).parents[2].parent / "shared" / "data"


def _real_archive() -> Path:
    archive = _real_data_root() / "cifar10-jpg.tar.gz"
    if not archive.is_file():
        pytest.skip(
            f"real CIFAR-10 archive not found at {archive}; set LIGHTLY_KREPES_DATA "
            "to the folder holding cifar10-jpg.tar.gz to run this test."
        )
    return archive


def _encode(color: tuple[int, int, int], fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, format=fmt)
    return buffer.getvalue()


def _make_archive(path: Path, prefix: str = "") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for split, count in _PER_SPLIT.items():
            for name, color in _COLORS.items():
                for i in reversed(range(count)):
                    data = _encode(color, "JPEG")
                    info = tarfile.TarInfo(f"{prefix}{split}/{name}/{i:04d}.jpg")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return path


def _make_folder(root: Path, fmt: str = "JPEG") -> Path:
    suffix = ".jpg" if fmt == "JPEG" else ".png"
    for split, count in _PER_SPLIT.items():
        for name, color in _COLORS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i:04d}{suffix}").write_bytes(_encode(color, fmt))
    return root


def _check_colors(images: torch.Tensor, labels: torch.Tensor) -> None:
    for image, label in zip(images, labels, strict=True):
        expected = torch.tensor(_COLORS[_SORTED[int(label)]], dtype=torch.float32)
        mean = image.reshape(-1, 3).float().mean(0)
        assert torch.allclose(mean, expected, atol=4.0)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return _make_archive(tmp_path / "cifar10-jpg.tar.gz")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


class TestLoadCIFAR10:
    def test_load_cifar10__archive(self, archive: Path, cache_dir: Path) -> None:
        images, labels = load_cifar10(
            "train", archive.parent, cache_dir=cache_dir, progress=False
        )
        assert images.shape == (12, 32, 32, 3)
        assert images.dtype == torch.uint8
        assert labels.dtype == torch.int64
        # Sorted classes, then sorted file names: a deterministic order.
        assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
        _check_colors(images, labels)
        test_images, test_labels = load_cifar10(
            "test", archive.parent, cache_dir=cache_dir, progress=False
        )
        assert test_images.shape == (6, 32, 32, 3)
        assert test_labels.tolist() == [0, 0, 1, 1, 2, 2]

    def test_load_cifar10__archive_path_and_prefix(
        self, tmp_path: Path, cache_dir: Path
    ) -> None:
        archive = _make_archive(tmp_path / "other.tgz", prefix="./cifar/")
        images, labels = load_cifar10(
            "test", archive, cache_dir=cache_dir, progress=False
        )
        assert images.shape == (6, 32, 32, 3)
        _check_colors(images, labels)

    def test_load_cifar10__as_float(self, archive: Path, cache_dir: Path) -> None:
        images, _ = load_cifar10(
            "test", archive, cache_dir=cache_dir, as_float=True, progress=False
        )
        assert images.shape == (6, 3, 32, 32)
        assert images.dtype == torch.float32
        assert float(images.min()) >= 0.0
        assert float(images.max()) <= 1.0

    def test_load_cifar10__cache_written_and_reused(
        self, archive: Path, cache_dir: Path
    ) -> None:
        load_cifar10("train", archive, cache_dir=cache_dir, progress=False)
        (cache_file,) = resolve_cache_dir(cache_dir).glob("cifar10-jpg-*.npz")
        with np.load(cache_file) as npz:
            arrays = {key: npz[key] for key in npz.files}
        assert arrays["train_images"].shape == (12, 32, 32, 3)
        assert arrays["test_labels"].tolist() == [0, 0, 1, 1, 2, 2]
        assert arrays["classes"].tolist() == _SORTED
        # A second load reads the cache instead of the archive: mark the cache.
        arrays["train_images"][:] = 7
        np.savez_compressed(cache_file, **arrays)
        images, _ = load_cifar10("train", archive, cache_dir=cache_dir)
        assert bool((images == 7).all())
        images, _ = load_cifar10("train", archive, cache_dir=cache_dir, cache=False)
        assert not bool((images == 7).all())

    def test_load_cifar10__corrupt_cache_is_rebuilt(
        self, archive: Path, cache_dir: Path
    ) -> None:
        load_cifar10("test", archive, cache_dir=cache_dir, progress=False)
        (cache_file,) = resolve_cache_dir(cache_dir).glob("cifar10-jpg-*.npz")
        cache_file.write_bytes(b"not a zip file")
        with pytest.warns(UserWarning, match="unreadable CIFAR-10 cache"):
            images, labels = load_cifar10(
                "test", archive, cache_dir=cache_dir, progress=False
            )
        _check_colors(images, labels)
        with np.load(cache_file) as npz:
            assert npz["test_images"].shape == (6, 32, 32, 3)

    def test_load_cifar10__cache_env_var(
        self, archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("LIGHTLY_KREPES_CACHE", str(tmp_path / "env-cache"))
        load_cifar10("test", archive, progress=False)
        assert len(list((tmp_path / "env-cache" / "datasets").glob("*.npz"))) == 1

    @pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
    def test_load_cifar10__folder(self, tmp_path: Path, fmt: str) -> None:
        root = _make_folder(tmp_path / "cifar10", fmt)
        for where in (root, tmp_path):
            images, labels = load_cifar10("train", where, progress=False)
            assert images.shape == (12, 32, 32, 3)
            assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
            _check_colors(images, labels)

    def test_load_cifar10__folder_matches_archive(
        self, archive: Path, tmp_path: Path, cache_dir: Path
    ) -> None:
        folder = tmp_path / "extracted"
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
        from_folder = load_cifar10("test", folder, progress=False)
        from_archive = load_cifar10("test", archive, cache_dir=cache_dir)
        assert torch.equal(from_folder[0], from_archive[0])
        assert torch.equal(from_folder[1], from_archive[1])

    def test_load_cifar10__torchvision_batches(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # torchvision's pickled batches, parsed by torchvision's own reader. Its MD5
        # check only accepts the official files, so it is narrowed to "file exists".
        import torchvision.datasets.cifar

        monkeypatch.setattr(
            torchvision.datasets.cifar,
            "check_integrity",
            lambda fpath, md5=None: os.path.isfile(fpath),
        )
        folder = tmp_path / "cifar-10-batches-py"
        folder.mkdir()
        rng = np.random.default_rng(0)
        batches: dict[str, tuple[np.ndarray, list[int]]] = {}
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            hwc = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
            targets = [int(v) for v in rng.integers(0, 10, size=3)]
            chw = hwc.transpose(0, 3, 1, 2).reshape(3, -1)
            with (folder / name).open("wb") as f:
                pickle.dump({"data": chw, "labels": targets}, f)
            batches[name] = (hwc, targets)
        with (folder / "batches.meta").open("wb") as f:
            pickle.dump({"label_names": list(CIFAR10_CLASSES)}, f)
        for root in (tmp_path, folder):
            images, labels = load_cifar10("test", root)
            assert torch.equal(images, torch.from_numpy(batches["test_batch"][0]))
            assert labels.tolist() == batches["test_batch"][1]
        images, _ = load_cifar10("train", tmp_path)
        assert images.shape == (15, 32, 32, 3)
        assert torch.equal(images[:3], torch.from_numpy(batches["data_batch_1"][0]))

    def test_load_cifar10__max_samples(self, archive: Path, cache_dir: Path) -> None:
        images, labels = load_cifar10(
            "train", archive, cache_dir=cache_dir, max_samples=6, seed=1
        )
        assert images.shape == (6, 32, 32, 3)
        assert labels.bincount().tolist() == [2, 2, 2]
        _check_colors(images, labels)
        again = load_cifar10(
            "train", archive, cache_dir=cache_dir, max_samples=6, seed=1
        )
        assert torch.equal(images, again[0])

    def test_load_cifar10__missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError) as info:
            load_cifar10("train", tmp_path)
        message = str(info.value)
        assert str(tmp_path / "cifar10-jpg.tar.gz") in message
        assert str(tmp_path / "cifar-10-batches-py") in message
        assert "torchvision.datasets.CIFAR10(root, download=True)" in message

    def test_load_cifar10__missing_split(self, tmp_path: Path) -> None:
        root = _make_folder(tmp_path / "data")
        for name in _COLORS:
            for file in (root / "test" / name).iterdir():
                file.unlink()
            (root / "test" / name).rmdir()
        (root / "test").rmdir()
        with pytest.raises(FileNotFoundError, match=re.escape(str(root / "test"))):
            load_cifar10("test", root)

    def test_load_cifar10__default_root_from_env(
        self, archive: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("LIGHTLY_KREPES_DATA", str(archive.parent))
        images, _ = load_cifar10("test", cache_dir=cache_dir, progress=False)
        assert images.shape == (6, 32, 32, 3)

    def test_load_cifar10__unknown_split(self, archive: Path) -> None:
        with pytest.raises(ValueError, match="split"):
            load_cifar10("val", archive)

    def test_load_cifar10__corrupt_image(self, tmp_path: Path) -> None:
        folder = _make_folder(tmp_path / "data")
        (folder / "train" / "cat" / "0000.jpg").write_bytes(b"not a jpeg")
        with pytest.raises(ValueError, match=r"0000\.jpg"):
            load_cifar10("train", folder, progress=False)


class TestCIFAR10Dataset:
    def test___getitem____tensor_without_transform(
        self, archive: Path, cache_dir: Path
    ) -> None:
        dataset = CIFAR10Dataset(archive, split="test", cache_dir=cache_dir)
        assert len(dataset) == 6
        assert dataset.classes == _SORTED
        assert dataset.class_to_idx == {"airplane": 0, "cat": 1, "dog": 2}
        image, target = dataset[2]
        assert isinstance(image, torch.Tensor)
        assert image.shape == (3, 32, 32)
        assert image.dtype == torch.float32
        assert target == 1
        assert float(image[1].mean()) > 0.95  # cat is green

    def test___getitem____pil_with_transform(
        self, archive: Path, cache_dir: Path
    ) -> None:
        dataset = CIFAR10Dataset(
            archive,
            split="test",
            transform=lambda image: image,
            target_transform=lambda target: -target,
            cache_dir=cache_dir,
        )
        image, target = dataset[4]
        assert isinstance(image, Image.Image)
        assert image.mode == "RGB"
        assert image.size == (32, 32)
        assert target == -2

    def test___init____max_samples(self, archive: Path, cache_dir: Path) -> None:
        dataset = CIFAR10Dataset(
            archive, split="train", cache_dir=cache_dir, max_samples=3, seed=0
        )
        assert len(dataset) == 3
        assert sorted(dataset.targets.tolist()) == [0, 1, 2]
        assert dataset.root == archive
        assert dataset.split == "train"
        assert "CIFAR10Dataset(num_samples=3" in repr(dataset)

    def test_lightly__simclr_views(self, archive: Path, cache_dir: Path) -> None:
        dataset = LightlyDataset.from_torch_dataset(
            CIFAR10Dataset(archive, split="train", cache_dir=cache_dir),
            transform=SimCLRTransform(input_size=32),
        )
        views, target, filename = dataset[0]
        assert len(views) == 2
        assert views[0].shape == (3, 32, 32)
        assert target == 0
        assert filename == "0"
        batch_views, targets, _ = next(iter(DataLoader(dataset, batch_size=4)))
        assert [v.shape for v in batch_views] == [(4, 3, 32, 32)] * 2
        assert targets.tolist() == [0, 0, 0, 0]

    def test_lightly__multiview_transform(self, archive: Path, cache_dir: Path) -> None:
        from torchvision import transforms as T

        transform = MultiViewTransform(
            [T.Compose([T.RandomCrop(24), T.ToTensor()]), T.ToTensor()]
        )
        base = CIFAR10Dataset(
            archive, split="test", transform=transform, cache_dir=cache_dir
        )
        views, _ = base[0]
        assert [tuple(v.shape) for v in views] == [(3, 24, 24), (3, 32, 32)]
        dataset = LightlyDataset.from_torch_dataset(base)
        assert len(dataset) == 6
        assert len(dataset[0][0]) == 2


@pytest.mark.data
class TestCIFAR10RealData:
    def test_load_cifar10__real_archive(self) -> None:
        # The first run decodes the archive (~13 s) into the user cache; later runs
        # read the cache (~1 s).
        archive = _real_archive()
        images, labels = load_cifar10("train", archive.parent)
        assert images.shape == (50000, 32, 32, 3)
        assert labels.bincount().tolist() == [5000] * 10
        mean = images.numpy().reshape(-1, 3).mean(0, dtype=np.float64) / 255
        np.testing.assert_allclose(mean, [0.4913, 0.4821, 0.4465], atol=1e-3)
        test_images, test_labels = load_cifar10("test", archive.parent)
        assert test_images.shape == (10000, 32, 32, 3)
        assert test_labels.bincount().tolist() == [1000] * 10

    def test_lightly__real_simclr(self) -> None:
        archive = _real_archive()
        base = CIFAR10Dataset(archive.parent, split="test", max_samples=100)
        assert base.classes == list(CIFAR10_CLASSES)
        assert np.bincount(base.targets).tolist() == [10] * 10
        dataset = LightlyDataset.from_torch_dataset(
            base, transform=SimCLRTransform(input_size=32)
        )
        views, targets, _ = next(iter(DataLoader(dataset, batch_size=8)))
        assert [v.shape for v in views] == [(8, 3, 32, 32)] * 2
        assert targets.shape == (8,)
