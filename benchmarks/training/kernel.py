"""The kernel side of the training benchmark: cached views, SGD and closed forms.

The eNTK Nyström coordinates of ``num_views`` seeded views per training image are
computed once (``lightly_krepes.backbone.cache_views``); an epoch is then GEMMs
over the cache, each step drawing two of the cached views per image. Building the
kernel, selecting landmarks and caching the views are charged to the kernel's
budget.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from methods import Method, RunStats, train_for_budget
from torch import Tensor

from lightly_krepes.backbone import (
    CachedViews,
    FeatureBackbone,
    KernelBackbone,
    cache_views,
    fit_closed_form,
)


@dataclass
class Cache:
    """The cached views and what they cost."""

    views: CachedViews
    seconds: float


def build_cache(
    backbone: KernelBackbone,
    raw: Tensor,
    view_fn: Callable[[Tensor], Tensor],
    num_views: int,
    seed: int,
) -> Cache:
    """Coordinates of ``num_views`` views of every image in ``raw``, timed."""
    t0 = time.perf_counter()
    cached = cache_views(
        backbone,
        raw,
        batch_transform=view_fn,
        num_views=num_views,
        seed=seed,
        batch_size=500,
        progress=True,
    )
    return Cache(cached, time.perf_counter() - t0)


def cached_batches(
    cache: CachedViews, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch over the cache: shuffled batches, two distinct views per row."""
    n, p = len(cache), cache.num_views
    order = torch.randperm(n, generator=generator)
    for start in range(0, n - batch_size + 1, batch_size):
        idx = order[start : start + batch_size]
        first = torch.randint(p, (batch_size,), generator=generator)
        second = (first + torch.randint(1, p, (batch_size,), generator=generator)) % p
        yield cache.features[first, idx], cache.features[second, idx]


def train_cached(
    backbone: KernelBackbone,
    method_name: str,
    cache: CachedViews,
    batch_size: int,
    budget_seconds: float,
    seed: int,
    desc: str,
) -> tuple[KernelBackbone, RunStats, float]:
    """SGD on the cached coordinates; returns the trained copy, stats, |A-A0|/|A0|."""
    torch.manual_seed(seed + 1)
    trained = copy.deepcopy(backbone)
    start_weight = trained.linear.weight.detach().clone()
    method = Method(method_name, FeatureBackbone(trained), trained.out_dim)
    generator = torch.Generator().manual_seed(seed)
    stats = train_for_budget(
        method,
        lambda: cached_batches(cache, batch_size, generator),
        len(cache),
        batch_size,
        budget_seconds,
        desc,
    )
    moved = float(
        (trained.linear.weight.detach() - start_weight).norm() / start_weight.norm()
    )
    return trained, stats, moved


def closed_form(
    backbone: KernelBackbone, cache: CachedViews, loss: str
) -> tuple[KernelBackbone, float]:
    """The exact optimum of ``loss`` over A and gamma on the cached views, timed."""
    fitted = copy.deepcopy(backbone)
    t0 = time.perf_counter()
    fit_closed_form(fitted, cache, loss)  # type: ignore[arg-type]
    return fitted, time.perf_counter() - t0
