from __future__ import annotations

import copy

import pytest
import torch
from lightly.loss import NTXentLoss
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lightly_krepes.backbone import (
    CachedViews,
    FeatureBackbone,
    KernelBackbone,
    cache_views,
)
from lightly_krepes.kernels import RBF


def _noise(batch: Tensor) -> Tensor:
    return batch + 0.1 * torch.randn_like(batch)


def _setup() -> tuple[Tensor, KernelBackbone]:
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    return x, KernelBackbone(RBF(2.0), x[:10], out_dim=4)


class TestCacheViews:
    def test_cache_views__holds_backbone_features_of_seeded_views(self) -> None:
        x, backbone = _setup()
        cached = cache_views(
            backbone,
            x,
            batch_transform=_noise,
            num_views=3,
            batch_size=8,
            progress=False,
        )
        assert cached.features.shape == (3, 30, backbone.linear.in_features)
        again = cache_views(
            backbone,
            x,
            batch_transform=_noise,
            num_views=3,
            batch_size=8,
            progress=False,
        )
        assert torch.equal(cached.features, again.features)
        other = cache_views(
            backbone, x, batch_transform=_noise, num_views=3, seed=1, progress=False
        )
        assert not torch.equal(cached.features, other.features)
        # The views differ from each other and from the clean input.
        clean = backbone.features(x).detach()
        assert not torch.allclose(cached.features[0], cached.features[1])
        assert not torch.allclose(cached.features[0], clean)

    def test_cache_views__per_sample_transform_and_datasets(self) -> None:
        x, backbone = _setup()
        dataset = TensorDataset(x, torch.zeros(30))
        from_dataset = cache_views(
            backbone, dataset, transform=_noise, num_views=2, progress=False
        )
        from_tensor = cache_views(
            backbone, x, transform=_noise, num_views=2, progress=False
        )
        assert torch.equal(from_dataset.features, from_tensor.features)

    def test_cache_views__does_not_touch_global_rng(self) -> None:
        x, backbone = _setup()
        torch.manual_seed(5)
        expected = torch.rand(2)
        torch.manual_seed(5)
        cache_views(backbone, x, batch_transform=_noise, progress=False)
        torch.testing.assert_close(torch.rand(2), expected, rtol=0, atol=0)

    def test_cache_views__rejects_bad_input(self) -> None:
        x, backbone = _setup()
        with pytest.raises(ValueError, match="exactly one of transform"):
            cache_views(backbone, x, progress=False)
        with pytest.raises(ValueError, match="num_views must be at least 2"):
            cache_views(backbone, x, batch_transform=_noise, num_views=1)
        loader = DataLoader(TensorDataset(x), batch_size=4)
        with pytest.raises(TypeError, match="map-style"):
            cache_views(backbone, loader, batch_transform=_noise)

    def test_cached_training__lightly_loop_with_momentum_copy(self) -> None:
        x, backbone = _setup()
        cached = cache_views(
            backbone, x, batch_transform=_noise, num_views=4, progress=False
        )
        model = FeatureBackbone(backbone)
        target = copy.deepcopy(model)
        deactivate_requires_grad(target)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
        criterion = NTXentLoss()
        losses = []
        torch.manual_seed(0)
        for _ in range(10):
            for (v0, v1), _ in DataLoader(cached, batch_size=10, shuffle=True):
                loss = criterion(model(v0), model(v1))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                update_momentum(model, target, m=0.9)
                losses.append(float(loss))
        assert losses[-1] < losses[0]
        # The trained map serves raw inputs through the backbone itself.
        torch.testing.assert_close(
            backbone(x[:3]), model(backbone.features(x[:3])), rtol=0, atol=0
        )


class TestCachedViews:
    def test_getitem__two_distinct_views_or_all(self) -> None:
        features = torch.arange(4 * 5 * 2, dtype=torch.float32).view(4, 5, 2)
        views, index = CachedViews(features)[3]
        assert index == 3 and len(views) == 2
        rows = {int(v[0]) for v in views}
        assert len(rows) == 2
        every, _ = CachedViews(features, views_per_item=None)[1]
        assert len(every) == 4

    def test_init__rejects_bad_shapes(self) -> None:
        with pytest.raises(ValueError, match="num_views, n, r"):
            CachedViews(torch.zeros(5, 2))
        with pytest.raises(ValueError, match="views_per_item"):
            CachedViews(torch.zeros(2, 5, 2), views_per_item=3)
