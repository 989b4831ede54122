from __future__ import annotations

import copy
import io
import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from lightly_krepes.kernels import (
    RBF,
    EmpiricalNTK,
    Kernel,
    Laplace,
    Linear,
    Normalized,
    Polynomial,
)
from lightly_krepes.nystrom import Nystrom, default_rcond


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)
    ).double()


def _kernels() -> list[Kernel]:
    return [
        RBF(lengthscale=2.0),
        Laplace(lengthscale=3.0),
        Polynomial(degree=2),
        Normalized(RBF(lengthscale=1.0)),
        EmpiricalNTK(_net(), chunk_size=7),
        Normalized(EmpiricalNTK(_net(), output="trace")),
    ]


def _data(seed: int, n: int) -> Tensor:
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(seed)).double()


def _gram_error(kernel: Kernel, landmarks: Tensor, x: Tensor) -> float:
    phi = Nystrom(kernel, landmarks, rcond=1e-13)(x)
    return float(torch.linalg.matrix_norm(kernel(x) - phi @ phi.T, ord="nuc"))


KERNEL_INDICES = st.integers(0, len(_kernels()) - 1)


class TestNystrom:
    @given(index=KERNEL_INDICES, seed=st.integers(0, 2**16), m=st.integers(1, 12))
    def test_forward__exact_on_landmarks(self, index: int, seed: int, m: int) -> None:
        kernel = _kernels()[index]
        landmarks = _data(seed, m)
        nystrom = Nystrom(kernel, landmarks, rcond=1e-12)
        phi = nystrom(landmarks)
        gram = kernel(landmarks)
        if nystrom.rank == m:  # nothing was cut, so the map is exact
            torch.testing.assert_close(phi @ phi.T, gram, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(
            nystrom.landmark_kernel(landmarks), kernel(landmarks, landmarks)
        )

    @given(index=KERNEL_INDICES, seed=st.integers(0, 2**16))
    def test_forward__reproduces_gram_with_all_points(
        self, index: int, seed: int
    ) -> None:
        kernel = _kernels()[index]
        x = _data(seed, 15)
        phi = Nystrom(kernel, x, rcond=1e-13)(x)
        gram = kernel(x)
        assert (phi @ phi.T - gram).abs().max() <= 1e-8 * gram.abs().max()

    @given(index=KERNEL_INDICES, seed=st.integers(0, 2**16))
    def test_forward__error_does_not_grow_with_nested_landmarks(
        self, index: int, seed: int
    ) -> None:
        kernel = _kernels()[index]
        x = _data(seed, 30)
        errors = [_gram_error(kernel, x[:m], x) for m in (2, 5, 10, 20)]
        for smaller, larger in itertools.pairwise(errors):
            assert larger <= smaller * (1 + 1e-6) + 1e-9

    @given(index=KERNEL_INDICES, seed=st.integers(0, 2**16))
    def test_forward__approximation_invariant_to_landmark_order(
        self, index: int, seed: int
    ) -> None:
        kernel = _kernels()[index]
        x, landmarks = _data(seed, 9), _data(seed + 1, 6)
        permutation = torch.randperm(6, generator=torch.Generator().manual_seed(seed))
        phi = Nystrom(kernel, landmarks)(x)
        phi_permuted = Nystrom(kernel, landmarks[permutation])(x)
        torch.testing.assert_close(phi @ phi.T, phi_permuted @ phi_permuted.T)

    def test_forward__conv_entk_folded_map_matches_kernel_rows(self) -> None:
        kernel = EmpiricalNTK(_cnn(), chunk_size=4)
        landmarks = torch.randn(6, 1, 4, 4, dtype=torch.float64)
        x = torch.randn(5, 1, 4, 4, dtype=torch.float64)
        nystrom = Nystrom(kernel, landmarks, rcond=1e-12)
        torch.testing.assert_close(
            nystrom(x), kernel(x, landmarks) @ nystrom.projection
        )

    def test_forward__deterministic(self) -> None:
        x = _data(0, 20)
        for kernel in _kernels():
            a = Nystrom(kernel, x[:8])(x)
            b = Nystrom(kernel, x[:8])(x)
            assert torch.equal(a, b)

    def test_forward__input_gradients_flow_through_entk(self) -> None:
        nystrom = Nystrom(EmpiricalNTK(_net()), _data(0, 6))
        x = _data(1, 3).requires_grad_()
        assert torch.autograd.gradcheck(nystrom, (x,))

    def test_init__rank_and_cutoff(self) -> None:
        x = _data(0, 10)
        nystrom = Nystrom(Linear(), x)
        assert nystrom.rank == 4  # rank of a linear kernel on 4-d inputs
        assert nystrom.rcond == default_rcond(10, torch.float64)
        assert Nystrom(RBF(), x, rank=3).rank == 3
        eigenvalues = Nystrom(RBF(), x).eigenvalues
        assert torch.all(eigenvalues[:-1] >= eigenvalues[1:])

    def test_init__cutoff_is_relative_to_largest_eigenvalue(self) -> None:
        x = _data(0, 10)
        small, large = Nystrom(Linear(), x * 1e-4), Nystrom(Linear(), x * 1e4)
        assert small.rank == large.rank == 4

    def test_init__rejects_rank_above_numerical_rank(self) -> None:
        with pytest.raises(ValueError, match="exceeds the numerical rank 4"):
            Nystrom(Linear(), _data(0, 10), rank=5)
        with pytest.raises(ValueError, match="between 1 and the number of landmarks"):
            Nystrom(RBF(), _data(0, 10), rank=11)

    def test_init__rejects_bad_arguments(self) -> None:
        with pytest.raises(TypeError, match="Kernel"):
            Nystrom(nn.Linear(2, 2), _data(0, 3))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="rcond"):
            Nystrom(RBF(), _data(0, 3), rcond=1.5)
        with pytest.raises(ValueError, match="NaN"):
            Nystrom(RBF(), torch.full((3, 2), float("nan")))
        with pytest.raises(ValueError, match="no positive eigenvalue"):
            Nystrom(Linear(), torch.zeros(3, 2))

    def test_forward__rejects_bad_inputs(self) -> None:
        nystrom = Nystrom(RBF(), _data(0, 5))
        with pytest.raises(ValueError, match=r"samples of shape \(4,\)"):
            nystrom(torch.randn(3, 5, dtype=torch.float64))
        with pytest.raises(TypeError, match="cast"):
            nystrom(torch.randn(3, 4))
        with pytest.raises(ValueError, match="NaN"):
            nystrom(torch.full((2, 4), float("inf"), dtype=torch.float64))

    def test_state_dict__round_trip_with_weights_only(self) -> None:
        x = _data(0, 20)
        for kernel in _kernels():
            nystrom = Nystrom(kernel, x[:10])
            buffer = io.BytesIO()
            torch.save(nystrom.state_dict(), buffer)
            buffer.seek(0)
            # A map of another size adopts the saved landmarks and rank.
            loaded = Nystrom(copy.deepcopy(kernel), x[10:13])
            loaded.load_state_dict(torch.load(buffer, weights_only=True))
            assert loaded.rank == nystrom.rank
            torch.testing.assert_close(loaded(x), nystrom(x))

    def test_to__rebuilds_folded_state_in_new_dtype(self) -> None:
        x = _data(0, 12)
        nystrom = Nystrom(EmpiricalNTK(_net()), x[:6])
        expected = nystrom(x)
        single = copy.deepcopy(nystrom).float()
        torch.testing.assert_close(
            single(x.float()), expected.float(), rtol=1e-4, atol=1e-5
        )

    def test_transform__streams_tensors_datasets_and_loaders(self) -> None:
        x = _data(0, 25)
        nystrom = Nystrom(RBF(), x[:5])
        expected = nystrom(x)
        labels = torch.zeros(25)
        for data in (x, TensorDataset(x, labels)):
            out = nystrom.transform(data, batch_size=4, progress=False)
            torch.testing.assert_close(out, expected)
        loader = torch.utils.data.DataLoader(TensorDataset(x, labels), batch_size=7)
        torch.testing.assert_close(nystrom.transform(loader, progress=False), expected)
        with pytest.raises(TypeError, match="first element is a tensor"):
            nystrom.transform([["a"]], progress=False)
