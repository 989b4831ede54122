"""Fashion-MNIST from local IDX files, gzipped or not.

Accepted layouts, relative to the data root (see :mod:`lightly_krepes.data._paths`):
the four files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally with
``.gz``) directly in the root, in ``fashion-mnist/``, in torchvision's
``FashionMNIST/raw/`` or in ``raw/``. The IDX format is parsed with numpy.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Xiao, Rasul, Vollgraf, 2017, Fashion-MNIST: a Novel Image Dataset for
  Benchmarking Machine Learning Algorithms, arXiv 1708.07747
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from lightly_krepes.data._images import ImageArrayDataset, to_float_images
from lightly_krepes.data._paths import (
    PathLike,
    check_split,
    missing_data_error,
    resolve_data_root,
)
from lightly_krepes.data._subset import select_indices

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""The ten Fashion-MNIST class names in label order (label i is entry i)."""

FASHION_MNIST_NORMALIZE = {"mean": [0.2860], "std": [0.3530]}
"""Pixel mean and std of the Fashion-MNIST training images, Lightly's format."""

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SUBFOLDERS = (Path("fashion-mnist"), Path("FashionMNIST") / "raw", Path("raw"))
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_LAYOUTS = (
    "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] directly under root",
    "the same files under fashion-mnist/, FashionMNIST/raw/ (torchvision) or raw/",
)
_HOW_TO_GET = (
    "download Fashion-MNIST with torchvision.datasets.FashionMNIST(root, "
    "download=True) on a machine with internet and point root= at that root, or "
    "install the Debian package dataset-fashion-mnist, or fetch the four .gz files "
    "from https://github.com/zalandoresearch/fashion-mnist."
)


def read_idx(path: PathLike) -> NDArray[Any]:
    """Reads an IDX file (the MNIST format), gzipped or not.

    The header is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions and one
    big-endian uint32 per dimension; the data follow in C order. Gzip is detected
    from the file's content, not its name.

    Args:
        path: Path of the file.

    Returns:
        Array with the file's shape, in native byte order.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is not a valid IDX file (wrong magic number, bad
            type code, truncated or trailing data, broken gzip stream).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] LeCun, Cortes, Burges, The MNIST database, IDX file format

    Examples:
        >>> labels = read_idx("train-labels-idx1-ubyte.gz")  # doctest: +SKIP
        >>> labels.shape, labels.dtype  # doctest: +SKIP
        ((60000,), dtype('uint8'))
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path} is a corrupt gzip file: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path} is not a valid IDX file: bad magic number {raw[:4].hex()!r} "
            "(expected 0x0000 followed by a type code in "
            f"{[hex(code) for code in _IDX_DTYPES]} and the number of dimensions). "
            "The file may be corrupt or not an IDX file."
        )
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is a truncated IDX file: its header is incomplete.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path} is a corrupt IDX file: its header announces shape {shape} "
            f"({expected} bytes) but the file holds {len(raw)} bytes."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _find_files(root: Path, split: str) -> tuple[Path, Path]:
    image_name, label_name = _FILES[split]
    folders = [root, *(root / sub for sub in _SUBFOLDERS)]
    for folder in folders:
        images = _find_file(folder, image_name)
        labels = _find_file(folder, label_name)
        if images is not None and labels is not None:
            return images, labels
    raise missing_data_error(
        f"Fashion-MNIST ({split} split)",
        [folder / f"{name}[.gz]" for folder in folders for name in _FILES[split]],
        _LAYOUTS,
        _HOW_TO_GET,
    )


def _load_arrays(
    root: PathLike | None,
    split: str,
    max_samples: int | None,
    seed: int,
    stratify: bool,
) -> tuple[NDArray[np.uint8], NDArray[np.int64], Path]:
    check_split(split)
    image_path, label_path = _find_files(resolve_data_root(root), split)
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"{image_path} must hold uint8 images of shape (n, H, W), got dtype "
            f"{images.dtype} and shape {images.shape}."
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{label_path} must hold {images.shape[0]} labels to match {image_path}, "
            f"got shape {labels.shape}."
        )
    targets = labels.astype(np.int64)
    if max_samples is not None:
        keep = select_indices(targets, max_samples, seed=seed, stratify=stratify)
        images, targets = images[keep], targets[keep]
    return images, targets, image_path.parent


def load_fashion_mnist(
    split: str = "train",
    root: PathLike | None = None,
    *,
    max_samples: int | None = None,
    seed: int = 0,
    stratify: bool = True,
    as_float: bool = False,
) -> tuple[Tensor, Tensor]:
    """Loads one Fashion-MNIST split as tensors, for fast numeric use.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        root: Data root or dataset folder. Defaults to ``$LIGHTLY_KREPES_DATA``,
            else ``../shared/data`` relative to the working directory.
        max_samples: Keep at most this many images, chosen with ``seed``.
        seed: Seed of the subset selection.
        stratify: Whether the subset keeps the class proportions.
        as_float: Return float32 images of shape (n, 1, 28, 28) in ``[0, 1]``
            instead of uint8 images of shape (n, 28, 28).

    Returns:
        ``(images, labels)``: uint8 tensor of shape (n, 28, 28) (or float32
        (n, 1, 28, 28) with ``as_float``) and int64 tensor of shape (n,) indexing
        :data:`FASHION_MNIST_CLASSES`.

    Raises:
        FileNotFoundError: If the IDX files are not found; the message lists the
            expected paths and how to get the data.
        ValueError: If ``split`` is unknown or a file is corrupt.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Xiao, Rasul, Vollgraf, 2017, arXiv 1708.07747

    Examples:
        >>> images, labels = load_fashion_mnist("test")  # doctest: +SKIP
        >>> images.shape, labels.shape  # doctest: +SKIP
        (torch.Size([10000, 28, 28]), torch.Size([10000]))
    """
    data, labels, _ = _load_arrays(root, split, max_samples, seed, stratify)
    images = torch.from_numpy(data)
    if as_float:
        images = to_float_images(images)
    return images, torch.from_numpy(labels)


class FashionMNISTDataset(ImageArrayDataset):
    """Fashion-MNIST as a ``torch.utils.data.Dataset``, torchvision-style transforms.

    Items are ``(image, target)``: without ``transform`` the image is a float32
    tensor of shape (1, 28, 28) in ``[0, 1]``; with ``transform`` it is a greyscale
    (mode ``"L"``) PIL image passed to the transform. Lightly's image transforms
    accept it when their normalisation has one channel, e.g.
    ``SimCLRTransform(input_size=28, normalize=FASHION_MNIST_NORMALIZE)``. The
    target is an int in ``[0, 10)``. Works with
    ``lightly.data.LightlyDataset.from_torch_dataset``.

    Args:
        root: Data root or dataset folder (see :func:`load_fashion_mnist`).
        split: ``"train"`` or ``"test"``.
        transform: Callable applied to the PIL image.
        target_transform: Callable applied to the int label.
        max_samples: Keep at most this many images, chosen with ``seed``.
        seed: Seed of the subset selection.
        stratify: Whether the subset keeps the class proportions.

    Attributes:
        data: uint8 array of shape (n, 28, 28).
        targets: int64 array of shape (n,).
        classes: :data:`FASHION_MNIST_CLASSES` as a list.
        root: The folder holding the IDX files.
        split: ``"train"`` or ``"test"``.

    Raises:
        FileNotFoundError: If the IDX files are not found.
        ValueError: If ``split`` is unknown or a file is corrupt.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Xiao, Rasul, Vollgraf, 2017, arXiv 1708.07747

    Examples:
        >>> from lightly.data import LightlyDataset  # doctest: +SKIP
        >>> from lightly.transforms import SimCLRTransform  # doctest: +SKIP
        >>> transform = SimCLRTransform(
        ...     input_size=28, normalize=FASHION_MNIST_NORMALIZE
        ... )  # doctest: +SKIP
        >>> base = FashionMNISTDataset(split="train")  # doctest: +SKIP
        >>> dataset = LightlyDataset.from_torch_dataset(
        ...     base, transform=transform
        ... )  # doctest: +SKIP
    """

    def __init__(
        self,
        root: PathLike | None = None,
        split: str = "train",
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        *,
        max_samples: int | None = None,
        seed: int = 0,
        stratify: bool = True,
    ) -> None:
        data, labels, folder = _load_arrays(root, split, max_samples, seed, stratify)
        super().__init__(
            data, labels, FASHION_MNIST_CLASSES, transform, target_transform
        )
        self.root = folder
        self.split = split
