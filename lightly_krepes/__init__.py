"""lightly-krepes: kernel representation learning at scale (KREPES) for Lightly.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes.kernels import (
    RBF,
    FeatureKernel,
    Kernel,
    Laplace,
    Linear,
    Normalized,
    Polynomial,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "RBF",
    "FeatureKernel",
    "Kernel",
    "Laplace",
    "Linear",
    "Normalized",
    "Polynomial",
    "__version__",
]
