"""LiteLLM proxy spend logs: its PostgreSQL table `LiteLLM_SpendLogs`, or an export of it.

The columns are those of LiteLLM's `schema.prisma` (model `LiteLLM_SpendLogs`):
`request_id`, `call_type`, `api_key` (the hashed virtual key), `startTime`,
`endTime`, `request_duration_ms`, `model`, `model_group`, `user` (the key's
internal user), `team_id`, `end_user` (the customer the request named),
`requester_ip_address`, `messages`, `response`, `proxy_server_request`,
`status`, `prompt_tokens`, `completion_tokens`, `metadata`. LiteLLM keeps
`messages`/`response`/`proxy_server_request` only with
`store_prompts_in_spend_logs: true`; without them a row has no prompt and is
rejected (the format requires one).

The billing account is the key's team, else its user, else the key itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from distillguard._errors import ConfigError
from distillguard.ingest._convert import (
    RowError,
    json_value,
    parse_ts,
    request_fields,
    response_fields,
    to_float,
    to_str,
)
from distillguard.ingest._files import iter_file, local_file
from distillguard.ingest._run import Item, file_items, row_item
from distillguard.traffic import Location

DEFAULT_TABLE = "LiteLLM_SpendLogs"
# Rows fetched per round trip by the server-side cursor.
FETCH_ROWS = 2_000
# LiteLLM's call types (CallTypes enum, sync and async spellings) as the format's endpoints.
ENDPOINTS = {
    "completion": "chat.completions",
    "acompletion": "chat.completions",
    "text_completion": "completions",
    "atext_completion": "completions",
    "anthropic_messages": "messages",
    "aanthropic_messages": "messages",
    "responses": "responses",
    "aresponses": "responses",
    "embedding": "embeddings",
    "aembedding": "embeddings",
}
# A failed request whose metadata gives no HTTP code.
FAILURE_STATUS = 500
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def spend_log_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """The format's columns of one `LiteLLM_SpendLogs` row (raises RowError on a bad cell)."""
    body = json_value(row.get("proxy_server_request"), "prompt")
    if isinstance(body, Mapping) and isinstance(body.get("body"), Mapping):
        body = body["body"]  # some versions keep the whole request (url, headers, body)
    messages = json_value(row.get("messages"), "prompt")
    request: dict[str, Any] = {}
    if isinstance(body, Mapping) and ("messages" in body or "prompt" in body):
        request = request_fields(body)
    elif messages:
        request = request_fields({"messages": messages} if not isinstance(messages, Mapping)
                                 else messages)
    else:
        raise RowError(
            "prompt",
            "the row stores no prompt (LiteLLM keeps messages only with "
            "`store_prompts_in_spend_logs: true`)",
        )
    answer = response_fields(json_value(row.get("response"), "response"))
    start = parse_ts(row.get("startTime"), "ts") if row.get("startTime") else None
    latency = to_float(row.get("request_duration_ms"), "latency_ms")
    if latency is None and start is not None and row.get("endTime"):
        latency = (parse_ts(row["endTime"], "latency_ms") - start).total_seconds() * 1000
    account = _first(row.get("team_id"), row.get("user"), row.get("api_key"))
    call_type = to_str(row.get("call_type"), "endpoint") or ""
    return {
        "event_id": row.get("request_id"),
        "ts": start,
        "account_id": account,
        "key_id": _first(row.get("api_key")),
        "ip": row.get("requester_ip_address"),
        "user_agent": _user_agent(json_value(row.get("proxy_server_request"), "user_agent")),
        "endpoint": ENDPOINTS.get(call_type, call_type or request.get("endpoint")),
        "model": _first(row.get("model_group"), row.get("model"), request.get("model")),
        "system": request.get("system"),
        "prompt": request.get("prompt"),
        "turns": request.get("turns"),
        "tools": request.get("tools"),
        "response": answer.get("response"),
        "prompt_tokens": _first(row.get("prompt_tokens"), answer.get("prompt_tokens")),
        "completion_tokens": _first(row.get("completion_tokens"), answer.get("completion_tokens")),
        "max_tokens": request.get("max_tokens"),
        "temperature": request.get("temperature"),
        "status": _status(row),
        "latency_ms": latency,
        "end_user": _first(row.get("end_user"), request.get("end_user")),
        "batch_id": None,
    }


def _first(*values: Any) -> Any:
    """The first value that is neither None nor an empty string (LiteLLM defaults to "")."""
    for v in values:
        if v is not None and v != "":
            return v
    return None


def _user_agent(request: Any) -> str | None:
    if isinstance(request, Mapping) and isinstance(request.get("headers"), Mapping):
        for k, v in request["headers"].items():
            if str(k).lower() == "user-agent":
                return to_str(v, "user_agent")
    return None


def _status(row: Mapping[str, Any]) -> int | None:
    status = to_str(row.get("status"), "status")
    if status is None or status == "" or status == "success":
        return None if status is None else 200
    meta = json_value(row.get("metadata"), "status")
    info = meta.get("error_information") if isinstance(meta, Mapping) else None
    code = info.get("error_code") if isinstance(info, Mapping) else None
    if code is not None and str(code).isdigit():
        return int(code)
    return FAILURE_STATUS


@dataclass
class LiteLLMExport:
    """A file exported from `LiteLLM_SpendLogs` (JSONL, CSV or Parquet, one row per line)."""

    path: Path
    unit: str = "bytes"

    def __post_init__(self) -> None:
        self.path, self.name, self.total = local_file(self.path)

    def __iter__(self) -> Iterator[Item]:
        yield from file_items(self.path, iter_file(self.path), spend_log_event)


@dataclass
class LiteLLMDatabase:
    """The live `LiteLLM_SpendLogs` table in LiteLLM's PostgreSQL, read through a server-side cursor.

    `since` is pushed into the query (`"startTime" >= since`, served by LiteLLM's index
    on `startTime`), so an incremental run reads only new rows.
    """

    url: str
    table: str = DEFAULT_TABLE
    since: datetime | None = None
    unit: str = "rows"

    def __post_init__(self) -> None:
        parts = self.table.split(".")
        if len(parts) > 2 or not all(_IDENT.fullmatch(p) for p in parts):
            raise ConfigError(
                f"Table {self.table!r} is not a table name; give NAME or SCHEMA.NAME "
                "(letters, digits, underscores)."
            )
        self._qualified = ".".join(f'"{p}"' for p in parts)
        self.name = f"{_redact(self.url)} {self.table}"
        self._total: int | None = None

    @property
    def total(self) -> int | None:
        """Rows to read (one count query, served by LiteLLM's index on `startTime`)."""
        if self._total is None:
            import psycopg

            where, params = self._where()
            with self._connect() as conn, conn.cursor() as cur:
                try:
                    cur.execute(f"SELECT count(*) FROM {self._qualified}{where}", params)
                except psycopg.Error as exc:
                    raise ConfigError(
                        f"Reading {self.table} from {_redact(self.url)} failed: {exc}"
                    ) from exc
                got = cur.fetchone()
                self._total = int(got[0]) if got else None
        return self._total

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError(
                "Reading LiteLLM's PostgreSQL needs psycopg: pip install 'distillguard[gateway]'"
            ) from exc
        try:
            return psycopg.connect(self.url)
        except psycopg.Error as exc:
            raise ConfigError(f"Cannot connect to {_redact(self.url)}: {exc}") from exc

    def _where(self) -> tuple[str, list[Any]]:
        if self.since is None:
            return "", []
        return ' WHERE "startTime" >= %s', [self.since.replace(tzinfo=None)]

    def __iter__(self) -> Iterator[Item]:
        import psycopg
        from psycopg.rows import dict_row

        where, params = self._where()
        with self._connect() as conn:
            try:
                with conn.cursor(name="distillguard_ingest", row_factory=dict_row) as cur:
                    cur.itersize = FETCH_ROWS
                    cur.execute(
                        f'SELECT * FROM {self._qualified}{where} ORDER BY "startTime", request_id',
                        params,
                    )
                    for number, row in enumerate(cur, start=1):
                        loc = Location(f"{self.table} request_id={row.get('request_id')}", number)
                        yield row_item(loc, row, spend_log_event)
            except psycopg.Error as exc:
                raise ConfigError(f"Reading {self.table} from {_redact(self.url)} failed: {exc}") from exc


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def litellm_source(
    source: str | Path, *, table: str = DEFAULT_TABLE, since: datetime | None = None
) -> LiteLLMDatabase | LiteLLMExport:
    """LiteLLM spend logs from a `postgresql://` URL (the live table) or an exported file."""
    text = str(source)
    if text.startswith(("postgresql://", "postgres://")):
        return LiteLLMDatabase(text, table, since)
    return LiteLLMExport(Path(source))
