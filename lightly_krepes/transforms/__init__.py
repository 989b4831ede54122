"""View transforms for tabular data (SCARF corruption, Gaussian noise).

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Bahri et al., 2022, SCARF, arXiv 2106.15147
"""

from lightly_krepes.transforms.tabular import (
    GaussianNoise,
    RandomFeatureCorruption,
    TabularMultiViewTransform,
    TabularViewTransform,
)

__all__ = [
    "GaussianNoise",
    "RandomFeatureCorruption",
    "TabularMultiViewTransform",
    "TabularViewTransform",
]
