"""docs/explaining.md: its pictures are written by its own code blocks."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _make_figures() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_figures", DOCS / "make_figures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestExplainingPage:
    def test_code_blocks__write_every_picture_shown(self) -> None:
        make_figures = _make_figures()
        page = (DOCS / "explaining.md").read_text()
        blocks = make_figures.code_blocks(DOCS / "explaining.md")
        assert len(blocks) >= 8
        shown = set(re.findall(r"\]\(images/([\w-]+\.png)\)", page))
        written = set(re.findall(r"outputs/([\w-]+\.png)", "\n".join(blocks)))
        assert shown, "the page shows no pictures"
        assert shown == written
        for name in shown:
            assert (DOCS / "images" / name).is_file()
        for block in blocks:
            compile(block, "explaining.md", "exec")

    @pytest.mark.slow
    def test_run_page__writes_the_pictures(self, tmp_path: Path) -> None:
        written = _make_figures().run_page(DOCS / "explaining.md", tmp_path)
        assert {path.name for path in written} == {
            path.name for path in (DOCS / "images").glob("*.png")
        }
