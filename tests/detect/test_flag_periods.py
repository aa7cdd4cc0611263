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
