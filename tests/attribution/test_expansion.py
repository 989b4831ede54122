from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from lightly_krepes.attribution import (
    Dimension,
    Direction,
    LandmarkExpansion,
    Similarity,
    as_expansion,
)
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF, EmpiricalNTK, Normalized

M, H, D = 12, 4, 3


def _data(n: int, seed: int, d: int = D) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64)


def _backbone(seed: int = 1) -> KernelBackbone:
    backbone = KernelBackbone(RBF(1.5), _data(M, seed=0), out_dim=H)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        backbone.linear.weight.normal_(generator=generator)
        assert backbone.linear.bias is not None
        backbone.linear.bias.normal_(generator=generator)
    return backbone


def _gram(backbone: KernelBackbone) -> Tensor:
    gram = backbone.nystrom.landmark_kernel(backbone.landmarks).double()
    return 0.5 * (gram + gram.T)


class TestLandmarkExpansion:
    def test_outputs__raw_plain_expansion_is_the_backbone(self) -> None:
        backbone = _backbone()
        expansion = LandmarkExpansion(backbone, regularize=False, center=False)
        x = _data(6, seed=2)
        with torch.no_grad():
            torch.testing.assert_close(expansion.outputs(x), backbone(x))
            torch.testing.assert_close(
                expansion.contributions(x), backbone.contributions(x)
            )
        assert expansion.refit.eta == 0.0
        assert expansion.refit.cancellation == expansion.refit.cancellation_raw

    def test_offset__centring_is_an_exact_rewrite(self) -> None:
        backbone = _backbone()
        expansion = LandmarkExpansion(backbone, regularize=False)
        x = _data(6, seed=2)
        with torch.no_grad():
            torch.testing.assert_close(expansion.outputs(x), backbone(x))
            # f_0 is the representation of the average landmark kernel row.
            torch.testing.assert_close(
                expansion.offset, backbone(backbone.landmarks).mean(0)
            )
            mu = _gram(backbone).mean(0)
            torch.testing.assert_close(expansion.reference_row, mu)
            torch.testing.assert_close(
                expansion.rows(x), backbone.nystrom.landmark_kernel(x) - mu
            )

    @given(
        seed=st.integers(0, 500), which=st.sampled_from(["own", "dim", "dir", "sim"])
    )
    def test_scores__add_up_to_the_scalarised_output(
        self, seed: int, which: str
    ) -> None:
        expansion = LandmarkExpansion(_backbone(seed % 7 + 1), eta=1e-3)
        x = _data(5, seed=seed)
        v = _data(1, seed=seed + 1, d=H)[0]
        target: Any = {
            "own": None,
            "dim": Dimension(seed % H),
            "dir": Direction(v),
            "sim": Similarity(v),
        }[which]
        scores = expansion.scores(x, target)
        outputs = expansion.outputs(x)
        vectors = expansion.target_vectors(target, x)
        torch.testing.assert_close(
            scores.sum(1) + (expansion.offset * vectors).sum(1),
            (outputs * vectors).sum(1),
        )
        if target is None:
            built = (outputs - expansion.offset).norm(dim=1)
            torch.testing.assert_close(scores.sum(1), built)

    def test_refit__fixed_eta_is_the_ridge_solve(self) -> None:
        backbone = _backbone()
        eta = 1e-2
        expansion = LandmarkExpansion(backbone, eta=eta)
        gram = _gram(backbone)
        lam_1 = float(torch.linalg.eigvalsh(gram).max())
        alpha = backbone.representer_weights.detach()
        expected = torch.linalg.solve(gram + eta * lam_1 * torch.eye(M), gram @ alpha)
        torch.testing.assert_close(expansion.weights, expected)
        torch.testing.assert_close(expansion.raw_weights, alpha)
        assert expansion.refit.eta == eta

    def test_refit__chooses_largest_faithful_eta(self) -> None:
        backbone = _backbone()
        inputs = _data(40, seed=3)
        etas = [1e-6, 1e-4, 1e-2, 1.0]
        for min_fidelity in (0.9, 0.99, 0.999):
            refit = LandmarkExpansion(
                backbone, inputs=inputs, etas=etas, min_fidelity=min_fidelity
            ).refit
            assert [eta for eta, _ in refit.grid] == etas
            faithful = [eta for eta, fid in refit.grid if fid >= min_fidelity]
            assert refit.eta == max(faithful, default=0.0)
            assert refit.held_out and refit.num_inputs == 20
        fidelities = [fid for _, fid in refit.grid]
        assert fidelities == sorted(fidelities, reverse=True)

    def test_refit__lowers_cancellation_and_stays_faithful(self) -> None:
        backbone = _backbone()
        inputs = _data(200, seed=3)
        expansion = LandmarkExpansion(backbone, inputs=inputs, center=False)
        refit = expansion.refit
        assert refit.eta > 0
        assert refit.cancellation < 0.9 * refit.cancellation_raw
        # Reported on the held-out half, which did not choose eta.
        assert refit.fidelity > 0.97
        assert expansion.fidelity(_data(100, seed=4)) > 0.97

    def test_center__auto_takes_the_least_cancelling_reference(self) -> None:
        x = _data(40, seed=3)
        for lengthscale, expected in ((30.0, "landmark mean"), (0.5, "none")):
            backbone = KernelBackbone(RBF(lengthscale), _data(M, seed=0), out_dim=H)
            auto = LandmarkExpansion(backbone, inputs=x)
            assert auto.refit.reference == expected
            ratios = {
                center: LandmarkExpansion(
                    backbone, inputs=x, center=center
                ).refit.cancellation
                for center in (False, True)
            }
            assert auto.refit.cancellation == pytest.approx(min(ratios.values()))
        given = LandmarkExpansion(backbone, center=torch.full((M,), 0.1).double())
        assert given.refit.reference == "given"
        assert torch.equal(given.reference_row, torch.full((M,), 0.1).double())

    def test_refit__without_inputs_uses_landmarks(self) -> None:
        refit = LandmarkExpansion(_backbone()).refit
        assert not refit.held_out
        assert refit.num_inputs == M
        assert refit.min_fidelity == 0.99

    def test_fidelity__reproduces_refit_on_the_same_inputs(self) -> None:
        inputs = _data(30, seed=3)
        expansion = LandmarkExpansion(_backbone(), eta=1e-3, inputs=inputs)
        assert expansion.refit.fidelity == pytest.approx(expansion.fidelity(inputs))

    def test_weights__step_expansion_has_no_offset_and_same_filter(self) -> None:
        backbone = _backbone()
        delta = _data(M, seed=7, d=H)
        x = _data(5, seed=2)
        raw = LandmarkExpansion(backbone, delta, regularize=False, center=False)
        rows = backbone.nystrom.landmark_kernel(x)
        torch.testing.assert_close(raw.outputs(x), rows @ delta)
        assert torch.equal(raw.offset, torch.zeros(H, dtype=torch.float64))
        filtered = LandmarkExpansion(backbone, delta, eta=1e-2)
        own = LandmarkExpansion(backbone, eta=1e-2)
        # One linear filter for alpha and Delta alpha alike.
        gram = _gram(backbone)
        lam_1 = float(torch.linalg.eigvalsh(gram).max())
        filt = torch.linalg.solve(gram + 1e-2 * lam_1 * torch.eye(M), gram)
        torch.testing.assert_close(filtered.weights, filt @ delta)
        torch.testing.assert_close(own.weights, filt @ own.raw_weights)
        torch.testing.assert_close(
            filtered.offset, filtered.reference_row @ filtered.weights
        )
        biased = LandmarkExpansion(backbone, delta, torch.ones(H).double())
        torch.testing.assert_close(
            biased.offset, 1.0 + biased.reference_row @ biased.weights
        )

    def test_outputs__remove_keep_and_mask_agree(self) -> None:
        expansion = LandmarkExpansion(_backbone(), eta=1e-3)
        x = _data(4, seed=2)
        rows = expansion.rows(x)
        remove = torch.tensor([[0, 3], [1, 2], [5, 11], [4, 4]])
        mask = torch.ones(4, M, dtype=torch.float64).scatter(1, remove, 0.0)
        removed = expansion.outputs(rows=rows, remove=remove)
        torch.testing.assert_close(removed, expansion.outputs(rows=rows, mask=mask))
        terms = expansion.contributions(rows=rows)
        expected = expansion.outputs(rows=rows) - (terms * (1 - mask)[:, :, None]).sum(
            1
        )
        torch.testing.assert_close(removed, expected)
        keep = torch.arange(3)
        kept = expansion.outputs(rows=rows, keep=keep)
        torch.testing.assert_close(kept, terms[:, :3].sum(1) + expansion.offset)
        shared = torch.zeros(M, dtype=torch.float64)
        torch.testing.assert_close(
            expansion.outputs(x, mask=shared), expansion.offset.expand(4, H)
        )

    @given(batch_size=st.integers(1, 15))
    def test_rows__do_not_depend_on_batching(self, batch_size: int) -> None:
        backbone = _backbone()
        x = _data(13, seed=5)
        full = LandmarkExpansion(backbone, eta=1e-3).scores(x)
        batched = LandmarkExpansion(backbone, eta=1e-3, batch_size=batch_size)
        torch.testing.assert_close(batched.scores(x), full, rtol=1e-12, atol=1e-12)

    def test_coefficients__times_rows_are_scores_for_shared_targets(self) -> None:
        expansion = LandmarkExpansion(_backbone(), eta=1e-3)
        x = _data(5, seed=2)
        rows = expansion.rows(x)
        for target in (2, Direction(_data(1, 9, d=H)[0])):
            torch.testing.assert_close(
                rows * expansion.coefficients(target), expansion.scores(x, target)
            )
        with pytest.raises(ValueError, match="depends on the input"):
            expansion.coefficients(None)

    def test_sample_specific_influence__paper_formula_on_raw_kernel(self) -> None:
        backbone = _backbone()
        expansion = LandmarkExpansion(backbone, eta=1e-3)
        x = _data(5, seed=2)
        expected = backbone.nystrom.landmark_kernel(x).abs() * expansion.weights.norm(
            dim=1
        )
        torch.testing.assert_close(expansion.sample_specific_influence(x), expected)

    def test_cancellation__is_at_least_one(self) -> None:
        expansion = LandmarkExpansion(_backbone())
        ratio = expansion.cancellation(_data(20, seed=2))
        assert ratio.shape == (20,)
        assert bool((ratio >= 1 - 1e-12).all())

    def test_top__contrast_ranks_by_score_alone(self) -> None:
        expansion = LandmarkExpansion(_backbone())
        x = _data(6, seed=2)
        scores = expansion.scores(x)
        top = expansion.top(x, 4, contrast=True)
        torch.testing.assert_close(
            top.influence_scores, scores.sort(1, descending=True).values[:, :4]
        )
        low = expansion.top(x, 4, proponents=False, contrast=True)
        torch.testing.assert_close(low.influence_scores[:, 0], scores.min(1).values)

    @given(seed=st.integers(0, 1_000), k=st.integers(1, M))
    def test_top__similar_landmarks_first_then_by_score(
        self, seed: int, k: int
    ) -> None:
        expansion = LandmarkExpansion(_backbone(seed % 7), center=True)
        x = _data(5, seed=seed)
        rows = expansion.rows(x)
        scores = expansion.scores(rows=rows)
        for proponents in (True, False):
            top = expansion.top(x, k, proponents=proponents)
            key = scores if proponents else -scores
            for i in range(x.shape[0]):
                similar = rows[i] > 0
                expected = torch.cat(
                    [
                        torch.nonzero(similar)[:, 0][
                            key[i][similar].argsort(descending=True, stable=True)
                        ],
                        torch.nonzero(~similar)[:, 0][
                            key[i][~similar].argsort(descending=True, stable=True)
                        ],
                    ]
                )[:k]
                chosen = top.indices[i]
                # Ties in score may swap places; compare the scores and groups.
                torch.testing.assert_close(top.influence_scores[i], scores[i][expected])
                assert torch.equal(similar[chosen], similar[expected])

    def test_top__contrast_terms_can_outrank_without_the_rule(self) -> None:
        # A landmark far from x (centred row < 0) whose weight points away from
        # f(x) scores positive; by default it is not x's top landmark.
        expansion = LandmarkExpansion(_backbone(), center=True)
        x = _data(200, seed=3)
        rows = expansion.rows(x)
        plain = expansion.top(x, 1, contrast=True).indices[:, 0]
        ruled = expansion.top(x, 1).indices[:, 0]
        picked = rows.gather(1, plain[:, None])[:, 0]
        assert bool((picked <= 0).any()), "the fixture has no contrast top-1 term"
        has_similar = (rows > 0).any(1)
        assert bool((rows.gather(1, ruled[:, None])[:, 0] > 0)[has_similar].all())

    def test_rows__differentiable_in_the_inputs(self) -> None:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 2)).double()
        backbone = KernelBackbone(Normalized(EmpiricalNTK(net.eval())), _data(M, 0), 3)
        expansion = LandmarkExpansion(backbone)
        x = _data(3, seed=2).requires_grad_(True)
        expansion.scores(x).sum().backward()
        assert x.grad is not None and bool(x.grad.abs().sum() > 0)

    def test_as_expansion__wraps_backbones_and_refuses_double_weights(self) -> None:
        backbone = _backbone()
        expansion = LandmarkExpansion(backbone)
        assert as_expansion(expansion) is expansion
        assert isinstance(as_expansion(backbone), LandmarkExpansion)
        with pytest.raises(ValueError, match="already a LandmarkExpansion"):
            as_expansion(expansion, torch.ones(M, H).double())
        with pytest.raises(TypeError, match="KernelBackbone or a LandmarkExpansion"):
            as_expansion(nn.Linear(2, 2))  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"weights": torch.ones(M, H + 1).double()}, ValueError, r"shape \(m, h\)"),
            ({"weights": torch.full((M, H), float("nan"))}, ValueError, "NaN"),
            ({"bias": torch.ones(H + 1).double()}, ValueError, "bias must have shape"),
            ({"eta": 0.0}, ValueError, "positive relative ridge"),
            ({"eta": -1e-3}, ValueError, "positive relative ridge"),
            ({"eta": float("inf")}, ValueError, "positive relative ridge"),
            ({"etas": [1e-3, 0.0]}, ValueError, "positive relative ridge"),
            ({"etas": []}, ValueError, "etas is empty"),
            ({"min_fidelity": 0.0}, ValueError, "min_fidelity"),
            ({"min_fidelity": 1.5}, ValueError, "min_fidelity"),
            ({"eta": 1e-3, "regularize": False}, ValueError, "regularize=False"),
            ({"inputs": _data(3, seed=1)}, ValueError, "at least 4 samples"),
            ({"inputs": _data(8, seed=1, d=D + 1)}, ValueError, "shape"),
            ({"inputs": _data(8, seed=1).float()}, TypeError, "cast"),
            ({"center": torch.zeros(M + 1).double()}, ValueError, "center must be"),
            ({"center": "mean"}, ValueError, "center must be"),
            ({"batch_size": 0}, ValueError, "batch_size"),
        ],
    )
    def test_init__bad_arguments_raise(
        self, kwargs: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        with pytest.raises(error, match=match):
            LandmarkExpansion(_backbone(), **kwargs)

    def test_methods__bad_arguments_raise(self) -> None:
        expansion = LandmarkExpansion(_backbone())
        x = _data(4, seed=2)
        rows = expansion.rows(x)
        with pytest.raises(ValueError, match="exactly one of x"):
            expansion.outputs()
        with pytest.raises(ValueError, match="exactly one of x"):
            expansion.outputs(x, rows=rows)
        with pytest.raises(ValueError, match=r"rows must have shape \(n, m\)"):
            expansion.scores(rows=rows[:, :-1])
        with pytest.raises(ValueError, match="mask must have shape"):
            expansion.outputs(x, mask=torch.ones(M + 1).double())
        with pytest.raises(ValueError, match="outside"):
            expansion.outputs(x, remove=torch.tensor([M]))
        with pytest.raises(ValueError, match="at most one"):
            expansion.outputs(x, remove=torch.tensor([0]), keep=torch.tensor([1]))
        with pytest.raises(ValueError, match="k must be an integer between 1"):
            expansion.top(x, M + 1)
        with pytest.raises(TypeError, match="Unknown target"):
            expansion.scores(x, "own")
        with pytest.raises(ValueError, match="one dimension per input"):
            expansion.scores(x, [0, 1])
        bad = x.clone()
        bad[0, 0] = float("nan")
        with pytest.raises(ValueError, match="NaN or infinite"):
            expansion.rows(bad)
        with pytest.raises(ValueError, match="empty"):
            expansion.rows(x[:0])
