"""Audit of a trained SSL encoder through its eNTK kernel surrogate.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lightly_krepes import _distributed
from lightly_krepes._inputs import check_view_batch, is_map_style, view_batches
from lightly_krepes._seeding import seeded
from lightly_krepes._validation import check_positive, check_samples
from lightly_krepes.audit.damping import DampingSelection, select_damping
from lightly_krepes.audit.newton import (
    NewtonStep,
    _CGResult,
    _check_solver_options,
    _conjugate_gradient,
    _newton_step,
    apply_step,
    solve_newton,
)
from lightly_krepes.audit.objective import DEFAULT_CURVATURE_ROWS, AuditObjective
from lightly_krepes.audit.surrogate import FitMethod, build_surrogate
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.backbone.kernel_backbone import LandmarkMethod

ViewTransform = Callable[[Tensor], Sequence[Tensor]]
ViewBatch = tuple[Tensor, ...]
# None stands for a batch of another process, skipped without generating it.
MaybeViewBatch = ViewBatch | None

DEFAULT_REFINE_ROUNDS = 10
"""Most rounds :func:`refine_step` takes (each one full-data product)."""
DEFAULT_REFINE_RESIDUAL = 5e-3
"""Full-data residual, relative to ``|g|``, at which :func:`refine_step` stops.

At 100k Adult rows (damping 0.065) the step's relative error was about twice its
relative residual: 5e-3 stopped after 4 rounds at 0.5 % of the full-curvature
step (``docs/auditing-at-scale.md``), 0.3 % with the 10 % preconditioner solves."""


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
    refine: int = DEFAULT_REFINE_ROUNDS,
) -> tuple[NewtonStep, DampingSelection | None]:
    """The step at ``damping`` (or a selected one), refined with full-data
    products when the curvature was subsampled (:func:`refine_step`)."""
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
    step = refine_step(
        objective, step, rounds=refine, max_iter=max_iter, tol=tol, progress=progress
    )
    return step, selection


def refine_step(
    objective: AuditObjective,
    step: NewtonStep,
    *,
    rounds: int = DEFAULT_REFINE_ROUNDS,
    max_iter: int = 200,
    tol: float = 1e-6,
    correction_tol: float = 1e-1,
    residual_tol: float = DEFAULT_REFINE_RESIDUAL,
    progress: bool = False,
) -> NewtonStep:
    """Refines a step solved with subsampled curvature toward the full-data step.

    Solves the full-data system ``A delta = -g`` (``A = H + damping I`` over all
    batches) by flexible preconditioned conjugate gradients (Notay [1]), started
    at the subsampled step, with the subsampled system ``M = H_S + damping I`` as
    the preconditioner: each round costs one full-data Hessian-vector product and
    one CG solve of ``M z = r`` with the cheap products (plus one full-data
    product for the first residual). The search directions are ``A``-conjugate,
    so the ``A``-norm error never grows, however far ``M`` is from ``A``. Plain
    iterative refinement (``delta += M^-1 (-g - A delta)``, which the first
    version of this function did) only converges while ``|I - M^-1 A| < 1``, and
    at the small damping selected on 100k Adult rows it did not: the error went
    37 % -> 30 % -> 29 % -> 31 % -> ... -> 82 % over 6 rounds. Because the
    preconditioner is an inexact inner solve, the update of the search direction
    is the flexible (Polak-Ribiere) one. A preconditioner solve needs only the
    digits the refined step keeps, so it stops at a relative residual
    ``correction_tol`` (10 %) of its own right-hand side, or at ``tol`` relative
    to ``|g|`` if that is looser: at 100k rows 10 % took half the cheap products
    of 1 % per round (10 against 20) and was as close after 4 rounds (0.34 %
    against 0.52 %). The rounds stop once the full-data residual is below
    ``residual_tol |g|`` (at 100k rows: 4 rounds, where one round of plain
    refinement left 30 %). A step with full curvature, or one that met
    non-positive curvature, is returned unchanged.

    Args:
        objective: The objective the step was solved on.
        step: The step, e.g. from :func:`~lightly_krepes.audit.solve_newton`.
        rounds: Maximum rounds, each one full-data product (0 returns ``step``).
        max_iter: Maximum CG iterations per preconditioner solve.
        tol: A preconditioner solve also stops at this residual relative to
            ``|g|``.
        correction_tol: Relative residual of each preconditioner solve at which
            it stops (in (0, 1)).
        residual_tol: Full-data residual relative to ``|g|`` at which the rounds
            stop (>= 0; 0 runs every round).
        progress: Show a progress bar.

    Returns:
        The refined step; ``cg_iterations`` counts the subsampled CG iterations
        of every round, ``cg_residual`` is the full-data residual relative to
        ``|g|`` and ``converged`` whether it reached ``residual_tol``. Every
        round lowers the full-data quadratic model ``g^T d + d^T A d / 2``;
        rounds stop at a direction of non-positive curvature (with all rows,
        ``H + damping I`` can be indefinite at a damping chosen on the
        subsample), and ``step`` itself comes back when that happens before the
        first round.

    Raises:
        ValueError: If ``rounds`` is negative or not an integer, or
            ``correction_tol`` or ``residual_tol`` lie outside their ranges.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Notay, 2000, Flexible Conjugate Gradients, SIAM J. Sci. Comput.
          22(4)

    Examples:
        >>> from lightly.loss import NTXentLoss
        >>> from lightly_krepes.kernels import RBF
        >>> x = torch.randn(64, 3, dtype=torch.float64)
        >>> backbone = KernelBackbone(RBF(2.0), x[:8], out_dim=2)
        >>> batches = [(x[i : i + 16], x[i : i + 16] + 0.1) for i in range(0, 64, 16)]
        >>> objective = AuditObjective(
        ...     backbone, NTXentLoss(), batches, curvature_rows=32, progress=False
        ... )
        >>> step = solve_newton(objective, 10.0, progress=False)
        >>> refine_step(objective, step).delta_alpha.shape
        torch.Size([8, 2])
    """
    if isinstance(rounds, bool) or int(rounds) != rounds or rounds < 0:
        raise ValueError(f"rounds must be a non-negative integer, got {rounds}.")
    if not 0.0 < correction_tol < 1.0:
        raise ValueError(
            f"correction_tol must lie in (0, 1), got {correction_tol}: it is the "
            f"relative residual at which each preconditioner solve stops."
        )
    if not 0.0 <= residual_tol < 1.0:
        raise ValueError(
            f"residual_tol must lie in [0, 1), got {residual_tol}: it is the "
            f"full-data residual, relative to |g|, at which the rounds stop."
        )
    subsampled = len(objective.curvature_batches) < objective.num_batches
    if rounds == 0 or not subsampled or step.negative_curvature:
        return step
    theta = objective.initial_parameters()
    _, gradient = objective.gradient(theta)
    damping = step.damping
    delta = objective.flatten(step.delta_weight, step.delta_bias)
    gradient_norm = float(torch.linalg.vector_norm(gradient))
    scale = max(gradient_norm, 1e-300)

    def full_operator(v: Tensor) -> Tensor:
        # The exact product, not a cheaper difference of full-data gradients:
        # with a ReLU head (Lightly's projection heads) the gradient jumps where
        # a unit changes sign, and over 100k rows some always do, so
        # (g(theta + eps v) - g(theta)) / eps was off H v by 0.4-500 (relative)
        # for |eps v| from 2e-8 to 2e-4 of |theta| (Adult MLP, SimCLR head).
        return objective.hvp(theta, v, subsample=False) + damping * v

    def preconditioner(r: Tensor) -> _CGResult:
        # Solved only to the digits the refined step keeps; a tighter solve runs
        # to max_iter of subsampled products for nothing.
        r_norm = float(torch.linalg.vector_norm(r))
        inner_tol = (
            1.0
            if r_norm == 0
            else min(1.0, max(correction_tol, tol * gradient_norm / r_norm))
        )
        return _conjugate_gradient(
            lambda v: objective.hvp(theta, v) + damping * v,
            r,
            max_iter=max_iter,
            tol=inner_tol,
            progress=False,
        )

    iterations = step.cg_iterations
    residual = -gradient - full_operator(delta)
    inner = preconditioner(residual)
    iterations += inner.iterations
    direction = inner.solution
    rz = float(residual @ direction)
    relative = float(torch.linalg.vector_norm(residual)) / scale
    rounds_done = 0
    bar = tqdm(total=int(rounds), disable=not progress, desc="refine")
    try:
        while rounds_done < int(rounds) and relative > residual_tol and rz > 0:
            product = full_operator(direction)
            curvature = float(direction @ product)
            if not curvature > 0:
                break
            length = rz / curvature
            delta = delta + length * direction
            updated = residual - length * product
            relative = float(torch.linalg.vector_norm(updated)) / scale
            rounds_done += 1
            bar.update(1)
            bar.set_postfix(residual=f"{relative:.2e}")
            if rounds_done == int(rounds) or relative <= residual_tol:
                residual = updated
                break
            inner = preconditioner(updated)
            iterations += inner.iterations
            if inner.negative_curvature:
                residual = updated
                break
            # Flexible CG: the preconditioner is an inexact solve, not a fixed
            # linear map, so beta takes the Polak-Ribiere form.
            beta = float(inner.solution @ (updated - residual)) / rz
            residual = updated
            rz = float(residual @ inner.solution)
            direction = inner.solution + beta * direction
    finally:
        bar.close()
    if rounds_done == 0:
        return step
    converged = relative <= residual_tol
    refined = _newton_step(
        objective,
        theta,
        step.loss_before,
        gradient,
        damping,
        delta,
        iterations=iterations,
        residual=relative,
        converged=converged,
        negative_curvature=False,
    )
    # With all rows, H + damping I can be indefinite at a damping chosen on the
    # subsample; the rounds stop at the first direction of non-positive
    # curvature (Steihaug's rule), so each round lowers the full-data quadratic
    # model. The loss is not the test: the full-curvature Newton step can have a
    # higher loss than the subsampled one (2.5614 against 2.5534 on the test
    # suite's problem), and keeping a refinement only when the loss fell, as the
    # first version did, rejected every accurate one there.
    return refined


def _audit_objective(
    backbone: KernelBackbone,
    objective: AuditObjective,
    damping: float | None,
    *,
    threshold: float,
    max_iter: int,
    tol: float,
    seed: int,
    progress: bool,
    refine: int,
) -> AuditResult:
    # Every process must expand around the same surrogate, or the all-reduced
    # sums mix different problems.
    _distributed.check_same(
        backbone.landmarks, "The landmarks", distributed=objective.distributed
    )
    _distributed.check_same(
        objective.initial_parameters(),
        "The surrogate's A and gamma",
        distributed=objective.distributed,
    )
    step, selection = _take_step(
        objective,
        damping,
        threshold=threshold,
        max_iter=max_iter,
        tol=tol,
        seed=seed,
        progress=progress,
        refine=refine,
    )
    return AuditResult(
        backbone=backbone,
        step=step,
        audited=apply_step(backbone, step),
        damping=step.damping,
        selection=selection,
    )


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
    curvature_rows: int | None = DEFAULT_CURVATURE_ROWS,
    subsample_values: bool = True,
    refine: int = DEFAULT_REFINE_ROUNDS,
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

    At scale (``docs/auditing-at-scale.md``): the Hessian-vector products use
    a seeded subsample of whole batches of about ``curvature_rows`` rows (all
    batches on smaller data), the gradient all batches, and the step is then
    refined with full-data products (``refine`` rounds, :func:`refine_step`).
    Under torch.distributed (an initialised process group with more than one
    process) every process calls ``audit`` with the same arguments, computes
    the coordinates of its share of the batches (global batches ``rank,
    rank + W, ...``), and the sums are all-reduced: every process returns the
    same result, equal up to rounding to a single process's.

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
        seed: Seed of the curvature subsample and of the power iteration of
            ``select_damping``.
        progress: Show progress bars.
        curvature_rows: Rows of the curvature subsample (16,384 by default);
            None uses every batch.
        subsample_values: Evaluate the loss values (before and after the step,
            and of the damping candidates) on the curvature subsample too.
        refine: Most rounds of :func:`refine_step` applied to a step solved with
            subsampled curvature (one full-data Hessian-vector product and one
            subsampled CG solve each; they stop at a full-data residual of
            ``DEFAULT_REFINE_RESIDUAL``); 0 keeps the subsampled step.

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
        curvature_rows=curvature_rows,
        subsample_values=subsample_values,
        seed=seed,
    )
    return _audit_objective(
        backbone,
        objective,
        damping,
        threshold=threshold,
        max_iter=max_iter,
        tol=tol,
        seed=seed,
        progress=progress,
        refine=refine,
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


def batch_seed(seed: int, index: int) -> int:
    """The seed of the random views of global batch ``index``.

    Views are drawn batch by batch, each under its own seed mixed from
    ``(seed, index)`` by NumPy's ``SeedSequence``, so a batch's views do not
    depend on which batches were generated before it: a process generates only
    its share, and the views are the same for any number of processes.

    Args:
        seed: The audit's seed (non-negative).
        index: The global batch index.

    Returns:
        A seed in ``[0, 2**63)``.

    Examples:
        >>> batch_seed(0, 1) == batch_seed(0, 1) != batch_seed(0, 2)
        True
    """
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


def _tensor_views(
    data: Tensor, transform: ViewTransform, batch_size: int, seed: int, shard: bool
) -> Iterator[MaybeViewBatch]:
    for b, start in enumerate(range(0, len(data), batch_size)):
        if not _distributed.owns(b, distributed=shard):
            yield None
            continue
        per_sample = []
        with seeded(batch_seed(seed, b)):
            for x in data[start : start + batch_size]:
                views = transform(x)
                if isinstance(views, Tensor) or not isinstance(views, Sequence):
                    raise TypeError(
                        f"transform must return a list of view tensors for each "
                        f"sample, got {type(views).__name__}."
                    )
                per_sample.append(views)
        yield _stack_views(per_sample, start)


def _dataset_views(
    data: Any, batch_size: int, seed: int, shard: bool
) -> Iterator[MaybeViewBatch]:
    n = len(data)
    for b, start in enumerate(range(0, n, batch_size)):
        if not _distributed.owns(b, distributed=shard):
            yield None
            continue
        # Item transforms (torchvision, Lightly) draw from the global generators.
        with seeded(batch_seed(seed, b)):
            per_sample = [
                _sample_views(data[i], i)
                for i in range(start, min(start + batch_size, n))
            ]
        yield _stack_views(per_sample, start)


def _loader_views(data: Iterable[Any], shard: bool) -> Iterator[MaybeViewBatch]:
    for i, batch in enumerate(data):
        owned = _distributed.owns(i, distributed=shard)
        yield tuple(_sample_views(batch, i)) if owned else None


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
    data: Any,
    transform: ViewTransform | None,
    batch_size: int,
    seed: int,
    shard: bool = False,
) -> Iterator[MaybeViewBatch]:
    """The views of ``data`` batch by batch; None for batches of other processes."""
    _check_transform(data, transform)
    batches: Iterator[MaybeViewBatch]
    if isinstance(data, Tensor):
        assert transform is not None
        batches = _tensor_views(data, transform, batch_size, seed, shard)
    elif is_map_style(data):
        batches = _dataset_views(data, batch_size, seed, shard)
    else:
        # Loaders, and lists or tuples of batches (the package's input convention).
        batches = _loader_views(data, shard)
    for i, batch in enumerate(batches):
        yield None if batch is None else check_view_batch(batch, f"view batch {i}")


def audit_views(
    data: Any,
    *,
    transform: ViewTransform | None = None,
    batch_size: int = 256,
    seed: int = 0,
) -> list[tuple[Tensor, ...]]:
    """The view batches :func:`audit_encoder` draws for ``data``, materialised.

    The views of batch ``b`` are drawn under ``batch_seed(seed, b)``, so with the
    same ``data``, ``transform``, ``batch_size`` and ``seed`` they are the audit's
    own, for tools that need them again, e.g. :class:`~lightly_krepes.attribution.
    CounterfactualInfluence` (a transform that draws from its own generator
    instead of the global ones gives other views). Every batch is held in
    memory.

    Args:
        data: As for :func:`audit_encoder`.
        transform: As for :func:`audit_encoder`.
        batch_size: As for :func:`audit_encoder`.
        seed: As for :func:`audit_encoder`.

    Returns:
        A list of tuples of p tensors (B, ...), one per batch.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> x = torch.randn(10, 3)
        >>> def views(v):
        ...     return [v + 0.1 * torch.randn_like(v), v + 0.1 * torch.randn_like(v)]
        >>> batches = audit_views(x, transform=views, batch_size=4)
        >>> [len(b[0]) for b in batches]
        [4, 4, 2]
        >>> again = audit_views(x, transform=views, batch_size=4)
        >>> bool(torch.equal(batches[1][0], again[1][0]))
        True
    """
    # Not sharded, so every batch is drawn; the filter only narrows the type.
    return [
        batch
        for batch in _view_batches(data, transform, batch_size, seed)
        if batch is not None
    ]


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
    bandwidth: float | None = None,
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
    curvature_rows: int | None = DEFAULT_CURVATURE_ROWS,
    subsample_values: bool = True,
    refine: int = DEFAULT_REFINE_ROUNDS,
) -> AuditResult:
    """Audits a frozen SSL encoder: :func:`build_surrogate`, then :func:`audit` [0].

    1. Build the encoder's eNTK surrogate on landmarks selected from the data
       (see :func:`build_surrogate`; by default fitted to the encoder's
       embedding by ridge regression, ``fit="pc"`` for the principal-component
       initialisation).
    2. Generate the views once, in batches of ``batch_size``, each batch
       seeded by its global index (:func:`batch_seed`).
    3. Take one damped Newton step on ``loss`` from the surrogate (see
       :func:`audit`), with the given damping or one chosen label-free.

    Under torch.distributed every process runs the same call on the same data
    (``torchrun script.py``; ``docs/auditing-at-scale.md``): the ridge fit's
    kernel pass, the views and their coordinates are split by whole batches
    across processes and the sums all-reduced, and every process returns the
    same result, equal up to rounding to one process's. A loader must then
    yield the same batches on every process (no ``DistributedSampler``; the
    audit shards it itself).

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
        bandwidth: A local surrogate (:func:`build_surrogate`); None: the eNTK.
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
        seed: Seed of the landmarks, the views, the probes, the curvature
            subsample and the power iteration; the global random states are
            restored afterwards.
        progress: Show progress bars.
        fit: ``"ridge"`` (default) or ``"pc"``, see :func:`build_surrogate`.
        penalty: Ridge penalty of ``fit="ridge"`` (None: chosen by GCV).
        curvature_rows: Rows of the curvature subsample, see :func:`audit`.
        subsample_values: Loss values on the curvature subsample too.
        refine: Refinement rounds of a subsampled-curvature step, see
            :func:`audit`.

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
        bandwidth=bandwidth,
        landmark_method=landmark_method,
        pool_size=pool_size,
        rank=rank,
        rcond=rcond,
        bias=bias,
        batch_size=batch_size,
        progress=progress,
    )
    shard = _distributed.is_distributed()
    with seeded(seed):
        objective = AuditObjective(
            surrogate,
            loss,
            _view_batches(data, transform, batch_size, seed, shard),
            head=head,
            dtype=dtype,
            progress=progress,
            curvature_rows=curvature_rows,
            subsample_values=subsample_values,
            seed=seed,
            distributed=shard,
        )
        return _audit_objective(
            surrogate,
            objective,
            damping,
            threshold=threshold,
            max_iter=max_iter,
            tol=tol,
            seed=seed,
            progress=progress,
            refine=refine,
        )
