"""Anthropic Message Batches results, joined by `custom_id` to the batch's requests.

Results file (`GET /v1/messages/batches/ID/results`), one line per request:
`{"custom_id", "result": {"type": "succeeded", "message": <Message>}}`, or
`"errored"` with `error: {"type": "error", "error": {"type", "message"}}`, or
`"canceled"` / `"expired"` (the request never ran: skipped). The requests are the
`requests` list of the create call (`{"custom_id", "params": <Messages request>}`),
as that JSON body or one request a line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from distillguard.ingest._batch import BatchResults, joined_request
from distillguard.ingest._convert import RowError, response_fields
from distillguard.ingest._files import iter_jsonl
from distillguard.ingest._run import Item, file_items

NOT_RUN = frozenset({"canceled", "expired"})
# HTTP status of each Anthropic error type (https://docs.anthropic.com/en/api/errors).
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
UNKNOWN_ERROR_STATUS = 500


@dataclass
class AnthropicBatch(BatchResults):
    """One Message Batches results file; `ts` is the batch's `created_at` (the batch object is required)."""

    REQUEST_FIELD = "params"

    def __iter__(self) -> Iterator[Item]:
        yield from file_items(self.path, iter_jsonl(self.path), self._event, lambda line: _result_kind(line) in NOT_RUN)

    def _event(self, line: Mapping[str, Any]) -> dict[str, Any]:
        result: Any = line.get("result")
        kind = _result_kind(line)
        if kind not in ("succeeded", "errored"):
            raise RowError("response", f"result type {kind!r} is none of succeeded, errored, "
                           "canceled, expired")
        request = joined_request(self._index, line.get("custom_id"))
        message = result.get("message") if kind == "succeeded" else None
        answer = response_fields(message)
        return {
            **request,
            "event_id": (message or {}).get("id") or f"{self.batch.batch_id}:{line['custom_id']}",
            "ts": self.batch.created_at,
            "account_id": self.account,
            "endpoint": "messages",
            "model": request.get("model") or answer.get("response_model"),
            "response": answer.get("response"),
            "prompt_tokens": answer.get("prompt_tokens"),
            "completion_tokens": answer.get("completion_tokens"),
            "status": 200 if kind == "succeeded" else _error_status(result),
            "batch_id": self.batch.batch_id,
        }


def _result_kind(line: Mapping[str, Any]) -> Any:
    """The result's `type` (succeeded, errored, canceled, expired), None without one."""
    result = line.get("result")
    return result.get("type") if isinstance(result, Mapping) else None


def _error_status(result: Mapping[str, Any]) -> int:
    outer = result.get("error")
    inner = outer.get("error") if isinstance(outer, Mapping) else None
    kind = inner.get("type") if isinstance(inner, Mapping) else None
    return ERROR_STATUS.get(str(kind), UNKNOWN_ERROR_STATUS)
