from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

from lightly_krepes.loss import KernelPCALoss

EIGENVALUES = torch.tensor([5.0, 3.0, 2.0, 0.7, 0.4, 0.2], dtype=torch.float64)


def _features(n: int, eigenvectors: Tensor, seed: int = 0, mean: float = 0.0) -> Tensor:
    """Rows whose centred empirical covariance is exactly Q diag(EIGENVALUES) Q^T."""
    generator = torch.Generator().manual_seed(seed)
    white = torch.randn(n, len(EIGENVALUES), generator=generator, dtype=torch.float64)
    white = white - white.mean(0)
    # Exact whitening: centred rows with identity empirical covariance.
    u, _, _ = torch.linalg.svd(white, full_matrices=False)
    white = u * n**0.5
    return white * EIGENVALUES.sqrt() @ eigenvectors.T + mean


def _random_orthogonal(r: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(r, r, generator=generator, dtype=torch.float64))
    return q


def _reconstruction_error(phi: Tensor, weight: Tensor, center: bool) -> float:
    if center:
        phi = phi - phi.mean(0)
    errors = [float((row - weight.T @ (weight @ row)).pow(2).sum()) for row in phi]
    return sum(errors) / len(errors)


def _distributed_worker(rank: int, world_size: int, init_file: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        generator = torch.Generator().manual_seed(0)
        z_all = torch.randn(world_size * 4, 3, generator=generator, dtype=torch.float64)
        weight = torch.randn(3, 5, generator=generator, dtype=torch.float64)
        rows = slice(4 * rank, 4 * rank + 4)
        z = z_all[rows].clone().requires_grad_(True)
        loss = KernelPCALoss(gather_distributed=True)(z, weight)
        loss.backward()
        reference_z = z_all.clone().requires_grad_(True)
        reference = KernelPCALoss()(reference_z, weight)
        reference.backward()
        assert z.grad is not None and reference_z.grad is not None
        torch.testing.assert_close(loss.detach(), reference.detach())
        torch.testing.assert_close(z.grad, world_size * reference_z.grad[rows])
    finally:
        dist.destroy_process_group()


class TestKernelPCALoss:
    @pytest.mark.parametrize("center", [True, False])
    def test_forward__matches_reconstruction_error(self, center: bool) -> None:
        generator = torch.Generator().manual_seed(0)
        phi = torch.randn(20, 6, generator=generator, dtype=torch.float64) + 1.5
        weight = torch.randn(3, 6, generator=generator, dtype=torch.float64)
        z = phi @ weight.T
        expected = _reconstruction_error(phi, weight, center)
        loss_fn = KernelPCALoss(center=center)
        with_phi = loss_fn(z, weight, phi)
        assert with_phi.item() == pytest.approx(expected, rel=1e-10)
        phi_used = phi - phi.mean(0) if center else phi
        constant = float(phi_used.pow(2).sum(1).mean())
        without_phi = loss_fn(z, weight)
        assert without_phi.item() == pytest.approx(expected - constant, rel=1e-10)

    def test_forward__gradient_matches_reconstruction_gradient(self) -> None:
        generator = torch.Generator().manual_seed(1)
        phi = torch.randn(16, 6, generator=generator, dtype=torch.float64)
        weight = torch.randn(2, 6, generator=generator, dtype=torch.float64)
        grads = []
        for use_phi in (False, True):
            a = weight.clone().requires_grad_(True)
            loss = KernelPCALoss()(phi @ a.T, a, phi if use_phi else None)
            (grad,) = torch.autograd.grad(loss, a)
            grads.append(grad)
        torch.testing.assert_close(grads[0], grads[1])

    def test_forward__centering_removes_offset(self) -> None:
        generator = torch.Generator().manual_seed(2)
        linear = torch.nn.Linear(6, 3).double()
        phi = torch.randn(32, 6, generator=generator, dtype=torch.float64)
        loss = KernelPCALoss()(linear(phi), linear.weight)
        shifted = KernelPCALoss()(linear(phi) + 10.0, linear.weight)
        torch.testing.assert_close(loss, shifted)
        loss.backward()
        assert linear.bias.grad is not None
        assert linear.bias.grad.abs().max().item() < 1e-12

    @pytest.mark.parametrize("use_phi", [False, True])
    def test_forward__principal_solution_is_minimal(self, use_phi: bool) -> None:
        h, r = 3, len(EIGENVALUES)
        eigenvectors = _random_orthogonal(r, seed=3)
        phi = _features(200, eigenvectors, seed=3, mean=2.0)
        loss_fn = KernelPCALoss()

        def loss_at(weight: Tensor) -> float:
            return loss_fn(phi @ weight.T, weight, phi if use_phi else None).item()

        principal = eigenvectors[:, :h].T
        best = loss_at(principal)
        expected = EIGENVALUES[h:].sum() if use_phi else -EIGENVALUES[:h].sum()
        assert best == pytest.approx(float(expected), abs=1e-10)
        # Invariant under rotations of the output space.
        rotated = _random_orthogonal(h, seed=4) @ principal
        assert loss_at(rotated) == pytest.approx(best, abs=1e-10)
        for seed in range(20):
            random_orthonormal = _random_orthogonal(r, seed=100 + seed)[:h]
            assert loss_at(random_orthonormal) > best + 1e-3
        generator = torch.Generator().manual_seed(5)
        for scale in (1e-3, 1e-2, 1e-1, 1.0):
            for _ in range(5):
                direction = torch.randn(h, r, generator=generator, dtype=torch.float64)
                assert loss_at(principal + scale * direction) > best

    def test_forward__identity_map_is_minimal_for_diagonal_second_moment(self) -> None:
        # Nyström coordinates: the (uncentred) second moment of the features on the
        # landmarks is diagonal and decreasing, so A_0 = [I_h 0] is the minimiser.
        h, r = 2, len(EIGENVALUES)
        generator = torch.Generator().manual_seed(6)
        q, _ = torch.linalg.qr(
            torch.randn(r, r, generator=generator, dtype=torch.float64)
        )
        phi = q * (len(EIGENVALUES) * EIGENVALUES).sqrt()
        assert torch.allclose(phi.T @ phi / r, torch.diag(EIGENVALUES))
        loss_fn = KernelPCALoss(center=False)
        identity = torch.eye(h, r, dtype=torch.float64)
        best = loss_fn(phi @ identity.T, identity).item()
        assert best == pytest.approx(-float(EIGENVALUES[:h].sum()), abs=1e-10)
        for seed in range(20):
            other = _random_orthogonal(r, seed=200 + seed)[:h]
            assert loss_fn(phi @ other.T, other).item() > best + 1e-3

    def test_forward__gradient_descent_finds_principal_subspace(self) -> None:
        torch.manual_seed(7)
        h, r = 2, len(EIGENVALUES)
        eigenvectors = _random_orthogonal(r, seed=7)
        phi = _features(256, eigenvectors, seed=7, mean=-1.0)
        model = torch.nn.Linear(r, h).double()  # f = A phi + gamma
        with torch.no_grad():
            model.weight.mul_(0.1)
        loss_fn = KernelPCALoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.03)
        for _ in range(600):
            optimizer.zero_grad()
            loss_fn(model(phi), model.weight).backward()
            optimizer.step()
        a = model.weight.detach()
        projector = eigenvectors[:, :h] @ eigenvectors[:, :h].T
        torch.testing.assert_close(
            a @ a.T, torch.eye(h, dtype=torch.float64), atol=1e-6, rtol=0
        )
        torch.testing.assert_close(a.T @ a, projector, atol=1e-6, rtol=0)

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

    def test_forward__rejects_batch_of_one(self) -> None:
        with pytest.raises(ValueError, match="at least 2"):
            KernelPCALoss()(torch.randn(1, 2), torch.randn(2, 5))

    def test_forward__rejects_non_matrix(self) -> None:
        with pytest.raises(ValueError, match="batch_size, h"):
            KernelPCALoss()(torch.randn(4), torch.randn(2, 5))

    def test_forward__rejects_weight_shape(self) -> None:
        with pytest.raises(ValueError, match="weight"):
            KernelPCALoss()(torch.randn(4, 2), torch.randn(3, 5))
        with pytest.raises(ValueError, match="weight"):
            KernelPCALoss()(torch.randn(4, 2), torch.randn(2))

    def test_forward__rejects_phi_shape(self) -> None:
        with pytest.raises(ValueError, match="phi"):
            KernelPCALoss()(torch.randn(4, 2), torch.randn(2, 5), torch.randn(4, 6))

    def test_forward__rejects_integer_input(self) -> None:
        with pytest.raises(TypeError, match="dtype"):
            KernelPCALoss()(torch.ones(4, 2, dtype=torch.long), torch.randn(2, 5))
