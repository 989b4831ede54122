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
from lightly_krepes.kernels import RBF, EmpiricalNTK, Linear


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
        lam = backbone.nystrom.eigenvalues[:5]
        shrink = lam / (lam + float(backbone.ridge) * lam[0])
        expected = torch.diag(24 * shrink**2)
        torch.testing.assert_close(z.T @ z, expected, rtol=1e-8, atol=1e-8)

    def test_init__pc_scales_outputs_to_kernel_pca_variances(self) -> None:
        backbone = KernelBackbone(
            EmpiricalNTK(_net().double()),
            _data(24, dtype=torch.float64),
            out_dim=5,
            init="pc",
        )
        z = backbone(backbone.landmarks)
        lam = backbone.nystrom.eigenvalues[:5]
        torch.testing.assert_close(
            z.T @ z, torch.diag(24 * lam / lam[0]), rtol=1e-8, atol=1e-8
        )

    def test_features__whitened_on_landmarks_above_the_ridge(self) -> None:
        backbone = KernelBackbone(
            RBF(3.0), _data(40, dtype=torch.float64), out_dim=3, ridge=1e-6
        )
        psi = backbone.features(backbone.landmarks)
        lam = backbone.nystrom.eigenvalues
        mean_square = psi.pow(2).mean(0)
        expected = (lam / (lam + 1e-6 * lam[0])) ** 2
        torch.testing.assert_close(mean_square, expected, rtol=1e-6, atol=1e-9)
        assert float(mean_square[lam > 1e-3 * lam[0]].min()) > 0.99
        # Directions below the ridge are damped, never amplified.
        assert float(mean_square.max()) <= 1.0 + 1e-9

    def test_forward_features__matches_forward_and_feature_projection(self) -> None:
        backbone = _backbone(dtype=torch.float64)
        x = _data(6, seed=3, dtype=torch.float64)
        with torch.no_grad():
            backbone.linear.weight.normal_()
            rows = backbone.nystrom.landmark_kernel(x)
            torch.testing.assert_close(
                rows @ backbone.feature_projection, backbone.features(x)
            )
            torch.testing.assert_close(
                backbone.forward_features(backbone.features(x)), backbone(x)
            )
        with pytest.raises(ValueError, match="features must have shape"):
            backbone.forward_features(torch.zeros(2, 3))

    def test_init__leaves_global_rng_alone_and_follows_landmark_device(self) -> None:
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        backbone = KernelBackbone(RBF(1.0), _data(10), out_dim=3)
        torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)
        devices = {t.device for t in [*backbone.parameters(), *backbone.buffers()]}
        assert devices == {backbone.landmarks.device}

    def test_init__rejects_bad_ridge_and_init(self) -> None:
        with pytest.raises(ValueError, match="ridge must be finite and positive"):
            KernelBackbone(RBF(1.0), _data(10), out_dim=3, ridge=0.0)
        with pytest.raises(ValueError, match="init must be"):
            KernelBackbone(RBF(1.0), _data(10), out_dim=3, init="random")  # type: ignore[arg-type]

    def test_init__entk_rank_reaches_out_dim_in_float32(self) -> None:
        # float64 landmark Gram + float64 cut-off: a float32 CNN's eNTK with a
        # fast-decaying spectrum keeps (numerically) all landmarks.
        torch.manual_seed(0)
        cnn = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 8)
        ).eval()
        x = torch.rand(64, 1, 8, 8)
        backbone = KernelBackbone(EmpiricalNTK(cnn), x, out_dim=32)
        assert backbone.nystrom.rank >= 32
        assert torch.isfinite(backbone(torch.rand(5, 1, 8, 8))).all()

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
        # float32 eNTK rows through a Nystrom map whose eigenvalues span orders of
        # magnitude: recomputing the landmark gradients after the load can differ
        # by a few 1e-6 relative (seen 7e-6 on one CPU); a wrong load is O(1) off.
        torch.testing.assert_close(loaded(x), backbone(x), rtol=1e-5, atol=1e-4)

    def test_from_state_dict__restores_without_training_data(self) -> None:
        x = _data(40)
        backbone = KernelBackbone.from_data(
            EmpiricalNTK(_net()), x, num_landmarks=12, out_dim=4, ridge=1e-2
        )
        with torch.no_grad():
            backbone.linear.weight.normal_()
        buffer = io.BytesIO()
        torch.save(backbone.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        restored = KernelBackbone.from_state_dict(EmpiricalNTK(_net()), state)
        query = _data(5, seed=9)
        torch.testing.assert_close(restored(query), backbone(query))
        assert float(restored.ridge) == pytest.approx(1e-2)
        assert restored.landmark_indices is not None
        assert torch.equal(restored.landmark_indices, backbone.landmark_indices)
        with pytest.raises(KeyError, match="lacks"):
            KernelBackbone.from_state_dict(RBF(), {})

    def test_from_data__keeps_landmark_indices(self) -> None:
        x = _data(40)
        backbone = KernelBackbone.from_data(RBF(2.0), x, num_landmarks=8, out_dim=3)
        assert backbone.landmark_indices is not None
        torch.testing.assert_close(x[backbone.landmark_indices], backbone.landmarks)
        assert KernelBackbone(RBF(2.0), x[:8], out_dim=3).landmark_indices is None

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
