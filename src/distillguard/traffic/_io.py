"""Minimal readers and writers; issue 2 hardens them (JSONL, parts, validation)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.traffic._schema import TABLES


def conform(name: str, data: pa.Table) -> pa.Table:
    """Cast `data` to the table's schema, adding missing optional columns as nulls."""
    spec = TABLES[name]
    cols = []
    for field in spec.schema:
        if field.name in data.column_names:
            cols.append(data.column(field.name).cast(field.type))
        else:
            cols.append(pa.nulls(data.num_rows, field.type))
    extra = [c for c in data.column_names if c not in spec.schema.names]
    out = pa.Table.from_arrays(cols, schema=spec.schema)
    for c in extra:
        out = out.append_column(c, data.column(c))
    return out


def write_table(directory: str | Path, name: str, data: pa.Table) -> Path:
    """Write a whole table as `NAME.parquet` in `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.parquet"
    pq.write_table(conform(name, data), path)
    return path


def read_table(directory: str | Path, name: str) -> pa.Table:
    return pq.read_table(Path(directory) / f"{name}.parquet")


def iter_batches(
    directory: str | Path, name: str, columns: list[str] | None = None, batch_size: int = 65536
) -> Iterator[pa.RecordBatch]:
    f = pq.ParquetFile(Path(directory) / f"{name}.parquet")
    yield from f.iter_batches(batch_size=batch_size, columns=columns)
