"""Input conversion and checks shared by the evaluation functions."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

ArrayLike = Tensor | npt.NDArray[np.generic]


def to_numpy(x: ArrayLike, name: str) -> npt.NDArray[np.generic]:
    """Returns ``x`` as a NumPy array (detached and on the CPU for tensors)."""
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(
        f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}."
    )


def to_tensor(x: ArrayLike, name: str) -> Tensor:
    """Returns ``x`` as a tensor (NumPy arrays are converted, not copied)."""
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise TypeError(
        f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}."
    )


def check_features_labels(
    features: npt.NDArray[np.generic] | Tensor,
    labels: npt.NDArray[np.generic] | Tensor,
    split: str,
) -> None:
    """Checks a (n, D) feature matrix, finite, with n matching labels of shape (n,)."""
    if features.ndim != 2:
        raise ValueError(
            f"{split}_features must have shape (n, dim), got {tuple(features.shape)}. "
            f"Flatten the features first."
        )
    if labels.ndim != 1:
        raise ValueError(
            f"{split}_labels must have shape (n,), got {tuple(labels.shape)}."
        )
    if features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{split}_features has {features.shape[0]} rows but {split}_labels has "
            f"{labels.shape[0]} entries; they must match."
        )
    if features.shape[0] == 0:
        raise ValueError(f"{split}_features is empty.")
    finite = (
        bool(torch.isfinite(features).all())
        if isinstance(features, Tensor)
        else bool(np.isfinite(features).all())
    )
    if not finite:
        raise ValueError(f"{split}_features contains NaN or infinite values.")


def check_same_dim(train_features: ArrayLike, test_features: ArrayLike) -> None:
    """Checks that train and test features have the same dimension."""
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train_features has dimension {train_features.shape[1]} but "
            f"test_features has dimension {test_features.shape[1]}."
        )
