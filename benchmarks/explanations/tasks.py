"""Data, the SSL encoder and its audit: what every check of the package explains.

Imported as a top-level module by ``benchmarks/explanations/__main__.py``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from _ssl_training import (
    ImageViews,
    SSLModel,
    TabularViews,
    fit_ssl,
    load_adult_splits,
    load_image_split,
    make_head,
    make_loss,
    seed_everything,
    small_cnn,
    summarize_attempts,
    tabular_mlp,
)
from torch import Tensor, nn

from lightly_krepes.attribution import LandmarkExpansion
from lightly_krepes.audit import AuditResult, audit, build_surrogate
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.data import select_indices


@dataclass
class Sizes:
    """How much data every run uses and how it is audited (``--quick`` shrinks it).

    ``normalized`` and ``bandwidth`` are ``build_surrogate``'s (``--unnormalized``,
    one of ``--bandwidths`` per setting).
    """

    train: int = 10_000
    audit: int = 2_000
    test: int = 1_000
    points: int = 300
    budget_seconds: float = 60.0
    batch_size: int = 256
    damping: float | None = None
    cg_max_iter: int = 200
    refit_points: int = 40
    lds_subsets: int = 50
    counterfactual_subsets: int = 128
    normalized: bool = True
    bandwidth: float | None = None


@dataclass
class Task:
    """One data set: SSL rows, the audit set (landmark pool and kNN bank), tests.

    Attributes:
        name: ``"fmnist"``, ``"cifar10"`` or ``"adult"``.
        ssl_data: What the SSL views are drawn from (raw images or rows).
        views: The training view function.
        audit_x: Un-augmented audit rows (n, ...): landmark pool, ridge-fit
            pool and kNN bank.
        audit_y: Their labels (n,).
        audit_views: Two fixed views of every audit row, for the audit step.
        test_x: Test inputs (t, ...).
        test_y: Test labels (t,).
        make_encoder: A fresh, seeded encoder.
        rep_dim: The encoder's representation size.
    """

    name: str
    ssl_data: Tensor
    views: Any
    audit_x: Tensor
    audit_y: Tensor
    audit_views: list[Tensor]
    test_x: Tensor
    test_y: Tensor
    make_encoder: Any
    rep_dim: int
    info: dict[str, Any] = field(default_factory=dict)


def _stratified(labels: Tensor, count: int, seed: int) -> Tensor:
    idx = select_indices(labels.numpy().astype(np.int64), count, seed=seed)
    return torch.from_numpy(np.asarray(idx, dtype=np.int64))


def _views_of(views: Any, data: Tensor, batch_size: int) -> list[Tensor]:
    pairs = [views(data[i : i + batch_size]) for i in range(0, len(data), batch_size)]
    return [torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])]


def prepare(name: str, sizes: Sizes, seed: int, root: str | None) -> Task:
    """Loads a data set and draws the audit set, its views and the test subset."""
    if name in ("fmnist", "cifar10"):
        train = load_image_split(name, "train", sizes.train, seed, root)
        test = load_image_split(name, "test", sizes.test, seed, root)
        assert train.raw is not None
        idx = _stratified(train.labels, sizes.audit, seed + 1)
        channels, side = int(train.inputs.shape[1]), int(train.inputs.shape[2])
        views = ImageViews(name, 0.2, seed=seed)
        audit_views = _views_of(
            ImageViews(name, 0.2, seed=seed + 10), train.raw[idx], 256
        )
        return Task(
            name=name,
            ssl_data=train.raw,
            views=views,
            audit_x=train.inputs[idx].contiguous(),
            audit_y=train.labels[idx],
            audit_views=audit_views,
            test_x=test.inputs,
            test_y=test.labels,
            make_encoder=lambda s: small_cnn(channels, side, 128, s),
            rep_dim=128,
            info={
                "encoder": f"CNN 2x(conv3x3-ReLU-maxpool) + Linear("
                f"{64 * (side // 4) ** 2}, 128)"
            },
        )
    if name == "adult":
        train, test, groups = load_adult_splits(sizes.train, sizes.test, seed, root)
        idx = _stratified(train.labels, sizes.audit, seed + 1)
        dim = int(train.inputs.shape[1])
        views = TabularViews(train.inputs, groups, 0.6, seed=seed)
        audit_views = _views_of(
            TabularViews(train.inputs, groups, 0.6, seed=seed + 10),
            train.inputs[idx],
            256,
        )
        return Task(
            name=name,
            ssl_data=train.inputs,
            views=views,
            audit_x=train.inputs[idx].contiguous(),
            audit_y=train.labels[idx],
            audit_views=audit_views,
            test_x=test.inputs,
            test_y=test.labels,
            make_encoder=lambda s: tabular_mlp(dim, 64, s),
            rep_dim=64,
            info={"encoder": f"MLP {dim}-256-256-64 (ReLU)"},
        )
    raise SystemExit(f"error: unknown data set {name!r}; use fmnist, cifar10 or adult.")


def train_encoder(
    task: Task, loss_name: str, sizes: Sizes, seed: int
) -> tuple[nn.Module, SSLModel, dict[str, Any]]:
    """Trains the encoder with a Lightly loss for the budget; eval mode."""
    seed_everything(seed)

    def make_model() -> SSLModel:
        return SSLModel(task.make_encoder(seed), make_head(loss_name, task.rep_dim))

    model, attempts = fit_ssl(
        make_model,
        make_loss(loss_name),
        task.views,
        task.ssl_data,
        budget_seconds=sizes.budget_seconds,
        batch_size=sizes.batch_size,
        optimizer="auto",
        seed=seed,
        desc=f"{task.name} encoder",
    )
    return model.backbone.eval(), model, summarize_attempts(attempts)


@dataclass
class Audited:
    """A built and audited surrogate and the expansion that explains it."""

    surrogate: KernelBackbone
    result: AuditResult
    expansion: LandmarkExpansion
    landmark_labels: Tensor
    fit: str
    m: int
    seconds: dict[str, float]


def landmark_counts(task: Task) -> dict[str, int | None]:
    """The two numbers of landmarks: build_surrogate's default and ceil(sqrt n)."""
    return {"default": None, "sqrt_n": math.ceil(math.sqrt(len(task.audit_x)))}


def audit_task(
    task: Task,
    encoder: nn.Module,
    loss_name: str,
    m: int | None,
    seed: int,
    sizes: Sizes,
    *,
    landmarks: Tensor | None = None,
    landmark_labels: Tensor | None = None,
    held_out: Tensor,
) -> Audited:
    """``build_surrogate`` (ridge fit; PC when m < 2 h), ``audit``, the expansion.

    The ridge surrogate regresses the encoder's h outputs and needs Nyström rank
    >= h, so at ``m = ceil(sqrt n)`` below ``2 h`` the PC initialisation is used
    (recorded as ``fit``).
    """
    seconds: dict[str, float] = {}
    count = m if landmarks is None else len(landmarks)
    fit = "ridge" if count is None or count >= 2 * task.rep_dim else "pc"
    t0 = time.perf_counter()
    surrogate = build_surrogate(
        encoder,
        task.audit_x,
        num_landmarks=m,
        landmarks=landmarks,
        seed=seed,
        fit=fit,  # type: ignore[arg-type]
        normalized=sizes.normalized,
        bandwidth=sizes.bandwidth,
        progress=False,
    )
    seconds["build_surrogate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = audit(
        surrogate,
        make_loss(loss_name),
        task.audit_views,
        damping=sizes.damping,
        batch_size=256,
        max_iter=sizes.cg_max_iter,
        seed=seed,
        progress=False,
    )
    seconds["audit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    expansion = LandmarkExpansion(result.audited, inputs=held_out, seed=seed)
    seconds["expansion"] = time.perf_counter() - t0
    indices = surrogate.landmark_indices
    if landmark_labels is None:
        if indices is None:
            raise RuntimeError("build_surrogate did not record the landmarks' rows.")
        landmark_labels = task.audit_y[indices.cpu()]
    return Audited(
        surrogate=surrogate,
        result=result,
        expansion=expansion,
        landmark_labels=landmark_labels,
        fit=fit,
        m=int(surrogate.nystrom.num_landmarks),
        seconds=seconds,
    )
