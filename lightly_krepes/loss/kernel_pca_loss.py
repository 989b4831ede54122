"""Kernel PCA as a training loss on the linear map of a Nyström kernel machine.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Schölkopf, Smola, Müller, 1998, Nonlinear Component Analysis as a Kernel
  Eigenvalue Problem, Neural Computation 10(5)
- [2] Baldi, Hornik, 1989, Neural Networks and Principal Component Analysis:
  Learning from Examples Without Local Minima, Neural Networks 2(1)
- [3] Xu, 1993, Least Mean Square Error Reconstruction Principle for
  Self-Organizing Neural-Nets, Neural Networks 6(5)
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from lightly.utils import dist
from torch import Tensor, nn

from lightly_krepes._validation import check_floating


class KernelPCALoss(nn.Module):
    """Kernel PCA objective for representations ``z = A phi(x) + gamma``.

    KREPES writes a kernel machine as ``f(x) = A phi(x) + gamma`` with ``phi`` the
    Nyström features (r,) and ``A`` (h, r) the trainable map, e.g. the weight of an
    ``nn.Linear(r, h)`` [0]. Kernel PCA [1] keeps the h directions of largest
    variance of ``phi``; as a loss it is the reconstruction error of the tied linear
    autoencoder ``phi -> A phi -> A^T A phi`` [2]:

        R(A) = E || phi_c - A^T A phi_c ||^2 = tr(C) - 2 tr(M) + tr(M A A^T),

    where ``phi_c`` are the centred features, ``C = E[phi_c phi_c^T]`` their
    covariance and ``M = E[z_c z_c^T] = A C A^T`` the second moment of the centred
    representations ``z_c = A phi_c``. ``tr(C)`` does not depend on A, so
    :meth:`forward` by default returns

        L(z, A) = tr(M (A A^T - 2 I)) = -tr(M) + tr(M (A A^T - I)),

    the negative captured variance plus an orthonormality penalty weighted by the
    representations' second moment. It needs only the batch of representations and
    ``A``; pass the features ``phi`` as well to get ``R(A)`` itself (non-negative,
    same gradient in A).

    Minimisers. Write ``A = Q S V^T`` (SVD, V with orthonormal columns v_i). Then
    ``R(A) = tr(C) - sum_i (2 s_i^2 - s_i^4) v_i^T C v_i``. Since
    ``2 s^2 - s^4 <= 1`` with equality iff ``s = 1``, and ``sum_i v_i^T C v_i`` is at
    most the sum of the h largest eigenvalues of C (Ky Fan), ``R(A) >=`` the sum of
    the remaining eigenvalues, with equality exactly when all singular values are 1
    and the rows of A span the top-h eigenspace of C (if ``lambda_h > lambda_{h+1}``
    and ``lambda_h > 0``): ``A = Q U_h^T`` with Q (h, h) orthogonal. In coordinates
    where C is diagonal with decreasing entries this is the principal-component
    solution ``A = [I_h 0]``, unique up to the rotation Q, which no rotation-invariant
    objective can fix. The other critical points (rows spanning other
    eigenvectors, or zero singular values) are saddles [2, 3], so gradient descent
    from a random start converges to the principal subspace.

    A loss of the representations alone cannot do this in general: for Gaussian
    features z is distributed as ``N(0, M)``, and every M is reached by
    ``A = M^{1/2} O C^{-1/2}`` for *any* O with orthonormal rows, so a function of z
    alone cannot tell the principal subspace from any other. That is why ``A`` is
    an input.

    Centring. With ``center=True`` (default) the batch means of z (and phi) are
    subtracted, which removes the offset gamma exactly (``z - mean(z) = A (phi -
    mean(phi))``), so z may be the full output ``A phi + gamma``; gamma then gets no
    gradient. This is kernel PCA with the usual feature-space centring [1]. With
    ``center=False`` the uncentred second moment is used (KREPES's principal-
    component initialisation ``A_0 = [I_h 0]`` is the exact minimiser on the
    landmarks, whose uncentred Nyström features have second moment
    ``diag(lambda) / m``), but then z must be exactly ``phi @ A.T`` with no offset:
    with a trainable offset the objective is unbounded below.

    Args:
        center: If True, centre z (and phi) with their batch mean (see above).
        gather_distributed: If True, z (and phi) are gathered from all processes
            before the moments are computed, so the loss is the single-process loss
            on the global batch.

    Raises:
        ValueError: If ``gather_distributed`` is True but torch.distributed is not
            available.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Schölkopf, Smola, Müller, 1998, Nonlinear Component Analysis as a
          Kernel Eigenvalue Problem, Neural Computation 10(5)
        - [2] Baldi, Hornik, 1989, Neural Networks and Principal Component Analysis:
          Learning from Examples Without Local Minima, Neural Networks 2(1)
        - [3] Xu, 1993, Least Mean Square Error Reconstruction Principle for
          Self-Organizing Neural-Nets, Neural Networks 6(5)

    Examples:
        >>> linear = torch.nn.Linear(5, 2)  # A = linear.weight, gamma = linear.bias
        >>> phi = torch.randn(32, 5)
        >>> loss_fn = KernelPCALoss()
        >>> loss = loss_fn(linear(phi), linear.weight)
        >>> loss.backward()
        >>> bool(linear.bias.grad.abs().max() < 1e-6)  # centring removes gamma
        True
    """

    def __init__(self, center: bool = True, gather_distributed: bool = False) -> None:
        super().__init__()
        if gather_distributed and not torch_dist.is_available():
            raise ValueError(
                "gather_distributed is True but torch.distributed is not available. "
                "Set gather_distributed=False or install a torch build with "
                "distributed support."
            )
        self.center = center
        self.gather_distributed = gather_distributed

    def forward(self, z: Tensor, weight: Tensor, phi: Tensor | None = None) -> Tensor:
        """Computes the kernel PCA loss of a batch of representations.

        For the gradient in A to be the gradient of the objective, z must be
        computed from ``weight`` in the same graph (``z = phi @ weight.T + gamma``),
        e.g. the backbone output and the backbone's weight.

        Args:
            z: Tensor of shape (B, h), representations ``A phi + gamma`` (gamma
                must be zero if ``center=False``).
            weight: Tensor of shape (h, r), the map A (``nn.Linear(r, h).weight``).
            phi: Optional tensor of shape (B, r), the features z was computed from.
                If given, the loss is the reconstruction error
                ``mean_b || phi_c[b] - A^T z_c[b] ||^2`` itself; otherwise it is that
                error minus the constant ``mean_b || phi_c[b] ||^2``.

        Returns:
            Scalar tensor. Without phi, its minimum over A is minus the sum of the
            h largest eigenvalues of the feature covariance; with phi, the sum of
            the others.

        Raises:
            TypeError: If an input is not a floating point tensor.
            ValueError: If the shapes do not match or the batch size is below 2.
        """
        check_floating(z, "z")
        check_floating(weight, "weight")
        if z.dim() != 2:
            raise ValueError(
                f"z must have shape (batch_size, h), got {tuple(z.shape)}. Flatten "
                f"the representations first, e.g. z.flatten(start_dim=1)."
            )
        if z.shape[0] < 2:
            raise ValueError(
                f"The batch must contain at least 2 samples to estimate the "
                f"representations' second moment, got batch size {z.shape[0]}."
            )
        if weight.dim() != 2 or weight.shape[0] != z.shape[1]:
            raise ValueError(
                f"weight must be the (h, r) map A with h = z.shape[1] = {z.shape[1]} "
                f"(the weight of nn.Linear(r, h)), got shape {tuple(weight.shape)}."
            )
        if phi is not None:
            check_floating(phi, "phi")
            if phi.shape != (z.shape[0], weight.shape[1]):
                raise ValueError(
                    f"phi must have shape (batch_size, r) = "
                    f"({z.shape[0]}, {weight.shape[1]}), got {tuple(phi.shape)}."
                )

        if self.gather_distributed and dist.world_size() > 1:
            z = torch.cat(dist.gather(z), dim=0)
            if phi is not None:
                phi = torch.cat(dist.gather(phi), dim=0)
        if self.center:
            z = z - z.mean(dim=0)
            if phi is not None:
                phi = phi - phi.mean(dim=0)

        if phi is not None:
            return (phi - z @ weight).pow(2).sum(dim=1).mean()
        second_moment = z.T @ z / z.shape[0]
        eye = torch.eye(z.shape[1], dtype=weight.dtype, device=weight.device)
        return (second_moment * (weight @ weight.T - 2.0 * eye)).sum()

    def extra_repr(self) -> str:
        return f"center={self.center}, gather_distributed={self.gather_distributed}"
