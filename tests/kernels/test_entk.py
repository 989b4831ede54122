from __future__ import annotations

import copy
import io
from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from lightly_krepes.kernels import EmpiricalNTK, Normalized


def jacobian(model: nn.Module, x: Tensor) -> Tensor:
    """Explicit per-sample Jacobians, shape (n, O, P), built with torch.func.jacrev."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def f(p: dict[str, Tensor], sample: Tensor) -> Tensor:
        out: Tensor = functional_call(model, {**p, **buffers}, (sample[None],))
        return out.reshape(-1)

    jac = vmap(jacrev(f), (None, 0))(params, x)
    return torch.cat([j.reshape(x.shape[0], j.shape[1], -1) for j in jac.values()], 2)


def reference_ntk(model: nn.Module, x1: Tensor, x2: Tensor, output: str) -> Tensor:
    j1, j2 = jacobian(model, x1), jacobian(model, x2)
    num_outputs = j1.shape[1]
    if output == "pntk":
        return torch.einsum("iaf,jbf->ij", j1, j2) / num_outputs
    return torch.einsum("iaf,jaf->ij", j1, j2) / num_outputs


class ResidualNet(nn.Module):
    """Conv, BatchNorm (eval), residual, pooling, LayerNorm, GELU, elementwise ops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv_same = nn.Conv2d(4, 4, 2, padding="same", dilation=1)
        self.pool = nn.AvgPool2d(2)
        self.norm = nn.LayerNorm(36)
        self.fc = nn.Linear(36, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        h = h + nn.functional.gelu(self.conv_same(h))
        h = nn.functional.max_pool2d(h[..., :7, :7], 1)
        h = self.pool(h[..., :6, :6]).flatten(1)
        out: Tensor = self.fc(self.norm(h))
        return out * torch.sin(out) + out.exp() / 10


class SmoothNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.norm = nn.LayerNorm(48)
        self.fc = nn.Linear(48, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.bn(self.conv(x)))
        h = h + nn.functional.avg_pool2d(h, 3, 1, 1)
        out: Tensor = self.fc(self.norm(h.flatten(1)))
        return out


class TiedNet(nn.Module):
    """A linear layer applied twice and an embedding-like free parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.randn(4))
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.shared(x))
        h = torch.tanh(self.shared(h)) * self.scale
        out: Tensor = self.head(h)
        return out


def _randomize_batchnorm(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    return model.eval()


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (lambda: nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)), (5,)),
    "inplace_relu": (
        lambda: nn.Sequential(nn.Linear(5, 6), nn.ReLU(inplace=True), nn.Linear(6, 2)),
        (5,),
    ),
    "tokens": (
        lambda: nn.Sequential(nn.Linear(4, 5), nn.GELU(), nn.Linear(5, 2)),
        (3, 4),
    ),
    "conv1d_bn": (
        lambda: nn.Sequential(
            nn.Conv1d(2, 3, 3, stride=2, padding=1),
            nn.BatchNorm1d(3),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(12, 2),
        ),
        (2, 8),
    ),
    "grouped_conv": (
        lambda: nn.Sequential(
            nn.Conv2d(2, 4, 3, groups=2, padding_mode="reflect", padding=1),
            nn.Softplus(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 3),
        ),
        (2, 5, 5),
    ),
    "residual": (ResidualNet, (2, 7, 7)),
    "tied": (TiedNet, (4,)),
}


def _model(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(seed)
    factory, shape = MODELS[name]
    return _randomize_batchnorm(factory().double()), shape


class TestEmpiricalNTK:
    @pytest.mark.parametrize("name", sorted(MODELS))
    @pytest.mark.parametrize("output", ["pntk", "trace"])
    @pytest.mark.parametrize("structured", [None, True, False])
    def test_forward__matches_jacobian_contraction(
        self, name: str, output: str, structured: bool | None
    ) -> None:
        model, shape = _model(name)
        x1 = torch.randn(5, *shape, dtype=torch.float64)
        x2 = torch.randn(3, *shape, dtype=torch.float64)
        kernel = EmpiricalNTK(model, output=output, structured=structured, chunk_size=2)  # type: ignore[arg-type]
        torch.testing.assert_close(
            kernel(x1, x2), reference_ntk(model, x1, x2, output), rtol=1e-10, atol=1e-12
        )

    @given(seed=st.integers(0, 2**16), n=st.integers(1, 8))
    def test_forward__pntk_is_mean_of_all_output_pairs(self, seed: int, n: int) -> None:
        model, shape = _model("mlp", seed)
        x = torch.randn(n, *shape, dtype=torch.float64)
        j = jacobian(model, x)
        expected = torch.einsum("iaf,jbf->ij", j, j) / j.shape[1]
        gram = EmpiricalNTK(model)(x)
        torch.testing.assert_close(gram, expected)
        assert torch.equal(gram, gram.T)
        eigenvalues = torch.linalg.eigvalsh(gram)
        assert eigenvalues.min() >= -1e-10 * eigenvalues.max()

    def test_forward__hutchinson_error_shrinks_with_probes(self) -> None:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 32)).double()
        x = torch.randn(6, 4, dtype=torch.float64)
        exact = EmpiricalNTK(model, output="trace")(x)
        errors = []
        for num_probes in (1, 8, 64):
            per_seed = [
                (EmpiricalNTK(model, "trace", num_probes, seed=s)(x) - exact).norm()
                for s in range(8)
            ]
            errors.append(torch.stack(per_seed).mean() / exact.norm())
        assert errors[0] > errors[1] > errors[2]
        assert errors[2] < 0.1

    def test_forward__fixed_seed_is_deterministic(self) -> None:
        model, shape = _model("mlp")
        x = torch.randn(4, *shape, dtype=torch.float64)
        a = EmpiricalNTK(model, "trace", num_probes=3, seed=7)(x)
        b = EmpiricalNTK(model, "trace", num_probes=3, seed=7)(x)
        c = EmpiricalNTK(model, "trace", num_probes=3, seed=8)(x)
        assert torch.equal(a, b)
        assert not torch.equal(a, c)

    @pytest.mark.parametrize("structured", [None, True, False])
    def test_forward__input_gradients_match_finite_differences(
        self, structured: bool | None
    ) -> None:
        # Smooth layers only, so finite differences are valid; LayerNorm and
        # BatchNorm exercise the torch.func fallback, conv and linear the fast path.
        torch.manual_seed(0)
        model = _randomize_batchnorm(SmoothNet().double())
        kernel = EmpiricalNTK(model, structured=structured)
        x1 = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
        x2 = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(kernel, (x1, x2))

    def test_forward__no_grad_returns_constant(self) -> None:
        model, shape = _model("mlp")
        x = torch.randn(3, *shape, dtype=torch.float64, requires_grad=True)
        kernel = EmpiricalNTK(model)
        with torch.no_grad():
            gram = kernel(x)
        assert not gram.requires_grad
        torch.testing.assert_close(gram, kernel(x).detach())

    def test_init__network_is_frozen_copy(self) -> None:
        model, shape = _model("residual")
        kernel = EmpiricalNTK(model)
        assert list(kernel.parameters()) == []
        x = torch.randn(3, *shape, dtype=torch.float64)
        before = kernel(x)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        torch.testing.assert_close(kernel(x), before)
        kernel.train()
        assert not kernel.model.bn.training
        torch.testing.assert_close(kernel(x), before)

    def test_state_dict__round_trip_with_weights_only(self) -> None:
        model, shape = _model("residual", seed=0)
        other, _ = _model("residual", seed=1)
        x = torch.randn(3, *shape, dtype=torch.float64)
        buffer = io.BytesIO()
        torch.save(EmpiricalNTK(model).state_dict(), buffer)
        buffer.seek(0)
        kernel = EmpiricalNTK(other)
        kernel.load_state_dict(torch.load(buffer, weights_only=True))
        torch.testing.assert_close(kernel(x), EmpiricalNTK(model)(x))

    def test_deepcopy__copies_capture_state(self) -> None:
        model, shape = _model("tied")
        kernel = EmpiricalNTK(model)
        clone = copy.deepcopy(kernel)
        x = torch.randn(4, *shape, dtype=torch.float64)
        torch.testing.assert_close(clone(x), kernel(x))

    def test_fallback_parameters__cover_what_the_fast_path_cannot(self) -> None:
        model, _ = _model("tied")
        kernel = EmpiricalNTK(model)
        kernel(torch.randn(2, 4, dtype=torch.float64))
        assert set(kernel.fallback_parameters) == {
            "shared.weight",
            "shared.bias",
            "scale",
        }
        assert EmpiricalNTK(_model("mlp")[0]).fallback_parameters == []

    def test_normalized__unit_diagonal_with_features(self) -> None:
        model, shape = _model("conv1d_bn")
        kernel = Normalized(EmpiricalNTK(model))
        x = torch.randn(5, *shape, dtype=torch.float64)
        gram = kernel(x)
        torch.testing.assert_close(gram.diagonal(), torch.ones(5, dtype=gram.dtype))
        assert gram.abs().max() <= 1

    def test_init__rejects_batchnorm_in_train_mode(self) -> None:
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        with pytest.raises(ValueError, match=r"call model\.eval\(\)"):
            EmpiricalNTK(model)
        with pytest.raises(ValueError, match="random"):
            EmpiricalNTK(nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5)))

    def test_init__rejects_bad_arguments(self) -> None:
        with pytest.raises(TypeError, match=r"nn\.Module"):
            EmpiricalNTK(lambda x: x)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="output"):
            EmpiricalNTK(nn.Linear(2, 2), output="full")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="num_probes"):
            EmpiricalNTK(nn.Linear(2, 2), num_probes=4)
        with pytest.raises(ValueError, match="no floating parameters"):
            EmpiricalNTK(nn.ReLU())

    def test_forward__rejects_bad_inputs(self) -> None:
        kernel = EmpiricalNTK(nn.Linear(3, 2))
        with pytest.raises(TypeError, match="float32"):
            kernel(torch.randn(2, 3, dtype=torch.float64))
        with pytest.raises(ValueError, match="failed on inputs of shape"):
            kernel(torch.randn(2, 4))
        with pytest.raises(ValueError, match="NaN"):
            kernel(torch.full((2, 3), float("nan")))
        with pytest.raises(TypeError, match="must return a tensor"):
            EmpiricalNTK(TupleNet())(torch.randn(2, 3))


class TupleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.fc(x), x
