"""`validate_log`: check a whole traffic log against the format and summarise it.

One streaming pass per table (Arrow batches, nothing held in Python objects
but the few key columns, which go to DuckDB), then the checks across rows as
DuckDB SQL. Policy:

* errors (the file stops being read there; what was read before still counts):
  a missing `events` table, an empty or truncated Parquet file, a truncated
  gzip stream, a missing required column, a wrong type, a bad timestamp, a null
  required value, a malformed JSONL line;
* counted warnings, each with the first few locations (the rows are safe to
  skip or keep): a repeated `event_id` (or other table key), an event whose
  account is not in `accounts`, an event whose model is not in `models`, a
  label or action outside the format's values, an empty JSONL file, a cut-off
  last JSONL line.

`ValidationReport.exit_code` is 0 when clean, 1 with warnings only, 2 with errors.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from distillguard._errors import LogFormatError
from distillguard.traffic._files import TableFile, describe
from distillguard.traffic._log import TrafficLog, quote_ident
from distillguard.traffic._parquet import null_free, open_parquet
from distillguard.traffic._problems import Location, Problem
from distillguard.traffic._schema import ACTIONS, LABEL_VALUES, OVERRIDE_ACTIONS, TABLES, Table

EXAMPLES = 5
_BATCH = 262_144


@dataclass(frozen=True)
class TableSummary:
    """One table as found: how it is stored and how many rows were read without error."""

    name: str
    encoding: str
    files: int
    rows: int


@dataclass
class ValidationReport:
    """What `validate_log` found. `problems` holds errors first, then warnings."""

    directory: Path
    tables: list[TableSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    events: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    accounts: int = 0
    models: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    @property
    def exit_code(self) -> int:
        """0 clean, 1 warnings only, 2 any error."""
        return 2 if self.errors else 1 if self.problems else 0

    def table(self, name: str) -> TableSummary | None:
        return next((t for t in self.tables if t.name == name), None)


def _key_columns(spec: Table | None) -> list[str]:
    if spec is None:
        return []
    cols = [spec.key] if spec.key else []
    if spec.name == "events":
        cols = ["event_id", "account_id", "model", "ts"]
    elif spec.name == "labels":
        cols.append("label")
    elif spec.name in ("verdicts", "overrides"):
        cols.append("action")
    return cols


def _columns_to_read(spec: Table | None, tf: TableFile) -> list[str] | None:
    """For Parquet, only what needs reading: key columns, off-type columns, and required
    columns whose footer statistics do not rule out nulls (all columns for JSONL)."""
    if spec is None or tf.encoding != "parquet":
        return None
    pf = open_parquet(tf)
    schema = pf.schema_arrow
    need = set(_key_columns(spec))
    for f in spec.schema:
        if f.name not in schema.names:
            continue
        if schema.field(f.name).type != f.type:
            need.add(f.name)  # the cast may fail: read it
        elif f.name in spec.required and not null_free(pf, f.name):
            need.add(f.name)  # the footer cannot prove it has no nulls: read it
    return [c for c in spec.columns if c in need and c in schema.names]


class _Keys:
    """Key columns of every row read, with file index and 1-based row, in DuckDB."""

    def __init__(self) -> None:
        import duckdb

        self.tmp = tempfile.TemporaryDirectory(prefix="distillguard-validate-")
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(f"SET temp_directory = '{self.tmp.name}'")
        self.con.execute("SET preserve_insertion_order = false")
        self.created: set[str] = set()

    def add(
        self, name: str, batch: pa.RecordBatch, cols: list[str], f: int, first_row: int
    ) -> None:
        if not cols or batch.num_rows == 0:
            return
        import numpy as np

        data = pa.table(
            [batch.column(c) for c in cols]
            + [
                pa.array(np.full(batch.num_rows, f, dtype=np.int32)),
                pa.array(np.arange(first_row, first_row + batch.num_rows, dtype=np.int64)),
            ],
            names=[*cols, "_f", "_r"],
        )
        t = quote_ident(f"k_{name}")
        self.con.register("_batch", data)
        if name not in self.created:
            self.con.execute(f"CREATE TABLE {t} AS SELECT * FROM _batch")
            self.created.add(name)
        else:
            self.con.execute(f"INSERT INTO {t} SELECT * FROM _batch")
        self.con.unregister("_batch")

    def has(self, name: str) -> bool:
        return name in self.created

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params or []).fetchall()

    def close(self) -> None:
        self.con.close()
        self.tmp.cleanup()


def _batches_with_rows(
    log: TrafficLog, tf: TableFile, spec: Table | None, cols: list[str] | None
) -> Iterator[tuple[pa.RecordBatch, int]]:
    row = 1
    for batch in log._file_batches(tf, spec, cols, _BATCH):
        yield batch, row
        row += batch.num_rows


def validate_log(directory: str | Path, *, progress: bool = False) -> ValidationReport:
    """Check every table of a log directory and summarise it.

    Args:
        directory: the traffic log directory.
        progress: show a rich progress bar on stderr while reading.

    Returns:
        A ValidationReport; problems in the files are reported there, not raised.

    Raises:
        LogFormatError: the directory does not exist.
    """
    log = TrafficLog(directory)
    report = ValidationReport(Path(directory))
    keys = _Keys()
    files_by_table: dict[str, list[TableFile]] = {}
    try:
        names = log.tables()
        if "events" not in names:
            report.problems.append(
                Problem(
                    "error",
                    "missing-table",
                    "the log has no events table (events.parquet, events/*.parquet, events.jsonl[.gz])",
                    1,
                    (Location(str(log.path)),),
                )
            )
        bar = _progress(progress)
        task = bar.add_task("validating", total=None) if bar else None
        if bar:
            bar.start()
        try:
            for name in names:
                spec = TABLES.get(name)
                files = log.table_files(name)
                files_by_table[name] = files
                rows = 0
                kcols = _key_columns(spec)
                for fi, tf in enumerate(files):
                    if bar and task is not None:
                        bar.update(task, description=f"{tf.path.name}")
                    try:
                        cols = _columns_to_read(spec, tf)
                        for batch, first in _batches_with_rows(log, tf, spec, cols):
                            keys.add(
                                name,
                                batch,
                                [c for c in kcols if c in batch.schema.names],
                                fi,
                                first,
                            )
                            rows += batch.num_rows
                            if bar and task is not None:
                                bar.advance(task, batch.num_rows)
                    except LogFormatError as exc:
                        report.problems.append(Problem.from_error(exc))
                report.tables.append(TableSummary(name, describe(files), len(files), rows))
        finally:
            if bar:
                bar.stop()
        report.problems += log.warnings
        _cross_checks(report, keys, files_by_table)
    finally:
        keys.close()
        log.close()
    report.problems.sort(key=lambda p: p.level != "error")
    return report


def _progress(show: bool) -> Any:
    if not show:
        return None
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _examples(
    keys: _Keys, files: list[TableFile], sql: str, column: str, params: list[Any] | None = None
) -> tuple[Location, ...]:
    return tuple(Location(str(files[f]), r, column) for f, r in keys.rows(sql, params))


def _cross_checks(report: ValidationReport, keys: _Keys, files: dict[str, list[TableFile]]) -> None:
    for name in list(keys.created):
        spec = TABLES[name]
        if not spec.key:
            continue
        t, k = quote_ident(f"k_{name}"), quote_ident(spec.key)
        (dups,) = keys.rows(f"SELECT count(*) - count(DISTINCT {k}) FROM {t}")[0]
        if dups:
            ex = _examples(
                keys,
                files[name],
                f"SELECT _f, _r FROM (SELECT _f, _r, row_number() OVER (PARTITION BY {k} ORDER BY _f, _r) AS n FROM {t}) "
                f"WHERE n > 1 ORDER BY _f, _r LIMIT {EXAMPLES}",
                spec.key,
            )
            report.problems.append(
                Problem(
                    "warning",
                    f"duplicate-{spec.key}",
                    f"{name} rows repeat the {spec.key} of an earlier row; drop the repeats",
                    dups,
                    ex,
                )
            )
    if keys.has("events"):
        (n, lo, hi, acc) = keys.rows(
            'SELECT count(*), min(ts), max(ts), count(DISTINCT account_id) FROM "k_events"'
        )[0]
        report.events, report.first_ts, report.last_ts, report.accounts = n, lo, hi, acc
        report.models = dict(
            keys.rows('SELECT model, count(*) FROM "k_events" GROUP BY model ORDER BY 2 DESC, 1')
        )
        for ref, col in (("accounts", "account_id"), ("models", "model")):
            if not keys.has(ref):
                continue
            c = quote_ident(col)
            cond = f'FROM "k_events" e ANTI JOIN "k_{ref}" a ON e.{c} = a.{c}'
            (count,) = keys.rows(f"SELECT count(*) {cond}")[0]
            if count:
                (distinct,) = keys.rows(f"SELECT count(DISTINCT e.{c}) {cond}")[0]
                ex = _examples(
                    keys,
                    files["events"],
                    f"SELECT e._f, e._r {cond} ORDER BY 1, 2 LIMIT {EXAMPLES}",
                    col,
                )
                report.problems.append(
                    Problem(
                        "warning",
                        f"unknown-{col.split('_')[0]}",
                        f"events name {distinct} {col} value(s) missing from the {ref} table",
                        count,
                        ex,
                    )
                )
    enums = (
        ("labels", "label", LABEL_VALUES),
        ("verdicts", "action", ACTIONS),
        ("overrides", "action", OVERRIDE_ACTIONS),
    )
    for name, col, allowed in enums:
        if not keys.has(name):
            continue
        t = quote_ident(f"k_{name}")
        marks = ", ".join("?" for _ in allowed)
        cond = f"FROM {t} WHERE {col} IS NOT NULL AND {col} NOT IN ({marks})"
        (count,) = keys.rows(f"SELECT count(*) {cond}", list(allowed))[0]
        if count:
            ex = _examples(
                keys,
                files[name],
                f"SELECT _f, _r {cond} ORDER BY 1, 2 LIMIT {EXAMPLES}",
                col,
                list(allowed),
            )
            report.problems.append(
                Problem(
                    "warning",
                    f"bad-{col}",
                    f"{name}.{col} is not one of {', '.join(allowed)}",
                    count,
                    ex,
                )
            )
