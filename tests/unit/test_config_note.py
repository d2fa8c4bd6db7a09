"""orcha.config_note: a loaded configuration file is noted, and the note is used only
while the file (and the code that validated it) is unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orcha import config, config_note
from orcha.errors import ConfigError


@pytest.fixture(autouse=True)
def _private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "state").mkdir(mode=0o700)
    monkeypatch.setenv("ORCHA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ORCHA_CONFIG", raising=False)


def _parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths config.load parses from now on."""
    parsed: list[str] = []
    real = config._parse_yaml

    def parse(path: str, text: str) -> dict[str, object]:
        parsed.append(path)
        return real(path, text)

    monkeypatch.setattr(config, "_parse_yaml", parse)
    return parsed


def test_a_file_is_parsed_once_then_read_from_its_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("grace: 7\ngroups:\n  render: {max_running: 2}\n")
    parsed = _parses(monkeypatch)
    first = config.load(str(path))
    second = config.load(str(path))
    assert parsed == [str(path)]
    assert second.data == first.data and second.data["grace"] == 7
    assert second.given("grace") and not second.given("aging")
    assert second.group_limits() == {"render": 2}
    note = tmp_path / "state" / config_note.FILE_NAME
    assert note.stat().st_mode & 0o777 == 0o600


def test_an_edited_or_replaced_file_is_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("grace: 7\n")
    parsed = _parses(monkeypatch)
    config.load(str(path))
    path.write_text("grace: 8\n")  # same size: the times and the change time differ
    assert config.load(str(path)).data["grace"] == 8
    replacement = tmp_path / "new.yaml"
    replacement.write_text("grace: 9\n")
    os.replace(replacement, path)
    assert config.load(str(path)).data["grace"] == 9
    assert len(parsed) == 3


def test_an_invalid_file_is_never_noted(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("grace: -1\n")
    for _ in range(2):
        with pytest.raises(ConfigError, match="grace"):
            config.load(str(path))
    assert not (tmp_path / "state" / config_note.FILE_NAME).exists()


def test_the_secret_files_are_checked_again_on_every_load(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    path = tmp_path / "c.yaml"
    path.write_text(f"notify_secret_file: {secret}\nnotify: [{{url: http://127.0.0.1:1/h}}]\n")
    assert config.load(str(path)).notify_secret() == b"s3cret"
    assert config.load(str(path)).notify_secret() == b"s3cret"  # from the note
    secret.chmod(0o644)  # outside the file: the note does not hide it
    with pytest.raises(ConfigError, match="may be read or written by others"):
        config.load(str(path))


def test_a_damaged_note_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("grace: 7\n")
    config.load(str(path))
    (tmp_path / "state" / config_note.FILE_NAME).write_bytes(b"\x00garbage")
    assert config.load(str(path)).data["grace"] == 7
