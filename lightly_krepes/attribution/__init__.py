"""Attribution: landmark influence, Captum integration and the audit's scores.

Every representation of a :class:`~lightly_krepes.KernelBackbone` is an exact sum
over landmarks, ``f(x) = sum_j alpha_j k(l_j, x) + gamma``; these tools score the
landmarks' terms, plug them into Captum and validate them.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes.attribution._common import Direction, Similarity, TargetSpec
from lightly_krepes.attribution.feature_alignment import (
    FeatureAlignmentGap,
    feature_alignment_gap,
    feature_consistency,
)
from lightly_krepes.attribution.landmark_attribution import LandmarkAttribution
from lightly_krepes.attribution.landmark_mask import LandmarkMask
from lightly_krepes.attribution.landmark_validation import (
    ClassCoverage,
    LandmarkRemovalResult,
    class_coverage_kappa,
    cosine_nearest_landmark_precision,
    landmark_removal_test,
    precision_at_1,
)
from lightly_krepes.attribution.representer_influence import RepresenterInfluence
from lightly_krepes.attribution.scores import (
    concept_activation_vector,
    concept_influence,
    sample_specific_influence,
)

__all__ = [
    "ClassCoverage",
    "Direction",
    "FeatureAlignmentGap",
    "LandmarkAttribution",
    "LandmarkMask",
    "LandmarkRemovalResult",
    "RepresenterInfluence",
    "Similarity",
    "TargetSpec",
    "class_coverage_kappa",
    "concept_activation_vector",
    "concept_influence",
    "cosine_nearest_landmark_precision",
    "feature_alignment_gap",
    "feature_consistency",
    "landmark_removal_test",
    "precision_at_1",
    "sample_specific_influence",
]
