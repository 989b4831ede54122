"""Fidelity: the expansion to the model, and the audited surrogate to the encoder.

The expansion's correlation and cancellation come from
:class:`~lightly_krepes.attribution.RidgeRefit`; the accuracy gap and Kendall
tau from :func:`lightly_krepes.evaluation.surrogate_fidelity` on linear probes
(``_ssl_training.probe``) of the encoder and the audited surrogate.
"""

from __future__ import annotations

from typing import Any

from _ssl_training import Split, probe_fidelity
from torch import nn

from lightly_krepes.attribution import LandmarkExpansion
from lightly_krepes.backbone import KernelBackbone

TARGETS = {"correlation": 0.99, "abs_gap_points": 0.5, "kendall_tau": 0.85}


def run(
    expansion: LandmarkExpansion,
    audited: KernelBackbone,
    encoder: nn.Module,
    labelled: Split,
    test: Split,
    seed: int,
) -> dict[str, Any]:
    """Expansion fidelity and cancellation; probe gap and tau vs the encoder."""
    refit = expansion.refit
    out: dict[str, Any] = {
        "eta": refit.eta,
        "correlation": refit.fidelity,
        "correlation_held_out": refit.held_out,
        "cancellation": refit.cancellation,
        "cancellation_raw": refit.cancellation_raw,
        "reference": refit.reference,
    }
    probes = probe_fidelity(audited, encoder, labelled, test, seed)
    if not probes:
        out["probe"] = "non-finite representations"
        return out
    out.update(probes)
    out["meets_target"] = bool(
        refit.fidelity >= TARGETS["correlation"]
        and abs(out["gap_points"]) <= TARGETS["abs_gap_points"]
        and out["kendall_tau"] >= TARGETS["kendall_tau"]
    )
    return out
