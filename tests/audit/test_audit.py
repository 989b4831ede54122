from __future__ import annotations

import doctest
import importlib
from typing import Any

import pytest
import torch
from lightly.loss import NTXentLoss
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lightly_krepes.audit import AuditResult, apply_step, audit_encoder
from lightly_krepes.kernels import EmpiricalNTK
from lightly_krepes.loss import SpectralContrastiveLoss


def _mlp(out: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, out)).eval()


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    ).eval()


def _tabular(n: int = 48) -> Tensor:
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(3))


def _noise_views(x: Tensor) -> list[Tensor]:
    return [x + 0.2 * torch.randn_like(x), x + 0.2 * torch.randn_like(x)]


class _ViewDataset(Dataset[Any]):
    """Items ([view_0, view_1], label, filename) as LightlyDataset returns them."""

    def __init__(self, n: int = 24) -> None:
        self.images = torch.rand(n, 3, 6, 6, generator=torch.Generator().manual_seed(4))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[list[Tensor], int, str]:
        x = self.images[i]
        views = [
            (x.flip(-1) if bool(torch.rand(()) < 0.5) else x)
            + 0.05 * torch.randn_like(x)
            for _ in range(2)
        ]
        return views, i % 2, f"{i}.png"


def _audit(**kwargs: Any) -> AuditResult:
    options: dict[str, Any] = {
        "transform": _noise_views,
        "num_landmarks": 12,
        "damping": 5.0,
        "batch_size": 16,
        "max_iter": 30,
        "progress": False,
    }
    options.update(kwargs)
    data = options.pop("data", _tabular())
    loss = options.pop("loss", NTXentLoss())
    return audit_encoder(options.pop("encoder", _mlp()), data, loss, **options)


class TestAuditEncoder:
    def test_audit_encoder__tabular_mlp(self) -> None:
        encoder = _mlp()
        rng_state = torch.get_rng_state()
        result = _audit(encoder=encoder)
        assert torch.equal(torch.get_rng_state(), rng_state)

        backbone = result.backbone
        assert backbone.out_dim == 4  # the encoder's output dimension
        assert backbone.landmarks.shape == (12, 5)
        assert torch.equal(
            backbone.linear.weight, torch.eye(*backbone.linear.weight.shape)
        )
        assert backbone.linear.bias is not None
        assert not backbone.linear.bias.any()
        assert result.damping == 5.0 and result.selection is None
        assert result.step.delta_alpha.shape == (12, 4)
        assert result.step.loss_after < result.step.loss_before
        expected = apply_step(backbone, result.step)
        x = _tabular(6)
        torch.testing.assert_close(result.audited(x), expected(x))

        again = _audit()
        assert torch.equal(again.step.delta_alpha, result.step.delta_alpha)
        other_seed = _audit(seed=1)
        assert not torch.equal(other_seed.step.delta_alpha, result.step.delta_alpha)

    def test_audit_encoder__selects_damping_label_free(self) -> None:
        result = _audit(damping=None, loss=SpectralContrastiveLoss(), max_iter=15)
        assert result.selection is not None
        assert result.damping == result.selection.damping
        assert result.step is result.selection.step
        assert len(result.selection.candidates) == 10

    def test_audit_encoder__cnn_with_lightly_dataset(self) -> None:
        dataset = _ViewDataset()
        options: dict[str, Any] = {
            "transform": None,
            "num_landmarks": 8,
            "batch_size": 12,
            "data": dataset,
            "encoder": _cnn(),
        }
        result = _audit(**options)
        assert result.backbone.landmarks.shape == (8, 3, 6, 6)
        assert result.backbone.out_dim == 3
        assert torch.isfinite(result.step.delta_alpha).all()
        assert result.step.loss_after < result.step.loss_before
        assert torch.equal(_audit(**options).step.delta_alpha, result.step.delta_alpha)

        # Loaders' batches are used as they are; iterating one draws its own seed,
        # so its views differ from the dataset's but are as reproducible.
        options["data"] = DataLoader(dataset, batch_size=12, shuffle=True)
        from_loader = _audit(**options)
        assert torch.isfinite(from_loader.step.delta_alpha).all()
        assert not torch.equal(from_loader.step.delta_alpha, result.step.delta_alpha)
        assert torch.equal(
            _audit(**options).step.delta_alpha, from_loader.step.delta_alpha
        )

        # A list of items is indexed like a dataset.
        items = [dataset[i] for i in range(len(dataset))]
        from_list = _audit(**{**options, "data": items})
        assert from_list.step.delta_alpha.shape == (8, 3)

    def test_audit_encoder__out_dim_capped_by_rank(self) -> None:
        result = _audit(encoder=_mlp(out=32), num_landmarks=6)
        assert result.backbone.out_dim == result.backbone.nystrom.rank <= 6
        with pytest.raises(ValueError, match="exceeds the rank"):
            _audit(encoder=_mlp(out=32), num_landmarks=6, out_dim=20)

    def test_audit_encoder__unnormalized_trace_kernel(self) -> None:
        result = _audit(output="trace", normalized=False, out_dim=2)
        kernel = result.backbone.nystrom.kernel
        assert isinstance(kernel, EmpiricalNTK) and kernel.output == "trace"
        assert result.step.delta_weight.shape == (2, result.backbone.nystrom.rank)

    def test_audit_encoder__rejects_bad_input(self) -> None:
        encoder = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4))
        with pytest.raises(ValueError, match="eval"):
            _audit(encoder=encoder)
        with pytest.raises(ValueError, match="transform"):
            _audit(transform=None)
        with pytest.raises(ValueError, match="transform"):
            _audit(data=_ViewDataset())
        with pytest.raises(TypeError, match="views"):
            _audit(data=[(torch.randn(5), 0)] * 16, transform=None, num_landmarks=4)
        with pytest.raises(ValueError, match="mismatched shapes"):
            _audit(transform=lambda x: [x, x[:3]])
        with pytest.raises(ValueError, match="empty"):
            _audit(data=torch.empty(0, 5))
        with pytest.raises(ValueError, match="damping"):
            _audit(damping=0.0)
        with pytest.raises(ValueError, match="NaN"):
            _audit(data=torch.full((8, 5), torch.nan))


class TestExamples:
    @pytest.mark.parametrize("module", ["objective", "newton", "damping", "audit"])
    def test_docstrings__examples_run(self, module: str) -> None:
        mod = importlib.import_module(f"lightly_krepes.audit.{module}")
        torch.manual_seed(0)
        result = doctest.testmod(mod, extraglobs={"torch": torch}, verbose=False)
        assert result.attempted > 0
        assert result.failed == 0
