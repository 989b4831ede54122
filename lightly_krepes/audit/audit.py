"""Audit of a trained SSL encoder through its eNTK kernel surrogate.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lightly_krepes._validation import check_positive, check_samples
from lightly_krepes.audit.damping import DampingSelection, select_damping
from lightly_krepes.audit.newton import NewtonStep, apply_step, solve_newton
from lightly_krepes.audit.objective import AuditObjective
from lightly_krepes.backbone import KernelBackbone, collect_pool
from lightly_krepes.backbone.kernel_backbone import LandmarkMethod
from lightly_krepes.kernels import EmpiricalNTK, Kernel, Normalized
from lightly_krepes.landmarks import select_landmarks

ViewTransform = Callable[[Tensor], Sequence[Tensor]]


@dataclass
class AuditResult:
    """Outcome of :func:`audit_encoder`.

    Attributes:
        backbone: The encoder's eNTK surrogate at the principal-component
            initialisation ``A_0 = [I 0]``, ``gamma_0 = 0``.
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


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seeds torch, NumPy and ``random`` inside, restoring their states after."""
    # Image transforms (torchvision, Lightly) draw from the global generators, so
    # the legacy global NumPy state is the one to seed.
    py_state = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)  # noqa: NPY002
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002


def _stack_views(per_sample: list[Sequence[Tensor]], start: int) -> tuple[Tensor, ...]:
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
) -> Iterator[tuple[Tensor, ...]]:
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


def _dataset_views(
    data: Dataset[Any] | Sequence[Any], batch_size: int
) -> Iterator[tuple[Tensor, ...]]:
    n = len(data)  # type: ignore[arg-type]
    for start in range(0, n, batch_size):
        per_sample = [
            _sample_views(data[i], i) for i in range(start, min(start + batch_size, n))
        ]
        yield _stack_views(per_sample, start)


def _loader_views(data: Iterable[Any]) -> Iterator[tuple[Tensor, ...]]:
    for i, batch in enumerate(data):
        yield tuple(_sample_views(batch, i))


def _check_transform(
    data: Tensor | Dataset[Any] | Iterable[Any], transform: ViewTransform | None
) -> None:
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
    data: Tensor | Dataset[Any] | Iterable[Any],
    transform: ViewTransform | None,
    batch_size: int,
) -> Iterator[tuple[Tensor, ...]]:
    _check_transform(data, transform)
    if isinstance(data, Tensor):
        assert transform is not None
        return _tensor_views(data, transform, batch_size)
    if isinstance(data, Dataset | Sequence):
        return _dataset_views(data, batch_size)
    return _loader_views(data)


def _build_kernel(
    encoder: nn.Module,
    output: Literal["pntk", "trace"],
    num_probes: int | None,
    normalized: bool,
    seed: int,
) -> Kernel:
    kernel: Kernel = EmpiricalNTK(
        encoder, output=output, num_probes=num_probes, seed=seed
    )
    return Normalized(kernel) if normalized else kernel


def _encoder_dim(encoder: nn.Module, sample: Tensor) -> int:
    with torch.no_grad():
        out = encoder(sample[:1])
    if not isinstance(out, Tensor):
        raise TypeError(
            f"The encoder must return a tensor, got {type(out).__name__}; wrap it so "
            f"that it returns the representation."
        )
    return int(out[0].numel())


def audit_encoder(
    encoder: nn.Module,
    data: Tensor | Dataset[Any] | Iterable[Any],
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
) -> AuditResult:
    """Audits a frozen SSL encoder with one damped Newton step of its surrogate [0].

    1. Build the empirical NTK of ``encoder`` (pseudo-NTK by default, cosine
       normalised unless ``normalized=False``) and its Nyström
       :class:`~lightly_krepes.backbone.KernelBackbone` on ``num_landmarks``
       landmarks selected from the data (randomly pivoted Cholesky by default),
       at the principal-component initialisation ``A_0 = [I 0]``, ``gamma_0 = 0``.
    2. Generate the views once, seeded, and cache their Nyström features.
    3. Take one damped Newton step on ``loss`` (conjugate gradients from
       Hessian-vector products, see :func:`newton_step`), with the given damping
       or one chosen label-free by :func:`select_damping`.

    The step's ``delta_alpha`` (m, out_dim) is what the loss adds to each
    landmark's representer weight beyond the principal-component prior.

    Args:
        encoder: The trained encoder, in eval mode (BatchNorm with running
            statistics); it is copied and not modified.
        data: A tensor of un-augmented inputs (n, ...) together with
            ``transform``; or a dataset whose items carry their views as
            ``LightlyDataset`` with a multi-view transform returns them,
            ``([view_0, view_1, ...], label, filename)``; or a loader of such
            batches (its batches are used as they are). For datasets and loaders
            the landmarks are taken from the first views.
        loss: SSL loss mapping one (B, d) tensor per view to a scalar, e.g.
            ``lightly.loss.NTXentLoss()``.
        transform: For a tensor: callable mapping one sample to a list of view
            tensors of the same shape (Lightly's ``MultiViewTransform`` style).
        num_landmarks: Number of landmarks m; None uses
            ``max(64, ceil(sqrt(n)))`` (at most n), n the pool size.
        out_dim: Output dimension h; None uses the encoder's (flattened) output
            dimension, capped by the Nyström rank. Values above the rank raise.
        output: ``"pntk"`` or ``"trace"``, see
            :class:`~lightly_krepes.kernels.EmpiricalNTK`.
        num_probes: Hutchinson probes for ``output="trace"``.
        normalized: Cosine-normalise the kernel.
        landmark_method: Landmark selection method.
        pool_size: Number of samples the landmarks are selected from (None: all).
        rank: Nyström rank (None: all eigenpairs above the cut-off).
        rcond: Relative eigenvalue cut-off of the Nyström map.
        bias: Whether the surrogate has the offset gamma.
        damping: The damping; None selects it with :func:`select_damping`.
        threshold: Entropy threshold of :func:`select_damping`.
        head: Optional frozen projection head applied before the loss; its input
            size must be out_dim.
        batch_size: Samples per loss batch for tensors and datasets.
        max_iter: Maximum CG iterations.
        tol: Relative CG residual.
        dtype: Floating dtype of the objective's evaluations.
        seed: Seed of the landmarks, the views, the probes and the power
            iteration; the global random states are restored afterwards.
        progress: Show progress bars.

    Returns:
        The surrogate, the step and the audited surrogate.

    Raises:
        ValueError: If an argument is invalid, the data is empty, views mismatch,
            the loss is not a finite scalar, or the encoder has BatchNorm in
            train mode.

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
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    if damping is not None:
        check_positive(damping, "damping")
    if num_landmarks is not None and (
        int(num_landmarks) != num_landmarks or num_landmarks < 1
    ):
        raise ValueError(
            f"num_landmarks must be a positive integer, got {num_landmarks}."
        )
    _check_transform(data, transform)
    if isinstance(data, Tensor):
        check_samples(data, "data")
    kernel = _build_kernel(encoder, output, num_probes, normalized, seed)
    with _seeded(seed):
        pool = collect_pool(data, pool_size, seed)
    if len(pool) == 0:
        raise ValueError("data is empty; the audit needs at least one sample.")
    m = num_landmarks
    if m is None:
        m = min(len(pool), max(64, math.ceil(math.sqrt(len(pool)))))
    indices = select_landmarks(
        pool, kernel, m, method=landmark_method, seed=seed, progress=progress
    )
    landmarks = pool[indices]
    # nn.Linear draws its (overwritten) initial weights from the global generator.
    with torch.random.fork_rng(devices=[]):
        backbone = KernelBackbone(
            kernel,
            landmarks,
            1 if out_dim is None else out_dim,
            rank=rank,
            rcond=rcond,
            bias=bias,
        )
        if out_dim is None:
            # The rank is only known once the map is fitted; resize the linear map
            # instead of fitting the Nyström map twice.
            h = min(_encoder_dim(encoder, landmarks), backbone.nystrom.rank)
            backbone.linear = nn.Linear(
                backbone.nystrom.rank, h, bias=bias, dtype=landmarks.dtype
            )
    backbone.linear.to(landmarks.device)
    backbone.reset_parameters()

    with _seeded(seed):
        objective = AuditObjective(
            backbone,
            loss,
            _view_batches(data, transform, batch_size),
            head=head,
            dtype=dtype,
            progress=progress,
        )
    selection = None
    if damping is None:
        selection = select_damping(
            objective,
            threshold=threshold,
            max_iter=max_iter,
            tol=tol,
            seed=seed,
            progress=progress,
        )
        step = selection.step
    else:
        step = solve_newton(
            objective, damping, max_iter=max_iter, tol=tol, progress=progress
        )
    return AuditResult(
        backbone=backbone,
        step=step,
        audited=apply_step(backbone, step),
        damping=step.damping,
        selection=selection,
    )
