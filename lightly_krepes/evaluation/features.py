"""Feature extraction with a frozen model.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from collections.abc import Iterable, Sized
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm


class ExtractedFeatures(NamedTuple):
    """Outcome of :func:`extract_features`.

    Attributes:
        features: Tensor of shape (n, D) on the CPU.
        labels: Tensor of shape (n,) on the CPU if the batches carried labels (the
            second element of tuple batches), else None.
    """

    features: Tensor
    labels: Tensor | None


def _split_batch(batch: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], Tensor):
        labels = batch[1] if len(batch) > 1 and isinstance(batch[1], Tensor) else None
        return batch[0], labels
    raise TypeError(
        "Expected batches that are tensors or tuples whose first element is a tensor "
        f"(e.g. (inputs, labels)), got {type(batch).__name__}. For multi-view "
        f"batches, extract features of one view."
    )


def _default_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def extract_features(
    model: nn.Module,
    data: Tensor | Iterable[Any],
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
        data: Tensor of shape (n, ...) of inputs, split into ``batch_size``
            chunks, or an iterable of batches such as a ``DataLoader`` whose
            batches are tensors or tuples ``(inputs, labels, ...)``.
        batch_size: Rows per batch when ``data`` is a tensor (ignored otherwise).
        device: Device the inputs are moved to; None uses the device of the
            model's first parameter or buffer (the CPU if it has none).
        progress: Show a tqdm progress bar.
        flatten: Flatten outputs to (batch, -1), e.g. (B, C, 1, 1) pooled maps.

    Returns:
        :class:`ExtractedFeatures` with the features (n, D) and the labels (n,),
        both on the CPU.

    Raises:
        TypeError: If a batch is neither a tensor nor a tuple starting with one.
        ValueError: If ``batch_size`` is not positive or ``data`` is empty.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout())
        >>> features, labels = extract_features(model, torch.randn(10, 3),
        ...                                     batch_size=4, progress=False)
        >>> features.shape, labels, model.training
        (torch.Size([10, 2]), None, True)
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    target = torch.device(device) if device is not None else _default_device(model)
    batches: Iterable[Any] = (
        torch.split(data, int(batch_size)) if isinstance(data, Tensor) else data
    )
    total = len(batches) if isinstance(batches, Sized) else None

    modes = [(module, module.training) for module in model.modules()]
    features: list[Tensor] = []
    labels: list[Tensor] = []
    try:
        model.eval()
        with torch.no_grad():
            for batch in tqdm(
                batches, total=total, disable=not progress, desc="features"
            ):
                inputs, batch_labels = _split_batch(batch)
                output = model(inputs.to(target))
                if flatten:
                    output = output.flatten(start_dim=1)
                features.append(output.cpu())
                if batch_labels is not None:
                    labels.append(batch_labels.cpu())
    finally:
        for module, mode in modes:
            module.train(mode)
    if not features:
        raise ValueError("data is empty: no batch was produced.")
    if labels and len(labels) != len(features):
        raise ValueError("Some batches carried labels and others did not.")
    return ExtractedFeatures(
        features=torch.cat(features), labels=torch.cat(labels) if labels else None
    )
