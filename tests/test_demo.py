from __future__ import annotations

from pathlib import Path

import pytest

from lightly_krepes import demo


class TestDemo:
    def test_main__runs_pipeline_and_saves_figure(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        figure = tmp_path / "landmarks.png"
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
            ]
        )
        out = capsys.readouterr().out
        for row in ("raw pixels", "PC initialisation", "SimCLR-trained"):
            assert row in out
        assert figure.read_bytes()[:4] == b"\x89PNG"
