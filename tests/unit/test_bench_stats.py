"""The benchmark's arithmetic (bench/stats.py): summaries, ratios, verdicts, the refill gaps
from the petitions' own timestamps. Pure functions; the benchmark itself never runs here."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).parents[2] / "bench" / "stats.py"
_spec = importlib.util.spec_from_file_location("bench_stats", _PATH)
assert _spec is not None and _spec.loader is not None
stats = importlib.util.module_from_spec(_spec)
sys.modules["bench_stats"] = stats  # dataclasses look their module up by name
_spec.loader.exec_module(stats)


def test_summarize_gives_min_median_max_of_unsorted_samples() -> None:
    s = stats.summarize([3.0, 1.0, 10.0, 2.0])
    assert (s.n, s.min, s.median, s.max) == (4, 1.0, 2.5, 10.0)
    assert stats.summarize([7]).as_dict() == {"n": 1, "min": 7.0, "median": 7.0, "max": 7.0}


def test_summarize_refuses_no_samples() -> None:
    with pytest.raises(ValueError):
        stats.summarize([])


def test_ratio_and_its_zero_peer() -> None:
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(0.0, 0.0) == 1.0
    assert math.isinf(stats.ratio(1.0, 0.0))
    assert stats.rate(1000, 2.0) == 500.0
    assert math.isinf(stats.rate(5, 0.0))


def test_verdicts_include_the_limit_itself() -> None:
    assert stats.at_most(0.015, 0.015) == stats.PASS
    assert stats.at_most(0.0151, 0.015) == stats.FAIL
    assert stats.at_least(2.0, 2.0) == stats.PASS
    assert stats.at_least(1.99, 2.0) == stats.FAIL


def _summary(*values: float) -> object:
    return stats.summarize(values)


def test_compare_row_over_a_peer_judges_the_difference_of_medians() -> None:
    # Python 20 ms; orcha 30 ms: +10 ms, within +15 ms.
    row = stats.compare_row(
        "1",
        "run",
        _summary(0.029, 0.030, 0.050),
        "s",
        "python",
        _summary(0.020, 0.021, 0.019),
        kind="over",
        limit=0.015,
    )
    assert row.verdict == stats.PASS
    assert row.compare == "+10.0 ms"
    assert row.raw["comparison"] == pytest.approx(0.010)
    slower = stats.compare_row(
        "1", "run", _summary(0.040), "s", "python", _summary(0.020), kind="over", limit=0.015
    )
    assert slower.verdict == stats.FAIL


def test_compare_row_ratios_in_both_directions() -> None:
    fast = stats.compare_row(
        "2", "rate", _summary(1400.0), "/s", "tsp", _summary(672.0), kind="ratio", limit=2.0
    )
    assert fast.verdict == stats.PASS and fast.compare == "2.08x"
    slow = stats.compare_row(
        "2", "rate", _summary(1000.0), "/s", "tsp", _summary(672.0), kind="ratio", limit=2.0
    )
    assert slow.verdict == stats.FAIL
    at_most = stats.compare_row(
        "5", "gap", _summary(3.0), "ms", "nq", _summary(1.0), kind="ratio_max", limit=2.0
    )
    assert at_most.verdict == stats.FAIL


def test_compare_row_without_its_peer_is_an_error_not_a_pass() -> None:
    row = stats.compare_row(
        "2", "rate", _summary(1000.0), "/s", "tsp", None, kind="ratio", limit=2.0
    )
    assert row.verdict == stats.ERROR
    report_only = stats.compare_row(
        "2", "rate", _summary(1000.0), "/s", "tsp", None, kind="ratio", limit=None
    )
    assert report_only.verdict == stats.INFO


def test_compare_row_against_an_absolute_limit() -> None:
    assert (
        stats.compare_row(
            "3", "rss", _summary(150e6), "B", "", None, kind="max", limit=150e6
        ).verdict
        == stats.PASS
    )
    assert (
        stats.compare_row(
            "3", "rss", _summary(151e6), "B", "", None, kind="max", limit=150e6
        ).verdict
        == stats.FAIL
    )


def test_parse_stamps_pairs_each_start_with_its_end() -> None:
    text = "s 10.000000\ne 10.001000\ngarbage\ns 10.0035\ns 10.004\ne 10.005\n"
    # The start at 10.0035 has no end (a killed petition): dropped with its pair.
    assert stats.parse_stamps(text) == [(10.0, 10.001), (10.004, 10.005)]
    assert stats.parse_stamps("s 1,5\ne 2,5\n") == [(1.5, 2.5)]  # a comma locale


def test_refill_gaps_are_next_start_minus_this_end_in_start_order() -> None:
    pairs = [(10.010, 10.011), (10.000, 10.002), (10.0035, 10.009)]
    assert stats.refill_gaps(pairs) == pytest.approx([0.0015, 0.001])
    assert stats.refill_gaps([(1.0, 2.0)]) == []


def test_refill_gaps_refuse_petitions_that_overlapped() -> None:
    with pytest.raises(ValueError):
        stats.refill_gaps([(1.0, 3.0), (2.0, 4.0)])


def test_figures_print_in_their_units() -> None:
    assert stats.fmt(0.0123, "s") == "12.3 ms"
    assert stats.fmt(2.5, "s") == "2.50 s"
    assert stats.fmt(281e6, "B") == "281 MB"
    assert stats.fmt(672.4, "/s") == "672/s"
    assert stats.fmt(1.2, "/s") == "1.20/s"
    assert stats.fmt(1.5e9, "MB/s") == "1500 MB/s"
    s = stats.summarize([0.010, 0.020, 0.030])
    assert stats.fmt_summary(s, "s") == "20.0 ms [10.0 ms..30.0 ms]"


def test_top_frames_add_up_a_function_s_lines_and_rank_by_share() -> None:
    collapsed = (
        "main (orcha/service/daemon.py:10);submit (orcha/service/intake.py:40) 6\n"
        "main (orcha/service/daemon.py:10);submit (orcha/service/intake.py:52) 2\n"
        "run (threading.py:1);_execute_child (subprocess.py:1800) 2\n"
        "a line that is not a stack\n"
    )
    assert stats.top_frames(collapsed, count=2) == [
        ("submit (intake.py)", 0.8),
        ("_execute_child (subprocess.py)", 0.2),
    ]
    assert stats.top_frames("") == []
