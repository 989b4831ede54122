"""Feature extraction with a frozen model.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lightly_krepes._inputs import iter_split_batches


class ExtractedFeatures(NamedTuple):
    """Outcome of :func:`extract_features`.

    Attributes:
        features: Tensor of shape (n, D) on the CPU.
        labels: Tensor of shape (n,) on the CPU if the batches carried labels (the
            second element of tuple batches), else None.
    """

    features: Tensor
    labels: Tensor | None


def _default_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def extract_features(
    model: nn.Module,
    data: Tensor | Dataset[Any] | Iterable[Any],
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: bool = True,
    flatten: bool = True,
) -> ExtractedFeatures:
    """Computes ``model(x)`` for all inputs under ``torch.no_grad`` in eval mode.

    Every submodule is put in eval mode for the extraction (BatchNorm uses its
    running statistics, dropout is off) and gets its previous mode back
    afterwards, even if the extraction fails.

    Args:
        model: The frozen model, e.g. a backbone or a KREPES kernel backbone.
        data: Tensor of shape (n, ...) of inputs; a map-style data set
            (``__len__`` and ``__getitem__``, e.g. ``lightly.data.LightlyDataset``)
            whose items are tensors, ``(input, label, ...)`` tuples or Lightly
            multi-view items (the first view is used); or an iterable of batches
            such as a ``DataLoader``; see :mod:`lightly_krepes._inputs`.
        batch_size: Samples per batch for tensors and data sets (a loader keeps
            its own batches).
        device: Device the inputs are moved to; None uses the device of the
            model's first parameter or buffer (the CPU if it has none).
        progress: Show a tqdm progress bar.
        flatten: Flatten outputs to (batch, -1), e.g. (B, C, 1, 1) pooled maps.

    Returns:
        :class:`ExtractedFeatures` with the features (n, D) and the labels (n,),
        both on the CPU.

    Raises:
        TypeError: If an item or batch holds no tensor input (e.g. a PIL image:
            add a ``ToTensor`` transform).
        ValueError: If ``batch_size`` is not positive, ``data`` is empty, or
            samples differ in shape or hold NaN or infinite values.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout())
        >>> features, labels = extract_features(model, torch.randn(10, 3),
        ...                                     batch_size=4, progress=False)
        >>> features.shape, labels, model.training
        (torch.Size([10, 2]), None, True)
    """
    target = torch.device(device) if device is not None else _default_device(model)
    batches = iter_split_batches(data, batch_size, progress=progress, desc="features")

    modes = [(module, module.training) for module in model.modules()]
    features: list[Tensor] = []
    labels: list[Tensor] = []
    try:
        model.eval()
        with torch.no_grad():
            for inputs, batch_labels in batches:
                output = model(inputs.to(target))
                if flatten:
                    output = output.flatten(start_dim=1)
                features.append(output.cpu())
                if batch_labels is not None:
                    labels.append(batch_labels.cpu())
    finally:
        for module, mode in modes:
            module.train(mode)
    if labels and len(labels) != len(features):
        raise ValueError("Some batches carried labels and others did not.")
    return ExtractedFeatures(
        features=torch.cat(features), labels=torch.cat(labels) if labels else None
    )
