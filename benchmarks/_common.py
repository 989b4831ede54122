"""Shared helpers of the benchmark scripts: timing, machine info, data, tables, JSON.

Benchmarks are run as scripts (``python benchmarks/<name>.py``), so this module is
imported as ``_common`` from the script's own folder.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530


def time_call(
    fn: Callable[[], Any], repeats: int = 3, warmup: int = 1
) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls.

    Args:
        fn: The callable to time; its result is discarded.
        repeats: Number of timed calls.
        warmup: Number of untimed calls before them.

    Returns:
        The median in seconds and the list of all timed calls.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str | None:
    """The repository's commit, with ``+dirty`` when the work tree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: other work on a shared machine."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """Versions, threads and hardware the figures were measured with."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "mkl": torch.backends.mkl.is_available(),  # type: ignore[no-untyped-call]
        "mkldnn": torch.backends.mkldnn.is_available(),  # type: ignore[no-untyped-call]
        "numpy": np.__version__,
        "git_revision": git_revision(),
        "load_average_at_start": load_average(),
    }
    try:
        import sklearn

        info["scikit_learn"] = sklearn.__version__
    except ImportError:
        info["scikit_learn"] = None
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads")}
            for p in threadpool_info()
        ]
    except ImportError:
        pass
    return info


def read_idx_images(path: Path) -> np.ndarray:
    """Reads a gzipped IDX image file (the MNIST format) as uint8 (n, rows, cols).

    Args:
        path: Path of e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        The images.

    Raises:
        SystemExit: If the file is missing or not an IDX image file.
    """
    if not path.is_file():
        raise SystemExit(
            f"Fashion-MNIST not found at {path}. The benchmark reads the gzipped IDX "
            f"files from ../shared/data/fashion-mnist relative to the repository "
            f"root; pass --data-dir to point at another folder."
        )
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = (
        int.from_bytes(raw[i : i + 4], "big") for i in (0, 4, 8, 12)
    )
    if magic != 2051 or len(raw) != 16 + n * rows * cols:
        raise SystemExit(f"{path} is not a gzipped IDX image file (magic {magic}).")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def load_fashion_mnist(data_dir: Path, n: int | None = None) -> torch.Tensor:
    """The first ``n`` Fashion-MNIST training images, float32 in [0, 1], (n, 28, 28).

    Args:
        data_dir: Folder that contains ``fashion-mnist/``.
        n: Number of images; None reads all 60,000.

    Returns:
        The images.
    """
    images = read_idx_images(data_dir / "fashion-mnist" / "train-images-idx3-ubyte.gz")
    if n is not None:
        if n > len(images):
            raise SystemExit(f"Asked for {n} images, the file has {len(images)}.")
        images = images[:n]
    return torch.from_numpy(images.astype(np.float32) / 255.0)


def normalize_fmnist(images: torch.Tensor) -> torch.Tensor:
    """Standardised CNN input of shape (n, 1, 28, 28) from [0, 1] images."""
    return ((images - FMNIST_MEAN) / FMNIST_STD).unsqueeze(1).contiguous()


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned columns."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if value == 0.0:
                return "0"
            if abs(value) >= 1e5 or abs(value) < 1e-3:
                return f"{value:.3e}"
            return f"{value:.4g}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
        for i, h in enumerate(headers)
    ]
    lines = [
        "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += [
        "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells
    ]
    return "\n".join(lines)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Writes ``payload`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
