"""VICReg with a KREPES kernel backbone, in the shape of Lightly's VICReg example.

The script is Lightly's ``examples/pytorch/vicreg.py`` with one change: the
ResNet-18 backbone is replaced by a :class:`~lightly_krepes.backbone.KernelBackbone`,
a kernel machine on the empirical NTK (eNTK) of a frozen network whose only
trainable parameters are a linear map ``A`` and a bias ``gamma`` (KREPES, arXiv
2509.24467). Projection head, transform, loss (with its default weights 25/25/1)
and optimiser are Lightly's.

It trains on a small subset of the local CIFAR-10 copy (``../shared/data``, or
``--data-root`` / ``$LIGHTLY_KREPES_DATA``; nothing is downloaded) and ends with a
kNN and a linear-probe accuracy of the backbone's representations on a subset of
the test split.

VICReg needs a smaller feature scale than the default (see ``examples/README.md``):
with Lightly's loss weights (25/25/1) and lr 0.06 the default scale diverges within
three steps on this kernel. Run from the repository root::

    python examples/pytorch/vicreg.py
    python examples/pytorch/vicreg.py --subset 256 --epochs 1 --batch-size 64

A GPU is used when one is available (``--device`` overrides it).
"""

from __future__ import annotations

import argparse

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
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
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


class VICReg(nn.Module):
    def __init__(self, backbone: nn.Module, input_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = VICRegProjectionHead(
            input_dim=input_dim,
            hidden_dim=2048,
            output_dim=2048,
            num_layers=2,
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.backbone(x).flatten(start_dim=1)
        z: Tensor = self.projection_head(x)
        return z


args = parse_args()
torch.manual_seed(0)
device = args.device

# Plain (untransformed, normalised) images of the training subset: the pool the
# landmarks are selected from, and the labelled training set of the evaluation.
normalize = T.Normalize(**CIFAR10_NORMALIZE)
images, labels = load_cifar10(
    "train", args.data_root, max_samples=args.subset, as_float=True
)
landmark_data = normalize(images).to(device)

# Lightly:  resnet = torchvision.models.resnet18()
#           backbone = nn.Sequential(*list(resnet.children())[:-1])
# KREPES:   a kernel machine on the eNTK of a frozen network (here an untrained one)
backbone = KernelBackbone.from_data(
    EmpiricalNTK(SmallCNN().to(device).eval()),
    landmark_data,
    num_landmarks=args.num_landmarks,
    out_dim=args.out_dim,
)
model = VICReg(backbone, input_dim=backbone.out_dim)  # Lightly: input_dim=512

model.to(device)
print(
    f"KernelBackbone: {backbone.nystrom.num_landmarks} landmarks, Nyström rank "
    f"{backbone.nystrom.rank}, out_dim {backbone.out_dim}, "
    f"preconditioner ridge {float(backbone.ridge):.3g}"
)

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

criterion = VICRegLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.06)

print("Starting Training")
for epoch in range(args.epochs):
    total_loss = 0.0
    for batch in dataloader:
        x0, x1 = batch[0]
        x0 = x0.to(device)
        x1 = x1.to(device)
        z0 = model(x0)
        z1 = model(x1)
        loss = criterion(z0, z1)
        total_loss += loss.item()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    avg_loss = total_loss / len(dataloader)
    print(f"epoch: {epoch:>02}, loss: {avg_loss:.5f}")

# Quick evaluation of the backbone's representations on a test subset.
test_images, test_labels = load_cifar10(
    "test", args.data_root, max_samples=args.test_subset, as_float=True
)
train_features = extract_features(backbone, landmark_data, progress=False).features
test_features = extract_features(
    backbone, normalize(test_images).to(device), progress=False
).features
knn = knn_accuracy(train_features, labels, test_features, test_labels, k=20)
probe = linear_probe(
    train_features, labels, test_features, test_labels, label_fraction=1.0
)
print(f"kNN (k=20) accuracy: {knn:.4f}, linear-probe accuracy: {probe.accuracy:.4f}")
