"""UCI Adult (census income) from the local ``adult.data`` / ``adult.test`` files.

The files are CSV without a header, with a space after each comma and ``?`` for a
missing value; ``adult.test`` starts with the junk line ``|1x3 Cross validator`` and
its labels end in ``.``. The label is 1 for ``>50K``. Preprocessing, fitted on the
training rows only and applied unchanged to the test rows:

- numeric columns are standardised with the training mean and (population) std;
  a missing numeric value (none occur in Adult) becomes the training mean, i.e. 0;
- categorical columns are one-hot encoded over the categories seen in training,
  sorted; a missing value ``?`` is its own category, named ``<column>=missing``, so
  missingness gets an indicator column where training had missing values; a test
  category unseen in training maps to all zeros.

Every original feature occupies a contiguous block of output columns, in the order
of :data:`ADULT_COLUMNS`; ``feature_slices`` gives the block of each one, which is
the per-original-feature view that feature-level audits (the feature alignment gap)
need. The raw values are kept alongside for audits.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Kohavi, 1996, Scaling Up the Accuracy of Naive-Bayes Classifiers: a
  Decision-Tree Hybrid, KDD
- [2] Becker, Kohavi, 1996, Adult, UCI Machine Learning Repository,
  doi:10.24432/C5XW20
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.data import Dataset

from lightly_krepes.data._paths import (
    PathLike,
    check_split,
    missing_data_error,
    resolve_data_root,
)
from lightly_krepes.data._subset import select_indices

ADULT_COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
)
"""The 14 Adult features in file order (the 15th column is the label, ``income``)."""

ADULT_NUMERIC_COLUMNS = (
    "age",
    "fnlwgt",
    "education_num",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
)
"""Features that are standardised; all other features are one-hot encoded."""

ADULT_SENSITIVE_COLUMNS = ("sex", "race", "relationship", "marital_status", "age")
"""Sensitive attributes kept raw for audits."""

ADULT_AUDIT_COLUMNS = (*ADULT_SENSITIVE_COLUMNS, "education", "occupation")
"""Raw attributes the KREPES audit compares against: the sensitive ones plus two."""

MISSING = "?"
"""Marker of a missing value in the Adult files."""

ADULT_1M_NUMERIC_NOISE = 0.05
"""Default numeric jitter of :func:`load_adult_1m`, in training standard deviations."""

ADULT_1M_SWAP_RATE = 0.01
"""Default rate at which :func:`load_adult_1m` re-draws a categorical value."""

# Mostly zero; only their nonzero entries are jittered, so zeros stay zeros.
_ZERO_INFLATED = ("capital_gain", "capital_loss")
# education_num is the rank of education (one value per category), so it follows
# education instead of being jittered on its own.
_DERIVED = {"education_num": "education"}

_MISSING_NAME = "missing"
_FILES = {"train": "adult.data", "test": "adult.test"}
_LABELS = {"<=50K": 0, ">50K": 1}
_LAYOUTS = (
    "adult.data and adult.test (UCI files) directly under root",
    "adult/adult.data and adult/adult.test",
)
_HOW_TO_GET = (
    "download adult.data and adult.test from the UCI Machine Learning Repository "
    "(https://archive.ics.uci.edu/dataset/2/adult, file adult.zip) on a machine with "
    "internet and copy them into <root>/adult/."
)

RawColumns = dict[str, NDArray[Any]]
"""Raw columns by name: float64 for numeric ones (NaN if missing), object arrays of
``str`` for categorical ones (``"?"`` if missing)."""


def read_adult_csv(path: PathLike) -> tuple[RawColumns, NDArray[np.int64]]:
    """Parses one Adult file into raw columns and labels.

    Blank lines and lines starting with ``|`` (the junk first line of
    ``adult.test``) are skipped; the spaces after the commas and the trailing ``.``
    of test labels are removed.

    Args:
        path: Path of ``adult.data``, ``adult.test`` or a file in their format.

    Returns:
        ``(raw, labels)``: the 14 columns of :data:`ADULT_COLUMNS`, each of shape
        (n,), and int64 labels of shape (n,), 1 for ``>50K``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If a line does not have 15 fields, a numeric field is not a
            number or a label is neither ``<=50K`` nor ``>50K``.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [2] Becker, Kohavi, 1996, UCI Adult, doi:10.24432/C5XW20

    Examples:
        >>> raw, labels = read_adult_csv("adult/adult.test")  # doctest: +SKIP
        >>> raw["sex"][:2].tolist(), labels[:2].tolist()  # doctest: +SKIP
        (['Male', 'Male'], [0, 0])
    """
    path = Path(path)
    values: dict[str, list[Any]] = {name: [] for name in ADULT_COLUMNS}
    labels: list[int] = []
    numeric = set(ADULT_NUMERIC_COLUMNS)
    with path.open(newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f, skipinitialspace=True), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if row[0].startswith("|"):
                continue
            if len(row) != len(ADULT_COLUMNS) + 1:
                raise ValueError(
                    f"{path}:{lineno}: expected {len(ADULT_COLUMNS) + 1} "
                    f"comma-separated fields, got {len(row)}: {row!r}."
                )
            for name, cell in zip(ADULT_COLUMNS, row, strict=False):
                cell = cell.strip()
                if name not in numeric:
                    values[name].append(cell)
                    continue
                try:
                    values[name].append(np.nan if cell == MISSING else float(cell))
                except ValueError as err:
                    raise ValueError(
                        f"{path}:{lineno}: column {name} must be numeric, got {cell!r}."
                    ) from err
            label = row[-1].strip().rstrip(".")
            if label not in _LABELS:
                raise ValueError(
                    f"{path}:{lineno}: the label must be '<=50K' or '>50K' (with an "
                    f"optional trailing '.'), got {row[-1]!r}."
                )
            labels.append(_LABELS[label])
    raw: RawColumns = {}
    for name in ADULT_COLUMNS:
        if name in numeric:
            raw[name] = np.array(values[name], dtype=np.float64)
        else:
            column = np.empty(len(values[name]), dtype=object)
            column[:] = values[name]
            raw[name] = column
    return raw, np.array(labels, dtype=np.int64)


@dataclass(frozen=True)
class AdultPreprocessor:
    """Standardisation and one-hot encoding of Adult, fitted on the training rows.

    Output columns follow ``columns``: a numeric feature gives one column named after
    it, a categorical feature one column per training category, named
    ``<feature>=<category>`` (``<feature>=missing`` for ``?``).

    Args:
        columns: Original features to encode, in output order.
        means: Training mean of each numeric feature.
        stds: Training std of each numeric feature (1 where it is 0).
        categories: Sorted training categories of each categorical feature, ``?``
            last when present.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> raw = {"age": np.array([20.0, 40.0]), "sex": np.array(["F", "M"], object)}
        >>> prep = AdultPreprocessor.fit(raw, columns=("age", "sex"))
        >>> prep.feature_names
        ('age', 'sex=F', 'sex=M')
        >>> prep.transform(raw).tolist()
        [[-1.0, 1.0, 0.0], [1.0, 0.0, 1.0]]
    """

    columns: tuple[str, ...]
    means: Mapping[str, float]
    stds: Mapping[str, float]
    categories: Mapping[str, tuple[str, ...]]

    @classmethod
    def fit(
        cls, raw: Mapping[str, NDArray[Any]], columns: Sequence[str] = ADULT_COLUMNS
    ) -> AdultPreprocessor:
        """Fits the encoding on raw training columns.

        Args:
            raw: Raw columns (see :func:`read_adult_csv`), each of shape (n,).
            columns: Original features to encode, in output order. Numeric ones are
                those in :data:`ADULT_NUMERIC_COLUMNS`.

        Returns:
            The fitted preprocessor.

        Raises:
            KeyError: If a column is missing from ``raw``.
        """
        means: dict[str, float] = {}
        stds: dict[str, float] = {}
        categories: dict[str, tuple[str, ...]] = {}
        for name in columns:
            column = raw[name]
            if name in ADULT_NUMERIC_COLUMNS:
                values = np.asarray(column, dtype=np.float64)
                finite = values[~np.isnan(values)]
                mean = float(finite.mean()) if finite.size else 0.0
                std = float(finite.std()) if finite.size else 0.0
                means[name] = mean
                stds[name] = std if std > 0 else 1.0
            else:
                seen = {str(v) for v in column}
                ordered = sorted(seen - {MISSING})
                if MISSING in seen:
                    ordered.append(MISSING)
                categories[name] = tuple(ordered)
        return cls(tuple(columns), means, stds, categories)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Name of every output column, shape (num_features,)."""
        names: list[str] = []
        for name in self.columns:
            if name in self.categories:
                names.extend(
                    f"{name}={_MISSING_NAME if c == MISSING else c}"
                    for c in self.categories[name]
                )
            else:
                names.append(name)
        return tuple(names)

    @property
    def feature_slices(self) -> dict[str, slice]:
        """Block of output columns of every original feature, in output order."""
        slices: dict[str, slice] = {}
        start = 0
        for name in self.columns:
            width = len(self.categories[name]) if name in self.categories else 1
            slices[name] = slice(start, start + width)
            start += width
        return slices

    @property
    def num_features(self) -> int:
        """Number of output columns."""
        return len(self.feature_names)

    def transform(self, raw: Mapping[str, NDArray[Any]]) -> NDArray[np.float32]:
        """Encodes raw columns.

        Args:
            raw: Raw columns, each of shape (n,).

        Returns:
            float32 array of shape (n, num_features).

        Raises:
            KeyError: If a column is missing from ``raw``.
        """
        n = len(raw[self.columns[0]]) if self.columns else 0
        out = np.zeros((n, self.num_features), dtype=np.float32)
        for name, block in self.feature_slices.items():
            column = raw[name]
            if name in self.categories:
                index = {c: i for i, c in enumerate(self.categories[name])}
                codes = np.array([index.get(str(v), -1) for v in column], np.int64)
                known = np.flatnonzero(codes >= 0)
                out[known, block.start + codes[known]] = 1.0
            else:
                values = np.asarray(column, dtype=np.float64)
                scaled = (values - self.means[name]) / self.stds[name]
                out[:, block.start] = np.nan_to_num(scaled, nan=0.0)
        return out


@dataclass(frozen=True)
class AdultData:
    """One preprocessed Adult split with its raw columns, for numeric use and audits.

    Args:
        features: float32 tensor of shape (n, num_features).
        labels: int64 tensor of shape (n,), 1 for ``>50K``.
        raw: Raw values of all 14 :data:`ADULT_COLUMNS`, each of shape (n,).
        preprocessor: The encoding, fitted on the training split.
        split: ``"train"`` or ``"test"``.
        source_indices: int64 array of shape (n,): row of the original file each
            sample comes from.
        resampled: Whether rows were drawn with replacement (see :meth:`resample`).
        num_duplicates: For resampled data, the number of rows that exactly
            repeat an earlier row (same encoded features and label), i.e. n minus
            the number of distinct rows; None otherwise.
        construction: For resampled data, how it was built (seed, jitter), for
            reports; empty otherwise.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [2] Becker, Kohavi, 1996, UCI Adult, doi:10.24432/C5XW20

    Examples:
        >>> data = load_adult("train")  # doctest: +SKIP
        >>> data.features.shape, data.labels.float().mean()  # doctest: +SKIP
        (torch.Size([32561, 108]), tensor(0.2408))
        >>> data.feature_view("sex").shape  # doctest: +SKIP
        torch.Size([32561, 2])
    """

    features: Tensor
    labels: Tensor
    raw: RawColumns
    preprocessor: AdultPreprocessor
    split: str
    source_indices: NDArray[np.int64]
    resampled: bool = field(default=False)
    num_duplicates: int | None = field(default=None)
    construction: str = field(default="")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Name of every column of ``features``."""
        return self.preprocessor.feature_names

    @property
    def feature_slices(self) -> dict[str, slice]:
        """Columns of ``features`` belonging to each original feature."""
        return self.preprocessor.feature_slices

    @property
    def sensitive(self) -> RawColumns:
        """Raw sensitive attributes (:data:`ADULT_SENSITIVE_COLUMNS`), shape (n,)."""
        return {name: self.raw[name] for name in ADULT_SENSITIVE_COLUMNS}

    def feature_view(self, name: str) -> Tensor:
        """Columns of ``features`` that encode one original feature.

        Args:
            name: An original feature, e.g. ``"sex"``.

        Returns:
            Tensor of shape (n, width): 1 column for a numeric feature, one per
            category for a categorical one.

        Raises:
            KeyError: If ``name`` is not an encoded feature.
        """
        slices = self.feature_slices
        if name not in slices:
            raise KeyError(
                f"{name!r} is not an encoded feature; choose one of {list(slices)}."
            )
        return self.features[:, slices[name]]

    def subset(self, indices: Sequence[int] | NDArray[np.int64]) -> AdultData:
        """Selects rows, keeping the encoding.

        Args:
            indices: Row indices of shape (k,); repeats are allowed.

        Returns:
            A new :class:`AdultData` with k rows.
        """
        index = np.asarray(indices, dtype=np.int64)
        rows = torch.from_numpy(index)
        return AdultData(
            features=self.features[rows],
            labels=self.labels[rows],
            raw={name: column[index] for name, column in self.raw.items()},
            preprocessor=self.preprocessor,
            split=self.split,
            source_indices=self.source_indices[index],
            resampled=self.resampled,
        )

    def resample(
        self,
        n: int,
        seed: int = 0,
        *,
        numeric_noise: float = 0.0,
        swap_rate: float = 0.0,
    ) -> AdultData:
        """Draws ``n`` rows uniformly with replacement, reproducibly, with jitter.

        Without jitter (the default) this repeats rows: it adds no new
        information, and results on it must be reported as obtained on resampled
        data. With jitter, every drawn row is perturbed, all randomness from one
        ``numpy.random.default_rng(seed)``:

        - numeric columns get Gaussian noise of ``numeric_noise`` times the
          column's standard deviation in this data, are rounded to integers (all
          Adult numeric columns are counts) and clipped to the column's range
          here; ``capital_gain`` and ``capital_loss`` are jittered only where
          nonzero (with the std and range of their nonzero values), so their
          zeros stay zeros;
          ``education_num`` is not jittered but follows ``education``;
        - each categorical value is re-drawn, with probability ``swap_rate``,
          from the column's empirical distribution here (it may draw the same
          value); missing values ``?`` are drawn like any other category;
        - labels are those of the source rows.

        The features are re-encoded with the unchanged :attr:`preprocessor`, so
        they are comparable with the test split's. ``num_duplicates`` counts the
        rows that exactly repeat an earlier one.

        Args:
            n: Number of rows to draw.
            seed: Seed of ``numpy.random.default_rng``.
            numeric_noise: Numeric jitter in standard deviations, >= 0.
            swap_rate: Probability of re-drawing each categorical value, in
                ``[0, 1]``.

        Returns:
            A new :class:`AdultData` with n rows, ``resampled=True``,
            ``num_duplicates`` and ``construction`` set.

        Raises:
            ValueError: If ``n`` is negative, the data are empty, or the jitter
                is out of range.

        References:
            - [0] KREPES, 2025, arXiv 2509.24467

        Examples:
            >>> raw = {"age": np.array([20.0, 60.0]),
            ...        "sex": np.array(["F", "M"], dtype=object)}
            >>> prep = AdultPreprocessor.fit(raw, columns=("age", "sex"))
            >>> data = AdultData(torch.from_numpy(prep.transform(raw)),
            ...                  torch.tensor([0, 1]), raw, prep, "train",
            ...                  np.arange(2))
            >>> copies = data.resample(100, seed=0)
            >>> copies.num_duplicates
            98
            >>> jittered = data.resample(100, seed=0, numeric_noise=0.1)
            >>> jittered.num_duplicates < copies.num_duplicates
            True
        """
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}.")
        if len(self) == 0:
            raise ValueError("Cannot resample an empty data set.")
        if not 0.0 <= numeric_noise < float("inf"):
            raise ValueError(
                f"numeric_noise must be a finite number >= 0 (in standard "
                f"deviations), got {numeric_noise}."
            )
        if not 0.0 <= swap_rate <= 1.0:
            raise ValueError(f"swap_rate must be in [0, 1], got {swap_rate}.")
        rng = np.random.default_rng(seed)
        index = rng.integers(0, len(self), size=n)
        out = self.subset(index)
        jittered = numeric_noise > 0 or swap_rate > 0
        if jittered:
            raw = _jitter(self.raw, out.raw, rng, numeric_noise, swap_rate)
            features = torch.from_numpy(self.preprocessor.transform(raw))
        else:
            raw, features = out.raw, out.features
        construction = (
            f"{n} rows drawn uniformly with replacement from the {len(self)} rows "
            f"of the {self.split} split (numpy default_rng seed {seed})"
        )
        if jittered:
            construction += (
                f"; numeric jitter {numeric_noise:g} std (rounded, clipped, "
                f"nonzero capital only, education_num follows education); "
                f"categorical values re-drawn from the empirical distribution at "
                f"rate {swap_rate:g}"
            )
        return AdultData(
            features=features,
            labels=out.labels,
            raw=raw,
            preprocessor=out.preprocessor,
            split=out.split,
            source_indices=out.source_indices,
            resampled=True,
            num_duplicates=count_duplicates(features, out.labels),
            construction=construction,
        )


def _jitter(
    source: RawColumns,
    drawn: RawColumns,
    rng: np.random.Generator,
    numeric_noise: float,
    swap_rate: float,
) -> RawColumns:
    """Jittered copies of the drawn raw columns, see :meth:`AdultData.resample`."""
    out: RawColumns = {}
    n = len(next(iter(drawn.values())))
    # One fixed order of random draws per column, so a seed fixes the result.
    for name, column in drawn.items():
        if name in _DERIVED and _DERIVED[name] in drawn:
            continue
        if name not in ADULT_NUMERIC_COLUMNS:
            if swap_rate > 0:
                column = column.copy()
                swap = np.flatnonzero(rng.random(n) < swap_rate)
                pick = rng.integers(0, len(source[name]), swap.size)
                column[swap] = source[name][pick]
            out[name] = column
            continue
        values = np.asarray(column, dtype=np.float64).copy()
        reference = np.asarray(source[name], dtype=np.float64)
        reference = reference[np.isfinite(reference)]
        noisy = np.isfinite(values)
        if name in _ZERO_INFLATED:
            noisy &= values != 0
            reference = reference[reference != 0]
        noise = rng.standard_normal(n)
        if numeric_noise > 0 and reference.size:
            scale = numeric_noise * float(reference.std())
            jittered = np.rint(values + scale * noise)
            jittered = np.clip(jittered, reference.min(), reference.max())
            values[noisy] = jittered[noisy]
        out[name] = values
    for name, parent in _DERIVED.items():
        if name in drawn and parent in drawn:
            out[name] = _follow(source[name], source[parent], out[parent], drawn[name])
    return {name: out[name] for name in drawn}


def _follow(
    values: NDArray[Any],
    parent: NDArray[Any],
    new_parent: NDArray[Any],
    fallback: NDArray[Any],
) -> NDArray[np.float64]:
    """The value that goes with each new parent category (its most common one)."""
    table: dict[str, dict[float, int]] = {}
    for category, value in zip(parent, np.asarray(values, np.float64), strict=True):
        counts = table.setdefault(str(category), {})
        counts[float(value)] = counts.get(float(value), 0) + 1
    modal = {c: max(counts, key=lambda v: counts[v]) for c, counts in table.items()}
    old = np.asarray(fallback, dtype=np.float64)
    return np.array(
        [modal.get(str(c), o) for c, o in zip(new_parent, old, strict=True)],
        dtype=np.float64,
    )


def count_duplicates(features: Tensor, labels: Tensor) -> int:
    """Number of rows that exactly repeat an earlier row (features and label).

    Args:
        features: Tensor of shape (n, D).
        labels: Tensor of shape (n,).

    Returns:
        n minus the number of distinct ``(features, label)`` rows.

    Examples:
        >>> count_duplicates(torch.tensor([[0.0], [0.0], [1.0]]), torch.zeros(3))
        1
    """
    n = int(features.shape[0])
    if n == 0:
        return 0
    rows = np.ascontiguousarray(features.detach().cpu().numpy().reshape(n, -1))
    # Bytes of each row as one key: a lexicographic sort without an (n, D) copy
    # per column; -0.0 and 0.0 differ here, which the encoding never produces.
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))
    _, inverse = np.unique(keys.ravel(), return_inverse=True)
    _, label_codes = np.unique(labels.cpu().numpy(), return_inverse=True)
    combined = inverse.astype(np.int64) * (int(label_codes.max()) + 1) + label_codes
    return n - int(np.unique(combined).size)


def _find_files(root: Path, split: str) -> list[Path]:
    needed = ["train"] if split == "train" else ["train", "test"]
    folders = [root, root / "adult"]
    for folder in folders:
        paths = [folder / _FILES[s] for s in needed]
        if all(p.is_file() for p in paths):
            return paths
    missing = [
        folder / _FILES[s]
        for folder in folders
        for s in needed
        if not (folder / _FILES[s]).is_file()
    ]
    raise missing_data_error(
        f"Adult ({split} split; the test split also needs adult.data to fit the "
        "preprocessing)",
        missing,
        _LAYOUTS,
        _HOW_TO_GET,
    )


def load_adult(
    split: str = "train",
    root: PathLike | None = None,
    *,
    drop: Sequence[str] = (),
    max_samples: int | None = None,
    seed: int = 0,
    stratify: bool = True,
) -> AdultData:
    """Loads and preprocesses one Adult split.

    The preprocessing is always fitted on ``adult.data`` (see the module docstring).

    Args:
        split: ``"train"`` (32,561 rows) or ``"test"`` (16,281 rows).
        root: Data root or the folder holding the files. Defaults to
            ``$LIGHTLY_KREPES_DATA``, else ``../shared/data`` relative to the working
            directory.
        drop: Original features to leave out of ``features`` (e.g. ``("fnlwgt",)``);
            they stay in ``raw``.
        max_samples: Keep at most this many rows, chosen with ``seed`` after
            preprocessing.
        seed: Seed of the subset selection.
        stratify: Whether the subset keeps the label proportions.

    Returns:
        The split as :class:`AdultData`; with all 14 features it has 108 columns.

    Raises:
        FileNotFoundError: If a file is missing; the message lists the expected
            paths and how to get the data.
        ValueError: If ``split`` or a dropped feature is unknown, or a file is
            malformed.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Kohavi, 1996, KDD
        - [2] Becker, Kohavi, 1996, UCI Adult, doi:10.24432/C5XW20

    Examples:
        >>> train = load_adult("train")  # doctest: +SKIP
        >>> test = load_adult("test")  # doctest: +SKIP
        >>> train.feature_names == test.feature_names  # doctest: +SKIP
        True
    """
    check_split(split)
    unknown = sorted(set(drop) - set(ADULT_COLUMNS))
    if unknown:
        raise ValueError(f"Unknown Adult features in drop: {unknown}.")
    paths = _find_files(resolve_data_root(root), split)
    train_raw, train_labels = read_adult_csv(paths[0])
    columns = tuple(name for name in ADULT_COLUMNS if name not in set(drop))
    preprocessor = AdultPreprocessor.fit(train_raw, columns)
    raw, labels = (
        (train_raw, train_labels) if split == "train" else read_adult_csv(paths[1])
    )
    data = AdultData(
        features=torch.from_numpy(preprocessor.transform(raw)),
        labels=torch.from_numpy(labels),
        raw=raw,
        preprocessor=preprocessor,
        split=split,
        source_indices=np.arange(labels.shape[0], dtype=np.int64),
    )
    if max_samples is not None:
        data = data.subset(
            select_indices(labels, max_samples, seed=seed, stratify=stratify)
        )
    return data


def load_adult_1m(
    root: PathLike | None = None,
    n: int = 1_000_000,
    seed: int = 0,
    *,
    split: str = "train",
    drop: Sequence[str] = (),
    numeric_noise: float = ADULT_1M_NUMERIC_NOISE,
    swap_rate: float = ADULT_1M_SWAP_RATE,
) -> AdultData:
    """Builds "Adult-1M": ``n`` jittered rows resampled from ``adult.data``.

    The KREPES paper evaluates on a one-million-row enlargement of Adult. This
    builds one from the 32,561 training rows only, seeded, so that ``adult.test``
    stays untouched for evaluation (``load_adult("test")``). Construction (see
    :meth:`AdultData.resample`):

    1. draw n rows of ``adult.data`` uniformly with replacement
       (``numpy.random.default_rng(seed)``; ``source_indices`` gives each one's
       row);
    2. numeric columns: Gaussian noise of ``numeric_noise`` training standard
       deviations, rounded to integers and clipped to the training range;
       ``capital_gain`` / ``capital_loss`` only where nonzero; ``education_num``
       follows ``education``;
    3. categorical columns: each value re-drawn from the training distribution
       with probability ``swap_rate``;
    4. labels kept from the source rows; features encoded with the preprocessing
       fitted on the original ``adult.data``, as for the test split.

    The result still holds exact duplicates (most rows share their categorical
    pattern, and the numeric noise is rounded): ``num_duplicates`` counts them
    and ``construction`` states the recipe; report both with results on it.
    ``numeric_noise=0, swap_rate=0`` gives plain resampling (copies of rows). The
    features take ``n * 108 * 4`` bytes (about 430 MB for one million rows).

    Args:
        root: Data root (see :func:`load_adult`).
        n: Number of rows.
        seed: Seed of ``numpy.random.default_rng``.
        split: Must be ``"train"``: the test split is for evaluation only.
        drop: Original features to leave out of ``features`` (they are jittered
            in ``raw`` all the same).
        numeric_noise: Numeric jitter in training standard deviations, >= 0.
        swap_rate: Probability of re-drawing each categorical value, in [0, 1].

    Returns:
        :class:`AdultData` with n rows, ``resampled=True``, ``num_duplicates``
        and ``construction``.

    Raises:
        FileNotFoundError: If a file is missing.
        ValueError: If ``split`` is not ``"train"``, ``n`` is negative, the
            jitter is out of range, or a dropped feature is unknown.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [2] Becker, Kohavi, 1996, UCI Adult, doi:10.24432/C5XW20

    Examples:
        >>> big = load_adult_1m(n=1_000_000, seed=0)  # doctest: +SKIP
        >>> len(big), big.resampled, big.num_duplicates  # doctest: +SKIP
        (1000000, True, ...)
        >>> test = load_adult("test")  # doctest: +SKIP
    """
    if check_split(split) != "train":
        raise ValueError(
            f"Adult-1M is built from adult.data only, got split={split!r}: "
            f"adult.test stays untouched for evaluation. Evaluate on "
            f"load_adult('test')."
        )
    return load_adult("train", root, drop=drop).resample(
        n, seed=seed, numeric_noise=numeric_noise, swap_rate=swap_rate
    )


class AdultDataset(Dataset[tuple[Any, Any]]):
    """Adult as a ``torch.utils.data.Dataset`` of preprocessed feature vectors.

    Items are ``(features, target)``: a float32 tensor of shape (num_features,)
    passed through ``transform`` when given, and an int label (1 for ``>50K``)
    passed through ``target_transform`` when given. Raw attributes for audits are
    kept aligned with the items in :attr:`sensitive` and :attr:`raw`.

    Args:
        root: Data root (see :func:`load_adult`).
        split: ``"train"`` or ``"test"``.
        transform: Callable applied to the feature tensor.
        target_transform: Callable applied to the int label.
        drop: Original features to leave out of the features.
        max_samples: Keep at most this many rows, chosen with ``seed``.
        seed: Seed of the subset selection.
        stratify: Whether the subset keeps the label proportions.

    Attributes:
        data: The underlying :class:`AdultData`.
        features: float32 tensor of shape (n, num_features).
        targets: int64 tensor of shape (n,).
        feature_names: Name of every feature column.
        feature_slices: Columns of each original feature.
        sensitive: Raw sensitive attributes, each of shape (n,).
        raw: Raw values of all 14 original features, each of shape (n,).

    Raises:
        FileNotFoundError: If a file is missing.
        ValueError: If an argument is unknown or a file is malformed.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Kohavi, 1996, KDD
        - [2] Becker, Kohavi, 1996, UCI Adult, doi:10.24432/C5XW20

    Examples:
        >>> dataset = AdultDataset(split="train")  # doctest: +SKIP
        >>> x, y = dataset[0]  # doctest: +SKIP
        >>> x.shape, y, dataset.sensitive["sex"][0]  # doctest: +SKIP
        (torch.Size([108]), 0, 'Male')
        >>> big = AdultDataset.from_data(load_adult_1m(seed=0))  # doctest: +SKIP
    """

    def __init__(
        self,
        root: PathLike | None = None,
        split: str = "train",
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        *,
        drop: Sequence[str] = (),
        max_samples: int | None = None,
        seed: int = 0,
        stratify: bool = True,
    ) -> None:
        data = load_adult(
            split,
            root,
            drop=drop,
            max_samples=max_samples,
            seed=seed,
            stratify=stratify,
        )
        self._set_data(data, transform, target_transform)

    @classmethod
    def from_data(
        cls,
        data: AdultData,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> AdultDataset:
        """Wraps already loaded data, e.g. from :func:`load_adult_1m`.

        Args:
            data: The rows to serve.
            transform: Callable applied to the feature tensor.
            target_transform: Callable applied to the int label.

        Returns:
            The dataset.
        """
        dataset = cls.__new__(cls)
        dataset._set_data(data, transform, target_transform)
        return dataset

    def _set_data(
        self,
        data: AdultData,
        transform: Callable[[Any], Any] | None,
        target_transform: Callable[[Any], Any] | None,
    ) -> None:
        self.data = data
        self.transform = transform
        self.target_transform = target_transform

    @property
    def features(self) -> Tensor:
        """float32 tensor of shape (n, num_features)."""
        return self.data.features

    @property
    def targets(self) -> Tensor:
        """int64 tensor of shape (n,)."""
        return self.data.labels

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Name of every feature column."""
        return self.data.feature_names

    @property
    def feature_slices(self) -> dict[str, slice]:
        """Columns of each original feature."""
        return self.data.feature_slices

    @property
    def sensitive(self) -> RawColumns:
        """Raw sensitive attributes, each of shape (n,)."""
        return self.data.sensitive

    @property
    def raw(self) -> RawColumns:
        """Raw values of all 14 original features, each of shape (n,)."""
        return self.data.raw

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        features: Any = self.data.features[index]
        if self.transform is not None:
            features = self.transform(features)
        target: Any = int(self.data.labels[index])
        if self.target_transform is not None:
            target = self.target_transform(target)
        return features, target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={len(self)}, "
            f"split={self.data.split!r}, "
            f"num_features={self.data.preprocessor.num_features}, "
            f"resampled={self.data.resampled})"
        )
