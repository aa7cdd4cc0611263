"""Every table of the format, in every encoding, reads back as written (typed as the format says)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard.traffic import (
    TABLES,
    LogWriter,
    TrafficLog,
    conform,
    iter_batches,
    read_table,
    write_table,
)

LAYOUTS = ["parquet", "parquet-dash-parts", "parquet-dir-parts", "jsonl", "jsonl.gz"]


def _write(directory: Path, name: str, table: pa.Table, layout: str) -> None:
    if layout == "parquet-dash-parts":
        # Parts written by some other tool: NAME-*.parquet, each with its own columns subset.
        half = table.num_rows // 2
        pq.write_table(table.slice(0, half), directory / f"{name}-000.parquet")
        pq.write_table(table.slice(half), directory / f"{name}-001.parquet")
    elif layout == "parquet-dir-parts":
        with LogWriter(directory, part_rows=20, row_group_rows=7) as w:
            for batch in table.to_batches(max_chunksize=9):
                w.write(name, batch)
        assert len(w.written[name]) == -(-table.num_rows // 20)
    else:
        write_table(directory, name, table, fmt=layout)  # type: ignore[arg-type]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(TABLES))
def test_every_table_round_trips(
    tmp_path: Path, name: str, layout: str, make: Callable[..., pa.Table]
) -> None:
    original = make(name, n=50, seed=len(name))
    _write(tmp_path, name, original, layout)
    log = TrafficLog(tmp_path)
    got = log.read(name)
    expected = conform(name, original)
    assert got.schema.names == expected.schema.names
    for field in TABLES[name].schema:
        assert got.schema.field(field.name).type == field.type
    assert got.equals(expected), f"{name} via {layout} differs"
    # streamed in small batches, it is the same table
    streamed = pa.Table.from_batches(list(log.batches(name, batch_size=16)))
    assert streamed.equals(expected)
    assert max(b.num_rows for b in log.batches(name, batch_size=16)) <= 16
    # the old one-call helpers see the same
    assert read_table(tmp_path, name).equals(expected)
    assert sum(b.num_rows for b in iter_batches(tmp_path, name, batch_size=10)) == 50


@pytest.mark.parametrize("layout", LAYOUTS)
def test_duckdb_view_has_format_types(
    tmp_path: Path, layout: str, make: Callable[..., pa.Table]
) -> None:
    events = make("events", n=40)
    _write(tmp_path, "events", events.drop_columns(["response", "latency_ms"]), layout)
    con = duckdb.connect()
    with TrafficLog(tmp_path) as log:
        assert log.duckdb_view(con, "events", "ev") == "ev"
        got = con.sql("SELECT * FROM ev").to_arrow_table()
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE ev)").fetchall())
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE"
    assert types["turns"] == "INTEGER" and types["status"] == "SMALLINT"
    assert types["temperature"] == "FLOAT" and types["latency_ms"] == "FLOAT"
    assert got.num_rows == 40
    assert got.column("latency_ms").null_count == 40  # absent optional column: typed NULLs
    assert got.column("extra_note").to_pylist() == events.column("extra_note").to_pylist()
    expected = conform("events", events).column("ts").to_pylist()
    assert got.column("ts").to_pylist() == expected
    per_day = con.sql("SELECT count(*) FROM ev GROUP BY date_trunc('day', ts)").fetchall()
    assert sum(n for (n,) in per_day) == 40


def test_missing_optional_columns_read_as_null_and_extras_kept(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(
        '{"event_id": "e1", "ts": "2026-03-01T10:00:00Z", "account_id": "a", "model": "m", '
        '"prompt": "hi", "region": "eu"}\n'
    )
    got = read_table(tmp_path, "events")
    assert got.column("response").to_pylist() == [None]
    assert got.column("turns").type == pa.int32()
    assert got.column("region").to_pylist() == ["eu"]


def test_jsonl_timestamps_accept_z_offsets_and_naive_as_utc(tmp_path: Path) -> None:
    stamps = [
        "2026-03-01T12:00:00Z",
        "2026-03-01T14:00:00+02:00",
        "2026-03-01T07:00:00-0500",
        "2026-03-01T12:00:00",
        "2026-03-01 12:00:00.000000z",
    ]
    lines = [
        f'{{"event_id": "e{i}", "ts": "{s}", "account_id": "a", "model": "m", "prompt": "p"}}'
        for i, s in enumerate(stamps)
    ]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    ts = read_table(tmp_path, "events").column("ts")
    assert ts.type == pa.timestamp("us", tz="UTC")
    assert len(set(ts.to_pylist())) == 1
    assert ts[0].as_py().isoformat() == "2026-03-01T12:00:00+00:00"


def test_parquet_with_other_but_compatible_types_is_cast(tmp_path: Path) -> None:
    table = pa.table(
        {
            "event_id": pa.array(["e1", "e2"], pa.large_string()),
            "ts": pa.array([1_772_366_400_000_000_000, 0], pa.timestamp("ns")),  # naive: UTC
            "account_id": pa.array(["a", "b"]).dictionary_encode(),
            "model": ["m", "m"],
            "prompt": ["p", "q"],
            "turns": pa.array([1, 2], pa.int64()),
            "temperature": pa.array([0.5, 1.0], pa.float64()),
        }
    )
    pq.write_table(table, tmp_path / "events.parquet")
    got = read_table(tmp_path, "events")
    assert got.column("turns").type == pa.int32()
    assert got.column("ts")[1].as_py().isoformat() == "1970-01-01T00:00:00+00:00"
    con = duckdb.connect()
    TrafficLog(tmp_path).duckdb_view(con, "events")
    assert con.execute("SELECT sum(turns), typeof(any_value(turns)) FROM events").fetchall() == [
        (3, "INTEGER")
    ]


def test_columns_subset_and_mixed_encodings(tmp_path: Path, make: Callable[..., pa.Table]) -> None:
    events = make("events", n=30)
    write_table(tmp_path, "events", events.slice(0, 10))
    with LogWriter(tmp_path / "x", fmt="jsonl.gz") as w:
        w.write("events", events.slice(10))
    (tmp_path / "x" / "events.jsonl.gz").rename(tmp_path / "events.jsonl.gz")
    log = TrafficLog(tmp_path)
    assert log.encoding("events") == "parquet+jsonl.gz (2 parts)"
    got = log.read("events", columns=["account_id", "ts"])
    assert got.column_names == ["ts", "account_id"]
    assert got.column("account_id").to_pylist() == events.column("account_id").to_pylist()


def test_writer_replaces_a_table_and_keeps_other_tables(
    tmp_path: Path, make: Callable[..., pa.Table]
) -> None:
    write_table(tmp_path, "events", make("events", n=5), fmt="jsonl")
    write_table(tmp_path, "accounts", make("accounts", n=5))
    write_table(tmp_path, "events", make("events", n=8))
    log = TrafficLog(tmp_path)
    assert log.encoding("events") == "parquet"
    assert log.read("events").num_rows == 8 and log.read("accounts").num_rows == 5
    assert log.tables() == ["events", "accounts"]


def test_empty_table_round_trips_with_schema(tmp_path: Path, make: Callable[..., pa.Table]) -> None:
    for fmt in ("parquet", "jsonl"):
        d = tmp_path / fmt
        write_table(d, "verdicts", make("verdicts", n=0), fmt=fmt)  # type: ignore[arg-type]
        got = TrafficLog(d).read("verdicts")
        assert got.num_rows == 0
        assert got.schema.field("first_flagged_ts").type == pa.timestamp("us", tz="UTC")


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "jsonl.gz"])
def test_append_mode_adds_to_existing_files(
    tmp_path: Path, fmt: str, make: Callable[..., pa.Table]
) -> None:
    events = make("events", n=30)
    write_table(tmp_path, "events", events.slice(0, 10), fmt=fmt)  # type: ignore[arg-type]
    if fmt == "jsonl":  # a crash left half a line behind
        with open(tmp_path / "events.jsonl", "ab") as fh:
            fh.write(b'{"event_id": "half')
    for start in (10, 20):  # two restarts
        with LogWriter(tmp_path, fmt, append=True) as w:  # type: ignore[arg-type]
            w.write("events", events.slice(start, 10))
    log = TrafficLog(tmp_path)
    assert log.read("events").equals(conform("events", events))
    assert not log.warnings  # the cut-off line was dropped before appending


def test_jsonl_extra_column_that_changes_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import distillguard.traffic._jsonl as jsonl

    monkeypatch.setattr(jsonl, "_BLOCK", 1 << 14)  # many blocks, so the change falls between them
    rows = [
        {
            "event_id": f"e{i}",
            "ts": "2026-03-01T12:00:00Z",
            "account_id": "a",
            "model": "m",
            "prompt": "p" * 40,
            "region": None if i < 300 else "eu",
            "n": i if i < 300 else f"s{i}",
        }
        for i in range(600)
    ]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = TrafficLog(tmp_path)
    got = log.read("events")
    assert got.column("region").to_pylist() == [r["region"] for r in rows]
    assert got.column("n").to_pylist() == [str(r["n"]) for r in rows]  # irreconcilable: text
    con = duckdb.connect()
    log.duckdb_view(con, "events")
    assert con.execute(
        "SELECT count(*), count(region), count(DISTINCT n) FROM events"
    ).fetchall() == [(600, 300, 600)]


def test_duckdb_cache_follows_the_source_file(
    tmp_path: Path, make: Callable[..., pa.Table]
) -> None:
    write_table(tmp_path, "events", make("events", n=10), fmt="jsonl")
    con = duckdb.connect()
    TrafficLog(tmp_path).duckdb_view(con, "events")
    assert con.execute("SELECT count(*) FROM events").fetchall() == [(10,)]
    write_table(tmp_path, "events", make("events", n=25), fmt="jsonl")
    TrafficLog(tmp_path).duckdb_view(con, "events")  # the log object is gone; the view still works
    assert con.execute("SELECT count(*) FROM events").fetchall() == [(25,)]
    assert len(list((tmp_path / ".distillguard-cache").iterdir())) == 1  # the old copy was removed
    assert TrafficLog(tmp_path).tables() == ["events"]


def test_writer_takes_batches_whose_extra_columns_change(
    tmp_path: Path, make: Callable[..., pa.Table]
) -> None:
    events = make("events", n=30).drop_columns(["extra_note"])
    first = events.slice(0, 10).append_column("tag", pa.nulls(10, pa.null()))
    second = events.slice(10, 10).append_column("tag", pa.array(["x"] * 10))
    third = events.slice(20, 10).append_column("tag", pa.array(list(range(10))))
    with LogWriter(tmp_path) as w:
        for t in (first, second, third):
            w.write("events", t)
    assert (
        len(w.written["events"]) == 2
    )  # text cannot go into the null-typed part; numbers cast to text
    got = TrafficLog(tmp_path).read("events")
    assert got.column("tag").to_pylist() == [None] * 10 + ["x"] * 10 + [str(i) for i in range(10)]
    assert got.drop_columns(["tag"]).equals(conform("events", events))
