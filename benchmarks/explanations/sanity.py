"""Sanity check: the scores of a re-initialised encoder must differ.

The trained encoder's explained expansion against the surrogate of an untrained
encoder (fresh seeded initialisation) on the *same* landmarks
(``build_surrogate(..., landmarks=...)``), explained by the same
:class:`~lightly_krepes.attribution.LandmarkExpansion` defaults (Adebayo et
al. 2018, model-parameter randomisation). Reported: the mean per-point Spearman
correlation of the two score rows, top-1 agreement and top-10 overlap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor, nn

from lightly_krepes.attribution import LandmarkExpansion
from lightly_krepes.audit import build_surrogate

TARGET_SPEARMAN = 0.5
"""Scores 'differ' when their mean per-point Spearman correlation is below this."""


def run(
    expansion: LandmarkExpansion,
    reinitialised: nn.Module,
    data: Tensor,
    x: Tensor,
    *,
    fit: str,
    seed: int,
    normalized: bool = True,
    bandwidth: float | None = None,
) -> dict[str, Any]:
    """Compares the trained and re-initialised encoders' scores on x."""
    surrogate = build_surrogate(
        reinitialised.eval(), data, landmarks=expansion.landmarks, seed=seed,
        fit=fit, normalized=normalized, bandwidth=bandwidth,  # type: ignore[arg-type]
        progress=False,
    )  # fmt: skip
    other = LandmarkExpansion(surrogate, inputs=x, seed=seed)
    with torch.no_grad():
        a = expansion.scores(x).double().cpu().numpy()
        b = other.scores(x).double().cpu().numpy()
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    rho = (ra * rb).sum(1) / np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    k = min(10, a.shape[1])
    top_a = np.argsort(-a, axis=1)[:, :k]
    top_b = np.argsort(-b, axis=1)[:, :k]
    pairs = zip(top_a, top_b, strict=True)
    overlap = np.mean([len(set(p) & set(q)) / k for p, q in pairs])
    out = {
        "mean_spearman": float(rho.mean()),
        "top1_agreement": float((top_a[:, 0] == top_b[:, 0]).mean()),
        "top10_overlap": float(overlap),
        "reinitialised_fidelity": other.refit.fidelity,
    }
    out["meets_target"] = bool(out["mean_spearman"] < TARGET_SPEARMAN)
    return out
