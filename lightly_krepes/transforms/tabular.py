"""View transforms for tabular rows: SCARF feature corruption and Gaussian noise.

Each transform takes one row of shape (d,) or a batch of shape (B, d) and works as
an entry of the ``transforms`` list of :class:`lightly.transforms.MultiViewTransform`.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Bahri, Jiang, Tay, Metzler, 2022, SCARF: Self-Supervised Contrastive Learning
  using Random Feature Corruption, ICLR, arXiv 2106.15147
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from lightly.transforms.multi_view_transform import MultiViewTransform
from PIL.Image import Image
from torch import Tensor

from lightly_krepes._validation import check_floating, check_samples


def _make_generator(
    generator: torch.Generator | None, seed: int | None
) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise ValueError("Pass either generator or seed, not both.")
    if seed is not None:
        return torch.Generator().manual_seed(int(seed))
    return generator


def _as_batch(x: Tensor, num_features: int | None) -> tuple[Tensor, bool]:
    """Returns ``x`` as a (B, d) batch and whether it was a single (d,) row."""
    check_floating(x, "x")
    if x.dim() not in (1, 2):
        raise ValueError(
            f"x must be one row of shape (d,) or a batch of shape (B, d), got shape "
            f"{tuple(x.shape)}."
        )
    if num_features is not None and x.shape[-1] != num_features:
        raise ValueError(
            f"x has {x.shape[-1]} features but the transform was built for "
            f"{num_features} (the number of columns of marginals)."
        )
    return (x.unsqueeze(0), True) if x.dim() == 1 else (x, False)


class RandomFeatureCorruption:
    """SCARF corruption: replace random features by draws from their marginals.

    For every row, ``round(corruption_rate * G)`` of the G feature groups are chosen
    uniformly at random without replacement, and each chosen group is replaced by
    the same columns of a reference row drawn uniformly at random from
    ``marginals``, independently per group [1]. A value drawn this way follows the
    feature's empirical marginal distribution. Columns not listed in ``groups`` form
    a group of their own; a group of columns (e.g. the one-hot block of one
    categorical feature) is always corrupted together from one reference row, so a
    valid one-hot block stays valid.

    Random numbers come from ``generator`` (or a new one seeded with ``seed``), or
    from torch's global generator when neither is given. Prefer the global generator
    with a multi-worker ``DataLoader``: every worker gets a copy of an explicit
    generator in the same state, so workers would repeat each other's corruptions,
    whereas the loader seeds the global generator differently per worker.

    Args:
        marginals: Tensor of shape (n_ref, d), the reference rows whose columns
            define the empirical marginals, typically (a sample of) the training
            set in the same preprocessing as the transformed rows.
        corruption_rate: Fraction of feature groups replaced per row, in [0, 1].
            SCARF's default is 0.6.
        groups: Optional list of column index lists; the columns of one list are
            corrupted together. Groups must be disjoint and non-empty.
        generator: Optional random generator (on the CPU unless its device is
            given); the output is moved to the input's device.
        seed: Optional seed for a new CPU generator; exclusive with ``generator``.

    Raises:
        TypeError: If ``marginals`` is not a floating point tensor.
        ValueError: If ``marginals`` is not a non-empty finite (n_ref, d) matrix,
            the rate lies outside [0, 1], the groups are invalid, or both generator
            and seed are given.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Bahri et al., 2022, SCARF: Self-Supervised Contrastive Learning using
          Random Feature Corruption, arXiv 2106.15147

    Examples:
        >>> marginals = torch.tensor([[10.0, 20.0, 30.0], [11.0, 21.0, 31.0]])
        >>> corrupt = RandomFeatureCorruption(marginals, corruption_rate=1.0, seed=0)
        >>> view = corrupt(torch.zeros(3))
        >>> bool(((view >= 10) & (view <= 31)).all())
        True
    """

    def __init__(
        self,
        marginals: Tensor,
        corruption_rate: float = 0.6,
        groups: Sequence[Sequence[int]] | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        check_samples(marginals, "marginals", min_dim=2)
        if marginals.dim() != 2 or marginals.shape[0] < 1 or marginals.shape[1] < 1:
            raise ValueError(
                f"marginals must be a non-empty matrix of shape (n_ref, d) with one "
                f"reference row per row, got shape {tuple(marginals.shape)}."
            )
        if not 0.0 <= corruption_rate <= 1.0:
            raise ValueError(
                f"corruption_rate must lie in [0, 1], got {corruption_rate}."
            )
        self.marginals = marginals.detach()
        self.corruption_rate = float(corruption_rate)
        self.generator = _make_generator(generator, seed)
        num_features = int(marginals.shape[1])
        self.group_of_column = _group_index(groups, num_features)
        self.num_groups = int(self.group_of_column.max()) + 1
        self.num_corrupted = math.floor(self.corruption_rate * self.num_groups + 0.5)

    @property
    def num_features(self) -> int:
        """Number of columns d."""
        return int(self.marginals.shape[1])

    def __call__(self, x: Tensor) -> Tensor:
        """Corrupts one row or every row of a batch.

        Args:
            x: Tensor of shape (d,) or (B, d).

        Returns:
            Tensor of the same shape, dtype and device as x (a new tensor).

        Raises:
            TypeError: If x is not a floating point tensor.
            ValueError: If x is not 1-D or 2-D or has the wrong number of features.
        """
        batch, single = _as_batch(x, self.num_features)
        if self.num_corrupted == 0:
            return x.clone()
        num_rows = batch.shape[0]
        device = self.generator.device if self.generator is not None else None
        scores = torch.rand(
            num_rows, self.num_groups, generator=self.generator, device=device
        )
        chosen = scores.argsort(dim=1)[:, : self.num_corrupted]
        group_mask = torch.zeros(
            num_rows, self.num_groups, dtype=torch.bool, device=scores.device
        ).scatter_(1, chosen, True)
        reference = torch.randint(
            self.marginals.shape[0],
            (num_rows, self.num_groups),
            generator=self.generator,
            device=device,
        )
        group_of_column = self.group_of_column.to(scores.device)
        column_mask = group_mask[:, group_of_column]
        rows = reference[:, group_of_column].to(self.marginals.device)
        columns = torch.arange(self.num_features, device=self.marginals.device)
        values = self.marginals[rows, columns]
        out = torch.where(
            column_mask.to(batch.device), values.to(batch.device, batch.dtype), batch
        )
        return out.squeeze(0) if single else out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_reference_rows={self.marginals.shape[0]}, "
            f"num_features={self.num_features}, num_groups={self.num_groups}, "
            f"corruption_rate={self.corruption_rate})"
        )


def _group_index(groups: Sequence[Sequence[int]] | None, num_features: int) -> Tensor:
    """Maps each column to a group id; ungrouped columns get their own group."""
    group_of_column = torch.full((num_features,), -1, dtype=torch.long)
    num_groups = 0
    for group in groups or []:
        indices = [int(i) for i in group]
        if not indices:
            raise ValueError("groups must not contain an empty group.")
        for i in indices:
            if not 0 <= i < num_features:
                raise ValueError(
                    f"Column index {i} in groups is out of range for {num_features} "
                    f"features."
                )
            if group_of_column[i] >= 0:
                raise ValueError(
                    f"Column {i} appears in more than one group (or twice in one); "
                    f"groups must be disjoint."
                )
            group_of_column[i] = num_groups
        num_groups += 1
    for i in range(num_features):
        if group_of_column[i] < 0:
            group_of_column[i] = num_groups
            num_groups += 1
    return group_of_column


class GaussianNoise:
    """Adds independent Gaussian noise ``N(0, std^2)`` to numeric columns.

    The data should be standardised so that one ``std`` suits every column.

    Args:
        std: Non-negative standard deviation of the noise.
        columns: Optional indices of the numeric columns to perturb; None perturbs
            every column. Leave out one-hot or other categorical columns.
        generator: Optional random generator (see :class:`RandomFeatureCorruption`).
        seed: Optional seed for a new CPU generator; exclusive with ``generator``.

    Raises:
        ValueError: If ``std`` is negative or not finite, ``columns`` has negative
            or repeated indices, or both generator and seed are given.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> noise = GaussianNoise(std=0.1, columns=[0], seed=0)
        >>> view = noise(torch.zeros(3))
        >>> view[1:].tolist()
        [0.0, 0.0]
    """

    def __init__(
        self,
        std: float = 0.1,
        columns: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= std < math.inf:
            raise ValueError(f"std must be a finite non-negative number, got {std}.")
        self.std = float(std)
        self.columns: Tensor | None = None
        if columns is not None:
            cols = [int(c) for c in columns]
            if any(c < 0 for c in cols) or len(set(cols)) != len(cols):
                raise ValueError(
                    f"columns must hold distinct non-negative indices, got {cols}."
                )
            self.columns = torch.tensor(cols, dtype=torch.long)
        self.generator = _make_generator(generator, seed)

    def __call__(self, x: Tensor) -> Tensor:
        """Adds noise to one row or every row of a batch.

        Args:
            x: Tensor of shape (d,) or (B, d).

        Returns:
            Tensor of the same shape, dtype and device as x (a new tensor).

        Raises:
            TypeError: If x is not a floating point tensor.
            ValueError: If x is not 1-D or 2-D or a column index is out of range.
        """
        batch, single = _as_batch(x, None)
        if (
            self.columns is not None
            and self.columns.numel() > 0
            and int(self.columns.max()) >= batch.shape[1]
        ):
            raise ValueError(
                f"columns index up to {int(self.columns.max())}, but x has only "
                f"{batch.shape[1]} features."
            )
        num_columns = batch.shape[1] if self.columns is None else len(self.columns)
        if self.std == 0.0 or num_columns == 0:
            return x.clone()
        device = self.generator.device if self.generator is not None else None
        noise = torch.randn(
            batch.shape[0], num_columns, generator=self.generator, device=device
        )
        noise = (self.std * noise).to(batch.device, batch.dtype)
        if self.columns is None:
            out = batch + noise
        else:
            out = batch.clone()
            out[:, self.columns.to(batch.device)] += noise
        return out.squeeze(0) if single else out

    def __repr__(self) -> str:
        columns = None if self.columns is None else self.columns.tolist()
        return f"{type(self).__name__}(std={self.std}, columns={columns})"


class TabularViewTransform:
    """One tabular view: SCARF corruption followed by optional Gaussian noise.

    Args:
        marginals: Tensor of shape (n_ref, d), reference rows for the corruption.
        corruption_rate: Fraction of feature groups replaced, in [0, 1].
        groups: Optional column groups corrupted together (one-hot blocks).
        noise_std: Standard deviation of the Gaussian noise; 0 disables it.
        noise_columns: Columns that receive noise; None means all columns.
        generator: Optional random generator shared by both steps.
        seed: Optional seed for a new CPU generator; exclusive with ``generator``.

    Raises:
        ValueError: As :class:`RandomFeatureCorruption` and :class:`GaussianNoise`.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Bahri et al., 2022, SCARF, arXiv 2106.15147

    Examples:
        >>> marginals = torch.randn(100, 4)
        >>> transform = TabularViewTransform(marginals, noise_std=0.05, seed=0)
        >>> transform(torch.randn(8, 4)).shape
        torch.Size([8, 4])
    """

    def __init__(
        self,
        marginals: Tensor,
        corruption_rate: float = 0.6,
        groups: Sequence[Sequence[int]] | None = None,
        noise_std: float = 0.0,
        noise_columns: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        generator = _make_generator(generator, seed)
        self.corruption = RandomFeatureCorruption(
            marginals, corruption_rate, groups=groups, generator=generator
        )
        self.noise = GaussianNoise(noise_std, noise_columns, generator=generator)

    def __call__(self, x: Tensor) -> Tensor:
        """Builds one view of a row (d,) or a batch (B, d).

        Args:
            x: Tensor of shape (d,) or (B, d).

        Returns:
            Tensor of the same shape, dtype and device as x.
        """
        return self.noise(self.corruption(x))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.corruption!r}, {self.noise!r})"


class TabularMultiViewTransform(MultiViewTransform):
    """Lightly multi-view transform for tabular rows, built from SCARF views.

    Calling it on a row returns a list of ``num_views`` views, like Lightly's
    ``SimCLRTransform`` does for images, so it plugs into Lightly datasets and
    collate functions unchanged. All views share one generator.

    Args:
        marginals: Tensor of shape (n_ref, d), reference rows for the corruption.
        num_views: Number of views, at least 1.
        corruption_rate: Fraction of feature groups replaced per view, in [0, 1].
        groups: Optional column groups corrupted together (one-hot blocks).
        noise_std: Standard deviation of the Gaussian noise; 0 disables it.
        noise_columns: Columns that receive noise; None means all columns.
        include_original: If True the first view is the unmodified row, SCARF's
            original anchor/positive setup [1]; the others are corrupted.
        generator: Optional random generator shared by all views.
        seed: Optional seed for a new CPU generator; exclusive with ``generator``.

    Raises:
        ValueError: If ``num_views < 1`` or as :class:`TabularViewTransform`.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Bahri et al., 2022, SCARF, arXiv 2106.15147

    Examples:
        >>> marginals = torch.randn(100, 4)
        >>> transform = TabularMultiViewTransform(marginals, seed=0)
        >>> views = transform(torch.randn(4))
        >>> len(views), views[0].shape
        (2, torch.Size([4]))
    """

    def __init__(
        self,
        marginals: Tensor,
        num_views: int = 2,
        corruption_rate: float = 0.6,
        groups: Sequence[Sequence[int]] | None = None,
        noise_std: float = 0.0,
        noise_columns: Sequence[int] | None = None,
        include_original: bool = False,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        if int(num_views) != num_views or num_views < 1:
            raise ValueError(f"num_views must be a positive integer, got {num_views}.")
        generator = _make_generator(generator, seed)
        views = [
            TabularViewTransform(
                marginals,
                corruption_rate=0.0 if include_original and i == 0 else corruption_rate,
                groups=groups,
                noise_std=0.0 if include_original and i == 0 else noise_std,
                noise_columns=noise_columns,
                generator=generator,
            )
            for i in range(int(num_views))
        ]
        super().__init__(transforms=views)

    def __call__(self, image: Tensor | Image) -> list[Tensor]:
        """Builds the views of one row (d,) or of a batch (B, d).

        Args:
            image: Tensor of shape (d,) or (B, d) (named ``image`` like the
                argument of :class:`lightly.transforms.MultiViewTransform`).

        Returns:
            List of ``num_views`` tensors shaped like the input.

        Raises:
            TypeError: If the input is not a floating point tensor.
        """
        if not isinstance(image, Tensor):
            raise TypeError(
                f"Tabular views need a float tensor row, got {type(image).__name__}."
            )
        return [transform(image) for transform in self.transforms]
