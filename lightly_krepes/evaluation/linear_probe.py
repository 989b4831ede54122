"""Linear probe: logistic regression on frozen representations.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Chen, Kornblith, Norouzi, Hinton, 2020, A Simple Framework for Contrastive
  Learning of Visual Representations (SimCLR), arXiv 2002.05709
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lightly_krepes.evaluation._checks import (
    ArrayLike,
    check_features_labels,
    check_same_dim,
    to_numpy,
)


@dataclass(frozen=True)
class LinearProbeResult:
    """Outcome of :func:`linear_probe`.

    Attributes:
        accuracy: Test accuracy in [0, 1].
        num_labeled: Number of training rows the classifier was fitted on.
        labeled_indices: Indices (into the training set) of those rows, sorted.
        classifier: The fitted scikit-learn pipeline (``StandardScaler`` followed
            by ``LogisticRegression``); ``classifier.predict_proba`` gives the
            probe's class probabilities, e.g. for :func:`surrogate_fidelity`.
    """

    accuracy: float
    num_labeled: int
    labeled_indices: np.ndarray[Any, np.dtype[np.intp]]
    classifier: Any


def linear_probe(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    label_fraction: float = 0.1,
    seed: int = 0,
    C: float = 1.0,
    max_iter: int = 1000,
) -> LinearProbeResult:
    """Fits a logistic-regression probe on a labelled fraction and scores the test set.

    A stratified random subset of ``label_fraction`` of the training rows (seeded,
    via scikit-learn's ``train_test_split``) is labelled; features are standardised
    with statistics of that subset, then a multinomial ``LogisticRegression``
    (lbfgs, L2 penalty with inverse strength ``C``) is fitted. Use
    ``label_fraction=1.0`` for the usual full-label probe.

    Args:
        train_features: Array of shape (n_train, D), frozen representations.
        train_labels: Array of shape (n_train,), class labels.
        test_features: Array of shape (n_test, D).
        test_labels: Array of shape (n_test,).
        label_fraction: Fraction of training rows that are labelled, in (0, 1].
        seed: Seed of the labelled subset (the fit itself is deterministic).
        C: Inverse L2 regularisation strength of the logistic regression.
        max_iter: Maximum number of lbfgs iterations.

    Returns:
        :class:`LinearProbeResult` with the test accuracy and the fitted probe.

    Raises:
        TypeError: If an input is neither a tensor nor a NumPy array.
        ValueError: If shapes or lengths do not match, features are not finite,
            ``label_fraction`` lies outside (0, 1], the labelled subset would be
            smaller than the number of classes, or a class has a single row.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Chen et al., 2020, SimCLR, arXiv 2002.05709

    Examples:
        >>> import torch
        >>> x = torch.cat([torch.randn(50, 2) - 4, torch.randn(50, 2) + 4])
        >>> y = torch.arange(100) // 50
        >>> linear_probe(x, y, x, y, label_fraction=0.2).accuracy
        1.0
    """
    x_train = to_numpy(train_features, "train_features")
    y_train = to_numpy(train_labels, "train_labels")
    x_test = to_numpy(test_features, "test_features")
    y_test = to_numpy(test_labels, "test_labels")
    check_features_labels(x_train, y_train, "train")
    check_features_labels(x_test, y_test, "test")
    check_same_dim(x_train, x_test)
    if not 0.0 < label_fraction <= 1.0:
        raise ValueError(f"label_fraction must lie in (0, 1], got {label_fraction}.")
    if not C > 0:
        raise ValueError(f"C must be positive, got {C}.")

    indices = np.arange(x_train.shape[0])
    if label_fraction < 1.0:
        num_classes = len(np.unique(y_train))
        num_labeled = int(np.floor(label_fraction * len(indices)))
        if num_labeled < num_classes:
            raise ValueError(
                f"label_fraction={label_fraction} labels {num_labeled} of "
                f"{len(indices)} training rows, fewer than the {num_classes} "
                f"classes; increase label_fraction."
            )
        indices, _ = train_test_split(
            indices,
            train_size=num_labeled,
            stratify=y_train,
            random_state=seed,
        )
        indices = np.sort(indices)

    classifier = make_pipeline(
        StandardScaler(), LogisticRegression(C=C, max_iter=max_iter)
    )
    classifier.fit(x_train[indices], y_train[indices])
    accuracy = float(classifier.score(x_test, y_test))
    return LinearProbeResult(
        accuracy=accuracy,
        num_labeled=len(indices),
        labeled_indices=indices,
        classifier=classifier,
    )
