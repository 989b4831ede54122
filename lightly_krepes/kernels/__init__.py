"""Kernels: one interface, ``kernel(x1, x2)`` for Gram matrices and ``kernel.diag(x)``.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes.kernels.base import FeatureKernel, Kernel
from lightly_krepes.kernels.classic import RBF, Laplace, Linear, Polynomial
from lightly_krepes.kernels.entk import EmpiricalNTK
from lightly_krepes.kernels.features import Factor, KernelFeatures
from lightly_krepes.kernels.induced_rbf import InducedRBF, median_lengthscale
from lightly_krepes.kernels.normalized import Normalized
from lightly_krepes.kernels.patches import PatchKernel
from lightly_krepes.kernels.sum import SumKernel

__all__ = [
    "RBF",
    "EmpiricalNTK",
    "Factor",
    "FeatureKernel",
    "InducedRBF",
    "Kernel",
    "KernelFeatures",
    "Laplace",
    "Linear",
    "Normalized",
    "PatchKernel",
    "Polynomial",
    "SumKernel",
    "median_lengthscale",
]
