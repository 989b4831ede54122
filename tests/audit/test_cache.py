from __future__ import annotations

import functools

import pytest
import torch
from lightly.loss import NTXentLoss
from torch import Tensor, nn

from lightly_krepes.audit import (
    AuditCache,
    AuditRefit,
    SurrogateFit,
    audit,
    audit_refit,
    build_surrogate,
    landmark_gram,
)
from lightly_krepes.audit.surrogate import FitMethod
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF

DAMPING = 50.0


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 4)).double().eval()


def _data(n: int = 64) -> Tensor:
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(3)).double()


def _views(x: Tensor) -> list[Tensor]:
    gen = torch.Generator().manual_seed(4)
    noise = torch.randn((2, *x.shape), generator=gen, dtype=x.dtype)
    return [x + 0.2 * noise[0], x + 0.2 * noise[1]]


@functools.cache
def _setup(
    fit: FitMethod, bandwidth: float | None = None
) -> tuple[KernelBackbone, AuditCache]:
    x = _data()
    surrogate = build_surrogate(
        _mlp(), x, num_landmarks=20, fit=fit, bandwidth=bandwidth, progress=False
    )
    cache = AuditCache(
        surrogate,
        NTXentLoss(),
        _views(x),
        encoder=_mlp(),
        data=x,
        batch_size=32,
        progress=False,
    )
    return surrogate, cache


def _rebuilt(
    landmarks: Tensor,
    fit: FitMethod,
    penalty: float | None,
    bandwidth: float | None = None,
) -> tuple[KernelBackbone, Tensor, Tensor]:
    """The slow path: a fresh surrogate on the landmarks and its audit."""
    x = _data()
    surrogate = build_surrogate(
        _mlp(),
        x,
        landmarks=landmarks,
        fit=fit,
        penalty=penalty,
        bandwidth=bandwidth,
        progress=False,
    )
    result = audit(
        surrogate,
        NTXentLoss(),
        _views(x),
        damping=DAMPING,
        batch_size=32,
        progress=False,
    )
    with torch.no_grad():
        return surrogate, result.backbone(x), result.audited(x)


class TestAuditRefit:
    @pytest.mark.parametrize(
        ("fit", "bandwidth"),
        [("ridge", None), ("pc", None), ("ridge", 0.5), ("pc", 0.5)],
    )
    def test_audit_refit__equals_full_construction(
        self, fit: FitMethod, bandwidth: float | None
    ) -> None:
        # With a bandwidth the refit's kernel (an InducedRBF) is rebuilt with the
        # same length scale, so the cached path still equals the slow one.
        surrogate, cache = _setup(fit, bandwidth)
        keep = torch.tensor([3, 0, 17, 5, 9, 11, 12, 14, 19, 7, 2, 8])
        refit = audit_refit(cache, keep, damping=DAMPING)
        record = SurrogateFit.of(surrogate)
        assert record is not None
        penalty = None if record.ridge is None else record.ridge.penalty
        assert refit.penalty == penalty
        rebuilt, before, after = _rebuilt(
            surrogate.landmarks[keep], fit, penalty, bandwidth
        )
        rows = cache.kernel_rows(_data())
        assert refit.weights.shape == (12, 4)
        torch.testing.assert_close(
            refit.outputs(rows, audited=False), before, atol=1e-8, rtol=1e-6
        )
        torch.testing.assert_close(refit.outputs(rows), after, atol=1e-8, rtol=1e-6)
        assert refit.backbone.nystrom.rank == rebuilt.nystrom.rank
        torch.testing.assert_close(
            refit.backbone.nystrom.eigenvalues, rebuilt.nystrom.eigenvalues
        )
        # The step changed the surrogate: the comparison is not of two zeros.
        assert float((after - before).abs().max()) > 1e-3

    @pytest.mark.parametrize("fit", ["ridge", "pc"])
    def test_audit_refit__all_landmarks_equal_the_audit(self, fit: FitMethod) -> None:
        surrogate, cache = _setup(fit)
        x = _data()
        result = audit(
            surrogate,
            NTXentLoss(),
            _views(x),
            damping=DAMPING,
            batch_size=32,
            progress=False,
        )
        refit = audit_refit(cache, torch.arange(20), damping=DAMPING)
        torch.testing.assert_close(
            refit.step.delta_alpha, result.step.delta_alpha, atol=1e-8, rtol=1e-6
        )
        torch.testing.assert_close(
            refit.weights, result.audited.representer_weights, atol=1e-8, rtol=1e-6
        )
        with torch.no_grad():
            expected = result.audited(x)
        torch.testing.assert_close(
            refit.outputs(cache.kernel_rows(x)), expected, atol=1e-8, rtol=1e-6
        )

    def test_audit_refit__mask_and_penalty_options(self) -> None:
        surrogate, cache = _setup("ridge")
        mask = torch.zeros(20, dtype=torch.bool)
        mask[4:] = True
        by_mask = audit_refit(cache, mask, damping=DAMPING)
        by_index = audit_refit(cache, torch.arange(4, 20), damping=DAMPING)
        assert torch.equal(by_mask.keep, by_index.keep)
        assert torch.equal(by_mask.weights, by_index.weights)
        # GCV again on the subset equals a fresh build that selects its penalty.
        gcv = audit_refit(cache, torch.arange(4, 20), damping=DAMPING, penalty="gcv")
        assert gcv.ridge is not None and gcv.ridge.selected
        fresh = build_surrogate(
            _mlp(), _data(), landmarks=surrogate.landmarks[4:], progress=False
        )
        record = SurrogateFit.of(fresh)
        assert record is not None and record.ridge is not None
        assert gcv.penalty == pytest.approx(record.ridge.penalty, rel=1e-6)
        other = audit_refit(cache, torch.arange(4, 20), damping=DAMPING, penalty=1.0)
        assert other.penalty == 1.0
        assert not torch.allclose(other.initial_weights, by_index.initial_weights)

    def test_audit_refit__selects_damping_when_not_given(self) -> None:
        _, cache = _setup("ridge")
        chosen = audit_refit(cache, torch.arange(4, 20), max_iter=5)
        assert chosen.selection is not None
        assert chosen.damping == chosen.selection.damping
        assert chosen.step is chosen.selection.step

    def test_audit_refit__rejects_bad_input(self) -> None:
        _, cache = _setup("ridge")
        with pytest.raises(ValueError, match="removes every landmark"):
            audit_refit(cache, torch.tensor([], dtype=torch.long), damping=1.0)
        with pytest.raises(ValueError, match="removes every landmark"):
            audit_refit(cache, torch.zeros(20, dtype=torch.bool), damping=1.0)
        with pytest.raises(ValueError, match="one entry per landmark"):
            audit_refit(cache, torch.ones(5, dtype=torch.bool), damping=1.0)
        with pytest.raises(ValueError, match="more than once"):
            audit_refit(cache, torch.tensor([1, 1, 2, 3, 4]), damping=1.0)
        with pytest.raises(ValueError, match="outside"):
            audit_refit(cache, torch.tensor([0, 20]), damping=1.0)
        with pytest.raises(ValueError, match="positions"):
            audit_refit(cache, torch.tensor([0.0, 1.0]), damping=1.0)
        with pytest.raises(ValueError, match="damping"):
            audit_refit(cache, torch.arange(10), damping=0.0)
        with pytest.raises(ValueError, match="damping"):
            audit_refit(cache, torch.arange(10), damping=-1.0)
        with pytest.raises(ValueError, match="penalty"):
            audit_refit(cache, torch.arange(10), damping=1.0, penalty=-1.0)
        with pytest.raises(ValueError, match="penalty"):
            audit_refit(cache, torch.arange(10), damping=1.0, penalty="loo")  # type: ignore[arg-type]
        # Three landmarks cannot carry the encoder's four outputs.
        with pytest.raises(ValueError, match="rank"):
            audit_refit(cache, torch.arange(3), damping=1.0)
        with pytest.raises(TypeError, match="AuditCache"):
            audit_refit(object(), torch.arange(3), damping=1.0)  # type: ignore[arg-type]
        refit = audit_refit(cache, torch.arange(10), damping=DAMPING)
        assert isinstance(refit, AuditRefit)
        with pytest.raises(ValueError, match="kernel_rows"):
            refit.outputs(torch.ones(3, 5, dtype=torch.float64))

    def test_audit_cache__needs_encoder_for_ridge(self) -> None:
        surrogate, _ = _setup("ridge")
        x = _data()
        with pytest.raises(ValueError, match="encoder= and data="):
            AuditCache(surrogate, NTXentLoss(), _views(x), progress=False)
        with pytest.raises(ValueError, match="p >= 2"):
            AuditCache(surrogate, NTXentLoss(), [x], encoder=_mlp(), data=x)

    def test_audit_cache__hand_made_backbone_is_pc(self) -> None:
        x = _data()
        backbone = KernelBackbone(RBF(3.0), x[:12], out_dim=3)
        cache = AuditCache(backbone, NTXentLoss(), _views(x), progress=False)
        assert cache.fit == "pc"
        refit = audit_refit(cache, torch.arange(12), damping=DAMPING)
        expected = audit(
            backbone, NTXentLoss(), _views(x), damping=DAMPING, progress=False
        )
        torch.testing.assert_close(
            refit.weights, expected.audited.representer_weights, atol=1e-8, rtol=1e-6
        )

    def test_landmark_gram__matches_kernel(self) -> None:
        x = _data(10)
        gram = landmark_gram(RBF(2.0), x)
        assert gram.dtype == torch.float64 and torch.equal(gram, gram.T)
        torch.testing.assert_close(gram, RBF(2.0)(x))
