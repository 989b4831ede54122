"""lightly-krepes: kernel representation learning at scale (KREPES) for Lightly.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes.attribution import (
    ClassCoverage,
    Direction,
    FeatureAlignmentGap,
    LandmarkAttribution,
    LandmarkMask,
    LandmarkRemovalResult,
    RepresenterInfluence,
    Similarity,
    class_coverage_kappa,
    concept_activation_vector,
    concept_influence,
    cosine_nearest_landmark_precision,
    feature_alignment_gap,
    feature_consistency,
    landmark_removal_test,
    precision_at_1,
    sample_specific_influence,
)
from lightly_krepes.audit import (
    AuditObjective,
    AuditResult,
    DampingCandidate,
    DampingSelection,
    NewtonStep,
    SpectralEntropy,
    apply_step,
    audit_encoder,
    estimate_curvature,
    newton_step,
    select_damping,
    solve_newton,
    spectral_entropy,
)
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
from lightly_krepes.plotting import (
    plot_concept_influence,
    plot_feature_alignment_gap,
    plot_proponents_opponents,
    plot_representer_landmarks,
    top_representer_landmarks,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "RBF",
    "AuditObjective",
    "AuditResult",
    "ClassCoverage",
    "DampingCandidate",
    "DampingSelection",
    "Direction",
    "EmpiricalNTK",
    "FeatureAlignmentGap",
    "FeatureKernel",
    "Kernel",
    "KernelBackbone",
    "KernelPCALoss",
    "LandmarkAttribution",
    "LandmarkMask",
    "LandmarkRemovalResult",
    "Laplace",
    "Linear",
    "NewtonStep",
    "Normalized",
    "Nystrom",
    "Polynomial",
    "RepresenterInfluence",
    "Similarity",
    "SpectralContrastiveLoss",
    "SpectralEntropy",
    "__version__",
    "apply_step",
    "audit_encoder",
    "class_coverage_kappa",
    "concept_activation_vector",
    "concept_influence",
    "cosine_nearest_landmark_precision",
    "estimate_curvature",
    "feature_alignment_gap",
    "feature_consistency",
    "landmark_removal_test",
    "newton_step",
    "plot_concept_influence",
    "plot_feature_alignment_gap",
    "plot_proponents_opponents",
    "plot_representer_landmarks",
    "precision_at_1",
    "sample_specific_influence",
    "select_damping",
    "select_landmarks",
    "solve_newton",
    "spectral_entropy",
    "top_representer_landmarks",
]
