"""The reference detectors and the scan front door, on hand-built logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from distillguard._errors import ConfigError
from distillguard.detect import (
    DEFAULT_DETECTOR,
    ScanResult,
    detector_names,
    get_detector,
    register_detector,
    scan,
)
from distillguard.traffic import CAMPAIGNS, VERDICTS, read_table, write_table

DAY1 = datetime(2026, 2, 2, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


def _events(spec: dict[str, list[datetime]], seed: int = 3) -> pa.Table:
    import random

    rows = [
        {"event_id": f"{acc}-{i}", "ts": t, "account_id": acc, "model": "m", "prompt": "p"}
        for acc, times in spec.items()
        for i, t in enumerate(times)
    ]
    random.Random(seed).shuffle(rows)  # the detector must order by time itself
    return pa.Table.from_pylist(rows)


def _every(start: datetime, n: int, seconds: float) -> list[datetime]:
    return [start + timedelta(seconds=seconds * i) for i in range(n)]


@pytest.fixture(scope="module")
def volume_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log = tmp_path_factory.mktemp("volume")
    spec = {
        # 150 on day 1, 250 on day 2: the 201st request of day 2 crosses the limit.
        "A": _every(DAY1 + timedelta(hours=1), 150, 60) + _every(DAY2, 250, 60),
        # exactly 200 in one day: at the limit, never above it.
        "B": _every(DAY1, 200, 30),
        # 300 in four hours around midnight, but at most 150 in any UTC day.
        "C": _every(DAY2 - timedelta(hours=2), 150, 48) + _every(DAY2, 150, 48),
    }
    write_table(log, "events", _events(spec))
    return log


def test_volume_flags_at_the_event_that_crosses_the_daily_limit(
    volume_log: Path, tmp_path: Path
) -> None:
    result = scan(volume_log, tmp_path, detector="volume")
    v = {r["account_id"]: r for r in result.verdicts.to_pylist()}
    assert set(v) == {"A", "B", "C"}
    crossing = DAY2 + timedelta(seconds=60 * 200)  # the 201st request on day 2
    assert v["A"]["action"] == "throttle"
    assert v["A"]["first_flagged_ts"] == crossing
    assert v["B"]["action"] == "allow" and v["B"]["first_flagged_ts"] is None
    assert v["C"]["action"] == "allow" and v["C"]["first_flagged_ts"] is None
    # The score rises with the busiest day and passes 0.5 exactly when the limit is passed.
    assert v["A"]["score"] == pytest.approx(250 / 450)
    assert v["B"]["score"] == pytest.approx(0.5)
    assert v["C"]["score"] < v["B"]["score"]
    reasons = json.loads(v["A"]["reasons"])
    assert "250 requests on 2026-02-03" in reasons[0] and "limit of 200" in reasons[0]
    assert json.loads(v["A"]["evidence"])["days_over_limit"] == 1


def test_volume_writes_verdicts_and_an_empty_campaigns_table(
    volume_log: Path, tmp_path: Path
) -> None:
    scan(volume_log, tmp_path, detector="volume")
    verdicts = read_table(tmp_path, "verdicts")
    campaigns = read_table(tmp_path, "campaigns")
    assert verdicts.num_rows == 3
    assert verdicts.schema.names[: len(VERDICTS.columns)] == VERDICTS.columns
    assert "evidence" in verdicts.schema.names
    assert campaigns.num_rows == 0
    assert campaigns.schema.names[: len(CAMPAIGNS.columns)] == CAMPAIGNS.columns


def test_volume_limit_from_config(volume_log: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "volume.toml"
    cfg.write_text("[volume]\nper_day = 100\n")
    result = scan(volume_log, tmp_path / "out", detector="volume", config=cfg)
    v = {r["account_id"]: r for r in result.verdicts.to_pylist()}
    # A: the 101st request of day 1; C: the 101st of its 150 on day 1.
    assert v["A"]["first_flagged_ts"] == DAY1 + timedelta(hours=1, seconds=60 * 100)
    assert v["C"]["first_flagged_ts"] == DAY2 - timedelta(hours=2) + timedelta(seconds=48 * 100)
    assert v["B"]["first_flagged_ts"] == DAY1 + timedelta(seconds=30 * 100)


def test_bad_config_names_the_setting(volume_log: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[volume]\nper_day = 0\nburst = 3\n")
    with pytest.raises(ConfigError, match="burst"):
        scan(volume_log, tmp_path / "out", detector="volume", config=cfg)
    cfg.write_text("[volume]\nper_day = 0\n")
    with pytest.raises(ConfigError, match="per_day"):
        scan(volume_log, tmp_path / "out", detector="volume", config=cfg)


@pytest.fixture(scope="module")
def many_accounts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log = tmp_path_factory.mktemp("random")
    spec = {f"acc{i:02d}": _every(DAY1 + timedelta(minutes=i), 3, 600) for i in range(40)}
    write_table(log, "events", _events(spec))
    return log


def _random(log: Path, out: Path, seed: int, share: float) -> dict[str, dict[str, object]]:
    cfg = out.with_suffix(".toml")
    cfg.write_text(f"[random]\nseed = {seed}\nshare = {share}\n")
    result = scan(log, out, detector="random", config=cfg)
    return {r["account_id"]: r for r in result.verdicts.to_pylist()}


def test_random_flags_a_seeded_share_from_the_first_event(
    many_accounts: Path, tmp_path: Path
) -> None:
    a = _random(many_accounts, tmp_path / "a", seed=1, share=0.25)
    again = _random(many_accounts, tmp_path / "b", seed=1, share=0.25)
    other = _random(many_accounts, tmp_path / "c", seed=2, share=0.25)
    flagged = {k for k, r in a.items() if r["action"] == "block"}
    assert len(a) == 40 and len(flagged) == 10
    assert flagged == {k for k, r in again.items() if r["action"] == "block"}
    assert flagged != {k for k, r in other.items() if r["action"] == "block"}
    for k, r in a.items():
        i = int(k.removeprefix("acc"))
        first = DAY1 + timedelta(minutes=i)
        assert r["first_flagged_ts"] == (first if k in flagged else None)
        assert 0.0 <= float(r["score"]) <= 1.0  # type: ignore[arg-type]
    # The flagged ones are those with the highest scores.
    low = min(float(a[k]["score"]) for k in flagged)  # type: ignore[arg-type]
    assert all(float(r["score"]) < low for k, r in a.items() if k not in flagged)  # type: ignore[arg-type]


def test_registry_front_door(volume_log: Path, tmp_path: Path) -> None:
    assert {"volume", "random"} <= set(detector_names())
    assert DEFAULT_DETECTOR in detector_names()
    with pytest.raises(ConfigError, match="Unknown detector 'nope'"):
        scan(volume_log, tmp_path, detector="nope")
    with pytest.raises(ConfigError, match="does not run on the spark engine"):
        get_detector("volume", "spark")

    def everyone_monitored(log_dir: Path, config: Path | None) -> ScanResult:
        base = get_detector("volume")(log_dir, config)
        n = base.verdicts.num_rows
        verdicts = base.verdicts.set_column(
            base.verdicts.schema.get_field_index("action"), "action", pa.array(["monitor"] * n)
        )
        return ScanResult(
            verdicts, base.campaigns, {"links": pa.table({"src": ["A"], "dst": ["B"]})}
        )

    register_detector("test-monitor", everyone_monitored)
    result = scan(volume_log, tmp_path, detector="test-monitor")
    assert set(result.verdicts.column("action").to_pylist()) == {"monitor"}
    assert read_table(tmp_path, "links").num_rows == 1
