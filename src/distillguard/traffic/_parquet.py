"""Parquet parts: open with clear errors, check the footer's schema, stream conformed batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard._errors import LogFormatError
from distillguard.traffic._cast import CellError, ColumnError, _kind, check_type, conform_batch
from distillguard.traffic._files import TableFile
from distillguard.traffic._schema import TS, Table


def open_parquet(tf: TableFile) -> pq.ParquetFile:
    """Open a Parquet file, turning an empty, truncated or foreign file into a LogFormatError."""
    if tf.path.stat().st_size == 0:
        raise LogFormatError(
            "file is empty (0 bytes), not Parquet; delete it or write the table again", file=str(tf)
        )
    try:
        return pq.ParquetFile(tf.path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise LogFormatError(
            f"file is not readable Parquet ({exc}); it is probably truncated (a write that "
            "did not finish): write it again or remove it",
            file=str(tf),
        ) from None


def check_parquet_schema(tf: TableFile, spec: Table, schema: pa.Schema) -> None:
    """Every required column present, every format column of an allowed type."""
    for name in sorted(spec.required):
        if name not in schema.names:
            raise LogFormatError(
                f"required column is missing (the file has {', '.join(schema.names) or 'none'})",
                file=str(tf),
                column=name,
            )
    for field in spec.schema:
        if field.name in schema.names:
            try:
                check_type(field.name, schema.field(field.name).type, field.type)
            except ColumnError as exc:
                raise LogFormatError(exc.message, file=str(tf), column=exc.column) from None


def null_free(pf: pq.ParquetFile, column: str) -> bool:
    """True when the footer's statistics prove `column` has no nulls (no data read)."""
    md = pf.metadata
    leaf = next((i for i in range(md.num_columns) if md.schema.column(i).path == column), None)
    if leaf is None:
        return False
    for rg in range(md.num_row_groups):
        st = md.row_group(rg).column(leaf).statistics
        if st is None or not st.has_null_count or st.null_count:
            return False
    return True


def check_required_values(tf: TableFile, spec: Table, pf: pq.ParquetFile) -> None:
    """Raise LogFormatError at the first null in a required column (footer stats first, data if needed)."""
    for name in spec.columns:
        if name not in spec.required or null_free(pf, name):
            continue
        row = 0
        for batch in pf.iter_batches(batch_size=262_144, columns=[name]):
            col = batch.column(0)
            if col.null_count:
                i = pc.index(pc.is_null(col), True).as_py()
                raise LogFormatError(
                    "required value is null or absent", file=str(tf), row=row + i + 1, column=name
                )
            row += batch.num_rows


def is_native(spec: Table, schema: pa.Schema) -> bool:
    """Whether DuckDB can read the file as is and get the format's types without a cast that can fail."""
    for field in spec.schema:
        if field.name not in schema.names:
            continue
        stored = schema.field(field.name).type
        if field.type == TS:
            if not pa.types.is_timestamp(stored):
                return False
        elif _kind(stored) == "string" and pa.types.is_string(field.type):
            continue
        elif stored != field.type:
            return False
    return True


def read_parquet(
    tf: TableFile, spec: Table | None, columns: Sequence[str] | None, batch_size: int
) -> Iterator[pa.RecordBatch]:
    """Batches of one Parquet file, conformed to `spec` when given.

    A bad value ends the file with a LogFormatError naming its row; the rows
    before it (in this batch too) are delivered first.
    """
    pf = open_parquet(tf)
    schema = pf.schema_arrow
    if spec is not None:
        check_parquet_schema(tf, spec, schema)
    if columns is not None:
        missing = [
            c
            for c in columns
            if c not in schema.names and (spec is None or c not in spec.schema.names)
        ]
        if missing:
            raise LogFormatError("column is not in the file", file=str(tf), column=missing[0])
        read_cols: list[str] | None = [c for c in columns if c in schema.names]
    else:
        read_cols = None
    row = 0
    it = pf.iter_batches(batch_size=batch_size, columns=read_cols)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError) as exc:
            raise LogFormatError(
                f"data after this row cannot be read ({exc}); the file is corrupt",
                file=str(tf),
                row=row + 1,
            ) from None
        if spec is None:
            out = batch.select(list(columns)) if columns is not None else batch
        else:
            try:
                out = conform_batch(spec, batch, columns)
            except CellError as exc:
                if exc.index:
                    yield conform_batch(spec, batch.slice(0, exc.index), columns)
                raise LogFormatError(
                    exc.message, file=str(tf), row=row + exc.index + 1, column=exc.column
                ) from None
            except ColumnError as exc:
                raise LogFormatError(exc.message, file=str(tf), column=exc.column) from None
        yield out
        row += batch.num_rows
