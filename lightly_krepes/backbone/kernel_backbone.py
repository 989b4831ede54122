"""The kernel backbone: a trainable linear map on a Nyström feature map.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lightly_krepes.backbone.pool import collect_pool
from lightly_krepes.kernels.base import Kernel
from lightly_krepes.landmarks import select_landmarks
from lightly_krepes.nystrom import Nystrom

LandmarkMethod = Literal["uniform", "kmeans++", "rpcholesky", "leverage"]


class KernelBackbone(nn.Module):
    """``f(x) = A (c phi(x)) + gamma``: a kernel machine with trainable A and gamma.

    ``phi`` is the Nyström map of ``kernel`` at ``landmarks`` (frozen), ``c`` a fixed
    feature scale, and ``A`` (``out_dim x r``) and ``gamma`` (``out_dim``) are the
    only trainable parameters, held by ``self.linear``. Equivalently

        f(x) = sum_j alpha_j k(l_j, x) + gamma,    alpha = c U_r lam_r^{-1/2} A^T,

    so every representation is an exact sum of per-landmark contributions
    (:meth:`contributions`) with representer weights ``alpha``
    (:attr:`representer_weights`). A network inside an
    :class:`~lightly_krepes.kernels.EmpiricalNTK` is frozen and exposes no
    parameters, so an optimiser built from ``backbone.parameters()`` trains A and
    gamma only.

    Initialisation is the principal-component solution ``A_0 = [I 0]``,
    ``gamma_0 = 0``: ``f`` starts as the top ``out_dim`` Nyström kernel-PCA
    directions, and on the landmarks ``f(L)^T f(L) = c^2 diag(lam_1..lam_out_dim)``.

    The feature scale defaults to ``c = 1 / sqrt(mean_j k(l_j, l_j))``, which makes
    ``|c phi(x)|^2`` about 1 whatever the kernel's magnitude (eNTK values are often
    in the thousands) and is exactly 1 for normalised kernels, so Lightly's losses
    and learning rates apply unchanged.

    Args:
        kernel: The kernel, e.g. ``EmpiricalNTK(network)`` or ``RBF(...)``.
        landmarks: Tensor of shape (m, ...), samples shaped like the inputs.
        out_dim: Output dimension h; at most the numerical rank of ``K_mm``.
        rank: Nyström rank r (default: all eigenpairs above the cut-off).
        rcond: Relative eigenvalue cut-off of the Nyström map.
        bias: Whether to learn gamma.
        feature_scale: The scale c; None chooses it from the landmarks as above.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(32, 5), out_dim=8)
        >>> backbone(torch.randn(4, 5)).shape
        torch.Size([4, 8])
        >>> [name for name, _ in backbone.named_parameters()]
        ['linear.weight', 'linear.bias']
    """

    feature_scale: Tensor

    def __init__(
        self,
        kernel: Kernel,
        landmarks: Tensor,
        out_dim: int,
        *,
        rank: int | None = None,
        rcond: float | None = None,
        bias: bool = True,
        feature_scale: float | None = None,
    ) -> None:
        super().__init__()
        if int(out_dim) != out_dim or out_dim < 1:
            raise ValueError(f"out_dim must be a positive integer, got {out_dim}.")
        self.nystrom = Nystrom(kernel, landmarks, rank=rank, rcond=rcond)
        r = self.nystrom.rank
        if out_dim > r:
            raise ValueError(
                f"out_dim={out_dim} exceeds the rank {r} of the Nyström map (the "
                f"numerical rank of the {self.nystrom.num_landmarks} landmarks' Gram "
                f"matrix at rcond={self.nystrom.rcond:.3g}). Use out_dim <= {r}, more "
                f"landmarks, or a kernel of higher rank (a linear kernel's rank is at "
                f"most the input dimension)."
            )
        if feature_scale is None:
            with torch.no_grad():
                mean_diag = float(kernel.diag(self.nystrom.landmarks).double().mean())
            feature_scale = 1.0 / math.sqrt(mean_diag)
        elif not (0 < feature_scale < float("inf")):
            raise ValueError(
                f"feature_scale must be finite and positive, got {feature_scale}."
            )
        dtype = self.nystrom.projection.dtype
        device = self.nystrom.projection.device
        self.register_buffer(
            "feature_scale", torch.tensor(feature_scale, dtype=dtype, device=device)
        )
        # Built on "meta" and materialised empty: nn.Linear's random init would be
        # overwritten by reset_parameters anyway and would advance the global RNG.
        self.linear = nn.Linear(
            r, out_dim, bias=bias, dtype=dtype, device="meta"
        ).to_empty(device=device)
        self.reset_parameters()

    @classmethod
    def from_data(
        cls,
        kernel: Kernel,
        data: Tensor | Dataset[Any] | Iterable[Any],
        num_landmarks: int,
        out_dim: int,
        *,
        method: LandmarkMethod = "rpcholesky",
        pool_size: int | None = None,
        seed: int = 0,
        progress: bool = False,
        **kwargs: Any,
    ) -> KernelBackbone:
        """Builds a backbone whose landmarks are selected from data.

        Args:
            kernel: The kernel.
            data: A tensor of shape (n, ...), a dataset (items may be tensors,
                ``(input, label, ...)`` tuples or Lightly multi-view items, of which
                the first view is used) or a loader of such batches.
            num_landmarks: Number of landmarks m.
            out_dim: Output dimension.
            method: Landmark selection method of
                :func:`~lightly_krepes.landmarks.select_landmarks`.
            pool_size: Number of samples to select from (a seeded subset of a
                dataset, the first batches of a loader); None uses all.
            seed: Seed of the pool and the selection.
            progress: Show a progress bar during selection.
            **kwargs: Passed on to :class:`KernelBackbone`.

        Returns:
            The backbone.
        """
        pool = collect_pool(data, pool_size, seed)
        indices = select_landmarks(
            pool, kernel, num_landmarks, method=method, seed=seed, progress=progress
        )
        return cls(kernel, pool[indices], out_dim, **kwargs)

    def reset_parameters(self) -> None:
        """Sets the principal-component initialisation ``A = [I 0]``, ``gamma = 0``."""
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(*self.linear.weight.shape))
            if self.linear.bias is not None:
                self.linear.bias.zero_()

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A saved backbone may have another Nyström rank than the one it is loaded
        # into (the map adopts the saved landmarks); the linear map follows it.
        saved = state_dict.get(prefix + "linear.weight")
        if isinstance(saved, Tensor) and saved.shape != self.linear.weight.shape:
            self.linear = nn.Linear(
                saved.shape[1],
                saved.shape[0],
                bias=self.linear.bias is not None,
                dtype=saved.dtype,
                device=self.linear.weight.device,
            )
        super()._load_from_state_dict(
            state_dict,
            prefix,
            local_metadata,
            strict,
            missing_keys,
            unexpected_keys,
            error_msgs,
        )

    @property
    def out_dim(self) -> int:
        """Output dimension h."""
        return int(self.linear.out_features)

    @property
    def landmarks(self) -> Tensor:
        """The landmarks, shape (m, ...)."""
        return self.nystrom.landmarks

    @property
    def representer_weights(self) -> Tensor:
        """``alpha = c U_r lam_r^{-1/2} A^T``, shape (m, out_dim)."""
        return self.feature_scale * self.nystrom.projection @ self.linear.weight.T

    def __call__(self, x: Tensor) -> Tensor:
        # Typed wrapper around nn.Module.__call__ (hooks still run).
        z: Tensor = super().__call__(x)
        return z

    def forward(self, x: Tensor) -> Tensor:
        """Representations of a batch.

        Args:
            x: Tensor of shape (B, ...) with samples shaped like the landmarks.

        Returns:
            Tensor of shape (B, out_dim).
        """
        z: Tensor = self.linear(self.feature_scale * self.nystrom(x))
        return z

    def contributions(self, x: Tensor) -> Tensor:
        """Per-landmark terms ``alpha_j k(l_j, x)``; they sum with gamma to ``f(x)``.

        Args:
            x: Tensor of shape (B, ...).

        Returns:
            Tensor of shape (B, m, out_dim).
        """
        kernel_rows = self.nystrom.landmark_kernel(x)
        return kernel_rows[:, :, None] * self.representer_weights[None]

    def extra_repr(self) -> str:
        return f"feature_scale={float(self.feature_scale):.4g}"
