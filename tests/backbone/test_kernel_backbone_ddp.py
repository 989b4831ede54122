"""A KernelBackbone trained with real two-process CPU DDP (PyTorch Lightning, gloo)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import EmpiricalNTK

pytestmark = pytest.mark.skipif(
    not dist.is_available(),
    reason="torch.distributed is not available in this PyTorch build, so DDP "
    "cannot run (PyTorch built with USE_DISTRIBUTED=0).",
)

pl = pytest.importorskip("pytorch_lightning")
lightly_loss = pytest.importorskip("lightly.loss")
lightly_heads = pytest.importorskip("lightly.models.modules")

NUM_LANDMARKS = 16
OUT_DIM = 8
MAX_STEPS = 3


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)).eval()


def _data() -> Tensor:
    return torch.randn(64, 6, generator=torch.Generator().manual_seed(0))


def _views() -> TensorDataset:
    gen = torch.Generator().manual_seed(1)
    x = _data()
    return TensorDataset(
        x + 0.1 * torch.randn(x.shape, generator=gen),
        x + 0.1 * torch.randn(x.shape, generator=gen),
    )


def _probe() -> Tensor:
    return torch.randn(5, 6, generator=torch.Generator().manual_seed(2))


def _build_backbone() -> KernelBackbone:
    return KernelBackbone.from_data(
        EmpiricalNTK(_network()),
        _data(),
        num_landmarks=NUM_LANDMARKS,
        out_dim=OUT_DIM,
        seed=0,
    )


class _SimCLR(pl.LightningModule):  # type: ignore[misc]
    """SimCLR on a kernel backbone; each rank writes its final state to a file."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.criterion = lightly_loss.NTXentLoss(gather_distributed=True)
        self.losses: list[float] = []
        self.selected: Tensor | None = None
        self.initial: dict[str, Tensor] = {}

    def configure_model(self) -> None:
        # Runs in every process before DDP wraps the module. It plays the part of
        # the script code that Lightning's "ddp" launcher re-executes on each rank:
        # every rank selects its own landmarks, with the same seed and data.
        if hasattr(self, "backbone"):
            return
        self.backbone = _build_backbone()
        self.head = lightly_heads.SimCLRProjectionHead(OUT_DIM, 16, 8)
        # Before DDP's initial broadcast from rank 0 overwrites the buffers.
        self.selected = self.backbone.landmarks.clone()
        self.initial = {
            "weight": self.backbone.linear.weight.detach().clone(),
            "bias": self.backbone.linear.bias.detach().clone(),
        }

    def training_step(self, batch: list[Tensor], batch_index: int) -> Tensor:
        x0, x1 = batch
        z0 = self.head(self.backbone(x0))
        z1 = self.head(self.backbone(x1))
        loss: Tensor = self.criterion(z0, z1)
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.06)

    def on_train_end(self) -> None:
        with torch.no_grad():
            output = self.backbone(_probe())
        state: dict[str, Any] = {
            "selected": self.selected,
            "initial": self.initial,
            "landmarks": self.backbone.landmarks.clone(),
            "eigenvalues": self.backbone.nystrom.eigenvalues.clone(),
            "projection": self.backbone.nystrom.projection.clone(),
            "coordinate_scale": self.backbone.coordinate_scale.clone(),
            "weight": self.backbone.linear.weight.detach().clone(),
            "bias": self.backbone.linear.bias.detach().clone(),
            # Parameters only: BatchNorm running statistics are updated from each
            # rank's own batch after DDP's broadcast, so they differ by design.
            "head": {k: v.detach().clone() for k, v in self.head.named_parameters()},
            "output": output,
            "losses": list(self.losses),
        }
        torch.save(state, Path(self.out_dir) / f"rank{self.global_rank}.pt")


class TestKernelBackboneDDP:
    def test_fit__two_cpu_processes_stay_in_sync(self, tmp_path: Path) -> None:
        module = _SimCLR(str(tmp_path))
        trainer = pl.Trainer(
            # The "ddp" launcher starts the other ranks by re-executing sys.argv,
            # which here is pytest itself; tests therefore use the spawn launcher
            # of the same DDP strategy, which pickles the module instead.
            strategy="ddp_spawn",
            accelerator="cpu",
            devices=2,
            max_steps=MAX_STEPS,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(module, DataLoader(_views(), batch_size=8, shuffle=True))

        ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
        r0, r1 = ranks
        # Each rank selected the same landmarks as a selection in this process.
        expected = _build_backbone().landmarks
        for state in ranks:
            torch.testing.assert_close(state["selected"], expected, rtol=0, atol=0)
        # All ranks hold identical frozen state, trained weights and outputs.
        for key in ("landmarks", "eigenvalues", "projection", "coordinate_scale"):
            torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0, msg=key)
        for key in ("weight", "bias", "output"):
            torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0, msg=key)
        assert r0["head"].keys() == r1["head"].keys()
        for key in r0["head"]:
            torch.testing.assert_close(
                r0["head"][key], r1["head"][key], rtol=0, atol=0, msg=key
            )
        for state in ranks:
            assert len(state["losses"]) == MAX_STEPS
            assert all(math.isfinite(loss) for loss in state["losses"])
            for key in ("weight", "bias", "output"):
                assert torch.isfinite(state[key]).all(), key
            # Training moved A away from the principal-component initialisation.
            assert not torch.equal(state["weight"], state["initial"]["weight"])
            assert not torch.equal(state["bias"], state["initial"]["bias"])
