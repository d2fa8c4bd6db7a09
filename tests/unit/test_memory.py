"""Memory limits (orcha.service.memory): the one-line reason, and the watch that tells
each petition over its limit once."""

from __future__ import annotations

from orcha.service.memory import MemoryWatch, over_limit_message

MIB = 1 << 20


def test_the_reason_says_what_it_used_and_what_it_asked_for() -> None:
    assert over_limit_message(312 * MIB, 10 * MIB) == "used 312 MiB, asked for 10 MiB"
    assert over_limit_message(10 * MIB + 1, 10 * MIB) == "used 10 MiB, asked for 10 MiB"
    # Stopped by the kernel at its limit: it used more than it could be seen using.
    assert over_limit_message(None, 10 * MIB) == "used more than 10 MiB, asked for 10 MiB"
    assert over_limit_message(512 * 1024, 512 * 1024 - 1) == "used 512 KiB, asked for 512 KiB"


def test_the_reason_says_what_was_asked_for_in_its_own_unit() -> None:
    # It said "asked for 1 MiB" for all of these (whole MiB, at least 1).
    assert over_limit_message(2 * MIB, 100) == "used 2 MiB, asked for 100 B"
    assert over_limit_message(2 * MIB, 4000) == "used 2 MiB, asked for 3.9 KiB"
    assert over_limit_message(6 * MIB, 1500 * 1024) == "used 6 MiB, asked for 1.5 MiB"
    assert over_limit_message(int(2.3 * MIB), 2 * MIB) == "used 2.3 MiB, asked for 2 MiB"
    assert over_limit_message(None, 100) == "used more than 100 B, asked for 100 B"
    assert over_limit_message(5 << 30, 4 << 30) == "used 5 GiB, asked for 4 GiB"


def test_a_petition_over_its_limit_is_told_once_and_one_under_it_never() -> None:
    watch = MemoryWatch()
    told: list[tuple[str, str]] = []
    usage = {"a": 5 * MIB, "b": 5 * MIB}
    watch.add("a", 10 * MIB, lambda: (usage["a"], False), lambda why: told.append(("a", why)))
    watch.add("b", 10 * MIB, lambda: (usage["b"], False), lambda why: told.append(("b", why)))
    watch.check()
    assert told == []
    usage["a"] = 312 * MIB
    watch.check()
    watch.check()
    assert told == [("a", "used 312 MiB, asked for 10 MiB")]
    watch.remove("a")
    watch.remove("b")
    assert not watch


def test_the_kernels_word_counts_even_when_the_amount_does_not_show_it() -> None:
    watch = MemoryWatch()
    told: list[str] = []
    watch.add("a", 10 * MIB, lambda: (10 * MIB, True), told.append)
    watch.check()
    assert told == ["used more than 10 MiB, asked for 10 MiB"]


def test_a_failing_probe_is_logged_and_tried_again() -> None:
    watch = MemoryWatch()
    told: list[str] = []
    calls = {"n": 0}

    def probe() -> tuple[int | None, bool]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("gone")
        return (50 * MIB, False)

    watch.add("a", 10 * MIB, probe, told.append)
    watch.check()
    assert told == []
    watch.check()
    assert told == ["used 50 MiB, asked for 10 MiB"]


def test_a_probe_during_or_across_a_start_is_not_believed() -> None:
    """While a process of the petition is being started (orcha.service.native: until it
    execs it shares the service's memory) a probe may count the service's memory as the
    petition's: no look is taken then, and one that a start overlapped is not believed;
    the next look decides."""
    watch = MemoryWatch()
    told: list[str] = []
    service = 120 * MIB
    seen = {"used": service}
    during: list[object] = []

    def probe() -> tuple[int | None, bool]:
        if during:  # a start begins while this probe runs (and ends before it returns)
            with watch.starting("a"):
                pass
            during.clear()
        return (seen["used"], False)

    watch.add("a", 1 * MIB, probe, told.append)
    with watch.starting("a"):
        watch.check()  # not looked at while starting
    assert told == []
    during.append(True)
    watch.check()  # a start overlapped the probe: not believed
    assert told == []
    seen["used"] = 512 * 1024  # the command itself, once exec'd
    watch.check()
    assert told == []
    seen["used"] = 3 * MIB  # really over now: told
    watch.check()
    assert told == ["used 3 MiB, asked for 1 MiB"]
    watch.remove("a")
    assert not watch
