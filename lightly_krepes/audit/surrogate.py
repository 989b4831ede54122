"""The eNTK kernel surrogate of a trained encoder, before the audit step.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Engel et al., 2024, Faithful and Efficient Explanations for Neural Networks
  via Neural Tangent Kernel Surrogate Models, ICLR, arXiv 2305.14585
- [2] Golub, Heath, Wahba, 1979, Generalized Cross-Validation as a Method for
  Choosing a Good Ridge Parameter, Technometrics 21(2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lightly_krepes import _distributed
from lightly_krepes._inputs import collect_pool, iter_batches
from lightly_krepes._seeding import seeded
from lightly_krepes._validation import check_positive, check_samples
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.backbone.kernel_backbone import LandmarkMethod
from lightly_krepes.kernels import (
    EmpiricalNTK,
    InducedRBF,
    Kernel,
    Normalized,
    median_lengthscale,
)
from lightly_krepes.landmarks import select_landmarks

FitMethod = Literal["ridge", "pc"]
FIT_METHODS: tuple[FitMethod, ...] = ("ridge", "pc")

PENALTY_GRID = tuple(float(v) for v in np.logspace(-10.0, 0.0, 41))
"""Ridge penalties tried by generalised cross-validation, relative to ``c_1 / n``
(``c_1`` the largest eigenvalue of the centred coordinate Gram ``F^T F``): a
quarter decade apart from no shrinkage to shrinking the top direction by half."""


# -- ridge regression on the surrogate's coordinates -------------------------------


@dataclass
class RidgeMoments:
    """Sufficient statistics of a ridge regression of targets Y on coordinates F.

    With ``bias`` the moments are centred (the intercept is fitted, not
    penalised); without it they are raw. Refits on landmark subsets project
    landmark-space moments to the subset's coordinates instead of recomputing
    them from data (:class:`~lightly_krepes.audit.AuditCache`).

    Attributes:
        num_samples: n.
        feature_mean: Mean of F (zeros without bias), shape (r,).
        target_mean: Mean of Y (zeros without bias), shape (h,).
        gram: ``Fc^T Fc``, shape (r, r), float64.
        cross: ``Fc^T Yc``, shape (r, h), float64.
        target_sq: ``|Yc|_F^2``.
        centred: Whether the moments are centred (an intercept is fitted).
    """

    num_samples: int
    feature_mean: Tensor
    target_mean: Tensor
    gram: Tensor
    cross: Tensor
    target_sq: float
    centred: bool = True

    @classmethod
    def from_data(
        cls, features: Tensor, targets: Tensor, *, bias: bool = True
    ) -> RidgeMoments:
        """Moments of coordinates F (n, r) and targets Y (n, h), in float64.

        Args:
            features: Tensor of shape (n, r).
            targets: Tensor of shape (n, h).
            bias: Centre (fit an unpenalised intercept).

        Returns:
            The moments.

        Raises:
            ValueError: If the shapes do not match or there are no samples.

        Examples:
            >>> f, y = torch.randn(10, 3), torch.randn(10, 2)
            >>> RidgeMoments.from_data(f, y).gram.shape
            torch.Size([3, 3])
        """
        if features.dim() != 2 or targets.dim() != 2:
            raise ValueError(
                f"features and targets must be (n, r) and (n, h), got shapes "
                f"{tuple(features.shape)} and {tuple(targets.shape)}."
            )
        if features.shape[0] != targets.shape[0] or features.shape[0] == 0:
            raise ValueError(
                f"features and targets must hold the same n >= 1 samples, got "
                f"{features.shape[0]} and {targets.shape[0]}."
            )
        f = features.detach().double()
        y = targets.detach().double().to(f.device)
        f_mean = f.mean(0) if bias else f.new_zeros(f.shape[1])
        y_mean = y.mean(0) if bias else y.new_zeros(y.shape[1])
        fc, yc = f - f_mean, y - y_mean
        return cls(
            num_samples=int(f.shape[0]),
            feature_mean=f_mean,
            target_mean=y_mean,
            gram=fc.T @ fc,
            cross=fc.T @ yc,
            target_sq=float((yc * yc).sum()),
            centred=bias,
        )

    @classmethod
    def from_shards(
        cls,
        features: Tensor,
        targets: Tensor,
        *,
        bias: bool = True,
        distributed: bool | None = None,
    ) -> RidgeMoments:
        """Moments of the rows of all processes, each passing only its own rows.

        Two all-reductions (sum, float64): the counts and sums give the global
        means, then each process centres its rows at them and the centred
        cross-products are summed. So the moments equal :meth:`from_data` on
        the concatenated rows up to rounding, without the cancellation of
        centring raw sums. A process may hold no rows. Without an initialised
        process group (or with one process) it is :meth:`from_data`.

        Args:
            features: This process's rows of F, shape (n_rank, r).
            targets: This process's rows of Y, shape (n_rank, h).
            bias: Centre (fit an unpenalised intercept).
            distributed: Reduce across processes; None: when a process group
                with more than one process is initialised.

        Returns:
            The moments of all rows, the same on every process.

        Raises:
            ValueError: If the shapes do not match or no process has rows.

        Examples:
            >>> f, y = torch.randn(10, 3), torch.randn(10, 2)
            >>> a = RidgeMoments.from_shards(f, y)
            >>> torch.allclose(a.gram, RidgeMoments.from_data(f, y).gram)
            True
        """
        reduce = _distributed.is_distributed() if distributed is None else distributed
        if not reduce:
            return cls.from_data(features, targets, bias=bias)
        error = None
        if (
            features.dim() != 2
            or targets.dim() != 2
            or features.shape[0] != targets.shape[0]
        ):
            error = ValueError(
                f"features and targets must be (n, r) and (n, h) with the same n, "
                f"got shapes {tuple(features.shape)} and {tuple(targets.shape)}."
            )
        # Raise on every process, not only this one, which would leave the others
        # waiting in the reduction.
        _distributed.agree(error, distributed=True)
        f = features.detach().double()
        y = targets.detach().double().to(f.device)
        r, h = f.shape[1], y.shape[1]
        sums = _distributed.all_reduce_sum_float64(
            torch.cat([f.new_tensor([f.shape[0]]), f.sum(0), y.sum(0)]),
            distributed=True,
        )
        n = int(sums[0])
        if n == 0:
            raise ValueError("No process holds rows; the ridge fit needs n >= 1.")
        f_mean = sums[1 : 1 + r] / n if bias else f.new_zeros(r)
        y_mean = sums[1 + r :] / n if bias else y.new_zeros(h)
        fc, yc = f - f_mean, y - y_mean
        centred = _distributed.all_reduce_sum_float64(
            torch.cat(
                [
                    (fc.T @ fc).flatten(),
                    (fc.T @ yc).flatten(),
                    (yc * yc).sum().reshape(1),
                ]
            ),
            distributed=True,
        )
        return cls(
            num_samples=n,
            feature_mean=f_mean,
            target_mean=y_mean,
            gram=centred[: r * r].reshape(r, r),
            cross=centred[r * r : r * r + r * h].reshape(r, h),
            target_sq=float(centred[-1]),
            centred=bias,
        )


@dataclass
class RidgeFit:
    """A ridge regression ``Y ~ F A^T + gamma`` of an encoder's embedding.

    Attributes:
        weight: A, shape (h, r), float64.
        bias: gamma, shape (h,), or None without an intercept.
        penalty: The penalty lambda of the objective
            ``(1/n) |Y - F A^T - gamma|^2 + lambda |A|^2``.
        gcv: Generalised cross-validation score at ``penalty`` (mean squared
            error per sample, summed over the h outputs, inflated by
            ``(1 - df/n)^-2``).
        r2: Coefficient of determination on the fitted samples,
            ``1 - RSS / |Yc|^2`` (all outputs pooled).
        degrees_of_freedom: ``tr(H)`` of the hat matrix, the intercept included.
        selected: Whether ``penalty`` was chosen by GCV.
    """

    weight: Tensor = field(repr=False)
    bias: Tensor | None = field(repr=False)
    penalty: float
    gcv: float
    r2: float
    degrees_of_freedom: float
    selected: bool


def solve_ridge(
    moments: RidgeMoments,
    *,
    penalty: float | None = None,
    grid: tuple[float, ...] = PENALTY_GRID,
) -> RidgeFit:
    """Solves a multi-output ridge regression, choosing the penalty by GCV [2].

    With ``C = Fc^T Fc = V diag(c) V^T`` and ``Z = V^T Fc^T Yc``, the solution is
    ``A^T = V diag(1 / (c + n lambda)) Z`` and, for every lambda at once, the
    residual sum of squares ``|Yc|^2 - sum_i |Z_i|^2 (c_i + 2 n lambda) /
    (c_i + n lambda)^2`` and the degrees of freedom ``sum_i c_i / (c_i + n
    lambda)`` (+1 for the intercept) follow from one eigendecomposition; GCV is
    ``(RSS / n) / (1 - df / n)^2``. One lambda serves all h outputs. Written
    here rather than with ``sklearn.linear_model.RidgeCV`` because it works on
    the moments (refits on landmark subsets never revisit the data) and because
    ``RidgeCV`` took 13-34 s on 32,561 x 512 coordinates and 64 outputs, two
    cores, against under a second here; its coefficients at a fixed penalty
    equal scikit-learn's ``Ridge(alpha=n * lambda)`` (tested).

    Args:
        moments: The regression's moments.
        penalty: Lambda; None chooses it from ``grid`` by GCV.
        grid: Penalties relative to ``c_1 / n`` tried by GCV.

    Returns:
        The fit.

    Raises:
        ValueError: If the penalty is not positive, the grid is empty, or the
            coordinates are constant.

    References:
        - [2] Golub, Heath, Wahba, 1979, Technometrics

    Examples:
        >>> f = torch.randn(200, 5, dtype=torch.float64)
        >>> y = f @ torch.randn(5, 2, dtype=torch.float64) + 1.0
        >>> fit = solve_ridge(RidgeMoments.from_data(f, y))
        >>> fit.r2 > 0.999
        True
    """
    if penalty is not None:
        check_positive(penalty, "penalty")
    elif not grid:
        raise ValueError("grid is empty; give at least one relative penalty.")
    n = moments.num_samples
    centred = moments.centred
    gram = 0.5 * (moments.gram + moments.gram.T)
    c, v = torch.linalg.eigh(gram)
    c = c.clamp_min(0.0)
    top = float(c[-1])
    if not top > 0:
        raise ValueError(
            "The surrogate's coordinates are constant on the fitted samples, so no "
            "regression is possible; check the kernel and the data."
        )
    z = v.T @ moments.cross
    energy = (z * z).sum(1)

    def score(lam: float) -> tuple[float, float, float]:
        shrunk = c + n * lam
        explained = float((energy * (c + 2 * n * lam) / shrunk**2).sum())
        rss = max(moments.target_sq - explained, 0.0)
        df = float((c / shrunk).sum()) + float(centred)
        gcv = math.inf if df >= n else (rss / n) / (1.0 - df / n) ** 2
        return rss, df, gcv

    if penalty is None:
        candidates = [g * top / n for g in grid]
        scores = [score(lam)[2] for lam in candidates]
        # Ties (e.g. all infinite for tiny n) go to the largest penalty.
        best = min(range(len(candidates)), key=lambda i: (scores[i], -candidates[i]))
        lam = candidates[best]
    else:
        lam = float(penalty)
    rss, df, gcv = score(lam)
    weight_t = v @ (z / (c + n * lam)[:, None])
    weight = weight_t.T.contiguous()
    bias = moments.target_mean - weight @ moments.feature_mean
    r2 = 1.0 - rss / moments.target_sq if moments.target_sq > 0 else 1.0
    return RidgeFit(
        weight=weight,
        bias=bias if centred else None,
        penalty=lam,
        gcv=gcv,
        r2=r2,
        degrees_of_freedom=df,
        selected=penalty is None,
    )


def _encoder_outputs(
    encoder: nn.Module, x: Tensor, batch_size: int, progress: bool
) -> Tensor:
    outputs = []
    with torch.no_grad():
        for batch in iter_batches(x, batch_size, progress=progress, desc="encoder"):
            out = encoder(batch)
            if not isinstance(out, Tensor):
                raise TypeError(
                    f"The encoder must return a tensor, got {type(out).__name__}; "
                    f"wrap it so that it returns the representation."
                )
            outputs.append(out.flatten(start_dim=1))
    return torch.cat(outputs)


def _backbone_features(
    backbone: KernelBackbone, x: Tensor, batch_size: int, progress: bool
) -> Tensor:
    with torch.no_grad():
        return torch.cat(
            [
                backbone.features(b)
                for b in iter_batches(x, batch_size, progress=progress, desc="psi")
            ]
        )


def _sharded_moments(
    backbone: KernelBackbone,
    inputs: Tensor,
    targets: Tensor,
    batch_size: int,
    progress: bool,
) -> RidgeMoments:
    """The ridge moments with the kernel pass split by row chunks over processes.

    Chunk c of ``batch_size`` rows goes to rank ``c mod W``, so the pass costs
    each process 1/W of the rows; the moments are all-reduced.
    """
    starts = list(range(0, len(inputs), batch_size))
    own = [start for c, start in enumerate(starts) if _distributed.owns(c)]
    with torch.no_grad():
        parts = [
            backbone.features(inputs[start : start + batch_size])
            for start in tqdm(own, disable=not progress, desc="psi")
        ]
    rows = torch.cat(
        [torch.arange(s, min(s + batch_size, len(inputs))) for s in own]
        or [torch.zeros(0, dtype=torch.long)]
    )
    features = (
        torch.cat(parts)
        if parts
        else torch.zeros(
            0,
            backbone.nystrom.rank,
            dtype=torch.float64,
            device=backbone.landmarks.device,
        )
    )
    return RidgeMoments.from_shards(
        features,
        targets[rows.to(targets.device)],
        bias=backbone.linear.bias is not None,
        distributed=True,
    )


def set_linear(backbone: KernelBackbone, fit: RidgeFit) -> None:
    """Writes a ridge fit's A and gamma into the backbone's linear map, in place.

    Args:
        backbone: The backbone, with ``out_dim`` rows and r columns of A.
        fit: The fit, weight of shape (out_dim, r).

    Raises:
        ValueError: If the shapes do not match.
    """
    weight = backbone.linear.weight
    if fit.weight.shape != weight.shape:
        raise ValueError(
            f"The fit's A has shape {tuple(fit.weight.shape)} but the backbone's "
            f"has {tuple(weight.shape)}; fit the backbone it is written to."
        )
    with torch.no_grad():
        weight.copy_(fit.weight.to(weight))
        if backbone.linear.bias is not None:
            backbone.linear.bias.zero_()
            if fit.bias is not None:
                backbone.linear.bias.copy_(fit.bias.to(backbone.linear.bias))


def fit_ridge(
    backbone: KernelBackbone,
    inputs: Tensor,
    targets: Tensor,
    *,
    penalty: float | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> RidgeFit:
    """Fits A and gamma of a kernel backbone to targets by ridge regression [1].

    Minimises ``(1/n) sum_i |y_i - A psi(x_i) - gamma|^2 + lambda |A|^2`` over
    the backbone's coordinates ``psi = backbone.features`` (the Nyström kernel
    ridge regression of Engel et al.'s kernel surrogates, in the preconditioned
    coordinates), with lambda chosen by generalised cross-validation unless
    given, and writes the solution into ``backbone.linear`` in place.

    Args:
        backbone: The backbone; its out_dim must equal the targets' width.
        inputs: Tensor of shape (n, ...) shaped like the landmarks.
        targets: Tensor of shape (n, out_dim), e.g. the encoder's embedding.
        penalty: Lambda; None selects it by GCV.
        batch_size: Rows per kernel pass.
        progress: Show a progress bar.

    Returns:
        The fit (penalty, GCV score, training R^2).

    Raises:
        ValueError: If shapes mismatch or the penalty is not positive.

    References:
        - [1] Engel et al., 2024, arXiv 2305.14585

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> x = torch.randn(64, 3, dtype=torch.float64)
        >>> backbone = KernelBackbone(RBF(2.0), x[:16], out_dim=2)
        >>> fit = fit_ridge(backbone, x, torch.sin(x[:, :2]))
        >>> fit.r2 > 0.9
        True
    """
    check_samples(inputs, "inputs")
    if targets.dim() != 2 or targets.shape != (inputs.shape[0], backbone.out_dim):
        raise ValueError(
            f"targets must have shape ({inputs.shape[0]}, {backbone.out_dim}) (one "
            f"row per input, one column per output of the backbone), got "
            f"{tuple(targets.shape)}."
        )
    if _distributed.is_distributed():
        moments = _sharded_moments(backbone, inputs, targets, batch_size, progress)
    else:
        features = _backbone_features(backbone, inputs, batch_size, progress)
        moments = RidgeMoments.from_data(
            features, targets, bias=backbone.linear.bias is not None
        )
    fit = solve_ridge(moments, penalty=penalty)
    set_linear(backbone, fit)
    return fit


# -- the surrogate -------------------------------------------------------------------


@dataclass
class SurrogateFit:
    """How :func:`build_surrogate` made a surrogate: ``backbone.surrogate_fit``.

    It holds what a refit on a landmark subset needs to repeat the construction
    (:class:`~lightly_krepes.audit.AuditCache`).

    Attributes:
        method: ``"ridge"`` (A, gamma fitted to the encoder's embedding) or
            ``"pc"`` (principal-component initialisation).
        ridge: The ridge fit (penalty, GCV, training R^2), None for ``"pc"``.
        encoder_dim: The encoder's (flattened) output size.
        out_dim: The out_dim asked for (None: chosen as documented).
        pool_size: Pool size of the data read.
        seed: Seed of the pool and the selection.
        num_fit_samples: Rows the ridge regression was fitted on (0 for pc).
        selected: Whether the landmarks were selected from the data.
        options: Keyword arguments of :class:`KernelBackbone` used (rank,
            rcond, bias and any extra ones).
        lengthscale: The :class:`~lightly_krepes.kernels.InducedRBF` length scale
            that ``bandwidth`` resolved to, None for the eNTK itself.
    """

    method: FitMethod
    ridge: RidgeFit | None
    encoder_dim: int
    out_dim: int | None
    pool_size: int | None
    seed: int
    num_fit_samples: int
    selected: bool
    options: dict[str, Any] = field(default_factory=dict)
    lengthscale: float | None = None

    @staticmethod
    def of(backbone: KernelBackbone) -> SurrogateFit | None:
        """The record of a backbone built by :func:`build_surrogate`, or None."""
        record = backbone.__dict__.get("surrogate_fit")
        return record if isinstance(record, SurrogateFit) else None


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


# Rows of the seeded pool on which the median distance is taken (300 x 300 pairs).
_MEDIAN_ROWS = 600


def _resolve_out_dim(
    fit: FitMethod, out_dim: int | None, encoder_dim: int, rank: int, m: int
) -> int:
    if out_dim is not None:
        return out_dim
    if fit == "pc":
        return min(encoder_dim, rank)
    if encoder_dim > rank:
        raise ValueError(
            f"fit='ridge' reproduces all {encoder_dim} outputs of the encoder, which "
            f"needs a Nyström rank of at least {encoder_dim}, but the {m} landmarks "
            f"give rank {rank}. Use more landmarks (num_landmarks >= "
            f"{2 * encoder_dim}), or fit='pc' (the top {rank} kernel-PCA "
            f"directions), or out_dim <= {rank} with fit='pc'."
        )
    return encoder_dim


def make_backbone(
    kernel: Kernel,
    landmarks: Tensor,
    *,
    fit: FitMethod,
    out_dim: int | None,
    encoder_dim: int,
    landmark_indices: Tensor | None = None,
    options: dict[str, Any],
) -> KernelBackbone:
    """The surrogate's backbone at its initialisation, before any fit.

    One code path for :func:`build_surrogate` and the refits of
    :class:`~lightly_krepes.audit.AuditCache`, so both construct the same thing.
    With ``out_dim=None`` the rank decides it (see :func:`build_surrogate`); the
    backbone is then built once at out_dim 1 and its linear map resized, instead
    of fitting the Nyström map twice.
    """
    # nn.Linear draws its (overwritten) initial weights from the global generator.
    with torch.random.fork_rng(devices=[]):
        if out_dim is not None:
            return KernelBackbone(
                kernel,
                landmarks,
                out_dim,
                landmark_indices=landmark_indices,
                **options,
            )
        backbone = KernelBackbone(
            kernel, landmarks, 1, landmark_indices=landmark_indices, **options
        )
        rank = backbone.nystrom.rank
        m = backbone.nystrom.num_landmarks
        h = _resolve_out_dim(fit, None, encoder_dim, rank, m)
        if h != 1:
            weight = backbone.linear.weight
            backbone.linear = nn.Linear(
                rank,
                h,
                bias=backbone.linear.bias is not None,
                dtype=weight.dtype,
                device=weight.device,
            )
            backbone.reset_parameters()
    return backbone


def _check_count(value: int | None, name: str) -> None:
    if value is not None and (
        isinstance(value, bool) or int(value) != value or value < 1
    ):
        raise ValueError(f"{name} must be a positive integer or None, got {value}.")


def build_surrogate(
    encoder: nn.Module,
    data: Any,
    *,
    num_landmarks: int | None = None,
    landmarks: Tensor | None = None,
    seed: int = 0,
    fit: FitMethod = "ridge",
    penalty: float | None = None,
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
    batch_size: int = 256,
    progress: bool = True,
    **backbone_options: Any,
) -> KernelBackbone:
    """Builds the eNTK kernel surrogate of a frozen encoder, before the audit step.

    1. The empirical NTK of ``encoder`` (pseudo-NTK by default, cosine
       normalised unless ``normalized=False``); with ``bandwidth``, the
       Gaussian kernel of its feature-space distance
       (:class:`~lightly_krepes.kernels.InducedRBF`), a local surrogate.
    2. Landmarks: ``landmarks`` if given, else ``num_landmarks`` selected from a
       seeded pool of ``data`` (randomly pivoted Cholesky by default); their
       positions in ``data`` are kept in ``backbone.landmark_indices``.
    3. The Nyström :class:`~lightly_krepes.backbone.KernelBackbone` on them.
    4. Its linear map:

       - ``fit="ridge"`` (default): A and gamma fitted to the encoder's own
         embedding on the pool by ridge regression on the coordinates
         ``backbone.features`` (Nyström kernel ridge regression, the kernel
         surrogate of Engel et al. [1]), the penalty chosen by generalised
         cross-validation (:func:`fit_ridge`). The surrogate then reproduces
         the encoder (``f(x) ~ encoder(x)``) and the audit step measures what
         the loss would still change about the encoder itself. It is the more
         faithful surrogate downstream (``benchmarks/fidelity.py``,
         ``docs/auditing.md``).
       - ``fit="pc"``: the principal-component initialisation of KREPES [0]
         (``A_0 = [I 0]`` in the backbone's coordinates, ``gamma_0 = 0``): the
         top out_dim kernel-PCA directions, a prior that knows nothing of the
         encoder's embedding beyond its kernel.

    How it was made is recorded in ``backbone.surrogate_fit``
    (:class:`SurrogateFit`; ``SurrogateFit.of(backbone)``).

    Args:
        encoder: The trained encoder, in eval mode (BatchNorm with running
            statistics); it is copied into the kernel and not modified.
        data: Un-augmented inputs: a tensor (n, ...), a map-style data set or
            a loader (for multi-view items the first view is used). The
            landmarks are selected from, and the ridge regression fitted on, a
            pool of it.
        num_landmarks: m; None uses ``max(64, ceil(sqrt(n)))`` for ``"pc"`` and
            ``max(64, ceil(sqrt(n)), 2 h)`` for ``"ridge"`` (which needs rank
            >= h), at most n, n the pool size. Ignored when ``landmarks`` are
            given.
        landmarks: Landmarks (m', ...) to use instead of selecting them, e.g.
            ``surrogate.landmarks[keep]`` for a refit on a subset.
        seed: Seed of the pool, the selection and the probes; the global random
            states are restored afterwards.
        fit: ``"ridge"`` or ``"pc"``, see above.
        penalty: Ridge penalty lambda for ``"ridge"`` (pass
            ``SurrogateFit.of(surrogate).ridge.penalty`` to refit at the same
            one); None chooses it by GCV.
        out_dim: Output dimension h; None uses the encoder's (flattened) output
            size (for ``"pc"`` capped by the Nyström rank).
        output: ``"pntk"`` or ``"trace"``, see
            :class:`~lightly_krepes.kernels.EmpiricalNTK`.
        num_probes: Hutchinson probes for ``output="trace"``.
        normalized: Cosine-normalise the kernel.
        bandwidth: None (default) uses the eNTK itself. A positive value wraps
            it in :class:`~lightly_krepes.kernels.InducedRBF` with squared length
            scale ``bandwidth`` times the median heuristic on the first 600 pool
            rows (:func:`~lightly_krepes.kernels.median_lengthscale`; recorded in
            ``SurrogateFit.lengthscale``). Smaller is more local: the landmark
            terms cancel less and deleting x's top terms is more selective, at
            some cost in fidelity (``docs/auditing.md``, "A local surrogate").
        landmark_method: Landmark selection method.
        pool_size: Number of samples of ``data`` read (None: all).
        rank: Nyström rank (None: all eigenpairs above the cut-off).
        rcond: Relative eigenvalue cut-off of the Nyström map.
        bias: Whether the surrogate has the offset gamma.
        batch_size: Rows per kernel and encoder pass.
        progress: Show progress bars.
        **backbone_options: Further keyword arguments of
            :class:`~lightly_krepes.backbone.KernelBackbone`.

    Returns:
        The surrogate; for ``"pc"`` at its initialisation, for ``"ridge"`` fitted.

    Raises:
        ValueError: If an argument is invalid, the data is empty, the encoder
            has BatchNorm in train mode, or ``"ridge"`` lacks the rank for h.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Engel et al., 2024, arXiv 2305.14585

    Examples:
        >>> encoder = torch.nn.Sequential(
        ...     torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)
        ... )
        >>> x = torch.randn(64, 5)
        >>> surrogate = build_surrogate(encoder, x, num_landmarks=16, progress=False)
        >>> surrogate(x).shape
        torch.Size([64, 4])
        >>> SurrogateFit.of(surrogate).ridge.r2 > 0.9
        True
    """
    if fit not in FIT_METHODS:
        raise ValueError(f"fit must be 'ridge' or 'pc', got {fit!r}.")
    _check_count(num_landmarks, "num_landmarks")
    _check_count(out_dim, "out_dim")
    _check_count(batch_size, "batch_size")
    if bandwidth is not None:
        check_positive(bandwidth, "bandwidth")
    if penalty is not None:
        check_positive(penalty, "penalty")
        if fit != "ridge":
            raise ValueError("penalty is the ridge penalty; it needs fit='ridge'.")
    if landmarks is not None:
        check_samples(landmarks, "landmarks")
        if len(landmarks) == 0:
            raise ValueError(
                "landmarks is empty; a surrogate needs at least one landmark (a "
                "refit must keep at least one)."
            )
    kernel = _build_kernel(encoder, output, num_probes, normalized, seed)
    pool: Tensor | None = None
    pool_indices: Tensor | None = None
    if landmarks is None or fit == "ridge" or bandwidth is not None:
        with seeded(seed):
            pool, pool_indices = collect_pool(data, pool_size, seed)
    lengthscale = None
    if bandwidth is not None:
        assert pool is not None
        lengthscale = median_lengthscale(kernel, pool[:_MEDIAN_ROWS], bandwidth)
        kernel = InducedRBF(kernel, lengthscale)
    sample = landmarks if landmarks is not None else pool
    assert sample is not None
    encoder_dim = int(_encoder_outputs(encoder, sample[:1], 1, False).shape[1])
    if fit == "ridge" and out_dim is not None and out_dim != encoder_dim:
        raise ValueError(
            f"fit='ridge' regresses the encoder's {encoder_dim} outputs, so out_dim "
            f"must be {encoder_dim} (or None), got {out_dim}; fit='pc' takes any "
            f"out_dim up to the Nyström rank."
        )
    landmark_indices = None
    if landmarks is None:
        assert pool is not None and pool_indices is not None
        m = num_landmarks
        if m is None:
            m = max(64, math.ceil(math.sqrt(len(pool))))
            if fit == "ridge":
                m = max(m, 2 * encoder_dim)
            m = min(len(pool), m)
        indices = select_landmarks(
            pool, kernel, m, method=landmark_method, seed=seed, progress=progress
        )
        landmarks = pool[indices]
        landmark_indices = pool_indices[indices.to(pool_indices.device)]
    options = {"rank": rank, "rcond": rcond, "bias": bias, **backbone_options}
    backbone = make_backbone(
        kernel,
        landmarks,
        fit=fit,
        out_dim=out_dim,
        encoder_dim=encoder_dim,
        landmark_indices=landmark_indices,
        options=options,
    )
    ridge = None
    if fit == "ridge":
        assert pool is not None
        targets = _encoder_outputs(encoder, pool, batch_size, progress)
        ridge = fit_ridge(
            backbone,
            pool.to(backbone.landmarks.device),
            targets.to(backbone.landmarks.device),
            penalty=penalty,
            batch_size=batch_size,
            progress=progress,
        )
    record = SurrogateFit(
        method=fit,
        ridge=ridge,
        encoder_dim=encoder_dim,
        out_dim=out_dim,
        pool_size=pool_size,
        seed=seed,
        num_fit_samples=0 if pool is None or fit == "pc" else len(pool),
        selected=landmark_indices is not None,
        options=options,
        lengthscale=lengthscale,
    )
    # A plain attribute, not a buffer: it is metadata of the construction and
    # must not change the backbone's state dict.
    backbone.__dict__["surrogate_fit"] = record
    return backbone
