"""Fidelity: the expansion to the model, and the audited surrogate to the encoder.

The expansion's correlation and cancellation come from
:class:`~lightly_krepes.attribution.RidgeRefit`; the accuracy gap and Kendall
tau from :func:`lightly_krepes.evaluation.surrogate_fidelity` on linear probes
(``_ssl_training.probe``) of the encoder and the audited surrogate.
"""

from __future__ import annotations

from typing import Any

from _ssl_training import Split, probe
from torch import nn

from lightly_krepes.attribution import LandmarkExpansion
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.evaluation import surrogate_fidelity

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
    kernel = probe(audited, labelled, test, seed)
    network = probe(encoder, labelled, test, seed)
    if kernel.probabilities is None or network.probabilities is None:
        out["probe"] = "non-finite representations"
        return out
    fid = surrogate_fidelity(
        kernel.probabilities, network.probabilities, test.labels.numpy(),
        scores="probabilities",
    )  # fmt: skip
    out.update(
        surrogate_accuracy=fid.kernel_accuracy,
        encoder_accuracy=fid.network_accuracy,
        gap_points=100 * fid.accuracy_gap,
        kendall_tau=fid.kendall_tau,
        agreement=fid.agreement,
    )
    out["meets_target"] = bool(
        refit.fidelity >= TARGETS["correlation"]
        and abs(out["gap_points"]) <= TARGETS["abs_gap_points"]
        and fid.kendall_tau >= TARGETS["kendall_tau"]
    )
    return out
