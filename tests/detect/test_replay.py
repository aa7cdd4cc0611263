"""The replay: decisions use only the past, and the scan writes what the format says."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
from typer.testing import CliRunner

from distillguard.cli import app
from distillguard.detect import scan
from distillguard.traffic import read_table, write_table

from . import scenes
from .builders import T0, account_table, event_table


def _write_log(path: Path, rows: list[dict[str, object]], accts: list[dict[str, object]]) -> None:
    write_table(path, "events", event_table(rows))
    write_table(path, "accounts", account_table(accts))


def _scene() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    parts = [scenes.hydra(n_accounts=10, n_events=150), scenes.classroom(12), scenes.enterprise()]
    # A second wave of hydra accounts opens a day later: it must be caught by linkage, fast.
    late_rows, late_accts = scenes.hydra(n_accounts=6, n_events=60, start_hours=24, prefix="late")
    parts.append((late_rows, late_accts))
    return [r for p in parts for r in p[0]], [a for p in parts for a in p[1]]


def test_scan_flags_early_and_writes_the_format(tmp_path: Path) -> None:
    rows, accts = _scene()
    _write_log(tmp_path / "log", rows, accts)
    result = scan(tmp_path / "log", tmp_path / "out")
    v = pl.from_arrow(read_table(tmp_path / "out", "verdicts"))
    assert isinstance(v, pl.DataFrame)
    assert v.height == len({r["account_id"] for r in rows})
    hydra = v.filter(pl.col("account_id").str.starts_with("h") | pl.col("account_id").str.starts_with("late"))
    assert set(hydra["action"]) == {"block"}
    benign = v.filter(~pl.col("account_id").is_in(hydra["account_id"].to_list()))
    assert benign["first_flagged_ts"].null_count() == benign.height
    # Late accounts join a known campaign: flagged within an hour of their first request.
    late = hydra.filter(pl.col("account_id").str.starts_with("late"))
    first = T0 + timedelta(hours=24)
    assert all(ts - first < timedelta(hours=1, minutes=30) for ts in late["first_flagged_ts"])
    c = read_table(tmp_path / "out", "campaigns")
    assert c.num_rows >= 1 and c.column("accounts")[0].as_py() >= 10
    assert json.loads(c.column("reasons")[0].as_py())
    assert result.verdicts.num_rows == v.height
    # The periods each account was held flagged: the first starts at its first_flagged_ts,
    # and an account flagged at the end is held to the end (an open period).
    periods = pl.from_arrow(read_table(tmp_path / "out", "flag_periods"))
    assert isinstance(periods, pl.DataFrame)
    first = periods.group_by("account_id").agg(pl.col("start_ts").min(),
                                                pl.col("end_ts").is_null().any().alias("open"))
    got = v.filter(pl.col("first_flagged_ts").is_not_null()).join(first, on="account_id")
    assert got.height == v["first_flagged_ts"].drop_nulls().len() > 0
    assert (got["start_ts"] == got["first_flagged_ts"]).all()
    assert got.filter(pl.col("action") == "block")["open"].all()


def test_changing_the_future_never_changes_past_flags(tmp_path: Path) -> None:
    rows, accts = _scene()
    cut = T0 + timedelta(hours=30)
    _write_log(tmp_path / "a", rows, accts)
    # Same past; a different future: later events dropped, others rewritten as benign chat.
    future = [dict(r) for r in rows if r["ts"] >= cut]  # type: ignore[operator]
    for r in future[::2]:
        r["prompt"] = "hello, how are you"
    past = [r for r in rows if r["ts"] < cut]  # type: ignore[operator]
    _write_log(tmp_path / "b", past + future[::2], accts)
    va = scan(tmp_path / "a", tmp_path / "va").verdicts
    vb = scan(tmp_path / "b", tmp_path / "vb").verdicts

    def before(v: pa.Table) -> dict[str, object]:
        return {
            a: t for a, t in zip(v.column("account_id").to_pylist(),
                                 v.column("first_flagged_ts").to_pylist(), strict=True)
            if t is not None and t <= cut
        }

    assert before(va) and before(va) == before(vb)


def test_scan_cli_and_overrides(tmp_path: Path) -> None:
    rows, accts = scenes.hydra(n_accounts=8, n_events=80)
    _write_log(tmp_path / "log", rows, accts)
    write_table(tmp_path / "log", "overrides", pa.table({"account_id": ["h0"], "action": ["benign"]}))
    res = CliRunner().invoke(app, ["scan", str(tmp_path / "log"), "--out", str(tmp_path / "v")])
    assert res.exit_code == 0, res.output
    v = pl.from_arrow(read_table(tmp_path / "v", "verdicts"))
    assert isinstance(v, pl.DataFrame)
    actions = dict(zip(v["account_id"], v["action"], strict=True))
    assert actions["h0"] == "allow" and actions["h1"] == "block"


def test_console_decisions_next_to_the_verdicts_feed_the_next_scan(tmp_path: Path) -> None:
    rows, accts = scenes.hydra(n_accounts=8, n_events=80)
    _write_log(tmp_path / "log", rows, accts)
    scan(tmp_path / "log", tmp_path / "v")
    (tmp_path / "v" / "overrides.jsonl").write_text(
        '{"account_id": "h3", "action": "benign", "ts": "2026-02-05T00:00:00Z", "by": "ana"}\n'
    )
    again = pl.from_arrow(scan(tmp_path / "log", tmp_path / "v").verdicts)
    assert isinstance(again, pl.DataFrame)
    actions = dict(zip(again["account_id"], again["action"], strict=True))
    assert actions["h3"] == "allow" and actions["h4"] == "block"


def test_partner_indicators_pre_flag_matching_accounts(tmp_path: Path) -> None:
    # A partner saw the proxy pool first and shared it; here one account comes from it.
    rows, accts = scenes.classroom(6)
    for r in rows:
        if r["account_id"] == "s0":
            r["ip"] = "203.0.113.4"
    _write_log(tmp_path / "log", rows, accts)
    bundle = tmp_path / "partner.json"
    bundle.write_text(json.dumps({
        "type": "bundle", "id": "bundle--5d0a1f4e-0d5f-4d0b-9b8e-1f2a3b4c5d6e",
        "objects": [{
            "type": "indicator", "spec_version": "2.1",
            "id": "indicator--0f4a3c52-5b7e-4b59-8a55-0d8e5a9f6a11",
            "created": "2026-02-01T00:00:00.000Z", "modified": "2026-02-01T00:00:00.000Z",
            "pattern": "[ipv4-addr:value = '203.0.113.4']", "pattern_type": "stix",
            "valid_from": "2026-02-01T00:00:00Z", "indicator_types": ["malicious-activity"],
        }],
    }))
    plain = pl.from_arrow(scan(tmp_path / "log", tmp_path / "v1").verdicts)
    shared = pl.from_arrow(scan(tmp_path / "log", tmp_path / "v2", indicators=bundle).verdicts)
    assert isinstance(plain, pl.DataFrame) and isinstance(shared, pl.DataFrame)
    before = dict(zip(plain["account_id"], plain["action"], strict=True))
    after = dict(zip(shared["account_id"], shared["action"], strict=True))
    assert before["s0"] == "allow" and after["s0"] == "monitor"
    assert after["s1"] == before["s1"] == "allow"
    reasons = json.loads(shared.filter(pl.col("account_id") == "s0")["reasons"][0])
    assert any("partners shared" in r for r in reasons)
