"""`LogWriter`: stream tables into a log directory as Parquet (parts) or JSON Lines."""

from __future__ import annotations

import contextlib
import gzip
import logging
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, cast

import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.traffic._cast import align_batch
from distillguard.traffic._files import check_name, find_files
from distillguard.traffic._jsonl import jsonl_bytes
from distillguard.traffic._schema import TABLES

Format = Literal["parquet", "jsonl", "jsonl.gz"]
FORMATS: tuple[Format, ...] = ("parquet", "jsonl", "jsonl.gz")

log = logging.getLogger("distillguard.traffic")


def conform(name: str, data: pa.Table | pa.RecordBatch) -> pa.Table:
    """`data` as table `name` of the format: its columns in order and typed, then extras.

    Missing optional columns are added as nulls. Raises LogFormatError for a
    missing required column or a value that cannot be cast (row and column named).
    """
    from distillguard._errors import LogFormatError
    from distillguard.traffic._cast import CellError, ColumnError, conform_batch

    table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
    spec = TABLES.get(name)
    if spec is None:
        return table
    table = table.combine_chunks()
    batches = table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]
    try:
        out = [conform_batch(spec, b) for b in batches]
    except CellError as exc:
        raise LogFormatError(
            exc.message, file=f"<{name} table>", row=exc.index + 1, column=exc.column
        ) from None
    except ColumnError as exc:
        raise LogFormatError(exc.message, file=f"<{name} table>", column=exc.column) from None
    return pa.Table.from_batches(out)


class _ParquetSink:
    def __init__(
        self,
        directory: Path,
        name: str,
        part_rows: int,
        row_group_rows: int,
        compression: str,
        append: bool,
    ) -> None:
        self.directory = directory
        self.append = append
        # Appending: new parts are numbered after the parts already there.
        taken = [int(p.stem.split("-")[1]) for p in (directory / name).glob("part-[0-9]*.parquet")]
        self.first_part = max(taken, default=-1) + 1
        self.name = name
        self.part_rows = part_rows
        self.row_group_rows = row_group_rows
        self.compression = compression
        self.schema: pa.Schema | None = None
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.parts: list[Path] = []
        self.writer: pq.ParquetWriter | None = None
        self.tmp: Path | None = None
        self.in_part = 0

    def write(self, table: pa.Table) -> None:
        if self.schema is None:
            self.schema = table.schema
        elif table.schema != self.schema:
            aligned = _align(table, self.schema)
            if aligned is None:
                # Extra columns changed (a new one, or a type that will not cast): finish
                # this part and go on in a new one; readers reconcile parts by name.
                self._flush()
                self._close_part()
                self.schema = table.schema
            else:
                table = aligned
        self.buffer.append(table)
        self.buffered += table.num_rows
        if self.buffered >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        data = pa.concat_tables(self.buffer)
        self.buffer, self.buffered = [], 0
        offset = 0
        while offset < data.num_rows:
            if self.writer is None:
                self._open_part()
            assert self.writer is not None
            take = min(self.part_rows - self.in_part, data.num_rows - offset)
            self.writer.write_table(data.slice(offset, take), row_group_size=self.row_group_rows)
            self.in_part += take
            offset += take
            if self.in_part >= self.part_rows:
                self._close_part()

    def _open_part(self) -> None:
        d = self.directory / self.name
        d.mkdir(parents=True, exist_ok=True)
        final = d / f"part-{self.first_part + len(self.parts):05d}.parquet"
        # Written under a hidden name, renamed when complete: readers never see half a part.
        self.tmp = d / f".{final.name}.tmp"
        assert self.schema is not None
        self.writer = pq.ParquetWriter(self.tmp, self.schema, compression=self.compression)
        self.parts.append(final)
        self.in_part = 0

    def _close_part(self) -> None:
        if self.writer is not None and self.tmp is not None:
            self.writer.close()
            self.tmp.replace(self.parts[-1])
            self.writer, self.tmp = None, None

    def close(self) -> list[Path]:
        self._flush()
        if not self.parts and self.schema is not None:
            self._open_part()  # an empty table still gets a file with its schema
        self._close_part()
        if len(self.parts) == 1 and not self.append:
            single = self.directory / f"{self.name}.parquet"
            self.parts[0].replace(single)
            with contextlib.suppress(OSError):  # not empty: leave what others put there
                (self.directory / self.name).rmdir()
            self.parts = [single]
        return self.parts


class _JsonlSink:
    def __init__(self, directory: Path, name: str, gz: bool, gzip_level: int, append: bool) -> None:
        self.path = directory / f"{name}.jsonl{'.gz' if gz else ''}"
        mode = "ab" if append else "wb"
        if append and not gz and self.path.exists():
            _drop_cut_off_line(self.path)
        # Kept open across writes and closed in close(), hence no `with`. Appending to
        # gzip adds a member; readers decompress concatenated members as one stream.
        raw = gzip.open(self.path, mode, compresslevel=gzip_level) if gz else open(self.path, mode)  # noqa: SIM115
        self.fh = cast(IO[bytes], raw)

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self.fh.write(jsonl_bytes(table))

    def close(self) -> list[Path]:
        self.fh.close()
        return [self.path]


def _align(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """`table` with exactly `schema`, or None when it cannot be without losing data."""
    out = []
    for b in table.combine_chunks().to_batches():
        got = align_batch(b, schema)
        if got is None:
            return None
        out.append(got)
    return pa.Table.from_batches(out, schema=schema)


class LogWriter:
    """Write tables of a traffic log, batch by batch.

    Parquet tables are written as `NAME/part-00000.parquet`, ... with at most
    `part_rows` rows per part; a table that fits in one part ends up as
    `NAME.parquet`. JSONL tables go to `NAME.jsonl` or `NAME.jsonl.gz`. Each
    batch is conformed to the format first (columns ordered and typed, missing
    optional columns as nulls, extras kept). The first write to a table removes
    that table's existing files in every encoding, so the directory never holds
    two versions of a table.

    Args:
        directory: the log directory (created if missing).
        fmt: `parquet` (default), `jsonl` or `jsonl.gz`.
        part_rows: rows per Parquet part.
        row_group_rows: rows per Parquet row group (batches are buffered up to it).
        compression: Parquet codec.
        gzip_level: zlib level for `jsonl.gz` (1: fastest; 6 makes files ~25% smaller
            but writes ~5x slower).
        append: keep the table's existing files and add to them (JSONL: appended
            lines; Parquet: new parts in `NAME/` after the existing ones), e.g. a
            gateway that restarts. Default: replace the table.

    Examples:
        >>> with LogWriter("out/log") as w:                  # doctest: +SKIP
        ...     for chunk in chunks:
        ...         w.write("events", chunk)
    """

    def __init__(
        self,
        directory: str | Path,
        fmt: Format = "parquet",
        *,
        part_rows: int = 2_000_000,
        row_group_rows: int = 131_072,
        compression: str = "zstd",
        gzip_level: int = 1,
        append: bool = False,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, not {fmt!r}")
        if part_rows < 1 or row_group_rows < 1:
            raise ValueError("part_rows and row_group_rows must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fmt = fmt
        self.part_rows = part_rows
        self.row_group_rows = min(row_group_rows, part_rows)
        self.compression = compression
        self.gzip_level = gzip_level
        self.append = append
        self._sinks: dict[str, _ParquetSink | _JsonlSink] = {}
        self.written: dict[str, list[Path]] = {}
        self.rows: dict[str, int] = {}

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def write(self, name: str, data: pa.Table | pa.RecordBatch) -> None:
        """Append rows to table `name` (a format table or any extra table)."""
        check_name(name)
        table = conform(name, data)
        sink = self._sinks.get(name)
        if sink is None:
            if not self.append:
                self._remove(name)
            sink = self._sinks[name] = self._open_sink(name)
        sink.write(table)
        self.rows[name] = self.rows.get(name, 0) + table.num_rows

    def _remove(self, name: str) -> None:
        for old in find_files(self.directory, name):
            old.path.unlink()
        stale = self.directory / name
        if stale.is_dir():
            for tmp in stale.glob(".part-*.tmp"):  # left by a writer that never closed
                tmp.unlink()
            if not any(stale.iterdir()):
                stale.rmdir()

    def _open_sink(self, name: str) -> _ParquetSink | _JsonlSink:
        if self.fmt == "parquet":
            return _ParquetSink(
                self.directory,
                name,
                self.part_rows,
                self.row_group_rows,
                self.compression,
                self.append,
            )
        return _JsonlSink(
            self.directory, name, self.fmt == "jsonl.gz", self.gzip_level, self.append
        )

    def close(self) -> dict[str, list[Path]]:
        """Finish every table; returns the files written per table."""
        for name, sink in self._sinks.items():
            self.written[name] = sink.close()
        self._sinks.clear()
        return self.written


def _drop_cut_off_line(path: Path) -> None:
    """Cut a last line left without its newline by a crash, so the first new row stays whole.

    Such a line is unreadable anyway (readers skip it with a warning); appending
    after it would glue a good row onto it and make both an error.
    """
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        end = size
        while end > 0:
            start = max(0, end - 65_536)
            fh.seek(start)
            chunk = fh.read(end - start)
            if end == size and chunk.endswith(b"\n"):
                return
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                cut = start + nl + 1
                break
            end = start
        else:
            cut = 0
        log.warning("%s: dropped a cut-off last line (%d bytes) before appending", path, size - cut)
        fh.truncate(cut)


def write_table(
    directory: str | Path, name: str, data: pa.Table | pa.RecordBatch, fmt: Format = "parquet"
) -> Path:
    """Write a whole table (`NAME.parquet` by default, or `NAME.jsonl[.gz]`); returns its first file."""
    with LogWriter(directory, fmt, part_rows=1 << 62) as w:
        w.write(name, data)
    return w.written[name][0]
