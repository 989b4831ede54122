"""Fidelity of a kernel surrogate to the network it explains.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Engel et al., 2024, Faithful and Efficient Explanations for Neural Networks via
  Neural Tangent Kernel Surrogate Models, ICLR, arXiv 2305.14585
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import expit, softmax
from scipy.stats import kendalltau

from lightly_krepes.evaluation._checks import ArrayLike, to_numpy


@dataclass(frozen=True)
class SurrogateFidelity:
    """Outcome of :func:`surrogate_fidelity`.

    Attributes:
        kernel_accuracy: Accuracy of the kernel surrogate, in [0, 1].
        network_accuracy: Accuracy of the network, in [0, 1].
        accuracy_gap: ``network_accuracy - kernel_accuracy`` (positive when the
            surrogate is less accurate).
        kendall_tau: Kendall tau-b between the two models' probabilities of the
            true class over the samples, in [-1, 1]; NaN if either is constant.
        kendall_pvalue: Two-sided p-value of ``kendall_tau`` (scipy).
        agreement: Fraction of samples on which both predict the same class.
    """

    kernel_accuracy: float
    network_accuracy: float
    accuracy_gap: float
    kendall_tau: float
    kendall_pvalue: float
    agreement: float


def _probabilities(
    scores: npt.NDArray[np.generic], kind: str, name: str
) -> npt.NDArray[np.float64]:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim == 1:
        positive = expit(values) if kind == "logits" else values
        values = np.stack([1.0 - positive, positive], axis=1)
    elif values.ndim != 2 or values.shape[1] < 2:
        raise ValueError(
            f"{name} must have shape (n, num_classes) with num_classes >= 2, or (n,) "
            f"for one binary score, got {tuple(values.shape)}."
        )
    elif kind == "logits":
        values = softmax(values, axis=1)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return values


def surrogate_fidelity(
    kernel_scores: ArrayLike,
    network_scores: ArrayLike,
    labels: ArrayLike,
    scores: Literal["logits", "probabilities"] = "logits",
) -> SurrogateFidelity:
    """Compares a kernel surrogate's predictions with the network's.

    Both models are given as per-class scores of the same n samples (e.g. logits
    of linear probes on the KREPES representations and on the network's
    representations). Reported are each model's accuracy, their gap, the agreement
    of the predicted classes, and the Kendall rank correlation between the two
    models' predicted probabilities of the true class (``softmax`` of logits), the
    faithfulness measure of NTK surrogate models [1] that the KREPES audit reports
    (tau >= 0.78) [0]. Tau is rank based, so it is unchanged by any monotone
    rescaling of the probabilities; tau-b accounts for ties.

    Args:
        kernel_scores: Array of shape (n, C) with the surrogate's logits or
            probabilities, or shape (n,) with one binary logit / probability of
            class 1.
        network_scores: Array of the same shape with the network's scores.
        labels: Integer array of shape (n,), true classes in [0, C).
        scores: ``"logits"`` (softmax / sigmoid is applied) or ``"probabilities"``
            (used as given).

    Returns:
        :class:`SurrogateFidelity`.

    Raises:
        TypeError: If an input is neither a tensor nor a NumPy array.
        ValueError: If the shapes do not match, there are no samples, scores are
            not finite, labels lie outside [0, C) or ``scores`` is unknown.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Engel et al., 2024, Faithful and Efficient Explanations for Neural
          Networks via Neural Tangent Kernel Surrogate Models, arXiv 2305.14585

    Examples:
        >>> logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
        >>> labels = np.array([0, 1, 1])
        >>> result = surrogate_fidelity(logits, 3 * logits, labels)
        >>> result.kendall_tau, result.agreement, result.accuracy_gap
        (1.0, 1.0, 0.0)
    """
    if scores not in ("logits", "probabilities"):
        raise ValueError(f"scores must be 'logits' or 'probabilities', got {scores!r}.")
    kernel = to_numpy(kernel_scores, "kernel_scores")
    network = to_numpy(network_scores, "network_scores")
    y = to_numpy(labels, "labels")
    if kernel.shape != network.shape:
        raise ValueError(
            f"kernel_scores and network_scores must have the same shape, got "
            f"{tuple(kernel.shape)} and {tuple(network.shape)}."
        )
    if y.ndim != 1 or len(y) != kernel.shape[0]:
        raise ValueError(
            f"labels must have shape ({kernel.shape[0]},), got {tuple(y.shape)}."
        )
    if len(y) == 0:
        raise ValueError("No samples: the inputs are empty.")
    p_kernel = _probabilities(kernel, scores, "kernel_scores")
    p_network = _probabilities(network, scores, "network_scores")
    num_classes = p_kernel.shape[1]
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must hold integer class ids, got dtype {y.dtype}.")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}) to index the {num_classes} "
            f"score columns, got values in [{y.min()}, {y.max()}]."
        )

    rows = np.arange(len(y))
    pred_kernel = p_kernel.argmax(axis=1)
    pred_network = p_network.argmax(axis=1)
    kernel_accuracy = float((pred_kernel == y).mean())
    network_accuracy = float((pred_network == y).mean())
    tau = kendalltau(p_kernel[rows, y], p_network[rows, y])
    return SurrogateFidelity(
        kernel_accuracy=kernel_accuracy,
        network_accuracy=network_accuracy,
        accuracy_gap=network_accuracy - kernel_accuracy,
        kendall_tau=float(tau.statistic),
        kendall_pvalue=float(tau.pvalue),
        agreement=float((pred_kernel == pred_network).mean()),
    )
