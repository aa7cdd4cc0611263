"""Streaming readers of JSON Lines, CSV and Parquet files, row by row, with where each row is.

Each yields `(row_number, value_or_error, bytes_consumed)`: the row number is the
1-based line (JSONL), data row after the header (CSV) or row (Parquet), and the
byte count drives the progress bar.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, cast

from distillguard._errors import ConfigError

FileKind = Literal["jsonl", "csv", "parquet"]
FILE_KINDS: tuple[FileKind, ...] = ("jsonl", "csv", "parquet")

# CSV cells may hold whole prompts and JSON bodies; the csv module's default cap is 128 KiB.
CSV_FIELD_LIMIT = 64 * 1024 * 1024
# Parquet rows decoded at a time.
PARQUET_BATCH = 4_096


class BadLine(Exception):
    """A line or row that is not a readable record."""


def file_kind(path: Path) -> FileKind:
    """The kind of a file from its name (`.jsonl`, `.ndjson`, `.csv`, `.parquet`, `.gz`)."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    raise ConfigError(
        f"Cannot tell the format of {path} from its name; name it .jsonl, .csv or .parquet "
        "(optionally .gz), or give the kind in the column map's [source] table."
    )


def existing(path: str | Path) -> Path:
    """`path` if it is a file, else a ConfigError that names it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Source file {p} does not exist or is not a file.")
    return p


def _open_binary(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    raw = open(path, "rb")  # noqa: SIM115 - the caller closes it
    if path.name.lower().endswith(".gz"):
        return raw, cast(IO[bytes], gzip.GzipFile(fileobj=raw))
    return raw, raw


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadLine, int]]:
    """Each line's JSON object; a line that is not one comes back as BadLine. Blank lines skip."""
    raw, fh = _open_binary(path)
    with raw, fh:
        before = 0
        for number, line in enumerate(fh, start=1):
            now = raw.tell()
            consumed, before = now - before, now
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                yield number, BadLine(f"not JSON: {exc}"), consumed
                continue
            if not isinstance(value, dict):
                yield number, BadLine(f"a JSON {type(value).__name__}, not an object"), consumed
                continue
            yield number, value, consumed


def iter_csv(
    path: Path, delimiter: str | None = None
) -> Iterator[tuple[int, dict[str, Any] | BadLine, int]]:
    """Each data row as a dict keyed by the header; empty cells become None."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    raw, fh = _open_binary(path)
    sep = delimiter or ("\t" if ".tsv" in path.name.lower() else ",")
    with raw, fh, io.TextIOWrapper(fh, encoding="utf-8", newline="") as text:
        reader = csv.reader(text, delimiter=sep)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ConfigError(f"{path}: the CSV header cannot be read: {exc}") from None
        before = 0
        number = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                yield number, BadLine(f"not CSV: {exc}"), 0
                continue
            number += 1
            now = raw.tell()
            consumed, before = now - before, now
            if len(cells) != len(header):
                yield number, BadLine(f"{len(cells)} cells for {len(header)} columns"), consumed
                continue
            yield number, {k: (v if v != "" else None) for k, v in zip(header, cells, strict=True)}, consumed


def iter_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadLine, int]]:
    """Each row of a Parquet file as a dict (nested structs stay dicts)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    number = 0
    per_row = max(1, path.stat().st_size // max(1, pf.metadata.num_rows))
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH):
        for row in batch.to_pylist():
            number += 1
            yield number, row, per_row


def iter_file(
    path: Path, kind: FileKind | None = None
) -> Iterator[tuple[int, dict[str, Any] | BadLine, int]]:
    """Rows of any supported file, its kind taken from the name unless given."""
    kind = kind or file_kind(path)
    if kind == "jsonl":
        return iter_jsonl(path)
    if kind == "csv":
        return iter_csv(path)
    return iter_parquet(path)


def local_file(path: str | Path) -> tuple[Path, str, int | None]:
    """A file source's path (checked by `existing`), name and total (its size in bytes)."""
    p = existing(path)
    return p, p.name, p.stat().st_size
