"""Writes the pictures of ``docs/explaining.md`` by running the page's own code.

Every ```` ```python ```` block of ``docs/explaining.md`` is executed top to
bottom in one namespace, in a scratch folder, exactly as a reader would run them;
the PNGs the blocks write to ``outputs/`` are then copied to ``docs/images/``. So
each picture in the page is produced by the code shown beside it, and the numbers
the blocks print (shown in the page) can be checked against this script's output.
A few minutes on two CPU cores (6.5 on busy ones), without downloads
(scikit-learn ships the digits and wine data):

    python docs/make_figures.py

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parent
PAGE = DOCS / "explaining.md"
IMAGES = DOCS / "images"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def code_blocks(page: Path = PAGE) -> list[str]:
    """The page's Python blocks, in order."""
    return BLOCK.findall(page.read_text())


def run_page(page: Path = PAGE, out: Path = IMAGES) -> list[Path]:
    """Runs every block of ``page`` in a scratch folder; copies its PNGs to ``out``.

    Args:
        page: The Markdown page.
        out: Folder the PNGs written to ``outputs/`` are copied to.

    Returns:
        The copied PNGs.
    """
    namespace: dict[str, object] = {"__name__": "__explaining__"}
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            for number, block in enumerate(code_blocks(page), start=1):
                tic = time.perf_counter()
                print(f"--- block {number}")
                exec(compile(block, f"{page.name}[block {number}]", "exec"), namespace)
                print(f"--- block {number}: {time.perf_counter() - tic:.1f} s")
            out.mkdir(parents=True, exist_ok=True)
            written = []
            for png in sorted(Path("outputs").glob("*.png")):
                shutil.copy(png, out / png.name)
                written.append(out / png.name)
        finally:
            os.chdir(cwd)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGES)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    start = time.perf_counter()
    for path in run_page(PAGE, args.out):
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KB")
    print(f"total time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
