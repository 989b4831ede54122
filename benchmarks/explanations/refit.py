"""Remove-and-refit: the counterfactual deletion.

For each point, x's top-k landmarks (by the scores), k random ones and the k
kernel-nearest ones are removed from the *model*: the Nyström map, the surrogate
fit and the audit step are refitted on the remaining landmarks at the full
audit's damping (:func:`lightly_krepes.audit.audit_refit` over one
:class:`~lightly_krepes.audit.AuditCache`), and the kNN confidence of the class
predicted before is measured again, with the bank re-embedded by the refit.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from deletion import interval
from torch import Tensor, nn

from lightly_krepes.attribution import LandmarkExpansion

# The kNN vote shares of deletion_test; private, but re-implementing them here
# would let the two protocols drift apart.
from lightly_krepes.attribution.landmark_validation import _knn_shares
from lightly_krepes.audit import AuditCache, AuditResult, audit_refit


def run(
    expansion: LandmarkExpansion,
    result: AuditResult,
    loss: nn.Module,
    views: list[Tensor],
    encoder: nn.Module,
    data: Tensor,
    x: Tensor,
    bank_labels: Tensor,
    *,
    k: int,
    max_iter: int,
    seed: int,
    k_neighbors: int = 50,
) -> dict[str, Any]:
    """Drops per arm with intervals, and the refit's reproduction of the audit."""
    t0 = time.perf_counter()
    cache = AuditCache(
        result.backbone,
        loss,
        views,
        encoder=encoder,
        data=data,
        batch_size=256,
        progress=False,
    )
    m = cache.num_landmarks
    bank_rows = cache.kernel_rows(data)
    x_rows = cache.kernel_rows(x)
    labels = bank_labels.to(bank_rows.device)
    classes = int(labels.max()) + 1
    knn = min(k_neighbors, len(labels))

    def shares(refit_rows: Tensor, refit: Any) -> Tensor:
        query = refit.outputs(refit_rows)
        bank = refit.outputs(bank_rows)
        return _knn_shares(query, bank, labels, classes, knn, 0.1)

    full = audit_refit(cache, torch.arange(m), damping=result.damping,
                       max_iter=max_iter, seed=seed)  # fmt: skip
    with torch.no_grad():
        reproduced = float(
            (full.outputs(x_rows) - result.audited(x)).norm() / result.audited(x).norm()
        )
        before = shares(x_rows, full)
        predicted = before.argmax(1)
        top = expansion.top(x, k).indices
    generator = torch.Generator().manual_seed(seed)
    drops: dict[str, list[float]] = {"top": [], "random": [], "kernel_nearest": []}
    for i in range(x.shape[0]):
        removed = {
            "top": top[i],
            "random": torch.randperm(m, generator=generator)[:k],
            "kernel_nearest": x_rows[i].topk(k).indices,
        }
        for arm, indices in removed.items():
            keep = torch.ones(m, dtype=torch.bool)
            keep[indices.cpu()] = False
            refit = audit_refit(cache, keep, damping=result.damping,
                                max_iter=max_iter, seed=seed)  # fmt: skip
            with torch.no_grad():
                after = shares(x_rows[i : i + 1], refit)[0, predicted[i]]
            drops[arm].append(float(before[i, predicted[i]] - after))
    out: dict[str, Any] = {
        arm: interval(torch.tensor(values)) for arm, values in drops.items()
    }
    random = out["random"]["mean"]
    out["ratio_vs_random"] = out["top"]["mean"] / random if random > 0 else None
    out.update(
        k=k, points=int(x.shape[0]), refits=3 * int(x.shape[0]),
        full_refit_relative_error=reproduced, seconds=time.perf_counter() - t0,
    )  # fmt: skip
    return out
