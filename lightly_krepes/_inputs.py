"""One input layer for the whole package: tensors, data sets, items and loaders.

Every public entry point that takes data (``KernelBackbone.from_data``,
``select_landmarks``, ``Nystrom.transform``, ``extract_features``, the audit and the
attributions) reads it through these functions, so that all of them accept the same
inputs and draw the same pool for one seed:

- a tensor of shape (n, ...), one sample per row;
- a map-style data set, i.e. any object with ``__len__`` and ``__getitem__``
  (``torch.utils.data.Dataset``, ``lightly.data.LightlyDataset``, which is not a
  ``Dataset`` subclass, a custom class, or a list of items), read item by item;
- a ``torch.utils.data.IterableDataset`` of items;
- a ``DataLoader``, a generator or any other iterable without ``__getitem__``,
  read as batches.

Items and batches may be tensors, ``(input, label, ...)`` tuples as torchvision
and ``LightlyDataset`` return, or Lightly's multi-view items
``([view0, view1, ...], label, filename)`` and their collated batches, of which the
first view is taken. PIL images are rejected with advice to add a ``ToTensor``
transform. A builtin ``list`` or ``tuple`` is a data set of *items*, as for
``DataLoader(list_of_items)``; pass a list of batches as ``iter(batches)``.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset
from tqdm.auto import tqdm

from lightly_krepes._validation import check_finite, check_floating, check_samples

_TO_TENSOR_ADVICE = (
    "Pass a transform that returns tensors, e.g. "
    "LightlyDataset(input_dir, transform=torchvision.transforms.ToTensor()) or a "
    "Lightly view transform."
)


def _describe(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}" if _is_pil(value) else kind.__name__


def _is_pil(value: Any) -> bool:
    return any(cls.__module__.startswith("PIL.") for cls in type(value).__mro__)


def _item_error(item: Any, where: str) -> TypeError:
    if _is_pil(item) or (
        isinstance(item, list | tuple) and item and _is_pil(_head(item[0]))
    ):
        return TypeError(
            f"{where} holds a PIL image, but kernels and networks need tensors. "
            + _TO_TENSOR_ADVICE
        )
    if isinstance(item, list | tuple) and item:
        inner = f" whose first element is a {_describe(item[0])}"
        if isinstance(item[0], list | tuple) and item[0]:
            inner += f" of {_describe(item[0][0])}"
    else:
        inner = ""
    advice = (
        "Convert it with torch.as_tensor(...)."
        if type(item).__module__.startswith("numpy")
        else _TO_TENSOR_ADVICE
    )
    kind = "batches" if where.lower().startswith(("the batch", "batch")) else "items"
    return TypeError(
        f"{where} is a {_describe(item)}{inner}. Expected {kind} that are "
        f"tensors, tuples or lists whose first element is a tensor (e.g. (input, "
        f"label, ...)), or Lightly multi-view {kind} ([view0, view1, ...], label, "
        f"...) of tensors. "
        f"{advice}"
    )


def _head(value: Any) -> Any:
    while isinstance(value, list | tuple) and value:
        value = value[0]
    return value


def first_tensor(item: Any, where: str = "The item") -> Tensor:
    """The input tensor of one data set item or one batch.

    Args:
        item: A tensor; a tuple or list ``(input, label, ...)`` whose input is a
            tensor; or a Lightly multi-view item or batch whose input is a list of
            views ``([view0, view1, ...], label, ...)`` (the first view is taken).
        where: How the error message names ``item`` (e.g. ``"Item 3 of data"``).

    Returns:
        The input tensor, unchanged (same device, dtype and shape).

    Raises:
        TypeError: If ``item`` holds no tensor input, e.g. a PIL image (add a
            ``ToTensor`` transform) or a NumPy array.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> x = torch.zeros(3, 4, 4)
        >>> first_tensor(x) is x, first_tensor((x, 1)) is x
        (True, True)
        >>> first_tensor(([x, x + 1], 0, "a.png")) is x
        True
    """
    if isinstance(item, Tensor):
        return item
    if isinstance(item, list | tuple) and item:
        head = item[0]
        if isinstance(head, Tensor):
            return head
        if isinstance(head, list | tuple) and head and isinstance(head[0], Tensor):
            return head[0]
    raise _item_error(item, where)


def split_batch(batch: Any) -> tuple[Tensor, Tensor | None]:
    """The inputs and, if the batch carries them, the labels of one batch.

    Args:
        batch: A tensor of inputs (B, ...), or a tuple or list
            ``(inputs, labels, ...)`` whose inputs are a tensor or a list of views
            (Lightly's multi-view batches; the first view is taken).

    Returns:
        ``(x, labels)``: x of shape (B, ...) and labels of shape (B,), or None if
        the second element is missing or not a tensor (e.g. filenames).

    Raises:
        TypeError: If the batch holds no tensor input.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> x, labels = split_batch((torch.zeros(4, 3), torch.arange(4)))
        >>> x.shape, labels.tolist()
        (torch.Size([4, 3]), [0, 1, 2, 3])
        >>> split_batch(torch.zeros(2, 3))[1] is None
        True
    """
    x = first_tensor(batch, "The batch")
    labels = None
    if isinstance(batch, list | tuple) and len(batch) > 1:
        second = batch[1]
        if isinstance(second, Tensor) and second.dim() == 1 and len(second) == len(x):
            labels = second
    return x, labels


def is_map_style(data: Any) -> bool:
    """Whether ``data`` is read item by item (``__len__`` and ``__getitem__``).

    Lists and tuples of items are; tensors, DataLoaders, iterable data sets and
    mappings are not.

    Args:
        data: Anything.

    Returns:
        True for ``torch.utils.data.Dataset`` subclasses with a length,
        ``lightly.data.LightlyDataset``, lists and tuples, and any other object
        with ``__len__`` and ``__getitem__``.

    Examples:
        >>> from torch.utils.data import TensorDataset
        >>> is_map_style(TensorDataset(torch.zeros(3, 2))), is_map_style(iter([1]))
        (True, False)
    """
    if isinstance(data, Tensor | str | bytes | dict | DataLoader):
        return False
    if isinstance(data, IterableDataset):
        return False
    if type(data).__module__.startswith("numpy"):
        return False
    return hasattr(data, "__len__") and hasattr(data, "__getitem__")


def _check_source(data: Any) -> None:
    if type(data).__module__.startswith("numpy"):
        raise TypeError(
            f"data is a NumPy {type(data).__name__}; convert it with "
            f"torch.as_tensor(data, dtype=torch.float32)."
        )
    if (
        isinstance(data, str | bytes | dict)
        or data is None
        or not (isinstance(data, Tensor | Iterable) or is_map_style(data))
    ):
        raise TypeError(
            f"data must be a tensor (n, ...), a map-style data set (with __len__ and "
            f"__getitem__, e.g. lightly.data.LightlyDataset), or an iterable of "
            f"batches (e.g. a DataLoader), got {type(data).__name__}."
        )


def _check_tensor_data(data: Tensor, name: str = "data") -> None:
    if data.dim() == 0:
        raise ValueError(
            f"{name} is a 0-dimensional tensor; pass samples of shape (n, ...), one "
            f"per row, e.g. {name}.reshape(1, -1)."
        )
    if len(data) == 0:
        raise ValueError(f"{name} is empty (0 rows). Pass at least one sample.")


def _check_length(data: Any, name: str) -> int:
    n = len(data)
    if n == 0:
        raise ValueError(
            f"{name} is empty: the {type(data).__name__} has length 0. Check the "
            f"data set's path or filter."
        )
    return n


def num_samples(data: Any) -> int | None:
    """Number of samples, or None where it is unknown without reading the data.

    Args:
        data: A tensor (n, ...), a map-style data set, or an iterable of batches.

    Returns:
        n for tensors and map-style data sets; None for DataLoaders, iterable data
        sets and other iterables (a loader may drop or repeat samples).

    Raises:
        TypeError: If ``data`` is none of the accepted kinds.

    Examples:
        >>> num_samples(torch.zeros(5, 2)), num_samples(iter([torch.zeros(5, 2)]))
        (5, None)
    """
    _check_source(data)
    if isinstance(data, Tensor):
        _check_tensor_data(data)
        return len(data)
    if is_map_style(data):
        return len(data)
    return None


def _collate(
    data: Any, indices: Iterable[int], name: str = "data"
) -> tuple[Tensor, Tensor | None]:
    """Stacks the inputs (and labels where every item has one) of items of data."""
    xs: list[Tensor] = []
    labels: list[Tensor] | None = []
    for index in indices:
        item = data[index]
        x = first_tensor(item, f"Item {index} of {name}")
        if xs and x.shape != xs[0].shape:
            raise ValueError(
                f"The items of {name} have different shapes: item {index} has shape "
                f"{tuple(x.shape)}, earlier items {tuple(xs[0].shape)}, so they "
                f"cannot be stacked into one batch. Resize them to one shape with a "
                f"transform (e.g. torchvision.transforms.Resize and CenterCrop)."
            )
        xs.append(x)
        if labels is not None:
            label = _item_label(item)
            labels = None if label is None else [*labels, label]
    if not xs:
        raise ValueError(f"{name} is empty: no items were read.")
    stacked_labels = None
    if labels is not None:
        try:
            stacked_labels = torch.stack(labels)
        except RuntimeError:
            stacked_labels = None
    return torch.stack(xs), stacked_labels


def _item_label(item: Any) -> Tensor | None:
    if not isinstance(item, list | tuple) or len(item) < 2:
        return None
    label = item[1]
    if isinstance(label, bool):
        return None
    if isinstance(label, int):
        return torch.tensor(label)
    if isinstance(label, Tensor) and label.dim() == 0:
        return label
    return None


def _check_batch_size(batch_size: int) -> int:
    if (
        isinstance(batch_size, bool)
        or int(batch_size) != batch_size
        or int(batch_size) < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    return int(batch_size)


def iter_split_batches(
    data: Any,
    batch_size: int,
    *,
    progress: bool = False,
    desc: str | None = None,
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Yields ``(x, labels)`` batches of any accepted input; see :func:`iter_batches`.

    Labels are the second element of tuple batches (a tensor of shape (B,)) or of
    the items of a data set (ints or scalar tensors); None where there are none.

    Args:
        data: A tensor (n, ...), a map-style data set, an iterable data set of
            items, or an iterable of batches (e.g. a DataLoader).
        batch_size: Samples per batch for tensors and data sets; loaders keep
            their own batches.
        progress: Show a tqdm progress bar over batches.
        desc: Label of the progress bar.

    Yields:
        ``(x, labels)`` with x of shape (B, ...) and labels of shape (B,) or None.

    Raises:
        TypeError: If ``data`` or an item or batch holds no tensor input.
        ValueError: If ``data`` is empty, ``batch_size`` is not positive, samples
            differ in shape, or a floating batch holds NaN or infinite values.

    Examples:
        >>> from torch.utils.data import TensorDataset
        >>> ds = TensorDataset(torch.zeros(5, 2), torch.arange(5))
        >>> [labels.tolist() for _, labels in iter_split_batches(ds, 2)]
        [[0, 1], [2, 3], [4]]
    """
    _check_source(data)
    batch_size = _check_batch_size(batch_size)
    batches: Iterable[tuple[Tensor, Tensor | None]]
    total: int | None
    if isinstance(data, Tensor):
        _check_tensor_data(data)
        batches = ((x, None) for x in torch.split(data, batch_size))
        total = math.ceil(len(data) / batch_size)
    elif is_map_style(data):
        n = _check_length(data, "data")
        batches = (
            _collate(data, range(start, min(start + batch_size, n)))
            for start in range(0, n, batch_size)
        )
        total = math.ceil(n / batch_size)
    elif isinstance(data, IterableDataset):
        batches = _batch_items(data, batch_size)
        total = None
    else:
        batches = (split_batch(batch) for batch in data)
        total = len(data) if isinstance(data, Sized) else None
    # Not a generator itself, so that bad arguments fail at the call, not at the
    # first batch.
    return _checked(tqdm(batches, total=total, disable=not progress, desc=desc))


def _checked(
    batches: Iterable[tuple[Tensor, Tensor | None]],
) -> Iterator[tuple[Tensor, Tensor | None]]:
    sample_shape: tuple[int, ...] | None = None
    count = 0
    for number, (x, labels) in enumerate(batches):
        if x.dim() == 0:
            raise ValueError(
                f"Batch {number} of data is a 0-dimensional tensor; batches must "
                f"have shape (B, ...), one sample per row."
            )
        if sample_shape is None:
            sample_shape = tuple(x.shape[1:])
        elif tuple(x.shape[1:]) != sample_shape:
            raise ValueError(
                f"Batch {number} of data holds samples of shape "
                f"{tuple(x.shape[1:])} but earlier batches hold samples of shape "
                f"{sample_shape}: all samples must share one shape. Resize them "
                f"with a transform."
            )
        if x.is_floating_point():
            check_finite(x, f"Batch {number} of data")
        count += len(x)
        yield x, labels
    if count == 0:
        raise ValueError(
            "data is empty: it produced no samples. Pass at least one sample "
            "(check the loader's data set and drop_last)."
        )


def _batch_items(
    data: Iterable[Any], batch_size: int
) -> Iterator[tuple[Tensor, Tensor | None]]:
    chunk: list[Any] = []
    for item in data:
        chunk.append(item)
        if len(chunk) == batch_size:
            yield _collate(chunk, range(len(chunk)))
            chunk = []
    if chunk:
        yield _collate(chunk, range(len(chunk)))


def iter_batches(
    data: Any,
    batch_size: int,
    *,
    progress: bool = False,
    desc: str | None = None,
) -> Iterator[Tensor]:
    """Yields the input tensors of any accepted input, batch by batch.

    Tensors are split into ``batch_size`` rows, map-style data sets (including
    ``lightly.data.LightlyDataset``) are read item by item in order and stacked,
    iterable data sets are grouped into ``batch_size`` items, and loaders are read
    batch by batch as they come. The first view of multi-view items is taken.

    Args:
        data: A tensor (n, ...), a map-style data set, an iterable data set of
            items, or an iterable of batches (e.g. a DataLoader).
        batch_size: Samples per batch for tensors and data sets.
        progress: Show a tqdm progress bar over batches.
        desc: Label of the progress bar.

    Yields:
        Tensors of shape (B, ...), on the device the data is on.

    Raises:
        TypeError: If ``data`` or an item or batch holds no tensor input (e.g. a
            PIL image: add a ``ToTensor`` transform).
        ValueError: If ``data`` is empty, ``batch_size`` is not positive, samples
            differ in shape, or a floating batch holds NaN or infinite values.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> [x.shape[0] for x in iter_batches(torch.zeros(5, 2), batch_size=2)]
        [2, 2, 1]
    """
    return (
        x for x, _ in iter_split_batches(data, batch_size, progress=progress, desc=desc)
    )


def pool_indices(
    n: int, pool_size: int | None, seed: int | torch.Generator
) -> Tensor | None:
    """The package's one pool sampler: sorted uniform indices, or None for all n.

    Args:
        n: Number of samples.
        pool_size: Pool size; None, or at least n, takes all samples.
        seed: Integer seed of a fresh CPU generator, or a CPU generator to draw
            from (it advances).

    Returns:
        CPU long tensor of shape (pool_size,), sorted increasing, or None when
        the pool is everything.

    Raises:
        TypeError: If ``pool_size`` is not an integer or None.
        ValueError: If ``pool_size`` is not positive.

    Examples:
        >>> pool_indices(10, 4, seed=0).tolist() == pool_indices(10, 4, 0).tolist()
        True
        >>> pool_indices(10, None, seed=0) is None
        True
    """
    if pool_size is None:
        return None
    if isinstance(pool_size, bool) or not isinstance(pool_size, int):
        raise TypeError(
            f"pool_size must be an integer or None, got {type(pool_size).__name__}."
        )
    if pool_size < 1:
        raise ValueError(f"pool_size must be positive or None, got {pool_size}.")
    if pool_size >= n:
        return None
    generator = (
        seed
        if isinstance(seed, torch.Generator)
        else torch.Generator().manual_seed(int(seed))
    )
    # Sorted, so that a data set is read in order (friendlier to disk caches).
    return torch.randperm(n, generator=generator)[:pool_size].sort().values


def gather(data: Any, indices: Tensor | None, *, name: str = "data") -> Tensor:
    """The samples of a tensor or map-style data set at ``indices``, stacked.

    A data set is read only at ``indices``, once per index, in the given order.

    Args:
        data: A tensor (n, ...) or a map-style data set of length n.
        indices: Long tensor of shape (k,) of indices into ``data``, or None for
            all n samples.
        name: How error messages name ``data``.

    Returns:
        Tensor of shape (k, ...) (or (n, ...)), floating point and finite.

    Raises:
        TypeError: If ``data`` is not a tensor or a map-style data set, an item
            holds no tensor input, or the samples are not floating point.
        ValueError: If ``data`` is empty, or the samples differ in shape or hold
            NaN or infinite values.

    Examples:
        >>> from torch.utils.data import TensorDataset
        >>> ds = TensorDataset(torch.arange(6.0).reshape(3, 2), torch.arange(3))
        >>> gather(ds, torch.tensor([2, 0])).tolist()
        [[4.0, 5.0], [0.0, 1.0]]
    """
    if isinstance(data, Tensor):
        _check_tensor_data(data, name)
        samples = data if indices is None else data[indices.to(data.device)]
    elif is_map_style(data):
        n = _check_length(data, name)
        order = range(n) if indices is None else indices.tolist()
        samples, _ = _collate(data, order, name)
    else:
        raise TypeError(
            f"{name} must be a tensor of shape (n, ...) or a map-style data set with "
            f"__len__ and __getitem__ (e.g. lightly.data.LightlyDataset), got "
            f"{type(data).__name__}. For a DataLoader, collect a pool first with "
            f"collect_pool(loader, pool_size, seed)."
        )
    check_samples(samples, name)
    return samples


def collect_pool(
    data: Any, pool_size: int | None, seed: int, *, name: str = "data"
) -> tuple[Tensor, Tensor]:
    """Gathers up to ``pool_size`` input samples into one tensor, and where from.

    Tensors and map-style data sets are sub-sampled uniformly at random by
    :func:`pool_indices` (so one seed gives the same pool at every call site, and
    a data set is read only at the pool's items). Loaders and other iterables are
    read batch by batch until the pool is full: their pool is the first
    ``pool_size`` samples in the loader's order (shuffle the loader, seeded, for a
    random pool).

    Args:
        data: A tensor (n, ...), a map-style data set (e.g.
            ``lightly.data.LightlyDataset``), an iterable data set of items, or an
            iterable of batches (e.g. a DataLoader).
        pool_size: Maximum number of samples; None takes everything.
        seed: Seed of the sub-sampling.
        name: How error messages name ``data``.

    Returns:
        ``(pool, indices)``: pool of shape (n_pool, ...) and a CPU long tensor of
        shape (n_pool,), the indices of the pool's samples in ``data`` (for
        loaders: their running positions in the stream, ``0..n_pool-1``).

    Raises:
        TypeError: If ``data`` or an item holds no tensor input, or the samples
            are not floating point.
        ValueError: If ``data`` is empty, ``pool_size`` is not positive, samples
            differ in shape or hold NaN or infinite values.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> x = torch.randn(100, 3)
        >>> pool, indices = collect_pool(x, pool_size=10, seed=0)
        >>> pool.shape, torch.equal(pool, x[indices])
        (torch.Size([10, 3]), True)
    """
    _check_source(data)
    pool_indices(1, pool_size, seed)  # validates pool_size before reading data
    if isinstance(data, Tensor) or is_map_style(data):
        if isinstance(data, Tensor):
            _check_tensor_data(data, name)
        n = len(data)
        chosen = pool_indices(n, pool_size, seed) if n else None
        pool = gather(data, chosen, name=name)
        return pool, torch.arange(n) if chosen is None else chosen
    batches: list[Tensor] = []
    count = 0
    for x in iter_batches(data, batch_size=pool_size or 256):
        batches.append(x)
        count += len(x)
        if pool_size is not None and count >= pool_size:
            break
    pool = torch.cat(batches)
    if pool_size is not None:
        pool = pool[:pool_size]
    check_samples(pool, name)
    return pool, torch.arange(len(pool))


ViewBatch = tuple[Tensor, ...]


def check_view_batch(batch: Any, where: str = "views") -> ViewBatch:
    """Checks one batch of p >= 2 views of the same samples, ``(v0, v1, ...)``.

    Args:
        batch: A list or tuple of tensors of shape (n, ...), row i of each a view
            of sample i.
        where: Name of the batch in error messages.

    Returns:
        The views as a tuple.

    Raises:
        TypeError: If ``batch`` is not a list or tuple of floating tensors.
        ValueError: If p < 2, a view is 0-dimensional, the views hold different
            numbers of samples, or none.
    """
    if isinstance(batch, Tensor) or not isinstance(batch, list | tuple):
        raise TypeError(
            f"{where} must be a list or tuple of p >= 2 view tensors (v0, v1, ...) "
            f"of shape (n, ...), got {type(batch).__name__}. For a stacked tensor "
            f"of shape (p, n, ...) pass list(views)."
        )
    if len(batch) < 2:
        raise ValueError(
            f"{where} holds {len(batch)} view(s); SSL objectives need p >= 2 views "
            f"of the same samples (they compare views of one sample). Give two "
            f"augmentations of each sample."
        )
    for j, view in enumerate(batch):
        check_floating(view, f"view {j} of {where}")
        if view.dim() < 1:
            raise ValueError(
                f"View {j} of {where} is 0-dimensional; views are (n, ...) with "
                f"one sample per row."
            )
    sizes = [int(v.shape[0]) for v in batch]
    if len(set(sizes)) > 1:
        raise ValueError(
            f"The views of {where} hold different numbers of samples {sizes}; "
            f"row i of every view must be a view of the same sample i, so all "
            f"must have the same n."
        )
    if sizes[0] == 0:
        raise ValueError(f"The views of {where} hold no samples.")
    return tuple(batch)


def _checked_batches(batches: Iterable[Any]) -> Iterator[ViewBatch]:
    for i, batch in enumerate(batches):
        yield check_view_batch(batch, f"view batch {i}")


def view_batches(
    views: Sequence[Tensor] | Iterable[Sequence[Tensor]],
    batch_size: int | None = None,
) -> Iterable[ViewBatch]:
    """Normalises the ``views`` of the audit and the closed forms into batches.

    Args:
        views: A list or tuple of p >= 2 tensors of shape (n, ...), the same n
            samples' views (row i of each is a view of sample i); or an iterable
            of such view batches (lists or tuples of tensors), consumed once.
        batch_size: For a list of p tensors, the samples per loss batch (SSL
            losses are batch-level: in-batch negatives, batch statistics); None
            puts all n samples in one batch. Ignored for an iterable of batches,
            whose batches are kept as they are.

    Returns:
        An iterable of tuples of p tensors (B, ...).

    Raises:
        TypeError: If ``views`` is neither form.
        ValueError: If p < 2, the views hold different numbers of samples, or
            ``batch_size`` is not positive.

    Examples:
        >>> x = torch.randn(10, 3)
        >>> [len(b[0]) for b in view_batches([x, x + 0.1], batch_size=4)]
        [4, 4, 2]
    """
    if batch_size is not None and (
        isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    if isinstance(views, Tensor):
        raise TypeError(
            "views must be a list of p >= 2 view tensors of shape (n, ...) (or an "
            "iterable of such view batches), got one tensor. For a stacked tensor "
            "of shape (p, n, ...) pass list(views)."
        )
    if isinstance(views, list | tuple) and all(isinstance(v, Tensor) for v in views):
        batch = check_view_batch(views, "views")
        n = int(batch[0].shape[0])
        size = n if batch_size is None else int(batch_size)
        return [
            tuple(v[start : start + size] for v in batch) for start in range(0, n, size)
        ]
    if not isinstance(views, Iterable):
        raise TypeError(
            f"views must be a list of p >= 2 view tensors or an iterable of view "
            f"batches, got {type(views).__name__}."
        )
    return _checked_batches(views)
