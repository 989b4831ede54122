"""Writes the pictures of ``docs/explaining.md`` to ``docs/images/``.

Runs in about a minute on two CPU cores, without downloads (scikit-learn ships
the digits and wine data):

    python docs/make_figures.py

1. digits: a small CNN is trained with SimCLR for a few epochs, then audited
   (``audit_encoder``: eNTK surrogate, PC initialisation, one damped Newton step
   with the damping chosen by spectral entropy); pictures of proponents and
   opponents and of concept influence profiles;
2. wine: a small MLP is audited the same way; the Feature Alignment Gap of each
   of its 13 features.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from lightly.loss import NTXentLoss
from sklearn.datasets import load_wine
from torch import Tensor, nn

from lightly_krepes import (
    RepresenterInfluence,
    Similarity,
    audit_encoder,
    concept_activation_vector,
    concept_influence,
    cosine_nearest_landmark_precision,
    feature_alignment_gap,
    precision_at_1,
)
from lightly_krepes.demo import augment, load_split, small_cnn
from lightly_krepes.plotting import (
    plot_concept_influence,
    plot_feature_alignment_gap,
    plot_proponents_opponents,
)

IMAGES = Path(__file__).resolve().parent / "images"


def train_cnn(x: Tensor, epochs: int, seed: int) -> nn.Module:
    """A few epochs of SimCLR (Lightly's NTXentLoss) on the digits' CNN."""
    network = small_cnn(seed).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    criterion = NTXentLoss()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x) - 127, 128):
            batch = x[order[start : start + 128]]
            loss = criterion(
                network(augment(batch, generator)), network(augment(batch, generator))
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return network.eval()


def digits_figures(out: Path, seed: int) -> None:
    x_train, y_train, x_test, y_test = load_split(seed)
    x_train, x_test = x_train.double(), x_test.double()
    tic = time.perf_counter()
    encoder = train_cnn(x_train.float(), epochs=6, seed=seed).double()
    print(f"SimCLR pre-training of the CNN: {time.perf_counter() - tic:.1f} s")
    generator = torch.Generator().manual_seed(seed)

    def views(x: Tensor) -> list[Tensor]:
        return [augment(x[None].float(), generator)[0].to(x) for _ in range(2)]

    audit = audit_encoder(
        encoder,
        x_train,
        NTXentLoss(),
        transform=views,
        num_landmarks=128,
        seed=seed,
        progress=False,
    )
    surrogate, delta_alpha = audit.audited, audit.step.delta_alpha
    landmark_idx = [
        int((x_train == lm).flatten(1).all(1).nonzero()[0])
        for lm in surrogate.landmarks
    ]
    landmark_labels = y_train[landmark_idx]
    print(
        f"digits audit: m = {len(landmark_idx)}, damping {audit.damping:.3g}, "
        f"loss {audit.step.loss_before:.3f} -> {audit.step.loss_after:.3f}"
    )
    for name, weights in (("alpha", None), ("delta_alpha", delta_alpha)):
        p1 = precision_at_1(surrogate, x_test, y_test, landmark_labels, weights)
        print(f"  precision@1 of the top landmark by IS with {name}: {p1:.3f}")
    cosine = cosine_nearest_landmark_precision(
        surrogate, x_test, y_test, landmark_labels
    )
    print(f"  cosine-nearest landmark precision@1 {cosine:.3f}")

    queries = torch.stack([x_test[y_test == c][0] for c in (0, 3, 5, 7, 8)])
    query_labels = [0, 3, 5, 7, 8]
    with torch.no_grad():
        scores = RepresenterInfluence(surrogate).influence(
            queries, target=Similarity(surrogate(queries))
        )
    assert isinstance(scores, Tensor)
    plot_proponents_opponents(
        queries,
        surrogate.landmarks,
        scores,
        k=4,
        path=out / "proponents_opponents.png",
        titles=[f"test: {c}" for c in query_labels],
        landmark_titles=[str(int(y)) for y in landmark_labels],
        dpi=80,
    )

    with torch.no_grad():
        reps = surrogate(x_train)
    profiles = {}
    for c in (0, 1, 8):
        cav = concept_activation_vector(reps[y_train == c], reps[y_train != c])
        profiles[f"concept '{c}'"] = concept_influence(
            surrogate, x_test[y_test == c], cav, weights=delta_alpha
        )
    plot_concept_influence(
        profiles,
        landmark_labels=landmark_labels,
        path=out / "concept_influence.png",
        dpi=80,
    )


def wine_figure(out: Path, seed: int) -> None:
    wine = load_wine()
    x = torch.tensor(wine.data, dtype=torch.float64)
    x = (x - x.mean(0)) / x.std(0)
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(13, 64), nn.Tanh(), nn.Linear(64, 8)).double()
    generator = torch.Generator().manual_seed(seed)

    def views(row: Tensor) -> list[Tensor]:
        noise = [torch.randn(row.shape, generator=generator) for _ in range(2)]
        return [row + 0.3 * n.to(row) for n in noise]

    audit = audit_encoder(
        encoder, x, NTXentLoss(), transform=views, seed=seed, progress=False
    )
    gaps = {
        name: feature_alignment_gap(
            audit.audited, x, i, weights=audit.step.delta_alpha, top_k=10
        )
        for i, name in enumerate(wine.feature_names)
    }
    print("wine Feature Alignment Gap:", {k: round(v.gap, 3) for k, v in gaps.items()})
    plot_feature_alignment_gap(gaps, path=out / "feature_alignment_gap.png", dpi=80)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    digits_figures(args.out, args.seed)
    wine_figure(args.out, args.seed)
    for path in sorted(args.out.glob("*.png")):
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KB")
    print(f"total time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
