from __future__ import annotations

from pathlib import Path

import pytest

from lightly_krepes.data import resolve_cache_dir, resolve_data_root
from lightly_krepes.data._paths import check_split, missing_data_error


class TestResolveDataRoot:
    def test_resolve_data_root__argument_wins(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("LIGHTLY_KREPES_DATA", str(tmp_path / "env"))
        assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"

    def test_resolve_data_root__env_var(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("LIGHTLY_KREPES_DATA", str(tmp_path / "env"))
        assert resolve_data_root() == tmp_path / "env"

    def test_resolve_data_root__relative_to_cwd(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("LIGHTLY_KREPES_DATA", raising=False)
        project = tmp_path / "project"
        project.mkdir()
        monkeypatch.chdir(project)
        assert resolve_data_root() == tmp_path / "shared" / "data"

    def test_resolve_data_root__expands_user(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HOME", str(tmp_path))
        assert resolve_data_root("~/data") == tmp_path / "data"


class TestResolveCacheDir:
    def test_resolve_cache_dir__order(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.delenv("LIGHTLY_KREPES_CACHE", raising=False)
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        default = tmp_path / "home" / ".cache" / "lightly-krepes" / "datasets"
        assert resolve_cache_dir() == default
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert resolve_cache_dir() == tmp_path / "xdg" / "lightly-krepes" / "datasets"
        monkeypatch.setenv("LIGHTLY_KREPES_CACHE", str(tmp_path / "env"))
        assert resolve_cache_dir() == tmp_path / "env" / "datasets"
        assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg" / "datasets"


class TestMissingDataError:
    def test_missing_data_error__message(self, tmp_path: Path) -> None:
        error = missing_data_error(
            "X", [tmp_path / "x.bin"], ["x.bin under root"], "copy it there"
        )
        assert isinstance(error, FileNotFoundError)
        message = str(error)
        assert str(tmp_path / "x.bin") in message
        assert "x.bin under root" in message
        assert "copy it there" in message
        assert "LIGHTLY_KREPES_DATA" in message


class TestCheckSplit:
    def test_check_split__unknown(self) -> None:
        assert check_split("test") == "test"
        with pytest.raises(ValueError, match="'val'"):
            check_split("val")
