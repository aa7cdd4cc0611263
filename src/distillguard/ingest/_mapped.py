"""Any CSV, JSONL or Parquet log with a column map: a small TOML file naming the source field of each column.

    [source]
    kind = "jsonl"            # jsonl, csv or parquet; default from the file name
    ts_unit = "ms"            # unit of epoch numbers in the time field; default sized up

    [columns]                 # format column = dotted path into the source row
    event_id = "request.id"
    ts = "started_at"
    account_id = "consumer.id"
    ip = "client_ip"
    prompt = "ai.proxy.payload.request"   # a chat request (object or JSON text) fills
                                          # prompt, system, turns, tools, model, ...
    response = "ai.proxy.payload.response"

    [constants]               # a fixed value for a column the source lacks
    endpoint = "chat.completions"

A path walks objects by key and lists by index (`messages.0.content`); a key that
itself holds dots is quoted (`headers."x.y"`). A cell holding JSON text is parsed
when the path goes into it. When `prompt` is a chat request or a list of messages,
the columns it implies are filled from it unless the map names them; when
`response` is an API response body, its text and token counts are.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from distillguard._errors import ConfigError
from distillguard.ingest._convert import (
    TIME_UNITS,
    TimeUnit,
    chat_fields,
    json_value,
    parse_ts,
    request_fields,
    response_fields,
)
from distillguard.ingest._files import FILE_KINDS, FileKind, iter_file, local_file
from distillguard.ingest._run import Item, file_items
from distillguard.traffic import EVENTS

_PATH_PART = re.compile(r'"([^"]*)"|([^.]+)')


def _split_path(path: str) -> tuple[str, ...]:
    parts = tuple(m.group(1) if m.group(1) is not None else m.group(2)
                  for m in _PATH_PART.finditer(path))
    if not parts or "".join(parts) == "":
        raise ValueError(path)
    return parts


@dataclass(frozen=True)
class ColumnMap:
    """Which source field fills each format column, and how to read the source.

    Built from TOML with `ColumnMap.load(path)`; every problem in the file is reported at once.
    """

    columns: dict[str, tuple[str, ...]]
    constants: dict[str, Any] = field(default_factory=dict)
    kind: FileKind | None = None
    ts_unit: TimeUnit | None = None

    @classmethod
    def load(cls, path: str | Path) -> ColumnMap:
        p = Path(path)
        try:
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"Cannot read the column map {p}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Column map {p} is not TOML: {exc}") from None
        return cls.from_dict(doc, str(p))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "column map") -> ColumnMap:
        problems: list[str] = []
        known = set(EVENTS.columns)
        for table in doc:
            if table not in ("source", "columns", "constants"):
                problems.append(f"unknown table [{table}] (use [source], [columns], [constants])")
        source = doc.get("source", {})
        kind = source.get("kind")
        if kind is not None and kind not in FILE_KINDS:
            problems.append(f"[source] kind = {kind!r} is none of {', '.join(FILE_KINDS)}")
        unit = source.get("ts_unit")
        if unit is not None and unit not in TIME_UNITS:
            problems.append(f"[source] ts_unit = {unit!r} is none of {', '.join(TIME_UNITS)}")
        for key in source:
            if key not in ("kind", "ts_unit"):
                problems.append(f"unknown key [source] {key}")
        columns: dict[str, tuple[str, ...]] = {}
        for column, path in doc.get("columns", {}).items():
            if column not in known:
                problems.append(f"[columns] {column}: not a column of events "
                                f"(columns: {', '.join(EVENTS.columns)})")
            elif not isinstance(path, str):
                problems.append(f"[columns] {column}: give the source field as a string")
            else:
                try:
                    columns[column] = _split_path(path)
                except ValueError:
                    problems.append(f"[columns] {column}: {path!r} is not a field path")
        constants = dict(doc.get("constants", {}))
        for column in constants:
            if column not in known:
                problems.append(f"[constants] {column}: not a column of events")
            elif column in columns:
                problems.append(f"{column} is both in [columns] and [constants]")
        for column in sorted(EVENTS.required):
            if column not in columns and column not in constants:
                problems.append(f"required column {column!r} is in neither [columns] nor [constants]")
        if problems:
            raise ConfigError(f"{where}: " + "; ".join(problems))
        return cls(columns, constants, cast(FileKind | None, kind), cast(TimeUnit | None, unit))


def pick(row: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` in a row; None where any step is missing. JSON text is parsed on the way."""
    value = row
    for step in path:
        value = json_value(value, ".".join(path)) if isinstance(value, str) else value
        if isinstance(value, Mapping):
            value = value.get(step)
        elif isinstance(value, list) and re.fullmatch(r"-?\d+", step):
            i = int(step)
            value = value[i] if -len(value) <= i < len(value) else None
        else:
            return None
        if value is None:
            return None
    return value


def mapped_event(row: Mapping[str, Any], cmap: ColumnMap) -> dict[str, Any]:
    """The format's columns of one source row, through the column map."""
    out: dict[str, Any] = dict(cmap.constants)
    implied: dict[str, Any] = {}
    for column, path in cmap.columns.items():
        value = pick(row, path)
        if column == "ts" and value is not None:
            value = parse_ts(value, "ts", cmap.ts_unit)
        elif column == "prompt":
            value = json_value(value, "prompt")
            if isinstance(value, Mapping):
                implied.update(request_fields(value))
                value = implied.get("prompt")
            elif isinstance(value, list):
                implied.update(chat_fields(value))
                value = implied.get("prompt")
        elif column == "response":
            value = json_value(value, "response")
            if isinstance(value, Mapping):
                answer = response_fields(value)
                implied.update({k: v for k, v in answer.items() if k != "response_model"})
                value = answer.get("response")
        out[column] = value
    for column, value in implied.items():
        if column in EVENTS.columns and out.get(column) is None and column not in cmap.columns:
            out[column] = value
    return out


@dataclass
class MappedFile:
    """A CSV, JSONL or Parquet log read through a `ColumnMap`."""

    path: Path
    cmap: ColumnMap
    unit: str = "bytes"

    def __post_init__(self) -> None:
        self.path, self.name, self.total = local_file(self.path)

    def __iter__(self) -> Iterator[Item]:
        yield from file_items(self.path, iter_file(self.path, self.cmap.kind), lambda row: mapped_event(row, self.cmap))
