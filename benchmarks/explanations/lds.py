"""Centred linear datamodeling score (LDS) of the step's scores, with controls.

TRAK's LDS (Park et al. 2023) asks whether a score predicts what the model does
when part of its "training set" is removed. Here the removable units are the
landmarks and the model is the audit step, with the prior held fixed (the issue
measured a basis confound when the PC initialisation is refitted per subset):

- ``J`` random halves ``S_j`` of the landmarks (seeded);
- for each, the audit's damped Newton problem ``(H + damping I) dA = -g``
  restricted to steps whose ``Delta alpha = P dA^T`` vanishes outside ``S_j``
  (``P`` the Nyström projection; gamma stays free): ``dA^T = N B`` with ``N``
  an orthonormal basis of the null space of the removed landmarks' rows of P,
  solved by the audit's CG at its tolerance and iteration cap over the same
  views; with every landmark kept ``N = I`` and it is the audit's own step
  (checked: ``full_step_relative_error``). At Nyström rank r < m a removed
  half leaves ``r - m/2`` free directions (none when r <= m/2);
- the measured change at x: ``y_j(x) = <Delta f_j(x), v(x)>``, ``v(x)`` the
  direction of the full step's change at x;
- the prediction: ``sum_{l in S_j} s(l, x)``, the sum of x's scores over the kept
  landmarks, for the step's expansion scores ("what the step changes at x"), the
  paper's IS, and three controls: the mean score over inputs (x-independent),
  another input's scores (shuffled) and Gaussian noise (random); and, with
  ``counterfactual_subsets``, :class:`CounterfactualInfluence` (Banzhaf values
  of the landmarks over restricted steps on halves of its own seed);
- LDS = mean over x of the Spearman correlation across subsets of measured and
  predicted. *Centred*: both are first centred across inputs for each subset,
  so that what a subset does to every input alike (a larger or smaller step)
  counts for no score. The x-independent control is then exactly constant in x
  and scores 0 by construction; uncentred it shows how much an x-independent
  score gets for free.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import Tensor, nn

from lightly_krepes.attribution import CounterfactualInfluence, LandmarkExpansion
from lightly_krepes.audit import (
    AuditObjective,
    AuditResult,
    restricted_step,
    view_batches,
)

TARGET = 0.3


def restricted_steps(
    result: AuditResult,
    loss: nn.Module,
    views: list[Tensor],
    subsets: list[Tensor],
    *,
    max_iter: int,
    tol: float = 1e-6,
    batch_size: int = 256,
) -> list[Tensor]:
    """Delta alpha (m, h) of the step restricted to each subset of landmarks.

    The audit's CG (``restricted_step``) over the same views, all batches.
    """
    objective = AuditObjective(
        result.backbone,
        loss,
        view_batches(views, batch_size),
        curvature_rows=None,
        progress=False,
    )
    return [
        restricted_step(objective, result.damping, keep, max_iter=max_iter, tol=tol)
        for keep in subsets
    ]


def _spearman_rows(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Mean over inputs (columns) of the Spearman correlation across subsets."""
    values = []
    for i in range(measured.shape[1]):
        if np.ptp(predicted[:, i]) == 0 or np.ptp(measured[:, i]) == 0:
            values.append(0.0)  # a constant prediction predicts nothing
            continue
        values.append(float(spearmanr(measured[:, i], predicted[:, i]).statistic))
    return float(np.mean(values))


def run(
    result: AuditResult,
    loss: nn.Module,
    views: list[Tensor],
    x: Tensor,
    *,
    num_subsets: int,
    max_iter: int,
    seed: int,
    counterfactual_subsets: int = 0,
) -> dict[str, Any]:
    """Centred and uncentred LDS of the scores, IS and three controls.

    With ``counterfactual_subsets > 0`` also of :class:`CounterfactualInfluence`
    fitted on that many halves of its own (seed ``seed + 1``, so none is an
    evaluation half).
    """
    t0 = time.perf_counter()
    audited = result.audited
    m = audited.landmarks.shape[0]
    generator = torch.Generator().manual_seed(seed)
    subsets = [
        torch.randperm(m, generator=generator)[: m // 2] for _ in range(num_subsets)
    ]
    # The last "subset" keeps every landmark: the check that the restricted
    # problem is the audit's own (one objective and gradient pass for all).
    *steps, full_set = restricted_steps(
        result, loss, views, [*subsets, torch.arange(m)], max_iter=max_iter
    )
    expansion = LandmarkExpansion(audited, result.step.delta_alpha, inputs=x, seed=seed)
    with torch.no_grad():
        rows = expansion.rows(x)
        kernel = audited.nystrom.landmark_kernel(x).double()
        full = kernel @ result.step.delta_alpha.double()
        direction = F.normalize(full, dim=1)
        scores = expansion.scores(rows=rows).double()
        influence = expansion.sample_specific_influence(rows=rows).double()
    shuffled = scores[torch.randperm(x.shape[0], generator=generator)]
    arms = {
        "scores": scores,
        "paper_IS": influence,
        "x_independent": scores.mean(0, keepdim=True).expand_as(scores),
        "shuffled": shuffled,
        "random": torch.randn(scores.shape, generator=generator, dtype=torch.float64),
    }
    if counterfactual_subsets > 0:
        fit_start = time.perf_counter()
        counterfactual = CounterfactualInfluence(
            result,
            loss,
            views,
            num_subsets=counterfactual_subsets,
            batch_size=256,
            max_iter=max_iter,
            curvature_rows=None,
            seed=seed + 1,
            progress=False,
        )
        arms["counterfactual"] = counterfactual.influence(x)
        counterfactual_seconds = time.perf_counter() - fit_start
    measured = np.stack(
        [((kernel @ step) * direction).sum(1).numpy() for step in steps]
    )  # (J, n)
    masks = torch.zeros(num_subsets, m, dtype=torch.float64)
    for j, keep in enumerate(subsets):
        masks[j, keep] = 1.0
    out: dict[str, Any] = {}
    for arm, score in arms.items():
        predicted = (masks @ score.T).numpy()  # (J, n)
        centred = _spearman_rows(
            measured - measured.mean(1, keepdims=True),
            predicted - predicted.mean(1, keepdims=True),
        )
        out[arm] = {
            "centred": centred,
            "uncentred": _spearman_rows(measured, predicted),
        }
    # With every landmark the restricted problem is the audit's own step.
    reproduced = float(
        (full_set - result.step.delta_alpha.double()).norm()
        / result.step.delta_alpha.double().norm()
    )
    if counterfactual_subsets > 0:
        out["counterfactual"].update(
            subsets=counterfactual_subsets, seconds=counterfactual_seconds
        )
        out["counterfactual_meets_target"] = bool(
            out["counterfactual"]["centred"] >= TARGET
            and out["counterfactual"]["centred"] > out["paper_IS"]["centred"]
        )
    out.update(
        subsets=num_subsets,
        points=int(x.shape[0]),
        full_step_relative_error=reproduced,
        target=TARGET,
        meets_target=bool(
            out["scores"]["centred"] >= TARGET
            and out["scores"]["centred"] > out["paper_IS"]["centred"]
        ),
        seconds=time.perf_counter() - t0,
    )
    return out
