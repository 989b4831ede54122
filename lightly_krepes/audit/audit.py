"""Audit of a trained SSL encoder through its eNTK kernel surrogate.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightly_krepes._inputs import is_map_style, view_batches
from lightly_krepes._seeding import seeded
from lightly_krepes._validation import check_positive, check_samples
from lightly_krepes.audit.damping import DampingSelection, select_damping
from lightly_krepes.audit.newton import (
    NewtonStep,
    _check_solver_options,
    apply_step,
    solve_newton,
)
from lightly_krepes.audit.objective import AuditObjective
from lightly_krepes.audit.surrogate import FitMethod, build_surrogate
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.backbone.kernel_backbone import LandmarkMethod

ViewTransform = Callable[[Tensor], Sequence[Tensor]]
ViewBatch = tuple[Tensor, ...]


@dataclass
class AuditResult:
    """Outcome of :func:`audit` and :func:`audit_encoder`.

    Attributes:
        backbone: The surrogate before the step (for :func:`build_surrogate`'s
            default the ridge fit to the encoder, for ``fit="pc"`` the
            principal-component initialisation); the step is taken from its A
            and gamma.
        step: The damped Newton step; ``step.delta_alpha`` (m, out_dim) holds the
            change of each landmark's representer weight.
        audited: The surrogate after the step.
        damping: The damping used.
        selection: The label-free damping selection, or None when the damping
            was given.
    """

    backbone: KernelBackbone
    step: NewtonStep
    audited: KernelBackbone
    damping: float
    selection: DampingSelection | None


# -- views given to audit --------------------------------------------------------------


def _take_step(
    objective: AuditObjective,
    damping: float | None,
    *,
    threshold: float,
    max_iter: int,
    tol: float,
    seed: int,
    progress: bool,
) -> tuple[NewtonStep, DampingSelection | None]:
    if damping is None:
        selection = select_damping(
            objective,
            threshold=threshold,
            max_iter=max_iter,
            tol=tol,
            seed=seed,
            progress=progress,
        )
        return selection.step, selection
    step = solve_newton(
        objective, damping, max_iter=max_iter, tol=tol, progress=progress
    )
    return step, None


def audit(
    backbone: KernelBackbone,
    loss: Callable[..., Tensor],
    views: Sequence[Tensor] | Iterable[Sequence[Tensor]],
    *,
    damping: float | None = None,
    head: nn.Module | None = None,
    batch_size: int | None = None,
    threshold: float = 0.9,
    max_iter: int = 200,
    tol: float = 1e-6,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    progress: bool = True,
) -> AuditResult:
    """One damped Newton step of a surrogate on an SSL loss: the KREPES audit [0].

    The step ``(H + damping I) delta = -g`` in ``(A, gamma)`` is taken from the
    backbone's current parameters (see :func:`build_surrogate`), by conjugate
    gradients from Hessian-vector products over the views' cached coordinates
    (:func:`~lightly_krepes.audit.newton_step`), with the given damping or one
    chosen label-free by :func:`~lightly_krepes.audit.select_damping`. The
    step's ``delta_alpha`` (m, out_dim) is what the loss adds to each
    landmark's representer weight.

    Refitting on a landmark subset repeats the construction and the step at the
    same damping: ``audit(build_surrogate(encoder, data,
    landmarks=surrogate.landmarks[keep]), loss, views, damping=result.damping)``;
    :class:`~lightly_krepes.audit.AuditCache` does the same without kernel
    passes, for many subsets.

    Args:
        backbone: The surrogate, e.g. from :func:`build_surrogate`; not modified.
        loss: SSL loss mapping one (B, d) tensor per view to a scalar, e.g.
            ``lightly.loss.NTXentLoss()``; it must be deterministic.
        views: A list of p >= 2 tensors of shape (n, ...), the same n samples'
            views, shaped like the landmarks; or an iterable of such view
            batches (each a list or tuple of p tensors), kept as batches.
        damping: The damping; None selects it with ``select_damping``.
        head: Optional frozen projection head applied before the loss; its input
            size must be the backbone's out_dim.
        batch_size: Samples per loss batch for a list of p tensors (None: one
            batch of all n).
        threshold: Entropy threshold of ``select_damping``.
        max_iter: Maximum CG iterations.
        tol: Relative CG residual.
        dtype: Floating dtype of the objective's evaluations.
        seed: Seed of the power iteration of ``select_damping``.
        progress: Show progress bars.

    Returns:
        The surrogate, the step and the audited surrogate.

    Raises:
        TypeError: If ``views`` is not a list of tensors or of view batches.
        ValueError: If p < 2, views hold different numbers of samples or are
            shaped unlike the landmarks, the damping is not positive, or the
            loss is not a finite deterministic scalar.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly.loss import NTXentLoss
        >>> encoder = torch.nn.Sequential(
        ...     torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)
        ... )
        >>> x = torch.randn(64, 5)
        >>> surrogate = build_surrogate(encoder, x, num_landmarks=16, progress=False)
        >>> views = [x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)]
        >>> result = audit(
        ...     surrogate, NTXentLoss(), views, damping=1.0, batch_size=32,
        ...     progress=False,
        ... )
        >>> result.step.delta_alpha.shape
        torch.Size([16, 4])
    """
    if not isinstance(backbone, KernelBackbone):
        raise TypeError(
            f"backbone must be a KernelBackbone (e.g. from build_surrogate), got "
            f"{type(backbone).__name__}."
        )
    if damping is not None:
        check_positive(damping, "damping")
    _check_solver_options(max_iter, tol)
    objective = AuditObjective(
        backbone,
        loss,
        view_batches(views, batch_size),
        head=head,
        dtype=dtype,
        progress=progress,
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
    return AuditResult(
        backbone=backbone,
        step=step,
        audited=apply_step(backbone, step),
        damping=step.damping,
        selection=selection,
    )


# -- views generated by audit_encoder -------------------------------------------


def _stack_views(per_sample: list[Sequence[Tensor]], start: int) -> ViewBatch:
    counts = {len(views) for views in per_sample}
    if len(counts) > 1:
        raise ValueError(
            f"Samples {start}..{start + len(per_sample) - 1} have different numbers "
            f"of views {sorted(counts)}; the transform must return the same number "
            f"for every sample."
        )
    stacked = []
    for j in range(counts.pop()):
        views = [s[j] for s in per_sample]
        shapes = {tuple(v.shape) for v in views}
        if len(shapes) > 1:
            raise ValueError(
                f"View {j} has mismatched shapes {sorted(shapes)} across samples "
                f"{start}..{start + len(per_sample) - 1}; every view must be shaped "
                f"like the input samples."
            )
        stacked.append(torch.stack(views))
    return tuple(stacked)


def _sample_views(item: Any, index: int) -> Sequence[Tensor]:
    views = item[0] if isinstance(item, list | tuple) and item else None
    if (
        not isinstance(views, list | tuple)
        or not views
        or not all(isinstance(v, Tensor) for v in views)
    ):
        raise TypeError(
            f"Item {index} does not carry its views. Dataset items must be "
            f"([view_0, view_1, ...], label, ...) as LightlyDataset returns with a "
            f"MultiViewTransform (e.g. SimCLRTransform), and loader batches the "
            f"collated ([views_0, views_1, ...], labels, ...); for a tensor of "
            f"inputs pass transform=."
        )
    return views


def _tensor_views(
    data: Tensor, transform: ViewTransform, batch_size: int
) -> Iterator[ViewBatch]:
    for start in range(0, len(data), batch_size):
        per_sample = []
        for x in data[start : start + batch_size]:
            views = transform(x)
            if isinstance(views, Tensor) or not isinstance(views, Sequence):
                raise TypeError(
                    f"transform must return a list of view tensors for each sample, "
                    f"got {type(views).__name__}."
                )
            per_sample.append(views)
        yield _stack_views(per_sample, start)


def _dataset_views(data: Any, batch_size: int) -> Iterator[ViewBatch]:
    n = len(data)
    for start in range(0, n, batch_size):
        per_sample = [
            _sample_views(data[i], i) for i in range(start, min(start + batch_size, n))
        ]
        yield _stack_views(per_sample, start)


def _loader_views(data: Iterable[Any]) -> Iterator[ViewBatch]:
    for i, batch in enumerate(data):
        yield tuple(_sample_views(batch, i))


def _check_transform(data: Any, transform: ViewTransform | None) -> None:
    if isinstance(data, Tensor) and transform is None:
        raise ValueError(
            "A tensor of inputs needs transform=, a callable returning a list of "
            "augmented views of one sample (e.g. lambda x: [x + noise(), x + "
            "noise()]); datasets that already return views need none."
        )
    if not isinstance(data, Tensor) and transform is not None:
        raise ValueError(
            "transform= is only used with a tensor of inputs. For a dataset, put the "
            "transform into the dataset, e.g. LightlyDataset(..., "
            "transform=SimCLRTransform())."
        )


def _view_batches(
    data: Any, transform: ViewTransform | None, batch_size: int
) -> Iterator[ViewBatch]:
    _check_transform(data, transform)
    if isinstance(data, Tensor):
        assert transform is not None
        return _tensor_views(data, transform, batch_size)
    if is_map_style(data):
        return _dataset_views(data, batch_size)
    # Loaders, and lists or tuples of batches (the package's input convention).
    return _loader_views(data)


def audit_encoder(
    encoder: nn.Module,
    data: Any,
    loss: Callable[..., Tensor],
    *,
    transform: ViewTransform | None = None,
    num_landmarks: int | None = None,
    out_dim: int | None = None,
    output: Literal["pntk", "trace"] = "pntk",
    num_probes: int | None = None,
    normalized: bool = True,
    landmark_method: LandmarkMethod = "rpcholesky",
    pool_size: int | None = None,
    rank: int | None = None,
    rcond: float | None = None,
    bias: bool = True,
    damping: float | None = None,
    threshold: float = 0.9,
    head: nn.Module | None = None,
    batch_size: int = 256,
    max_iter: int = 200,
    tol: float = 1e-6,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    progress: bool = True,
    fit: FitMethod = "ridge",
    penalty: float | None = None,
) -> AuditResult:
    """Audits a frozen SSL encoder: :func:`build_surrogate`, then :func:`audit` [0].

    1. Build the encoder's eNTK surrogate on landmarks selected from the data
       (see :func:`build_surrogate`; by default fitted to the encoder's
       embedding by ridge regression, ``fit="pc"`` for the principal-component
       initialisation).
    2. Generate the views once, seeded, in batches of ``batch_size``.
    3. Take one damped Newton step on ``loss`` from the surrogate (see
       :func:`audit`), with the given damping or one chosen label-free.

    Args:
        encoder: The trained encoder, in eval mode (BatchNorm with running
            statistics); it is copied and not modified.
        data: A tensor of un-augmented inputs (n, ...) together with
            ``transform``; or a map-style data set whose items carry their
            views as ``LightlyDataset`` with a multi-view transform returns
            them, ``([view_0, view_1, ...], label, filename)``; or a loader (or
            list) of such batches, used as they are. For data sets and loaders
            the landmarks (and the ridge fit) use the first views.
        loss: SSL loss mapping one (B, d) tensor per view to a scalar, e.g.
            ``lightly.loss.NTXentLoss()``.
        transform: For a tensor: callable mapping one sample to a list of p >= 2
            view tensors of the same shape (Lightly's ``MultiViewTransform``
            style).
        num_landmarks: Number of landmarks m, see :func:`build_surrogate`.
        out_dim: Output dimension h, see :func:`build_surrogate`.
        output: ``"pntk"`` or ``"trace"``, see
            :class:`~lightly_krepes.kernels.EmpiricalNTK`.
        num_probes: Hutchinson probes for ``output="trace"``.
        normalized: Cosine-normalise the kernel.
        landmark_method: Landmark selection method.
        pool_size: Number of samples the landmarks are selected from (None: all).
        rank: Nyström rank (None: all eigenpairs above the cut-off).
        rcond: Relative eigenvalue cut-off of the Nyström map.
        bias: Whether the surrogate has the offset gamma.
        damping: The damping; None selects it with ``select_damping``.
        threshold: Entropy threshold of ``select_damping``.
        head: Optional frozen projection head applied before the loss; its input
            size must be out_dim.
        batch_size: Samples per loss batch for tensors and datasets.
        max_iter: Maximum CG iterations.
        tol: Relative CG residual.
        dtype: Floating dtype of the objective's evaluations.
        seed: Seed of the landmarks, the views, the probes and the power
            iteration; the global random states are restored afterwards.
        progress: Show progress bars.
        fit: ``"ridge"`` (default) or ``"pc"``, see :func:`build_surrogate`.
        penalty: Ridge penalty of ``fit="ridge"`` (None: chosen by GCV).

    Returns:
        The surrogate, the step and the audited surrogate.

    Raises:
        ValueError: If an argument is invalid, the data is empty, views mismatch
            or are fewer than two, the loss is not a finite scalar, or the
            encoder has BatchNorm in train mode.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly.loss import NTXentLoss
        >>> encoder = torch.nn.Sequential(
        ...     torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)
        ... )
        >>> def views(x):
        ...     return [x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)]
        >>> result = audit_encoder(
        ...     encoder, torch.randn(64, 5), NTXentLoss(), transform=views,
        ...     num_landmarks=16, damping=1.0, batch_size=32, progress=False,
        ... )
        >>> result.step.delta_alpha.shape
        torch.Size([16, 4])
    """
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    if damping is not None:
        check_positive(damping, "damping")
    _check_solver_options(max_iter, tol)
    _check_transform(data, transform)
    if isinstance(data, Tensor):
        check_samples(data, "data")
    surrogate = build_surrogate(
        encoder,
        data,
        num_landmarks=num_landmarks,
        seed=seed,
        fit=fit,
        penalty=penalty,
        out_dim=out_dim,
        output=output,
        num_probes=num_probes,
        normalized=normalized,
        landmark_method=landmark_method,
        pool_size=pool_size,
        rank=rank,
        rcond=rcond,
        bias=bias,
        batch_size=batch_size,
        progress=progress,
    )
    with seeded(seed):
        return audit(
            surrogate,
            loss,
            _view_batches(data, transform, batch_size),
            damping=damping,
            head=head,
            threshold=threshold,
            max_iter=max_iter,
            tol=tol,
            dtype=dtype,
            seed=seed,
            progress=progress,
        )
