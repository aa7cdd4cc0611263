"""The ingest loop: stream a source's rows into a traffic log, keeping good rows, naming bad ones.

A source is an iterable of `Record` (one exchange, the format's columns as raw
values) and `Rejected` (a row that could not be read). Rows are typed one by one
(`normalize_event`), gathered into batches of `BATCH_ROWS` and written with the
traffic package's `LogWriter`, so memory stays flat whatever the source's size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import pyarrow as pa

from distillguard._errors import ConfigError
from distillguard.ingest._convert import RowError, normalize_event
from distillguard.ingest._files import BadLine
from distillguard.traffic import EVENTS, Location, LogWriter, Problem, TrafficLog

# Rows per written batch: large enough for Parquet row groups to compress, small enough
# that a batch of long prompts stays a few tens of MB.
BATCH_ROWS = 8_192
# Locations kept per kind of problem in the report (all of them go to the rejects file).
MAX_EXAMPLES = 20

Since = datetime | Literal["last"]


@dataclass(frozen=True)
class Record:
    """One exchange read from a source: format columns (raw values) and where it came from."""

    location: Location
    values: dict[str, Any]
    progress: int = 1


@dataclass(frozen=True)
class Rejected:
    """A source row that cannot become an event: where, which column, and why."""

    location: Location
    message: str
    code: str = "bad-row"
    progress: int = 1


Item = Record | Rejected
#: a source row's format columns (raw values); raises RowError naming the column it cannot read
ToEvent = Callable[[Mapping[str, Any]], dict[str, Any]]


def row_item(location: Location, row: Mapping[str, Any], to_event: ToEvent, progress: int = 1) -> Item:
    """The row as a `Record` of `to_event(row)`, or `Rejected` at the column its RowError names."""
    try:
        return Record(location, to_event(row), progress)
    except RowError as exc:
        return Rejected(Location(location.file, location.row, exc.column), exc.message, progress=progress)


def file_items(path: Path, rows: Iterable[tuple[int, Mapping[str, Any] | BadLine, int]], to_event: ToEvent,
               not_run: Callable[[Mapping[str, Any]], bool] | None = None) -> Iterator[Item]:
    """The items of a file's rows (line number, row, bytes): an unreadable line is rejected as
    such, a row `not_run` tells apart (a batch request that never ran: nothing was exchanged)
    is skipped, every other row goes through `row_item`."""
    for number, row, size in rows:
        loc = Location(str(path), number)
        if isinstance(row, BadLine):
            yield Rejected(loc, str(row), "unreadable", size)
        elif not_run is None or not not_run(row):
            yield row_item(loc, row, to_event, size)


class Source(Protocol):
    """What `ingest` reads: rows, plus a progress total (`unit`: bytes or rows) where known."""

    name: str
    unit: str

    @property
    def total(self) -> int | None: ...

    def __iter__(self) -> Iterator[Item]: ...


@dataclass
class _Tally:
    count: int = 0
    message: str = ""
    examples: list[Location] = field(default_factory=list)


@dataclass
class IngestReport:
    """What an ingest did: rows read, events written, rows skipped or rejected and why."""

    source: str
    out: Path
    read: int = 0
    written: int = 0
    skipped_since: int = 0
    rejected: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    since: datetime | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0: every row written; 1: some rows rejected (the rest written); 2: nothing written."""
        if self.rejected and not self.written:
            return 2
        return 1 if self.rejected else 0


def last_ingested(log_dir: str | Path) -> tuple[datetime | None, frozenset[str]]:
    """The latest `ts` already in the log's events and the event ids at exactly that time.

    `--since last` starts there: events at that instant that are already in the log are
    skipped by id, so rows sharing the last timestamp are neither lost nor doubled.
    """
    path = Path(log_dir)
    if not path.is_dir():
        return None, frozenset()
    log = TrafficLog(path)
    if not log.has("events"):
        return None, frozenset()
    import duckdb

    con = duckdb.connect()
    try:
        view = log.duckdb_view(con, "events")
        row = con.execute(f"SELECT max(ts) FROM {view}").fetchone()
        last = row[0] if row else None
        if last is None:
            return None, frozenset()
        ids = con.execute(f"SELECT event_id FROM {view} WHERE ts = ?", [last]).fetchall()
    finally:
        con.close()
        log.close()
    from distillguard.ingest._convert import parse_ts

    return parse_ts(last), frozenset(str(r[0]) for r in ids)


def ingest(
    source: Source,
    out: str | Path,
    *,
    since: Since | None = None,
    rejects: str | Path | None = None,
    progress: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> IngestReport:
    """Convert every row of `source` into `out/events`, writing each good row.

    Args:
        source: rows from one of the readers (`litellm_source`, `openai_source`, ...).
        out: the traffic log directory to write.
        since: only events at or after this time, appended to the log's events; `"last"`:
            after the latest event already in `out` (an incremental run). None: replace
            `out`'s events with the whole source.
        rejects: a JSON Lines file that gets one line per rejected row (file, row, column,
            message); the report keeps the first MAX_EXAMPLES of each kind.
        progress: show a progress bar (rich) on the terminal.
        batch_rows: rows per written batch.

    Returns:
        The report: counts, the time span written, and the problems found.
    """
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be positive, not {batch_rows}")
    out = Path(out)
    seen_at_since: frozenset[str] = frozenset()
    if since == "last":
        start, seen_at_since = last_ingested(out)
    else:
        start = since
    report = IngestReport(source.name, out, since=start)
    tallies: dict[tuple[str, str | None], _Tally] = {}
    rejects_fh: IO[str] | None = None
    if rejects is not None:
        Path(rejects).parent.mkdir(parents=True, exist_ok=True)
        rejects_fh = open(rejects, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    batch: list[dict[str, Any]] = []
    try:
        with LogWriter(out, append=since is not None) as writer, _ProgressBar(source, progress) as advance:
            for item in source:
                advance(item.progress)
                report.read += 1
                if isinstance(item, Record):
                    try:
                        row = normalize_event(item.values)
                    except RowError as exc:
                        loc = Location(item.location.file, item.location.row, exc.column)
                        item = Rejected(loc, exc.message)
                    else:
                        ts = row["ts"]
                        if start is not None and (
                            ts < start or (ts == start and row["event_id"] in seen_at_since)
                        ):
                            report.skipped_since += 1
                            continue
                        batch.append(row)
                        report.first_ts = min(ts, report.first_ts or ts)
                        report.last_ts = max(ts, report.last_ts or ts)
                        if len(batch) >= batch_rows:
                            _flush(writer, batch, report)
                        continue
                report.rejected += 1
                _tally(tallies, item)
                if rejects_fh is not None:
                    rejects_fh.write(json.dumps(_reject_json(item), ensure_ascii=False) + "\n")
            _flush(writer, batch, report)
            if report.written == 0 and not TrafficLog(out).has("events"):
                # Leave a valid (empty) events table, so the log reads as a log; an existing
                # one is kept as it is (a run that wrote nothing, e.g. every row rejected
                # because the wrong --from was given, does not wipe it).
                writer.write("events", EVENTS.schema.empty_table())
    finally:
        if rejects_fh is not None:
            rejects_fh.close()
    report.problems = [
        Problem("error", code, t.message, t.count, tuple(t.examples))
        for (code, _col), t in sorted(tallies.items(), key=lambda kv: -kv[1].count)
    ]
    return report


def _flush(writer: LogWriter, batch: list[dict[str, Any]], report: IngestReport) -> None:
    if not batch:
        return
    writer.write("events", pa.RecordBatch.from_pylist(batch, schema=EVENTS.schema))
    report.written += len(batch)
    batch.clear()


def _tally(tallies: dict[tuple[str, str | None], _Tally], item: Rejected) -> None:
    t = tallies.setdefault((item.code, item.location.column), _Tally(message=item.message))
    t.count += 1
    if len(t.examples) < MAX_EXAMPLES:
        t.examples.append(item.location)


def _reject_json(item: Rejected) -> dict[str, Any]:
    loc = item.location
    return {"file": loc.file, "row": loc.row, "column": loc.column, "code": item.code,
            "message": item.message}


class _ProgressBar:
    """A rich progress bar over a source (bytes or rows), or nothing when `show` is False."""

    def __init__(self, source: Source, show: bool) -> None:
        self.source = source
        self.show = show
        self.progress: Any = None

    def __enter__(self) -> Any:
        if not self.show:
            return _no_advance
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        amount = DownloadColumn() if self.source.unit == "bytes" else MofNCompleteColumn()
        self.progress = Progress(
            TextColumn("ingesting {task.description}"), BarColumn(), amount, TimeRemainingColumn(),
            transient=True,
        )
        self.progress.start()
        task = self.progress.add_task(self.source.name, total=self.source.total)
        progress = self.progress

        def advance(n: int) -> None:
            progress.advance(task, n)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _no_advance(n: int) -> None:
    return None

