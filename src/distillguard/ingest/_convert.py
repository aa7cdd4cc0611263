"""Values from a provider's logs as values of the traffic log format, one row at a time.

Every function here either returns a clean value or raises `RowError` naming the
format column it was filling, so a bad cell rejects its row (with file, row and
column) and never the whole source.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from distillguard.traffic import EVENTS

TimeUnit = Literal["s", "ms", "us", "ns"]
TIME_UNITS: tuple[TimeUnit, ...] = ("s", "ms", "us", "ns")

# A bare number in a time column: below 1e11 it is seconds (until year 5138), below 1e14
# milliseconds, below 1e17 microseconds, else nanoseconds. A column map can name the unit.
_EPOCH_MS_FROM = 1e11
_EPOCH_US_FROM = 1e14
_EPOCH_NS_FROM = 1e17
_PER_SECOND: dict[TimeUnit, float] = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}

# The end user is declared by the client: anyone holding a key can send a megabyte in it.
END_USER_MAX_CHARS = 256

_INT_BOUNDS = {"int16": (-(2**15), 2**15 - 1), "int32": (-(2**31), 2**31 - 1)}
# Each integer column's range, by its type in the format (int16 status, int32 counts).
_BOUNDS = {
    f.name: _INT_BOUNDS[str(f.type)] for f in EVENTS.schema if str(f.type) in _INT_BOUNDS
}
_IP_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.%]+)\]|(?P<v4>\d{1,3}(?:\.\d{1,3}){3})):\d{1,5}$")


class RowError(Exception):
    """One cell of one source row cannot fill `column` of the format."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def parse_ts(value: Any, column: str = "ts", unit: TimeUnit | None = None) -> datetime:
    """A UTC datetime from an ISO-8601 string, a datetime, or an epoch number.

    Naive values are read as UTC (LiteLLM's `TIMESTAMP(3)` columns and most exports
    store UTC without a zone). Epoch numbers use `unit`, or are sized up when it is None.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, bool):
        raise RowError(column, f"expected a timestamp, got the boolean {value}")
    if isinstance(value, int | float):
        return _from_epoch(float(value), column, unit)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            return _from_epoch(float(text), column, unit)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise RowError(column, f"{_short(value)} is not an ISO-8601 timestamp") from None
        return parse_ts(parsed, column)
    raise RowError(column, f"expected a timestamp, got {_short(value)}")


def _from_epoch(number: float, column: str, unit: TimeUnit | None) -> datetime:
    if unit is None:
        size = abs(number)
        unit = (
            "ns" if size >= _EPOCH_NS_FROM
            else "us" if size >= _EPOCH_US_FROM
            else "ms" if size >= _EPOCH_MS_FROM
            else "s"
        )
    try:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=number / _PER_SECOND[unit])
    except OverflowError:
        raise RowError(column, f"{number} {unit} since 1970 is out of range") from None


def to_int(value: Any, column: str) -> int | None:
    """An integer that fits the format column's type, or None for an empty cell."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise RowError(column, f"expected an integer, got the boolean {value}")
    try:
        number = float(value) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise RowError(column, f"expected an integer, got {_short(value)}") from None
    if isinstance(number, float):
        if not number.is_integer():
            raise RowError(column, f"expected an integer, got {_short(value)}")
        number = int(number)
    low, high = _BOUNDS[column]
    if not low <= number <= high:
        raise RowError(column, f"{number} is out of range [{low}, {high}]")
    return number


def to_float(value: Any, column: str) -> float | None:
    """A finite float, or None for an empty cell."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise RowError(column, f"expected a number, got the boolean {value}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RowError(column, f"expected a number, got {_short(value)}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise RowError(column, f"expected a finite number, got {value}")
    return number


def to_str(value: Any, column: str) -> str | None:
    """Text for a string column; numbers become their decimal text, JSON stays JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    raise RowError(column, f"expected text, got {type(value).__name__}")


def client_ip(value: Any) -> str | None:
    """The address without the port that proxies log with it (`1.2.3.4:5678`, `[::1]:80`)."""
    text = to_str(value, "ip")
    if not text:
        return None
    text = text.strip()
    # X-Forwarded-For style lists: the first entry is the client.
    text = text.split(",")[0].strip()
    m = _IP_PORT.match(text)
    if m:
        return m.group("v6") or m.group("v4")
    return text


def end_user(value: Any) -> str | None:
    """The declared end user, cut to END_USER_MAX_CHARS; an empty value is none."""
    text = to_str(value, "end_user")
    if text is None or not text.strip():
        return None
    return text[:END_USER_MAX_CHARS]


def json_value(value: Any, column: str) -> Any:
    """A JSON column as stored by a database (already parsed) or an export (a JSON string)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text[0] in "{[":
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise RowError(column, f"invalid JSON ({exc.msg} at char {exc.pos})") from None
    return value


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    if isinstance(content, Mapping) and isinstance(content.get("text"), str):
        return str(content["text"])
    return ""


def chat_fields(messages: Any, system: Any = None, column: str = "prompt") -> dict[str, Any]:
    """`system`, `prompt` (the final user turn) and `turns` of a chat request's messages.

    Accepts OpenAI messages (system turns inside the list) and Anthropic ones (system
    given apart as a string or a list of text blocks). A bare string is a one-turn prompt.
    """
    if isinstance(messages, str):
        return {"system": content_text(system) or None, "prompt": messages, "turns": 1}
    if not isinstance(messages, list | tuple) or not messages:
        raise RowError(column, "the request has no messages")
    systems = [content_text(system)] if system else []
    prompt: str | None = None
    for msg in messages:
        if not isinstance(msg, dict):
            raise RowError(column, f"a message is {type(msg).__name__}, not an object")
        role = msg.get("role")
        if role in ("system", "developer"):
            systems.append(content_text(msg.get("content")))
        elif role == "user":
            prompt = content_text(msg.get("content"))
    if prompt is None:
        raise RowError(column, "the request has no user message")
    return {
        "system": "\n\n".join(s for s in systems if s) or None,
        "prompt": prompt,
        "turns": len(messages),
    }


def request_fields(body: Any, column: str = "prompt") -> dict[str, Any]:
    """The format's columns found in an OpenAI or Anthropic request body."""
    if not isinstance(body, Mapping):
        raise RowError(column, "the request body is not a JSON object")
    out: dict[str, Any] = {}
    if "messages" in body:
        out.update(chat_fields(body["messages"], body.get("system"), column))
        out["endpoint"] = "messages" if _is_anthropic_request(body) else "chat.completions"
    elif "prompt" in body:
        prompt = body["prompt"]
        if isinstance(prompt, list):  # completions accept a list; one exchange per prompt is rare
            prompt = "\n".join(str(p) for p in prompt)
        out.update({"prompt": to_str(prompt, column), "turns": 1, "endpoint": "completions"})
    else:
        raise RowError(column, "the request body has neither `messages` nor `prompt`")
    out["model"] = body.get("model")
    tools = body.get("tools") or body.get("functions")
    out["tools"] = len(tools) if isinstance(tools, list) else None
    out["max_tokens"] = body.get("max_tokens", body.get("max_completion_tokens"))
    out["temperature"] = body.get("temperature")
    metadata = body.get("metadata")
    declared = body.get("user") or body.get("safety_identifier")
    if declared is None and isinstance(metadata, Mapping):
        declared = metadata.get("user_id")
    out["end_user"] = declared
    return out


def _is_anthropic_request(body: Mapping[str, Any]) -> bool:
    # Anthropic's Messages API keeps the system prompt outside the messages and needs max_tokens.
    meta = body.get("metadata")
    return "system" in body or (isinstance(meta, Mapping) and "user_id" in meta)


def response_fields(body: Any) -> dict[str, Any]:
    """Answer text and token counts of an OpenAI (chat or text completion) or Anthropic response."""
    if not isinstance(body, Mapping):
        return {}
    out: dict[str, Any] = {}
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        first = choices[0]
        message = first.get("message")
        if isinstance(message, Mapping):
            out["response"] = content_text(message.get("content"))
        elif isinstance(first.get("text"), str):
            out["response"] = first["text"]
    elif "content" in body and body.get("type", "message") == "message":
        out["response"] = content_text(body.get("content"))
    usage = body.get("usage")
    if isinstance(usage, Mapping):
        out["prompt_tokens"] = usage.get("prompt_tokens", usage.get("input_tokens"))
        out["completion_tokens"] = usage.get("completion_tokens", usage.get("output_tokens"))
    if body.get("model"):
        out["response_model"] = body["model"]
    return out


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Typed conversion of every column of the format, applied to each row before it is written.
_REQUIRED = ("event_id", "ts", "account_id", "model", "prompt")
_COLUMNS = tuple(EVENTS.columns)
_INT_COLUMNS = ("turns", "tools", "prompt_tokens", "completion_tokens", "max_tokens", "status")
_FLOAT_COLUMNS = ("temperature", "latency_ms")


def normalize_event(values: Mapping[str, Any], ts_unit: TimeUnit | None = None) -> dict[str, Any]:
    """One row of `events`: every column typed, required ones present, extras dropped."""
    row: dict[str, Any] = {}
    for column in _COLUMNS:
        value = values.get(column)
        if column == "ts":
            row[column] = None if value is None or value == "" else parse_ts(value, "ts", ts_unit)
        elif column in _INT_COLUMNS:
            row[column] = to_int(value, column)
        elif column in _FLOAT_COLUMNS:
            row[column] = to_float(value, column)
        elif column == "ip":
            row[column] = client_ip(value)
        elif column == "end_user":
            row[column] = end_user(value)
        else:
            row[column] = to_str(value, column)
    for column in _REQUIRED:
        if row[column] is None or (column != "prompt" and row[column] == ""):
            raise RowError(column, f"required column {column!r} is missing or empty")
    return row
