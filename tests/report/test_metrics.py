"""The evaluator on a small hand-built log whose answers are worked out here."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from distillguard._errors import LogFormatError
from distillguard.report import HARD_NEGATIVE_PERSONAS, evaluate, pr_curve
from distillguard.traffic import write_table

T0 = datetime(2026, 2, 2, tzinfo=UTC)


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# account -> (label, campaign, persona, event times in hours)
ACCOUNTS = {
    "d1": ("distill", "C1", "hydra_worker", [0, 1, 2, 3]),
    "d2": ("distill", "C1", "hydra_worker", [0.5, 1, 1.5]),
    "d3": ("distill", "C1", "hydra_worker", [4, 5]),
    "d4": ("distill", "C2", "hydra_worker", [0, 6, 7]),
    "d5": ("distill", "C2", "hydra_worker", [1, 2]),
    "d6": ("distill", "C2", "hydra_worker", [3]),
    "b1": ("benign", None, "casual", [0, 1]),
    "b2": ("benign", None, "casual", [2]),
    "b3": ("benign", None, "classroom", [3]),
    "b4": ("benign", None, "enterprise_batch", [1, 2, 3]),
}

# account -> (score, action, first_flagged_ts in hours or None); d4 has no verdict,
# x9 is not in the labels.
VERDICTS = {
    "d1": (0.9, "block", 2.0),  # events before 2h: 0h, 1h -> 2 harvested
    "d2": (0.8, "throttle", 1.0),  # before 1h: 0.5h -> 1 harvested
    "d3": (0.6, "monitor", None),  # not flagged: both events harvested
    "d5": (0.85, "throttle", None),  # flagged, but no time: both events harvested
    "d6": (0.2, "allow", 2.5),  # not flagged whatever the time says: 1 harvested
    "b1": (0.1, "allow", None),
    "b2": (0.7, "throttle", 2.0),
    "b3": (0.95, "block", 3.0),
    "b4": (0.5, "monitor", None),
    "x9": (0.99, "block", 1.0),
}


def write_log(root: Path) -> tuple[Path, Path]:
    log, vdir = root / "log", root / "verdicts"
    events, labels = [], []
    n = 0
    for acc, (label, campaign, persona, times) in ACCOUNTS.items():
        labels.append(
            {"account_id": acc, "label": label, "campaign_id": campaign, "persona": persona}
        )
        for t in times:
            events.append(
                {"event_id": f"e{n}", "ts": h(t), "account_id": acc, "model": "m", "prompt": "p"}
            )
            n += 1
    events.append({"event_id": "ex", "ts": h(1), "account_id": "x9", "model": "m", "prompt": "p"})
    write_table(log, "events", pa.Table.from_pylist(events))
    write_table(log, "labels", pa.Table.from_pylist(labels))
    verdicts = [
        {
            "account_id": acc,
            "score": score,
            "action": action,
            "first_flagged_ts": None if t is None else h(t),
            "reasons": "[]",
        }
        for acc, (score, action, t) in VERDICTS.items()
    ]
    write_table(vdir, "verdicts", pa.Table.from_pylist(verdicts))
    return log, vdir


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    log, vdir = write_log(tmp_path_factory.mktemp("metrics"))
    return evaluate(log, vdir, name="hand")


def test_account_recall_counts_throttle_and_block_only(scored) -> None:  # type: ignore[no-untyped-def]
    # Flagged distill: d1 (block), d2 (throttle), d5 (throttle); d3 monitor, d6 allow,
    # d4 has no verdict. 3 of 6.
    assert scored.distill_accounts == 6
    assert scored.flagged_distill == 3
    assert scored.account_recall == pytest.approx(3 / 6)
    assert scored.missing_verdicts == 1
    assert scored.unlabelled_verdicts == 1


def test_false_positive_rate_overall_and_per_persona(scored) -> None:  # type: ignore[no-untyped-def]
    # Benign flagged: b2 (throttle), b3 (block); b4 monitor costs nothing.
    assert scored.false_positive_rate == pytest.approx(2 / 4)
    fpr = scored.fpr_by_persona()
    assert fpr == {
        "casual": pytest.approx(1 / 2),
        "classroom": pytest.approx(1.0),
        "enterprise_batch": pytest.approx(0.0),
    }
    assert scored.precision == pytest.approx(3 / 5)


def test_hard_negatives_blocked_by_persona(scored) -> None:  # type: ignore[no-untyped-def]
    # b3 (classroom) is blocked; b2 is only throttled; d1's block is not a benign account.
    assert "classroom" in HARD_NEGATIVE_PERSONAS
    assert scored.blocked_by_persona == {"classroom": 1}
    assert scored.hard_negatives_blocked == 1


def test_harvest_before_detection_counts_unflagged_accounts_fully(scored) -> None:  # type: ignore[no-untyped-def]
    # d1 2/4, d2 1/3, d3 2/2, d4 3/3 (no verdict), d5 2/2 (no time), d6 1/1 (allow).
    assert scored.distill_events == 15
    assert scored.harvested_events == 2 + 1 + 2 + 3 + 2 + 1
    assert scored.harvest_before_detection == pytest.approx(11 / 15)
    assert scored.flagged_without_time == 1
    by = {c.campaign_id: c for c in scored.campaigns}
    assert (by["C1"].events, by["C1"].harvested) == (9, 5)
    assert (by["C2"].events, by["C2"].harvested) == (6, 6)
    # The timelines end at the totals and never decrease.
    for c in scored.campaigns:
        assert c.timeline_events[-1] == c.events
        assert c.timeline_harvested[-1] == c.harvested
        assert np.all(np.diff(c.timeline_events) >= 0)
        assert np.all(c.timeline_harvested <= c.timeline_events)


def test_campaign_recall_needs_half_the_accounts(scored) -> None:  # type: ignore[no-untyped-def]
    by = {c.campaign_id: c for c in scored.campaigns}
    # C1: d1, d2 flagged of 3 -> 2/3 >= 1/2, caught when the 2nd account was flagged (2h).
    assert by["C1"].flagged == 2 and by["C1"].caught
    assert by["C1"].flagged_share == pytest.approx(2 / 3)
    assert by["C1"].caught_us == int(h(2).timestamp() * 1e6)
    assert by["C1"].first_flagged_us == int(h(1).timestamp() * 1e6)
    # C2: only d5 of 3 -> 1/3 < 1/2, missed.
    assert by["C2"].flagged == 1 and not by["C2"].caught
    assert scored.campaign_recall == pytest.approx(1 / 2)


def test_average_precision_over_the_score(scored) -> None:  # type: ignore[no-untyped-def]
    # Ranked by score: b3 .95 N, d1 .9 P, d5 .85 P, d2 .8 P, b2 .7 N, d3 .6 P, b4 .5 N,
    # d6 .2 P, b1 .1 N, d4 0 (no verdict) P. Precision at each positive: 1/2, 2/3, 3/4,
    # 4/6, 5/8, 6/10; each adds 1/6 of recall.
    expected = (1 / 2 + 2 / 3 + 3 / 4 + 4 / 6 + 5 / 8 + 6 / 10) / 6
    assert scored.average_precision == pytest.approx(expected)


def test_json_summary_has_every_metric(scored) -> None:  # type: ignore[no-untyped-def]
    d = scored.to_dict()
    assert d["account_recall"] == pytest.approx(0.5)
    assert d["harvest_before_detection"] == pytest.approx(11 / 15)
    assert d["fpr_by_persona"]["classroom"] == pytest.approx(1.0)
    assert [c["caught"] for c in d["campaigns"]] == [True, False]
    assert d["campaigns"][0]["caught_ts"] == "2026-02-02T02:00:00Z"


def test_pr_curve_matches_scikit_learn_with_ties() -> None:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    rng = np.random.default_rng(7)
    y = rng.random(400) < 0.3
    score = np.round(rng.random(400) * 0.5 + 0.4 * y, 2)  # rounded: many ties
    ours = pr_curve(y, score)
    p, r, t = precision_recall_curve(y, score)
    assert np.allclose(ours.precision, p)
    assert np.allclose(ours.recall, r)
    assert np.allclose(ours.thresholds, t)
    assert ours.average_precision == pytest.approx(average_precision_score(y, score))


def test_no_positives_gives_nan_not_an_error() -> None:
    assert math.isnan(pr_curve([False, False], [0.1, 0.2]).average_precision)


def test_missing_labels_is_a_clear_error(tmp_path: Path) -> None:
    log, vdir = write_log(tmp_path)
    (log / "labels.parquet").unlink()
    with pytest.raises(LogFormatError, match="no labels table"):
        evaluate(log, vdir)


def test_duplicate_verdicts_are_rejected(tmp_path: Path) -> None:
    log, vdir = write_log(tmp_path)
    dup = pa.Table.from_pylist([{"account_id": "d1", "score": 0.1, "action": "allow"}] * 2)
    write_table(vdir, "verdicts", dup)
    with pytest.raises(LogFormatError, match="'d1' has 2 verdicts"):
        evaluate(log, vdir)


def test_without_flag_periods_held_flags_run_from_the_first_flag(scored) -> None:  # type: ignore[no-untyped-def]
    # No flag_periods table: each flagged account is held from its first_flagged_ts on, which
    # is harvest before detection again.
    assert not scored.has_flag_periods
    assert scored.unheld_events == scored.harvested_events
    assert [c.unheld for c in scored.campaigns] == [c.harvested for c in scored.campaigns]


def test_harvest_outside_held_flags_counts_after_a_dropped_flag(tmp_path: Path) -> None:
    log, vdir = write_log(tmp_path)
    # d1 (events 0, 1, 2, 3 h; first flagged at 2 h) held 0.5-1.5 h, dropped, held again from
    # 2.5 h: 0, 2 h unheld (1 h held, 3 h held). d2 (0.5, 1, 1.5 h; first flagged at 1 h) held
    # 1-1.2 h only: 0.5, 1.5 h unheld. d3 is monitored at the end but was held 3.5-4.5 h: its 4 h
    # event is not served, its 5 h one is. d5 (throttled, no first_flagged_ts) held from 0 h.
    periods = [("d1", 0.5, 1.5), ("d1", 2.5, None), ("d2", 1.0, 1.2), ("d3", 3.5, 4.5),
               ("d5", 0.0, None)]
    write_table(vdir, "flag_periods", pa.Table.from_pylist(
        [{"account_id": a, "start_ts": h(s), "end_ts": None if e is None else h(e)}
         for a, s, e in periods],
        schema=pa.schema([("account_id", pa.string()), ("start_ts", pa.timestamp("us", tz="UTC")),
                          ("end_ts", pa.timestamp("us", tz="UTC"))])))
    ev = evaluate(log, vdir)
    assert ev.has_flag_periods
    by = {c.campaign_id: c for c in ev.campaigns}
    # C1: d1 2, d2 2, d3 1 (of 9); C2: d4 3 (no verdict, no period), d5 0, d6 1 (of 6).
    assert by["C1"].unheld == 2 + 2 + 1
    assert by["C2"].unheld == 3 + 0 + 1
    assert ev.harvest_outside_held_flags == pytest.approx(9 / 15)
    # The first-flag measure is unchanged beside it.
    assert ev.harvest_before_detection == pytest.approx(11 / 15)
    assert ev.to_dict()["harvest_outside_held_flags"] == pytest.approx(9 / 15)


def test_flag_periods_without_their_columns_are_a_clear_error(tmp_path: Path) -> None:
    log, vdir = write_log(tmp_path)
    write_table(vdir, "flag_periods", pa.Table.from_pylist([{"account_id": "d1", "start_ts": h(0)}]))
    with pytest.raises(LogFormatError, match="end_ts"):
        evaluate(log, vdir)
