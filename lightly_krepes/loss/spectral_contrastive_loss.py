"""Spectral contrastive loss (HaoChen et al., 2021).

- [0] KREPES, 2025, arXiv 2509.24467
- [1] HaoChen, Wei, Gaidon, Ma, 2021, Provable Guarantees for Self-Supervised Deep
  Learning with Spectral Contrastive Loss, arXiv 2106.04156
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from lightly.utils import dist
from torch import Tensor, nn

from lightly_krepes._validation import check_floating, check_positive


def _check_view_pair(z_a: Tensor, z_b: Tensor) -> None:
    """Checks two batches of view representations of shape (B, h) with B >= 2.

    Args:
        z_a: Tensor of shape (B, h), the representations of the first views.
        z_b: Tensor of shape (B, h), the representations of the second views.

    Raises:
        TypeError: If a tensor is not floating point.
        ValueError: If the shapes differ, are not 2-D or the batch size is below 2.
    """
    check_floating(z_a, "z_a")
    check_floating(z_b, "z_b")
    if z_a.dim() != 2 or z_b.dim() != 2:
        raise ValueError(
            f"z_a and z_b must have shape (batch_size, dim), got {tuple(z_a.shape)} "
            f"and {tuple(z_b.shape)}. Flatten the representations first, e.g. "
            f"z.flatten(start_dim=1)."
        )
    if z_a.shape != z_b.shape:
        raise ValueError(
            f"z_a and z_b must have the same shape, got {tuple(z_a.shape)} and "
            f"{tuple(z_b.shape)}. Row i of both must hold two views of sample i."
        )
    if z_a.shape[0] < 2:
        raise ValueError(
            f"The batch must contain at least 2 samples so that negative pairs "
            f"exist, got batch size {z_a.shape[0]}."
        )


class SpectralContrastiveLoss(nn.Module):
    """Spectral contrastive loss ``-2 E[f(x)^T f(x+)] + E[(f(x)^T f(x'))^2]``.

    For a batch of B positive pairs ``(z_a[i], z_b[i])`` (two augmented views of
    sample i) the loss is

        L = -2 / B * sum_i <z_a[i], z_b[i]>
            + 1 / (B (B - 1)) * sum_{i != j} <z_a[i], z_b[j]>^2,

    i.e. positives are the matching rows and negatives all off-diagonal pairs across
    the two views, as in the authors' implementation [1]. The loss is symmetric in
    the two views. Minimising its population version is equivalent to a low-rank
    approximation of the normalised adjacency matrix of the augmentation graph [1],
    which is why KREPES lists it among the kernel objectives [0]. Unlike SimCLR the
    representations are not normalised; ``max_norm`` optionally clips row norms as
    the authors do (their ``mu`` is ``max_norm ** 2``).

    Args:
        max_norm: If set, rows with a Euclidean norm above ``max_norm`` are rescaled
            to norm ``max_norm`` before the loss (keeps the quadratic term bounded
            early in training). None (the default) uses the representations as
            they are. On a backbone without a head at SGD lr 0.06, set it: in
            ``benchmarks/training`` the unclipped loss diverged for a CNN and a
            ``KernelBackbone``; with ``max_norm=3`` both stayed finite and the
            kernel trained (the CNN still trained poorly).
        gather_distributed: If True, negatives are gathered from all processes:
            every local row is contrasted with the rows of all processes (gradients
            flow through :func:`lightly.utils.dist.gather`), so the loss equals the
            single-process loss on the global batch.

    Raises:
        ValueError: If ``max_norm`` is not positive, or ``gather_distributed`` is
            True but torch.distributed is not available.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] HaoChen et al., 2021, Provable Guarantees for Self-Supervised Deep
          Learning with Spectral Contrastive Loss, arXiv 2106.04156

    Examples:
        >>> loss_fn = SpectralContrastiveLoss()
        >>> z_a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> loss_fn(z_a, z_a)  # -2 * 1 + (0 + 0) / 2
        tensor(-2.)
    """

    def __init__(
        self, max_norm: float | None = None, gather_distributed: bool = False
    ) -> None:
        super().__init__()
        if max_norm is not None:
            check_positive(max_norm, "max_norm")
        if gather_distributed and not torch_dist.is_available():
            raise ValueError(
                "gather_distributed is True but torch.distributed is not available. "
                "Set gather_distributed=False or install a torch build with "
                "distributed support."
            )
        self.max_norm = None if max_norm is None else float(max_norm)
        self.gather_distributed = gather_distributed

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """Computes the spectral contrastive loss of a batch of positive pairs.

        Args:
            z_a: Tensor of shape (B, h), representations of the first views.
            z_b: Tensor of shape (B, h), representations of the second views; row i
                is the positive of ``z_a[i]``.

        Returns:
            Scalar tensor, the loss averaged over positive and negative pairs.

        Raises:
            TypeError: If the inputs are not floating point tensors.
            ValueError: If the shapes differ, are not (B, h), or B < 2.
        """
        _check_view_pair(z_a, z_b)
        if self.max_norm is not None:
            z_a = _clip_norm(z_a, self.max_norm)
            z_b = _clip_norm(z_b, self.max_norm)
        batch_size = z_a.shape[0]
        positive = (z_a * z_b).sum(dim=1).mean()

        if self.gather_distributed and dist.world_size() > 1:
            z_a_all = torch.cat(dist.gather(z_a), dim=0)
            z_b_all = torch.cat(dist.gather(z_b), dim=0)
            own = dist.eye_rank(batch_size, device=z_a.device).to(z_a.device)
            num_negatives = batch_size * (z_a_all.shape[0] - 1)
            sq_ab = (z_a @ z_b_all.T).pow(2).masked_fill(own, 0.0).sum()
            sq_ba = (z_b @ z_a_all.T).pow(2).masked_fill(own, 0.0).sum()
            negative = 0.5 * (sq_ab + sq_ba) / num_negatives
        else:
            own = torch.eye(batch_size, dtype=torch.bool, device=z_a.device)
            num_negatives = batch_size * (batch_size - 1)
            negative = (z_a @ z_b.T).pow(2).masked_fill(own, 0.0).sum() / num_negatives
        return -2.0 * positive + negative

    def extra_repr(self) -> str:
        return f"max_norm={self.max_norm}, gather_distributed={self.gather_distributed}"


def _clip_norm(z: Tensor, max_norm: float) -> Tensor:
    norms: Tensor = torch.linalg.vector_norm(z, dim=1, keepdim=True)
    scale: Tensor = (
        norms.clamp_min(torch.finfo(z.dtype).tiny).reciprocal().mul(max_norm)
    )
    return z * scale.clamp(max=1.0)
