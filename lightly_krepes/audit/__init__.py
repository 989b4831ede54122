"""Audit of a trained SSL encoder: one damped Newton step of its kernel surrogate.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes._inputs import view_batches
from lightly_krepes.audit.audit import (
    AuditResult,
    audit,
    audit_encoder,
    audit_views,
    refine_step,
)
from lightly_krepes.audit.cache import (
    AuditCache,
    AuditRefit,
    audit_refit,
    landmark_gram,
)
from lightly_krepes.audit.damping import (
    DampingCandidate,
    DampingSelection,
    SpectralEntropy,
    estimate_curvature,
    estimate_min_eigenvalue,
    select_damping,
    spectral_entropy,
)
from lightly_krepes.audit.feature_store import FeatureStore, backbone_fingerprint
from lightly_krepes.audit.krylov import Lanczos, ShiftedSolves
from lightly_krepes.audit.newton import (
    NewtonStep,
    apply_step,
    newton_step,
    solve_newton,
)
from lightly_krepes.audit.objective import (
    DEFAULT_CURVATURE_ROWS,
    AuditObjective,
    curvature_subsample,
)
from lightly_krepes.audit.restricted import restricted_step, step_null_space
from lightly_krepes.audit.surrogate import (
    RidgeFit,
    RidgeMoments,
    SurrogateFit,
    build_surrogate,
    fit_ridge,
    set_linear,
    solve_ridge,
)

__all__ = [
    "DEFAULT_CURVATURE_ROWS",
    "AuditCache",
    "AuditObjective",
    "AuditRefit",
    "AuditResult",
    "DampingCandidate",
    "DampingSelection",
    "FeatureStore",
    "Lanczos",
    "NewtonStep",
    "RidgeFit",
    "RidgeMoments",
    "ShiftedSolves",
    "SpectralEntropy",
    "SurrogateFit",
    "apply_step",
    "audit",
    "audit_encoder",
    "audit_refit",
    "audit_views",
    "backbone_fingerprint",
    "build_surrogate",
    "curvature_subsample",
    "estimate_curvature",
    "estimate_min_eigenvalue",
    "fit_ridge",
    "landmark_gram",
    "newton_step",
    "refine_step",
    "restricted_step",
    "select_damping",
    "set_linear",
    "solve_newton",
    "solve_ridge",
    "spectral_entropy",
    "step_null_space",
    "view_batches",
]
