"""Nyström feature map of a kernel at a set of landmarks.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Williams, Seeger, 2001, Using the Nyström Method to Speed Up Kernel Machines
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lightly_krepes._inputs import iter_batches
from lightly_krepes._validation import check_samples
from lightly_krepes.kernels.base import FeatureKernel, Kernel
from lightly_krepes.kernels.features import KernelFeatures


@dataclass
class _LandmarkSide:
    """Landmark-side state of the map for feature kernels, derived from buffers.

    ``dense_map`` is the folded factor ``F_dense(L)^T W`` (D, r), so the dense part of
    a query costs one GEMM; factored blocks keep the landmark factors.
    """

    dense_map: Tensor | None
    landmark_features: KernelFeatures


def default_rcond(num_landmarks: int, dtype: torch.dtype) -> float:
    """Default relative eigenvalue cut-off: ``m * eps(dtype)``.

    Eigenvalues of a Gram matrix computed in ``dtype`` carry absolute errors of about
    ``m * eps * lambda_max``; eigenpairs below that are noise, and their inverse
    square roots would amplify it (the rule NumPy uses for ``matrix_rank``).

    Args:
        num_landmarks: Number of landmarks m.
        dtype: Working dtype of the kernel values.

    Returns:
        The relative cut-off.
    """
    return float(num_landmarks * torch.finfo(dtype).eps)


class Nystrom(nn.Module):
    """Nyström feature map ``phi(x) = lam_r^{-1/2} U_r^T k_m(x)``.

    ``K_mm = U diag(lam) U^T`` is the landmark Gram matrix, eigendecomposed in float64
    after exact symmetrisation; eigenvalues below ``rcond * lam_max`` are dropped and
    the top ``rank`` eigenpairs kept. Then ``phi(x)^T phi(y)`` approximates
    ``k(x, y)`` and equals it exactly when ``x`` and ``y`` are landmarks and no
    eigenpair was dropped. The map is stored in the landmarks' dtype.

    For feature kernels (:class:`~lightly_krepes.kernels.EmpiricalNTK`,
    :class:`~lightly_krepes.kernels.Linear` and their normalised versions) the
    dense landmark features are folded into one ``(D, r)`` matrix, so a query costs
    one feature pass (one forward/backward for the eNTK) plus one GEMM; factored
    blocks are contracted against the stored landmark factors. This derived state is
    rebuilt from the buffers after ``.to()`` or ``load_state_dict``.

    Args:
        kernel: The kernel.
        landmarks: Tensor of shape (m, ...), the landmark samples.
        rank: Number of eigenpairs to keep; None keeps all above the cut-off.
        rcond: Relative eigenvalue cut-off in [0, 1); None uses
            :func:`default_rcond` (``m * eps`` of the working dtype).

    Attributes:
        landmarks: Buffer of shape (m, ...).
        eigenvalues: Buffer of shape (r,), descending.
        projection: Buffer ``W = U_r lam_r^{-1/2}`` of shape (m, r), so that
            ``phi(x) = k_m(x) W``.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Williams, Seeger, 2001, NeurIPS

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> landmarks = torch.randn(20, 3)
        >>> nystrom = Nystrom(RBF(lengthscale=2.0), landmarks)
        >>> nystrom(torch.randn(7, 3)).shape[0]
        7
    """

    landmarks: Tensor
    eigenvalues: Tensor
    projection: Tensor

    def __init__(
        self,
        kernel: Kernel,
        landmarks: Tensor,
        rank: int | None = None,
        rcond: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(kernel, Kernel):
            raise TypeError(
                f"kernel must be a lightly_krepes Kernel, got {type(kernel).__name__}."
            )
        check_samples(landmarks, "landmarks")
        m = landmarks.shape[0]
        if m < 1:
            raise ValueError("landmarks must contain at least one sample.")
        if rank is not None and not 1 <= rank <= m:
            raise ValueError(
                f"rank must be between 1 and the number of landmarks ({m}), got {rank}."
            )
        if rcond is not None and not 0.0 <= rcond < 1.0:
            raise ValueError(f"rcond must lie in [0, 1), got {rcond}.")
        self.kernel = kernel
        self.requested_rank = rank
        self.rcond = default_rcond(m, landmarks.dtype) if rcond is None else rcond
        self.register_buffer("landmarks", landmarks.detach().clone())
        self._landmark_side: _LandmarkSide | None = None
        self._landmark_rows: Callable[[Tensor], Tensor] | None = None
        eigenvalues, projection = self._fit()
        self.register_buffer("eigenvalues", eigenvalues)
        self.register_buffer("projection", projection)

    @property
    def num_landmarks(self) -> int:
        """Number of landmarks m."""
        return int(self.landmarks.shape[0])

    @property
    def rank(self) -> int:
        """Number of kept eigenpairs r, the output dimension."""
        return int(self.projection.shape[1])

    def _landmark_features(self) -> KernelFeatures:
        assert isinstance(self.kernel, FeatureKernel)
        with torch.no_grad():
            return self.kernel.features(self.landmarks)

    def _fit(self) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            if self.kernel.has_features:
                feats = self._landmark_features()
                # The Gram of the (m, D) landmark features is formed in float64:
                # it is only m rows, and its small eigenvalues are then resolved to
                # float64 precision, so the cut-off may follow float64 (rcond).
                wide = feats.to(torch.float64)
                gram = wide.cross(wide)
            else:
                feats = None
                gram = self.kernel(self.landmarks)
            gram = 0.5 * (gram + gram.T)
        lam, vecs = torch.linalg.eigh(gram.double())
        lam, vecs = lam.flip(0), vecs.flip(1)
        lam_max = float(lam[0])
        if not lam_max > 0:
            raise ValueError(
                "The landmark Gram matrix has no positive eigenvalue (the kernel is "
                "zero on the landmarks); check the kernel and the landmarks."
            )
        numerical_rank = int((lam > self.rcond * lam_max).sum())
        rank = numerical_rank if self.requested_rank is None else self.requested_rank
        if rank > numerical_rank:
            raise ValueError(
                f"rank={rank} exceeds the numerical rank {numerical_rank} of the "
                f"{self.num_landmarks} x {self.num_landmarks} landmark Gram matrix at "
                f"rcond={self.rcond:.3g}. Lower rank to at most {numerical_rank}, "
                f"lower rcond (working in float64 allows smaller values), or pick "
                f"more diverse landmarks (e.g. select_landmarks(method='rpcholesky'))."
            )
        lam_r, vecs_r = lam[:rank], vecs[:, :rank]
        projection = (vecs_r / lam_r.sqrt()).to(self.landmarks.dtype)
        if feats is not None:
            self._landmark_side = self._fold(feats, projection)
        return lam_r.to(self.landmarks.dtype), projection

    def _fold(self, feats: KernelFeatures, projection: Tensor) -> _LandmarkSide:
        dense_map = None if feats.dense is None else feats.dense.T @ projection
        return _LandmarkSide(dense_map=dense_map, landmark_features=feats)

    def _side(self) -> _LandmarkSide:
        if self._landmark_side is None:
            self._landmark_side = self._fold(self._landmark_features(), self.projection)
        return self._landmark_side

    def _rows(self) -> Callable[[Tensor], Tensor]:
        # Kernels without features: k(., landmarks) with the landmark side computed
        # once where the kernel can (Kernel.against).
        if self._landmark_rows is None:
            self._landmark_rows = self.kernel.against(self.landmarks)
        return self._landmark_rows

    def __getstate__(self) -> dict[str, Any]:
        # The row function is derived state, and a closure: a copy or a pickle
        # rebuilds its own instead of sharing (or failing on) this one's.
        state = self.__dict__.copy()
        state["_landmark_rows"] = None
        return state

    def _apply(self, fn: Any, recurse: bool = True) -> Nystrom:
        # Derived landmark state is rebuilt on the new device/dtype when next needed.
        self._landmark_side = None
        self._landmark_rows = None
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        return self

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
        # A saved map may have another rank or number of landmarks than the one it is
        # loaded into: adopt the saved shapes instead of failing on them.
        for name in ("landmarks", "eigenvalues", "projection"):
            saved = state_dict.get(prefix + name)
            current = getattr(self, name)
            if isinstance(saved, Tensor) and saved.shape != current.shape:
                setattr(self, name, current.new_empty(saved.shape))
        self._landmark_side = None
        self._landmark_rows = None
        super()._load_from_state_dict(
            state_dict,
            prefix,
            local_metadata,
            strict,
            missing_keys,
            unexpected_keys,
            error_msgs,
        )

    def _check_queries(self, x: Tensor) -> None:
        check_samples(x, "x")
        if x.shape[1:] != self.landmarks.shape[1:]:
            raise ValueError(
                f"Inputs must have samples of shape {tuple(self.landmarks.shape[1:])} "
                f"like the landmarks, got {tuple(x.shape[1:])}."
            )
        if x.dtype != self.landmarks.dtype:
            raise TypeError(
                f"Inputs are {x.dtype} but the map works in {self.landmarks.dtype}; "
                f"cast with x.to({self.landmarks.dtype})."
            )

    def landmark_kernel(self, x: Tensor) -> Tensor:
        """Kernel values against the landmarks, ``k_m(x)``.

        Args:
            x: Tensor of shape (n, ...).

        Returns:
            Tensor of shape (n, m) with entries ``k(x_i, l_j)``.
        """
        self._check_queries(x)
        if self.kernel.has_features:
            assert isinstance(self.kernel, FeatureKernel)
            side = self._side()
            c = self.kernel.chunk_size
            return torch.cat(
                [
                    self.kernel._features(x[i : i + c]).cross(side.landmark_features)
                    for i in range(0, x.shape[0], c)
                ]
            )
        rows = self._rows()
        c = self.kernel.chunk_size
        return torch.cat([rows(x[i : i + c]) for i in range(0, x.shape[0], c)])

    def __call__(self, x: Tensor) -> Tensor:
        # Typed wrapper around nn.Module.__call__ (hooks still run).
        phi: Tensor = super().__call__(x)
        return phi

    def forward(self, x: Tensor) -> Tensor:
        """Nyström features of a batch.

        Args:
            x: Tensor of shape (n, ...) with samples shaped like the landmarks.

        Returns:
            Tensor of shape (n, r).
        """
        self._check_queries(x)
        if not self.kernel.has_features:
            # Kernel rows are projected in blocks of ~8 MB: no (n, m) intermediate,
            # and each block is still in cache for the GEMM (~1.4x end to end
            # for 20,000 x 1,024 RBF rows). The inputs were checked above.
            m = self.num_landmarks
            c = min(self.kernel.chunk_size, max(256, (1 << 21) // m))
            rows = self._rows()
            return torch.cat(
                [rows(x[i : i + c]) @ self.projection for i in range(0, x.shape[0], c)]
            )
        assert isinstance(self.kernel, FeatureKernel)
        side = self._side()
        c = self.kernel.chunk_size
        return torch.cat(
            [
                self._feature_map(self.kernel._features(x[i : i + c]), side)
                for i in range(0, x.shape[0], c)
            ]
        )

    def _feature_map(self, feats: KernelFeatures, side: _LandmarkSide) -> Tensor:
        out: Tensor | None = None
        if feats.dense is not None and side.dense_map is not None:
            out = feats.dense @ side.dense_map
        if feats.factors:
            structured = KernelFeatures(dense=None, factors=feats.factors)
            landmarks = KernelFeatures(
                dense=None, factors=side.landmark_features.factors
            )
            block = structured.cross(landmarks) @ self.projection
            out = block if out is None else out + block
        assert out is not None
        return out

    def transform(
        self,
        data: Tensor | Dataset[Any] | Iterable[Any],
        batch_size: int = 512,
        progress: bool = True,
    ) -> Tensor:
        """Streams a large input through the map without gradients.

        Args:
            data: A tensor of shape (n, ...), a map-style data set (``__len__``
                and ``__getitem__``, e.g. ``lightly.data.LightlyDataset``) whose
                items are tensors, ``(input, label, ...)`` tuples or Lightly
                multi-view items (first view), or an iterable of such batches
                (e.g. a DataLoader); see :mod:`lightly_krepes._inputs`.
            batch_size: Samples per batch for tensors and datasets.
            progress: Show a tqdm progress bar.

        Returns:
            Tensor of shape (n, r) on the landmarks' device.

        Raises:
            TypeError: If an item or batch holds no tensor (e.g. a PIL image).
            ValueError: If ``data`` is empty, ``batch_size`` is not positive, or
                samples differ in shape or hold NaN or infinite values.
        """
        outputs = []
        with torch.no_grad():
            for x in iter_batches(data, batch_size, progress=progress, desc="phi"):
                outputs.append(self(x.to(self.landmarks.device)))
        return torch.cat(outputs)

    def extra_repr(self) -> str:
        return f"num_landmarks={self.num_landmarks}, rank={self.rank}, " + (
            f"rcond={self.rcond:.3g}"
        )
