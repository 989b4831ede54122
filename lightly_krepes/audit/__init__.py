"""Audit of a trained SSL encoder: one damped Newton step of its kernel surrogate.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes.audit.audit import AuditResult, audit_encoder
from lightly_krepes.audit.damping import (
    DampingCandidate,
    DampingSelection,
    SpectralEntropy,
    estimate_curvature,
    estimate_min_eigenvalue,
    select_damping,
    spectral_entropy,
)
from lightly_krepes.audit.newton import (
    NewtonStep,
    apply_step,
    newton_step,
    solve_newton,
)
from lightly_krepes.audit.objective import AuditObjective

__all__ = [
    "AuditObjective",
    "AuditResult",
    "DampingCandidate",
    "DampingSelection",
    "NewtonStep",
    "SpectralEntropy",
    "apply_step",
    "audit_encoder",
    "estimate_curvature",
    "estimate_min_eigenvalue",
    "newton_step",
    "select_damping",
    "solve_newton",
    "spectral_entropy",
]
