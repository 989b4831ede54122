"""Pictures of representer landmarks and the audit's scores (matplotlib, PNG).

Every function builds a :class:`matplotlib.figure.Figure` without pyplot (no
figure is left open in pyplot's registry, and importing this module does not
change matplotlib's backend), saves it as PNG when given a path and returns it.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import torch
from matplotlib.figure import Figure
from torch import Tensor

from lightly_krepes.attribution.expansion import (
    LandmarkExpansion,
    as_expansion,
    rank_terms,
)
from lightly_krepes.attribution.feature_alignment import FeatureAlignmentGap
from lightly_krepes.attribution.targets import TargetSpec
from lightly_krepes.backbone import KernelBackbone

Denormalize: TypeAlias = (
    tuple[Sequence[float], Sequence[float]] | Callable[[Tensor], Tensor] | None
)
"""How to undo an input normalisation before drawing: ``(mean, std)`` per channel
(``x * std + mean``, e.g. torchvision's ``Normalize`` arguments), a function of one
image tensor, or None to stretch each image to its own min-max range."""

PROPONENTS_CAPTION = (
    "Scores k(l, x) <w_l, v(x)> are landmark l's exact share of x's "
    "representation along v(x) (default: its own direction); they add up to "
    "|f(x) - f_0|. Proponents (green, > 0) build it; opponents (red, < 0) pull "
    "it the other way, cancelling part of what the proponents build."
)


def _as_image(x: Tensor, denormalize: Denormalize = None) -> Any:
    """A (C, H, W) or (H, W) tensor as an (H, W[, 3]) array for ``imshow``."""
    x = x.detach().double().cpu()
    if denormalize is None:
        low, high = x.min(), x.max()
        x = (x - low) / (high - low).clamp_min(1e-12)
    elif callable(denormalize):
        x = denormalize(x).detach().double().cpu().clamp(0.0, 1.0)
    else:
        mean, std = (torch.as_tensor(v, dtype=torch.float64) for v in denormalize)
        if x.dim() == 3:
            mean, std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
        else:
            mean, std = mean.reshape(-1)[0], std.reshape(-1)[0]
        x = (x * std + mean).clamp(0.0, 1.0)
    if x.dim() == 3:
        x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
    return x.float().numpy()


def _check_denormalize(denormalize: Denormalize) -> None:
    if denormalize is None or callable(denormalize):
        return
    if not isinstance(denormalize, tuple | list) or len(denormalize) != 2:
        raise TypeError(
            "denormalize must be None, a function of an image tensor, or a pair "
            "(mean, std) of per-channel sequences (torchvision Normalize's "
            f"arguments), got {denormalize!r}."
        )
    mean, std = (torch.as_tensor(v, dtype=torch.float64) for v in denormalize)
    if mean.numel() != std.numel() or mean.numel() == 0:
        raise ValueError(
            f"denormalize's mean and std must have the same, nonzero length, got "
            f"{mean.numel()} and {std.numel()}."
        )


def _show(ax: Any, image: Tensor, denormalize: Denormalize) -> None:
    ax.imshow(_as_image(image, denormalize), cmap="gray", vmin=0.0, vmax=1.0)


def plot_representer_landmarks(
    images: Tensor,
    landmark_images: Tensor,
    top_indices: Tensor,
    top_scores: Tensor,
    path: str | Path | None = None,
    *,
    titles: Sequence[str] | None = None,
    landmark_titles: Sequence[str] | None = None,
    denormalize: Denormalize = None,
    caption: str | None = None,
    dpi: int = 110,
) -> Figure:
    """A grid: each row a query image beside its top representer landmarks.

    Use :func:`top_representer_landmarks` for the indices and scores.

    Args:
        images: Tensor of shape (B, C, H, W) or (B, H, W), the query images.
        landmark_images: Tensor of shape (m, C, H, W) or (m, H, W).
        top_indices: Long tensor of shape (B, k), landmark indices per query.
        top_scores: Tensor of shape (B, k), the scores shown over the landmarks.
        path: Output PNG path (parent folders are created); None saves nothing.
        titles: Optional B titles of the queries (e.g. their labels).
        landmark_titles: Optional m titles of the landmarks (e.g. their labels).
        denormalize: How to undo the input normalisation (see
            :data:`Denormalize`); None stretches each image to its range.
        caption: Text under the grid; None explains the default scores.
        dpi: Resolution of the PNG.

    Returns:
        The figure: B rows of ``k + 1`` axes.

    Raises:
        ValueError: If the shapes do not match or a title list has the wrong
            length.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> images, landmarks = torch.rand(2, 8, 8), torch.rand(6, 8, 8)
        >>> indices, scores = torch.tensor([[0, 1], [2, 3]]), torch.rand(2, 2)
        >>> fig = plot_representer_landmarks(images, landmarks, indices, scores)
        >>> len(fig.axes)
        6
    """
    if (
        top_indices.dim() != 2
        or top_indices.shape != top_scores.shape
        or top_indices.shape[0] != len(images)
    ):
        raise ValueError(
            f"top_indices {tuple(top_indices.shape)} and top_scores "
            f"{tuple(top_scores.shape)} must both have shape (B, k) with B = "
            f"{len(images)} query images."
        )
    rows, k = top_indices.shape
    if rows == 0 or k == 0:
        raise ValueError("Nothing to draw: pass at least one query and one landmark.")
    _check_titles(titles, rows, "titles")
    _check_titles(landmark_titles, len(landmark_images), "landmark_titles")
    _check_denormalize(denormalize)
    top_scores = top_scores.detach().cpu()
    fig = Figure(figsize=(1.6 * (k + 1), 1.75 * rows + 0.6))
    axes = fig.subplots(rows, k + 1, squeeze=False)
    for row in range(rows):
        _show(axes[row, 0], images[row], denormalize)
        axes[row, 0].set_title(titles[row] if titles else "query", fontsize=8)
        for col in range(k):
            j = int(top_indices[row, col])
            ax = axes[row, col + 1]
            _show(ax, landmark_images[j], denormalize)
            label = f"{landmark_titles[j]}: " if landmark_titles else ""
            ax.set_title(f"{label}{float(top_scores[row, col]):+.2g}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("query | top representer landmarks (score)", fontsize=9)
    _caption(fig, PROPONENTS_CAPTION if caption is None else caption)
    _save(fig, path, dpi)
    return fig


def top_representer_landmarks(
    source: KernelBackbone | LandmarkExpansion,
    x: Tensor,
    k: int = 5,
    target: TargetSpec = None,
    *,
    proponents: bool = True,
) -> tuple[Tensor, Tensor]:
    """Top-k landmarks of each query by the expansion's signed scores.

    The scores ``(k(l_j, x) - mu_j) <w_j, v(x)>`` (default target: "what builds
    x", scores adding up to ``|g(x) - f_0|``) of a
    :class:`~lightly_krepes.attribution.LandmarkExpansion`; a backbone is wrapped
    with the expansion's defaults.

    Args:
        source: A LandmarkExpansion or a backbone.
        x: Tensor of shape (B, ...), the queries.
        k: Number of landmarks per query.
        target: Target of the scores (None: what builds x).
        proponents: Highest scores (True) or lowest, most negative (False).

    Returns:
        Indices (B, k) and scores (B, k), from the highest (lowest) score.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes import RBF, KernelBackbone
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=4)
        >>> indices, scores = top_representer_landmarks(backbone, torch.randn(2, 3), 3)
        >>> indices.shape
        torch.Size([2, 3])
    """
    expansion = as_expansion(source)
    with torch.no_grad():
        top = expansion.top(x, k, target, proponents=proponents)
    return top.indices, top.influence_scores


def _caption(fig: Figure, text: str) -> None:
    """Wraps ``text`` under the axes and makes room for it."""
    if not text:
        fig.tight_layout()
        return
    width = max(40, int(fig.get_figwidth() * 15))
    lines = textwrap.wrap(text, width=width)
    fig.tight_layout(rect=(0.0, 0.03 + 0.12 * len(lines) / fig.get_figheight(), 1, 1))
    fig.text(0.5, 0.01, "\n".join(lines), ha="center", va="bottom", fontsize=7)


def _save(fig: Figure, path: str | Path | None, dpi: int) -> None:
    """Writes ``fig`` as PNG to ``path`` (parents created) unless it is None."""
    if path is None:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format="png")


def _check_k(k: int, m: int) -> int:
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= m:
        raise ValueError(
            f"k must be an integer between 1 and the number of landmarks ({m}), "
            f"got {k}."
        )
    return int(k)


def _check_titles(titles: Sequence[str] | None, length: int, name: str) -> None:
    if titles is not None and len(titles) != length:
        raise ValueError(f"{name} must hold {length} titles, got {len(titles)}.")


def plot_proponents_opponents(
    images: Tensor,
    landmark_images: Tensor,
    scores: Tensor,
    k: int = 5,
    path: str | Path | None = None,
    *,
    titles: Sequence[str] | None = None,
    landmark_titles: Sequence[str] | None = None,
    denormalize: Denormalize = None,
    caption: str | None = None,
    similar: Tensor | None = None,
    dpi: int = 110,
) -> Figure:
    """Each test image beside its top-k proponent and top-k opponent landmarks.

    Row ``i`` shows test image ``i``, then the ``k`` landmarks with the highest
    scores (proponents, largest first, titles in green) and the ``k`` with the
    lowest (opponents, most negative first, titles in red), each titled with its
    score. With ``scores`` from
    :meth:`~lightly_krepes.attribution.RepresenterInfluence.influence`
    (``k=None``, default target), the score of landmark ``j`` is its exact share
    of x's representation along its own direction: proponents build it,
    opponents pull it the other way (they cancel part of what the proponents
    build). The caption says so under the figure. When ``2 k > m`` the two groups
    overlap.

    Args:
        images: Tensor of shape (B, C, H, W) or (B, H, W), the test images.
        landmark_images: Tensor of shape (m, C, H, W) or (m, H, W), e.g.
            ``backbone.landmarks``.
        scores: Tensor of shape (B, m), ``scores[i, j]`` the influence of landmark
            ``j`` on test image ``i``.
        k: Proponents and opponents shown per test image, ``1 <= k <= m``.
        path: Output PNG path (parent folders are created); None saves nothing.
        titles: Optional B titles of the test images (e.g. their labels).
        landmark_titles: Optional m titles of the landmarks, shown before the
            scores (e.g. their labels).
        denormalize: How to undo the input normalisation (see
            :data:`Denormalize`); None stretches each image to its range.
        caption: Text under the figure; None explains proponents and opponents
            of the default scores (pass your own for other targets, "" for none).
        similar: Optional boolean tensor (B, m), ``expansion.rows(images) > 0``:
            landmarks more similar to the image than the reference row, ranked
            first as in
            :meth:`~lightly_krepes.attribution.LandmarkExpansion.top` (None
            ranks by score alone).
        dpi: Resolution of the PNG.

    Returns:
        The figure: B rows of ``2 k + 1`` axes.

    Raises:
        ValueError: If the shapes do not match, ``k`` is out of range, the scores
            are not finite or a title list has the wrong length.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> images, landmarks = torch.rand(2, 8, 8), torch.rand(6, 8, 8)
        >>> fig = plot_proponents_opponents(images, landmarks, torch.randn(2, 6), k=2)
        >>> len(fig.axes)
        10
    """
    if scores.dim() != 2 or scores.shape != (len(images), len(landmark_images)):
        raise ValueError(
            f"scores must have shape (B, m) = ({len(images)}, {len(landmark_images)})"
            f" for {len(images)} test images and {len(landmark_images)} landmarks, "
            f"got {tuple(scores.shape)}."
        )
    rows, m = scores.shape
    if rows == 0:
        raise ValueError("images is empty; pass at least one test image.")
    k = _check_k(k, m)
    _check_titles(titles, rows, "titles")
    _check_titles(landmark_titles, m, "landmark_titles")
    _check_denormalize(denormalize)
    scores = scores.detach().double().cpu()
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores contain NaN or infinite values.")
    mask = None if similar is None else similar.detach().cpu().bool()
    high_idx, high = rank_terms(scores, mask, k, proponents=True)
    low_idx, low = rank_terms(scores, mask, k, proponents=False)

    fig = Figure(figsize=(1.25 * (2 * k + 1) + 0.3, 1.45 * rows + 0.45))
    axes = fig.subplots(rows, 2 * k + 1, squeeze=False)
    for row in range(rows):
        ax = axes[row, 0]
        _show(ax, images[row], denormalize)
        ax.set_title(titles[row] if titles else f"test {row}", fontsize=8)
        groups = ((high_idx, high, "tab:green"), (low_idx, low, "tab:red"))
        for group, (indices, values, color) in enumerate(groups):
            for col in range(k):
                j = int(indices[row, col])
                ax = axes[row, 1 + group * k + col]
                _show(ax, landmark_images[j], denormalize)
                label = f"{landmark_titles[j]}: " if landmark_titles else ""
                ax.set_title(
                    f"{label}{float(values[row, col]):+.2g}", fontsize=8, color=color
                )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"test image | top-{k} proponents (green) | top-{k} opponents (red)",
        fontsize=9,
    )
    _caption(fig, PROPONENTS_CAPTION if caption is None else caption)
    _save(fig, path, dpi)
    return fig


def _class_names(labels: Sequence[Any] | Tensor, m: int) -> list[str]:
    values = labels.tolist() if isinstance(labels, Tensor) else list(labels)
    if len(values) != m:
        raise ValueError(
            f"landmark_labels must hold one label per landmark ({m}), got "
            f"{len(values)}."
        )
    return [str(v) for v in values]


def plot_concept_influence(
    scores: Mapping[str, Tensor],
    landmark_labels: Sequence[Any] | Tensor | None = None,
    path: str | Path | None = None,
    *,
    band: tuple[float, float] = (0.1, 0.9),
    dpi: int = 110,
) -> Figure:
    """Concept influence profiles: who pushes samples toward a concept, who away.

    One row per concept. The left panel is the *profile*: for each sample its
    landmark scores sorted from the most attractive (positive: pushes the sample
    toward the concept) to the most repulsive (negative), with the median over
    samples as a line and the ``band`` quantiles shaded; the title gives the mean
    attractive mass ``E_x sum_l max(IS, 0)`` and repulsive mass
    ``E_x sum_l min(IS, 0)``. A steep head means a few landmarks carry the
    concept; a long negative tail marks repulsive landmarks. With
    ``landmark_labels`` the right panel shows, per landmark class, the sum of its
    landmarks' scores averaged over samples (the classes' net push along the
    concept; over all classes it adds up to the concept coordinate
    ``E_x <g(x) - f_0, v_c>`` of the explained expansion).

    Args:
        scores: Mapping concept name -> Tensor of shape (B, m) (or (m,) for one
            sample), e.g. the step's concept scores
            ``step.scores(x, Direction(cav))`` (``k(l, x) <Delta alpha_l, v_c>``
            relative to the reference row) or
            :func:`~lightly_krepes.attribution.concept_influence`, for samples of
            that concept.
        landmark_labels: Optional m labels of the landmarks (ints or strings).
        path: Output PNG path (parent folders are created); None saves nothing.
        band: Lower and upper quantile of the shaded band, ``0 <= lo <= hi <= 1``.
        dpi: Resolution of the PNG.

    Returns:
        The figure: one row per concept of one axis, or two with
        ``landmark_labels``.

    Raises:
        ValueError: If ``scores`` is empty, shapes or landmark counts differ,
            scores are not finite, or ``band`` is invalid.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Kim et al., 2018, TCAV, arXiv 1711.11279

    Examples:
        >>> fig = plot_concept_influence(
        ...     {"round": torch.randn(4, 12), "straight": torch.randn(4, 12)},
        ...     landmark_labels=[0, 1, 2] * 4,
        ... )
        >>> len(fig.axes)
        4
    """
    if not scores:
        raise ValueError("scores is empty; pass at least one concept.")
    low_q, high_q = band
    if not 0.0 <= low_q <= high_q <= 1.0:
        raise ValueError(f"band must be quantiles 0 <= lo <= hi <= 1, got {band}.")
    profiles: dict[str, Tensor] = {}
    m: int | None = None
    for name, value in scores.items():
        if not isinstance(value, Tensor) or value.dim() not in (1, 2):
            raise ValueError(
                f"scores[{name!r}] must be a tensor of shape (B, m) or (m,), got "
                f"{getattr(value, 'shape', type(value).__name__)}."
            )
        value = value.detach().double().cpu()
        value = value[None] if value.dim() == 1 else value
        if value.shape[0] == 0 or value.shape[1] == 0:
            raise ValueError(f"scores[{name!r}] is empty: {tuple(value.shape)}.")
        if m is not None and value.shape[1] != m:
            raise ValueError(
                f"All concepts must score the same m landmarks: scores[{name!r}] "
                f"has {value.shape[1]}, the others {m}."
            )
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"scores[{name!r}] contain NaN or infinite values.")
        m = int(value.shape[1])
        profiles[name] = value
    assert m is not None
    names = None if landmark_labels is None else _class_names(landmark_labels, m)
    classes = None if names is None else sorted(set(names), key=_natural_key)

    columns = 1 if classes is None else 2
    fig = Figure(figsize=(4.6 * columns, 2.3 * len(profiles) + 0.4))
    axes = fig.subplots(len(profiles), columns, squeeze=False)
    ranks = torch.arange(1, m + 1).numpy()
    for row, (name, value) in enumerate(profiles.items()):
        ordered = value.sort(dim=1, descending=True).values
        median = ordered.median(dim=0).values.numpy()
        lower = torch.quantile(ordered, low_q, dim=0).numpy()
        upper = torch.quantile(ordered, high_q, dim=0).numpy()
        attractive = float(value.clamp_min(0).sum(1).mean())
        repulsive = float(value.clamp_max(0).sum(1).mean())
        ax = axes[row, 0]
        ax.fill_between(ranks, lower, upper, color="0.8", label="band", lw=0)
        ax.fill_between(
            ranks,
            0,
            median,
            where=median >= 0,
            color="tab:green",
            alpha=0.6,
            label="attractive",
            lw=0,
        )
        ax.fill_between(
            ranks,
            0,
            median,
            where=median < 0,
            color="tab:red",
            alpha=0.6,
            label="repulsive",
            lw=0,
        )
        ax.plot(ranks, median, color="k", lw=1.0)
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_xlim(1, max(m, 2))
        ax.set_title(
            f"{name}: attractive {attractive:+.3g} | repulsive {repulsive:+.3g}",
            fontsize=9,
        )
        ax.set_ylabel("influence", fontsize=8)
        ax.tick_params(labelsize=7)
        if row == len(profiles) - 1:
            ax.set_xlabel("landmark rank (per sample)", fontsize=8)
        if row == 0:
            ax.legend(fontsize=7, loc="upper right")
        if classes is not None and names is not None:
            per_landmark = value.mean(0)
            totals = [
                float(sum(per_landmark[j] for j in range(m) if names[j] == c))
                for c in classes
            ]
            ax = axes[row, 1]
            colors = ["tab:green" if t >= 0 else "tab:red" for t in totals]
            ax.bar(range(len(classes)), totals, color=colors)
            ax.axhline(0.0, color="k", lw=0.5)
            ax.set_xticks(range(len(classes)))
            ax.set_xticklabels(classes, fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(f"{name}: net push per landmark class", fontsize=9)
            if row == len(profiles) - 1:
                ax.set_xlabel("landmark class", fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi)
    return fig


def _natural_key(name: str) -> tuple[int, float, str]:
    """Sorts numeric labels numerically before other labels alphabetically."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def plot_feature_alignment_gap(
    gaps: Mapping[str, FeatureAlignmentGap | tuple[float, float]],
    path: str | Path | None = None,
    *,
    dpi: int = 110,
) -> Figure:
    """Bars of the Feature Alignment Gap per feature, with the random baseline.

    Left: ``AG_xi = E_x[Psi(x) - Psi_random(x)]`` per feature, sorted, green for
    features the learned geometry amplifies (``AG > 0``) and red otherwise, with a
    95% interval (``1.96`` standard errors of the per-sample gaps) when the
    per-sample values are known. Right: the two terms, the influence-weighted
    consistency ``E_x Psi`` of the top landmarks beside ``E_x Psi_random`` of
    random ones (the baseline), so a gap can be read against the level it starts
    from.

    Args:
        gaps: Mapping feature name -> a
            :class:`~lightly_krepes.attribution.FeatureAlignmentGap` from
            :func:`~lightly_krepes.attribution.feature_alignment_gap`, or a pair
            ``(gap, random_baseline)`` with ``random_baseline = E_x Psi_random``.
        path: Output PNG path (parent folders are created); None saves nothing.
        dpi: Resolution of the PNG.

    Returns:
        The figure, with two axes.

    Raises:
        ValueError: If ``gaps`` is empty or holds non-finite values.
        TypeError: If a value is neither a FeatureAlignmentGap nor a pair.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> fig = plot_feature_alignment_gap({"sex": (0.2, 0.5), "age": (0.01, 0.6)})
        >>> [ax.get_title() for ax in fig.axes][0]
        'Feature Alignment Gap (top vs random landmarks)'
    """
    if not gaps:
        raise ValueError("gaps is empty; pass at least one feature.")
    rows: list[tuple[str, float, float, float | None]] = []
    for name, value in gaps.items():
        if isinstance(value, FeatureAlignmentGap):
            gap = float(value.gap)
            baseline = float(value.psi_random.double().mean())
            per_sample = value.per_sample.detach().double().cpu()
            error = (
                1.96 * float(per_sample.std()) / len(per_sample) ** 0.5
                if len(per_sample) > 1
                else None
            )
        elif isinstance(value, tuple | list) and len(value) == 2:
            gap, baseline, error = float(value[0]), float(value[1]), None
        else:
            raise TypeError(
                f"gaps[{name!r}] must be a FeatureAlignmentGap or a pair (gap, "
                f"random_baseline), got {type(value).__name__}."
            )
        if not all(abs(v) < float("inf") for v in (gap, baseline)):
            raise ValueError(f"gaps[{name!r}] holds NaN or infinite values.")
        rows.append((name, gap, baseline, error))
    rows.sort(key=lambda r: r[1], reverse=True)
    labels = [r[0] for r in rows]
    values = [r[1] for r in rows]
    baselines = [r[2] for r in rows]
    errors = [0.0 if r[3] is None else r[3] for r in rows]
    positions = list(range(len(rows)))

    fig = Figure(figsize=(min(12.0, max(6.0, 0.6 * len(rows) + 4.0)), 3.6))
    left, right = fig.subplots(1, 2)
    colors = ["tab:green" if v > 0 else "tab:red" for v in values]
    bars = left.bar(
        positions,
        values,
        color=colors,
        yerr=errors if any(errors) else None,
        capsize=3,
    )
    left.bar_label(bars, labels=[f"{v:+.3f}" for v in values], fontsize=7)
    left.axhline(0.0, color="k", lw=0.5)
    left.set_title("Feature Alignment Gap (top vs random landmarks)", fontsize=9)
    left.set_ylabel("AG", fontsize=8)
    width = 0.4
    tops = [g + b for g, b in zip(values, baselines, strict=True)]
    right.bar(
        [p - width / 2 for p in positions],
        tops,
        width,
        label="top landmarks",
        color="tab:blue",
    )
    right.bar(
        [p + width / 2 for p in positions],
        baselines,
        width,
        label="random landmarks (baseline)",
        color="0.65",
    )
    right.set_title("influence-weighted consistency Psi", fontsize=9)
    right.legend(fontsize=7, loc="upper center", ncol=2)
    right.set_ylim(0.0, 1.2 * max(1e-12, *tops, *baselines))
    for ax in (left, right):
        ax.set_xticks(positions)
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    _save(fig, path, dpi)
    return fig
