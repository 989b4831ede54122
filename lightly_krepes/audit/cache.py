"""Many audits on landmark subsets from kernel rows computed once.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lightly_krepes._inputs import collect_pool, iter_batches, view_batches
from lightly_krepes._seeding import seeded
from lightly_krepes._validation import check_positive, check_samples
from lightly_krepes.audit.audit import _take_step
from lightly_krepes.audit.damping import DampingSelection
from lightly_krepes.audit.newton import NewtonStep, _check_solver_options, apply_step
from lightly_krepes.audit.objective import AuditObjective
from lightly_krepes.audit.surrogate import (
    FitMethod,
    RidgeFit,
    RidgeMoments,
    SurrogateFit,
    _encoder_outputs,
    make_backbone,
    set_linear,
    solve_ridge,
)
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels.base import FeatureKernel, Kernel


class _GramTable(Kernel):
    """The kernel of a fixed set of landmarks, addressed by their positions.

    Inputs are positions ``0..m-1`` as a floating tensor of shape (k, 1); the
    values come from a precomputed float64 Gram matrix. A
    :class:`~lightly_krepes.backbone.KernelBackbone` built on it performs the
    same Nyström fit, preconditioning and initialisation as on the real kernel,
    without a kernel evaluation; queries are never asked of it (the cache
    projects its stored kernel rows instead).
    """

    def __init__(self, gram: Tensor) -> None:
        super().__init__()
        self.gram = gram

    def _gram(self, x1: Tensor, x2: Tensor) -> Tensor:
        i = x1[:, 0].long().to(self.gram.device)
        j = x2[:, 0].long().to(self.gram.device)
        return self.gram[i[:, None], j[None, :]]

    def _diag(self, x: Tensor) -> Tensor:
        i = x[:, 0].long().to(self.gram.device)
        return self.gram[i, i]


def landmark_gram(kernel: Kernel, landmarks: Tensor) -> Tensor:
    """The landmark Gram matrix ``K_mm`` as :class:`~lightly_krepes.nystrom.Nystrom`
    forms it: float64, exactly symmetric.

    Feature kernels contract float64 copies of the landmark features (so small
    eigenvalues are resolved to float64 precision); other kernels are evaluated
    in the landmarks' dtype.

    Args:
        kernel: The kernel.
        landmarks: Tensor of shape (m, ...).

    Returns:
        Tensor of shape (m, m), float64.
    """
    with torch.no_grad():
        if kernel.has_features:
            assert isinstance(kernel, FeatureKernel)
            wide = kernel.features(landmarks).to(torch.float64)
            gram = wide.cross(wide)
        else:
            gram = kernel(landmarks)
        gram = gram.double()
        return 0.5 * (gram + gram.T)


@dataclass
class AuditRefit:
    """An audit repeated on a subset of the cache's landmarks.

    The refitted surrogate is a kernel expansion over ``keep``:
    ``f(x) = sum_j weights[j] k(l_keep[j], x) + bias``. Evaluate it on new
    inputs with :meth:`outputs` and the kernel rows of
    :meth:`AuditCache.kernel_rows` (against all of the cache's landmarks,
    computed once).

    Attributes:
        keep: Positions of the kept landmarks in ``cache.landmarks``, (m',).
        weights: Representer weights after the step, ``P (A + Delta A)^T``,
            shape (m', h).
        bias: gamma after the step, (h,), or None without a bias.
        initial_weights: Representer weights before the step, (m', h).
        initial_bias: gamma before the step, or None.
        step: The Newton step (``delta_alpha`` of shape (m', h)).
        damping: The damping used.
        penalty: The ridge penalty of the refit (None for ``fit="pc"``).
        ridge: The refit's ridge regression (None for ``fit="pc"``).
        selection: The damping selection, None when the damping was given.
        backbone: The refitted surrogate before the step, built on the cache's
            table of kernel values: its kernel answers only landmark positions,
            so evaluate the surrogate with :meth:`outputs`, not ``backbone(x)``.
    """

    keep: Tensor
    weights: Tensor
    bias: Tensor | None
    initial_weights: Tensor
    initial_bias: Tensor | None
    step: NewtonStep
    damping: float
    penalty: float | None
    ridge: RidgeFit | None
    selection: DampingSelection | None
    backbone: KernelBackbone

    def outputs(self, kernel_rows: Tensor, *, audited: bool = True) -> Tensor:
        """The refitted surrogate on inputs given by their kernel rows.

        Args:
            kernel_rows: Tensor of shape (B, m), rows against *all* of the
                cache's landmarks (:meth:`AuditCache.kernel_rows`).
            audited: After the step (True) or before it.

        Returns:
            Tensor of shape (B, h).

        Raises:
            ValueError: If the rows do not have one column per cache landmark.
        """
        if kernel_rows.dim() != 2 or kernel_rows.shape[1] <= int(self.keep.max()):
            raise ValueError(
                f"kernel_rows must have shape (B, m) with a column per landmark of "
                f"the cache (AuditCache.kernel_rows(x)), got "
                f"{tuple(kernel_rows.shape)}."
            )
        weights = self.weights if audited else self.initial_weights
        bias = self.bias if audited else self.initial_bias
        rows = kernel_rows[:, self.keep.to(kernel_rows.device)]
        out = rows.to(weights) @ weights
        return out if bias is None else out + bias


class AuditCache:
    """Everything an audit needs from the kernel, computed once, for many refits.

    Validation by remove-and-refit repeats the whole construction on subsets of
    the landmarks: the Nyström map, the surrogate's fit and the Newton step, at
    the same damping. Every kernel value those refits need is a column subset of
    what the full surrogate already uses, so the cache computes once

    - ``K_mm``, the Gram matrix of all m landmarks (float64, as
      :class:`~lightly_krepes.nystrom.Nystrom` forms it),
    - the kernel rows ``k_m(v)`` (B, m) of every view of every batch,
    - for ``fit="ridge"`` surrogates, the landmark-space moments of the kernel
      rows of the fit pool and of the encoder's embedding (m x m, m x h),

    and :func:`audit_refit` then only slices: it eigendecomposes the sub-Gram
    (the same :class:`~lightly_krepes.backbone.KernelBackbone` code as a fresh
    build, run on a table of kernel values), projects the cached rows onto the
    new coordinates, re-solves the ridge regression and re-runs the step. A
    refit equals ``audit(build_surrogate(encoder, data,
    landmarks=surrogate.landmarks[keep], ...), loss, views, damping=...)`` up
    to rounding.

    Args:
        surrogate: The full surrogate, from :func:`build_surrogate` (its
            ``surrogate_fit`` record says how to repeat the construction; a
            hand-built backbone is treated as ``fit="pc"`` with its own options).
        loss: The SSL loss.
        views: The audit's views, as for :func:`audit` (a list of p >= 2
            tensors of the same n samples, or an iterable of view batches).
        encoder: The encoder; needed for ``fit="ridge"``.
        data: The data given to :func:`build_surrogate`; needed for
            ``fit="ridge"`` (its pool is read again with the recorded seed).
        head: Optional frozen head, as for :func:`audit`.
        batch_size: Samples per loss batch for a list of p tensors.
        dtype: Floating dtype of the objective's evaluations.
        progress: Show progress bars over the kernel passes.

    Attributes:
        surrogate: The full surrogate.
        fit: ``"ridge"`` or ``"pc"``.
        gram: ``K_mm``, (m, m), float64.
        view_rows: Per batch, one (B, m) tensor of kernel rows per view.

    Raises:
        ValueError: If ``fit="ridge"`` lacks encoder or data, or the views are
            invalid (as for :func:`audit`).

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly.loss import NTXentLoss
        >>> from lightly_krepes.audit import audit, build_surrogate
        >>> encoder = torch.nn.Sequential(
        ...     torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)
        ... ).double()
        >>> x = torch.randn(64, 5, dtype=torch.float64)
        >>> views = [x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)]
        >>> surrogate = build_surrogate(encoder, x, num_landmarks=16, progress=False)
        >>> cache = AuditCache(
        ...     surrogate, NTXentLoss(), views, encoder=encoder, data=x,
        ...     progress=False,
        ... )
        >>> keep = torch.arange(4, 16)  # remove the first four landmarks
        >>> refit = audit_refit(cache, keep, damping=1.0)
        >>> rebuilt = audit(
        ...     build_surrogate(
        ...         encoder, x, landmarks=surrogate.landmarks[keep],
        ...         penalty=refit.penalty, progress=False,
        ...     ),
        ...     NTXentLoss(), views, damping=1.0, progress=False,
        ... )
        >>> torch.allclose(refit.outputs(cache.kernel_rows(x)), rebuilt.audited(x))
        True
    """

    def __init__(
        self,
        surrogate: KernelBackbone,
        loss: Callable[..., Tensor],
        views: Sequence[Tensor] | Iterable[Sequence[Tensor]],
        *,
        encoder: nn.Module | None = None,
        data: Any = None,
        head: nn.Module | None = None,
        batch_size: int | None = None,
        dtype: torch.dtype = torch.float64,
        progress: bool = True,
    ) -> None:
        if not isinstance(surrogate, KernelBackbone):
            raise TypeError(
                f"surrogate must be a KernelBackbone (from build_surrogate), got "
                f"{type(surrogate).__name__}."
            )
        self.surrogate = surrogate
        self.loss = loss
        self.head = head
        self.dtype = dtype
        self.record = SurrogateFit.of(surrogate)
        self.fit: FitMethod = "pc" if self.record is None else self.record.method
        self.options = self._options()
        kernel = surrogate.nystrom.kernel
        landmarks = surrogate.landmarks
        self.gram = landmark_gram(kernel, landmarks)
        self.view_rows: list[tuple[Tensor, ...]] = [
            tuple(self.kernel_rows(v, progress=False) for v in batch)
            for batch in tqdm(
                view_batches(views, batch_size), disable=not progress, desc="views"
            )
        ]
        if not self.view_rows:
            raise ValueError("views is empty; the audit needs at least one batch.")
        self.moments: RidgeMoments | None = None
        if self.fit == "ridge":
            self.moments = self._landmark_moments(encoder, data, progress)

    @property
    def num_landmarks(self) -> int:
        """Number of landmarks m of the full surrogate."""
        return int(self.gram.shape[0])

    @property
    def landmarks(self) -> Tensor:
        """The full surrogate's landmarks, (m, ...)."""
        return self.surrogate.landmarks

    def _options(self) -> dict[str, Any]:
        if self.record is not None:
            return dict(self.record.options)
        backbone = self.surrogate
        options: dict[str, Any] = {
            "rank": backbone.nystrom.requested_rank,
            "bias": backbone.linear.bias is not None,
        }
        for name in ("ridge", "init"):
            value = getattr(backbone, name, None)
            if isinstance(value, Tensor):
                options[name] = float(value)
            elif isinstance(value, str):
                options[name] = value
        return options

    def kernel_rows(
        self, x: Tensor, *, batch_size: int = 256, progress: bool = False
    ) -> Tensor:
        """Kernel rows of inputs against all m landmarks, ``k_m(x)``.

        Args:
            x: Tensor of shape (n, ...) shaped like the landmarks.
            batch_size: Rows per kernel pass.
            progress: Show a progress bar.

        Returns:
            Tensor of shape (n, m) in the landmarks' dtype.
        """
        check_samples(x, "x")
        nystrom = self.surrogate.nystrom
        device = nystrom.landmarks.device
        with torch.no_grad():
            return torch.cat(
                [
                    nystrom.landmark_kernel(b.to(device))
                    for b in iter_batches(x, batch_size, progress=progress, desc="k_m")
                ]
            )

    def _landmark_moments(
        self, encoder: nn.Module | None, data: Any, progress: bool
    ) -> RidgeMoments:
        if encoder is None or data is None:
            raise ValueError(
                "The surrogate was fitted to the encoder (fit='ridge'), so its "
                "refits need the encoder and the data it was fitted on: pass "
                "encoder= and data= as given to build_surrogate."
            )
        assert self.record is not None
        with seeded(self.record.seed):
            pool, _ = collect_pool(data, self.record.pool_size, self.record.seed)
        device = self.landmarks.device
        targets = _encoder_outputs(encoder, pool, 256, progress).to(device)
        rows = self.kernel_rows(pool, progress=progress)
        # Moments in landmark space: a refit's coordinates are rows[:, keep] @ P,
        # so its moments are P^T (these)[keep] P, with no pass over the pool.
        return RidgeMoments.from_data(
            rows, targets, bias=bool(self.options.get("bias", True))
        )

    def subset_moments(self, keep: Tensor, projection: Tensor) -> RidgeMoments:
        """The ridge moments of a refit's coordinates ``k_m(x)[:, keep] P``.

        Args:
            keep: Positions of the kept landmarks, (m',).
            projection: The refit's ``feature_projection`` P, (m', r).

        Returns:
            The moments.

        Raises:
            ValueError: If the surrogate is not a ridge fit.
        """
        if self.moments is None:
            raise ValueError("Only fit='ridge' surrogates have ridge moments.")
        moments = self.moments
        p = projection.double()
        k = keep.to(moments.gram.device)
        return RidgeMoments(
            num_samples=moments.num_samples,
            feature_mean=moments.feature_mean[k] @ p,
            target_mean=moments.target_mean,
            gram=p.T @ moments.gram[k[:, None], k[None, :]] @ p,
            cross=p.T @ moments.cross[k],
            target_sq=moments.target_sq,
            centred=moments.centred,
        )


def _check_keep(keep: Tensor | Sequence[int], m: int) -> Tensor:
    keep = torch.as_tensor(keep)
    if keep.dtype == torch.bool:
        if keep.shape != (m,):
            raise ValueError(
                f"A boolean keep mask must have one entry per landmark ({m}), got "
                f"shape {tuple(keep.shape)}."
            )
        keep = torch.nonzero(keep).flatten()
    if keep.dim() != 1 or keep.dtype.is_floating_point or keep.is_complex():
        raise ValueError(
            f"keep must be a 1-d tensor of landmark positions (or a boolean mask of "
            f"length {m}), got dtype {keep.dtype} and shape {tuple(keep.shape)}."
        )
    if keep.numel() == 0:
        raise ValueError(
            "The refit removes every landmark (keep is empty); a surrogate needs at "
            "least one landmark (and at least out_dim for fit='ridge'). Keep some."
        )
    keep = keep.long()
    if int(keep.min()) < 0 or int(keep.max()) >= m:
        raise ValueError(
            f"keep holds positions outside [0, {m}): the cache has {m} landmarks."
        )
    if torch.unique(keep).numel() != keep.numel():
        raise ValueError("keep lists a landmark more than once; give each once.")
    return keep.cpu()


def audit_refit(
    cache: AuditCache,
    keep: Tensor | Sequence[int],
    *,
    damping: float | None = None,
    penalty: float | Literal["gcv"] | None = None,
    threshold: float = 0.9,
    max_iter: int = 200,
    tol: float = 1e-6,
    seed: int = 0,
    progress: bool = False,
) -> AuditRefit:
    """Repeats the surrogate construction and the audit step on kept landmarks.

    The Nyström map of ``landmarks[keep]`` (eigendecomposition of the
    sub-Gram), the surrogate's fit (the ridge regression from the cached
    moments, or the principal-component initialisation) and the Newton step
    (over the cached kernel rows of the views, projected onto the new
    coordinates): ``audit(build_surrogate(encoder, data,
    landmarks=surrogate.landmarks[keep], penalty=...), loss, views,
    damping=...)`` without a kernel evaluation. Pass the full audit's damping
    for remove-and-refit validation.

    Args:
        cache: The cache of the full surrogate.
        keep: Positions (m',) of the landmarks to keep, in the order to use, or
            a boolean mask of length m.
        damping: The damping (e.g. the full audit's ``result.damping``); None
            selects it with ``select_damping``.
        penalty: Ridge penalty of a ``fit="ridge"`` surrogate: None reuses the
            full surrogate's, ``"gcv"`` chooses it again by GCV, a number sets
            it. Ignored for ``fit="pc"``.
        threshold: Entropy threshold of ``select_damping``.
        max_iter: Maximum CG iterations.
        tol: Relative CG residual.
        seed: Seed of ``select_damping``'s power iteration.
        progress: Show a progress bar over CG.

    Returns:
        The refit (weights over ``keep``, the step, the damping).

    Raises:
        ValueError: If ``keep`` is empty (the refit would remove every
            landmark), repeats or leaves the range, the damping or penalty is not
            positive, or the kept landmarks' rank is below out_dim.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly.loss import NTXentLoss
        >>> from lightly_krepes.audit import build_surrogate
        >>> encoder = torch.nn.Sequential(
        ...     torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)
        ... )
        >>> x = torch.randn(64, 5)
        >>> views = [x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)]
        >>> surrogate = build_surrogate(encoder, x, num_landmarks=16, progress=False)
        >>> cache = AuditCache(
        ...     surrogate, NTXentLoss(), views, encoder=encoder, data=x,
        ...     progress=False,
        ... )
        >>> refit = audit_refit(cache, torch.arange(8, 16), damping=1.0)
        >>> refit.weights.shape, refit.outputs(cache.kernel_rows(x[:3])).shape
        (torch.Size([8, 4]), torch.Size([3, 4]))
    """
    if not isinstance(cache, AuditCache):
        raise TypeError(f"cache must be an AuditCache, got {type(cache).__name__}.")
    keep = _check_keep(keep, cache.num_landmarks)
    if damping is not None:
        check_positive(damping, "damping")
    if penalty is not None and penalty != "gcv":
        if isinstance(penalty, str):
            raise ValueError(
                f"penalty must be a number, None or 'gcv', got {penalty!r}."
            )
        check_positive(penalty, "penalty")
    _check_solver_options(max_iter, tol)
    surrogate = cache.surrogate
    record = cache.record
    landmarks = surrogate.landmarks
    dtype = landmarks.dtype
    device = landmarks.device
    k = keep.to(cache.gram.device)
    table = _GramTable(cache.gram[k[:, None], k[None, :]])
    positions = torch.arange(len(keep), dtype=dtype, device=device)[:, None]
    if record is not None:
        out_dim, encoder_dim = record.out_dim, record.encoder_dim
    else:
        out_dim, encoder_dim = surrogate.out_dim, surrogate.out_dim
    backbone = make_backbone(
        table,
        positions,
        fit=cache.fit,
        out_dim=out_dim,
        encoder_dim=encoder_dim,
        options=cache.options,
    )
    projection = backbone.feature_projection
    ridge: RidgeFit | None = None
    if cache.fit == "ridge":
        if penalty is None:
            assert record is not None and record.ridge is not None
            lam: float | None = record.ridge.penalty
        else:
            lam = None if penalty == "gcv" else float(penalty)
        ridge = solve_ridge(cache.subset_moments(keep, projection), penalty=lam)
        set_linear(backbone, ridge)
    kept = keep.to(device)
    features = [
        tuple(rows[:, kept] @ projection for rows in batch) for batch in cache.view_rows
    ]
    objective = AuditObjective.from_features(
        backbone, cache.loss, features, head=cache.head, dtype=cache.dtype
    )
    step, selection = _take_step(
        objective,
        damping,
        threshold=threshold,
        max_iter=max_iter,
        tol=tol,
        seed=seed,
        progress=progress,
    )
    audited = apply_step(backbone, step)
    return AuditRefit(
        keep=keep,
        weights=audited.representer_weights.detach(),
        bias=None if audited.linear.bias is None else audited.linear.bias.detach(),
        initial_weights=backbone.representer_weights.detach(),
        initial_bias=(
            None if backbone.linear.bias is None else backbone.linear.bias.detach()
        ),
        step=step,
        damping=step.damping,
        penalty=None if ridge is None else ridge.penalty,
        ridge=ridge,
        selection=selection,
        backbone=backbone,
    )
