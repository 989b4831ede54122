from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightly_krepes.evaluation import extract_features


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5))
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.fill_(0.3)
        model[1].running_var.fill_(2.0)
    return model


class _Failing(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError("boom")


class TestExtractFeatures:
    def test_extract_features__eval_mode_outputs(self) -> None:
        model = _model()
        x = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
        features, labels = extract_features(model, x, batch_size=3, progress=False)
        model.eval()
        with torch.no_grad():
            expected = model(x)
        torch.testing.assert_close(features, expected)
        assert labels is None
        assert not features.requires_grad

    def test_extract_features__restores_modes(self) -> None:
        model = _model()
        model[1].eval()  # e.g. frozen BatchNorm inside a training model
        extract_features(model, torch.randn(5, 4), progress=False)
        assert model.training and model[0].training and model[2].training
        assert not model[1].training

    def test_extract_features__restores_modes_on_error(self) -> None:
        model = nn.Sequential(_Failing())
        model.train()
        with pytest.raises(RuntimeError, match="boom"):
            extract_features(model, torch.randn(5, 4), progress=False)
        assert model.training and model[0].training

    def test_extract_features__dataloader_with_labels(self) -> None:
        model = _model()
        x = torch.randn(11, 4)
        y = torch.arange(11)
        loader = DataLoader(TensorDataset(x, y), batch_size=4)
        features, labels = extract_features(model, loader, progress=True)
        direct, _ = extract_features(model, x, progress=False)
        torch.testing.assert_close(features, direct)
        assert labels is not None and torch.equal(labels, y)

    def test_extract_features__flattens_outputs(self) -> None:
        model = nn.Conv2d(3, 5, kernel_size=4)  # (B, 5, 1, 1) on 4x4 inputs
        features, _ = extract_features(model, torch.randn(6, 3, 4, 4), progress=False)
        assert features.shape == (6, 5)
        unflattened, _ = extract_features(
            model, torch.randn(6, 3, 4, 4), progress=False, flatten=False
        )
        assert unflattened.shape == (6, 5, 1, 1)

    def test_extract_features__model_without_parameters(self) -> None:
        features, _ = extract_features(nn.Identity(), torch.ones(3, 2), progress=False)
        assert torch.equal(features, torch.ones(3, 2))

    def test_extract_features__rejects_invalid_batch_size(self) -> None:
        with pytest.raises(ValueError, match="batch_size"):
            extract_features(_model(), torch.randn(4, 4), batch_size=0)

    def test_extract_features__rejects_empty_data(self) -> None:
        with pytest.raises(ValueError, match="empty"):
            extract_features(_model(), [], progress=False)

    def test_extract_features__rejects_unknown_batches(self) -> None:
        with pytest.raises(TypeError, match="batches"):
            extract_features(_model(), iter([{"x": torch.randn(2, 4)}]), progress=False)
