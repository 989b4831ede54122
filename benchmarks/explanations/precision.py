"""precision@1 of the top landmark against nearest-landmark baselines and chance.

Calls :func:`lightly_krepes.attribution.precision_at_1` and
:func:`lightly_krepes.attribution.nearest_landmark_precision`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightly_krepes.attribution import (
    LandmarkExpansion,
    nearest_landmark_precision,
    precision_at_1,
)


def chance(labels: Tensor, landmark_labels: Tensor) -> float:
    """Probability that a uniformly random landmark shares x's class."""
    same = labels[:, None].cpu() == landmark_labels[None].cpu()
    return float(same.double().mean())


def run(
    expansion: LandmarkExpansion, x: Tensor, labels: Tensor, landmark_labels: Tensor
) -> dict[str, Any]:
    """Scores and the paper's IS against cosine-, kernel-, input-nearest, chance."""
    with torch.no_grad():
        rows = expansion.rows(x)
        top1 = expansion.top(k=1, rows=rows).indices[:, 0]
        influence = expansion.sample_specific_influence(rows=rows)
        out: dict[str, Any] = {
            "scores": precision_at_1(expansion, x, labels, landmark_labels),
            "scores_contrast": precision_at_1(
                expansion,
                x,
                labels,
                landmark_labels,
                ranking=expansion.scores(rows=rows),
            ),
            "paper_IS": precision_at_1(
                expansion, x, labels, landmark_labels, ranking=influence
            ),
        }
        for space in ("representation", "kernel", "input"):
            out[f"nearest_{space}"] = nearest_landmark_precision(
                expansion, x, labels, landmark_labels, space=space
            )
    out["chance"] = chance(labels, landmark_labels)
    out["distinct_top1_scores"] = int(torch.unique(top1).numel())
    out["distinct_top1_IS"] = int(torch.unique(influence.argmax(1)).numel())
    out["points"] = int(x.shape[0])
    out["m"] = expansion.num_landmarks
    out["meets_target"] = bool(out["scores"] >= out["nearest_representation"])
    return out
