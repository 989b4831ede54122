from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics.pairwise import laplacian_kernel, polynomial_kernel, rbf_kernel

from lightly_krepes.kernels import RBF, Kernel, Laplace, Linear, Normalized, Polynomial


def _kernels() -> list[Kernel]:
    return [
        RBF(lengthscale=1.5, chunk_size=3),
        Laplace(lengthscale=2.0, chunk_size=4),
        Linear(chunk_size=3),
        Polynomial(degree=3, scale=0.5, offset=1.0, chunk_size=5),
    ]


def _data(
    seed: int, n: int, d: int, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=dtype)


KERNEL_INDICES = st.integers(0, len(_kernels()) - 1)


class TestClassicKernels:
    @given(index=KERNEL_INDICES, seed=st.integers(0, 2**16), n=st.integers(1, 12))
    def test_forward__symmetric_and_psd(self, index: int, seed: int, n: int) -> None:
        kernel = _kernels()[index]
        x = _data(seed, n, 4)
        gram = kernel(x)
        assert torch.equal(gram, gram.T)
        eigenvalues = torch.linalg.eigvalsh(gram)
        assert eigenvalues.min() >= -1e-10 * eigenvalues.abs().max().clamp_min(1.0)

    @given(index=KERNEL_INDICES, seed=st.integers(0, 2**16), n1=st.integers(1, 9))
    def test_forward__chunking_does_not_change_values(
        self, index: int, seed: int, n1: int
    ) -> None:
        kernel = _kernels()[index]
        x1, x2 = _data(seed, n1, 3), _data(seed + 1, 7, 3)
        chunked = kernel(x1, x2)
        kernel.chunk_size = 1000
        torch.testing.assert_close(chunked, kernel(x1, x2), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(kernel(x1, x1), kernel(x1), rtol=1e-12, atol=1e-12)

    @given(index=KERNEL_INDICES, seed=st.integers(0, 2**16))
    def test_diag__matches_gram_diagonal(self, index: int, seed: int) -> None:
        kernel = _kernels()[index]
        x = _data(seed, 6, 5)
        torch.testing.assert_close(kernel.diag(x), kernel(x).diagonal())

    def test_forward__matches_scikit_learn(self) -> None:
        x1, x2 = _data(0, 8, 5), _data(1, 6, 5)
        a, b = x1.numpy(), x2.numpy()
        expected = {
            "rbf": rbf_kernel(a, b, gamma=1 / (2 * 1.5**2)),
            "laplace": laplacian_kernel(a, b, gamma=1 / 2.0),
            "linear": a @ b.T,
            "poly": polynomial_kernel(a, b, degree=3, gamma=0.5, coef0=1.0),
        }
        for kernel, reference in zip(_kernels(), expected.values(), strict=True):
            torch.testing.assert_close(kernel(x1, x2), torch.from_numpy(reference))

    def test_forward__flattens_samples(self) -> None:
        x = _data(0, 4, 12)
        for kernel in _kernels():
            torch.testing.assert_close(kernel(x.reshape(4, 3, 2, 2)), kernel(x))

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
    def test_forward__keeps_floating_dtype(self, dtype: torch.dtype) -> None:
        x = _data(0, 5, 3).to(dtype)
        for kernel in _kernels():
            assert kernel(x).dtype == dtype

    def test_forward__input_gradients_match_finite_differences(self) -> None:
        x1 = _data(0, 3, 4).requires_grad_()
        x2 = _data(1, 2, 4).requires_grad_()
        for kernel in [RBF(1.3), Laplace(2.0), Linear(), Polynomial(2)]:
            assert torch.autograd.gradcheck(kernel, (x1, x2))

    def test_forward__rejects_nan_and_inf(self) -> None:
        x = _data(0, 4, 3)
        x[1, 2] = float("nan")
        with pytest.raises(ValueError, match="NaN or infinite"):
            RBF()(x)
        x[1, 2] = float("inf")
        with pytest.raises(ValueError, match="NaN or infinite"):
            Linear().diag(x)

    def test_forward__rejects_mismatched_inputs(self) -> None:
        with pytest.raises(ValueError, match="same shape"):
            RBF()(_data(0, 3, 4), _data(0, 3, 5))
        with pytest.raises(TypeError, match="same dtype"):
            RBF()(_data(0, 3, 4), _data(0, 3, 4, torch.float32))
        with pytest.raises(ValueError, match="at least 1 dimension"):
            RBF()(torch.tensor(1.0))

    def test_forward__rejects_integer_inputs(self) -> None:
        with pytest.raises(TypeError, match=r"\.float\(\)"):
            RBF()(torch.ones(3, 2, dtype=torch.int64))

    def test_init__rejects_bad_hyperparameters(self) -> None:
        with pytest.raises(ValueError, match="lengthscale"):
            RBF(lengthscale=0.0)
        with pytest.raises(ValueError, match="lengthscale"):
            Laplace(lengthscale=float("nan"))
        with pytest.raises(ValueError, match="degree"):
            Polynomial(degree=0)
        with pytest.raises(ValueError, match="offset"):
            Polynomial(offset=-1.0)
        with pytest.raises(ValueError, match="chunk_size"):
            Linear(chunk_size=0)


class TestNormalized:
    @given(index=KERNEL_INDICES, seed=st.integers(0, 2**16), n=st.integers(1, 10))
    def test_forward__unit_diagonal_and_bounded(
        self, index: int, seed: int, n: int
    ) -> None:
        kernel = Normalized(_kernels()[index])
        x = _data(seed, n, 4)
        gram = kernel(x)
        torch.testing.assert_close(gram.diagonal(), torch.ones(n, dtype=gram.dtype))
        torch.testing.assert_close(kernel.diag(x), torch.ones(n, dtype=gram.dtype))
        assert gram.abs().max() <= 1.0
        assert torch.equal(gram, gram.T)

    def test_forward__is_cosine_of_features(self) -> None:
        x1, x2 = _data(0, 5, 3), _data(1, 4, 3)
        expected = (
            torch.nn.functional.normalize(x1) @ torch.nn.functional.normalize(x2).T
        )
        torch.testing.assert_close(Normalized(Linear())(x1, x2), expected)

    def test_forward__zero_sample_has_zero_similarity(self) -> None:
        x = torch.zeros(3, 2, dtype=torch.float64)
        x[0] = 1.0
        gram = Normalized(Linear())(x)
        assert not gram.isnan().any()
        assert gram[1].abs().sum() == 0

    def test_has_features__follows_wrapped_kernel(self) -> None:
        assert Normalized(Linear()).has_features
        assert not Normalized(RBF()).has_features

    def test_init__rejects_non_kernel(self) -> None:
        with pytest.raises(TypeError, match="Kernel"):
            Normalized(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
