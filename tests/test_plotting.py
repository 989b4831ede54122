from __future__ import annotations

from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from lightly_krepes.attribution import (
    FeatureAlignmentGap,
    RepresenterInfluence,
    Similarity,
    concept_influence,
    feature_alignment_gap,
)
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF
from lightly_krepes.plotting import (
    plot_concept_influence,
    plot_feature_alignment_gap,
    plot_proponents_opponents,
    plot_representer_landmarks,
    top_representer_landmarks,
)

PNG = b"\x89PNG\r\n\x1a\n"


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


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


class TestPlotProponentsOpponents:
    def test_plot_proponents_opponents__writes_png_with_scores(
        self, tmp_path: Path
    ) -> None:
        backbone = _backbone()
        queries = torch.randn(3, 1, 4, 4).double()
        scores = RepresenterInfluence(backbone).influence(
            queries, target=Similarity(backbone(queries).detach())
        )
        path = tmp_path / "fig" / "po.png"
        fig = plot_proponents_opponents(
            queries, backbone.landmarks, scores, k=2, path=path
        )
        assert isinstance(fig, Figure)
        assert path.read_bytes()[:8] == PNG
        assert len(fig.axes) == 3 * (2 * 2 + 1)
        titles = _titles(fig)
        for row in range(3):
            shown = titles[row * 5 + 1 : row * 5 + 5]
            high = scores[row].topk(2).values
            low = scores[row].topk(2, largest=False).values
            expected = [f"{float(v):+.2g}" for v in (*high, *low)]
            assert shown == expected

    def test_plot_proponents_opponents__orders_and_labels(self) -> None:
        scores = torch.tensor([[0.5, -2.0, 3.0, -0.1]])
        fig = plot_proponents_opponents(
            torch.rand(1, 4, 4),
            torch.rand(4, 4, 4),
            scores,
            k=2,
            titles=["test: 7"],
            landmark_titles=["a", "b", "c", "d"],
        )
        assert _titles(fig) == ["test: 7", "c: +3", "a: +0.5", "b: -2", "d: -0.1"]
        assert fig.axes[1].title.get_color() != fig.axes[3].title.get_color()

    def test_plot_proponents_opponents__rgb_images(self) -> None:
        fig = plot_proponents_opponents(
            torch.rand(2, 3, 5, 5), torch.rand(6, 3, 5, 5), torch.randn(2, 6), k=3
        )
        assert len(fig.axes) == 2 * 7
        assert fig.axes[1].get_images()[0].get_array().shape == (5, 5, 3)

    def test_plot_proponents_opponents__rejects_bad_input(self) -> None:
        images, landmarks = torch.rand(2, 4, 4), torch.rand(5, 4, 4)
        with pytest.raises(ValueError, match=r"scores must have shape \(B, m\)"):
            plot_proponents_opponents(images, landmarks, torch.zeros(3, 5))
        with pytest.raises(ValueError, match=r"scores must have shape \(B, m\)"):
            plot_proponents_opponents(images, landmarks, torch.zeros(2, 4))
        with pytest.raises(ValueError, match="between 1 and the number of landmarks"):
            plot_proponents_opponents(images, landmarks, torch.zeros(2, 5), k=6)
        with pytest.raises(ValueError, match="between 1 and the number of landmarks"):
            plot_proponents_opponents(images, landmarks, torch.zeros(2, 5), k=0)
        with pytest.raises(ValueError, match="titles must hold 2"):
            plot_proponents_opponents(
                images, landmarks, torch.zeros(2, 5), k=1, titles=["a"]
            )
        with pytest.raises(ValueError, match="NaN or infinite"):
            plot_proponents_opponents(
                images, landmarks, torch.full((2, 5), float("nan")), k=1
            )


class TestPlotConceptInfluence:
    def test_plot_concept_influence__writes_png_with_masses(
        self, tmp_path: Path
    ) -> None:
        backbone = _backbone()
        x = torch.randn(6, 1, 4, 4).double()
        cav = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
        scores = {
            "concept a": concept_influence(backbone, x[:3], cav),
            "concept b": concept_influence(backbone, x[3:], -cav),
        }
        path = tmp_path / "concepts.png"
        fig = plot_concept_influence(
            scores, landmark_labels=torch.arange(12) % 3, path=path
        )
        assert path.read_bytes()[:8] == PNG
        assert len(fig.axes) == 4
        titles = _titles(fig)
        for row, (name, value) in enumerate(scores.items()):
            attractive = float(value.clamp_min(0).sum(1).mean())
            repulsive = float(value.clamp_max(0).sum(1).mean())
            assert titles[2 * row] == (
                f"{name}: attractive {attractive:+.3g} | repulsive {repulsive:+.3g}"
            )
            assert titles[2 * row + 1].startswith(name)
        # The class bars add up to the mean concept coordinate of the expansion.
        heights = [patch.get_height() for patch in fig.axes[1].patches]
        assert len(heights) == 3
        assert sum(heights) == pytest.approx(float(scores["concept a"].sum(1).mean()))

    def test_plot_concept_influence__profiles_only_without_labels(self) -> None:
        fig = plot_concept_influence({"c": torch.randn(7)})
        assert len(fig.axes) == 1

    def test_plot_concept_influence__rejects_bad_input(self) -> None:
        with pytest.raises(ValueError, match="empty"):
            plot_concept_influence({})
        with pytest.raises(ValueError, match="same m landmarks"):
            plot_concept_influence({"a": torch.zeros(2, 4), "b": torch.zeros(2, 5)})
        with pytest.raises(ValueError, match="one label per landmark"):
            plot_concept_influence({"a": torch.zeros(2, 4)}, landmark_labels=[0, 1])
        with pytest.raises(ValueError, match="shape"):
            plot_concept_influence({"a": torch.zeros(2, 4, 1)})
        with pytest.raises(ValueError, match="band"):
            plot_concept_influence({"a": torch.zeros(2, 4)}, band=(0.9, 0.1))


class TestPlotFeatureAlignmentGap:
    def test_plot_feature_alignment_gap__results_and_pairs(
        self, tmp_path: Path
    ) -> None:
        torch.manual_seed(0)
        landmarks = torch.randn(16, 3).double()
        backbone = KernelBackbone(RBF(2.0), landmarks, out_dim=2)
        x = torch.randn(10, 3).double()
        result = feature_alignment_gap(backbone, x, 0, top_k=4, num_random=3)
        path = tmp_path / "gap.png"
        fig = plot_feature_alignment_gap({"f0": result, "f1": (-0.05, 0.5)}, path=path)
        assert path.read_bytes()[:8] == PNG
        assert len(fig.axes) == 2
        left, right = fig.axes
        labels = [t.get_text() for t in left.texts]
        assert f"{result.gap:+.3f}" in labels and "-0.050" in labels
        ticks = [t.get_text() for t in left.get_xticklabels()]
        by_gap = {"f0": result.gap, "f1": -0.05}
        assert ticks == sorted(by_gap, key=lambda name: -by_gap[name])
        heights = sorted(round(p.get_height(), 9) for p in right.patches)
        expected = sorted(
            round(v, 9)
            for v in (
                float(result.psi.mean()),
                float(result.psi_random.mean()),
                0.45,
                0.5,
            )
        )
        assert heights == pytest.approx(expected)

    def test_plot_feature_alignment_gap__rejects_bad_input(self) -> None:
        with pytest.raises(ValueError, match="empty"):
            plot_feature_alignment_gap({})
        with pytest.raises(TypeError, match="FeatureAlignmentGap or a pair"):
            plot_feature_alignment_gap({"a": 0.3})  # type: ignore[dict-item]
        with pytest.raises(ValueError, match="NaN"):
            plot_feature_alignment_gap({"a": (float("nan"), 0.5)})
        nan = torch.tensor([float("nan")])
        with pytest.raises(ValueError, match="NaN"):
            plot_feature_alignment_gap(
                {"a": FeatureAlignmentGap(float("nan"), nan, nan, nan)}
            )
