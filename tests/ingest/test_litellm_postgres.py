"""LiteLLM's live `LiteLLM_SpendLogs` table on the real PostgreSQL, its CSV export, and `--since last`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from distillguard.ingest import ingest, open_source
from distillguard.traffic import read_table, validate_log

FIXTURES = Path(__file__).parent / "fixtures"

# The table as LiteLLM's Prisma migrations create it (schema.prisma, model LiteLLM_SpendLogs).
SPEND_LOGS_DDL = """
CREATE TABLE {schema}."LiteLLM_SpendLogs" (
    "request_id" TEXT NOT NULL,
    "call_type" TEXT NOT NULL,
    "api_key" TEXT NOT NULL DEFAULT '',
    "spend" DOUBLE PRECISION NOT NULL DEFAULT 0.0,
    "total_tokens" INTEGER NOT NULL DEFAULT 0,
    "prompt_tokens" INTEGER NOT NULL DEFAULT 0,
    "completion_tokens" INTEGER NOT NULL DEFAULT 0,
    "startTime" TIMESTAMP(3) NOT NULL,
    "endTime" TIMESTAMP(3) NOT NULL,
    "request_duration_ms" INTEGER,
    "completionStartTime" TIMESTAMP(3),
    "model" TEXT NOT NULL DEFAULT '',
    "model_id" TEXT DEFAULT '',
    "model_group" TEXT DEFAULT '',
    "custom_llm_provider" TEXT DEFAULT '',
    "api_base" TEXT DEFAULT '',
    "user" TEXT DEFAULT '',
    "metadata" JSONB DEFAULT '{{}}',
    "cache_hit" TEXT DEFAULT '',
    "cache_key" TEXT DEFAULT '',
    "request_tags" JSONB DEFAULT '[]',
    "team_id" TEXT,
    "organization_id" TEXT,
    "end_user" TEXT,
    "requester_ip_address" TEXT,
    "messages" JSONB DEFAULT '{{}}',
    "response" JSONB DEFAULT '{{}}',
    "session_id" TEXT,
    "status" TEXT,
    "mcp_namespaced_tool_name" TEXT,
    "agent_id" TEXT,
    "proxy_server_request" JSONB DEFAULT '{{}}',
    CONSTRAINT "LiteLLM_SpendLogs_pkey" PRIMARY KEY ("request_id")
);
CREATE INDEX ON {schema}."LiteLLM_SpendLogs"("startTime");
CREATE INDEX ON {schema}."LiteLLM_SpendLogs"("end_user");
"""
JSON_COLUMNS = ("metadata", "request_tags", "messages", "response", "proxy_server_request")


def _fixture_rows() -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in (FIXTURES / "litellm_spend_logs.jsonl").read_text().splitlines()]
    return [r for r in rows if r["startTime"] != "yesterday"]  # PostgreSQL would refuse it


@pytest.fixture
def spend_logs(postgres_url: str) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    schema = f"dg_ingest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(SPEND_LOGS_DDL.format(schema=f'"{schema}"'))
        try:
            yield conn, schema
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _insert(conn: psycopg.Connection[Any], schema: str, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("%s" for _ in columns)
    with conn.cursor() as cur:
        for r in rows:
            values = [json.dumps(r[c]) if c in JSON_COLUMNS else r[c] for c in columns]
            cur.execute(f'INSERT INTO "{schema}"."LiteLLM_SpendLogs" ({names}) VALUES ({marks})',
                        values)


def test_live_table_and_its_csv_export_give_the_same_log_as_the_json_export(
    spend_logs: tuple[psycopg.Connection[Any], str], postgres_url: str, tmp_path: Path
) -> None:
    conn, schema = spend_logs
    _insert(conn, schema, _fixture_rows())
    table = f"{schema}.LiteLLM_SpendLogs"

    live = ingest(open_source("litellm", postgres_url, table=table), tmp_path / "live")
    assert (live.read, live.written, live.rejected) == (7, 6, 1)
    assert live.problems[0].examples[0].column == "prompt"
    assert "request_id=litellm-noprompt-0001" in str(live.problems[0].examples[0].file)

    # `COPY ... TO STDOUT WITH CSV HEADER`: what a DBA hands over as an export
    csv_path = tmp_path / "spend_logs.csv"
    with conn.cursor() as cur, open(csv_path, "wb") as fh, cur.copy(
        f'COPY "{schema}"."LiteLLM_SpendLogs" TO STDOUT WITH (FORMAT csv, HEADER true)'
    ) as copy:
        for block in copy:
            fh.write(block)
    exported = ingest(open_source("litellm", csv_path), tmp_path / "csv")
    assert exported.written == 6

    json_export = ingest(open_source("litellm", FIXTURES / "litellm_spend_logs.jsonl"),
                         tmp_path / "json")
    assert json_export.written == 6 and json_export.rejected == 2
    a, b, c = (read_table(tmp_path / d, "events").sort_by("event_id") for d in ("live", "csv", "json"))
    assert a.equals(b)
    assert a.equals(c)
    assert validate_log(tmp_path / "live").ok


def test_since_last_appends_only_new_rows(
    spend_logs: tuple[psycopg.Connection[Any], str], postgres_url: str, tmp_path: Path
) -> None:
    conn, schema = spend_logs
    rows = _fixture_rows()
    table = f"{schema}.LiteLLM_SpendLogs"
    out = tmp_path / "log"
    _insert(conn, schema, rows[:3])
    first = ingest(open_source("litellm", postgres_url, table=table), out)
    assert first.written == 3
    # A row at the very same instant as the last one ingested must still come in once.
    same_instant = {**rows[3], "request_id": "late-same-ts", "startTime": rows[2]["startTime"]}
    _insert(conn, schema, [*rows[3:], same_instant])
    second = ingest(open_source("litellm", postgres_url, table=table), out, since="last")
    assert second.written == 4  # rows 3, 4, 5 (6 has no prompt) and the same-instant one
    assert second.rejected == 1
    third = ingest(open_source("litellm", postgres_url, table=table), out, since="last")
    assert third.written == 0
    ids = read_table(out, "events").column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == 7
    assert validate_log(out).ok


def test_bad_table_name_is_refused_before_any_sql(postgres_url: str) -> None:
    from distillguard._errors import ConfigError

    with pytest.raises(ConfigError, match="not a table name"):
        open_source("litellm", postgres_url, table='x"; DROP TABLE y; --')
