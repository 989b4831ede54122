"""The kernel backbone that replaces a deep backbone in Lightly scripts.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes.backbone.cached_views import (
    CachedViews,
    FeatureBackbone,
    cache_views,
)
from lightly_krepes.backbone.closed_form import (
    ViewMoments,
    barlow_twins_objective,
    fit_closed_form,
    spectral_contrastive_objective,
    view_moments,
)
from lightly_krepes.backbone.kernel_backbone import KernelBackbone, coordinate_scale
from lightly_krepes.backbone.pool import collect_pool, first_view

__all__ = [
    "CachedViews",
    "FeatureBackbone",
    "KernelBackbone",
    "ViewMoments",
    "barlow_twins_objective",
    "cache_views",
    "collect_pool",
    "coordinate_scale",
    "first_view",
    "fit_closed_form",
    "spectral_contrastive_objective",
    "view_moments",
]
