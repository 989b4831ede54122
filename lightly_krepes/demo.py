"""The embedded default job: eNTK Nyström features on bundled real data.

Runs with ``make demo`` (or ``python -m lightly_krepes.demo``) without any download:
scikit-learn ships the UCI handwritten digits (1,797 8x8 images, 10 classes). The
job selects landmarks on the empirical NTK of a small, untrained convolutional
network with randomly pivoted Cholesky, builds the Nyström feature map, and
compares linear-probe accuracy of these features against raw pixels and an RBF
Nyström map with the same number of landmarks.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

from lightly_krepes.kernels import RBF, EmpiricalNTK, Kernel
from lightly_krepes.landmarks import select_landmarks
from lightly_krepes.nystrom import Nystrom


def small_cnn(seed: int = 0) -> nn.Module:
    """An untrained 8x8 convolutional network; its eNTK is the demo's kernel."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    ).eval()


def probe_accuracy(
    train: Tensor, y_train: Tensor, test: Tensor, y_test: Tensor
) -> float:
    """Test accuracy of a standardised logistic-regression probe."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(train.double().numpy(), y_train.numpy())
    return float(probe.score(test.double().numpy(), y_test.numpy()))


def nystrom_features(
    kernel: Kernel, train: Tensor, test: Tensor, num_landmarks: int, seed: int
) -> tuple[Tensor, Tensor, int, float]:
    """Landmarks by RPCholesky, then the Nyström map of train and test data."""
    start = time.perf_counter()
    indices = select_landmarks(train, kernel, num_landmarks, "rpcholesky", seed=seed)
    nystrom = Nystrom(kernel, train[indices])
    phi_train = nystrom.transform(train, batch_size=256, progress=True)
    phi_test = nystrom.transform(test, batch_size=256, progress=True)
    return phi_train, phi_test, nystrom.rank, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """Runs the demo and prints a table of linear-probe accuracies."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landmarks", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.tensor(digits.target)
    train_idx, test_idx = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=0.3,
        random_state=args.seed,
        stratify=labels.numpy(),
    )
    x_train, x_test = images[train_idx], images[test_idx]
    y_train, y_test = labels[train_idx], labels[test_idx]
    print(
        f"digits: {len(x_train)} train / {len(x_test)} test images, "
        f"{args.landmarks} landmarks (RPCholesky)"
    )

    rows = [
        (
            "raw pixels (64)",
            probe_accuracy(x_train.flatten(1), y_train, x_test.flatten(1), y_test),
            0.0,
        )
    ]
    kernels: dict[str, Kernel] = {
        "Nystrom RBF": RBF(lengthscale=float(x_train.flatten(1).std() * 8**0.5)),
        "Nystrom eNTK (pNTK, CNN)": EmpiricalNTK(small_cnn(args.seed)),
    }
    for name, kernel in kernels.items():
        phi_train, phi_test, rank, seconds = nystrom_features(
            kernel, x_train, x_test, args.landmarks, args.seed
        )
        accuracy = probe_accuracy(phi_train, y_train, phi_test, y_test)
        rows.append((f"{name} (r={rank})", accuracy, seconds))

    print(f"\n{'features':<36}{'probe accuracy':>16}{'map time [s]':>14}")
    for name, accuracy, seconds in rows:
        print(f"{name:<36}{accuracy:>16.3f}{seconds:>14.1f}")


if __name__ == "__main__":
    main()
