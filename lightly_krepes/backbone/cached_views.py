"""Kernel coordinates of a fixed, seeded set of views, computed once.

KREPES precomputes kernel rows [0]: the linear map is the only thing that trains,
so the coordinates ``psi(view)`` of p views per sample can be computed once and an
epoch then costs GEMMs instead of eNTK passes.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from lightly_krepes._inputs import first_tensor, num_samples
from lightly_krepes._seeding import seeded
from lightly_krepes._validation import check_finite

if TYPE_CHECKING:
    from lightly_krepes.backbone.kernel_backbone import KernelBackbone

ViewTransform = Callable[[Tensor], Tensor | Sequence[Tensor]]
BatchTransform = Callable[[Tensor], Tensor]


class CachedViews(Dataset[tuple[list[Tensor], int]]):
    """A data set of cached view coordinates, shaped like Lightly's multi-view items.

    Item i is ``([psi(view_a of i), psi(view_b of i)], i)`` with two distinct views
    drawn from the p cached ones by torch's global generator (all p when
    ``views_per_item`` is None), so a Lightly training loop reads it as it reads
    a ``LightlyDataset`` with a two-view transform.

    Args:
        features: Tensor of shape (p, n, r), the coordinates of p views of n
            samples (see :func:`cache_views`).
        views_per_item: Views per item (2 by default; None for all p).

    Examples:
        >>> cached = CachedViews(torch.randn(4, 10, 3))
        >>> views, index = cached[7]
        >>> len(views), views[0].shape, index
        (2, torch.Size([3]), 7)
    """

    def __init__(self, features: Tensor, views_per_item: int | None = 2) -> None:
        if features.dim() != 3 or features.shape[0] < 2:
            raise ValueError(
                "features must have shape (num_views, n, r) with num_views >= 2, got "
                f"{tuple(features.shape)}."
            )
        if views_per_item is not None and not 1 <= views_per_item <= features.shape[0]:
            raise ValueError(
                f"views_per_item must lie in [1, {features.shape[0]}], got "
                f"{views_per_item}."
            )
        self.features = features
        self.views_per_item = views_per_item

    @property
    def num_views(self) -> int:
        """Number of cached views per sample p."""
        return int(self.features.shape[0])

    def __len__(self) -> int:
        return int(self.features.shape[1])

    def __getitem__(self, index: int) -> tuple[list[Tensor], int]:
        p = self.num_views
        if self.views_per_item is None or self.views_per_item == p:
            chosen = list(range(p))
        else:
            chosen = torch.randperm(p)[: self.views_per_item].tolist()
        return [self.features[v, index] for v in chosen], int(index)

    def views(self) -> list[Tensor]:
        """The p views' coordinates, a list of (n, r) tensors."""
        return list(self.features.unbind(0))

    def split(self, held_out: float, seed: int = 0) -> tuple[CachedViews, CachedViews]:
        """Splits the samples into a training and a held-out cache.

        The p views are fixed, so many epochs over them can over-fit those views:
        the training loss keeps falling while the representation gets worse. The
        same loss on held-out samples' views (a validation loss, as Lightning's
        ``ModelCheckpoint(monitor=...)`` watches) shows when, with no labels.
        Keeping the weights at its minimum helped on CIFAR-10 and hurt on
        Fashion-MNIST and with BYOL in this project's benchmark
        (``docs/closed-form.md``), so check what it selects on your data.

        Args:
            held_out: Fraction of the samples held out, in (0, 1).
            seed: Seed of the random split.

        Returns:
            ``(training, held_out)`` caches with this cache's ``views_per_item``;
            every sample is in exactly one of them.

        Raises:
            ValueError: If ``held_out`` is not in (0, 1) or leaves either part
                empty.

        Examples:
            >>> train, held_out = CachedViews(torch.randn(4, 10, 3)).split(0.2)
            >>> len(train), len(held_out)
            (8, 2)
        """
        n = len(self)
        if not 0.0 < held_out < 1.0:
            raise ValueError(f"held_out must be a fraction in (0, 1), got {held_out}.")
        num_held_out = round(held_out * n)
        if not 0 < num_held_out < n:
            raise ValueError(
                f"held_out={held_out} of {n} samples holds out {num_held_out}; "
                "both parts need at least one sample. Cache more samples or change "
                "held_out."
            )
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        held = order[:num_held_out].sort().values
        kept = order[num_held_out:].sort().values
        return (
            CachedViews(self.features[:, kept], self.views_per_item),
            CachedViews(self.features[:, held], self.views_per_item),
        )


class FeatureBackbone(nn.Module):
    """A :class:`KernelBackbone` that takes cached coordinates instead of inputs.

    It holds the backbone (same parameters, in the same order, so optimisers,
    ``copy.deepcopy`` and Lightly's ``update_momentum`` work unchanged) and maps
    coordinates ``(B, r)`` to representations ``(B, out_dim)``.

    Args:
        backbone: The kernel backbone.
    """

    def __init__(self, backbone: KernelBackbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, features: Tensor) -> Tensor:
        """Representations of cached coordinates, shape (B, out_dim)."""
        return self.backbone.forward_features(features)


def _sample_views(
    sample: Tensor, transform: ViewTransform, num_views: int
) -> list[Tensor]:
    views: list[Tensor] = []
    while len(views) < num_views:
        out = transform(sample)
        views.extend([out] if isinstance(out, Tensor) else list(out))
    return views[:num_views]


def cache_views(
    backbone: KernelBackbone,
    data: Any,
    transform: ViewTransform | None = None,
    *,
    batch_transform: BatchTransform | None = None,
    num_views: int = 4,
    seed: int = 0,
    batch_size: int = 256,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> CachedViews:
    """Computes the kernel coordinates of ``num_views`` seeded views per sample.

    The views of block b (``batch_size`` samples) are drawn under seed
    ``seed + b``, so the cache is the same for one seed whatever else ran before.
    Memory: ``num_views * n * r`` values of ``dtype`` (4 views of 60,000 samples at
    r = 1,024 in float32: 983 MB).

    Args:
        backbone: The kernel backbone whose :meth:`~KernelBackbone.features` are
            cached.
        data: Un-augmented inputs: a tensor (n, ...) or a map-style data set of
            tensors or ``(tensor, label, ...)`` items (see
            :mod:`lightly_krepes._inputs`).
        transform: Maps one sample to one view or a list of views (a torchvision
            transform on tensors, or Lightly's multi-view transforms).
        batch_transform: Alternatively maps a batch (B, ...) to one view of each.
        num_views: Views per sample p (at least 2).
        seed: Seed of the views.
        batch_size: Samples per block.
        dtype: Storage dtype of the coordinates.
        progress: Show a progress bar.

    Returns:
        The cached coordinates as a :class:`CachedViews` data set.

    Raises:
        ValueError: If both or neither transform are given, ``num_views < 2``, or
            a view's coordinates are not finite.

    Examples:
        >>> from lightly_krepes import KernelBackbone
        >>> from lightly_krepes.kernels import RBF
        >>> x = torch.randn(50, 3)
        >>> backbone = KernelBackbone(RBF(2.0), x[:10], out_dim=4)
        >>> cached = cache_views(
        ...     backbone, x, batch_transform=lambda b: b + 0.1 * torch.randn_like(b),
        ...     num_views=3, progress=False,
        ... )
        >>> cached.features.shape
        torch.Size([3, 50, 10])
    """
    if (transform is None) == (batch_transform is None):
        raise ValueError(
            "Pass exactly one of transform (per sample) and batch_transform (per "
            "batch)."
        )
    if num_views < 2:
        raise ValueError(f"num_views must be at least 2, got {num_views}.")
    n = num_samples(data)
    if n is None:
        raise TypeError(
            "cache_views needs a tensor or a map-style data set of un-augmented "
            f"samples (with len()), got {type(data).__name__}."
        )
    device = backbone.landmarks.device
    blocks: list[Tensor] = []
    starts = range(0, n, batch_size)
    with torch.no_grad():
        for b, start in enumerate(tqdm(starts, disable=not progress, desc="views")):
            stop = min(start + batch_size, n)
            if isinstance(data, Tensor):
                batch = data[start:stop]
            else:
                batch = torch.stack([first_tensor(data[i]) for i in range(start, stop)])
            batch = batch.to(device=device, dtype=backbone.landmarks.dtype)
            with seeded(seed + b):
                if batch_transform is not None:
                    views = [batch_transform(batch) for _ in range(num_views)]
                else:
                    assert transform is not None
                    per_sample = [_sample_views(s, transform, num_views) for s in batch]
                    views = [
                        torch.stack([v[i] for v in per_sample])
                        for i in range(num_views)
                    ]
            feats = torch.stack([backbone.features(v) for v in views]).to(dtype)
            check_finite(feats, "view coordinates")
            blocks.append(feats.cpu())
    return CachedViews(torch.cat(blocks, dim=1))
