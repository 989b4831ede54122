from __future__ import annotations

from typing import Any

import pytest
import torch
from captum.influence import DataInfluence
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightly_krepes.attribution import (
    Direction,
    LandmarkExpansion,
    RepresenterInfluence,
    Similarity,
)
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF, EmpiricalNTK, Kernel, Linear

M, H, D = 12, 4, 3


def _data(n: int, seed: int, d: int = D) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64)


def _randomise(backbone: KernelBackbone, seed: int = 1) -> KernelBackbone:
    """Moves A and gamma away from the PCA initialisation."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = backbone.linear.weight
        weight.copy_(torch.randn(weight.shape, generator=generator, dtype=weight.dtype))
        bias = backbone.linear.bias
        assert bias is not None
        bias.copy_(torch.randn(bias.shape, generator=generator, dtype=bias.dtype))
    return backbone


def _backbone(
    kernel: Kernel | None = None, landmarks: Tensor | None = None, out_dim: int = H
) -> KernelBackbone:
    kernel = RBF(1.5) if kernel is None else kernel
    landmarks = _data(M, seed=0) if landmarks is None else landmarks
    return _randomise(KernelBackbone(kernel, landmarks, out_dim=out_dim))


def _entk_backbone() -> KernelBackbone:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 2)).double().eval()
    return _randomise(KernelBackbone(EmpiricalNTK(net), _data(M, seed=0), out_dim=H))


def _weights(seed: int) -> Tensor:
    return _data(M, seed=seed, d=H)


class TestRepresenterInfluence:
    def test_influence__is_a_captum_data_influence(self) -> None:
        influence = RepresenterInfluence(_backbone())
        assert isinstance(influence, DataInfluence)
        assert influence.get_name() == "RepresenterInfluence"
        assert influence.train_dataset.shape == (M, D)
        assert influence.model is influence.backbone

    def test_weights__default_is_the_ridge_refit_expansion(self) -> None:
        backbone = _backbone()
        influence = RepresenterInfluence(backbone)
        expected = LandmarkExpansion(backbone)
        torch.testing.assert_close(influence.weights, expected.weights)
        assert influence.refit == expected.refit
        assert influence.weights.shape == (M, H)
        assert influence.refit.fidelity >= 0.99

    def test_influence__default_is_what_builds_x(self) -> None:
        influence = RepresenterInfluence(_backbone())
        x = _data(7, seed=5)
        scores = influence.influence(x)
        assert isinstance(scores, Tensor)
        expansion = influence.expansion
        torch.testing.assert_close(scores, expansion.scores(x))
        built = (expansion.outputs(x) - expansion.offset).norm(dim=1)
        torch.testing.assert_close(scores.sum(1), built)
        top = influence.influence(x, k=3)
        assert not isinstance(top, Tensor)
        torch.testing.assert_close(top.indices, expansion.top(x, 3).indices)

    @pytest.mark.parametrize("kind", ["rbf", "linear", "entk"])
    def test_influence__raw_expansion_equals_contributions(self, kind: str) -> None:
        backbone = {
            "rbf": _backbone,
            "linear": lambda: _backbone(Linear(), out_dim=D),
            "entk": _entk_backbone,
        }[kind]()
        expansion = LandmarkExpansion(backbone, regularize=False, center=False)
        x = _data(7, seed=5)
        influence = RepresenterInfluence(expansion)
        contributions = backbone.contributions(x).detach()
        bias = backbone.linear.bias.detach()
        output = backbone(x).detach()
        for t in range(backbone.out_dim):
            scores = influence.influence(x, target=t)
            assert isinstance(scores, Tensor)
            torch.testing.assert_close(scores, contributions[:, :, t])
            torch.testing.assert_close(scores.sum(1) + bias[t], output[:, t])

    def test_influence__direction_similarity_and_per_sample_targets(self) -> None:
        influence = RepresenterInfluence(_backbone())
        x = _data(5, seed=5)
        terms = influence.expansion.contributions(x)
        v = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
        expected = terms @ v
        torch.testing.assert_close(
            influence.influence(x, target=Direction(v)), expected
        )
        torch.testing.assert_close(influence.influence(x, target=v), expected)
        torch.testing.assert_close(
            influence.influence(x, target=Similarity(2.0 * v)),
            terms @ (v / v.norm()),
        )
        per_sample = [0, 3, 1, 1, 2]
        expected_per_sample = terms[torch.arange(5), :, per_sample]
        torch.testing.assert_close(
            influence.influence(x, target=per_sample), expected_per_sample
        )
        torch.testing.assert_close(
            influence.influence(x, target=torch.tensor(per_sample)), expected_per_sample
        )
        directions = _data(5, seed=9, d=H)
        torch.testing.assert_close(
            influence.influence(x, target=Direction(directions)),
            torch.einsum("bmh,bh->bm", terms, directions),
        )

    def test_influence__step_weights_explain_the_step(self) -> None:
        backbone = _backbone()
        x = _data(4, seed=5)
        weights = _weights(3)
        step = RepresenterInfluence(backbone, weights)
        torch.testing.assert_close(
            step.weights, LandmarkExpansion(backbone, weights).weights
        )
        scores = step.influence(x)
        assert isinstance(scores, Tensor)
        # v = Delta f(x) / |Delta f(x)|: the scores add up to |Delta f(x) - f_0|.
        expansion = step.expansion
        torch.testing.assert_close(
            scores.sum(1), (expansion.outputs(x) - expansion.offset).norm(dim=1)
        )
        raw = RepresenterInfluence(
            LandmarkExpansion(backbone, weights, regularize=False, center=False)
        )
        rows = backbone.nystrom.landmark_kernel(x)
        torch.testing.assert_close(raw.influence(x, target=2), rows * weights[:, 2])

    @given(
        a=st.floats(-3.0, 3.0, allow_nan=False),
        b=st.floats(-3.0, 3.0, allow_nan=False),
        seed=st.integers(0, 1000),
    )
    def test_influence__linear_in_weights_at_a_fixed_ridge(
        self, a: float, b: float, seed: int
    ) -> None:
        backbone = _backbone()
        x = _data(4, seed=seed)
        w1, w2 = _weights(seed + 1), _weights(seed + 2)
        v = _data(1, seed=seed + 3, d=H)[0]

        def scores(w: Tensor) -> Tensor:
            # A fixed ridge and reference row: then the scores are linear in w.
            expansion = LandmarkExpansion(backbone, w, eta=1e-3, center=True)
            out = RepresenterInfluence(expansion).influence(x, target=Direction(v))
            assert isinstance(out, Tensor)
            return out

        torch.testing.assert_close(
            scores(a * w1 + b * w2), a * scores(w1) + b * scores(w2)
        )

    def test_influence__permuting_landmarks_permutes_scores(self) -> None:
        landmarks = _data(M, seed=0)
        perm = torch.randperm(M, generator=torch.Generator().manual_seed(0))
        first, second = (
            _backbone(RBF(1.5), landmarks),
            _backbone(RBF(1.5), landmarks[perm]),
        )
        weights = _weights(3)
        x = _data(5, seed=5)
        scores = RepresenterInfluence(first, weights).influence(x)
        permuted = RepresenterInfluence(second, weights[perm]).influence(x)
        assert isinstance(scores, Tensor)
        torch.testing.assert_close(permuted, scores[:, perm])

    def test_self_influence__is_diagonal_of_landmark_influence(self) -> None:
        influence = RepresenterInfluence(_backbone())
        landmarks = influence.backbone.landmarks
        for target in (None, 2, Direction(_weights(4)[0])):
            full = influence.influence(landmarks, target=target)
            assert isinstance(full, Tensor)
            torch.testing.assert_close(
                influence.self_influence(target=target), full.diagonal()
            )

    @pytest.mark.parametrize("proponents", [True, False])
    def test_influence__top_k_is_top_k_of_full_matrix(self, proponents: bool) -> None:
        influence = RepresenterInfluence(_backbone())
        x = _data(6, seed=5)
        full = influence.influence(x)
        top = influence.influence(x, k=4, proponents=proponents)
        assert isinstance(full, Tensor)
        assert not isinstance(top, Tensor)
        assert top.indices.shape == top.influence_scores.shape == (6, 4)
        torch.testing.assert_close(full.gather(1, top.indices), top.influence_scores)
        # The expansion's ranking: landmarks more similar to x than the
        # reference first, each group by score.
        expected = influence.expansion.top(x, 4, proponents=proponents)
        assert torch.equal(top.indices, expected.indices)
        similar = influence.expansion.rows(x) > 0
        for i in range(x.shape[0]):
            first = similar[i][top.indices[i]]
            # Once a dissimilar landmark appears, no similar one follows.
            assert bool((first[:-1].int() >= first[1:].int()).all())
            ordered = top.influence_scores[i][first]
            assert torch.equal(ordered, ordered.sort(descending=proponents).values)

    def test_influence__accepts_tuples_and_loaders(self) -> None:
        influence = RepresenterInfluence(_backbone())
        x = _data(9, seed=5)
        labels = torch.zeros(9, dtype=torch.long)
        full = influence.influence(x)
        loader = DataLoader(TensorDataset(x, labels), batch_size=4)
        for inputs in ((x,), (x, labels), loader):
            torch.testing.assert_close(influence.influence(inputs), full)

    def test_compute_intermediate_quantities__dot_products_are_scores(self) -> None:
        influence = RepresenterInfluence(_backbone(), _weights(2))
        x = _data(5, seed=5)
        test_side = influence.compute_intermediate_quantities(x)
        assert test_side.shape == (5, M)
        for target in (0, Direction(_weights(3)[1])):
            landmark_side = influence.landmark_quantities(target)
            assert landmark_side.shape == (M, M)
            torch.testing.assert_close(
                test_side @ landmark_side.T, influence.influence(x, target=target)
            )

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"target": H}, ValueError, "out of range"),
            ({"target": -1}, ValueError, "out of range"),
            ({"target": True}, TypeError, "bool"),
            ({"target": "dim"}, TypeError, "Unknown target"),
            ({"target": torch.ones(H + 1, dtype=torch.float64)}, ValueError, "shape"),
            (
                {"target": Direction(torch.ones(2, dtype=torch.float64))},
                ValueError,
                "shape",
            ),
            (
                {"target": Similarity(torch.zeros(H, dtype=torch.float64))},
                ValueError,
                "zero",
            ),
            ({"target": [0, 1]}, ValueError, "one dimension per input"),
            ({"target": torch.ones(3, H, dtype=torch.float64)}, ValueError, "shape"),
            ({"k": 0}, ValueError, "k must"),
            ({"k": M + 1}, ValueError, "k must"),
            ({"k": 2.5}, ValueError, "k must"),
        ],
    )
    def test_influence__bad_arguments_raise(
        self, kwargs: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        influence = RepresenterInfluence(_backbone())
        with pytest.raises(error, match=match):
            influence.influence(_data(5, seed=5), **kwargs)

    def test_influence__bad_inputs_raise(self) -> None:
        backbone = _backbone()
        influence = RepresenterInfluence(backbone)
        x = _data(5, seed=5)
        bad = x.clone()
        bad[1, 0] = float("nan")
        with pytest.raises(ValueError, match="NaN or infinite"):
            influence.influence(bad)
        bad[1, 0] = float("inf")
        with pytest.raises(ValueError, match="NaN or infinite"):
            influence.influence(bad)
        with pytest.raises(ValueError, match="shape"):
            influence.influence(_data(5, seed=5, d=D + 1))
        with pytest.raises(TypeError, match="cast"):
            influence.influence(x.float())
        with pytest.raises(ValueError, match=r"\(x,\) or \(x, labels\)"):
            influence.influence((x, x, x))
        with pytest.raises(ValueError, match="inputs=None"):
            influence.self_influence(x)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="depends on the input"):
            influence.landmark_quantities(None)
        with pytest.raises(ValueError, match="depends on the input"):
            influence.landmark_quantities(
                Direction(torch.ones(2, H, dtype=torch.float64))
            )
        with pytest.raises(ValueError, match=r"weights must have shape \(m, h\)"):
            RepresenterInfluence(backbone, torch.ones(M, H + 1, dtype=torch.float64))
        with pytest.raises(ValueError, match="NaN or infinite"):
            RepresenterInfluence(backbone, torch.full((M, H), float("nan")))
        with pytest.raises(TypeError, match="KernelBackbone"):
            RepresenterInfluence(nn.Linear(3, 4))  # type: ignore[arg-type]
