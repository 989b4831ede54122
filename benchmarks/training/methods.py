"""The SSL methods of the training benchmark, one training step each.

Every method wraps a backbone (the CNN, a ``KernelBackbone`` or a ``FeatureBackbone``
over cached coordinates) with Lightly's projection head and loss, so the kernel and
the deep model are trained by the same code:

- SimCLR: ``SimCLRProjectionHead`` + ``NTXentLoss``;
- VICReg: ``VICRegProjectionHead`` + ``VICRegLoss``;
- Barlow Twins: ``BarlowTwinsProjectionHead`` + ``BarlowTwinsLoss``;
- BYOL: ``BYOLProjectionHead``/``BYOLPredictionHead`` + ``NegativeCosineSimilarity``,
  momentum copies updated by ``lightly.models.utils.update_momentum`` with a cosine
  schedule (``cosine_schedule``) from 0.99 to 1;
- spectral contrastive: this package's ``SpectralContrastiveLoss`` on the
  representation, no head, row norms clipped at ``SPECTRAL_MAX_NORM`` (HaoChen et
  al.'s ``mu = 9``): unclipped, its quartic term diverges at lr 0.06 for both the
  CNN and the kernel.

Head widths are 512 (Lightly's 2048-8192 are far too slow on two CPU cores).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
from lightly.loss import (
    BarlowTwinsLoss,
    NegativeCosineSimilarity,
    NTXentLoss,
    VICRegLoss,
)
from lightly.models.modules.heads import (
    BarlowTwinsProjectionHead,
    BYOLPredictionHead,
    BYOLProjectionHead,
    SimCLRProjectionHead,
    VICRegProjectionHead,
)
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn
from tqdm.auto import tqdm

from lightly_krepes.loss import SpectralContrastiveLoss

METHODS = ("simclr", "vicreg", "barlowtwins", "byol", "spectral")
LABELS = {
    "simclr": "SimCLR (NTXentLoss)",
    "vicreg": "VICReg (VICRegLoss)",
    "barlowtwins": "Barlow Twins (BarlowTwinsLoss)",
    "byol": "BYOL (NegativeCosineSimilarity)",
    "spectral": "spectral contrastive (SpectralContrastiveLoss)",
}
WIDTH = 512
SGD_LR = 0.06
SGD_MOMENTUM = 0.9
# Chosen on cached eNTK coordinates of both data sets (40 epochs, probe gain over the
# PC init, Fashion-MNIST / CIFAR-10): max_norm 1: +1.7/+3.5, 2: +1.6/+8.1,
# 3: +1.7/+7.8, 5: +1.1/+6.8; checked on a held-out seed by the benchmark itself.
SPECTRAL_MAX_NORM = 3.0


class Method(nn.Module):
    """A backbone, a projection head and a loss; ``step_loss`` of two views."""

    def __init__(self, name: str, backbone: nn.Module, rep_dim: int) -> None:
        super().__init__()
        if name not in METHODS:
            raise ValueError(f"Unknown method {name!r}; choose from {METHODS}.")
        self.name = name
        self.backbone = backbone
        heads: dict[str, Callable[[], nn.Module]] = {
            "simclr": lambda: SimCLRProjectionHead(rep_dim, WIDTH, 128),
            "vicreg": lambda: VICRegProjectionHead(rep_dim, WIDTH, WIDTH),
            "barlowtwins": lambda: BarlowTwinsProjectionHead(rep_dim, WIDTH, WIDTH),
            "byol": lambda: BYOLProjectionHead(rep_dim, WIDTH, 128),
            "spectral": nn.Identity,
        }
        self.head = heads[name]()
        losses: dict[str, Callable[[], nn.Module]] = {
            "simclr": NTXentLoss,
            "vicreg": VICRegLoss,
            "barlowtwins": BarlowTwinsLoss,
            "byol": NegativeCosineSimilarity,
            "spectral": lambda: SpectralContrastiveLoss(max_norm=SPECTRAL_MAX_NORM),
        }
        self.criterion = losses[name]()
        self.predictor: nn.Module | None = None
        if name == "byol":
            self.predictor = BYOLPredictionHead(128, WIDTH, 128)
            self.backbone_momentum = copy.deepcopy(backbone)
            self.head_momentum = copy.deepcopy(self.head)
            deactivate_requires_grad(self.backbone_momentum)
            deactivate_requires_grad(self.head_momentum)

    def embed(self, x: Tensor) -> Tensor:
        z: Tensor = self.head(self.backbone(x).flatten(start_dim=1))
        return z

    def step_loss(self, x0: Tensor, x1: Tensor, progress: float) -> Tensor:
        """The loss of one batch; ``progress`` in [0, 1] drives BYOL's momentum."""
        if self.predictor is not None:
            momentum = cosine_schedule(int(1000 * progress), 1000, 0.99, 1.0)
            update_momentum(self.backbone, self.backbone_momentum, m=momentum)
            update_momentum(self.head, self.head_momentum, m=momentum)
        return self._loss(x0, x1)

    def evaluation_loss(self, x0: Tensor, x1: Tensor) -> float:
        """The loss of one batch in eval mode: no gradients, no momentum update."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            loss = float(self._loss(x0, x1))
        self.train(was_training)
        return loss

    def _loss(self, x0: Tensor, x1: Tensor) -> Tensor:
        if self.predictor is None:
            loss: Tensor = self.criterion(self.embed(x0), self.embed(x1))
            return loss
        p0, p1 = self.predictor(self.embed(x0)), self.predictor(self.embed(x1))
        with torch.no_grad():
            t0 = self.head_momentum(self.backbone_momentum(x0).flatten(start_dim=1))
            t1 = self.head_momentum(self.backbone_momentum(x1).flatten(start_dim=1))
        loss = 0.5 * (self.criterion(p0, t1) + self.criterion(p1, t0))
        return loss


@dataclass
class RunStats:
    """What one budgeted run did.

    With a monitor, ``selected_step`` is the step whose weights were kept (the
    monitor's minimum, 0 for the initial weights), ``monitored_loss`` its value
    and ``monitor_seconds`` the monitor's time: part of ``seconds`` and of the
    budget, not of ``seconds_per_epoch``.
    """

    seconds: float
    steps: int
    epochs: float
    seconds_per_epoch: float
    loss_start: float
    loss_end: float
    finite: bool
    selected_step: int | None = None
    monitored_loss: float | None = None
    monitor_seconds: float = 0.0

    def as_dict(self) -> dict[str, float | int | bool | None]:
        return asdict(self)


def lightly_sgd(method: Method, backbone_lr: float = SGD_LR) -> torch.optim.SGD:
    """SGD (lr 0.06, momentum 0.9) over the trainable parameters; train mode.

    ``backbone_lr`` gives the backbone's parameters their own learning rate (a
    parameter group, plain PyTorch); the head keeps Lightly's 0.06.
    """
    backbone = [p for p in method.backbone.parameters() if p.requires_grad]
    ids = {id(p) for p in backbone}
    rest = [p for p in method.parameters() if p.requires_grad and id(p) not in ids]
    method.train()
    groups = [
        {"params": backbone, "lr": backbone_lr},
        {"params": rest},
    ]
    return torch.optim.SGD(groups, lr=SGD_LR, momentum=SGD_MOMENTUM)


def sgd_step(
    method: Method,
    optimizer: torch.optim.Optimizer,
    x0: Tensor,
    x1: Tensor,
    progress: float,
) -> float:
    """One SGD step on the views' loss; returns the loss."""
    loss = method.step_loss(x0, x1, progress)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


class _BestBackbone:
    """The backbone weights at the monitor's minimum so far (a copy in memory)."""

    def __init__(self, method: Method, monitor: Callable[[], float]) -> None:
        self.method, self.monitor = method, monitor
        self.step, self.value, self.seconds = 0, math.inf, 0.0
        self.state: dict[str, Tensor] | None = None

    def check(self, step: int) -> None:
        t0 = time.perf_counter()
        value = self.monitor()
        self.seconds += time.perf_counter() - t0
        if value < self.value:
            self.step, self.value = step, value
            self.state = copy.deepcopy(self.method.backbone.state_dict())

    def restore(self) -> None:
        if self.state is not None:
            self.method.backbone.load_state_dict(self.state)


def train_for_budget(
    method: Method,
    batches: Callable[[], Iterator[tuple[Tensor, Tensor]]],
    num_samples: int,
    batch_size: int,
    budget_seconds: float,
    desc: str,
    backbone_lr: float = SGD_LR,
    monitor: Callable[[], float] | None = None,
    check_every: int = 50,
) -> RunStats:
    """Lightly's SGD (lr 0.06, momentum 0.9) over epochs until the budget is spent.

    ``batches()`` yields the two views of every batch of one epoch. At least one
    step is taken; a non-finite loss stops the run. ``backbone_lr``: see
    ``lightly_sgd``. ``monitor()``, if given, is called before the first step,
    every ``check_every`` steps and after the last (its time counts against the
    budget), and the backbone ends with the weights of its minimum: model
    selection on a held-out loss, as Lightning's ``ModelCheckpoint(monitor=...)``.
    """
    optimizer = lightly_sgd(method, backbone_lr)
    best = _BestBackbone(method, monitor) if monitor is not None else None
    losses: list[float] = []
    finite = True
    start = time.perf_counter()
    if best is not None:
        best.check(0)
    bar = tqdm(desc=desc, unit="step", leave=False)
    done = False
    while not done:
        for x0, x1 in batches():
            elapsed = time.perf_counter() - start
            losses.append(
                sgd_step(method, optimizer, x0, x1, min(1.0, elapsed / budget_seconds))
            )
            bar.update(1)
            if not math.isfinite(losses[-1]):
                finite, done = False, True
                break
            if time.perf_counter() - start >= budget_seconds:
                done = True
                break
            if best is not None and len(losses) % check_every == 0:
                best.check(len(losses))
    bar.close()
    if best is not None:
        if finite:
            best.check(len(losses))
        best.restore()
    seconds = time.perf_counter() - start
    monitor_seconds = best.seconds if best is not None else 0.0
    epochs = len(losses) * batch_size / num_samples
    head = losses[: min(10, len(losses))]
    tail = losses[-max(1, len(losses) // 10) :]
    return RunStats(
        seconds=seconds,
        steps=len(losses),
        epochs=epochs,
        seconds_per_epoch=(seconds - monitor_seconds) / max(epochs, 1e-12),
        loss_start=sum(head) / len(head),
        loss_end=sum(tail) / len(tail),
        finite=finite,
        selected_step=best.step if best is not None else None,
        monitored_loss=best.value if best is not None else None,
        monitor_seconds=monitor_seconds,
    )
