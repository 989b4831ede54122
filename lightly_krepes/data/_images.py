"""In-memory image datasets: uint8 arrays served as tensors or as PIL images.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset


def to_float_images(images: Tensor) -> Tensor:
    """Converts uint8 images to float32 in ``[0, 1]``, channels first.

    Args:
        images: uint8 tensor of shape (n, H, W) (greyscale) or (n, H, W, C).

    Returns:
        float32 tensor of shape (n, 1, H, W) or (n, C, H, W), values ``x / 255``.

    Raises:
        ValueError: If ``images`` is not uint8 with 3 or 4 dimensions.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> x = torch.full((2, 4, 4, 3), 255, dtype=torch.uint8)
        >>> y = to_float_images(x)
        >>> y.shape, y.max().item()
        (torch.Size([2, 3, 4, 4]), 1.0)
    """
    if images.dtype != torch.uint8 or images.dim() not in (3, 4):
        raise ValueError(
            "images must be a uint8 tensor of shape (n, H, W) or (n, H, W, C), got "
            f"dtype {images.dtype} and shape {tuple(images.shape)}."
        )
    if images.dim() == 3:
        images = images.unsqueeze(-1)
    return images.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


class ImageArrayDataset(Dataset[tuple[Any, Any]]):
    """Images held in memory as one uint8 array, with torchvision-style transforms.

    An item is ``(image, target)``. Without a ``transform`` the image is a float32
    tensor of shape (C, H, W) in ``[0, 1]`` (C = 1 for greyscale), ready for
    numeric use. With a ``transform`` the image is a PIL image (mode ``"RGB"`` or
    ``"L"``) passed to the transform, as torchvision datasets do, so Lightly
    transforms such as ``SimCLRTransform`` work unchanged. The target is a Python
    ``int`` passed through ``target_transform`` when one is given.

    ``transform`` is read at every access, so ``LightlyDataset.from_torch_dataset(
    dataset, transform=...)``, which assigns ``dataset.transform``, works.

    Args:
        data: uint8 array of shape (n, H, W) or (n, H, W, C).
        targets: Integer labels of shape (n,).
        classes: Class names, ``classes[label]`` names a label.
        transform: Callable applied to the PIL image.
        target_transform: Callable applied to the int label.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> data = np.zeros((2, 8, 8, 3), dtype=np.uint8)
        >>> ds = ImageArrayDataset(data, np.array([0, 1]), ["a", "b"])
        >>> image, target = ds[1]
        >>> tuple(image.shape), target
        ((3, 8, 8), 1)
    """

    def __init__(
        self,
        data: NDArray[np.uint8],
        targets: NDArray[np.int64],
        classes: Sequence[str],
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if data.dtype != np.uint8 or data.ndim not in (3, 4):
            raise ValueError(
                "data must be a uint8 array of shape (n, H, W) or (n, H, W, C), got "
                f"dtype {data.dtype} and shape {data.shape}."
            )
        if targets.shape != (data.shape[0],):
            raise ValueError(
                f"targets must have shape ({data.shape[0]},), got {targets.shape}."
            )
        self.data = data
        self.targets = targets.astype(np.int64, copy=False)
        self.classes = list(classes)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        array = self.data[index]
        image: Any
        if self.transform is None:
            image = to_float_images(torch.from_numpy(array[None].copy()))[0]
        else:
            # uint8 (H, W) gives mode "L", (H, W, 3) gives mode "RGB".
            image = self.transform(Image.fromarray(array))
        target: Any = int(self.targets[index])
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={len(self)}, "
            f"image_shape={tuple(self.data.shape[1:])}, classes={len(self.classes)}, "
            f"transform={self.transform!r})"
        )
