"""The kernel backbone: a trainable linear map on a Nyström feature map.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lightly_krepes._inputs import collect_pool
from lightly_krepes.kernels.base import Kernel
from lightly_krepes.landmarks import select_landmarks
from lightly_krepes.nystrom import Nystrom
from lightly_krepes.nystrom.nystrom import default_rcond

LandmarkMethod = Literal["uniform", "kmeans++", "rpcholesky", "leverage"]
DEFAULT_RIDGE = 1e-3


Init = Literal["whitened", "pc"]


def coordinate_scale(eigenvalues: Tensor, num_landmarks: int, ridge: float) -> Tensor:
    """Per-coordinate preconditioner ``s_i = sqrt(m lam_i) / (lam_i + ridge lam_1)``.

    Multiplying the Nyström coordinates ``phi_i = lam_i^{-1/2} u_i^T k_m(x)`` by
    ``s_i`` gives ``sqrt(m) u_i^T k_m(x) / (lam_i + ridge lam_1)``: coordinates
    whose mean square over the landmarks is ``(lam_i / (lam_i + ridge lam_1))^2``,
    i.e. about 1 for every direction well above the ridge (whitened, so plain SGD
    moves all of them at one rate) and smoothly damped below it (a Tikhonov
    filter, so directions at the noise level of the Gram matrix are not amplified).
    The preconditioner of Falkon [1] plays the same role for kernel ridge
    regression; KREPES v1 adapts it to SSL [0].

    Args:
        eigenvalues: Tensor of shape (r,), the kept eigenvalues, descending.
        num_landmarks: Number of landmarks m.
        ridge: Relative ridge; must be positive.

    Returns:
        Tensor of shape (r,) in the eigenvalues' dtype.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Rudi, Carratino, Rosasco, 2017, FALKON: An Optimal Large Scale Kernel
          Method, NeurIPS

    Examples:
        >>> coordinate_scale(torch.tensor([4.0, 1.0]), 4, ridge=0.0)
        tensor([1., 2.])
    """
    lam = eigenvalues.double()
    scale = (num_landmarks * lam).sqrt() / (lam + ridge * lam[0])
    return scale.to(eigenvalues.dtype)


class KernelBackbone(nn.Module):
    """``f(x) = A psi(x) + gamma``: a kernel machine with trainable A and gamma.

    ``psi(x) = s * phi(x)`` are the preconditioned coordinates of the Nyström map
    ``phi`` of ``kernel`` at ``landmarks`` (frozen; ``s`` from
    :func:`coordinate_scale`), and ``A`` (``out_dim x r``) and ``gamma``
    (``out_dim``) are the only trainable parameters, held by ``self.linear``.
    Equivalently

        f(x) = sum_j alpha_j k(l_j, x) + gamma,    alpha = P A^T,
        P = U_r diag(sqrt(m) / (lam_r + ridge lam_1))    (``feature_projection``)

    so every representation is an exact sum of per-landmark contributions
    (:meth:`contributions`) with representer weights ``alpha``
    (:attr:`representer_weights`). A network inside an
    :class:`~lightly_krepes.kernels.EmpiricalNTK` is frozen and exposes no
    parameters, so an optimiser built from ``backbone.parameters()`` trains A and
    gamma only.

    Why preconditioned: the raw coordinates ``phi_i`` have variances ``~ lam_i``
    spread over the whole spectrum (an untrained eNTK's top eigenvalue holds most
    of the trace), so SGD at Lightly's learning rates moves A only along the top
    directions and BatchNorm heads divide by near-zero spreads. ``psi`` has unit
    mean square on the landmarks along every direction above ``ridge * lam_1``, so
    Lightly's losses, heads and optimiser settings apply unchanged.

    Initialisation is the principal-component solution in these coordinates:
    ``init="whitened"`` (default) sets ``A_0 = [I 0]``, the top ``out_dim``
    kernel-PCA directions with equal spread; ``init="pc"`` scales them to the
    variances ``lam_i / lam_1`` of plain kernel PCA. ``gamma_0 = 0``.

    Args:
        kernel: The kernel, e.g. ``EmpiricalNTK(network)`` or ``RBF(...)``.
        landmarks: Tensor of shape (m, ...), samples shaped like the inputs.
        out_dim: Output dimension h; at most the Nyström rank.
        rank: Nyström rank r (default: all eigenpairs above the cut-off).
        rcond: Relative eigenvalue cut-off of the Nyström map; None uses
            ``m * eps(float64)`` (the landmark Gram is formed in float64 and the
            preconditioner damps directions below ``ridge``, so they are kept
            without amplifying noise).
        bias: Whether to learn gamma.
        ridge: Relative ridge of the preconditioner, see :func:`coordinate_scale`.
        init: ``"whitened"`` or ``"pc"``, see above.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Rudi, Carratino, Rosasco, 2017, FALKON, NeurIPS

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(32, 5), out_dim=8)
        >>> backbone(torch.randn(4, 5)).shape
        torch.Size([4, 8])
        >>> [name for name, _ in backbone.named_parameters()]
        ['linear.weight', 'linear.bias']
    """

    coordinate_scale: Tensor
    ridge: Tensor
    landmark_indices_: Tensor

    def __init__(
        self,
        kernel: Kernel,
        landmarks: Tensor,
        out_dim: int,
        *,
        rank: int | None = None,
        rcond: float | None = None,
        bias: bool = True,
        ridge: float = DEFAULT_RIDGE,
        init: Init = "whitened",
        landmark_indices: Tensor | None = None,
    ) -> None:
        super().__init__()
        if int(out_dim) != out_dim or out_dim < 1:
            raise ValueError(f"out_dim must be a positive integer, got {out_dim}.")
        if not (0 < ridge < float("inf")):
            raise ValueError(
                f"ridge must be finite and positive, got {ridge}. It is relative to "
                f"the largest eigenvalue; 1e-3 is a good start."
            )
        if init not in ("whitened", "pc"):
            raise ValueError(f"init must be 'whitened' or 'pc', got {init!r}.")
        m = int(landmarks.shape[0]) if landmarks.dim() > 0 else 0
        if rcond is None and m > 0:
            rcond = default_rcond(m, torch.float64)
        self.nystrom = Nystrom(kernel, landmarks, rank=rank, rcond=rcond)
        r = self.nystrom.rank
        if out_dim > r:
            raise ValueError(
                f"out_dim={out_dim} exceeds the rank {r} of the Nyström map (the "
                f"numerical rank of the {self.nystrom.num_landmarks} landmarks' Gram "
                f"matrix at rcond={self.nystrom.rcond:.3g}). Use out_dim <= {r}; a "
                f"linear kernel's rank is at most the input dimension, and a kernel "
                f"with a fast-decaying spectrum gains rank from more diverse "
                f"landmarks (select_landmarks(method='rpcholesky')) or a smaller rcond."
            )
        self.init = init
        dtype = self.nystrom.projection.dtype
        device = self.nystrom.projection.device
        self.register_buffer("ridge", torch.tensor(float(ridge), dtype=torch.float64))
        self.register_buffer(
            "coordinate_scale",
            coordinate_scale(self.nystrom.eigenvalues, m, ridge).to(device),
        )
        if landmark_indices is None:
            indices = torch.full((m,), -1, dtype=torch.long)
        else:
            indices = torch.as_tensor(landmark_indices, dtype=torch.long).flatten()
            if indices.shape != (m,):
                raise ValueError(
                    f"landmark_indices must hold one index per landmark ({m}), got "
                    f"shape {tuple(indices.shape)}."
                )
        self.register_buffer("landmark_indices_", indices.to(device))
        # Built on "meta" and materialised empty: nn.Linear's random init would be
        # overwritten by reset_parameters anyway and would advance the global RNG.
        self.linear = nn.Linear(
            r, out_dim, bias=bias, dtype=dtype, device="meta"
        ).to_empty(device=device)
        self.reset_parameters()

    @classmethod
    def from_state_dict(
        cls, kernel: Kernel, state_dict: dict[str, Tensor], **kwargs: Any
    ) -> KernelBackbone:
        """Restores a saved backbone without the data it was built from.

        The landmarks, Nyström buffers and weights all live in the state dict (load
        it with ``torch.load(path, weights_only=True)``); only the kernel (for an
        eNTK: the frozen network) has to be given again. Buffers the kernel saved
        (an eNTK's network weights, a ``PatchKernel``'s filters) are loaded into a
        copy of it, so a kernel of the same structure is enough.

        Args:
            kernel: The kernel the backbone was built with.
            state_dict: ``backbone.state_dict()`` of the saved backbone.
            **kwargs: Passed on to :class:`KernelBackbone` (e.g. ``init``).

        Returns:
            The backbone, equal to the saved one.

        Examples:
            >>> from lightly_krepes.kernels import RBF
            >>> saved = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=4)
            >>> restored = KernelBackbone.from_state_dict(RBF(2.0), saved.state_dict())
            >>> x = torch.randn(5, 3)
            >>> torch.equal(restored(x), saved(x))
            True
        """
        missing = [
            key
            for key in ("nystrom.landmarks", "nystrom.projection", "linear.weight")
            if key not in state_dict
        ]
        if missing:
            raise KeyError(
                f"state_dict lacks {missing}; pass KernelBackbone.state_dict() of a "
                f"saved backbone."
            )
        prefix = "nystrom.kernel."
        saved_kernel = {
            key[len(prefix) :]: value
            for key, value in state_dict.items()
            if key.startswith(prefix)
        }
        if saved_kernel:
            # The kernel's own buffers (a PatchKernel's filters, an eNTK's frozen
            # weights) are saved too: a kernel of the same structure restores them.
            kernel = copy.deepcopy(kernel)
            try:
                kernel.load_state_dict(saved_kernel)
            except RuntimeError as error:
                raise ValueError(
                    "The saved kernel's buffers do not fit the kernel given "
                    f"({type(kernel).__name__}): {error} Pass a kernel built like "
                    "the saved one (same class and shapes)."
                ) from error
        weight = state_dict["linear.weight"]
        backbone = cls(
            kernel,
            state_dict["nystrom.landmarks"],
            out_dim=int(weight.shape[0]),
            rank=int(state_dict["nystrom.projection"].shape[1]),
            rcond=0.0,
            bias="linear.bias" in state_dict,
            ridge=float(state_dict.get("ridge", torch.tensor(DEFAULT_RIDGE))),
            **kwargs,
        )
        backbone.load_state_dict(state_dict)
        return backbone

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
            The backbone; ``backbone.landmark_indices`` holds the landmarks'
            positions in ``data``.
        """
        pool, pool_indices = collect_pool(data, pool_size, seed)
        indices = select_landmarks(
            pool, kernel, num_landmarks, method=method, seed=seed, progress=progress
        )
        return cls(
            kernel,
            pool[indices],
            out_dim,
            landmark_indices=pool_indices[indices],
            **kwargs,
        )

    def reset_parameters(self) -> None:
        """Sets the principal-component initialisation (see ``init``), ``gamma = 0``."""
        weight = self.linear.weight
        h = weight.shape[0]
        with torch.no_grad():
            weight.zero_()
            diag = torch.ones(h, dtype=torch.float64)
            if self.init == "pc":
                lam = self.nystrom.eigenvalues[:h].double()
                mean_square = lam / (lam + float(self.ridge) * lam[0])
                diag = (lam / lam[0]).sqrt() / mean_square
            weight[:, :h] = torch.diag(diag).to(weight)
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
        for name in ("coordinate_scale", "landmark_indices_"):
            buffer = state_dict.get(prefix + name)
            current = getattr(self, name)
            if isinstance(buffer, Tensor) and buffer.shape != current.shape:
                setattr(self, name, current.new_empty(buffer.shape))
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
    def landmark_indices(self) -> Tensor | None:
        """Positions of the landmarks in the data they were selected from, or None."""
        if bool((self.landmark_indices_ < 0).any()):
            return None
        return self.landmark_indices_

    @property
    def feature_projection(self) -> Tensor:
        """``P`` of shape (m, r) with ``features(x) = k_m(x) P``."""
        return self.nystrom.projection * self.coordinate_scale

    @property
    def representer_weights(self) -> Tensor:
        """``alpha = P A^T``, shape (m, out_dim)."""
        return self.feature_projection @ self.linear.weight.T

    def features(self, x: Tensor) -> Tensor:
        """The preconditioned Nyström coordinates ``psi(x)`` that A acts on.

        Args:
            x: Tensor of shape (B, ...) with samples shaped like the landmarks.

        Returns:
            Tensor of shape (B, r).
        """
        return self.nystrom(x) * self.coordinate_scale

    def forward_features(self, features: Tensor) -> Tensor:
        """Representations from precomputed coordinates (see :meth:`features`).

        Training over cached coordinates costs one GEMM per batch instead of a
        kernel evaluation (see :func:`~lightly_krepes.backbone.cache_views`).

        Args:
            features: Tensor of shape (B, r).

        Returns:
            Tensor of shape (B, out_dim).
        """
        if features.dim() != 2 or features.shape[1] != self.linear.in_features:
            raise ValueError(
                f"features must have shape (batch_size, {self.linear.in_features}) "
                f"(backbone.features(x)), got {tuple(features.shape)}."
            )
        z: Tensor = self.linear(features)
        return z

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
        return self.forward_features(self.features(x))

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
        return f"ridge={float(self.ridge):.3g}, init={self.init!r}"
