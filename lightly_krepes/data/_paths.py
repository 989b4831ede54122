"""Where datasets and caches live, and the error raised when a file is missing.

Loaders never download. They look for files under a data root, chosen in this
order: the ``root`` argument, the environment variable ``LIGHTLY_KREPES_DATA``,
``../shared/data`` relative to the current working directory. Decoded caches go to
the ``cache_dir`` argument, ``LIGHTLY_KREPES_CACHE``, ``$XDG_CACHE_HOME/lightly-krepes``
or ``~/.cache/lightly-krepes``, in that order.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

PathLike: TypeAlias = "str | os.PathLike[str]"
"""A path given as a string or a path object."""

DATA_ENV_VAR = "LIGHTLY_KREPES_DATA"
"""Environment variable that overrides the default data root."""

CACHE_ENV_VAR = "LIGHTLY_KREPES_CACHE"
"""Environment variable that overrides the default cache directory."""

DEFAULT_RELATIVE_ROOT = Path("..") / "shared" / "data"
"""Default data root, relative to the current working directory."""


def resolve_data_root(root: PathLike | None = None) -> Path:
    """Returns the data root: ``root``, else ``$LIGHTLY_KREPES_DATA``, else the default.

    The path is expanded (``~``) and made absolute but is not required to exist;
    each loader reports the exact file it expected when something is missing.

    Args:
        root: Explicit data root, a dataset folder or a dataset file. Wins over the
            environment variable.

    Returns:
        Absolute path.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> resolve_data_root("/data").as_posix()
        '/data'
    """
    if root is not None:
        chosen = Path(root)
    elif os.environ.get(DATA_ENV_VAR):
        chosen = Path(os.environ[DATA_ENV_VAR])
    else:
        chosen = Path.cwd() / DEFAULT_RELATIVE_ROOT
    return Path(os.path.abspath(chosen.expanduser()))


def resolve_cache_dir(cache_dir: PathLike | None = None) -> Path:
    """Returns the directory for decoded-dataset caches (not created here).

    Order: ``cache_dir``, ``$LIGHTLY_KREPES_CACHE``, ``$XDG_CACHE_HOME/lightly-krepes``,
    ``~/.cache/lightly-krepes``. Caches live in its ``datasets`` subfolder.

    Args:
        cache_dir: Explicit cache directory.

    Returns:
        Absolute path of the ``datasets`` cache folder.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> resolve_cache_dir("/tmp/cache").as_posix()
        '/tmp/cache/datasets'
    """
    if cache_dir is not None:
        base = Path(cache_dir)
    elif os.environ.get(CACHE_ENV_VAR):
        base = Path(os.environ[CACHE_ENV_VAR])
    elif os.environ.get("XDG_CACHE_HOME"):
        base = Path(os.environ["XDG_CACHE_HOME"]) / "lightly-krepes"
    else:
        base = Path.home() / ".cache" / "lightly-krepes"
    return Path(os.path.abspath(base.expanduser())) / "datasets"


def missing_data_error(
    dataset: str,
    expected: Sequence[Path],
    layouts: Sequence[str],
    how_to_get: str,
) -> FileNotFoundError:
    """Builds the error raised when a dataset file cannot be found.

    The message names every path that was tried, the layouts a loader accepts, how
    the data root was chosen and how to obtain the data without this package ever
    downloading anything.

    Args:
        dataset: Human-readable dataset name, e.g. ``"CIFAR-10"``.
        expected: The paths that were looked for, most preferred first.
        layouts: One line per accepted layout.
        how_to_get: Instructions to obtain the files.

    Returns:
        The error, for the caller to raise.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467

    Examples:
        >>> err = missing_data_error("X", [Path("/d/x.bin")], ["x.bin"], "copy it")
        >>> "/d/x.bin" in str(err)
        True
    """
    tried = "\n".join(f"  - {p}" for p in expected)
    accepted = "\n".join(f"  - {layout}" for layout in layouts)
    return FileNotFoundError(
        f"{dataset} not found. Expected one of:\n{tried}\n"
        f"Accepted layouts (relative to root):\n{accepted}\n"
        f"How to get the data: {how_to_get}\n"
        f"The data root is the root= argument, else ${DATA_ENV_VAR}, else "
        f"{DEFAULT_RELATIVE_ROOT.as_posix()} relative to the working directory. "
        f"This package never downloads data."
    )


def check_split(split: str, allowed: Sequence[str] = ("train", "test")) -> str:
    """Raises a ValueError unless ``split`` is one of ``allowed``.

    Args:
        split: Requested split.
        allowed: Accepted split names.

    Returns:
        ``split`` unchanged.

    Raises:
        ValueError: If ``split`` is not accepted.
    """
    if split not in allowed:
        raise ValueError(f"split must be one of {tuple(allowed)}, got {split!r}.")
    return split
