"""CIFAR-10 from local files: the JPEG archive, an image folder or torchvision batches.

Accepted layouts, relative to the data root (see :mod:`lightly_krepes.data._paths`):

- ``cifar10-jpg.tar.gz``: a tar of ``train/<class>/NNNN.jpg`` and
  ``test/<class>/NNNN.jpg``. Decoding all 60,000 images takes ~13 s, so the decoded
  arrays are cached once as an uncompressed ``.npz`` in the cache directory, keyed by
  the archive's size and a SHA-256 of its first and last MiB.
- a folder with the same ``train/<class>/*.jpg|png`` layout, directly under the
  root or under ``cifar10/`` or ``cifar10-jpg/`` (decoded on every load, not cached).
- torchvision's ``cifar-10-batches-py`` folder, read with torchvision's own reader
  (``torchvision.datasets.CIFAR10(root, download=False)``), which checks the files'
  MD5 sums.

Class names are sorted and the label of a class is its position; images are ordered
by split, class and file name, so loads are deterministic.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Krizhevsky, 2009, Learning Multiple Layers of Features from Tiny Images
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from lightly_krepes.data._images import ImageArrayDataset, to_float_images
from lightly_krepes.data._paths import (
    PathLike,
    check_split,
    missing_data_error,
    resolve_cache_dir,
    resolve_data_root,
)
from lightly_krepes.data._subset import select_indices

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""The ten CIFAR-10 class names; label i is ``CIFAR10_CLASSES[i]``."""

CIFAR10_NORMALIZE = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}
"""Per-channel mean and std of the CIFAR-10 training images, Lightly's format."""

CIFAR10_ARCHIVE = "cifar10-jpg.tar.gz"
"""File name of the JPEG archive looked for under the data root."""

_FOLDER_NAMES = ("cifar10", "cifar10-jpg")
_BATCHES_FOLDER = "cifar-10-batches-py"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_SPLITS = ("train", "test")
_CACHE_FORMAT = 1
_MIB = 1 << 20

_LAYOUTS = (
    f"{CIFAR10_ARCHIVE} (tar of train/<class>/NNNN.jpg and test/<class>/NNNN.jpg), "
    "or root= pointing at the archive itself",
    "train/<class>/*.jpg|png and test/<class>/*.jpg|png, directly under root or "
    f"under {' or '.join(f'{n}/' for n in _FOLDER_NAMES)}",
    f"{_BATCHES_FOLDER}/ (torchvision's pickled batches; root= is its parent folder)",
)
_HOW_TO_GET = (
    "download CIFAR-10 with torchvision.datasets.CIFAR10(root, download=True) on a "
    "machine with internet and point root= at that root (the folder holding "
    f"{_BATCHES_FOLDER}/), or copy {CIFAR10_ARCHIVE} into the data root."
)

_Arrays = tuple[NDArray[np.uint8], NDArray[np.int64], list[str]]


@dataclass(frozen=True)
class _Source:
    kind: Literal["archive", "folder", "torchvision"]
    path: Path


def _find_source(root: Path, split: str) -> _Source:
    if root.is_file():
        return _Source("archive", root)
    if root.name == _BATCHES_FOLDER and root.is_dir():
        return _Source("torchvision", root.parent)
    if (root / CIFAR10_ARCHIVE).is_file():
        return _Source("archive", root / CIFAR10_ARCHIVE)
    for folder in (root, *(root / name for name in _FOLDER_NAMES)):
        if (folder / split).is_dir():
            return _Source("folder", folder)
    if (root / _BATCHES_FOLDER).is_dir():
        return _Source("torchvision", root)
    raise missing_data_error(
        "CIFAR-10",
        [
            root / CIFAR10_ARCHIVE,
            *(folder / split for folder in (root, *(root / n for n in _FOLDER_NAMES))),
            root / _BATCHES_FOLDER,
        ],
        _LAYOUTS,
        _HOW_TO_GET,
    )


def _decode(data: bytes, name: str) -> NDArray[np.uint8]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except OSError as err:
        raise ValueError(f"Cannot decode image {name}: {err}") from err


def _stack(
    images: list[tuple[str, str, NDArray[np.uint8]]], classes: list[str], where: str
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    # images: (class, file name, array) tuples; sorted here for a deterministic order.
    images.sort(key=lambda item: (item[0], item[1]))
    shapes = {item[2].shape for item in images}
    if len(shapes) > 1:
        raise ValueError(
            f"All CIFAR-10 images must have the same shape, found {sorted(shapes)} "
            f"in {where}."
        )
    index = {name: i for i, name in enumerate(classes)}
    if not images:
        return np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64)
    data = np.stack([item[2] for item in images])
    labels = np.array([index[item[0]] for item in images], dtype=np.int64)
    return data, labels


def _decode_archive(path: Path, progress: bool) -> dict[str, Any]:
    found: dict[str, list[tuple[str, str, NDArray[np.uint8]]]] = {
        s: [] for s in _SPLITS
    }
    try:
        with tarfile.open(path, mode="r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            for member in tqdm(
                members, desc=f"Decoding {path.name}", unit="img", disable=not progress
            ):
                parts = Path(member.name).parts
                if len(parts) < 3 or parts[-3] not in _SPLITS:
                    continue
                if not parts[-1].lower().endswith(_IMAGE_SUFFIXES):
                    continue
                file = tar.extractfile(member)
                if file is None:
                    continue
                array = _decode(file.read(), f"{member.name} in {path}")
                found[parts[-3]].append((parts[-2], parts[-1], array))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"Cannot read the CIFAR-10 archive {path}: {err}") from err
    classes = sorted({item[0] for items in found.values() for item in items})
    if not found["train"] and not found["test"]:
        raise ValueError(
            f"The archive {path} holds no images in the layout "
            "train/<class>/NNNN.jpg, test/<class>/NNNN.jpg."
        )
    arrays: dict[str, Any] = {"classes": np.array(classes, dtype=np.str_)}
    for split in _SPLITS:
        data, labels = _stack(found[split], classes, f"{path}:{split}/")
        arrays[f"{split}_images"] = data
        arrays[f"{split}_labels"] = labels
    return arrays


def _archive_key(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256(f"cifar10-cache-v{_CACHE_FORMAT}:{size}:".encode())
    with path.open("rb") as f:
        digest.update(f.read(_MIB))
        f.seek(max(size - _MIB, 0))
        digest.update(f.read(_MIB))
    return digest.hexdigest()[:16]


def _write_cache(target: Path, arrays: dict[str, Any]) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".npz.tmp")
        try:
            # Uncompressed: JPEG-decoded pixels barely compress (184 vs 170 MB)
            # and loading skips seconds of inflation.
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError as err:
        warnings.warn(
            f"Could not write the CIFAR-10 cache {target} ({err}); the archive will "
            "be decoded again next time. Pass cache_dir= to use a writable folder.",
            stacklevel=4,
        )


def _read_cache(target: Path, split: str) -> _Arrays | None:
    try:
        with np.load(target, allow_pickle=False) as npz:
            classes = [str(c) for c in npz["classes"]]
            data = npz[f"{split}_images"]
            labels = npz[f"{split}_labels"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        warnings.warn(
            f"Ignoring the unreadable CIFAR-10 cache {target}; decoding again.",
            stacklevel=4,
        )
        return None
    return data.astype(np.uint8, copy=False), labels.astype(np.int64), classes


def _load_archive(
    path: Path, split: str, cache_dir: PathLike | None, cache: bool, progress: bool
) -> _Arrays:
    target = resolve_cache_dir(cache_dir) / f"cifar10-jpg-{_archive_key(path)}.npz"
    if cache and target.is_file():
        loaded = _read_cache(target, split)
        if loaded is not None:
            return loaded
    arrays = _decode_archive(path, progress)
    if cache:
        _write_cache(target, arrays)
    classes = [str(c) for c in arrays["classes"]]
    return arrays[f"{split}_images"], arrays[f"{split}_labels"], classes


def _load_archive_split(
    path: Path, split: str, cache_dir: PathLike | None, cache: bool, progress: bool
) -> _Arrays:
    arrays = _load_archive(path, split, cache_dir, cache, progress)
    if arrays[0].shape[0] == 0:
        raise missing_data_error(
            f"CIFAR-10 {split} split",
            [Path(f"{path}:{split}/<class>/*.jpg")],
            _LAYOUTS,
            _HOW_TO_GET,
        )
    return arrays


def _class_dirs(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if p.is_dir()}


def _load_folder(folder: Path, split: str, progress: bool) -> _Arrays:
    classes = sorted(_class_dirs(folder / "train") | _class_dirs(folder / "test"))
    if not (folder / split).is_dir():
        raise missing_data_error("CIFAR-10", [folder / split], _LAYOUTS, _HOW_TO_GET)
    files: list[tuple[str, Path]] = [
        (name, file)
        for name in sorted(_class_dirs(folder / split))
        for file in sorted((folder / split / name).iterdir())
        if file.is_file() and file.name.lower().endswith(_IMAGE_SUFFIXES)
    ]
    if not files:
        raise missing_data_error(
            "CIFAR-10 images",
            [folder / split / "<class>" / "*.jpg"],
            _LAYOUTS,
            _HOW_TO_GET,
        )
    images = [
        (name, file.name, _decode(file.read_bytes(), str(file)))
        for name, file in tqdm(
            files, desc=f"Decoding {folder / split}", unit="img", disable=not progress
        )
    ]
    data, labels = _stack(images, classes, str(folder / split))
    return data, labels, classes


def _load_torchvision(root: Path, split: str) -> _Arrays:
    import torchvision

    try:
        dataset = torchvision.datasets.CIFAR10(
            str(root), train=split == "train", download=False
        )
    except RuntimeError as err:
        raise missing_data_error(
            f"CIFAR-10 ({_BATCHES_FOLDER} is incomplete or corrupted: {err})",
            [root / _BATCHES_FOLDER],
            _LAYOUTS,
            _HOW_TO_GET,
        ) from err
    names = [str(c) for c in dataset.classes]
    classes = sorted(names)
    remap = np.array([classes.index(name) for name in names], dtype=np.int64)
    labels = remap[np.asarray(dataset.targets, dtype=np.int64)]
    return np.ascontiguousarray(dataset.data, dtype=np.uint8), labels, classes


def _load_arrays(
    root: PathLike | None,
    split: str,
    cache_dir: PathLike | None,
    cache: bool,
    progress: bool,
    max_samples: int | None,
    seed: int,
    stratify: bool,
) -> tuple[_Arrays, Path]:
    check_split(split)
    resolved = resolve_data_root(root)
    source = _find_source(resolved, split)
    if source.kind == "archive":
        arrays = _load_archive_split(source.path, split, cache_dir, cache, progress)
    elif source.kind == "folder":
        arrays = _load_folder(source.path, split, progress)
    else:
        arrays = _load_torchvision(source.path, split)
    data, labels, classes = arrays
    if max_samples is not None:
        keep = select_indices(labels, max_samples, seed=seed, stratify=stratify)
        data, labels = data[keep], labels[keep]
    return (data, labels, classes), source.path


def load_cifar10(
    split: str = "train",
    root: PathLike | None = None,
    *,
    cache_dir: PathLike | None = None,
    cache: bool = True,
    max_samples: int | None = None,
    seed: int = 0,
    stratify: bool = True,
    as_float: bool = False,
    progress: bool = True,
) -> tuple[Tensor, Tensor]:
    """Loads one CIFAR-10 split as tensors, for fast numeric use.

    Args:
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000 images).
        root: Data root, dataset folder or archive path. Defaults to
            ``$LIGHTLY_KREPES_DATA``, else ``../shared/data`` relative to the working
            directory.
        cache_dir: Folder of the decoded-archive cache. Defaults to
            ``$LIGHTLY_KREPES_CACHE``, else ``~/.cache/lightly-krepes``.
        cache: Whether to read and write the cache (archive layout only).
        max_samples: Keep at most this many images, chosen with ``seed``.
        seed: Seed of the subset selection.
        stratify: Whether the subset keeps the class proportions.
        as_float: Return float32 images of shape (n, 3, 32, 32) in ``[0, 1]``
            instead of uint8 images of shape (n, 32, 32, 3).
        progress: Whether to show a tqdm bar while decoding.

    Returns:
        ``(images, labels)``: uint8 tensor of shape (n, 32, 32, 3) (or float32
        (n, 3, 32, 32) with ``as_float``) and int64 tensor of shape (n,) indexing
        the sorted class names :data:`CIFAR10_CLASSES`.

    Raises:
        FileNotFoundError: If no accepted layout is found; the message lists the
            expected paths and how to get the data.
        ValueError: If ``split`` is unknown or a file cannot be decoded.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Krizhevsky, 2009, Learning Multiple Layers of Features from Tiny Images

    Examples:
        >>> images, labels = load_cifar10("test")  # doctest: +SKIP
        >>> images.shape, labels.shape  # doctest: +SKIP
        (torch.Size([10000, 32, 32, 3]), torch.Size([10000]))
    """
    (data, labels, _), _ = _load_arrays(
        root, split, cache_dir, cache, progress, max_samples, seed, stratify
    )
    images = torch.from_numpy(np.ascontiguousarray(data))
    if as_float:
        images = to_float_images(images)
    return images, torch.from_numpy(np.ascontiguousarray(labels))


class CIFAR10Dataset(ImageArrayDataset):
    """CIFAR-10 as a ``torch.utils.data.Dataset`` with torchvision-style transforms.

    Items are ``(image, target)``: without ``transform`` the image is a float32
    tensor of shape (3, 32, 32) in ``[0, 1]``; with ``transform`` it is an RGB PIL
    image passed to the transform (e.g. ``lightly.transforms.SimCLRTransform``). The
    target is an int in ``[0, 10)``. Works with
    ``lightly.data.LightlyDataset.from_torch_dataset``. All images are held in
    memory as uint8 (150 MB for the training split).

    Args:
        root: Data root, dataset folder or archive path (see :func:`load_cifar10`).
        split: ``"train"`` or ``"test"``.
        transform: Callable applied to the PIL image.
        target_transform: Callable applied to the int label.
        cache_dir: Folder of the decoded-archive cache.
        cache: Whether to read and write the cache.
        max_samples: Keep at most this many images, chosen with ``seed``.
        seed: Seed of the subset selection.
        stratify: Whether the subset keeps the class proportions.
        progress: Whether to show a tqdm bar while decoding.

    Attributes:
        data: uint8 array of shape (n, 32, 32, 3).
        targets: int64 array of shape (n,).
        classes: Sorted class names.
        root: The archive or folder the images came from.
        split: ``"train"`` or ``"test"``.

    Raises:
        FileNotFoundError: If no accepted layout is found.
        ValueError: If ``split`` is unknown or a file cannot be decoded.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Krizhevsky, 2009, Learning Multiple Layers of Features from Tiny Images

    Examples:
        >>> from lightly.data import LightlyDataset  # doctest: +SKIP
        >>> from lightly.transforms import SimCLRTransform  # doctest: +SKIP
        >>> base = CIFAR10Dataset(split="train")  # doctest: +SKIP
        >>> dataset = LightlyDataset.from_torch_dataset(
        ...     base, transform=SimCLRTransform(input_size=32)
        ... )  # doctest: +SKIP
        >>> views, target, filename = dataset[0]  # doctest: +SKIP
    """

    def __init__(
        self,
        root: PathLike | None = None,
        split: str = "train",
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        *,
        cache_dir: PathLike | None = None,
        cache: bool = True,
        max_samples: int | None = None,
        seed: int = 0,
        stratify: bool = True,
        progress: bool = True,
    ) -> None:
        (data, labels, classes), source = _load_arrays(
            root, split, cache_dir, cache, progress, max_samples, seed, stratify
        )
        super().__init__(data, labels, classes, transform, target_transform)
        self.root = source
        self.split = split
