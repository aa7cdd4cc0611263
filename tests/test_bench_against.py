"""benchmarks/_against.py: both versions of a step take turns at running first."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _against import StepClock, in_turn, median_cpu, rounds_in_turn  # noqa: E402


def test_in_turn_rotates_so_each_runs_first_as_often() -> None:
    assert [in_turn(["other", "this"], r) for r in range(4)] == [
        ["other", "this"], ["this", "other"], ["other", "this"], ["this", "other"]]
    firsts = [in_turn(["a", "b", "c"], r)[0] for r in range(6)]
    assert sorted(firsts) == ["a", "a", "b", "b", "c", "c"]
    assert in_turn([], 3) == []


def test_rounds_in_turn_runs_every_name_every_round_in_turned_order() -> None:
    seen: list[str] = []
    out = rounds_in_turn(3, {"a": lambda: seen.append("a") or 1, "b": lambda: seen.append("b") or 2})
    assert seen == ["a", "b", "b", "a", "a", "b"]
    assert out == {"a": [1, 1, 1], "b": [2, 2, 2]}


def test_a_step_clock_alternates_which_version_runs_first() -> None:
    clock = StepClock()
    seen: list[str] = []
    for _ in range(4):
        theirs, ours = clock.both("step", lambda: seen.append("other") or "o",
                                  lambda: seen.append("this") or "t")
        assert (theirs, ours) == ("o", "t")
    assert seen == ["other", "this", "this", "other", "other", "this", "this", "other"]
    assert clock.calls("step") == 4 and clock.steps() == ["step"]
    assert len(clock.per_call[("step", "other")]) == 4


def test_the_median_ratio_is_per_call_and_skips_calls_that_took_no_time() -> None:
    clock = StepClock()
    clock.per_call = {("s", "other"): [1.0, 2.0, 0.0, 4.0], ("s", "this"): [0.5, 3.0, 9.0, 2.0]}
    assert clock.seconds("s", "other") == 7.0
    assert clock.median_ratio("s") == pytest.approx(0.5)  # of 0.5, 1.5, 0.5
    assert math.isnan(StepClock().median_ratio("none"))


def test_median_cpu_keeps_each_runs_last_output() -> None:
    calls = {"a": 0}

    def a() -> int:
        calls["a"] += 1
        return calls["a"]

    seconds, last = median_cpu({"a": a, "b": lambda: -1}, 3)
    assert last == {"a": 3, "b": -1} and set(seconds) == {"a", "b"}
    assert all(s >= 0 for s in seconds.values())
