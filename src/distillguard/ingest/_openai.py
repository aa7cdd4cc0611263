"""OpenAI-style JSONL: Batch API output files joined to their input file, and request/response logs.

Batch API (https://platform.openai.com/docs/api-reference/batch): an input line is
`{"custom_id", "method", "url", "body": <request>}`; an output (or error) line is
`{"id", "custom_id", "response": {"status_code", "request_id", "body": <response>},
"error": {"code", "message"} | null}`.

Request logs (one exchange per line, as proxies and in-house gateways write them):
`{"request": <request body>, "response": <response body>}` with optional top-level
`id`, `timestamp` (or `ts`, `created_at`), `account_id`, `key_id`, `ip`,
`user_agent`, `status` (or `status_code`), `latency_ms`. A batch input line with
a `response` added reads the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillguard.ingest._batch import BatchResults, joined_request
from distillguard.ingest._convert import request_fields, response_fields
from distillguard.ingest._files import iter_jsonl, local_file
from distillguard.ingest._run import Item, file_items

# Output-file error codes of requests that never ran (not an answered exchange).
NOT_RUN = frozenset({"batch_expired", "batch_cancelled"})
_ENDPOINT_OF_URL = {
    "/v1/chat/completions": "chat.completions",
    "/v1/completions": "completions",
    "/v1/responses": "responses",
}


def _not_run(line: Mapping[str, Any]) -> bool:
    """The batch ended before this request ran: nothing was exchanged."""
    error = line.get("error")
    return isinstance(error, Mapping) and error.get("code") in NOT_RUN and not line.get("response")


@dataclass
class OpenAIBatch(BatchResults):
    """One OpenAI Batch API output (or error) file, joined by `custom_id` to its input file.

    Every event gets the batch's id and, as `ts`, the batch's creation time (from the batch
    object, else each answer's `created`); the account is `account` (a batch file names none).
    """

    def __iter__(self) -> Iterator[Item]:
        yield from file_items(self.path, iter_jsonl(self.path), self._event, _not_run)

    def _event(self, line: Mapping[str, Any]) -> dict[str, Any]:
        request = joined_request(self._index, line.get("custom_id"))
        response = line.get("response") if isinstance(line.get("response"), Mapping) else {}
        body = response.get("body") if isinstance(response, Mapping) else None
        answer = response_fields(body)
        created = body.get("created") if isinstance(body, Mapping) else None
        status = response.get("status_code") if isinstance(response, Mapping) else None
        if status is None and line.get("error"):
            status = 500
        return {
            **request,
            "event_id": line.get("id") or f"{self.batch.batch_id}:{line.get('custom_id')}",
            "ts": self.batch.created_at or created,
            "account_id": self.account,
            "model": request.get("model") or answer.get("response_model"),
            "response": answer.get("response"),
            "prompt_tokens": answer.get("prompt_tokens"),
            "completion_tokens": answer.get("completion_tokens"),
            "status": status,
            "batch_id": self.batch.batch_id,
        }


@dataclass
class OpenAILog:
    """A JSONL log of OpenAI-style exchanges, one `{"request", "response", ...}` object a line."""

    path: Path
    account: str | None = None
    unit: str = "bytes"

    def __post_init__(self) -> None:
        self.path, self.name, self.total = local_file(self.path)

    def __iter__(self) -> Iterator[Item]:
        yield from file_items(self.path, iter_jsonl(self.path), lambda line: log_line_event(line, self.account))


def log_line_event(line: Mapping[str, Any], account: str | None = None) -> dict[str, Any]:
    """The format's columns of one request/response log line."""
    body = line.get("request", line.get("body"))
    request = request_fields(body)
    raw = line.get("response")
    status = line.get("status", line.get("status_code"))
    if isinstance(raw, Mapping) and "body" in raw and "status_code" in raw:  # batch-output shape
        status = status if status is not None else raw.get("status_code")
        raw = raw.get("body")
    answer = response_fields(raw)
    created = raw.get("created") if isinstance(raw, Mapping) else None
    event_id = line.get("id") or line.get("custom_id")
    if event_id is None and isinstance(raw, Mapping):
        event_id = raw.get("id")
    endpoint = _ENDPOINT_OF_URL.get(str(line.get("url", "")), request.get("endpoint"))
    return {
        **request,
        "event_id": event_id,
        "ts": _first_key(line, ("timestamp", "ts", "created_at")) or created,
        "account_id": line.get("account_id") or account,
        "key_id": line.get("key_id"),
        "ip": line.get("ip"),
        "user_agent": line.get("user_agent"),
        "endpoint": endpoint,
        "model": request.get("model") or answer.get("response_model"),
        "response": answer.get("response"),
        "prompt_tokens": answer.get("prompt_tokens"),
        "completion_tokens": answer.get("completion_tokens"),
        "status": status,
        "latency_ms": line.get("latency_ms"),
        "end_user": line.get("end_user") or request.get("end_user"),
        "batch_id": line.get("batch_id"),
    }


def _first_key(line: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if line.get(k) is not None:
            return line[k]
    return None

