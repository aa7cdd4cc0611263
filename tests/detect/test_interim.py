"""Interim flags (detect/_interim.py): a flagged cohort's new member is throttled at the
request that makes it one, not at the next decision; a look-alike whose burst the decision
lets go (public benchmark items) is not throttled in between."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from distillguard.detect import scan
from distillguard.detect._interim import top_counts
from distillguard.traffic import read_table, write_table

from .builders import BROWSER, T0, account, account_table, event_table, events
from .test_cohort import PUBLIC_SLOTS, _frame, people, pool_task, scripted

Scene = tuple[list[dict[str, object]], list[dict[str, object]]]
# A day after the cohort's accounts started: the cohort is flagged by then.
LATER = T0 + timedelta(days=1, minutes=3)


def burst(aid: str, prompts: list[str], start: datetime, turns: int = 1) -> Scene:
    """An account that sends `prompts` one a minute from `start`, from its own address."""
    rows = events(aid, len(prompts), start=start, every=timedelta(minutes=1), prompt=prompts,
                  ua=BROWSER, ip="100.64.9.9" if aid == "new" else "100.64.8.8", turns=turns)
    return rows, [account(aid, created=T0 - timedelta(days=60))]


def _scan(tmp_path: Path, *parts: Scene) -> tuple[pl.DataFrame, pl.DataFrame]:
    log = tmp_path / "log"
    write_table(log, "events", event_table([r for p in parts for r in p[0]]))
    write_table(log, "accounts", account_table([a for p in parts for a in p[1]]))
    scan(log, tmp_path / "out")
    v = pl.from_arrow(read_table(tmp_path / "out", "verdicts"))
    flags = pl.from_arrow(read_table(tmp_path / "out", "interim_flags"))
    assert isinstance(v, pl.DataFrame) and isinstance(flags, pl.DataFrame)
    return v, flags


def test_a_new_member_of_a_flagged_cohort_is_throttled_at_its_third_request(tmp_path: Path) -> None:
    # 40 scripted accounts form a cohort on day one; a day later a new one of theirs (its own
    # frame, its own slice of the pool) sends a burst of eight requests a minute apart.
    new = burst("new", [pool_task(40 * 6 + i) + "\n\n" + _frame(40) for i in range(8)], LATER)
    v, flags = _scan(tmp_path, scripted("op", 40), people("p", 300), new)
    row = v.filter(pl.col("account_id") == "new").row(0, named=True)
    assert row["action"] == "throttle"
    third = LATER + timedelta(minutes=2)
    # Flagged 10 s (interim_react_seconds) after its third request, inside the window: three
    # of its eight requests served, where the decision at the window's end serves all eight.
    assert row["first_flagged_ts"] == third + timedelta(seconds=10)
    mine = flags.filter(pl.col("account_id") == "new")
    assert mine.height == 1 and mine["confirmed"][0]
    assert not v.filter(pl.col("account_id").str.starts_with("p"))["first_flagged_ts"].is_not_null().any()


def test_a_burst_of_public_benchmark_items_is_left_to_the_decision(tmp_path: Path) -> None:
    # A researcher ran a benchmark's items in conversations the day before; another sends the
    # same twelve items, one frame around each, in a burst. The decision at the window's end
    # sees twelve items shared with the first (a public benchmark run) and lets it go, so no
    # interim flag may throttle it in between (its first three requests alone show the
    # cohort's fingerprint).
    items = [pool_task(PUBLIC_SLOTS + i) for i in range(12)]
    ref = burst("ref", items, T0 + timedelta(hours=2), turns=3)
    bench = burst("bench", [t + "\n\n" + _frame(41) for t in items], LATER)
    v, flags = _scan(tmp_path, scripted("op", 40), people("p", 300), ref, bench)
    row = v.filter(pl.col("account_id") == "bench").row(0, named=True)
    assert row["action"] not in ("throttle", "block") and row["first_flagged_ts"] is None
    assert "bench" not in flags["account_id"].to_list()
    assert (v.filter(pl.col("account_id").str.starts_with("op"))["action"] == "throttle").all()


def test_top_counts_counts_a_value_among_the_first_slots_only() -> None:
    none = np.iinfo(np.uint64).max
    values = np.array([[5, 5, 7], [5, 7, 7], [none, 3, 3]], np.uint64)
    top, slot = top_counts(values, np.array([2, 1, 2]))
    assert top.tolist() == [2, 1, 2] and slot.tolist() == [0, 0, 1]


def test_a_harness_whose_closing_phrase_is_rare_only_until_its_burst_is_left_to_the_decision(
        tmp_path: Path) -> None:
    # A harness sends 80 word problems of its own in a burst, each closed by the same phrase.
    # Before the burst nobody closes with that word, so over its first requests it reads as a
    # frame; by the window's end its own burst has made the word common (over edge_max_share
    # of the requests), the decision reads no frame and lets it go. Between the two, the word
    # is no frame of the cohorts' own: no interim flag either.
    prompts = [pool_task(3000 + i) + "\n\nLet's think step by step." for i in range(80)]
    runner = events("runner", 80, start=LATER, every=timedelta(seconds=5), prompt=prompts,
                    ua=BROWSER, ip="100.64.7.7")
    v, flags = _scan(tmp_path, scripted("op", 40), people("p", 300),
                     (runner, [account("runner", created=T0 - timedelta(days=60))]))
    row = v.filter(pl.col("account_id") == "runner").row(0, named=True)
    assert row["action"] not in ("throttle", "block") and row["first_flagged_ts"] is None
    assert "runner" not in flags["account_id"].to_list()
