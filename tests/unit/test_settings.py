"""Settings: precedence of options, environment and defaults; the key file; private dirs."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from orcha import defaults, settings, units
from orcha.address import Address
from orcha.errors import ConfigError

ENV_VARS = (
    defaults.ENV_ADDRESS,
    defaults.ENV_KEY,
    defaults.ENV_RUNTIME_DIR,
    defaults.ENV_STATE_DIR,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    saved = settings._current
    yield
    settings._current = saved


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    runtime, state = tmp_path / "run", tmp_path / "state"
    monkeypatch.setenv(defaults.ENV_RUNTIME_DIR, str(runtime))
    monkeypatch.setenv(defaults.ENV_STATE_DIR, str(state))
    return runtime, state


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _write_key(state: Path, content: bytes, file_mode: int = 0o600) -> Path:
    """A key file as the service writes it (0600), or with ``file_mode``."""
    path = state / defaults.KEY_FILE_NAME
    path.write_bytes(content)
    path.chmod(file_mode)
    return path


def test_resolve_uses_runtime_and_state_dirs_from_env(dirs: tuple[Path, Path]) -> None:
    runtime, state = dirs
    s = settings.resolve()
    assert s.runtime_dir == str(runtime)
    assert s.state_dir == str(state)
    assert s.address == Address(path=str(runtime / defaults.SOCKET_NAME))
    assert s.key_file == str(state / defaults.KEY_FILE_NAME)
    assert s.key_override is None
    assert s.grace == defaults.DEFAULT_GRACE
    assert s.max_running is None
    assert s.verbose == 0
    assert not runtime.exists() and not state.exists()  # resolving creates nothing


def test_resolve_without_env_uses_platform_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake(kind: str) -> str:
        calls.append(kind)
        return f"/fake/{kind}"

    monkeypatch.setattr(settings, "_platform_dir", fake)
    s = settings.resolve()
    assert sorted(calls) == ["runtime", "state"]
    assert s.runtime_dir == "/fake/runtime"
    assert s.state_dir == "/fake/state"
    assert s.address.path == "/fake/runtime/orcha.sock"


def test_empty_env_dirs_fall_back_to_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(defaults.ENV_RUNTIME_DIR, "")
    monkeypatch.setattr(settings, "_platform_dir", lambda kind: f"/fake/{kind}")
    assert settings.resolve().runtime_dir == "/fake/runtime"


def test_resolve_address_and_key_from_env(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(defaults.ENV_ADDRESS, "9123")
    monkeypatch.setenv(defaults.ENV_KEY, "env-secret")
    s = settings.resolve()
    assert s.address == Address(host="127.0.0.1", port=9123)
    assert s.key_override == b"env-secret"
    assert s.client_key() == b"env-secret"
    assert s.service_key() == b"env-secret"
    assert not dirs[1].exists()  # an override never writes a key file


def test_explicit_arguments_win_over_env(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(defaults.ENV_ADDRESS, "9123")
    monkeypatch.setenv(defaults.ENV_KEY, "env-secret")
    s = settings.resolve(
        address="/tmp/explicit.sock", key="cli-secret", grace=0.5, max_running=3, verbose=2
    )
    assert s.address == Address(path="/tmp/explicit.sock")
    assert s.key_override == b"cli-secret"
    assert (s.grace, s.max_running, s.verbose) == (0.5, 3, 2)


def test_explicit_empty_key_is_config_error(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(defaults.ENV_KEY, "env-secret")
    with pytest.raises(ConfigError, match="key is empty"):
        settings.resolve(key="")


def test_empty_env_key_is_config_error(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(defaults.ENV_KEY, "")
    with pytest.raises(ConfigError):
        settings.resolve()


def test_a_key_that_is_not_utf8_is_its_bytes(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python reads the byte 0xff of an argument or variable as "\udcff": the key is
    # the bytes the user gave, as any other key.
    assert settings.resolve(key="k\udcff").key_override == b"k\xff"
    monkeypatch.setenv(defaults.ENV_KEY, "\udcfe")
    assert settings.resolve().key_override == b"\xfe"


def test_bad_env_address_is_config_error(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(defaults.ENV_ADDRESS, "host:nope")
    with pytest.raises(ConfigError, match="'host:nope'"):
        settings.resolve()


def test_client_key_none_when_absent(dirs: tuple[Path, Path]) -> None:
    assert settings.resolve().client_key() is None


def test_client_key_none_when_file_blank(dirs: tuple[Path, Path]) -> None:
    state = dirs[1]
    state.mkdir()
    _write_key(state, b"  \n")
    assert settings.resolve().client_key() is None


def test_client_key_reads_stripped_file(dirs: tuple[Path, Path]) -> None:
    state = dirs[1]
    state.mkdir()
    _write_key(state, b"abc123\n")
    assert settings.resolve().client_key() == b"abc123"


def test_service_key_creates_private_key_once(dirs: tuple[Path, Path]) -> None:
    s = settings.resolve()
    key = s.service_key()
    assert len(key) == 2 * defaults.KEY_BYTES
    int(key, 16)  # hex
    key_file = Path(s.key_file)
    assert key_file.read_bytes() == key + b"\n"
    assert mode(key_file) == 0o600
    assert mode(s.state_dir) == 0o700
    before = key_file.stat().st_mtime_ns
    # the same key next time, from this object or a freshly resolved one
    assert s.service_key() == key
    assert settings.resolve().service_key() == key
    assert settings.resolve().client_key() == key
    assert key_file.stat().st_mtime_ns == before


def test_service_keys_differ_between_state_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = []
    for name in ("s1", "s2"):
        monkeypatch.setenv(defaults.ENV_STATE_DIR, str(tmp_path / name))
        monkeypatch.setenv(defaults.ENV_RUNTIME_DIR, str(tmp_path / "run"))
        keys.append(settings.resolve().service_key())
    assert keys[0] != keys[1]


def test_service_key_blank_file_is_config_error(dirs: tuple[Path, Path]) -> None:
    state = dirs[1]
    state.mkdir(mode=0o700)
    _write_key(state, b"\n")
    with pytest.raises(ConfigError, match="empty"):
        settings.resolve().service_key()


def test_private_dir_creates_0700(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b"
    assert settings._private_dir(str(path)) == str(path)
    assert path.is_dir()
    assert mode(path) == 0o700


def test_private_dir_where_a_file_is_says_so_and_leaves_the_file(tmp_path: Path) -> None:
    from orcha.errors import ConfigError

    path = tmp_path / "state"
    path.write_text("keep")
    with pytest.raises(ConfigError) as refused:
        settings._private_dir(str(path))
    assert refused.value.message == (
        f"cannot create directory {path}: a file of that name is there; move it or choose "
        "another directory"
    )
    assert path.read_text() == "keep"


@pytest.mark.parametrize("loose", [0o755, 0o770, 0o701, 0o777])
def test_private_dir_tightens_loose_mode(tmp_path: Path, loose: int) -> None:
    path = tmp_path / "d"
    path.mkdir()
    os.chmod(path, loose)
    settings._private_dir(str(path))
    assert mode(path) == 0o700


def test_private_dir_keeps_already_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "d"
    path.mkdir()
    os.chmod(path, 0o500)
    try:
        settings._private_dir(str(path))
        assert mode(path) == 0o500  # no group/other bits: left alone
    finally:
        os.chmod(path, 0o700)


def test_private_dir_on_a_file_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ConfigError, match="cannot create directory"):
        settings._private_dir(str(path / "sub"))


def test_a_file_in_place_of_the_logs_folder_says_to_move_it_aside(
    dirs: tuple[Path, Path],
) -> None:
    from orcha.errors import ConfigError

    dirs[1].mkdir()
    logs = dirs[1] / "logs"
    logs.write_text("keep")
    with pytest.raises(ConfigError) as refused:
        settings.ensure_logs_dir(settings.resolve())
    assert refused.value.message == (
        f"cannot create directory {logs}: a file of that name is there; move it aside"
    )
    assert logs.read_text() == "keep"


def test_ensure_runtime_dir(dirs: tuple[Path, Path]) -> None:
    settings.ensure_runtime_dir(settings.resolve())
    assert mode(dirs[0]) == 0o700


def test_settings_are_immutable_and_repr_hides_key(dirs: tuple[Path, Path]) -> None:
    s = settings.resolve(key="top-secret-key")
    with pytest.raises(AttributeError):
        s.max_running = 3  # type: ignore[misc]
    assert s.max_running is None
    assert "top-secret-key" not in repr(s)
    assert str(dirs[0]) in repr(s)


def test_configure_and_current(dirs: tuple[Path, Path]) -> None:
    settings._current = None
    resolved = settings.current()
    assert resolved.runtime_dir == str(dirs[0])
    assert settings.current() is resolved
    custom = settings.resolve(max_running=7)
    assert custom.max_running == 7 and resolved.max_running is None
    settings.configure(custom)
    assert settings.current() is custom


# -- parse_duration and parse_gpus -----------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("1.5", 1.5), ("90s", 90.0), ("15m", 900.0), (" 12h ", 43200.0),
     ("7d", 604800.0), ("2w", 1209600.0), ("0", 0.0), ("1.5h", 5400.0),
     # compound units, largest first
     ("1h30m", 5400.0), ("2d12h", 216000.0), ("1w1d", 691200.0), ("1h30m15.5s", 5415.5),
     ("1d23h59m59s", 172799.0), ("500ms", 0.5), ("1.5 ms", 0.0015), ("0ms", 0.0),
     # Slurm's --time forms: MM:SS, H:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
     ("30:00", 1800.0), ("0:59", 59.0), ("90:00", 5400.0), ("1:30:00", 5400.0),
     ("2-12", 216000.0), ("2-12:30", 217800.0), ("2-00:00:00", 172800.0),
     ("0-00:00:01", 1.0), (" 1:00:00 ", 3600.0)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert units.parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "m", "-5", "5 minutes", "1e3", "5y", "inf", "30m1h", "1h1h", "1:60", "1:30:60",
     "2-24", "2-", "-12", "1:2:3:4", "1-2-3", ":30", "1.5:00", "1h 30m", "1s500ms", "ms",
     "5mss",
     # ASCII digits only (Arabic-Indic ones)
     "\u0663", "\u0663m", "1h\u0663m", "\u0661:\u0663\u0660", "\u0663-00"],
)  # fmt: skip
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration") as refused:
        units.parse_duration(text)
    # one line, naming the accepted forms
    assert str(refused.value) == f"{text!r} is not a duration (accepted: {units.DURATION_FORMS})"
    assert "1h30m" in units.DURATION_FORMS and "2-00:00:00" in units.DURATION_FORMS


@pytest.mark.parametrize(
    ("text", "problem", "meant"),
    [  # a bare number after a unit: seconds whatever the unit, before (1h30 was 1h0m30s)
     ("1h30", "its last number has no unit", "1h30m"),
     ("1m30", "its last number has no unit", "1m30s"),
     ("1d12", "its last number has no unit", "1d12h"),
     ("2w3", "its last number has no unit", "2w3d"),
     ("1h30.5", "its last number has no unit", "1h30m30s"),
     ("1h90", "its last number has no unit", "2h30m"),
     # after the first unit, each is below the next larger one (1h90m was 2h30m)
     ("1h90m", "minutes after the first unit are below 60", "2h30m"),
     ("1m60s", "seconds after the first unit are below 60", "2m"),
     ("1h0m75.5s", "seconds after the first unit are below 60", "1h1m15.5s"),
     ("2d30h", "hours after the first unit are below 24", "3d6h"),
     ("1w30h", "hours after the first unit are below 24", "1w1d6h"),
     ("1w7d", "days after the first unit are below 7", "2w")],
)  # fmt: skip
def test_parse_duration_refuses_a_unitless_or_overflowing_field_and_says_what_was_meant(
    text: str, problem: str, meant: str
) -> None:
    with pytest.raises(ValueError) as refused:
        units.parse_duration(text)
    assert str(refused.value) == (
        f"{text!r} is not a duration: {problem}; did you mean {meant!r}? "
        f"(accepted: {units.DURATION_FORMS})"
    )
    assert units.parse_duration(meant) >= 0  # what it suggests is a duration


@pytest.mark.parametrize(
    ("text", "gpus"),
    [("auto", None), ("AUTO", None), ("none", ()), ("", ()), ("0", ("0",)),
     ("0,1, 3", ("0", "1", "3")), ("GPU-1a2b,GPU-3c4d", ("GPU-1a2b", "GPU-3c4d"))],
)  # fmt: skip
def test_parse_gpus(text: str, gpus: tuple[str, ...] | None) -> None:
    assert units.parse_gpus(text) == gpus


@pytest.mark.parametrize(("text", "words"), [("0,,1", "not a GPU list"), ("0;1", "not a GPU list"),
                                             ("1,1", "listed twice"),
                                             ("\u0663", "not a GPU list")])  # fmt: skip
def test_parse_gpus_refuses_bad_lists(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        units.parse_gpus(text)


def test_scheduling_defaults_resolve_from_one_place() -> None:
    from orcha import defaults

    resolved = settings.resolve()
    assert (resolved.gpus, resolved.aging, resolved.backfill_bound) == (
        None, defaults.DEFAULT_AGING, defaults.DEFAULT_BACKFILL_BOUND)  # fmt: skip
    given = settings.resolve(gpus=("0",), aging=0.0, backfill_bound=60.0)
    assert (given.gpus, given.aging, given.backfill_bound) == (("0",), 0.0, 60.0)


# -- the key file's mode and owner are checked, as ssh checks a private key -----------------
@pytest.mark.parametrize(
    ("file_mode", "problem"),
    [
        (0o644, "is readable by others (mode 0644)"),
        (0o640, "is readable by its group (mode 0640)"),
        (0o602, "is writable by others (mode 0602)"),
        (0o620, "is writable by its group (mode 0620)"),
    ],
)
def test_key_file_open_to_others_is_refused_with_the_fix(
    dirs: tuple[Path, Path], file_mode: int, problem: str
) -> None:
    state = dirs[1]
    state.mkdir(mode=0o700)
    path = _write_key(state, b"abc123\n", file_mode)
    s = settings.resolve()
    for read in (s.client_key, s.service_key):  # a client refuses it, and so does the service
        with pytest.raises(ConfigError) as caught:
            read()
        assert str(caught.value) == f"the key file {path} {problem}; run 'chmod 600 {path}'"
    assert path.read_bytes() == b"abc123\n"  # refused, not rewritten


def test_key_file_with_execute_bits_only_is_accepted(dirs: tuple[Path, Path]) -> None:
    state = dirs[1]
    state.mkdir(mode=0o700)
    _write_key(state, b"abc123\n", 0o711)
    assert settings.resolve().client_key() == b"abc123"


def test_key_file_of_another_user_is_refused(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = dirs[1]
    state.mkdir(mode=0o700)
    path = _write_key(state, b"abc123\n")
    other = os.geteuid() + 1
    monkeypatch.setattr(settings.os, "geteuid", lambda: other)  # we are someone else now
    with pytest.raises(ConfigError, match="is owned by another user") as caught:
        settings.resolve().client_key()
    assert str(path) in str(caught.value) and "--key" in str(caught.value)


def test_key_override_skips_the_key_file(dirs: tuple[Path, Path]) -> None:
    state = dirs[1]
    state.mkdir(mode=0o700)
    _write_key(state, b"abc123\n", 0o644)
    assert settings.resolve(key="given").client_key() == b"given"


def test_parse_duration_takes_up_to_ten_years_and_names_the_limit_beyond() -> None:
    from orcha.defaults import MAX_DURATION_SECONDS

    assert units.parse_duration("3650d") == MAX_DURATION_SECONDS == 10 * 365 * 86400
    for text in ("3650d1s", "200000d", "9" * 400):  # the last: a float's inf
        with pytest.raises(ValueError) as refused:
            units.parse_duration(text)
        assert str(refused.value) == (
            f"{text!r} is longer than the longest duration orcha takes, 3650d (10 years)"
        )


def test_a_wait_of_any_length_is_cut_into_waits_the_system_takes() -> None:
    import threading

    from orcha.defaults import MAX_WAIT_SECONDS

    # epoll takes at most INT_MAX ms (~24.8 days); thread waits at most ~292 years
    assert MAX_WAIT_SECONDS * 1000 < 2**31 - 1
    assert units.capped_wait(30 * 86400.0) == MAX_WAIT_SECONDS
    assert units.capped_wait(1e300) == MAX_WAIT_SECONDS
    assert (units.capped_wait(-5.0), units.capped_wait(1.5)) == (0.0, 1.5)
    event = threading.Event()
    event.set()
    assert units.wait_event(event, 1e12) is True  # not OverflowError
    assert units.wait_event(threading.Event(), 0.01) is False


@pytest.mark.parametrize("var", [defaults.ENV_RUNTIME_DIR, defaults.ENV_STATE_DIR])
def test_a_directory_whose_path_is_not_utf8_is_one_config_error_naming_it(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    # B12: it reached .encode() (the lock file, the namespace's digest, sqlite) as an
    # internal error, after the directory was made.
    bad = os.fsdecode(os.fsencode(dirs[0].parent) + b"/r\xffun")
    monkeypatch.setenv(var, bad)
    with pytest.raises(ConfigError) as refused:
        settings.resolve()
    message = refused.value.message
    assert message.startswith(f"{var} ") and "UTF-8" in message, message
    assert "r\\xffun" in message and message.isprintable(), message
    assert not os.path.exists(bad)
