"""Attribution: landmark scores specific to each input, Captum integration, checks.

Every representation of a :class:`~lightly_krepes.KernelBackbone` is an exact sum
over landmarks, ``f(x) = sum_j alpha_j k(l_j, x) + gamma``. One
:class:`LandmarkExpansion` (ridge-refit, well-conditioned weights and a reference
kernel row) is what every tool here explains: the scores, the Captum adapters
(:class:`RepresenterInfluence`, :class:`LandmarkMask`,
:class:`LandmarkAttribution`), the validation checks and the pictures.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes.attribution.counterfactual_influence import (
    CounterfactualInfluence,
)
from lightly_krepes.attribution.expansion import (
    LandmarkExpansion,
    RidgeRefit,
    as_expansion,
)
from lightly_krepes.attribution.feature_alignment import (
    FeatureAlignmentGap,
    feature_alignment_gap,
    feature_consistency,
)
from lightly_krepes.attribution.landmark_attribution import LandmarkAttribution
from lightly_krepes.attribution.landmark_mask import LandmarkMask
from lightly_krepes.attribution.landmark_validation import (
    ClassCoverage,
    DeletionResult,
    class_coverage_kappa,
    deletion_test,
    nearest_landmark_precision,
    precision_at_1,
)
from lightly_krepes.attribution.representer_influence import RepresenterInfluence
from lightly_krepes.attribution.scores import (
    concept_activation_vector,
    concept_influence,
    landmark_scores,
    sample_specific_influence,
    step_influence,
)
from lightly_krepes.attribution.streaming import streamed_top
from lightly_krepes.attribution.targets import (
    Dimension,
    Direction,
    OwnDirection,
    Similarity,
    Target,
    TargetSpec,
    as_target,
)

__all__ = [
    "ClassCoverage",
    "CounterfactualInfluence",
    "DeletionResult",
    "Dimension",
    "Direction",
    "FeatureAlignmentGap",
    "LandmarkAttribution",
    "LandmarkExpansion",
    "LandmarkMask",
    "OwnDirection",
    "RepresenterInfluence",
    "RidgeRefit",
    "Similarity",
    "Target",
    "TargetSpec",
    "as_expansion",
    "as_target",
    "class_coverage_kappa",
    "concept_activation_vector",
    "concept_influence",
    "deletion_test",
    "feature_alignment_gap",
    "feature_consistency",
    "landmark_scores",
    "nearest_landmark_precision",
    "precision_at_1",
    "sample_specific_influence",
    "step_influence",
    "streamed_top",
]
