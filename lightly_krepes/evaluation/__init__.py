"""Evaluation: linear probe, weighted kNN, surrogate fidelity, feature extraction.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes.evaluation.features import ExtractedFeatures, extract_features
from lightly_krepes.evaluation.fidelity import SurrogateFidelity, surrogate_fidelity
from lightly_krepes.evaluation.knn import knn_accuracy
from lightly_krepes.evaluation.linear_probe import LinearProbeResult, linear_probe

__all__ = [
    "ExtractedFeatures",
    "LinearProbeResult",
    "SurrogateFidelity",
    "extract_features",
    "knn_accuracy",
    "linear_probe",
    "surrogate_fidelity",
]
