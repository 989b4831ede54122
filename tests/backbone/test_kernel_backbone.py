from __future__ import annotations

import copy
import io

import pytest
import torch
from lightly.loss import (
    BarlowTwinsLoss,
    NegativeCosineSimilarity,
    NTXentLoss,
    VICRegLoss,
)
from lightly.models.modules import BYOLPredictionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF, EmpiricalNTK, Linear, Normalized


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 8)).eval()


def _data(n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(n, 6, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _backbone(out_dim: int = 4, dtype: torch.dtype = torch.float32) -> KernelBackbone:
    net = _net().to(dtype)
    return KernelBackbone(EmpiricalNTK(net), _data(24, dtype=dtype), out_dim=out_dim)


class TestKernelBackbone:
    def test_parameters__only_linear_map_is_trainable(self) -> None:
        backbone = _backbone()
        names = [name for name, _ in backbone.named_parameters()]
        assert names == ["linear.weight", "linear.bias"]
        optimizer = torch.optim.SGD(backbone.parameters(), lr=0.1)
        assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == (
            backbone.linear.weight.numel() + backbone.out_dim
        )

    def test_init__principal_components_on_landmarks(self) -> None:
        backbone = KernelBackbone(
            EmpiricalNTK(_net().double()), _data(24, dtype=torch.float64), out_dim=5
        )
        z = backbone(backbone.landmarks)
        scale = backbone.feature_scale
        expected = torch.diag(scale**2 * backbone.nystrom.eigenvalues[:5])
        torch.testing.assert_close(z.T @ z, expected, rtol=1e-8, atol=1e-8)

    def test_init__leaves_global_rng_alone_and_follows_landmark_device(self) -> None:
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        backbone = KernelBackbone(RBF(1.0), _data(10), out_dim=3)
        torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)
        devices = {t.device for t in [*backbone.parameters(), *backbone.buffers()]}
        assert devices == {backbone.landmarks.device}

    def test_init__feature_scale_is_one_for_normalized_kernels(self) -> None:
        backbone = KernelBackbone(Normalized(RBF(1.0)), _data(10), out_dim=3)
        assert float(backbone.feature_scale) == pytest.approx(1.0)

    def test_contributions__sum_with_bias_to_output(self) -> None:
        backbone = KernelBackbone(
            EmpiricalNTK(_net().double()), _data(24, dtype=torch.float64), out_dim=4
        )
        with torch.no_grad():
            backbone.linear.weight.normal_()
            backbone.linear.bias.normal_()
        x = _data(5, seed=1, dtype=torch.float64)
        contributions = backbone.contributions(x)
        assert contributions.shape == (5, 24, 4)
        torch.testing.assert_close(
            contributions.sum(1) + backbone.linear.bias, backbone(x)
        )
        kernel_rows = backbone.nystrom.kernel(x, backbone.landmarks)
        torch.testing.assert_close(
            kernel_rows @ backbone.representer_weights + backbone.linear.bias,
            backbone(x),
        )

    def test_from_data__selects_landmarks_from_datasets_and_loaders(self) -> None:
        x = _data(40)
        dataset = TensorDataset(x, torch.zeros(40))
        views = [([x[i], x[i] + 1], 0, f"{i}.png") for i in range(40)]
        loader = torch.utils.data.DataLoader(dataset, batch_size=16)
        built = [
            KernelBackbone.from_data(RBF(2.0), data, num_landmarks=8, out_dim=3)
            for data in (x, dataset, views, loader)
        ]
        for backbone in built:
            assert backbone.landmarks.shape == (8, 6)
        assert torch.equal(built[0].landmarks, built[1].landmarks)
        assert torch.equal(built[0].landmarks, built[2].landmarks)

    def test_deepcopy__momentum_update_pairs_parameters(self) -> None:
        backbone = _backbone()
        momentum = copy.deepcopy(backbone)
        deactivate_requires_grad(momentum)
        with torch.no_grad():
            backbone.linear.weight.add_(1.0)
        update_momentum(backbone, momentum, m=0.5)
        torch.testing.assert_close(
            momentum.linear.weight,
            0.5 * backbone.linear.weight + 0.5 * (backbone.linear.weight - 1.0),
        )
        x = _data(3, seed=2)
        assert momentum(x).shape == (3, 4)

    def test_state_dict__round_trip_with_weights_only(self) -> None:
        backbone = _backbone()
        with torch.no_grad():
            backbone.linear.weight.normal_()
        buffer = io.BytesIO()
        torch.save(backbone.state_dict(), buffer)
        buffer.seek(0)
        loaded = KernelBackbone(EmpiricalNTK(_net()), _data(10, seed=5), out_dim=4)
        loaded.load_state_dict(torch.load(buffer, weights_only=True))
        x = _data(7, seed=3)
        torch.testing.assert_close(loaded(x), backbone(x))

    def test_forward__no_grad_inference(self) -> None:
        backbone = _backbone()
        with torch.no_grad():
            z = backbone(_data(3, seed=4))
        assert not z.requires_grad

    @pytest.mark.parametrize(
        "loss", [NTXentLoss(), VICRegLoss(), BarlowTwinsLoss(), "byol"]
    )
    def test_forward__trains_with_lightly_losses(self, loss: nn.Module | str) -> None:
        torch.manual_seed(0)
        x = torch.randn(64, 6)
        backbone = KernelBackbone(EmpiricalNTK(_net()), x[:32], out_dim=16)
        params = list(backbone.parameters())
        if loss == "byol":
            predictor = BYOLPredictionHead(16, 32, 16)
            params += list(predictor.parameters())
            target = copy.deepcopy(backbone)
            deactivate_requires_grad(target)
        optimizer = torch.optim.SGD(params, lr=0.06)
        losses = []
        for _ in range(30):
            v0 = x + 0.1 * torch.randn_like(x)
            v1 = x + 0.1 * torch.randn_like(x)
            if loss == "byol":
                update_momentum(backbone, target, m=0.99)
                p0, p1 = predictor(backbone(v0)), predictor(backbone(v1))
                with torch.no_grad():
                    t0, t1 = target(v0), target(v1)
                criterion = NegativeCosineSimilarity()
                value = 0.5 * (criterion(p0, t1) + criterion(p1, t0))
            else:
                assert isinstance(loss, nn.Module)
                value = loss(backbone(v0), backbone(v1))
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            losses.append(value.item())
        assert all(torch.isfinite(torch.tensor(losses)))
        assert min(losses[-5:]) < losses[0]

    def test_init__rejects_out_dim_above_rank(self) -> None:
        with pytest.raises(ValueError, match="exceeds the rank 6"):
            KernelBackbone(Linear(), _data(20), out_dim=7)
        with pytest.raises(ValueError, match="positive integer"):
            KernelBackbone(Linear(), _data(20), out_dim=0)

    def test_forward__rejects_bad_inputs(self) -> None:
        backbone = _backbone()
        with pytest.raises(ValueError, match="NaN"):
            backbone(torch.full((2, 6), float("nan")))
        with pytest.raises(ValueError, match=r"samples of shape \(6,\)"):
            backbone(torch.randn(2, 5))
        with pytest.raises(ValueError, match="landmarks"):
            KernelBackbone(RBF(), torch.zeros(0, 6), out_dim=1)
