"""The flag periods of a replay: each run of decisions that held an account flagged."""

from __future__ import annotations

import numpy as np

from distillguard.detect._flagperiods import FlagPeriods


def test_a_dropped_flag_closes_its_period_and_a_new_flag_opens_another() -> None:
    p = FlagPeriods()
    p.decided(np.array([True, False]), 10)
    p.decided(np.array([False, True, True]), 20)  # a third account appears, already flagged
    p.decided(np.array([True, True, False]), 30)
    p.decided(np.array([True, True, False]), 40)  # held: no new period
    assert p.periods().tolist() == [[0, 10, 20], [0, 30, -1], [1, 20, -1], [2, 20, 30]]
    t = p.table(["a", "b", "c"]).to_pylist()
    assert [r["account_id"] for r in t] == ["a", "a", "b", "c"]
    assert t[1]["end_ts"] is None and t[0]["end_ts"] is not None


def test_no_flag_no_period() -> None:
    p = FlagPeriods()
    p.decided(np.zeros(3, bool), 10)
    assert p.periods().shape == (0, 3)
    assert p.table(["a", "b", "c"]).num_rows == 0


def test_a_period_opens_at_its_interim_flag_and_a_held_one_keeps_its_start() -> None:
    p = FlagPeriods()
    p.decided(np.array([True, False]), 10, start_us=np.array([4, 7]))
    # account 0 is held (its start stays 4); account 1 opens at the given 13, not at 20
    p.decided(np.array([True, True]), 20, start_us=np.array([20, 13]))
    # a start after the decision is no start: the period opens at the decision
    p.decided(np.array([True, True, True]), 30, start_us=np.array([30, 30, 99]))
    assert p.periods().tolist() == [[0, 4, -1], [1, 13, -1], [2, 30, -1]]
