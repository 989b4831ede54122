from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lightly_krepes import KernelBackbone
from lightly_krepes.kernels import PatchKernel


def _images(seed: int, n: int, channels: int = 2, size: int = 9) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, size, size, generator=gen, dtype=torch.float64)


def _filters(seed: int, count: int = 3, channels: int = 2, k: int = 4) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(count, channels, k, k, generator=gen, dtype=torch.float64)


def _explicit_features(
    x: torch.Tensor, filters: torch.Tensor, threshold: float, grid: int
) -> torch.Tensor:
    """Per-position dot products with every filter, thresholded, cell means."""
    k = filters.shape[-1]
    patches = F.unfold(x, k)  # (n, C k k, positions)
    side = x.shape[-1] - k + 1
    responses = torch.einsum("fd,ndp->nfp", filters.flatten(1), patches)
    parts = torch.cat(
        [(responses - threshold).clamp_min(0), (-responses - threshold).clamp_min(0)],
        dim=1,
    ).reshape(x.shape[0], -1, side, side)
    cell = side // grid
    cells = parts.reshape(x.shape[0], parts.shape[1], grid, cell, grid, cell)
    return cells.mean(dim=(3, 5)).flatten(1)


class TestPatchKernel:
    @given(
        seed=st.integers(0, 2**16),
        threshold=st.floats(0.0, 2.0),
        grid=st.sampled_from([1, 2, 3]),
    )
    def test_forward__matches_explicit_patch_features(
        self, seed: int, threshold: float, grid: int
    ) -> None:
        # 9x9 images, 4x4 patches: 6x6 positions, which grids 1, 2 and 3 divide.
        x1, x2 = _images(seed, 3), _images(seed + 1, 4)
        filters = _filters(seed)
        kernel = PatchKernel(filters, threshold=threshold, grid=grid, chunk_size=2)
        f1 = _explicit_features(x1, filters, threshold, grid)
        f2 = _explicit_features(x2, filters, threshold, grid)
        torch.testing.assert_close(kernel(x1, x2), f1 @ f2.T)
        assert kernel.feature_dim == f1.shape[1]

    @pytest.mark.parametrize("grid, stride", [(4, 1), (5, 1), (2, 2), (3, 3)])
    def test_forward__uneven_cells_match_adaptive_avg_pool(
        self, grid: int, stride: int
    ) -> None:
        # 6x6 positions (fewer at stride > 1) that the grid does not divide: the
        # cells overlap exactly as adaptive_avg_pool2d's do.
        x = _images(5, 3)
        filters = _filters(5)
        kernel = PatchKernel(filters, threshold=0.1, grid=grid, stride=stride)
        responses = F.conv2d(x, filters, stride=stride)
        parts = torch.cat([F.relu(responses - 0.1), F.relu(-responses - 0.1)], dim=1)
        expected = F.adaptive_avg_pool2d(parts, grid).flatten(1)
        torch.testing.assert_close(kernel(x), expected @ expected.T)

    @settings(max_examples=25)
    @given(seed=st.integers(0, 2**16), n=st.integers(1, 8))
    def test_forward__symmetric_psd(self, seed: int, n: int) -> None:
        kernel = PatchKernel(_filters(seed), threshold=0.3)
        x = _images(seed, n)
        gram = kernel(x)
        assert torch.equal(gram, gram.T)
        torch.testing.assert_close(kernel.diag(x), gram.diagonal())
        assert torch.linalg.eigvalsh(gram).min() >= -1e-10 * gram.diagonal().max()

    def test_forward__input_gradients_match_finite_differences(self) -> None:
        kernel = PatchKernel(_filters(0), threshold=0.2, grid=2)
        x1 = _images(0, 2).requires_grad_()
        x2 = _images(1, 3).requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b: kernel(a, b), (x1, x2))

    def test_from_data__unit_response_scale_and_seeded(self) -> None:
        images = _images(0, 40, channels=3, size=12)
        kernel = PatchKernel.from_data(
            images, num_filters=16, patch_size=5, num_patches=2_000, seed=3
        )
        assert kernel.filters.shape == (16, 3, 5, 5)
        assert kernel.filters.dtype == torch.float64
        again = PatchKernel.from_data(
            images, num_filters=16, patch_size=5, num_patches=2_000, seed=3
        )
        assert torch.equal(kernel.filters, again.filters)
        other = PatchKernel.from_data(
            images, num_filters=16, patch_size=5, num_patches=2_000, seed=4
        )
        assert not torch.equal(kernel.filters, other.filters)
        # The threshold is in units of the responses' spread over image patches.
        patches = F.unfold(images, 5).transpose(1, 2).reshape(-1, 75)
        spread = (patches @ kernel.filters.flatten(1).T).std()
        assert 0.8 < float(spread) < 1.25

    def test_backbone__trains_and_restores_from_state_dict(self) -> None:
        images = _images(1, 30, channels=1, size=10)
        kernel = PatchKernel.from_data(
            images, num_filters=8, patch_size=3, num_patches=500
        )
        backbone = KernelBackbone.from_data(kernel, images, 12, 4)
        loss = backbone(images).pow(2).sum()
        loss.backward()
        grad = backbone.linear.weight.grad
        assert grad is not None and grad.abs().sum() > 0
        buffer = io.BytesIO()
        torch.save(kernel.state_dict(), buffer)
        buffer.seek(0)
        restored = PatchKernel(torch.zeros_like(kernel.filters), grid=kernel.grid)
        restored.load_state_dict(torch.load(buffer, weights_only=True))
        torch.testing.assert_close(restored(images[:3]), kernel(images[:3]))
        # A backbone restores with a kernel of the same shape: the filters are saved.
        buffer = io.BytesIO()
        torch.save(backbone.state_dict(), buffer)
        buffer.seek(0)
        again = KernelBackbone.from_state_dict(
            PatchKernel(torch.zeros_like(kernel.filters), grid=kernel.grid),
            torch.load(buffer, weights_only=True),
        )
        torch.testing.assert_close(again(images[:5]), backbone(images[:5]))
        with pytest.raises(ValueError, match="do not fit"):
            KernelBackbone.from_state_dict(
                PatchKernel(torch.zeros(3, 1, 3, 3, dtype=torch.float64)),
                backbone.state_dict(),
            )

    def test_forward__rejects_bad_images(self) -> None:
        kernel = PatchKernel(_filters(0), threshold=0.1)
        with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
            kernel(torch.randn(3, 162, dtype=torch.float64))
        with pytest.raises(ValueError, match="channels"):
            kernel(_images(0, 2, channels=3))
        with pytest.raises(ValueError, match="smaller than"):
            kernel(_images(0, 2, size=3))
        with pytest.raises(TypeError, match="dtype"):
            kernel(_images(0, 2).float())
        bad = _images(0, 2)
        bad[0, 0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="NaN"):
            kernel(bad)

    def test_init__rejects_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match=r"\(F, C, k, k\)"):
            PatchKernel(torch.randn(3, 4))
        with pytest.raises(ValueError, match="square"):
            PatchKernel(torch.randn(3, 2, 4, 5))
        with pytest.raises(ValueError, match="threshold"):
            PatchKernel(_filters(0), threshold=-1.0)
        with pytest.raises(ValueError, match="grid"):
            PatchKernel(_filters(0), grid=0)
        with pytest.raises(ValueError, match="stride"):
            PatchKernel(_filters(0), stride=1.5)  # type: ignore[arg-type]

    def test_from_data__rejects_bad_arguments(self) -> None:
        images = _images(0, 5)
        with pytest.raises(ValueError, match="patch_size"):
            PatchKernel.from_data(images, patch_size=12)
        with pytest.raises(ValueError, match="num_patches"):
            PatchKernel.from_data(images, num_filters=50, num_patches=10)
        with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
            PatchKernel.from_data(images.flatten(1))
        with pytest.raises(ValueError, match="whitening"):
            PatchKernel.from_data(images, whitening=0.0)
        with pytest.raises(ValueError, match="num_filters"):
            PatchKernel.from_data(images, num_filters=0)
        with pytest.raises(ValueError, match="threshold"):
            PatchKernel.from_data(images, threshold=float("nan"))
