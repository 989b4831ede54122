"""The kernel side of the training benchmark: cached views, SGD and closed forms.

The eNTK Nyström coordinates of ``num_views`` seeded views per training image are
computed once (``lightly_krepes.backbone.cache_views``); an epoch is then GEMMs
over the cache, each step drawing two of the cached views per image. Building the
kernel, selecting landmarks and caching the views are charged to the kernel's
budget.

Many epochs over p fixed views over-fit them: the training loss keeps falling
while the probe drops (CIFAR-10, SimCLR, a one-off scan: 35.8 % after 12 s of
SGD, 32.1 % after 96 s). ``train_cached(held_out=...)`` can hold out a fraction
of the images (``CachedViews.split``) and keep the weights at the minimum of the
method's loss on their views, which needs no labels; it is off by default (see
``docs/closed-form.md`` for what it gained and lost).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from methods import (
    SGD_LR,
    Method,
    RunStats,
    lightly_sgd,
    sgd_step,
    train_for_budget,
)
from torch import Tensor, nn

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


def held_out_batches(
    cache: CachedViews, batch_size: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """Every pair of distinct views of the cache, in fixed consecutive batches.

    The same batches at every check, so the monitored loss changes only with the
    weights; batches of ``min(batch_size, n)`` rows, a shorter remainder dropped
    (the batch size enters contrastive losses).
    """
    n, p = len(cache), cache.num_views
    size = min(batch_size, n)
    for first in range(p):
        for second in range(first + 1, p):
            for start in range(0, n - size + 1, size):
                rows = slice(start, start + size)
                yield cache.features[first, rows], cache.features[second, rows]


def train_cached(
    backbone: KernelBackbone,
    method_name: str,
    cache: CachedViews,
    batch_size: int,
    budget_seconds: float,
    seed: int,
    desc: str,
    backbone_lr: float = SGD_LR,
    held_out: float = 0.0,
) -> tuple[KernelBackbone, RunStats, float]:
    """SGD on the cached coordinates; returns the trained copy, stats, |A-A0|/|A0|.

    ``backbone_lr`` is the learning rate of ``A`` and ``gamma`` (the head keeps
    Lightly's 0.06). ``held_out`` > 0 trains on the other images and keeps the
    weights at the minimum of the loss on the held-out images' views, checked
    every 50 steps (``train_for_budget``'s monitor).
    """
    torch.manual_seed(seed + 1)
    trained = copy.deepcopy(backbone)
    start_weight = trained.linear.weight.detach().clone()
    method = Method(method_name, FeatureBackbone(trained), trained.out_dim)
    generator = torch.Generator().manual_seed(seed)
    monitor = None
    if held_out > 0:
        cache, validation = cache.split(held_out, seed)

        def monitor() -> float:
            values = [
                method.evaluation_loss(x0, x1)
                for x0, x1 in held_out_batches(validation, batch_size)
            ]
            return sum(values) / len(values)

    stats = train_for_budget(
        method,
        lambda: cached_batches(cache, batch_size, generator),
        len(cache),
        batch_size,
        budget_seconds,
        desc,
        backbone_lr,
        monitor,
    )
    moved = float(
        (trained.linear.weight.detach() - start_weight).norm() / start_weight.norm()
    )
    return trained, stats, moved


def closed_form(
    backbone: KernelBackbone, cache: CachedViews, loss: str, ridge: float = 0.0
) -> tuple[KernelBackbone, float]:
    """The optimum of ``loss`` over A and gamma on the cached views, timed.

    ``ridge`` 0 is the exact optimum; > 0 the canonical ridge (``fit_closed_form``).
    """
    fitted = copy.deepcopy(backbone)
    t0 = time.perf_counter()
    fit_closed_form(fitted, cache, loss, ridge=ridge)  # type: ignore[arg-type]
    return fitted, time.perf_counter() - t0


class _Passthrough(nn.Module):
    """Returns its input; the empty parameter gives BYOL's momentum copy one."""

    def __init__(self) -> None:
        super().__init__()
        self.empty = nn.Parameter(torch.zeros(0))

    def forward(self, x: Tensor) -> Tensor:
        return x


def _seconds_per_step(
    method: Method, pairs: list[tuple[Tensor, Tensor]], steps: int
) -> float:
    """SGD steps at Lightly's settings, timed after 3 untimed ones."""
    optimizer = lightly_sgd(method)
    start = 0.0
    for step in range(3 + steps):
        if step == 3:
            start = time.perf_counter()
        x0, x1 = pairs[step % len(pairs)]
        sgd_step(method, optimizer, x0, x1, step / (3 + steps))
    return (time.perf_counter() - start) / steps


def head_share(
    method_name: str,
    backbone: KernelBackbone,
    cache: CachedViews,
    batch_size: int,
    seed: int,
    steps: int = 20,
    repeats: int = 3,
) -> float:
    """The part of a cached step that the method's head and loss alone cost.

    A cached step (``FeatureBackbone`` + head + loss) and a step of the head and
    loss alone on fixed inputs of the representation's size are timed back to
    back, ``repeats`` times alternately, on the same batches; the ratio of their
    medians is robust to the machine's load, which changes over a long run. The
    CNN epoch over the head-only epoch, the speed-up no backbone can pass with
    this head, is then ``epoch_speedup / head_share``. 0 for a method without a
    head.
    """
    rep_dim = backbone.out_dim
    if not list(Method(method_name, _Passthrough(), rep_dim).head.parameters()):
        return 0.0  # no head (spectral contrastive): nothing bounds the speed-up
    generator = torch.Generator().manual_seed(seed)
    pairs = list(cached_batches(cache, batch_size, generator))
    if not pairs:
        raise ValueError(f"The cache holds fewer rows than one batch ({batch_size}).")
    fixed = [
        (a[:, :rep_dim].contiguous(), b[:, :rep_dim].contiguous()) for a, b in pairs
    ]
    head_times, cached_times = [], []
    for _ in range(repeats):
        torch.manual_seed(seed + 2)
        cached = Method(method_name, FeatureBackbone(copy.deepcopy(backbone)), rep_dim)
        cached_times.append(_seconds_per_step(cached, pairs, steps))
        torch.manual_seed(seed + 2)
        head_only = Method(method_name, _Passthrough(), rep_dim)
        head_times.append(_seconds_per_step(head_only, fixed, steps))
    return float(statistics.median(head_times) / statistics.median(cached_times))
