"""orcha.platform_dirs gives platformdirs' answers, asking platformdirs only where it must."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import platformdirs
import pytest

from orcha import platform_dirs


@pytest.mark.parametrize(
    "xdg_state_home",
    [None, "", "/xdg/state", "/xdg/state/", "relative/state", " /padded", "/padded "],
)
@pytest.mark.parametrize("home", ["/home/someone", "/home/someone/", "relative-home"])
def test_the_state_directory_is_platformdirs_answer(
    monkeypatch: pytest.MonkeyPatch, xdg_state_home: str | None, home: str
) -> None:
    if xdg_state_home is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", xdg_state_home)
    monkeypatch.setenv("HOME", home)
    try:
        expected = platformdirs.user_state_dir("orcha")
    except RuntimeError:  # platformdirs refuses a relative HOME: so must orcha
        with pytest.raises(RuntimeError):
            platform_dirs.state_dir()
        return
    assert platform_dirs.state_dir() == expected


def test_the_common_state_directories_need_no_platformdirs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(kind: str) -> str:
        raise AssertionError(f"platformdirs asked for the {kind} directory")

    monkeypatch.setattr(platform_dirs, "_from_platformdirs", refuse)
    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert platform_dirs.state_dir() == "/home/someone/.local/state/orcha"
    monkeypatch.setenv("XDG_STATE_HOME", "/xdg/state")
    assert platform_dirs.state_dir() == "/xdg/state/orcha"


def test_the_runtime_directory_is_noted_for_the_circumstances_it_was_found_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def answer(kind: str) -> str:
        asked.append(kind)
        return f"/run/user/{os.environ.get('XDG_RUNTIME_DIR', 'none')}/orcha"

    monkeypatch.setattr(platform_dirs, "_from_platformdirs", answer)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "a")
    assert platform_dirs.runtime_dir(str(tmp_path)) == "/run/user/a/orcha"
    note = tmp_path / platform_dirs.FILE_NAME
    assert stat.S_IMODE(note.stat().st_mode) == 0o600
    assert platform_dirs.runtime_dir(str(tmp_path)) == "/run/user/a/orcha"
    assert asked == ["runtime"]  # the second time, from the note
    monkeypatch.setenv("XDG_RUNTIME_DIR", "b")  # other circumstances: asked again
    assert platform_dirs.runtime_dir(str(tmp_path)) == "/run/user/b/orcha"
    assert asked == ["runtime", "runtime"]
    note.write_text("garbage")
    assert platform_dirs.runtime_dir(str(tmp_path)) == "/run/user/b/orcha"
    assert len(asked) == 3
    # Without a state directory there is nowhere to note it: asked each time, no error.
    missing = tmp_path / "missing"
    assert platform_dirs.runtime_dir(str(missing)) == "/run/user/b/orcha"
    assert not missing.exists()
    assert [p.name for p in tmp_path.iterdir()] == [platform_dirs.FILE_NAME]


def test_without_a_note_the_runtime_directory_is_platformdirs_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "not-private"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some releases warn about the fallback
        expected = platformdirs.user_runtime_dir("orcha")
    assert platform_dirs.runtime_dir(str(tmp_path)) == expected
    assert platform_dirs.runtime_dir(str(tmp_path)) == expected  # from the note
