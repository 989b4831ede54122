"""VICReg with a KREPES kernel backbone, in the shape of Lightly's Lightning example.

The script is Lightly's ``examples/pytorch_lightning/vicreg.py`` with one change:
the ResNet-18 backbone is replaced by a
:class:`~lightly_krepes.backbone.KernelBackbone`, a kernel machine on the empirical
NTK (eNTK) of a frozen network whose only trainable parameters are a linear map
``A`` and a bias ``gamma`` (KREPES, arXiv 2509.24467). Projection head, transform,
loss (default weights 25/25/1) and optimiser are Lightly's. The LightningModule
receives the images the landmarks are selected from, since the kernel backbone is
built from data.

It trains on a small subset of the local CIFAR-10 copy (``../shared/data``, or
``--data-root`` / ``$LIGHTLY_KREPES_DATA``; nothing is downloaded) and ends with a
kNN and a linear-probe accuracy of the backbone's representations on a subset of
the test split.

VICReg needs a smaller feature scale than the default (see ``examples/README.md``):
with Lightly's loss weights (25/25/1) and lr 0.06 the default scale diverges within
three steps on this kernel. Run from the repository root::

    python examples/pytorch_lightning/vicreg.py
    python examples/pytorch_lightning/vicreg.py --subset 256 --epochs 1 --batch-size 64

A GPU is used when one is available (``--device`` sets Lightning's accelerator).
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
import torchvision.transforms as T
from lightly.data import LightlyDataset
from lightly.loss import VICRegLoss
from lightly.models.modules.heads import VICRegProjectionHead
from lightly.transforms import VICRegTransform
from torch import Tensor, nn

from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.data import CIFAR10_NORMALIZE, CIFAR10Dataset, load_cifar10
from lightly_krepes.evaluation import extract_features, knn_accuracy, linear_probe
from lightly_krepes.kernels import EmpiricalNTK


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=512, help="training images")
    parser.add_argument("--test-subset", type=int, default=512, help="test images")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-landmarks", type=int, default=128)
    parser.add_argument("--out-dim", type=int, default=64, help="backbone output")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--data-root", default=None, help="default: ../shared/data")
    parser.add_argument("--device", default="auto", help="auto, cpu or gpu")
    return parser.parse_args()


class SmallCNN(nn.Sequential):
    """A small CNN whose eNTK is the kernel; it stays untrained and frozen.

    On a GPU you would put ``torchvision.models.resnet18()`` here; its eNTK is far
    too heavy for a CPU-sized example.
    """

    def __init__(self, num_outputs: int = 10) -> None:
        super().__init__(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, num_outputs),
        )


class VICReg(pl.LightningModule):
    def __init__(self, landmark_data: Tensor, num_landmarks: int, out_dim: int) -> None:
        super().__init__()
        # Lightly:  resnet = torchvision.models.resnet18()
        #           self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        # KREPES:   a kernel machine on the eNTK of a frozen network (untrained here)
        self.backbone = KernelBackbone.from_data(
            EmpiricalNTK(SmallCNN().eval()),
            landmark_data,
            num_landmarks=num_landmarks,
            out_dim=out_dim,
        )
        self.projection_head = VICRegProjectionHead(
            input_dim=self.backbone.out_dim,  # Lightly: 512
            hidden_dim=2048,
            output_dim=2048,
            num_layers=2,
        )
        self.criterion = VICRegLoss()
        self.epoch_losses: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        x = self.backbone(x).flatten(start_dim=1)
        z: Tensor = self.projection_head(x)
        return z

    def training_step(
        self, batch: tuple[list[Tensor], Tensor, list[str]], batch_index: int
    ) -> Tensor:
        (x0, x1) = batch[0]
        z0 = self.forward(x0)
        z1 = self.forward(x1)
        loss: Tensor = self.criterion(z0, z1)
        self.epoch_losses.append(loss.detach())
        return loss

    def on_train_epoch_end(self) -> None:
        avg_loss = torch.stack(self.epoch_losses).mean()
        self.epoch_losses.clear()
        self.print(f"epoch: {self.current_epoch:>02}, loss: {avg_loss:.5f}")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optim = torch.optim.SGD(self.parameters(), lr=0.06)
        return optim


args = parse_args()
pl.seed_everything(0)

# Plain (untransformed, normalised) images of the training subset: the pool the
# landmarks are selected from, and the labelled training set of the evaluation.
normalize = T.Normalize(**CIFAR10_NORMALIZE)
images, labels = load_cifar10(
    "train", args.data_root, max_samples=args.subset, as_float=True
)
landmark_data = normalize(images)

model = VICReg(landmark_data, args.num_landmarks, args.out_dim)

transform = VICRegTransform(input_size=32, normalize=CIFAR10_NORMALIZE)
dataset = LightlyDataset.from_torch_dataset(
    CIFAR10Dataset(args.data_root, "train", max_samples=args.subset),
    transform=transform,
)

dataloader = torch.utils.data.DataLoader(
    dataset,
    batch_size=args.batch_size,
    shuffle=True,
    drop_last=True,
    num_workers=args.num_workers,
)

# No logger and no checkpoints, so that nothing is written to the working directory.
trainer = pl.Trainer(
    max_epochs=args.epochs,
    devices=1,
    accelerator=args.device,
    logger=False,
    enable_checkpointing=False,
)
trainer.fit(model=model, train_dataloaders=dataloader)

# Quick evaluation of the backbone's representations on a test subset.
test_images, test_labels = load_cifar10(
    "test", args.data_root, max_samples=args.test_subset, as_float=True
)
train_features = extract_features(model.backbone, landmark_data, progress=False)
test_features = extract_features(model.backbone, normalize(test_images), progress=False)
knn = knn_accuracy(
    train_features.features, labels, test_features.features, test_labels, k=20
)
probe = linear_probe(
    train_features.features,
    labels,
    test_features.features,
    test_labels,
    label_fraction=1.0,
)
print(f"kNN (k=20) accuracy: {knn:.4f}, linear-probe accuracy: {probe.accuracy:.4f}")
