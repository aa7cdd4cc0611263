"""JSON Lines (`.jsonl`, `.jsonl.gz`): a vectorised reader with an exact diagnostic fallback.

Reading goes through `pyarrow.json.open_json` in blocks, typed by the format's
schema (timestamps read as strings, then parsed to UTC). Only when that fails
(a malformed line, a wrong type, a cut-off gzip stream) does a Python pass take
over from the first row not yet delivered: it reads line by line, delivers the
good rows before the problem, and raises a `LogFormatError` naming the exact
line and column. Policy for bad input:

* bad JSON, a wrong type, a bad timestamp, a null required value: error;
* the last line of a plain `.jsonl` cut short with no newline after it (a
  writer stopped mid-line): that line is skipped with a counted warning;
* a gzip stream that ends early: error (the rows before it are delivered);
* an empty file: no rows, with a warning.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import IO, Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from distillguard._errors import LogFormatError
from distillguard.traffic._cast import CellError, ColumnError, conform_batch, to_timestamp
from distillguard.traffic._files import TableFile
from distillguard.traffic._problems import Location, Problem
from distillguard.traffic._schema import TS, Table

Warn = Callable[[Problem], None]
_BLOCK = 8 << 20
_INT_RANGE = {8: 1 << 7, 16: 1 << 15, 32: 1 << 31, 64: 1 << 63}


def _read_schema(spec: Table) -> pa.Schema:
    return pa.schema(
        [pa.field(f.name, pa.string() if f.type == TS else f.type) for f in spec.schema]
    )


def _open(tf: TableFile) -> IO[bytes]:
    if tf.encoding == "jsonl.gz":
        return cast(IO[bytes], gzip.open(tf.path, "rb"))
    return open(tf.path, "rb")


def _slices(batch: pa.RecordBatch, size: int) -> Iterator[pa.RecordBatch]:
    for start in range(0, batch.num_rows, size):
        yield batch.slice(start, size)


def read_jsonl(
    tf: TableFile,
    spec: Table | None,
    columns: Sequence[str] | None,
    batch_size: int,
    warn: Warn,
) -> Iterator[pa.RecordBatch]:
    """Batches of one JSONL file, conformed to `spec` when given (see the module policy)."""
    if tf.path.stat().st_size == 0:
        warn(Problem("warning", "empty-file", "file is empty (0 bytes)", 1, (Location(str(tf)),)))
        return
    done = 0  # non-blank rows already delivered
    opts = pj.ParseOptions(
        explicit_schema=_read_schema(spec) if spec else None, unexpected_field_behavior="infer"
    )
    compression = "gzip" if tf.encoding == "jsonl.gz" else None
    try:
        with pa.input_stream(str(tf.path), compression=compression) as stream:
            reader = pj.open_json(
                stream, read_options=pj.ReadOptions(block_size=_BLOCK), parse_options=opts
            )
            for raw in reader:
                for part in _slices(raw, batch_size):
                    out = conform_batch(spec, part, columns) if spec else _select(part, columns, tf)
                    yield out
                    done += out.num_rows
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError, CellError):
        # Hand over to the exact pass; it re-reads from the first row not yet delivered.
        yield from _python_pass(tf, spec, columns, batch_size, done, warn)
    except ColumnError as exc:
        raise LogFormatError(exc.message, file=str(tf), column=exc.column) from None


def _select(batch: pa.RecordBatch, columns: Sequence[str] | None, tf: TableFile) -> pa.RecordBatch:
    if columns is None:
        return batch
    missing = [c for c in columns if c not in batch.schema.names]
    if missing:
        raise LogFormatError("column is not in the file", file=str(tf), column=missing[0])
    return batch.select(list(columns))


def _kind_ok(value: Any, t: pa.DataType) -> str | None:
    """Why `value` (from json.loads) cannot be a `t`, or None if it can."""
    if value is None:
        return None
    if t == TS:
        if not isinstance(value, str):
            return f"value {value!r} is not an ISO-8601 time string"
        try:
            datetime.fromisoformat(
                value
            )  # fast, and accepts what Arrow accepts but 'z' and a few more
            return None
        except ValueError:
            pass
        try:  # the vectorised path's parser has the last word; a value both accept that
            # Arrow then rejects is still caught, at its line, when the batch is cast
            to_timestamp(pa.array([value], pa.string()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return f"value {value!r} is not an ISO-8601 time such as '2026-03-01T12:00:00Z'"
        return None
    if pa.types.is_string(t):
        return None if isinstance(value, str) else f"value {value!r} is not a string"
    if pa.types.is_boolean(t):
        return None if isinstance(value, bool) else f"value {value!r} is not true/false"
    if pa.types.is_integer(t):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"value {value!r} is not an integer"
        if not -_INT_RANGE[t.bit_width] <= value < _INT_RANGE[t.bit_width]:
            return f"value {value!r} does not fit {t}"
        return None
    if pa.types.is_floating(t):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"value {value!r} is not a number"
    return None


def _column(values: list[Any], t: pa.DataType | None) -> pa.Array:
    if t is not None:
        return pa.array(values, type=t)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        # An extra column whose values change type: keep them as JSON text.
        return pa.array(
            [v if v is None or isinstance(v, str) else json.dumps(v) for v in values], pa.string()
        )


def _python_pass(
    tf: TableFile,
    spec: Table | None,
    columns: Sequence[str] | None,
    batch_size: int,
    skip: int,
    warn: Warn,
) -> Iterator[pa.RecordBatch]:
    types = {f.name: f.type for f in _read_schema(spec)} if spec else {}
    checks = {f.name: f.type for f in spec.schema} if spec else {}
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    seen = 0

    def conform(batch: pa.RecordBatch) -> pa.RecordBatch:
        return conform_batch(spec, batch, columns) if spec else _select(batch, columns, tf)

    def emit() -> Iterator[pa.RecordBatch]:
        """Deliver the rows gathered so far (up to a bad value, if one is among them)."""
        if not rows:
            return
        names = list(dict.fromkeys([*types, *(k for r in rows for k in r if k not in types)]))
        arrays = [_column([r.get(n) for r in rows], types.get(n)) for n in names]
        batch = pa.RecordBatch.from_arrays(arrays, names=names)
        at = list(lines)
        rows.clear()
        lines.clear()
        try:
            out = conform(batch)
        except CellError as exc:
            if exc.index:
                yield conform(batch.slice(0, exc.index))
            raise LogFormatError(
                exc.message, file=str(tf), row=at[exc.index], column=exc.column
            ) from None
        except ColumnError as exc:
            raise LogFormatError(exc.message, file=str(tf), column=exc.column) from None
        yield out

    with _open(tf) as fh:
        lineno = 0
        try:
            for raw in fh:
                lineno += 1
                if not raw.strip():
                    continue
                seen += 1
                if seen <= skip:
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    yield from emit()
                    if not raw.endswith(b"\n") and tf.encoding == "jsonl":
                        warn(
                            Problem(
                                "warning",
                                "truncated-line",
                                "last line is cut short (an interrupted write?) and was skipped",
                                1,
                                (Location(str(tf), lineno),),
                            )
                        )
                        return
                    raise LogFormatError(
                        "line is not valid JSON; fix or remove the line", file=str(tf), row=lineno
                    ) from None
                if not isinstance(obj, dict):
                    yield from emit()
                    raise LogFormatError("line is not a JSON object", file=str(tf), row=lineno)
                for name, t in checks.items():
                    why = _kind_ok(obj.get(name), t)
                    if why is None and spec and name in spec.required and obj.get(name) is None:
                        why = "required value is null or absent"
                    if why:
                        yield from emit()
                        raise LogFormatError(why, file=str(tf), row=lineno, column=name)
                rows.append(obj)
                lines.append(lineno)
                if len(rows) >= batch_size:
                    yield from emit()
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
            yield from emit()
            raise LogFormatError(
                f"the gzip data ends early or is corrupt ({exc}); the file is truncated "
                f"(the {seen} rows before this point were read)",
                file=str(tf),
                row=lineno + 1,
            ) from None
    yield from emit()


def to_json_ready(data: pa.Table) -> pa.Table:
    """Timestamps as ISO-8601 UTC strings ending in Z; everything else unchanged."""
    cols = []
    for i, field in enumerate(data.schema):
        col = data.column(i)
        if pa.types.is_timestamp(field.type):
            col = pc.strftime(col.cast(TS), format="%Y-%m-%dT%H:%M:%SZ")
        cols.append(col)
    return pa.table(cols, names=data.column_names)


def jsonl_bytes(data: pa.Table) -> bytes:
    """`data` as JSON Lines bytes (one object per row, nulls written as null)."""
    import polars as pl

    buf = io.BytesIO()
    frame = pl.from_arrow(to_json_ready(data))
    assert isinstance(frame, pl.DataFrame)
    frame.write_ndjson(buf)
    return buf.getvalue()
