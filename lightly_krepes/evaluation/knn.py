"""Weighted kNN accuracy as in Lightly's benchmarks.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Wu, Xiong, Yu, Lin, 2018, Unsupervised Feature Learning via Non-Parametric
  Instance Discrimination, arXiv 1805.01978
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict
from torch import Tensor

from lightly_krepes.evaluation._checks import (
    ArrayLike,
    check_features_labels,
    check_same_dim,
    to_tensor,
)


def _is_integer(x: Tensor) -> bool:
    return not (x.is_floating_point() or x.is_complex())


def knn_accuracy(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    k: int = 200,
    temperature: float = 0.1,
    batch_size: int = 1024,
) -> float:
    """Top-1 accuracy of Lightly's cosine-similarity weighted kNN classifier.

    Features are L2-normalised; each test row votes with its ``k`` most similar
    training rows, weighted by ``exp(cos / temperature)``
    (:func:`lightly.utils.benchmarking.knn_predict`, the monitor of Lightly's
    benchmarks, with their defaults k=200, temperature=0.1). Computed on the
    device of ``train_features``, ``batch_size`` test rows at a time.

    Args:
        train_features: Array of shape (n_train, D), the feature bank.
        train_labels: Integer array of shape (n_train,), labels in [0, C).
        test_features: Array of shape (n_test, D).
        test_labels: Integer array of shape (n_test,), labels in [0, C).
        k: Number of neighbours, 1 <= k <= n_train.
        temperature: Positive temperature of the similarity weights.
        batch_size: Number of test rows per similarity block.

    Returns:
        Accuracy in [0, 1].

    Raises:
        TypeError: If an input is neither a tensor nor a NumPy array, or the
            labels are not integers.
        ValueError: If shapes or lengths do not match, labels are negative,
            ``k`` is outside [1, n_train] or ``temperature`` is not positive.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Wu et al., 2018, Unsupervised Feature Learning via Non-Parametric
          Instance Discrimination, arXiv 1805.01978

    Examples:
        >>> x = torch.cat([torch.randn(50, 2) - 4, torch.randn(50, 2) + 4])
        >>> y = torch.arange(100) // 50
        >>> knn_accuracy(x, y, x, y, k=10)
        1.0
    """
    x_train = to_tensor(train_features, "train_features")
    y_train = to_tensor(train_labels, "train_labels")
    x_test = to_tensor(test_features, "test_features")
    y_test = to_tensor(test_labels, "test_labels")
    check_features_labels(x_train, y_train, "train")
    check_features_labels(x_test, y_test, "test")
    check_same_dim(x_train, x_test)
    for name, labels in (("train_labels", y_train), ("test_labels", y_test)):
        if (
            labels.is_floating_point()
            or labels.is_complex()
            or labels.dtype == torch.bool
        ):
            raise TypeError(f"{name} must hold integer class ids, got {labels.dtype}.")
        if bool((labels < 0).any()):
            raise ValueError(f"{name} must be non-negative class ids.")
    n_train = x_train.shape[0]
    if int(k) != k or not 1 <= k <= n_train:
        raise ValueError(
            f"k must be an integer between 1 and the number of training rows "
            f"({n_train}), got {k}."
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")

    device = x_train.device
    dtype = x_train.dtype if x_train.dtype == torch.float64 else torch.float32
    bank = F.normalize(x_train.to(dtype), dim=1).T.contiguous()
    bank_labels = y_train.to(device=device, dtype=torch.long)
    num_classes = int(max(int(y_train.max()), int(y_test.max()))) + 1
    correct = 0
    for start in range(0, x_test.shape[0], int(batch_size)):
        queries = x_test[start : start + int(batch_size)].to(device, dtype)
        predictions = knn_predict(
            F.normalize(queries, dim=1),
            bank,
            bank_labels,
            num_classes=num_classes,
            knn_k=int(k),
            knn_t=float(temperature),
        )[:, 0]
        targets = y_test[start : start + int(batch_size)].to(device, torch.long)
        correct += int((predictions == targets).sum())
    return correct / x_test.shape[0]
