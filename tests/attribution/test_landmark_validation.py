from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict
from torch import Tensor

from lightly_krepes.attribution import (
    ClassCoverage,
    LandmarkExpansion,
    class_coverage_kappa,
    deletion_test,
    nearest_landmark_precision,
    precision_at_1,
)
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF

M, H = 12, 3


def _clusters(n: int, seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centers = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    noise = 0.6 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return centers[labels] + noise, labels


def _backbone() -> tuple[KernelBackbone, Tensor]:
    landmarks, landmark_labels = _clusters(M, seed=0)
    backbone = KernelBackbone(RBF(1.0), landmarks, out_dim=H)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        assert backbone.linear.bias is not None
        backbone.linear.bias.normal_(generator=generator).mul_(0.1)
    return backbone, landmark_labels


class TestClassCoverageKappa:
    def test_class_coverage_kappa__closed_form(self) -> None:
        weights = torch.tensor([[1.0], [3.0], [2.0], [0.5]])
        assert class_coverage_kappa(weights, torch.tensor([0, 0, 1, 2])) == (
            ClassCoverage(kappa=4, normalized=1.0)
        )
        assert class_coverage_kappa(weights, torch.tensor([2, 0, 1, 0])) == (
            ClassCoverage(kappa=3, normalized=0.75)
        )
        assert class_coverage_kappa(-weights, torch.tensor([1, 1, 0, 1])).kappa == 2

    def test_class_coverage_kappa__expansion_uses_explained_weights(self) -> None:
        backbone, landmark_labels = _backbone()
        expansion = LandmarkExpansion(backbone)
        assert class_coverage_kappa(expansion, landmark_labels) == (
            class_coverage_kappa(expansion.weights, landmark_labels)
        )

    def test_class_coverage_kappa__bad_inputs_raise(self) -> None:
        weights = torch.ones(4, 2)
        with pytest.raises(ValueError, match=r"shape \(4,\)"):
            class_coverage_kappa(weights, torch.tensor([0, 1, 2]))
        with pytest.raises(TypeError, match="integer"):
            class_coverage_kappa(weights, torch.zeros(4))
        with pytest.raises(ValueError, match="non-negative"):
            class_coverage_kappa(weights, torch.tensor([0, -1, 0, 1]))
        with pytest.raises(ValueError, match="NaN or infinite"):
            class_coverage_kappa(
                torch.full((4, 2), float("nan")), torch.zeros(4).long()
            )


class TestPrecisionAt1:
    def test_precision_at_1__closed_form_with_a_ranking(self) -> None:
        landmarks = torch.tensor([[-3.0], [-2.0], [2.0], [3.0]], dtype=torch.float64)
        backbone = KernelBackbone(RBF(1.0), landmarks, out_dim=2)
        x = torch.tensor([[-2.2], [2.2]], dtype=torch.float64)
        labels = torch.tensor([0, 1])
        ranking = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]).double()

        def p1(landmark_labels: list[int]) -> float:
            return precision_at_1(
                backbone, x, labels, torch.tensor(landmark_labels), ranking=ranking
            )

        assert p1([0, 1, 0, 1]) == 1.0
        assert p1([1, 0, 1, 0]) == 0.0
        assert p1([1, 1, 1, 1]) == 0.5

    def test_precision_at_1__default_is_top_of_the_default_scores(self) -> None:
        backbone, landmark_labels = _backbone()
        x, labels = _clusters(30, seed=3)
        expansion = LandmarkExpansion(backbone)
        top = expansion.scores(x).argmax(1)
        expected = float((landmark_labels[top] == labels).double().mean())
        assert precision_at_1(expansion, x, labels, landmark_labels) == expected
        assert precision_at_1(backbone, x, labels, landmark_labels) == expected
        # Well-separated clusters: what builds x comes from x's cluster.
        assert expected >= 0.9

    def test_nearest_landmark_precision__closed_forms(self) -> None:
        backbone, landmark_labels = _backbone()
        x, labels = _clusters(30, seed=3)

        def hits(similarity: Tensor) -> float:
            nearest = similarity.argmax(1)
            return float((landmark_labels[nearest] == labels).double().mean())

        landmarks = backbone.landmarks
        assert nearest_landmark_precision(
            backbone, x, labels, landmark_labels, space="input"
        ) == hits(F.normalize(x, dim=1) @ F.normalize(landmarks, dim=1).T)
        assert nearest_landmark_precision(
            backbone, x, labels, landmark_labels, space="kernel"
        ) == hits(-torch.cdist(x, landmarks))
        with torch.no_grad():
            reps, landmark_reps = backbone(x), backbone(landmarks)
        expected = hits(F.normalize(reps, dim=1) @ F.normalize(landmark_reps, dim=1).T)
        assert nearest_landmark_precision(
            LandmarkExpansion(backbone), x, labels, landmark_labels
        ) == pytest.approx(expected)

    def test_precision__bad_inputs_raise(self) -> None:
        backbone, landmark_labels = _backbone()
        x, labels = _clusters(5, seed=3)
        with pytest.raises(ValueError, match=r"shape \(5,\)"):
            precision_at_1(backbone, x, labels[:4], landmark_labels)
        with pytest.raises(ValueError, match=rf"shape \({M},\)"):
            precision_at_1(backbone, x, labels, landmark_labels[:3])
        with pytest.raises(ValueError, match="ranking must"):
            precision_at_1(
                backbone, x, labels, landmark_labels, ranking=torch.zeros(5, M - 1)
            )
        with pytest.raises(TypeError, match="Unknown target"):
            precision_at_1(backbone, x, labels, landmark_labels, target="own")
        with pytest.raises(ValueError, match="space"):
            nearest_landmark_precision(
                backbone,
                x,
                labels,
                landmark_labels,
                space="cosine",  # type: ignore[arg-type]
            )


class TestDeletionTest:
    def test_deletion_test__before_matches_lightly_knn(self) -> None:
        backbone, _ = _backbone()
        expansion = LandmarkExpansion(backbone, regularize=False)
        bank, bank_labels = _clusters(60, seed=4)
        x, _ = _clusters(9, seed=5)
        result = deletion_test(expansion, x, bank, bank_labels, k=3, k_neighbors=10)
        with torch.no_grad():
            features = F.normalize(backbone(bank), dim=1)
            queries = F.normalize(backbone(x), dim=1)
        expected = knn_predict(queries, features.T, bank_labels, 3, 10, 0.1)[:, 0]
        assert torch.equal(result.predictions, expected)
        assert result.confidence.shape == result.top_drops.shape == (9,)
        assert torch.all(result.confidence > 1 / 3)

    def test_deletion_test__deletes_terms_of_x_only(self) -> None:
        backbone, _ = _backbone()
        expansion = LandmarkExpansion(backbone, eta=1e-3)
        bank, bank_labels = _clusters(60, seed=4)
        x, _ = _clusters(1, seed=5)
        result = deletion_test(expansion, x, bank, bank_labels, k=4, k_neighbors=10)
        top = expansion.scores(x).topk(4, dim=1).indices
        with torch.no_grad():
            features = F.normalize(expansion.outputs(bank), dim=1)  # unchanged bank
            query = F.normalize(expansion.outputs(x, remove=top), dim=1)
        similarity, index = (query @ features.T).topk(10, dim=1)
        votes = torch.zeros(1, 3, dtype=torch.float64)
        votes.scatter_add_(1, bank_labels[index], (similarity / 0.1).exp())
        after = votes[0, result.predictions[0]] / votes.sum()
        assert result.top_drop == pytest.approx(
            float(result.confidence[0] - after), rel=1e-9, abs=1e-12
        )

    def test_deletion_test__zero_terms_change_nothing(self) -> None:
        backbone, _ = _backbone()
        delta = torch.randn(M, H, dtype=torch.float64)
        delta[:4] = 0.0
        expansion = LandmarkExpansion(backbone, delta, regularize=False)
        ranking = torch.zeros(8, M, dtype=torch.float64)
        ranking[:, :4] = 1.0  # rank the four zero-weight landmarks on top
        bank, bank_labels = _clusters(60, seed=4)
        x, _ = _clusters(8, seed=5)
        result = deletion_test(
            expansion, x, bank, bank_labels, k=4, k_neighbors=10, ranking=ranking
        )
        assert result.top_drop == pytest.approx(0.0, abs=1e-12)

    def test_deletion_test__top_terms_matter_more_than_random(self) -> None:
        backbone, _ = _backbone()
        bank, bank_labels = _clusters(90, seed=4)
        x, _ = _clusters(30, seed=5)
        expansion = LandmarkExpansion(backbone)
        result = deletion_test(expansion, x, bank, bank_labels, k=3, k_neighbors=20)
        assert result.top_drop > 5 * result.random_drop
        assert result.ratio == pytest.approx(result.top_drop / result.random_drop)
        again = deletion_test(expansion, x, bank, bank_labels, k=3, k_neighbors=20)
        assert again.random_drop == result.random_drop

    def test_deletion_test__bad_arguments_raise(self) -> None:
        backbone, _ = _backbone()
        bank, bank_labels = _clusters(20, seed=4)
        x, _ = _clusters(3, seed=5)
        for kwargs, match in (
            ({"k": 0}, "k must"),
            ({"k": M + 1}, "k must"),
            ({"k_neighbors": 21}, "k_neighbors"),
            ({"num_random": 0}, "num_random"),
            ({"temperature": 0.0}, "temperature"),
            ({"ranking": torch.zeros(3, M + 1)}, "ranking must"),
        ):
            with pytest.raises(ValueError, match=match):
                deletion_test(
                    backbone,
                    x,
                    bank,
                    bank_labels,
                    **{"k_neighbors": 10, **kwargs},  # type: ignore[arg-type]
                )
        with pytest.raises(ValueError, match=r"shape \(20,\)"):
            deletion_test(backbone, x, bank, bank_labels[:5], k_neighbors=10)
        bad = bank.clone()
        bad[0, 0] = float("nan")
        with pytest.raises(ValueError, match="NaN or infinite"):
            deletion_test(backbone, x, bad, bank_labels, k_neighbors=10)
