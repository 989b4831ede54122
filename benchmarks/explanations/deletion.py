"""Deletion: x's top-k terms removed (weights fixed, x only, bank unchanged).

Calls :func:`lightly_krepes.attribution.deletion_test` once per k and ranking;
this module only chooses the rankings and summarises the per-point drops.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightly_krepes.attribution import LandmarkExpansion, deletion_test

KS = (1, 5, 10, 20)
TARGET_RATIO = 20.0
"""Issue 8: top-10 >= 20x random-10 and above kernel-nearest-10."""


def interval(drops: Tensor) -> dict[str, float]:
    """Mean and normal-approximation 95% interval over the points."""
    values = drops.double().cpu()
    mean = float(values.mean())
    half = 1.96 * float(values.std()) / math.sqrt(len(values)) if len(values) > 1 else 0
    return {"mean": mean, "lo": mean - half, "hi": mean + half}


def cosine_ranking(expansion: LandmarkExpansion, x: Tensor) -> Tensor:
    """Cosine similarity of f(x) and f(l) (the representation-nearest baseline)."""
    with torch.no_grad():
        fx = expansion.outputs(x)
        fl = expansion.outputs(rows=expansion.landmark_rows)
        return F.normalize(fx, dim=1) @ F.normalize(fl, dim=1).T


def run(
    expansion: LandmarkExpansion,
    x: Tensor,
    bank: Tensor,
    bank_labels: Tensor,
    seed: int,
    ks: tuple[int, ...] = KS,
) -> dict[str, Any]:
    """Every arm at every k: scores (default ranking and with contrast terms), IS,
    cosine-nearest, random, kernel-nearest."""
    with torch.no_grad():
        rows = expansion.rows(x)
        rankings: dict[str, Tensor | None] = {
            "scores": None,
            # The same scores ranked with contrast terms (see
            # LandmarkExpansion.top), to show what the default ranking gives up.
            "scores_contrast": expansion.scores(rows=rows),
            "paper_IS": expansion.sample_specific_influence(rows=rows),
            "cosine_nearest": cosine_ranking(expansion, x),
        }
    out: dict[str, Any] = {"points": int(x.shape[0])}
    for k in ks:
        if k > expansion.num_landmarks:
            continue
        arms: dict[str, dict[str, float]] = {}
        for name, ranking in rankings.items():
            result = deletion_test(
                expansion, x, bank, bank_labels, k=k, num_random=5, seed=seed,
                ranking=ranking,
            )  # fmt: skip
            arms[name] = interval(result.top_drops)
            if name == "scores":
                arms["random"] = interval(result.random_drops)
                arms["kernel_nearest"] = interval(result.kernel_nearest_drops)
                arms["confidence_before"] = interval(result.confidence)
        random = arms["random"]["mean"]
        arms["ratio_vs_random"] = {
            "value": arms["scores"]["mean"] / random if random > 0 else math.inf
        }
        out[f"k={k}"] = arms
    return out


def meets(result: dict[str, Any]) -> bool | None:
    """The issue's target at k = 10."""
    arms = result.get("k=10")
    if arms is None:
        return None
    return bool(
        arms["ratio_vs_random"]["value"] >= TARGET_RATIO
        and arms["scores"]["mean"] > arms["kernel_nearest"]["mean"]
    )
