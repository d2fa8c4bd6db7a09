"""orcha.service.logs: framed output logs, the cap, and reading them back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orcha.protocol.messages import STDERR, STDOUT
from orcha.service.logs import PetitionLog, read_log
from orcha.service.logs import last_lines as _last_lines
from orcha.units import parse_size


def test_no_output_no_file(tmp_path: Path) -> None:
    log = PetitionLog(str(tmp_path / "a.log"), cap=100)
    log.close()
    assert not (tmp_path / "a.log").exists()
    assert list(read_log(str(tmp_path / "a.log"))) == []


def test_a_failed_write_truncates_the_log_once_and_never_raises(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    reasons: list[str] = []
    log = PetitionLog("/dev/full", cap=1 << 20, on_truncated=reasons.append)
    log.write(STDOUT, b"lost\n")  # ENOSPC: kept from the petition, noted once
    log.write(STDOUT, b"lost too\n")
    assert log.truncated is not None and log.truncated.startswith("No space left on device")
    assert reasons == [log.truncated]
    assert (log.written, log.size) == (0, 0)
    log.close()


def test_a_log_in_a_folder_it_cannot_create_files_in_is_truncated(tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "a.log"  # the same failure as a read-only folder
    reasons: list[str] = []
    log = PetitionLog(str(missing), cap=100, on_truncated=reasons.append)
    log.write(STDOUT, b"hello\n")
    assert reasons and "No such file or directory" in reasons[0]
    log.close()


def test_a_write_cut_short_by_a_full_disk_stops_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "a.log")
    log = PetitionLog(path, cap=1 << 20)
    log.write(STDOUT, b"kept\n")
    real_write = os.write
    # A frame is one writev (header and data): the disk takes its first 3 bytes only.
    monkeypatch.setattr(os, "writev", lambda fd, parts: real_write(fd, b"".join(parts)[:3]))
    log.write(STDOUT, b"half of this fits\n")
    monkeypatch.undo()
    log.write(STDOUT, b"never\n")
    log.close()
    assert log.truncated is not None and log.truncated.startswith("No space left on device")
    assert list(read_log(path)) == [(STDOUT, b"kept\n")]  # the partial frame is not read


def test_frames_round_trip_with_streams_apart(tmp_path: Path) -> None:
    path = str(tmp_path / "a.log")
    log = PetitionLog(path, cap=1 << 20)
    chunks = [(STDOUT, b"out\n"), (STDERR, b"\x00\xff err"), (STDOUT, b"")]
    for stream, data in chunks:
        log.write(stream, data)
    log.close()
    assert list(read_log(path)) == chunks
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert log.size == os.path.getsize(path)


def test_read_up_to_an_offset(tmp_path: Path) -> None:
    path = str(tmp_path / "a.log")
    log = PetitionLog(path, cap=1 << 20)
    log.write(STDOUT, b"first")
    mark = log.size
    log.write(STDOUT, b"second")
    assert list(read_log(path, mark)) == [(STDOUT, b"first")]
    assert list(read_log(path)) == [(STDOUT, b"first"), (STDOUT, b"second")]


def test_cap_keeps_what_fits_and_says_so_once(tmp_path: Path) -> None:
    path = str(tmp_path / "a.log")
    log = PetitionLog(path, cap=10)
    log.write(STDOUT, b"12345678")
    log.write(STDOUT, b"abcdef")
    log.write(STDOUT, b"more")
    frames = list(read_log(path))
    assert frames[:2] == [(STDOUT, b"12345678"), (STDOUT, b"ab")]
    assert len(frames) == 3
    stream, note = frames[2]
    assert stream == STDERR and b"capped at 10 bytes" in note
    assert log.capped and log.written == 10


def test_writes_after_close_are_dropped(tmp_path: Path) -> None:
    path = str(tmp_path / "a.log")
    log = PetitionLog(path, cap=100)
    log.write(STDOUT, b"x")
    log.close()
    log.write(STDOUT, b"y")
    assert list(read_log(path)) == [(STDOUT, b"x")]


def test_a_torn_last_frame_is_not_read(tmp_path: Path) -> None:
    path = str(tmp_path / "a.log")
    log = PetitionLog(path, cap=100)
    log.write(STDOUT, b"whole")
    log.close()
    with open(path, "ab") as f:
        f.write(b"o\x00\x00\x00\x09par")  # header says 9 bytes, only 3 written yet
    assert list(read_log(path)) == [(STDOUT, b"whole")]


@pytest.mark.parametrize(
    ("frames", "n", "want"),
    [
        ([(STDOUT, b"a\nb\nc\n")], 2, b"b\nc\n"),
        ([(STDOUT, b"a\nb\nc")], 2, b"b\nc"),
        ([(STDOUT, b"a\n"), (STDERR, b"b\n"), (STDOUT, b"c\n")], 2, b"b\nc\n"),
        ([(STDOUT, b"a\nb\n")], 5, b"a\nb\n"),
        ([(STDOUT, b"a\nb\n")], 0, b""),
    ],
)
def test_last_lines(frames: list[tuple[int, bytes]], n: int, want: bytes) -> None:
    assert b"".join(data for _, data in _last_lines(frames, n)) == want


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("512K", 512 << 10), ("64M", 64 << 20), ("1g", 1 << 30), ("2MiB", 2 << 20)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "x", "10x", "-1", "1.5.2M", "\u0663M", "\uff14\uff10\uff19\uff16"]
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_read_log_from_an_offset(tmp_path: Path) -> None:
    """A follower that fell behind resumes from where its live output stopped."""
    log = PetitionLog(str(tmp_path / "log"), cap=1000)
    log.write(STDOUT, b"one")
    middle = log.size
    log.write(STDERR, b"two")
    log.write(STDOUT, b"three")
    end = log.size
    log.write(STDOUT, b"four")
    log.close()
    assert list(read_log(log.path, end, start=middle)) == [(STDERR, b"two"), (STDOUT, b"three")]
    assert list(read_log(log.path, start=end)) == [(STDOUT, b"four")]
