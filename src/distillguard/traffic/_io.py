"""The original one-call helpers, kept as the stable API; they delegate to `TrafficLog`/`LogWriter`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from distillguard.traffic._log import DEFAULT_BATCH, TrafficLog
from distillguard.traffic._writer import conform, write_table

__all__ = ["conform", "iter_batches", "read_table", "write_table"]


def read_table(directory: str | Path, name: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a whole table in any encoding, typed as the format says (see `TrafficLog.read`)."""
    return TrafficLog(directory).read(name, columns)


def iter_batches(
    directory: str | Path,
    name: str,
    columns: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> Iterator[pa.RecordBatch]:
    """Stream a table in any encoding as typed record batches (see `TrafficLog.batches`)."""
    return TrafficLog(directory).batches(name, columns, batch_size)
