"""`TrafficLog`: one log directory, every table in every encoding, read in typed batches."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from distillguard._errors import LogFormatError
from distillguard.traffic._cast import align_batch, concat_unified
from distillguard.traffic._files import TableFile, describe, find_files, table_names
from distillguard.traffic._jsonl import read_jsonl
from distillguard.traffic._parquet import (
    check_parquet_schema,
    check_required_values,
    is_native,
    open_parquet,
    read_parquet,
)
from distillguard.traffic._problems import Problem
from distillguard.traffic._schema import TABLES, TS, Table

log = logging.getLogger("distillguard.traffic")

DEFAULT_BATCH = 65_536
CACHE_DIR = ".distillguard-cache"
FORMAT_CACHE_VERSION = 1  # bump when the typed copies change shape

_DUCK_TYPES = {
    pa.string(): "VARCHAR",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    TS: "TIMESTAMPTZ",
}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_str(value: str) -> str:
    # DuckDB views cannot hold bound parameters, so file paths are quoted literals.
    return "'" + value.replace("'", "''") + "'"


class TrafficLog:
    """A traffic log directory (the format in docs/format.md).

    Each table may be stored as `NAME.parquet`, Parquet parts (`NAME-*.parquet`,
    `NAME/*.parquet`), `NAME.jsonl` or `NAME.jsonl.gz`; every reader here gives
    the format's columns with the format's types (timestamps `timestamp[us,
    tz=UTC]`), missing optional columns as nulls, then any extra columns.

    Bad input policy: a missing required column, a wrong type, a bad timestamp
    or a null required value raises `LogFormatError` naming the file, row (JSONL:
    line) and column. Batches are delivered up to the bad row first, so nothing
    already read is lost; files before the bad one are read in full. Problems
    that do not stop reading (an empty JSONL file, a cut-off last JSONL line)
    are appended to `warnings`. Checks across rows (duplicate `event_id`,
    events of accounts missing from `accounts`) are `validate_log`'s job.

    Args:
        path: the log directory.
        cache_dir: where `duckdb_view` puts typed Parquet copies of files that
            DuckDB cannot scan in place (JSONL, off-type Parquet). Default:
            `<log>/.distillguard-cache` (readers ignore it), or a folder under
            the temp directory when the log is read-only. A copy is reused
            while its source file keeps its size and mtime.

    Examples:
        >>> log = TrafficLog("out/log")                      # doctest: +SKIP
        >>> for batch in log.batches("events", ["account_id", "ts"]):  # doctest: +SKIP
        ...     ...
    """

    def __init__(self, path: str | Path, *, cache_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise LogFormatError(
                "traffic log directory does not exist or is not a directory", file=str(self.path)
            )
        self.warnings: list[Problem] = []
        self._cache_root = Path(cache_dir) if cache_dir is not None else None

    def __repr__(self) -> str:
        return f"TrafficLog({str(self.path)!r})"

    def __enter__(self) -> TrafficLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release today; kept so callers can use `with TrafficLog(...)`."""

    # -- what is there --------------------------------------------------------------

    def tables(self) -> list[str]:
        """Names of the tables present: the format's first, then extra tables."""
        return table_names(self.path, tuple(TABLES))

    def has(self, name: str) -> bool:
        return bool(find_files(self.path, name))

    def table_files(self, name: str) -> list[TableFile]:
        return find_files(self.path, name)

    def files(self, name: str) -> list[Path]:
        """The files holding table `name`, in reading order (empty if absent)."""
        return [f.path for f in find_files(self.path, name)]

    def encoding(self, name: str) -> str:
        """How the table is stored, e.g. `parquet`, `jsonl.gz`, `parquet (4 parts)`."""
        return describe(find_files(self.path, name))

    def _files_or_fail(self, name: str) -> list[TableFile]:
        files = find_files(self.path, name)
        if not files:
            raise LogFormatError(
                f"the log has no {name!r} table (looked for {name}.parquet, {name}-*.parquet, "
                f"{name}/*.parquet, {name}.jsonl, {name}.jsonl.gz)",
                file=str(self.path),
            )
        return files

    # -- reading --------------------------------------------------------------------

    def batches(
        self, name: str, columns: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH
    ) -> Iterator[pa.RecordBatch]:
        """Stream table `name` as record batches of at most `batch_size` rows.

        Args:
            name: table name (`events`, `accounts`, ... or an extra table).
            columns: only these columns (format columns missing from a file read as nulls).
            batch_size: rows per batch.

        Raises:
            LogFormatError: the table is absent, or a file breaks the format
                (after every good row before the problem has been yielded).
        """
        spec = TABLES.get(name)
        for tf in self._files_or_fail(name):
            yield from self._file_batches(tf, spec, columns, batch_size)

    def _file_batches(
        self, tf: TableFile, spec: Table | None, columns: Sequence[str] | None, batch_size: int
    ) -> Iterator[pa.RecordBatch]:
        try:
            if tf.encoding == "parquet":
                yield from read_parquet(tf, spec, columns, batch_size)
            else:
                yield from read_jsonl(tf, spec, columns, batch_size, self.warnings.append)
        except OSError as exc:  # unreadable (permissions, vanished, I/O error): say which file
            raise LogFormatError(
                f"cannot read the file ({exc.strerror or exc}); check it exists and is readable",
                file=str(tf),
            ) from exc

    def read(self, name: str, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole table in memory (use `batches` or `duckdb_view` for big event tables).

        Extra columns that differ between files or JSONL blocks are reconciled
        (missing: null; types promoted; irreconcilable: text).
        """
        spec = TABLES.get(name)
        parts: list[pa.Table] = []
        for tf in self._files_or_fail(name):
            parts += [
                pa.Table.from_batches([b])
                for b in self._file_batches(tf, spec, columns, DEFAULT_BATCH * 4)
            ]
        if not parts:
            return self._empty(spec, columns)
        return concat_unified(parts).combine_chunks()

    @staticmethod
    def _empty(spec: Table | None, columns: Sequence[str] | None) -> pa.Table:
        if spec is None:
            return pa.table({c: pa.array([], pa.string()) for c in columns or []})
        schema = spec.schema
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns if c in schema.names])
        return schema.empty_table()

    # -- DuckDB ---------------------------------------------------------------------

    def _cache_root_dir(self) -> Path:
        """`<log>/.distillguard-cache`, or a per-log folder under the temp dir if the log is read-only."""
        if self._cache_root is not None:
            roots = [self._cache_root]
        else:
            digest = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:16]
            roots = [
                self.path / CACHE_DIR,
                Path(tempfile.gettempdir()) / "distillguard-cache" / digest,
            ]
        for root in roots:
            try:
                root.mkdir(parents=True, exist_ok=True)
                probe = root / f".probe-{os.getpid()}"
                probe.touch()
                probe.unlink()
                return root
            except OSError:
                continue
        raise LogFormatError(
            "no writable cache directory for the DuckDB view; pass cache_dir=", file=str(roots[0])
        )

    def _cache_paths(self, name: str, tf: TableFile) -> list[Path]:
        """A typed Parquet copy of one file, kept next to the log and reused while the file is unchanged.

        The copy outlives this object on purpose: views built on it stay valid
        after the TrafficLog is gone, and the next scan of the same JSONL file
        skips the conversion. It is one part, or more when an extra column
        changes type along the file (DuckDB's union_by_name reconciles them).
        """
        st = tf.path.stat()
        source = hashlib.sha1(str(tf.path.resolve()).encode()).hexdigest()[:12]
        state = f"{st.st_mtime_ns}|{st.st_size}|{FORMAT_CACHE_VERSION}"
        root = self._cache_root_dir()
        out = root / f"{name}-{source}-{hashlib.sha1(state.encode()).hexdigest()[:12]}"
        if out.is_dir():
            return sorted(out.glob("part-*.parquet"))
        for stale in root.glob(f"{name}-{source}-*"):  # copies of an older version of the file
            shutil.rmtree(stale, ignore_errors=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        spec = TABLES.get(name)
        writer: pq.ParquetWriter | None = None
        parts = 0
        try:
            for batch in self._file_batches(tf, spec, None, DEFAULT_BATCH):
                aligned = align_batch(batch, writer.schema) if writer is not None else None
                if aligned is None:
                    if writer is not None:
                        writer.close()
                    writer = pq.ParquetWriter(
                        tmp / f"part-{parts:05d}.parquet", batch.schema, compression="zstd"
                    )
                    parts += 1
                    aligned = batch
                assert writer is not None
                writer.write_batch(aligned)
            if writer is None:  # no rows: an empty typed file keeps the view valid
                pq.write_table(self._empty(spec, None), tmp / "part-00000.parquet")
            else:
                writer.close()
                writer = None
            tmp.rename(out)
        finally:
            if writer is not None:
                writer.close()
            shutil.rmtree(tmp, ignore_errors=True)
        return sorted(out.glob("part-*.parquet"))

    def duckdb_view(self, con: Any, name: str, view_name: str | None = None) -> str:
        """Register a DuckDB view over table `name` with the format's columns and types.

        Native Parquet files (stored types already the format's) are scanned in
        place; JSONL and off-type Parquet are converted once, batch by batch and
        checked as by `batches`, into typed Parquet in the cache. The view has
        every format column (absent ones as typed NULLs) then every extra column.
        Timestamps are `TIMESTAMPTZ`; the connection's TimeZone is set to UTC so
        that day boundaries and Arrow results are UTC.

        Args:
            con: a `duckdb.DuckDBPyConnection`.
            name: the table.
            view_name: name of the view (default: `name`).

        Returns:
            The view's name.

        Raises:
            LogFormatError: as `batches`, for the files that need converting, or
                when a native file lacks a required column.
        """
        spec = TABLES.get(name)
        view = view_name or name
        paths: list[Path] = []
        present: dict[str, None] = {}
        for tf in self._files_or_fail(name):
            cached: list[Path] | None = None
            if tf.encoding == "parquet":
                pf = open_parquet(tf)
                schema = pf.schema_arrow
                if spec is not None:
                    check_parquet_schema(tf, spec, schema)
                    if is_native(spec, schema):
                        check_required_values(tf, spec, pf)
                    else:
                        cached = self._cache_paths(name, tf)
            else:
                cached = self._cache_paths(name, tf)
            if cached is None:
                paths.append(tf.path)
                present.update(dict.fromkeys(schema.names))
            for path in cached or []:
                paths.append(path)
                present.update(dict.fromkeys(pq.read_schema(path).names))
        select: list[str] = []
        if spec is not None:
            for field in spec.schema:
                q = quote_ident(field.name)
                duck = _DUCK_TYPES[field.type]
                select.append(
                    f"CAST({q} AS {duck}) AS {q}"
                    if field.name in present
                    else f"CAST(NULL AS {duck}) AS {q}"
                )
        known = set(spec.schema.names) if spec is not None else set()
        select += [quote_ident(c) for c in present if c not in known]
        files = ", ".join(_quote_str(str(p)) for p in paths)
        sql = (
            f"CREATE OR REPLACE VIEW {quote_ident(view)} AS SELECT {', '.join(select) or '*'} "
            f"FROM read_parquet([{files}], union_by_name = true)"
        )
        con.execute("SET TimeZone = 'UTC'")
        log.debug("duckdb view: %s", sql)
        con.execute(sql)
        return view
