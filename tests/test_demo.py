from __future__ import annotations

import re
from pathlib import Path

import pytest

from lightly_krepes import demo


class TestDemo:
    def test_main__runs_pipeline_and_saves_figures(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        figure = tmp_path / "landmarks.png"
        explain_figure = tmp_path / "explain" / "proponents_opponents.png"
        demo.main(
            [
                "--landmarks",
                "32",
                "--out-dim",
                "8",
                "--epochs",
                "1",
                "--figure",
                str(figure),
                "--explain-figure",
                str(explain_figure),
            ]
        )
        out = capsys.readouterr().out
        for row in ("raw pixels", "PC initialisation", "SimCLR-trained"):
            assert row in out
        assert figure.read_bytes()[:4] == b"\x89PNG"
        assert explain_figure.read_bytes()[:4] == b"\x89PNG"
        assert f"proponents/opponents of 6 test images: {explain_figure}" in out
        assert (
            len(re.findall(r"test image \d \(digit \d\): proponent digits", out)) == 3
        )
        precision = re.search(
            r"precision@1 of the top landmark \(540 test images\): influence "
            r"([\d.]+), projection ([\d.]+), cosine-nearest landmark \(baseline\) "
            r"([\d.]+)",
            out,
        )
        assert precision is not None
        assert all(0.0 <= float(v) <= 1.0 for v in precision.groups())
        removal = re.search(
            r"kNN \(k=50\) confidence drop removing landmarks: top-10 (-?[\d.]+) vs "
            r"random-10 (-?[\d.]+)",
            out,
        )
        assert removal is not None
