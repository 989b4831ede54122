from __future__ import annotations

from typing import Any

import pytest
import torch
from captum.influence import DataInfluence
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightly_krepes.attribution import Direction, RepresenterInfluence, Similarity
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

    @pytest.mark.parametrize("kind", ["rbf", "linear", "entk"])
    def test_influence__equals_contributions_and_completes_output(
        self, kind: str
    ) -> None:
        backbone = {
            "rbf": _backbone,
            "linear": lambda: _backbone(Linear(), out_dim=D),
            "entk": _entk_backbone,
        }[kind]()
        x = _data(7, seed=5)
        influence = RepresenterInfluence(backbone)
        contributions = backbone.contributions(x).detach()
        bias = backbone.linear.bias.detach()
        output = backbone(x).detach()
        for t in range(backbone.out_dim):
            scores = influence.influence(x, target=t)
            assert isinstance(scores, Tensor)
            torch.testing.assert_close(scores, contributions[:, :, t])
            torch.testing.assert_close(scores.sum(1) + bias[t], output[:, t])

    def test_influence__direction_similarity_and_per_sample_targets(self) -> None:
        backbone = _backbone()
        x = _data(5, seed=5)
        influence = RepresenterInfluence(backbone)
        contributions = backbone.contributions(x).detach()
        v = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
        expected = contributions @ v
        torch.testing.assert_close(
            influence.influence(x, target=Direction(v)), expected
        )
        torch.testing.assert_close(influence.influence(x, target=v), expected)
        reference = 2.0 * v
        torch.testing.assert_close(
            influence.influence(x, target=Similarity(reference)),
            contributions @ (v / v.norm()),
        )
        per_sample = [0, 3, 1, 1, 2]
        expected_per_sample = contributions[torch.arange(5), :, per_sample]
        torch.testing.assert_close(
            influence.influence(x, target=per_sample), expected_per_sample
        )
        torch.testing.assert_close(
            influence.influence(x, target=torch.tensor(per_sample)), expected_per_sample
        )
        directions = _data(5, seed=9, d=H)
        torch.testing.assert_close(
            influence.influence(x, target=Direction(directions)),
            torch.einsum("bmh,bh->bm", contributions, directions),
        )

    def test_influence__uses_given_weights(self) -> None:
        backbone = _backbone()
        x = _data(4, seed=5)
        weights = _weights(3)
        scores = RepresenterInfluence(backbone, weights).influence(x, target=2)
        rows = backbone.nystrom.kernel(x, backbone.landmarks)
        torch.testing.assert_close(scores, rows * weights[:, 2])
        default = RepresenterInfluence(backbone).influence(x, target=2)
        assert not torch.allclose(scores, default)

    @given(
        a=st.floats(-3.0, 3.0, allow_nan=False),
        b=st.floats(-3.0, 3.0, allow_nan=False),
        seed=st.integers(0, 1000),
    )
    def test_influence__linear_in_weights(self, a: float, b: float, seed: int) -> None:
        backbone = _backbone()
        x = _data(4, seed=seed)
        w1, w2 = _weights(seed + 1), _weights(seed + 2)
        v = _data(1, seed=seed + 3, d=H)[0]

        def scores(w: Tensor) -> Tensor:
            out = RepresenterInfluence(backbone, w).influence(x, target=Direction(v))
            assert isinstance(out, Tensor)
            return out

        torch.testing.assert_close(
            scores(a * w1 + b * w2), a * scores(w1) + b * scores(w2)
        )

    def test_influence__zero_weight_landmark_contributes_nothing(self) -> None:
        backbone = _backbone()
        weights = _weights(3)
        weights[4] = 0.0
        scores = RepresenterInfluence(backbone, weights).influence(
            _data(6, 5), target=1
        )
        assert isinstance(scores, Tensor)
        assert torch.all(scores[:, 4] == 0)
        assert torch.all(scores[:, 3] != 0)

    def test_influence__permuting_landmarks_permutes_scores(self) -> None:
        landmarks = _data(M, seed=0)
        perm = torch.randperm(M, generator=torch.Generator().manual_seed(0))
        first, second = (
            _backbone(RBF(1.5), landmarks),
            _backbone(RBF(1.5), landmarks[perm]),
        )
        weights = _weights(3)
        x = _data(5, seed=5)
        scores = RepresenterInfluence(first, weights).influence(
            x, target=Direction(weights[0])
        )
        permuted = RepresenterInfluence(second, weights[perm]).influence(
            x, target=Direction(weights[0])
        )
        assert isinstance(scores, Tensor)
        torch.testing.assert_close(permuted, scores[:, perm])

    def test_self_influence__is_diagonal_of_landmark_influence(self) -> None:
        influence = RepresenterInfluence(_backbone())
        landmarks = influence.backbone.landmarks
        for target in (2, Direction(_weights(4)[0])):
            full = influence.influence(landmarks, target=target)
            assert isinstance(full, Tensor)
            torch.testing.assert_close(
                influence.self_influence(target=target, batch_size=5), full.diagonal()
            )

    @pytest.mark.parametrize("proponents", [True, False])
    def test_influence__top_k_is_top_k_of_full_matrix(self, proponents: bool) -> None:
        influence = RepresenterInfluence(_backbone())
        x = _data(6, seed=5)
        full = influence.influence(x, target=1)
        top = influence.influence(x, k=4, proponents=proponents, target=1)
        assert isinstance(full, Tensor)
        assert not isinstance(top, Tensor)
        assert top.indices.shape == top.influence_scores.shape == (6, 4)
        torch.testing.assert_close(full.gather(1, top.indices), top.influence_scores)
        ordered = full.sort(dim=1, descending=proponents).values[:, :4]
        torch.testing.assert_close(top.influence_scores, ordered)
        if not proponents:  # opponents are the lowest, most negative scores
            assert torch.all(top.influence_scores[:, 0] == full.min(1).values)

    @given(batch_size=st.integers(1, 20))
    def test_influence__does_not_depend_on_batching(self, batch_size: int) -> None:
        influence = RepresenterInfluence(_backbone())
        x = _data(13, seed=5)
        full = influence.influence(x, target=Similarity(_weights(1)[0]))
        batched = influence.influence(
            x, target=Similarity(_weights(1)[0]), batch_size=batch_size
        )
        torch.testing.assert_close(batched, full, rtol=1e-12, atol=1e-12)

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
            ({"target": "dim"}, TypeError, "target"),
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
            ({"target": [0, 1]}, ValueError, "one entry per sample"),
            ({"target": torch.ones(3, H, dtype=torch.float64)}, ValueError, "shape"),
            ({"k": 0}, ValueError, "k must"),
            ({"k": M + 1}, ValueError, "k must"),
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
        with pytest.raises(ValueError, match="per-sample"):
            influence.landmark_quantities(
                Direction(torch.ones(2, H, dtype=torch.float64))
            )
        with pytest.raises(ValueError, match="weights must have shape"):
            RepresenterInfluence(backbone, torch.ones(M, H + 1, dtype=torch.float64))
        with pytest.raises(ValueError, match="NaN or infinite"):
            RepresenterInfluence(backbone, torch.full((M, H), float("nan")))
        with pytest.raises(TypeError, match="KernelBackbone"):
            RepresenterInfluence(nn.Linear(3, 4))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="batch_size"):
            influence.influence(x, batch_size=0)
