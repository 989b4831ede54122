"""lightly-krepes: kernel representation learning at scale (KREPES) for Lightly.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import (
    RBF,
    EmpiricalNTK,
    FeatureKernel,
    Kernel,
    Laplace,
    Linear,
    Normalized,
    Polynomial,
)
from lightly_krepes.landmarks import select_landmarks
from lightly_krepes.loss import KernelPCALoss, SpectralContrastiveLoss
from lightly_krepes.nystrom import Nystrom

__version__ = "0.1.0.dev0"

__all__ = [
    "RBF",
    "EmpiricalNTK",
    "FeatureKernel",
    "Kernel",
    "KernelBackbone",
    "KernelPCALoss",
    "Laplace",
    "Linear",
    "Normalized",
    "Nystrom",
    "Polynomial",
    "SpectralContrastiveLoss",
    "__version__",
    "select_landmarks",
]
