from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict
from torch import Tensor

from lightly_krepes.attribution import (
    ClassCoverage,
    class_coverage_kappa,
    cosine_nearest_landmark_precision,
    landmark_removal_test,
    precision_at_1,
    sample_specific_influence,
)
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF

M, H = 12, 3


def _set_alpha(backbone: KernelBackbone, alpha: Tensor) -> None:
    """Sets A so that the representer weights are exactly ``alpha`` (needs r = m)."""
    projection = backbone.feature_scale * backbone.nystrom.projection
    assert projection.shape[0] == projection.shape[1]
    with torch.no_grad():
        backbone.linear.weight.copy_(torch.linalg.solve(projection, alpha).T)


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
    def test_precision_at_1__closed_form(self) -> None:
        landmarks = torch.tensor([[-3.0], [-2.0], [2.0], [3.0]], dtype=torch.float64)
        backbone = KernelBackbone(RBF(1.0), landmarks, out_dim=2)
        weights = torch.tensor(
            [[1.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.0, 1.0]], dtype=torch.float64
        )
        x = torch.tensor([[-2.2], [2.2]], dtype=torch.float64)
        labels = torch.tensor([0, 1])

        # IS picks landmark 0 for x = -2.2 (e^{-0.32} = 0.73 > 0.1 e^{-0.02}) and
        # landmark 3 for 2.2, not the nearest landmarks 1 and 2.
        def p1(landmark_labels: list[int], score: str = "influence") -> float:
            return precision_at_1(
                backbone,
                x,
                labels,
                torch.tensor(landmark_labels),
                weights,
                score,  # type: ignore[arg-type]
            )

        assert p1([0, 1, 0, 1]) == 1.0
        assert p1([1, 0, 1, 0]) == 0.0
        assert p1([1, 1, 1, 1]) == 0.5
        assert p1([0, 1, 0, 1], "projection") == 1.0
        assert p1([1, 0, 1, 0], "projection") == 0.0

    def test_precision_at_1__matches_top_influence(self) -> None:
        backbone, landmark_labels = _backbone()
        x, labels = _clusters(30, seed=3)
        top = sample_specific_influence(backbone, x).argmax(1)
        expected = float((landmark_labels[top] == labels).double().mean())
        assert precision_at_1(backbone, x, labels, landmark_labels) == expected

    def test_cosine_nearest_landmark_precision__closed_form(self) -> None:
        backbone, landmark_labels = _backbone()
        x, labels = _clusters(30, seed=3)
        nearest = (
            F.normalize(x, dim=1) @ F.normalize(backbone.landmarks, dim=1).T
        ).argmax(1)
        expected = float((landmark_labels[nearest] == labels).double().mean())
        assert (
            cosine_nearest_landmark_precision(
                backbone, x, labels, landmark_labels, space="input"
            )
            == expected
        )
        with torch.no_grad():
            reps, landmark_reps = backbone(x), backbone(backbone.landmarks)
        nearest = (
            F.normalize(reps, dim=1) @ F.normalize(landmark_reps, dim=1).T
        ).argmax(1)
        expected = float((landmark_labels[nearest] == labels).double().mean())
        assert cosine_nearest_landmark_precision(
            backbone, x, labels, landmark_labels
        ) == pytest.approx(expected)

    def test_precision__bad_inputs_raise(self) -> None:
        backbone, landmark_labels = _backbone()
        x, labels = _clusters(5, seed=3)
        with pytest.raises(ValueError, match=r"shape \(5,\)"):
            precision_at_1(backbone, x, labels[:4], landmark_labels)
        with pytest.raises(ValueError, match=rf"shape \({M},\)"):
            precision_at_1(backbone, x, labels, landmark_labels[:3])
        with pytest.raises(ValueError, match="score"):
            precision_at_1(backbone, x, labels, landmark_labels, score="norm")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="space"):
            cosine_nearest_landmark_precision(
                backbone,
                x,
                labels,
                landmark_labels,
                space="kernel",  # type: ignore[arg-type]
            )


class TestLandmarkRemovalTest:
    def test_landmark_removal_test__before_matches_lightly_knn(self) -> None:
        backbone, _ = _backbone()
        reference, reference_labels = _clusters(60, seed=4)
        x, _ = _clusters(9, seed=5)
        result = landmark_removal_test(
            backbone, x, reference, reference_labels, top=3, k_neighbors=10
        )
        with torch.no_grad():
            bank = F.normalize(backbone(reference), dim=1)
            queries = F.normalize(backbone(x), dim=1)
        expected = knn_predict(queries, bank.T, reference_labels, 3, 10, 0.1)[:, 0]
        assert torch.equal(result.predictions, expected)
        assert result.confidence.shape == (9,)
        assert torch.all(result.confidence > 1 / 3)

    def test_landmark_removal_test__recomputes_both_sides_without_landmarks(
        self,
    ) -> None:
        backbone, _ = _backbone()
        reference, reference_labels = _clusters(60, seed=4)
        x, _ = _clusters(1, seed=5)
        result = landmark_removal_test(
            backbone, x, reference, reference_labels, top=4, k_neighbors=10
        )
        # The same confidence from a backbone whose top-4 representer weights are 0.
        top = sample_specific_influence(backbone, x).topk(4, dim=1).indices[0]
        pruned = copy.deepcopy(backbone)
        alpha = backbone.representer_weights.detach().clone()
        alpha[top] = 0.0
        _set_alpha(pruned, alpha)
        with torch.no_grad():
            bank = F.normalize(pruned(reference), dim=1)
            query = F.normalize(pruned(x), dim=1)
        similarity, index = (query @ bank.T).topk(10, dim=1)
        votes = torch.zeros(1, 3, dtype=torch.float64)
        votes.scatter_add_(1, reference_labels[index], (similarity / 0.1).exp())
        expected = votes[0, result.predictions[0]] / votes.sum()
        assert float(result.confidence_top_removed[0]) == pytest.approx(
            float(expected), rel=1e-9
        )
        assert result.top_drop == pytest.approx(
            float(result.confidence[0] - result.confidence_top_removed[0])
        )

    def test_landmark_removal_test__zero_weight_landmarks_change_nothing(self) -> None:
        backbone, _ = _backbone()
        alpha = backbone.representer_weights.detach().clone()
        alpha[:4] = 0.0
        _set_alpha(backbone, alpha)
        ranking = torch.zeros(M, H, dtype=torch.float64)
        ranking[:4] = 1.0  # rank the four zero-weight landmarks on top
        reference, reference_labels = _clusters(60, seed=4)
        x, _ = _clusters(8, seed=5)
        result = landmark_removal_test(
            backbone,
            x,
            reference,
            reference_labels,
            top=4,
            k_neighbors=10,
            weights=ranking,
        )
        assert result.top_drop == pytest.approx(0.0, abs=1e-12)

    def test_landmark_removal_test__top_landmarks_matter_more_than_random(
        self,
    ) -> None:
        backbone, _ = _backbone()
        reference, reference_labels = _clusters(90, seed=4)
        x, _ = _clusters(30, seed=5)
        result = landmark_removal_test(
            backbone,
            x,
            reference,
            reference_labels,
            top=3,
            k_neighbors=20,
            num_random=5,
        )
        assert result.top_drop > result.random_drop
        again = landmark_removal_test(
            backbone,
            x,
            reference,
            reference_labels,
            top=3,
            k_neighbors=20,
            num_random=5,
        )
        assert again.random_drop == result.random_drop

    def test_landmark_removal_test__bad_arguments_raise(self) -> None:
        backbone, _ = _backbone()
        reference, reference_labels = _clusters(20, seed=4)
        x, _ = _clusters(3, seed=5)
        for kwargs, match in (
            ({"top": 0}, "top"),
            ({"top": M + 1}, "top"),
            ({"k_neighbors": 21}, "k_neighbors"),
            ({"num_random": 0}, "num_random"),
            ({"temperature": 0.0}, "temperature"),
        ):
            with pytest.raises(ValueError, match=match):
                landmark_removal_test(
                    backbone,
                    x,
                    reference,
                    reference_labels,
                    **{"k_neighbors": 10, **kwargs},  # type: ignore[arg-type]
                )
        with pytest.raises(ValueError, match=r"shape \(20,\)"):
            landmark_removal_test(
                backbone, x, reference, reference_labels[:5], k_neighbors=10
            )
        bad = reference.clone()
        bad[0, 0] = float("nan")
        with pytest.raises(ValueError, match="NaN or infinite"):
            landmark_removal_test(backbone, x, bad, reference_labels, k_neighbors=10)
