"""The kernel backbone that replaces a deep backbone in Lightly scripts.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes.backbone.kernel_backbone import KernelBackbone
from lightly_krepes.backbone.pool import collect_pool, first_view

__all__ = ["KernelBackbone", "collect_pool", "first_view"]
