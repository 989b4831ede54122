from __future__ import annotations

import pytest
import torch
from captum.influence import DataInfluence
from lightly.loss import NTXentLoss
from scipy.stats import spearmanr
from torch import Tensor

from lightly_krepes.attribution import CounterfactualInfluence, RepresenterInfluence
from lightly_krepes.audit import AuditObjective, AuditResult, audit, restricted_step
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF

M, H, DAMPING = 16, 3, 10.0


def _setup() -> tuple[AuditResult, list[Tensor], Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=generator, dtype=torch.float64)
    views = [
        x + 0.3 * torch.randn(x.shape, generator=generator, dtype=x.dtype),
        x + 0.3 * torch.randn(x.shape, generator=generator, dtype=x.dtype),
    ]
    backbone = KernelBackbone(RBF(2.0), x[:M], out_dim=H)
    result = audit(
        backbone, NTXentLoss(), views, damping=DAMPING, batch_size=48, progress=False
    )
    return result, views, x


Setup = tuple[AuditResult, list[Tensor], Tensor, CounterfactualInfluence]


@pytest.fixture(scope="module")
def setup() -> Setup:
    result, views, x = _setup()
    influence = CounterfactualInfluence(
        result, NTXentLoss(), views, num_subsets=48, batch_size=48, progress=False
    )
    return result, views, x, influence


class TestCounterfactualInfluence:
    def test_influence__is_a_captum_data_influence(self, setup: Setup) -> None:
        *_, influence = setup
        assert isinstance(influence, DataInfluence)

    def test_subsets__every_landmark_in_exactly_half(self, setup: Setup) -> None:
        *_, influence = setup
        assert influence.subsets.shape == (48, M)
        assert torch.equal(influence.subsets.sum(0), torch.full((M,), 24))
        assert torch.equal(influence.subsets[0::2], ~influence.subsets[1::2])

    def test_influence__is_the_banzhaf_difference_of_the_restricted_steps(
        self, setup: Setup
    ) -> None:
        result, views, x, influence = setup
        scores = influence.influence(x[:5])
        values = influence.compute_intermediate_quantities(x[:5])
        j = 3
        inside = influence.subsets[:, j]
        expected = values[:, inside].mean(1) - values[:, ~inside].mean(1)
        assert torch.allclose(scores[:, j], expected)
        # y_S(x) is the restricted step's change along the full step's direction.
        objective = AuditObjective(
            result.backbone,
            NTXentLoss(),
            [tuple(v[i : i + 48] for v in views) for i in (0, 48)],
            progress=False,
        )
        step = restricted_step(objective, DAMPING, influence.subsets[0])
        kernel = result.audited.nystrom.landmark_kernel(x[:5]).double()
        direction = torch.nn.functional.normalize(
            kernel @ result.step.delta_alpha.double(), dim=1
        )
        assert torch.allclose(values[:, 0], ((kernel @ step) * direction).sum(1))

    def test_influence__predicts_held_out_restricted_steps_better_than_terms(
        self, setup: Setup
    ) -> None:
        # The linear datamodeling check on halves the values were not fitted on.
        result, views, x, influence = setup
        held_out = CounterfactualInfluence(
            result,
            NTXentLoss(),
            views,
            num_subsets=16,
            batch_size=48,
            seed=7,
            progress=False,
        )
        points = x[48:80]
        measured = held_out.compute_intermediate_quantities(points).T  # (J, n)
        masks = held_out.subsets.double()

        def lds(scores: Tensor) -> float:
            predicted = masks @ scores.T
            centred_m = measured - measured.mean(1, keepdim=True)
            centred_p = predicted - predicted.mean(1, keepdim=True)
            return (
                sum(
                    float(spearmanr(centred_m[:, i], centred_p[:, i]).statistic)
                    for i in range(points.shape[0])
                )
                / points.shape[0]
            )

        banzhaf = lds(influence.influence(points))
        terms = lds(
            RepresenterInfluence(result.audited, weights=result.step.delta_alpha)
            .expansion.scores(points)
            .double()
        )
        assert banzhaf > 0.3
        assert banzhaf > terms

    def test_influence__top_k_and_deterministic(self, setup: Setup) -> None:
        result, views, x, influence = setup
        top = influence.influence(x[:4], k=3)
        scores = influence.influence(x[:4])
        assert torch.equal(top.indices, scores.topk(3, dim=1).indices)
        again = CounterfactualInfluence(
            result, NTXentLoss(), views, num_subsets=48, batch_size=48, progress=False
        )
        assert torch.equal(again.influence(x[:4]), scores)
        assert influence.self_influence().shape == (M,)

    def test_influence__bad_arguments_raise(self, setup: Setup) -> None:
        result, views, x, influence = setup
        with pytest.raises(ValueError, match="even"):
            CounterfactualInfluence(result, NTXentLoss(), views, num_subsets=3)
        with pytest.raises(TypeError, match="AuditResult"):
            CounterfactualInfluence(result.audited, NTXentLoss(), views)  # type: ignore[arg-type]
        bad = x[:2].clone()
        bad[0, 0] = float("nan")
        with pytest.raises(ValueError, match=r"NaN|finite"):
            influence.influence(bad)
        with pytest.raises(ValueError, match="k must be"):
            influence.influence(x[:2], k=M + 1)
        with pytest.raises(ValueError, match=r"self_influence"):
            influence.self_influence(x[:2])  # type: ignore[arg-type]
