"""Errors: exit codes, messages, and the wire names of petition errors."""

from __future__ import annotations

import signal

import pytest

from orcha import errors
from orcha.errors import (
    WIRE_ERRORS,
    AlreadyRunningError,
    AuthError,
    ConcurrentUseError,
    ConfigError,
    DroppedError,
    DuplicateIdError,
    ExecutorError,
    ExitCode,
    InvalidPetitionError,
    LostServiceError,
    NoAnswerError,
    NoPetitionError,
    NoServiceError,
    NotSavedError,
    OrchaError,
    PetitionError,
    PluginError,
    SchemaError,
    StateUnavailableError,
    UnknownKindError,
    wire_name,
)


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= _all_subclasses(sub)
    return found


#: One instance of every error orcha defines, with the exit code it must carry.
EXAMPLES: dict[type[OrchaError], tuple[OrchaError, ExitCode]] = {
    OrchaError: (OrchaError("boom"), ExitCode.FAILED),
    ConfigError: (ConfigError("bad option"), ExitCode.USAGE),
    NoServiceError: (NoServiceError("/tmp/o.sock", "refused"), ExitCode.NO_SERVICE),
    DroppedError: (DroppedError("127.0.0.1:7000"), ExitCode.NO_SERVICE),
    NoAnswerError: (NoAnswerError("127.0.0.1:7000", 5.0), ExitCode.NO_SERVICE),
    AuthError: (AuthError("wrong key"), ExitCode.AUTH),
    AlreadyRunningError: (AlreadyRunningError("taken"), ExitCode.ALREADY_RUNNING),
    LostServiceError: (LostServiceError("reset"), ExitCode.LOST_SERVICE),
    PetitionError: (PetitionError("no"), ExitCode.REFUSED),
    DuplicateIdError: (DuplicateIdError("job-1"), ExitCode.DUPLICATE),
    UnknownKindError: (UnknownKindError("nope", ["shell", "hello"]), ExitCode.UNKNOWN),
    InvalidPetitionError: (InvalidPetitionError("counter < 0"), ExitCode.REFUSED),
    PluginError: (PluginError("plugin broke"), ExitCode.FAILED),
    ConcurrentUseError: (ConcurrentUseError("read by another thread"), ExitCode.FAILED),
    SchemaError: (SchemaError("plugins.a.config.b", "expected a number"), ExitCode.USAGE),
    NoPetitionError: (NoPetitionError("no petition has ID 'x'"), ExitCode.NO_PETITION),
    NotSavedError: (NotSavedError("disk full: database or disk is full"), ExitCode.NOT_SAVED),
    ExecutorError: (ExecutorError("needs distributed"), ExitCode.EXECUTOR),
    StateUnavailableError: (StateUnavailableError("disk full"), ExitCode.NOT_SAVED),
}


def test_exit_codes_are_distinct() -> None:
    values = [member.value for member in ExitCode.__members__.values()]
    assert len(values) == len(set(values))  # no alias hides a duplicate value


def test_orcha_outcomes_avoid_command_and_signal_codes() -> None:
    own = [c for c in ExitCode if c >= 200]
    assert [int(c) for c in own] == list(range(200, 214))
    assert all(c > 128 + max(signal.Signals) for c in own)
    assert ExitCode.INTERRUPTED == 128 + signal.SIGINT
    assert all(0 <= c <= 255 for c in ExitCode)


def test_examples_cover_every_error_class() -> None:
    assert {OrchaError} | _all_subclasses(OrchaError) == set(EXAMPLES)


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda c: c.__name__)
def test_every_error_has_message_and_exit_code(cls: type[OrchaError]) -> None:
    err, code = EXAMPLES[cls]
    assert type(err) is cls
    assert isinstance(err, OrchaError)
    assert isinstance(err.message, str) and err.message.strip()
    assert str(err) == err.message
    assert "\n" not in err.message  # printed as one line
    assert isinstance(err.exit_code, ExitCode)
    assert err.exit_code == code


def test_messages_say_what_to_do() -> None:
    no_service = EXAMPLES[NoServiceError][0]
    assert "/tmp/o.sock" in str(no_service) and "(refused)" in str(no_service)
    assert "orcha serve" in str(no_service)
    assert "(" not in str(NoServiceError("/x"))
    assert "(reset)" in str(EXAMPLES[LostServiceError][0])
    assert "(" not in str(LostServiceError()).split(";")[0]
    assert "'job-1'" in str(EXAMPLES[DuplicateIdError][0])
    unknown = str(EXAMPLES[UnknownKindError][0])
    assert "'nope'" in unknown and "hello, shell" in unknown
    assert "it has: none" in str(UnknownKindError("x", []))


def test_petition_error_takes_any_code() -> None:
    err = PetitionError("could not start", ExitCode.START_FAILED)
    assert err.exit_code is ExitCode.START_FAILED
    assert PetitionError.exit_code is ExitCode.FAILED  # class default untouched


def test_wire_errors_and_wire_name_agree() -> None:
    assert len(set(WIRE_ERRORS.values())) == len(WIRE_ERRORS)
    for name, code in WIRE_ERRORS.items():
        assert wire_name(code) == name
        assert WIRE_ERRORS[wire_name(code)] == code


def test_petition_error_codes_have_wire_names() -> None:
    for cls in (DuplicateIdError, UnknownKindError, InvalidPetitionError):
        err = EXAMPLES[cls][0]
        assert WIRE_ERRORS[wire_name(err.exit_code)] == err.exit_code
    assert wire_name(ExitCode.START_FAILED) == "start_failed"


@pytest.mark.parametrize("code", [c for c in ExitCode if c not in set(WIRE_ERRORS.values())])
def test_codes_without_wire_name_are_refused(code: ExitCode) -> None:
    assert wire_name(code) == "refused"


def test_module_exports_exit_code_enum() -> None:
    assert errors.ExitCode is ExitCode
    assert issubclass(ExitCode, int)


def test_every_exit_code_has_a_meaning_for_the_reference() -> None:
    assert set(errors.EXIT_CODE_MEANINGS) == set(ExitCode)
    for code, meaning in errors.EXIT_CODE_MEANINGS.items():
        assert meaning and "\n" not in meaning, code


def test_the_readme_table_says_what_the_reference_pages_say() -> None:
    # One text for each code: the README's table (Markdown) and EXIT_CODE_MEANINGS, from
    # which orcha(1) and the docs' table are generated, read alike ('x' for `x`).
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        if line.startswith("| ") and not line.startswith("| code |"):
            code, meaning = line[2:].removesuffix(" |").split(" | ", 1)
            rows[code] = meaning.replace("\\|", "|").replace("`", "'")
    meanings = {str(int(c)): m for c, m in errors.EXIT_CODE_MEANINGS.items()}
    assert rows == {**meanings, **errors.RUN_CODE_MEANINGS}


def test_a_lost_connection_names_a_command_that_looks_at_the_service() -> None:
    # 'orcha ls' lists plugins and succeeds without any service: it tells nothing.
    message = str(LostServiceError("connection closed"))
    assert "'orcha status'" in message and "'orcha ls'" not in message
    assert "keeps what was queued" in message
