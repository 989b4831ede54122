from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import Tensor

from lightly_krepes.kernels import RBF, Linear
from lightly_krepes.landmarks import rpcholesky_landmarks, uniform_landmarks


class CountingRBF(RBF):
    """RBF kernel that records the shape of every Gram block and diagonal."""

    def __init__(self, lengthscale: float) -> None:
        super().__init__(lengthscale=lengthscale)
        self.blocks: list[tuple[int, int]] = []
        self.diagonals: list[int] = []

    def _gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        self.blocks.append((x1.shape[0], x2.shape[0]))
        return super()._gram(x1, x2)

    def _diag(self, x: Tensor) -> Tensor:
        self.diagonals.append(x.shape[0])
        return super()._diag(x)


def clustered_data(seed: int) -> Tensor:
    """One big cluster of 300 samples and 12 far-away clusters of 3 samples each."""
    gen = torch.Generator().manual_seed(seed)
    big = 0.5 * torch.randn(300, 2, generator=gen, dtype=torch.float64)
    angles = torch.arange(12, dtype=torch.float64) * (2 * math.pi / 12)
    centres = 10.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
    noise = 0.1 * torch.randn(12, 3, 2, generator=gen, dtype=torch.float64)
    return torch.cat([big, (centres[:, None, :] + noise).reshape(-1, 2)])


def nystrom_trace_error(gram: Tensor, indices: Tensor) -> float:
    """Trace norm of the PSD residual ``K - C W^+ C^T``, in float64."""
    columns = gram[:, indices]
    inner = torch.linalg.pinv(gram[indices][:, indices], hermitian=True, rtol=1e-12)
    return float(gram.trace() - ((columns @ inner) * columns).sum())


def rank_two_with_duplicates(dtype: torch.dtype) -> Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 2, generator=gen, dtype=torch.float64) @ torch.tensor(
        [[1.0, 2.0, 0.5], [-1.0, 0.5, 3.0]], dtype=torch.float64
    )
    return torch.cat([x, x[:6]]).to(dtype)


class TestRPCholesky:
    @pytest.mark.parametrize("block_size", [1, 3, 100])
    def test_rpcholesky_landmarks__distinct_valid_indices(
        self, block_size: int
    ) -> None:
        x = torch.randn(60, 4, generator=torch.Generator().manual_seed(1))
        indices = rpcholesky_landmarks(
            x, RBF(lengthscale=1.0), 15, seed=3, block_size=block_size
        )
        assert indices.dtype == torch.long
        assert indices.device.type == "cpu"
        assert indices.shape == (15,)
        assert indices.unique().numel() == 15
        assert int(indices.min()) >= 0 and int(indices.max()) < 60

    def test_rpcholesky_landmarks__deterministic_for_fixed_seed(self) -> None:
        x = torch.randn(80, 3, generator=torch.Generator().manual_seed(2))
        kernel = RBF(lengthscale=1.0)
        first = rpcholesky_landmarks(x, kernel, 10, seed=5, block_size=4)
        again = rpcholesky_landmarks(x, kernel, 10, seed=5, block_size=4)
        other = rpcholesky_landmarks(x, kernel, 10, seed=6, block_size=4)
        assert torch.equal(first, again)
        assert not torch.equal(first, other)

    @pytest.mark.parametrize("block_size", [1, 8])
    def test_rpcholesky_landmarks__samples_the_sequential_distribution(
        self, block_size: int
    ) -> None:
        # Ordered pivot pairs of sequential RPCholesky on 4 points: the first pivot
        # has probability K_ii / tr(K), the second is proportional to the Schur
        # complement's diagonal. Points 0 and 1 are nearly parallel, so the exact
        # law rarely picks both, unlike independent draws from the diagonal.
        x = torch.tensor(
            [[3.0, 0.0], [2.9, 0.4], [0.0, 1.0], [0.5, 0.5]], dtype=torch.float64
        )
        gram = x @ x.T
        diag = gram.diagonal()
        exact: dict[tuple[int, int], float] = {}
        naive: dict[tuple[int, int], float] = {}
        for i in range(4):
            schur = diag - gram[:, i] ** 2 / gram[i, i]
            schur[i] = 0.0
            for j in range(4):
                if j != i:
                    first = float(diag[i] / diag.sum())
                    exact[(i, j)] = first * float(schur[j] / schur.sum())
                    naive[(i, j)] = first * float(diag[j] / (diag.sum() - diag[i]))
        gen = torch.Generator().manual_seed(123)
        draws = 600
        counts = dict.fromkeys(exact, 0)
        for _ in range(draws):
            i, j = rpcholesky_landmarks(
                x, Linear(), 2, seed=gen, block_size=block_size
            ).tolist()
            counts[(i, j)] += 1

        def distance(law: dict[tuple[int, int], float]) -> float:
            return 0.5 * sum(abs(counts[k] / draws - p) for k, p in law.items())

        assert distance(exact) < 0.15
        assert distance(naive) > 0.5

    def test_rpcholesky_landmarks__beats_uniform_on_unbalanced_clusters(self) -> None:
        kernel = RBF(lengthscale=1.0)
        errors: dict[str, list[float]] = {"uniform": [], "b1": [], "b100": []}
        for seed in range(3):
            x = clustered_data(seed)
            gram = kernel(x)
            errors["uniform"].append(
                nystrom_trace_error(gram, uniform_landmarks(len(x), 20, seed=seed))
            )
            for block_size in (1, 100):
                indices = rpcholesky_landmarks(
                    x, kernel, 20, seed=seed, block_size=block_size
                )
                errors[f"b{block_size}"].append(nystrom_trace_error(gram, indices))
        mean = {key: sum(value) / len(value) for key, value in errors.items()}
        # Measured: uniform ~30, RPCholesky ~9-11 for both block sizes.
        assert mean["b1"] < 0.6 * mean["uniform"]
        assert mean["b100"] < 0.6 * mean["uniform"]
        assert abs(mean["b1"] - mean["b100"]) < 0.25 * mean["uniform"]

    @pytest.mark.parametrize("block_size", [1, 16])
    def test_rpcholesky_landmarks__evaluates_m_columns_and_the_diagonal(
        self, block_size: int
    ) -> None:
        n, m = 70, 12
        x = torch.randn(n, 3, generator=torch.Generator().manual_seed(4))
        kernel = CountingRBF(lengthscale=1.0)
        rpcholesky_landmarks(x, kernel, m, seed=0, block_size=block_size)
        assert kernel.diagonals == [n]
        columns = [n2 for n1, n2 in kernel.blocks if n1 == n]
        candidate_blocks = [b for b in kernel.blocks if b[0] != n]
        assert sum(columns) == m
        assert all(b == (block_size, block_size) for b in candidate_blocks)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_rpcholesky_landmarks__warns_and_fills_below_numerical_rank(
        self, dtype: torch.dtype
    ) -> None:
        x = rank_two_with_duplicates(dtype)
        with pytest.warns(UserWarning, match=r"reached at 2 pivot.*fewer landmarks"):
            indices = rpcholesky_landmarks(x, Linear(), 5, seed=0, block_size=4)
        assert indices.shape == (5,)
        assert indices.unique().numel() == 5
        # The two genuine pivots come first and span the data.
        assert torch.linalg.matrix_rank(x[indices[:2]].double()) == 2

    def test_rpcholesky_landmarks__zero_kernel_fills_uniformly(self) -> None:
        with pytest.warns(UserWarning, match="reached at 0 pivot"):
            indices = rpcholesky_landmarks(torch.zeros(6, 2), Linear(), 3)
        assert indices.unique().numel() == 3

    def test_rpcholesky_landmarks__no_warning_at_full_rank(self) -> None:
        x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            rpcholesky_landmarks(x, RBF(lengthscale=1.0), 10)

    def test_rpcholesky_landmarks__progress_bar(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        x = torch.randn(30, 2, generator=torch.Generator().manual_seed(0))
        rpcholesky_landmarks(x, RBF(lengthscale=1.0), 5, progress=True)
        assert "RPCholesky" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"m": 0}, ValueError, "at least 1"),
            ({"m": 11}, ValueError, r"only n=10 samples\. Lower m"),
            ({"block_size": 0}, ValueError, "block_size must be at least 1"),
            ({"seed": 1.5}, TypeError, "seed must be an integer"),
        ],
    )
    def test_rpcholesky_landmarks__rejects_bad_arguments(
        self, kwargs: dict[str, object], error: type[Exception], match: str
    ) -> None:
        arguments: dict[str, object] = {"m": 3, **kwargs}
        with pytest.raises(error, match=match):
            rpcholesky_landmarks(
                torch.randn(10, 2),
                RBF(),
                arguments.pop("m"),  # type: ignore[arg-type]
                **arguments,  # type: ignore[arg-type]
            )
