"""A block-wise, resumable cache of the audit's view coordinates, in memory or on disk.

The audit needs ``backbone.features(v)`` (shape (B, r)) of every view of every loss
batch (see :class:`~lightly_krepes.audit.AuditObjective`). At a million rows and
r = 1000 these are 8 GB of float32 for two views and take minutes of kernel
evaluations; :class:`FeatureStore` computes them block by block into one float32
array, held in memory or memory-mapped from a file in ``cache_dir``, records every
finished block in a small JSON manifest (written atomically after the block is on
disk), and resumes an interrupted pass from its finished blocks. A fingerprint of
the backbone, the data and the settings keeps a cache from being reused by another
audit. ``store.batches()`` are views into the array (no copy), for
``AuditObjective.from_features(backbone, loss, store.batches())``.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from lightly_krepes._inputs import check_view_batch
from lightly_krepes.backbone import KernelBackbone

DEFAULT_MEMORY_LIMIT_BYTES = 2 << 30
"""Largest cache ``storage="auto"`` keeps in memory (2 GiB); larger ones go to disk."""

DEFAULT_BLOCK_ROWS = 16_384
"""Rows per block: the unit of work that is flushed, recorded and resumed."""

MANIFEST_NAME = "manifest.json"
DATA_NAME = "features.bin"
FORMAT = "lightly-krepes feature store"
VERSION = 1
_HASHED_ROWS = 8
_DTYPES: dict[torch.dtype, type[np.floating[Any]]] = {
    torch.float32: np.float32,
    torch.float64: np.float64,
}
Storage = Literal["auto", "memory", "disk"]


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _tensor_bytes(x: Tensor) -> bytes:
    x = x.detach().cpu().contiguous()
    header = f"{x.dtype}{tuple(x.shape)}".encode()
    # uint8 view: bytes of any dtype (bfloat16 has no NumPy equivalent).
    return header + x.reshape(-1).view(torch.uint8).numpy().tobytes()


def backbone_fingerprint(backbone: KernelBackbone) -> str:
    """Hash of everything ``backbone.features`` depends on.

    The kernel (its class and settings as ``repr`` shows them, and its parameters
    and buffers, e.g. an eNTK's network), the landmarks, the Nyström map and the
    coordinate preconditioning: every tensor of the backbone's ``state_dict``
    except the trainable ``linear`` map, which the coordinates do not depend on,
    plus ``feature_projection`` itself.

    Args:
        backbone: The kernel backbone.

    Returns:
        A hexadecimal SHA-256 digest.

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> a = KernelBackbone(RBF(1.0), torch.randn(8, 3), out_dim=2)
        >>> b = KernelBackbone(RBF(2.0), a.landmarks, out_dim=2)
        >>> backbone_fingerprint(a) == backbone_fingerprint(b)
        False
    """
    parts = [repr(backbone.nystrom.kernel).encode()]
    for name, value in sorted(backbone.state_dict().items()):
        if name.startswith("linear.") or not isinstance(value, Tensor):
            continue
        parts += [name.encode(), _tensor_bytes(value)]
    parts.append(_tensor_bytes(backbone.feature_projection))
    return _digest(parts)


def _views_fingerprint(views: Sequence[Tensor]) -> str:
    return _digest(
        [f"{len(views)}{tuple(views[0].shape[1:])}".encode()]
        + [_tensor_bytes(v[:_HASHED_ROWS]) for v in views]
    )


def _write_json_atomically(path: Path, payload: Mapping[str, Any]) -> None:
    # A crash leaves either the old manifest or the new one, never half of one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_cache_dir(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(
            f"Cannot create the feature cache folder {cache_dir}: {error}. Pass a "
            f"cache_dir= in a writable location (with room for the coordinates)."
        ) from error
    if not cache_dir.is_dir() or not os.access(cache_dir, os.W_OK | os.X_OK):
        raise PermissionError(
            f"The feature cache folder {cache_dir} is not writable. Pass a "
            f"cache_dir= in a writable location, or fix its permissions."
        )


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


class FeatureStore:
    """The coordinates ``backbone.features(view)`` of every view batch, cached.

    Built by :meth:`build`, which reads the view batches once, in order, and
    computes their coordinates (without gradients, on the backbone's device)
    into one ``(p, n, r)`` array of ``dtype`` (float32 by default), view j of
    batch b at rows ``start_b .. start_b + B_b`` of ``array[j]``. Consecutive
    batches form blocks of at least ``block_rows`` rows; a block is checked
    (NaN or infinite coordinates raise with the block, batch and row), written
    and, on disk, flushed (``fsync``) before the manifest records it.

    Storage: ``"memory"`` keeps the array in RAM; ``"disk"`` writes it to
    ``cache_dir/features.bin`` and memory-maps it for reading (copy-on-write, so
    the file never changes by accident); ``"auto"`` (default) keeps it in memory
    when it takes at most ``memory_limit_bytes``
    (:data:`DEFAULT_MEMORY_LIMIT_BYTES`, 2 GiB) and otherwise needs a
    ``cache_dir``.

    On disk the store resumes: the manifest (``cache_dir/manifest.json``, JSON,
    no pickle) records the fingerprint and every finished block; building again
    with the same backbone, data and settings skips the finished blocks (their
    view batches are still read, to check that they are the same batches) and
    computes the rest. The fingerprint hashes the backbone
    (:func:`backbone_fingerprint`), the data (number of samples and views, the
    sample shape and the first rows of every view of the first batch) and the
    settings (``dtype``, ``block_rows`` and the caller's ``settings``, e.g. the
    view seed); the batch sizes are checked batch by batch. A cache folder that
    belongs to another audit raises a ValueError that says what differs.

    Views must be deterministic (seeded) for the resumed contents to equal
    those of an uninterrupted pass.

    Attributes:
        storage: ``"memory"`` or ``"disk"``.
        path: The data file on disk, or None in memory.
        num_samples: n.
        num_views: p.
        rank: r, the number of coordinates.
        dtype: The cache's dtype.
        batch_sizes: The size of every batch, in order.
        fingerprint: Hexadecimal digest of backbone, data and settings.
        computed_blocks: Blocks computed by the last :meth:`build`.
        resumed_blocks: Finished blocks it found and skipped.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> from lightly_krepes.audit import AuditObjective
        >>> from lightly_krepes.kernels import RBF
        >>> from lightly_krepes.loss import SpectralContrastiveLoss
        >>> backbone = KernelBackbone(RBF(2.0), torch.randn(16, 3), out_dim=2)
        >>> x = torch.randn(20, 3)
        >>> batches = [(x[i : i + 8], x[i : i + 8] + 0.1) for i in range(0, 20, 8)]
        >>> store = FeatureStore.build(backbone, batches, progress=False)
        >>> store.storage, store.num_samples, store.batch_sizes
        ('memory', 20, [8, 8, 4])
        >>> objective = AuditObjective.from_features(
        ...     backbone, SpectralContrastiveLoss(), store.batches()
        ... )
        >>> objective.num_samples
        20
    """

    def __init__(
        self,
        array: Tensor,
        batch_sizes: list[int],
        *,
        storage: Literal["memory", "disk"],
        path: Path | None,
        fingerprint: str,
        computed_blocks: int,
        resumed_blocks: int,
    ) -> None:
        self._array = array
        self.batch_sizes = batch_sizes
        self.storage = storage
        self.path = path
        self.fingerprint = fingerprint
        self.computed_blocks = computed_blocks
        self.resumed_blocks = resumed_blocks

    @property
    def num_views(self) -> int:
        """Number of views p."""
        return int(self._array.shape[0])

    @property
    def num_samples(self) -> int:
        """Number of samples n."""
        return int(self._array.shape[1])

    @property
    def rank(self) -> int:
        """Number of coordinates r."""
        return int(self._array.shape[2])

    @property
    def dtype(self) -> torch.dtype:
        """The cache's dtype."""
        return self._array.dtype

    @property
    def num_batches(self) -> int:
        """Number of view batches."""
        return len(self.batch_sizes)

    @property
    def nbytes(self) -> int:
        """Size of the coordinates in bytes, ``p * n * r * itemsize``."""
        return int(self._array.numel() * self._array.element_size())

    def view(self, j: int) -> Tensor:
        """All coordinates of view j, shape (n, r), a view into the cache."""
        return self._array[j]

    def batches(self) -> list[tuple[Tensor, ...]]:
        """One tuple of p tensors of shape (B, r) per batch, views into the cache.

        Ready for ``AuditObjective.from_features(backbone, loss, store.batches())``.
        """
        out = []
        start = 0
        for size in self.batch_sizes:
            out.append(tuple(v[start : start + size] for v in self._array))
            start += size
        return out

    def __repr__(self) -> str:
        where = "memory" if self.path is None else str(self.path)
        return (
            f"FeatureStore(n={self.num_samples}, views={self.num_views}, "
            f"r={self.rank}, batches={self.num_batches}, dtype={self.dtype}, "
            f"{self.nbytes / 2**30:.3g} GiB in {where})"
        )

    # ----------------------------------------------------------------- build
    @classmethod
    def build(
        cls,
        backbone: KernelBackbone,
        view_batches: Iterable[Sequence[Tensor]],
        *,
        num_samples: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        storage: Storage = "auto",
        overwrite: bool = False,
        settings: Mapping[str, Any] | None = None,
        dtype: torch.dtype = torch.float32,
        block_rows: int = DEFAULT_BLOCK_ROWS,
        memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
        progress: bool = True,
    ) -> FeatureStore:
        """Computes (or resumes, or reuses) the coordinates of every view batch.

        Args:
            backbone: The kernel backbone whose ``features`` are cached.
            view_batches: Iterable of batches, each a list or tuple of p >= 2 view
                tensors (B, ...) shaped like the landmarks (e.g.
                :func:`~lightly_krepes.audit.view_batches`), read once in order.
            num_samples: n, the total number of samples; needed when
                ``view_batches`` has no length (a generator); for a list it is
                counted.
            cache_dir: Folder of the memory-mapped cache and its manifest.
            storage: ``"auto"``, ``"memory"`` or ``"disk"`` (see the class).
            overwrite: Discard a cache in ``cache_dir`` that belongs to other
                data, backbone or settings instead of raising.
            settings: JSON-serialisable settings the views depend on that the
                first rows do not show (e.g. ``{"seed": 0, "views": "SCARF
                0.6"}``); part of the fingerprint.
            dtype: ``torch.float32`` (default) or ``torch.float64``.
            block_rows: Minimum rows per block (whole batches).
            memory_limit_bytes: Largest cache ``"auto"`` keeps in memory.
            progress: Show a progress bar over the rows.

        Returns:
            The store.

        Raises:
            ValueError: If there are no batches, views mismatch, a block's
                coordinates are not finite, ``num_samples`` is missing or
                wrong, the cache belongs to another audit (and not
                ``overwrite``), or an argument is invalid.
            PermissionError: If ``cache_dir`` cannot be written.
            OSError: If the disk lacks room for the cache.
        """
        if not isinstance(backbone, KernelBackbone):
            raise TypeError(
                f"backbone must be a KernelBackbone, got {type(backbone).__name__}."
            )
        if dtype not in _DTYPES:
            raise TypeError(
                f"dtype must be torch.float32 or torch.float64, got {dtype}."
            )
        if storage not in ("auto", "memory", "disk"):
            raise ValueError(
                f"storage must be 'auto', 'memory' or 'disk', got {storage!r}."
            )
        block_rows = _positive_int(block_rows, "block_rows")
        if isinstance(view_batches, Tensor):
            raise TypeError(
                "view_batches must be an iterable of view batches (v0, v1, ...), got "
                "a tensor. For a list of p view tensors use "
                "lightly_krepes.audit.view_batches(views, batch_size)."
            )
        settings_json = json.dumps(dict(settings or {}), sort_keys=True, default=str)
        if isinstance(view_batches, Sized) and isinstance(view_batches, Sequence):
            counted = sum(int(check_view_batch(b)[0].shape[0]) for b in view_batches)
            if num_samples is not None and num_samples != counted:
                raise ValueError(
                    f"num_samples is {num_samples} but the view batches hold "
                    f"{counted} samples; drop num_samples or fix it."
                )
            num_samples = counted
        if num_samples is not None:
            num_samples = _positive_int(num_samples, "num_samples")
        if num_samples is None:
            raise ValueError(
                "num_samples is needed for view batches without a length (a "
                "generator): pass num_samples=n, the total number of samples, so "
                "that the cache can be laid out before the first block."
            )

        iterator = iter(view_batches)
        try:
            first = check_view_batch(next(iterator), "view batch 0")
        except StopIteration:
            raise ValueError(
                "view_batches is empty; the audit needs at least one batch of views."
            ) from None
        p = len(first)
        rank = backbone.nystrom.rank
        nbytes = p * num_samples * rank * torch.empty((), dtype=dtype).element_size()
        where = cls._storage(storage, cache_dir, nbytes, memory_limit_bytes)
        fingerprint, components = cls._fingerprint(
            backbone, first, num_samples, dtype, block_rows, settings_json
        )
        header = {
            "format": FORMAT,
            "version": VERSION,
            "fingerprint": fingerprint,
            "components": components,
            "num_samples": num_samples,
            "num_views": p,
            "rank": rank,
            "dtype": str(dtype).replace("torch.", ""),
            "block_rows": block_rows,
            "settings": json.loads(settings_json),
        }
        batches = _chain(first, iterator)
        if where == "memory":
            array = torch.empty((p, num_samples, rank), dtype=dtype)
            sizes, computed = _fill(
                backbone, batches, array, [], block_rows, None, progress
            )
            return cls(
                array,
                sizes,
                storage="memory",
                path=None,
                fingerprint=fingerprint,
                computed_blocks=computed,
                resumed_blocks=0,
            )
        assert cache_dir is not None
        folder = Path(cache_dir)
        _check_cache_dir(folder)
        manifest = folder / MANIFEST_NAME
        data_path = folder / DATA_NAME
        finished = cls._finished_blocks(manifest, header, overwrite)
        if not finished:
            data_path.unlink(missing_ok=True)
        cls._reserve(data_path, nbytes)
        memmap = np.memmap(
            data_path, dtype=_DTYPES[dtype], mode="r+", shape=(p, num_samples, rank)
        )
        writer = _DiskWriter(memmap, manifest, header)
        if not finished:
            # Claims the folder for this fingerprint before the first block.
            writer.write(complete=False)
        sizes, computed = _fill(
            backbone,
            batches,
            torch.from_numpy(memmap),
            finished,
            block_rows,
            writer,
            progress,
        )
        del writer, memmap
        reader = torch.from_numpy(
            np.memmap(
                data_path, dtype=_DTYPES[dtype], mode="c", shape=(p, num_samples, rank)
            )
        )
        return cls(
            reader,
            sizes,
            storage="disk",
            path=data_path,
            fingerprint=fingerprint,
            computed_blocks=computed,
            resumed_blocks=len(finished),
        )

    @staticmethod
    def _storage(
        storage: Storage,
        cache_dir: str | os.PathLike[str] | None,
        nbytes: int,
        memory_limit_bytes: int,
    ) -> Literal["memory", "disk"]:
        if storage == "memory":
            return "memory"
        if storage == "auto" and nbytes <= memory_limit_bytes:
            return "memory"
        if cache_dir is None:
            limit = memory_limit_bytes / 2**30
            reason = (
                "storage='disk'"
                if storage == "disk"
                else f"they exceed memory_limit_bytes = {limit:.3g} GiB"
            )
            raise ValueError(
                f"The coordinates take {nbytes / 2**30:.3g} GiB and go to disk "
                f"({reason}), but no cache_dir was given. Pass cache_dir= (a "
                f"folder with that much free space), or storage='memory' (or a "
                f"larger memory_limit_bytes) to keep them in RAM."
            )
        return "disk"

    @staticmethod
    def _fingerprint(
        backbone: KernelBackbone,
        first: Sequence[Tensor],
        num_samples: int,
        dtype: torch.dtype,
        block_rows: int,
        settings_json: str,
    ) -> tuple[str, dict[str, str]]:
        components = {
            "backbone": backbone_fingerprint(backbone),
            "data": _digest(
                [
                    str(num_samples).encode(),
                    str(int(first[0].shape[0])).encode(),
                    _views_fingerprint(first).encode(),
                ]
            ),
            "settings": _digest(
                [str(dtype).encode(), str(block_rows).encode(), settings_json.encode()]
            ),
        }
        return _digest(v.encode() for v in components.values()), components

    @staticmethod
    def _finished_blocks(
        manifest: Path, header: Mapping[str, Any], overwrite: bool
    ) -> list[dict[str, Any]]:
        if not manifest.exists():
            return []
        try:
            recorded = json.loads(manifest.read_text())
        except (OSError, ValueError) as error:
            if overwrite:
                return []
            raise ValueError(
                f"The feature cache manifest {manifest} cannot be read ({error}). "
                f"Use a new cache_dir, or overwrite=True to rebuild the cache here."
            ) from error
        if recorded.get("fingerprint") == header["fingerprint"]:
            return list(recorded.get("blocks", []))
        if overwrite:
            return []
        old = recorded.get("components", {})
        differ = [
            name
            for name, value in header["components"].items()
            if old.get(name) != value
        ] or ["format"]
        verb = "differs" if len(differ) == 1 else "differ"
        raise ValueError(
            f"The feature cache in {manifest.parent} belongs to another audit: its "
            f"{' and '.join(differ)} {verb} from this one's (backbone: kernel, "
            f"landmarks, Nyström map; data: number of samples, first rows of the "
            f"views, batch size; settings: dtype, block_rows, settings=). Use a new "
            f"cache_dir for this audit, or pass overwrite=True to replace that "
            f"cache."
        )

    @staticmethod
    def _reserve(path: Path, nbytes: int) -> None:
        have = path.stat().st_size if path.exists() else 0
        if have != nbytes:
            free = shutil.disk_usage(path.parent).free
            if free + have < nbytes:
                raise OSError(
                    f"The feature cache needs {nbytes / 2**30:.3g} GiB but "
                    f"{path.parent} has {free / 2**30:.3g} GiB free. Pass a "
                    f"cache_dir= on a larger disk."
                )
            # A sparse file of the final size: blocks are written at their
            # offsets, in any order, and a memory map can cover all of it.
            with open(path, "ab") as f:
                f.truncate(nbytes)


def _chain(first: Sequence[Tensor], rest: Iterator[Any]) -> Iterator[Sequence[Tensor]]:
    yield first
    for i, batch in enumerate(rest, start=1):
        yield check_view_batch(batch, f"view batch {i}")


class _DiskWriter:
    """Flushes finished blocks of the memory map and records them in the manifest."""

    def __init__(
        self, memmap: np.memmap[Any, Any], manifest: Path, header: Mapping[str, Any]
    ) -> None:
        self.memmap = memmap
        self.manifest = manifest
        self.header = dict(header)
        self.blocks: list[dict[str, Any]] = []

    def finish(self, block: dict[str, Any], complete: bool) -> None:
        # The block's pages reach the disk before the manifest says it is done.
        self.memmap.flush()
        self.blocks.append(block)
        self.write(complete)

    def write(self, complete: bool) -> None:
        _write_json_atomically(
            self.manifest, {**self.header, "blocks": self.blocks, "complete": complete}
        )


def _check_rows(values: Tensor, what: str, where: str, start: int) -> None:
    finite = torch.isfinite(values).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise ValueError(
            f"The {what} of {where} are NaN or infinite at row {start + bad} (row "
            f"{bad} of the batch); nothing of this block was recorded. Fix or drop "
            f"that input row, or check the kernel (e.g. an encoder that overflows)."
        )


def _fill(
    backbone: KernelBackbone,
    batches: Iterator[Sequence[Tensor]],
    array: Tensor,
    finished: list[dict[str, Any]],
    block_rows: int,
    writer: _DiskWriter | None,
    progress: bool,
) -> tuple[list[int], int]:
    """Writes the coordinates of every batch into ``array``; sizes and blocks done."""
    p, n, rank = array.shape
    device = backbone.landmarks.device
    dtype = backbone.landmarks.dtype
    sizes: list[int] = []
    block: list[int] = []
    block_start = 0
    row = 0
    computed = 0
    if writer is not None:
        writer.blocks = []
    bar = tqdm(total=n, unit="rows", disable=not progress, desc="features")

    def close_block(last: bool) -> None:
        nonlocal block, block_start, computed
        index = len(sizes_blocks)
        record = {"index": index, "start": block_start, "batches": block}
        if index < len(finished):
            if finished[index] != record:
                raise ValueError(
                    f"Block {index} of the view batches (rows {block_start}.."
                    f"{row - 1}, batch sizes {block}) differs from the finished "
                    f"block the cache recorded ({finished[index]}): the batches "
                    f"changed. Use a new cache_dir, or overwrite=True."
                )
            if writer is not None:
                writer.blocks.append(record)
        else:
            computed += 1
            if writer is not None:
                writer.finish(record, complete=last)
        sizes_blocks.append(record)
        block, block_start = [], row

    sizes_blocks: list[dict[str, Any]] = []
    with torch.no_grad():
        for b, views in enumerate(batches):
            if len(views) != p:
                raise ValueError(
                    f"View batch {b} holds {len(views)} views but the first holds "
                    f"{p}; every batch needs the same number of views."
                )
            size = int(views[0].shape[0])
            if row + size > n:
                raise ValueError(
                    f"The view batches hold more than num_samples = {n} samples "
                    f"(batch {b} ends at row {row + size}); pass the right "
                    f"num_samples."
                )
            block_index = len(sizes_blocks)
            if block_index >= len(finished):
                for j, view in enumerate(views):
                    where = f"view {j} of batch {b} (block {block_index})"
                    _check_rows(view.reshape(size, -1), "inputs", where, row)
                    coords = backbone.features(view.to(device=device, dtype=dtype))
                    if coords.shape != (size, rank):
                        raise ValueError(
                            f"backbone.features returned shape {tuple(coords.shape)} "
                            f"for {where}, expected ({size}, {rank})."
                        )
                    _check_rows(coords, "coordinates", where, row)
                    array[j, row : row + size] = coords.to(array.dtype).cpu()
            sizes.append(size)
            block.append(size)
            row += size
            bar.update(size)
            if row - block_start >= block_rows:
                close_block(row == n)
    if block:
        close_block(True)
    bar.close()
    if row != n:
        raise ValueError(
            f"The view batches hold {row} samples but num_samples is {n}; pass the "
            f"right num_samples (an interrupted loader?)."
        )
    if writer is not None and computed == 0:
        # Everything was resumed: mark the cache complete all the same.
        writer.write(complete=True)
    return sizes, computed


__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "DEFAULT_MEMORY_LIMIT_BYTES",
    "FeatureStore",
    "backbone_fingerprint",
]
