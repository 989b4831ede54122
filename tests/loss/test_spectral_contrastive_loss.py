from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

from lightly_krepes.loss import SpectralContrastiveLoss


def _closed_form(z_a: Tensor, z_b: Tensor) -> float:
    """HaoChen et al.'s empirical loss written with explicit loops."""
    n = z_a.shape[0]
    positive = sum(float(z_a[i] @ z_b[i]) for i in range(n)) / n
    negative = sum(
        float(z_a[i] @ z_b[j]) ** 2 for i in range(n) for j in range(n) if i != j
    ) / (n * (n - 1))
    return -2.0 * positive + negative


def _distributed_worker(rank: int, world_size: int, init_file: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        generator = torch.Generator().manual_seed(0)
        z_a_all = torch.randn(
            world_size * 3, 4, generator=generator, dtype=torch.float64
        )
        z_b_all = torch.randn(
            world_size * 3, 4, generator=generator, dtype=torch.float64
        )
        rows = slice(3 * rank, 3 * rank + 3)
        z_a = z_a_all[rows].clone().requires_grad_(True)
        z_b = z_b_all[rows].clone()
        loss = SpectralContrastiveLoss(gather_distributed=True)(z_a, z_b)
        loss.backward()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        mean_loss /= world_size

        reference_a = z_a_all.clone().requires_grad_(True)
        reference = SpectralContrastiveLoss()(reference_a, z_b_all)
        reference.backward()
        assert reference_a.grad is not None and z_a.grad is not None
        torch.testing.assert_close(mean_loss, reference.detach())
        # DDP averages parameter gradients over ranks, so each rank must carry
        # world_size times its share of the global gradient.
        torch.testing.assert_close(z_a.grad, world_size * reference_a.grad[rows])
    finally:
        dist.destroy_process_group()


class TestSpectralContrastiveLoss:
    def test_forward__matches_closed_form(self) -> None:
        generator = torch.Generator().manual_seed(0)
        z_a = torch.randn(5, 3, generator=generator, dtype=torch.float64)
        z_b = torch.randn(5, 3, generator=generator, dtype=torch.float64)
        loss = SpectralContrastiveLoss()(z_a, z_b)
        assert loss.shape == ()
        assert loss.item() == pytest.approx(_closed_form(z_a, z_b), rel=1e-12)

    def test_forward__symmetric_in_views(self) -> None:
        generator = torch.Generator().manual_seed(1)
        z_a = torch.randn(7, 4, generator=generator)
        z_b = torch.randn(7, 4, generator=generator)
        loss_fn = SpectralContrastiveLoss()
        torch.testing.assert_close(loss_fn(z_a, z_b), loss_fn(z_b, z_a))

    def test_forward__known_value(self) -> None:
        # Orthonormal positives: every positive term is 1, every negative term 0.
        z = torch.eye(3)
        assert SpectralContrastiveLoss()(z, z).item() == pytest.approx(-2.0)
        # Identical rows: negatives are as large as positives.
        ones = torch.ones(3, 2)
        assert SpectralContrastiveLoss()(ones, ones).item() == pytest.approx(-4 + 4)

    def test_forward__gradient(self) -> None:
        generator = torch.Generator().manual_seed(2)
        z_a = torch.randn(4, 3, generator=generator, dtype=torch.float64)
        z_b = torch.randn(4, 3, generator=generator, dtype=torch.float64)
        z_a.requires_grad_(True)
        z_b.requires_grad_(True)
        assert torch.autograd.gradcheck(SpectralContrastiveLoss(), (z_a, z_b))

    def test_forward__max_norm_clips_rows(self) -> None:
        z_a = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 2.0]], dtype=torch.float64)
        z_b = torch.tensor([[1.0, 0.0], [0.0, 5.0], [0.5, 0.5]], dtype=torch.float64)
        clipped_a = torch.tensor(
            [[0.6, 0.8], [0.3, 0.4], [0.0, 1.0]], dtype=torch.float64
        )
        clipped_b = torch.tensor(
            [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=torch.float64
        )
        loss = SpectralContrastiveLoss(max_norm=1.0)(z_a, z_b)
        expected = _closed_form(clipped_a, clipped_b)
        assert loss.item() == pytest.approx(expected, rel=1e-12)
        assert loss.item() != pytest.approx(_closed_form(z_a, z_b))

    def test_forward__gather_distributed_without_process_group(self) -> None:
        generator = torch.Generator().manual_seed(3)
        z_a = torch.randn(6, 3, generator=generator)
        z_b = torch.randn(6, 3, generator=generator)
        torch.testing.assert_close(
            SpectralContrastiveLoss(gather_distributed=True)(z_a, z_b),
            SpectralContrastiveLoss()(z_a, z_b),
        )

    def test_forward__gather_distributed_matches_global_batch(
        self, tmp_path: Path
    ) -> None:
        world_size = 2
        mp.spawn(
            _distributed_worker,
            args=(world_size, str(tmp_path / "store")),
            nprocs=world_size,
            join=True,
        )

    def test_forward__rejects_shape_mismatch(self) -> None:
        with pytest.raises(ValueError, match="same shape"):
            SpectralContrastiveLoss()(torch.randn(4, 3), torch.randn(5, 3))

    def test_forward__rejects_batch_of_one(self) -> None:
        with pytest.raises(ValueError, match="at least 2"):
            SpectralContrastiveLoss()(torch.randn(1, 3), torch.randn(1, 3))

    def test_forward__rejects_non_matrix(self) -> None:
        with pytest.raises(ValueError, match="batch_size, dim"):
            SpectralContrastiveLoss()(torch.randn(4, 3, 2), torch.randn(4, 3, 2))

    def test_forward__rejects_integer_input(self) -> None:
        with pytest.raises(TypeError, match="dtype"):
            SpectralContrastiveLoss()(
                torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3)
            )

    @pytest.mark.parametrize("max_norm", [0.0, -1.0, float("inf")])
    def test_init__rejects_invalid_max_norm(self, max_norm: float) -> None:
        with pytest.raises(ValueError, match="max_norm"):
            SpectralContrastiveLoss(max_norm=max_norm)
