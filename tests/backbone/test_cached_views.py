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

    def test_split__partitions_samples_with_all_their_views(self) -> None:
        # Sample i's p views all hold the value i, so rows identify samples.
        features = torch.arange(10.0).view(1, 10, 1).expand(4, 10, 3).clone()
        cached = CachedViews(features, views_per_item=None)
        train, held_out = cached.split(0.3, seed=1)
        assert (len(train), len(held_out)) == (7, 3)
        assert train.num_views == held_out.num_views == 4
        assert train.views_per_item is None and held_out.views_per_item is None
        ids = [part.features[:, :, 0] for part in (train, held_out)]
        for rows in ids:
            assert torch.equal(rows, rows[:1].expand_as(rows))  # views stay together
        assert sorted(torch.cat([r[0] for r in ids]).tolist()) == list(range(10))

    def test_split__deterministic_for_a_seed(self) -> None:
        cached = CachedViews(torch.randn(2, 50, 3))
        first, _ = cached.split(0.2, seed=3)
        again, _ = cached.split(0.2, seed=3)
        other, _ = cached.split(0.2, seed=4)
        assert torch.equal(first.features, again.features)
        assert not torch.equal(first.features, other.features)

    def test_split__rejects_bad_fractions(self) -> None:
        cached = CachedViews(torch.randn(2, 5, 3))
        for bad in (0.0, 1.0, -0.1, 1.5):
            with pytest.raises(ValueError, match=r"fraction in \(0, 1\)"):
                cached.split(bad)
        with pytest.raises(ValueError, match="both parts"):
            cached.split(0.05)
