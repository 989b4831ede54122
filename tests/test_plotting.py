from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF
from lightly_krepes.plotting import (
    plot_representer_landmarks,
    top_representer_landmarks,
)


def _backbone() -> KernelBackbone:
    torch.manual_seed(0)
    backbone = KernelBackbone(RBF(3.0), torch.randn(12, 1, 4, 4).double(), out_dim=3)
    with torch.no_grad():
        backbone.linear.weight.normal_()
        backbone.linear.bias.normal_()
    return backbone


class TestTopRepresenterLandmarks:
    def test_top_representer_landmarks__projection_scores_sum_to_norm(self) -> None:
        backbone = _backbone()
        x = torch.randn(5, 1, 4, 4).double()
        contributions = backbone.contributions(x)
        _, scores = top_representer_landmarks(contributions, k=12)
        expected = (backbone(x) - backbone.linear.bias).norm(dim=1)
        torch.testing.assert_close(scores.sum(1), expected)

    def test_top_representer_landmarks__norm_scores_are_sorted(self) -> None:
        contributions = _backbone().contributions(torch.randn(4, 1, 4, 4).double())
        indices, scores = top_representer_landmarks(contributions, k=4, score="norm")
        assert indices.shape == scores.shape == (4, 4)
        assert torch.all(scores[:, :-1] >= scores[:, 1:])
        torch.testing.assert_close(
            scores[:, 0], contributions.norm(dim=2).max(dim=1).values
        )

    def test_top_representer_landmarks__rejects_bad_arguments(self) -> None:
        contributions = torch.zeros(2, 3, 4)
        with pytest.raises(ValueError, match="between 1 and the number of landmarks"):
            top_representer_landmarks(contributions, k=4)
        with pytest.raises(ValueError, match="score"):
            top_representer_landmarks(contributions, k=2, score="max")


class TestPlotRepresenterLandmarks:
    def test_plot_representer_landmarks__writes_png(self, tmp_path: Path) -> None:
        backbone = _backbone()
        queries = torch.randn(3, 1, 4, 4).double()
        indices, scores = top_representer_landmarks(backbone.contributions(queries), 2)
        path = plot_representer_landmarks(
            queries, backbone.landmarks, indices, scores, tmp_path / "fig" / "a.png"
        )
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_plot_representer_landmarks__rejects_mismatched_shapes(
        self, tmp_path: Path
    ) -> None:
        with pytest.raises(ValueError, match="must both have shape"):
            plot_representer_landmarks(
                torch.zeros(2, 4, 4),
                torch.zeros(5, 4, 4),
                torch.zeros(3, 2, dtype=torch.long),
                torch.zeros(3, 2),
                tmp_path / "a.png",
            )
