"""Shared self-supervised training code of the fidelity and training benchmarks.

Encoders (a small CNN, an MLP), vectorised SimCLR-style augmentations on tensors,
SCARF views for tabular rows, Lightly losses and projection heads, a training loop
with a wall-clock budget (and an SGD-then-Adam fallback), landmark selection and
Nyström construction timed apart, and linear probes on fixed labelled rows.

Benchmarks are run as scripts (``python benchmarks/<name>.py``), so this module is
imported as ``_ssl_training`` from the script's own folder.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from lightly.loss import BarlowTwinsLoss, NTXentLoss, VICRegLoss
from lightly.models.modules.heads import (
    BarlowTwinsProjectionHead,
    SimCLRProjectionHead,
    VICRegProjectionHead,
)
from torch import Tensor, nn
from tqdm.auto import tqdm

from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.backbone.kernel_backbone import DEFAULT_RIDGE
from lightly_krepes.data import (
    CIFAR10_NORMALIZE,
    FASHION_MNIST_NORMALIZE,
    load_adult,
    load_cifar10,
    load_fashion_mnist,
    select_indices,
)
from lightly_krepes.evaluation import extract_features, linear_probe, surrogate_fidelity
from lightly_krepes.kernels import (
    EmpiricalNTK,
    InducedRBF,
    Kernel,
    Normalized,
    PatchKernel,
    SumKernel,
    median_lengthscale,
)
from lightly_krepes.landmarks import select_landmarks
from lightly_krepes.loss import SpectralContrastiveLoss
from lightly_krepes.nystrom import Nystrom
from lightly_krepes.transforms import TabularMultiViewTransform

LossName = Literal["simclr", "vicreg", "barlowtwins", "spectral"]
OptimizerName = Literal["sgd", "adam"]
ViewFn = Callable[[Tensor], tuple[Tensor, Tensor]]

LOSS_LABELS: dict[str, str] = {
    "simclr": "SimCLR (NTXentLoss)",
    "vicreg": "VICReg (VICRegLoss)",
    "barlowtwins": "Barlow Twins (BarlowTwinsLoss)",
    "spectral": "spectral contrastive (SpectralContrastiveLoss)",
}
SGD_LR = 0.06
SGD_MOMENTUM = 0.9
ADAM_LR = 1e-3
HEAD_HIDDEN_DIM = 512
"""Hidden width of every projection head (Lightly's defaults, 2048-8192, are far
too slow on two CPU cores)."""


def seed_everything(seed: int) -> None:
    """Seeds Python and torch (NumPy randomness here always uses explicit seeds)."""
    random.seed(seed)
    torch.manual_seed(seed)


# -- data -----------------------------------------------------------------------------


@dataclass
class Split:
    """One split of a dataset, ready for the models.

    Attributes:
        inputs: Model inputs: normalised images (n, C, H, W) or encoded rows (n, d).
        labels: int64 labels (n,).
        raw: Images in [0, 1] that the augmentations start from (None for tables).
    """

    inputs: Tensor
    labels: Tensor
    raw: Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def normalize_images(images: Tensor, dataset: str) -> Tensor:
    """Standardises [0, 1] images with the dataset's channel mean and std."""
    stats = FASHION_MNIST_NORMALIZE if dataset == "fmnist" else CIFAR10_NORMALIZE
    mean = torch.tensor(stats["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(stats["std"]).view(1, -1, 1, 1)
    return ((images - mean) / std).contiguous()


def load_image_split(
    dataset: str,
    split: str,
    max_samples: int | None,
    seed: int,
    root: str | None = None,
) -> Split:
    """Loads Fashion-MNIST (``"fmnist"``) or CIFAR-10 (``"cifar10"``) as a Split.

    A subset is class-stratified and seeded (``lightly_krepes.data`` loaders).

    Raises:
        SystemExit: If the files are missing (with the loader's explanation).
    """
    try:
        if dataset == "fmnist":
            images, labels = load_fashion_mnist(
                split, root, max_samples=max_samples, seed=seed, as_float=True
            )
        elif dataset == "cifar10":
            images, labels = load_cifar10(
                split,
                root,
                max_samples=max_samples,
                seed=seed,
                as_float=True,
                progress=False,
            )
        else:
            raise ValueError(f"Unknown image dataset {dataset!r}.")
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from error
    return Split(normalize_images(images, dataset), labels, images)


def load_adult_splits(
    train_size: int | None, test_size: int | None, seed: int, root: str | None = None
) -> tuple[Split, Split, list[list[int]]]:
    """Adult train and test splits (one-hot + standardised) and the one-hot groups.

    Returns:
        ``(train, test, groups)``; ``groups`` lists the columns of each original
        feature (corrupted together by SCARF).

    Raises:
        SystemExit: If the files are missing (with the loader's explanation).
    """
    try:
        train = load_adult("train", root, max_samples=train_size, seed=seed)
        test = load_adult("test", root, max_samples=test_size, seed=seed)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from error
    groups = [list(range(s.start, s.stop)) for s in train.feature_slices.values()]
    return (
        Split(train.features.contiguous(), train.labels),
        Split(test.features.contiguous(), test.labels),
        groups,
    )


def labelled_indices(labels: Tensor, fraction: float, seed: int) -> Tensor:
    """The labelled rows of the linear probe: a stratified, seeded fraction."""
    count = max(1, math.floor(fraction * len(labels)))
    idx = select_indices(labels.numpy().astype(np.int64), count, seed=seed)
    return torch.from_numpy(idx)


# -- encoders -------------------------------------------------------------------------


def small_cnn(in_channels: int, image_size: int, out_dim: int, seed: int) -> nn.Module:
    """Two 3x3 conv layers (32, 64 channels) with ReLU and 2x2 max pooling, then Linear.

    Fashion-MNIST (1x28x28, out_dim 128): 420,352 parameters; CIFAR-10 (3x32x32):
    544,000. No BatchNorm, so train and eval mode compute the same function.
    """
    torch.manual_seed(seed)
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * side * side, out_dim),
    )


def tabular_mlp(in_dim: int, out_dim: int, seed: int, hidden: int = 256) -> nn.Module:
    """MLP ``in_dim -> hidden -> hidden -> out_dim``, ReLU (Adult: 108-256-256-64)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, out_dim),
    )


def num_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) scalar parameters."""
    return sum(
        p.numel() for p in module.parameters() if p.requires_grad or not trainable_only
    )


# -- augmentations --------------------------------------------------------------------


class ImageViews:
    """Two SimCLR-style views per image, vectorised over the batch.

    Per sample and view, independently: random resized crop (area fraction in
    ``[min_scale, 1]``, aspect ratio log-uniform in [3/4, 4/3], bilinear, one
    ``affine_grid``/``grid_sample`` call for the whole batch), horizontal flip
    (p = 0.5), colour jitter with probability 0.8 (brightness, contrast and, for
    colour images, saturation factors uniform in ``[1 - s, 1 + s]``, applied in this
    order; hue is not jittered), random greyscale (p = 0.2, colour images only),
    clamp to [0, 1], then the dataset's normalisation. These are the augmentations of
    Lightly's ``SimCLRTransform`` without blur and hue, computed on tensors so that
    two CPU cores spend their time on the models.

    Args:
        dataset: ``"fmnist"`` or ``"cifar10"`` (normalisation and colour ops).
        min_scale: Smallest crop area fraction.
        jitter: Jitter strength s.
        seed: Seed of the view generator.
    """

    def __init__(
        self, dataset: str, min_scale: float, jitter: float = 0.4, seed: int = 0
    ) -> None:
        self.dataset = dataset
        self.min_scale = min_scale
        self.jitter = jitter
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, n: int, low: float, high: float) -> Tensor:
        return torch.rand(n, generator=self.generator) * (high - low) + low

    def _crop_flip(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        area = self._uniform(n, self.min_scale, 1.0)
        ratio = torch.exp(self._uniform(n, math.log(3 / 4), math.log(4 / 3)))
        width = torch.sqrt(area * ratio).clamp(max=1.0)
        height = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (2 * torch.rand(n, generator=self.generator) - 1) * (1 - width)
        cy = (2 * torch.rand(n, generator=self.generator) - 1) * (1 - height)
        flip = torch.where(torch.rand(n, generator=self.generator) < 0.5, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = width * flip
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = height
        theta[:, 1, 2] = cy
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(
            x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )

    def _colour(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        s = self.jitter
        apply = (torch.rand(n, generator=self.generator) < 0.8).view(n, 1, 1, 1)

        def factor() -> Tensor:
            return self._uniform(n, 1 - s, 1 + s).view(n, 1, 1, 1)

        def grey(images: Tensor) -> Tensor:
            if images.shape[1] == 1:
                return images
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            return (images * weights).sum(dim=1, keepdim=True)

        y = (x * factor()).clamp(0, 1)
        mean = grey(y).mean(dim=(1, 2, 3), keepdim=True)
        y = ((y - mean) * factor() + mean).clamp(0, 1)
        if x.shape[1] == 3:
            g = grey(y)
            y = ((y - g) * factor() + g).clamp(0, 1)
        y = torch.where(apply, y, x)
        if x.shape[1] == 3:
            to_grey = (torch.rand(n, generator=self.generator) < 0.2).view(n, 1, 1, 1)
            y = torch.where(to_grey, grey(y).expand_as(y), y)
        return y

    def view(self, images: Tensor) -> Tensor:
        """One augmented, normalised view of a batch of [0, 1] images."""
        return normalize_images(self._colour(self._crop_flip(images)), self.dataset)

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.view(images), self.view(images)

    def describe(self) -> dict[str, Any]:
        """Settings, for the JSON file."""
        return {
            "kind": "SimCLR-style, vectorised on tensors (no blur, no hue)",
            "min_scale": self.min_scale,
            "jitter_strength": self.jitter,
            "jitter_prob": 0.8,
            "grayscale_prob": 0.2 if self.dataset == "cifar10" else 0.0,
            "flip_prob": 0.5,
        }


class TabularViews:
    """Two SCARF views of a batch of rows (:class:`TabularMultiViewTransform`).

    Args:
        marginals: Reference rows whose empirical marginals replace corrupted
            features (the training rows).
        groups: Column groups corrupted together (one per original feature).
        corruption_rate: Fraction of feature groups replaced per view.
        seed: Seed of the view generator.
    """

    def __init__(
        self,
        marginals: Tensor,
        groups: Sequence[Sequence[int]],
        corruption_rate: float = 0.6,
        seed: int = 0,
    ) -> None:
        self.corruption_rate = corruption_rate
        self.num_groups = len(groups)
        self.transform = TabularMultiViewTransform(
            marginals, num_views=2, corruption_rate=corruption_rate, groups=groups,
            seed=seed,
        )  # fmt: skip

    def __call__(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        first, second = self.transform(rows)
        return first, second

    def describe(self) -> dict[str, Any]:
        """Settings, for the JSON file."""
        return {
            "kind": "SCARF (TabularMultiViewTransform), both views corrupted",
            "corruption_rate": self.corruption_rate,
            "feature_groups": self.num_groups,
        }


# -- losses and heads -----------------------------------------------------------------


def make_loss(name: str) -> nn.Module:
    """The loss with its library defaults (Lightly's, or this project's spectral)."""
    losses: dict[str, Callable[[], nn.Module]] = {
        "simclr": NTXentLoss,
        "vicreg": VICRegLoss,
        "barlowtwins": BarlowTwinsLoss,
        "spectral": SpectralContrastiveLoss,
    }
    if name not in losses:
        raise ValueError(f"Unknown loss {name!r}.")
    return losses[name]()


def make_head(name: str, input_dim: int) -> nn.Module:
    """The loss's Lightly projection head on ``input_dim`` (hidden width 512).

    SimCLR: 512-128 (2 layers); VICReg: 512-512-512 (3 layers); Barlow Twins:
    512-512-512; ``"none"``: identity.
    """
    width = HEAD_HIDDEN_DIM
    heads: dict[str, Callable[[], nn.Module]] = {
        "simclr": lambda: SimCLRProjectionHead(input_dim, width, 128),
        "vicreg": lambda: VICRegProjectionHead(input_dim, width, width),
        "barlowtwins": lambda: BarlowTwinsProjectionHead(input_dim, width, width),
        "none": nn.Identity,
    }
    if name not in heads:
        raise ValueError(f"Unknown head {name!r}.")
    return heads[name]()


class SSLModel(nn.Module):
    """A backbone followed by a projection head; the representation is the backbone's.

    Args:
        backbone: The encoder (a network or a :class:`KernelBackbone`).
        head: The projection head (``nn.Identity`` for none).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        z: Tensor = self.head(self.backbone(x).flatten(start_dim=1))
        return z


# -- training with a wall-clock budget ------------------------------------------------


@dataclass
class TrainStats:
    """What one budgeted training run did.

    Attributes:
        optimizer: ``"sgd"`` or ``"adam"``.
        lr: Learning rate.
        budget_seconds: The budget of the training loop.
        seconds: Wall time actually spent in the loop.
        steps: Optimiser steps.
        samples: Training samples processed (each in two views).
        epochs: ``samples / n_train``.
        loss_start: Mean loss of the first steps (up to 10).
        loss_end: Mean loss of the last 10% of the steps.
        finite: Whether every loss was finite.
        val_start: Validation probe accuracy before training (None without one).
        val_end: Validation probe accuracy after training (None without one).
        learned: Finite losses, ``loss_end`` below ``loss_start`` by at least 1% of
            ``|loss_start|`` and, with a validation probe, ``val_end >= val_start``.
        loss_curve: Up to 50 (step, loss) pairs along the run.
    """

    optimizer: str
    lr: float
    budget_seconds: float
    seconds: float
    steps: int
    samples: int
    epochs: float
    loss_start: float
    loss_end: float
    finite: bool
    val_start: float | None = None
    val_end: float | None = None
    learned: bool = False
    loss_curve: list[tuple[int, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The stats for the JSON file."""
        return asdict(self)


def make_optimizer(
    name: str, params: Sequence[nn.Parameter]
) -> tuple[torch.optim.Optimizer, float]:
    """SGD (lr 0.06, momentum 0.9) or Adam (lr 1e-3), without weight decay."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=SGD_LR, momentum=SGD_MOMENTUM), SGD_LR
    if name == "adam":
        return torch.optim.Adam(params, lr=ADAM_LR), ADAM_LR
    raise ValueError(f"Unknown optimizer {name!r}.")


def train_for_budget(
    model: SSLModel,
    loss_fn: nn.Module,
    views: ViewFn,
    data: Tensor,
    *,
    budget_seconds: float,
    batch_size: int,
    optimizer: str,
    seed: int,
    desc: str,
) -> TrainStats:
    """Trains ``model`` on two views of random batches until the budget is spent.

    Batches are drawn without replacement within an epoch (seeded permutation), the
    last incomplete batch of an epoch is dropped. The views are computed inside the
    loop, so augmentation time counts. The loop stops after the first step that
    ends at or past ``budget_seconds``, or early when the loss becomes NaN or
    infinite. At least one step is always taken.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt, lr = make_optimizer(optimizer, params)
    gen = torch.Generator().manual_seed(seed)
    n = data.shape[0]
    batch_size = min(batch_size, n)
    losses: list[float] = []
    samples = 0
    finite = True
    model.train()
    order = torch.randperm(n, generator=gen)
    cursor = 0
    bar = tqdm(total=max(1, round(budget_seconds)), desc=desc, unit="s", leave=False)
    start = time.perf_counter()
    shown = 0
    while True:
        if cursor + batch_size > n:
            order = torch.randperm(n, generator=gen)
            cursor = 0
        batch = data[order[cursor : cursor + batch_size]]
        cursor += batch_size
        x0, x1 = views(batch)
        loss = loss_fn(model(x0), model(x1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        losses.append(value)
        samples += batch_size
        elapsed = time.perf_counter() - start
        now = min(round(elapsed), bar.total)
        if now > shown:
            bar.update(now - shown)
            shown = now
            bar.set_postfix(loss=f"{value:.4g}", steps=len(losses))
        if not math.isfinite(value):
            finite = False
            break
        if elapsed >= budget_seconds:
            break
    bar.close()
    seconds = time.perf_counter() - start
    head = losses[: min(10, len(losses))]
    tail = losses[-max(1, len(losses) // 10) :]
    every = max(1, len(losses) // 50)
    return TrainStats(
        optimizer=optimizer,
        lr=lr,
        budget_seconds=budget_seconds,
        seconds=seconds,
        steps=len(losses),
        samples=samples,
        epochs=samples / n,
        loss_start=float(np.mean(head)),
        loss_end=float(np.mean(tail)),
        finite=finite,
        loss_curve=[(i, losses[i]) for i in range(0, len(losses), every)],
    )


def fit_ssl(
    make_model: Callable[[], SSLModel],
    loss_fn: nn.Module,
    views: ViewFn,
    data: Tensor,
    *,
    budget_seconds: float,
    batch_size: int,
    optimizer: str,
    seed: int,
    desc: str,
    validate: Callable[[nn.Module], float] | None = None,
) -> tuple[SSLModel, list[TrainStats]]:
    """Budgeted training; with ``optimizer="auto"`` SGD first, then Adam if needed.

    ``"auto"`` trains a fresh model with SGD (lr 0.06, momentum 0.9); if that run
    did not learn (see :attr:`TrainStats.learned`; ``validate`` maps the backbone
    to a validation probe accuracy) a fresh model (same seed) is trained with Adam
    (lr 1e-3) for the same budget and kept whatever its outcome. Every attempt is
    returned, the kept one last. Validation is not part of the budget.
    """
    order = ["sgd", "adam"] if optimizer == "auto" else [optimizer]
    attempts: list[TrainStats] = []
    model = make_model()
    val_start = None if validate is None else validate(model.backbone)
    for i, name in enumerate(order):
        if i > 0:
            model = make_model()
        stats = train_for_budget(
            model,
            loss_fn,
            views,
            data,
            budget_seconds=budget_seconds,
            batch_size=batch_size,
            optimizer=name,
            seed=seed,
            desc=f"{desc} [{name}]",
        )
        stats.learned = stats.finite and (
            stats.loss_end < stats.loss_start - 0.01 * abs(stats.loss_start)
        )
        if validate is not None and stats.finite:
            stats.val_start = val_start
            stats.val_end = validate(model.backbone)
            stats.learned = stats.learned and stats.val_end >= (val_start or 0.0)
        attempts.append(stats)
        if stats.learned:
            break
    return model, attempts


def summarize_attempts(attempts: list[TrainStats]) -> dict[str, Any]:
    """The kept training run (the last attempt) and every attempt, for JSON."""
    kept = attempts[-1]
    return {
        "optimizer": kept.optimizer,
        "fell_back_to_adam": len(attempts) > 1,
        "learned": kept.learned,
        "steps": kept.steps,
        "epochs": kept.epochs,
        "seconds": kept.seconds,
        "attempts": [a.as_dict() for a in attempts],
    }


# -- kernel surrogate -----------------------------------------------------------------


class Cast(nn.Module):
    """Runs a module in another dtype: inputs cast to ``dtype``, outputs to float32.

    Args:
        module: The module (e.g. a float64 :class:`KernelBackbone`).
        dtype: Its dtype.
    """

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.module(x.to(self.dtype))
        return out.float()


@dataclass
class KernelBuild:
    """A kernel backbone built with separate timings.

    Attributes:
        backbone: The :class:`KernelBackbone` at its PC initialisation.
        model: ``backbone`` taking and returning float32 (wrapped in :class:`Cast`
            for another kernel dtype).
        requested_out_dim: The out_dim asked for.
        kernel_seconds: Building the ``EmpiricalNTK`` (copying the network).
        selection_seconds: RPCholesky landmark selection (candidate features and
            pivots).
        nystrom_seconds: Building the backbone (landmark features, ``K_mm``,
            eigendecomposition, folding), including a rebuild when out_dim had to
            be lowered to the Nyström rank.
        landmark_indices: Indices of the landmarks in the pool.
        dtype: The kernel's dtype.
    """

    backbone: KernelBackbone
    model: nn.Module
    requested_out_dim: int
    kernel_seconds: float
    selection_seconds: float
    nystrom_seconds: float
    landmark_indices: Tensor
    dtype: torch.dtype

    @property
    def total_seconds(self) -> float:
        """All three stages."""
        return self.kernel_seconds + self.selection_seconds + self.nystrom_seconds

    @property
    def out_dim(self) -> int:
        """The backbone's output size."""
        return self.backbone.out_dim

    def describe(self) -> dict[str, Any]:
        """Timings and sizes, for the JSON file."""
        return {
            "kernel_seconds": self.kernel_seconds,
            "selection_seconds": self.selection_seconds,
            "nystrom_seconds": self.nystrom_seconds,
            "total_seconds": self.total_seconds,
            "num_landmarks": int(self.backbone.nystrom.num_landmarks),
            "nystrom_rank": int(self.backbone.nystrom.rank),
            "nystrom_rcond": float(self.backbone.nystrom.rcond),
            "requested_out_dim": self.requested_out_dim,
            "out_dim": self.out_dim,
            "out_dim_lowered_to_rank": self.out_dim < self.requested_out_dim,
            "preconditioner_ridge": float(self.backbone.ridge),
            "dtype": str(self.dtype).replace("torch.", ""),
        }


KERNEL_KINDS = ("entk", "patches", "entk+patches")
"""The kernels ``build_entk_backbone`` builds (``kernel_kind``)."""


def build_entk_backbone(
    network: nn.Module,
    pool: Tensor,
    num_landmarks: int,
    out_dim: int,
    seed: int,
    pool_size: int | None = None,
    dtype: torch.dtype = torch.float32,
    rcond: float | None = None,
    normalized: bool = False,
    ridge: float = DEFAULT_RIDGE,
    bandwidth: float | None = None,
    kernel_kind: str = "entk",
    patch_options: dict[str, Any] | None = None,
) -> KernelBuild:
    """``KernelBackbone`` on the pNTK of ``network`` (eval mode) with RPCholesky.

    Equivalent to ``KernelBackbone.from_data(EmpiricalNTK(network.eval()), pool,
    num_landmarks, out_dim, method="rpcholesky", pool_size=pool_size, seed=seed)``
    with the stages timed apart. The network is copied (to ``dtype``), not changed.
    If the Nyström rank at ``rcond`` is below ``out_dim``, out_dim is lowered to
    the rank; for a linear probe nothing is lost, since with ``A = [I 0]`` the
    representation is then the whole Nyström feature map. ``normalized`` wraps the
    pNTK in ``Normalized`` (cosine normalisation). ``ridge`` is the backbone's
    preconditioner ridge. ``bandwidth`` wraps the normalised pNTK in ``InducedRBF``
    at that multiple of the median heuristic on 600 seeded random pool rows (the
    kernel of ``build_surrogate(bandwidth=...)``, which takes the first 600 rows of
    its own seeded pool). ``kernel_kind`` ``"patches"`` replaces the pNTK by
    ``PatchKernel.from_data(pool, **patch_options)`` (seeded; ``network`` unused),
    a classic convolutional kernel; ``"entk+patches"`` adds the two,
    ``SumKernel.balanced`` on 600 seeded pool rows so that each weighs the same;
    ``normalized`` and ``bandwidth`` then wrap the result.
    """
    t0 = time.perf_counter()
    if kernel_kind not in KERNEL_KINDS:
        raise ValueError(
            f"kernel_kind must be one of {KERNEL_KINDS}, got {kernel_kind!r}"
        )
    candidates = pool.to(dtype)
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
    sample = candidates[order[:600]]
    parts: list[Kernel] = []
    if kernel_kind != "patches":
        parts.append(EmpiricalNTK(copy.deepcopy(network).eval().to(dtype)))
    if kernel_kind != "entk":
        parts.append(
            PatchKernel.from_data(candidates, seed=seed, **(patch_options or {}))
        )
    kernel: Kernel = parts[0] if len(parts) == 1 else SumKernel.balanced(parts, sample)
    if normalized or bandwidth is not None:
        kernel = Normalized(kernel)
    if bandwidth is not None:
        kernel = InducedRBF(kernel, median_lengthscale(kernel, sample, bandwidth))
    t1 = time.perf_counter()
    indices = select_landmarks(
        candidates,
        kernel,
        num_landmarks,
        method="rpcholesky",
        seed=seed,
        pool_size=pool_size,
        progress=True,
    )
    t2 = time.perf_counter()
    landmarks = candidates[indices]
    try:
        backbone = KernelBackbone(kernel, landmarks, out_dim, rcond=rcond, ridge=ridge)
    except ValueError as error:
        if "exceeds the rank" not in str(error):
            raise
        rank = Nystrom(kernel, landmarks, rcond=rcond).rank
        backbone = KernelBackbone(kernel, landmarks, rank, rcond=rcond, ridge=ridge)
    t3 = time.perf_counter()
    model: nn.Module = backbone if dtype == torch.float32 else Cast(backbone, dtype)
    return KernelBuild(
        backbone, model, out_dim, t1 - t0, t2 - t1, t3 - t2, indices, dtype
    )


# -- evaluation -----------------------------------------------------------------------


@dataclass
class ProbeOutcome:
    """A linear probe on one model's representations.

    Attributes:
        accuracy: Test accuracy in [0, 1] (NaN if the representations were not
            finite).
        probabilities: Predicted class probabilities on the test rows (n, C), None
            if the representations were not finite.
        feature_seconds: Extracting the labelled and test representations.
        fit_seconds: Fitting and applying the probe.
    """

    accuracy: float
    probabilities: npt.NDArray[np.float64] | None
    feature_seconds: float
    fit_seconds: float

    def describe(self) -> dict[str, float]:
        """Accuracy and timings, for the JSON file."""
        return {
            "accuracy": self.accuracy,
            "feature_seconds": self.feature_seconds,
            "fit_seconds": self.fit_seconds,
        }


def representations(
    model: nn.Module | None, x: Tensor, batch_size: int = 256, desc: str = ""
) -> Tensor:
    """``model(x)`` in eval mode without gradients, or flattened inputs for None."""
    if model is None:
        return x.flatten(start_dim=1)
    return extract_features(model, x, batch_size=batch_size, progress=bool(desc))[0]


def probe(
    model: nn.Module | None,
    labelled: Split,
    test: Split,
    seed: int,
    desc: str = "",
) -> ProbeOutcome:
    """Linear probe (``lightly_krepes.evaluation.linear_probe``) of a frozen model.

    ``labelled`` already holds the labelled rows (a stratified fraction of the
    training split, the same rows for every model), so the probe is fitted on all
    of them (``label_fraction=1.0``): standardisation and L2 logistic regression
    (C = 1, lbfgs, at most 1,000 iterations).
    """
    t0 = time.perf_counter()
    train_f = representations(model, labelled.inputs, desc=desc and f"{desc} train")
    test_f = representations(model, test.inputs, desc=desc and f"{desc} test")
    t1 = time.perf_counter()
    if not (torch.isfinite(train_f).all() and torch.isfinite(test_f).all()):
        return ProbeOutcome(float("nan"), None, t1 - t0, 0.0)
    result = linear_probe(
        train_f, labelled.labels, test_f, test.labels, label_fraction=1.0, seed=seed
    )
    proba = np.asarray(
        result.classifier.predict_proba(test_f.numpy()), dtype=np.float64
    )
    t2 = time.perf_counter()
    return ProbeOutcome(result.accuracy, proba, t1 - t0, t2 - t1)


def probe_fidelity(
    surrogate: nn.Module, encoder: nn.Module, labelled: Split, test: Split, seed: int
) -> dict[str, Any]:
    """Linear probes of a surrogate and its encoder compared by ``surrogate_fidelity``.

    Returns accuracies, the gap in points, Kendall tau and agreement; an empty
    dict when either model gives non-finite representations.
    """
    kernel = probe(surrogate, labelled, test, seed)
    network = probe(encoder, labelled, test, seed)
    if kernel.probabilities is None or network.probabilities is None:
        return {}
    fid = surrogate_fidelity(
        kernel.probabilities,
        network.probabilities,
        test.labels.numpy(),
        scores="probabilities",
    )
    return {
        "surrogate_accuracy": fid.kernel_accuracy,
        "encoder_accuracy": fid.network_accuracy,
        "gap_points": 100 * fid.accuracy_gap,
        "kendall_tau": fid.kendall_tau,
        "agreement": fid.agreement,
    }


def validation_probe(
    train: Split, exclude: Tensor, size: int, seed: int
) -> Callable[[nn.Module], float]:
    """A label-based check that training helped, from training rows only.

    Two disjoint stratified sets of ``size`` training rows outside ``exclude`` (the
    probe's labelled rows): a probe is fitted on the first and scored on the
    second. The test split is never used.

    Returns:
        A function from a backbone to its validation probe accuracy (NaN counts as
        0).
    """
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[exclude] = False
    candidates = torch.nonzero(keep).squeeze(1)
    sub = select_indices(
        train.labels[candidates].numpy().astype(np.int64), 2 * size, seed=seed
    )
    rows = candidates[torch.from_numpy(sub)]
    gen = torch.Generator().manual_seed(seed)
    rows = rows[torch.randperm(len(rows), generator=gen)]
    fit_rows, eval_rows = rows[:size], rows[size:]
    fit = Split(train.inputs[fit_rows], train.labels[fit_rows])
    evaluation = Split(train.inputs[eval_rows], train.labels[eval_rows])

    def score(backbone: nn.Module) -> float:
        accuracy = probe(backbone, fit, evaluation, seed).accuracy
        return accuracy if math.isfinite(accuracy) else 0.0

    return score
