"""What OpenAI and Anthropic batch files share: the request file, keyed by `custom_id`, and the batch object.

A batch's results carry answers but not prompts, so the request file the batch
was created from is read first and kept as a map from `custom_id` to the few
columns it gives. That map is the one thing held in memory; both APIs cap a
batch (OpenAI 50,000 requests, Anthropic 100,000), which bounds it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from distillguard._errors import ConfigError
from distillguard.ingest._convert import RowError, parse_ts, request_fields
from distillguard.ingest._files import BadLine, existing, iter_jsonl, local_file


@dataclass(frozen=True)
class BatchInfo:
    """The batch object as the API returns it (`GET /v1/batches/ID`, `GET /v1/messages/batches/ID`)."""

    batch_id: str | None = None
    created_at: datetime | None = None


def read_batch_info(path: str | Path | None) -> BatchInfo:
    """`id` and `created_at` (unix seconds or RFC 3339) of a batch object saved as JSON."""
    if path is None:
        return BatchInfo()
    p = existing(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Batch object {p} is not JSON: {exc}") from None
    if not isinstance(obj, Mapping) or not isinstance(obj.get("id"), str):
        raise ConfigError(f"Batch object {p} has no string `id`; save the API's batch object.")
    created = obj.get("created_at")
    try:
        ts = parse_ts(created, "ts", "s") if created is not None else None
    except RowError as exc:
        raise ConfigError(f"Batch object {p}: created_at {exc.message}") from None
    return BatchInfo(obj["id"], ts)


# custom_id -> the request's columns, or the reason it cannot give them.
RequestIndex = dict[str, dict[str, Any] | RowError]


def read_requests(path: str | Path, params_of: Callable[[Mapping[str, Any]], Any]) -> RequestIndex:
    """The batch's request file as {custom_id: columns}: JSONL lines or a JSON `{"requests": [...]}`.

    `params_of` picks the request body out of a line (OpenAI `body`, Anthropic `params`).
    """
    p = existing(path)
    index: RequestIndex = {}

    def add(entry: Mapping[str, Any]) -> None:
        cid = entry.get("custom_id")
        if not isinstance(cid, str):
            return
        try:
            index[cid] = request_fields(params_of(entry))
        except RowError as exc:
            index[cid] = exc

    if p.name.lower().endswith(".json"):
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Request file {p} is not JSON: {exc}") from None
        entries = doc.get("requests") if isinstance(doc, Mapping) else doc
        if not isinstance(entries, list):
            raise ConfigError(f"Request file {p} has no `requests` list.")
        for entry in entries:
            if isinstance(entry, Mapping):
                add(entry)
        return index
    for _number, line, _size in iter_jsonl(p):
        if not isinstance(line, BadLine):
            add(line)
    return index


def joined_request(index: RequestIndex, custom_id: Any) -> dict[str, Any]:
    """The request columns for `custom_id`, or RowError naming the prompt it lacks."""
    if not isinstance(custom_id, str):
        raise RowError("event_id", "the result has no custom_id")
    got = index.get(custom_id)
    if got is None:
        raise RowError("prompt", f"custom_id {custom_id!r} is not in the request file")
    if isinstance(got, RowError):
        raise got
    return got


@dataclass
class BatchResults:
    """A batch's results file joined by `custom_id` to its request file (the part both APIs share).

    A subclass names where a request line keeps its request (`REQUEST_FIELD`) and reads its own
    results lines in `__iter__`.
    """

    REQUEST_FIELD = "body"

    path: Path
    requests: Path
    batch: BatchInfo
    account: str | None = None
    unit: str = "bytes"

    def __post_init__(self) -> None:
        self.path, self.name, self.total = local_file(self.path)
        field = self.REQUEST_FIELD
        self._index = read_requests(self.requests, lambda e: e.get(field))
