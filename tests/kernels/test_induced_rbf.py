from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lightly_krepes.kernels import (
    RBF,
    EmpiricalNTK,
    InducedRBF,
    Kernel,
    Linear,
    Normalized,
    Polynomial,
    median_lengthscale,
)
from lightly_krepes.nystrom import Nystrom


def _data(seed: int, n: int, d: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=torch.float64)


def _inner_kernels() -> list[Kernel]:
    # With features (folded), normalised features, and a Gram-only kernel.
    return [
        Linear(chunk_size=3),
        Normalized(Linear(chunk_size=4)),
        Polynomial(degree=2, offset=1.0, chunk_size=3),
    ]


def _entk() -> EmpiricalNTK:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    return EmpiricalNTK(net, chunk_size=5)


INNER = st.integers(0, len(_inner_kernels()) - 1)


class TestInducedRBF:
    @given(seed=st.integers(0, 2**16), n1=st.integers(1, 8), n2=st.integers(1, 8))
    def test_forward__equals_rbf_of_linear_kernel(
        self, seed: int, n1: int, n2: int
    ) -> None:
        x1, x2 = _data(seed, n1, 4), _data(seed + 1, n2, 4)
        torch.testing.assert_close(
            InducedRBF(Linear(chunk_size=3), 1.7)(x1, x2), RBF(1.7)(x1, x2)
        )

    @given(index=INNER, seed=st.integers(0, 2**16), n=st.integers(1, 10))
    def test_forward__symmetric_psd_unit_diagonal(
        self, index: int, seed: int, n: int
    ) -> None:
        kernel = InducedRBF(_inner_kernels()[index], 0.8)
        x = _data(seed, n, 3)
        gram = kernel(x)
        assert torch.equal(gram, gram.T)
        torch.testing.assert_close(gram.diagonal(), torch.ones(n, dtype=gram.dtype))
        torch.testing.assert_close(kernel.diag(x), gram.diagonal())
        assert torch.linalg.eigvalsh(gram).min() >= -1e-10

    def test_forward__of_normalized_kernel_is_exponentiated_cosine(self) -> None:
        x1, x2 = _data(0, 5, 3), _data(1, 4, 3)
        cosine = Normalized(Linear())(x1, x2)
        expected = torch.exp(-(1.0 - cosine) / 0.3**2)
        torch.testing.assert_close(
            InducedRBF(Normalized(Linear()), 0.3)(x1, x2), expected
        )

    @given(index=INNER, seed=st.integers(0, 2**16), n=st.integers(1, 9))
    def test_against__matches_cross_gram(self, index: int, seed: int, n: int) -> None:
        kernel = InducedRBF(_inner_kernels()[index], 1.1)
        x, fixed = _data(seed, n, 3), _data(seed + 1, 7, 3)
        torch.testing.assert_close(kernel.against(fixed)(x), kernel(x, fixed))

    def test_forward__input_gradients_match_finite_differences(self) -> None:
        x1 = _data(0, 3, 4).requires_grad_()
        x2 = _data(1, 2, 4).requires_grad_()
        for inner in _inner_kernels():
            assert torch.autograd.gradcheck(InducedRBF(inner, 1.3), (x1, x2))

    def test_forward__rejects_nan_inputs(self) -> None:
        x = _data(0, 4, 3)
        x[2, 1] = float("nan")
        with pytest.raises(ValueError, match="NaN or infinite"):
            InducedRBF(Linear(), 1.0)(x)

    def test_init__rejects_bad_arguments(self) -> None:
        with pytest.raises(TypeError, match="Kernel"):
            InducedRBF(nn.Linear(2, 2), 1.0)  # type: ignore[arg-type]
        for bad in (0.0, -1.0, math.nan, math.inf):
            with pytest.raises(ValueError, match="lengthscale"):
                InducedRBF(Linear(), bad)


class TestInducedRBFNystrom:
    def test_forward__exact_on_landmarks_of_entk(self) -> None:
        kernel = InducedRBF(Normalized(_entk()), 0.5)
        landmarks = _data(2, 12, 3)
        nystrom = Nystrom(kernel, landmarks, rcond=1e-13)
        phi = nystrom(landmarks)
        torch.testing.assert_close(phi @ phi.T, kernel(landmarks), atol=1e-8, rtol=0)
        x = _data(3, 11, 3)
        torch.testing.assert_close(nystrom.landmark_kernel(x), kernel(x, landmarks))

    def test_forward__input_gradients_match_finite_differences(self) -> None:
        # Captum's gradient methods differentiate the map through the eNTK.
        nystrom = Nystrom(InducedRBF(Normalized(_entk()), 0.7), _data(2, 8, 3))
        x = _data(5, 3, 3).requires_grad_()
        assert torch.autograd.gradcheck(nystrom, (x,))

    def test_deepcopy_and_state_dict__keep_outputs(self) -> None:
        nystrom = Nystrom(InducedRBF(Normalized(_entk()), 0.5), _data(2, 10, 3))
        x = _data(3, 6, 3)
        expected = nystrom(x)
        torch.testing.assert_close(copy.deepcopy(nystrom)(x), expected)
        buffer = io.BytesIO()
        torch.save(nystrom.state_dict(), buffer)
        buffer.seek(0)
        restored = Nystrom(InducedRBF(Normalized(_entk()), 0.5), _data(4, 10, 3))
        restored.load_state_dict(torch.load(buffer, weights_only=True))
        torch.testing.assert_close(restored(x), expected)


class TestMedianLengthscale:
    def test_median_lengthscale__is_half_the_median_squared_distance(self) -> None:
        x = _data(0, 40, 3)
        a, b = x[:20], x[20:]
        median = torch.cdist(a, b).pow(2).median()
        assert median_lengthscale(Linear(), x, scale=0.5) == pytest.approx(
            math.sqrt(0.5 * float(median) / 2)
        )

    @settings(max_examples=20)
    @given(seed=st.integers(0, 2**16))
    def test_median_lengthscale__typical_pair_at_exp_minus_one(self, seed: int) -> None:
        x = _data(seed, 30, 4)
        kernel = InducedRBF(
            Normalized(Linear()), median_lengthscale(Normalized(Linear()), x)
        )
        values = kernel(x[:15], x[15:])
        assert float(values.median()) == pytest.approx(math.exp(-1.0), rel=1e-6)

    def test_median_lengthscale__rejects_bad_input(self) -> None:
        with pytest.raises(ValueError, match="at least 2"):
            median_lengthscale(Linear(), _data(0, 1, 3))
        with pytest.raises(ValueError, match="scale"):
            median_lengthscale(Linear(), _data(0, 4, 3), scale=0.0)
        with pytest.raises(ValueError, match="median squared distance"):
            median_lengthscale(Linear(), torch.ones(6, 3, dtype=torch.float64))
