from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from lightly_krepes.attribution import (
    FeatureAlignmentGap,
    LandmarkExpansion,
    RepresenterInfluence,
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


class TestImport:
    def test_import__does_not_change_the_backend(self) -> None:
        code = (
            "import matplotlib; matplotlib.use('svg'); "
            "import lightly_krepes, lightly_krepes.plotting; "
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()"
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        env.pop("MPLBACKEND", None)
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr


class TestTopRepresenterLandmarks:
    def test_top_representer_landmarks__default_scores_of_the_expansion(self) -> None:
        backbone = _backbone()
        x = torch.randn(5, 1, 4, 4).double()
        expansion = LandmarkExpansion(backbone)
        indices, scores = top_representer_landmarks(expansion, x, k=12)
        expected = expansion.top(x, 12)
        torch.testing.assert_close(indices, expected.indices)
        torch.testing.assert_close(scores, expected.influence_scores)
        torch.testing.assert_close(expansion.scores(x).gather(1, indices), scores)
        torch.testing.assert_close(
            scores.sum(1), (expansion.outputs(x) - expansion.offset).norm(dim=1)
        )
        low, _ = top_representer_landmarks(backbone, x, k=2, proponents=False)
        expected_low = expansion.top(x, 2, proponents=False).indices
        assert torch.equal(low, expected_low)

    def test_top_representer_landmarks__rejects_bad_arguments(self) -> None:
        backbone = _backbone()
        x = torch.randn(2, 1, 4, 4).double()
        with pytest.raises(ValueError, match="between 1 and the number of landmarks"):
            top_representer_landmarks(backbone, x, k=13)
        with pytest.raises(TypeError, match="Unknown target"):
            top_representer_landmarks(backbone, x, k=2, target="max")


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def _caption(fig: Figure) -> str:
    title = fig.get_suptitle()
    return " ".join(t.get_text() for t in fig.texts if t.get_text() != title)


class TestPlotRepresenterLandmarks:
    def test_plot_representer_landmarks__returns_figure_and_writes_png(
        self, tmp_path: Path
    ) -> None:
        backbone = _backbone()
        queries = torch.randn(3, 1, 4, 4).double()
        indices, scores = top_representer_landmarks(backbone, queries, 2)
        path = tmp_path / "fig" / "a.png"
        fig = plot_representer_landmarks(
            queries, backbone.landmarks, indices, scores, path
        )
        assert isinstance(fig, Figure)
        assert len(fig.axes) == 3 * 3
        assert path.read_bytes()[:8] == PNG
        assert "opponents" in _caption(fig)
        no_caption = plot_representer_landmarks(
            queries, backbone.landmarks, indices, scores, caption=""
        )
        assert _caption(no_caption) == ""

    def test_plot_representer_landmarks__rejects_mismatched_shapes(self) -> None:
        with pytest.raises(ValueError, match="must both have shape"):
            plot_representer_landmarks(
                torch.zeros(2, 4, 4),
                torch.zeros(5, 4, 4),
                torch.zeros(3, 2, dtype=torch.long),
                torch.zeros(3, 2),
            )


class TestPlotProponentsOpponents:
    def test_plot_proponents_opponents__writes_png_with_scores(
        self, tmp_path: Path
    ) -> None:
        backbone = _backbone()
        queries = torch.randn(3, 1, 4, 4).double()
        scores = RepresenterInfluence(backbone).influence(queries)
        assert isinstance(scores, torch.Tensor)
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

    def test_plot_proponents_opponents__caption_explains_opponents(self) -> None:
        fig = plot_proponents_opponents(
            torch.rand(1, 4, 4), torch.rand(4, 4, 4), torch.randn(1, 4), k=1
        )
        caption = _caption(fig)
        assert "opponents (red, < 0) pull" in caption.replace("\n", " ")
        custom = plot_proponents_opponents(
            torch.rand(1, 4, 4),
            torch.rand(4, 4, 4),
            torch.randn(1, 4),
            k=1,
            caption="concept influence",
        )
        assert _caption(custom) == "concept influence"

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

    def test_plot_proponents_opponents__denormalize_restores_pixels(self) -> None:
        mean, std = (0.5, 0.2, 0.1), (0.25, 0.5, 0.1)
        pixels = torch.rand(1, 3, 4, 4).double()
        normalized = (pixels - torch.tensor(mean).reshape(1, 3, 1, 1)) / torch.tensor(
            std
        ).reshape(1, 3, 1, 1)
        for denormalize in (
            (mean, std),
            lambda image: (
                image * torch.tensor(std).reshape(3, 1, 1)
                + torch.tensor(mean).reshape(3, 1, 1)
            ),
        ):
            fig = plot_proponents_opponents(
                normalized,
                normalized.expand(2, -1, -1, -1),
                torch.tensor([[1.0, -1.0]]),
                k=1,
                denormalize=denormalize,
            )
            shown = fig.axes[0].get_images()[0].get_array()
            torch.testing.assert_close(
                torch.as_tensor(shown).double(),
                pixels[0].permute(1, 2, 0),
                rtol=1e-6,
                atol=1e-6,
            )
        # Without it each image is stretched to its own range.
        fig = plot_proponents_opponents(
            normalized,
            normalized.expand(2, -1, -1, -1),
            torch.tensor([[1.0, -1.0]]),
            k=1,
        )
        stretched = torch.as_tensor(fig.axes[0].get_images()[0].get_array())
        assert float(stretched.min()) == 0.0 and float(stretched.max()) == 1.0

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
        with pytest.raises(TypeError, match="denormalize"):
            plot_proponents_opponents(
                images,
                landmarks,
                torch.zeros(2, 5),
                k=1,
                denormalize=(0.5,),  # type: ignore[arg-type]
            )
        with pytest.raises(ValueError, match="same, nonzero length"):
            plot_proponents_opponents(
                images, landmarks, torch.zeros(2, 5), k=1, denormalize=([0.5], [])
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
