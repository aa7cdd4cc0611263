"""Every source format round-trips its fixture (in that product's own format) into a valid, scannable log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from distillguard.cli import app
from distillguard.detect import scan
from distillguard.traffic import read_table, validate_log

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class Case:
    fmt: str
    source: str
    options: tuple[str, ...]
    written: int
    rejected: dict[tuple[int, str | None], str]  # (row, column) -> words in the message
    checks: dict[str, dict[str, Any]]  # event_id -> expected columns


CASES = [
    Case(
        "litellm", "litellm_spend_logs.jsonl", (), 6,
        {(7, "prompt"): "store_prompts_in_spend_logs", (8, "ts"): "not an ISO-8601"},
        {
            "chatcmpl-litellm-0000": {
                "account_id": "team-acme", "end_user": "customer-0", "model": "gpt-4o-mini",
                "system": "You are a helpful assistant.", "turns": 2, "status": 200,
                "prompt": "Give three tips for staying healthy.", "latency_ms": 1355.0,
                "endpoint": "chat.completions", "ip": "203.0.113.10", "max_tokens": 256,
            },
            # no team: the key's internal user is the account
            "chatcmpl-litellm-0001": {"account_id": "user-7", "end_user": "customer-1"},
            "litellm-fail-0001": {"status": 429, "latency_ms": 200.0, "response": None},
        },
    ),
    Case(
        "openai", "openai_requests.jsonl", ("--account", "acct-default"), 4,
        {(5, "prompt"): "neither `messages` nor `prompt`"},
        {
            "log-0": {"account_id": "acct-17", "tools": 1, "end_user": "u0", "status": 200,
                      "prompt": "Name three rivers in Africa.", "response": "Log answer 0."},
            "log-3": {"account_id": "acct-default", "endpoint": "completions",
                      "prompt": "Once upon a time", "response": " there was a fox."},
        },
    ),
    Case(
        "openai-batch", "openai_batch_output.jsonl",
        ("--requests", "openai_batch_input.jsonl", "--batch", "openai_batch.json",
         "--account", "acct-batch"),
        5,
        {(7, "prompt"): "request-99", (8, None): "not JSON"},
        {
            "batch_req_002": {"batch_id": "batch_abc123", "end_user": "end-user-42",
                              "account_id": "acct-batch", "prompt_tokens": 24,
                              "prompt": "List five prime numbers greater than 100."},
            "batch_req_006": {"status": 400, "response": None},
        },
    ),
    Case(
        "anthropic-batch", "anthropic_batch_results.jsonl",
        ("--requests", "anthropic_batch_requests.json", "--batch", "anthropic_batch.json",
         "--account", "acct-claude"),
        3,
        {(5, "prompt"): "my-request-5"},
        {
            "msg_01FqfsLoHwgeFbguDgpz48m7": {
                "system": "You are a poet.", "end_user": "13803d75-b4b5-4c3e-b2a2-6f21399b021b",
                "batch_id": "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d", "endpoint": "messages",
                "completion_tokens": 30, "prompt": "Write a limerick about a cat.",
            },
            "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d:my-request-2": {"status": 400, "response": None},
        },
    ),
    Case(
        "mapped", "kong_http_log.jsonl", ("--map", "kong.toml"), 3,
        {(4, "prompt"): "missing"},
        {
            "6f1f0b2a3c02": {"account_id": "acme-corp", "prompt": "日本の首都はどこですか？",
                             "system": "Be brief.", "end_user": "shop-customer-2",
                             "user_agent": "curl/8.5.0", "latency_ms": 1514.0,
                             "response": "Kong answer 2", "max_tokens": 128},
        },
    ),
    Case(
        "mapped", "inhouse.csv", ("--map", "inhouse.toml"), 3,
        {(4, "account_id"): "missing", (5, "prompt_tokens"): "'lots'"},
        {
            "req-0001": {"ip": "10.1.2.3", "end_user": "tenant-9", "prompt_tokens": 14},
            "req-0003": {"ip": "2001:db8::7", "end_user": None},
        },
    ),
]


def _run(args: list[str]) -> Any:
    return CliRunner().invoke(app, args, catch_exceptions=False)


def _args(case: Case, out: Path, rejects: Path) -> list[str]:
    opts = [str(FIXTURES / o) if (FIXTURES / o).exists() else o for o in case.options]
    return ["ingest", str(FIXTURES / case.source), "--from", case.fmt, "--out", str(out),
            "--rejects", str(rejects), *opts]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.fmt}:{c.source}" for c in CASES])
def test_fixture_round_trips_into_a_valid_scannable_log(case: Case, tmp_path: Path) -> None:
    out, rejects = tmp_path / "log", tmp_path / "rejects.jsonl"
    result = _run(_args(case, out, rejects))
    assert result.exit_code == 1, result.output  # some rows rejected, the rest written
    events = {r["event_id"]: r for r in read_table(out, "events").to_pylist()}
    assert len(events) == case.written
    for event_id, expected in case.checks.items():
        got = {k: events[event_id][k] for k in expected}
        assert got == expected
    # every bad row is named with its file, row and column, and nothing else is
    lines = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert {(x["row"], x["column"]) for x in lines} == set(case.rejected)
    for x in lines:
        assert x["file"].endswith(case.source)
        assert case.rejected[(x["row"], x["column"])] in x["message"]
    report = validate_log(out)
    assert report.ok and not report.problems, [str(p) for p in report.problems]
    verdicts = scan(out, tmp_path / "scan").verdicts
    assert sorted(verdicts.column("account_id").to_pylist()) == sorted(
        {e["account_id"] for e in events.values()}
    )


def test_mapped_parquet_reads_like_the_csv_it_came_from(tmp_path: Path) -> None:
    table = pacsv.read_csv(
        FIXTURES / "inhouse.csv",
        convert_options=pacsv.ConvertOptions(column_types={"in_tokens": "string"},
                                             strings_can_be_null=True),
    )
    pq.write_table(table, tmp_path / "inhouse.parquet")
    for name, src in (("csv", FIXTURES / "inhouse.csv"), ("parquet", tmp_path / "inhouse.parquet")):
        _run(["ingest", str(src), "--from", "mapped", "--map", str(FIXTURES / "inhouse.toml"),
              "--out", str(tmp_path / name)])
    a = read_table(tmp_path / "csv", "events").sort_by("event_id")
    b = read_table(tmp_path / "parquet", "events").sort_by("event_id")
    assert a.num_rows == 3
    assert a.equals(b)


def test_batch_formats_say_which_options_they_need(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["ingest", str(FIXTURES / "anthropic_batch_results.jsonl"), "--from",
              "anthropic-batch", "--out", str(tmp_path / "x")],
    )
    assert result.exit_code != 0
    message = str(result.exception)
    assert "--requests" in message and "--batch" in message and "--account" in message


def test_unknown_format_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["ingest", str(FIXTURES / "inhouse.csv"), "--from", "splunk", "--out", str(tmp_path)]
    )
    assert "Unknown source format 'splunk'" in str(result.exception)
