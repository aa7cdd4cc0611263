"""Each class of bad input gives a LogFormatError naming file, row and column, or a counted warning."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard._errors import LogFormatError
from distillguard.traffic import TrafficLog, read_table, validate_log, write_table


def _event(i: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "event_id": f"e{i}",
        "ts": f"2026-03-01T12:{i % 60:02d}:00Z",
        "account_id": f"a{i % 5}",
        "model": "m",
        "prompt": f"prompt {i}",
        "turns": 1,
    }
    row.update(over)
    return {k: v for k, v in row.items() if v is not ...}


def _jsonl(path: Path, rows: list[dict[str, Any]], gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


def _delivered(
    log: TrafficLog, name: str = "events", batch_size: int = 100
) -> tuple[int, LogFormatError]:
    n = 0
    with pytest.raises(LogFormatError) as info:
        for batch in log.batches(name, batch_size=batch_size):
            n += batch.num_rows
    return n, info.value


@pytest.mark.parametrize("gz", [False, True])
def test_bad_timestamp_names_line_and_column_and_keeps_earlier_rows(
    tmp_path: Path, gz: bool
) -> None:
    rows = [_event(i) for i in range(2000)]
    rows[1234]["ts"] = "yesterday at noon"
    f = _jsonl(tmp_path / ("events.jsonl.gz" if gz else "events.jsonl"), rows, gz)
    n, err = _delivered(TrafficLog(tmp_path))
    assert (err.file, err.row, err.column) == (str(f), 1235, "ts")
    assert "yesterday at noon" in str(err)
    assert n == 1234  # every row before the bad one was delivered


def test_wrong_type_in_jsonl_names_exact_line_even_with_blank_lines(tmp_path: Path) -> None:
    rows = [_event(i) for i in range(300)]
    rows[250]["turns"] = "three"
    text = "".join(json.dumps(r) + "\n" + ("\n" if i == 10 else "") for i, r in enumerate(rows))
    (tmp_path / "events.jsonl").write_text(text)
    n, err = _delivered(TrafficLog(tmp_path), batch_size=64)
    assert (err.row, err.column) == (252, "turns")  # one blank line before it
    assert n == 250


@pytest.mark.parametrize(
    ("columns", "says"),
    [
        ({"ts": ["2026-03-01T00:00:00Z"], "account_id": [17]}, "int64"),  # a wrong type
        ({"ts": pa.array([0], pa.timestamp("us", tz="UTC"))}, "required column is missing"),
    ],
    ids=["wrong-type", "missing"],
)
def test_a_bad_parquet_column_is_named_with_its_file(tmp_path: Path, columns: dict[str, Any],
                                                     says: str) -> None:
    table = pa.table({"event_id": ["e1"], **columns, "model": ["m"], "prompt": ["p"]})
    pq.write_table(table, tmp_path / "events.parquet")
    with pytest.raises(LogFormatError) as info:
        read_table(tmp_path, "events")
    assert info.value.column == "account_id" and says in str(info.value)
    assert info.value.file == str(tmp_path / "events.parquet")


def test_bad_value_in_parquet_names_row(tmp_path: Path) -> None:
    ts = ["2026-03-01T00:00:00Z"] * 500
    ts[321] = "2026-13-45T99:00:00Z"
    n = len(ts)
    table = pa.table(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "ts": ts,
            "account_id": ["a"] * n,
            "model": ["m"] * n,
            "prompt": ["p"] * n,
        }
    )
    pq.write_table(table, tmp_path / "events.parquet")
    got, err = _delivered(TrafficLog(tmp_path))
    assert (err.row, err.column) == (322, "ts")
    assert got == 321


def test_a_jsonl_row_without_a_required_key_is_located_at_its_line(tmp_path: Path) -> None:
    _jsonl(tmp_path / "events.jsonl", [_event(0), _event(1, account_id=...)])
    with pytest.raises(LogFormatError) as info:
        read_table(tmp_path, "events")
    assert (info.value.row, info.value.column) == (2, "account_id")


def test_malformed_json_line(tmp_path: Path) -> None:
    lines = [json.dumps(_event(i)) for i in range(5)]
    lines[3] = '{"event_id": "e3", "ts": '
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    n, err = _delivered(TrafficLog(tmp_path))
    assert err.row == 4 and "not valid JSON" in str(err)
    assert n == 3


def test_cut_off_last_jsonl_line_is_a_warning_and_rows_are_kept(tmp_path: Path) -> None:
    text = (
        "".join(json.dumps(_event(i)) + "\n" for i in range(10)) + '{"event_id": "e10", "ts": "20'
    )
    (tmp_path / "events.jsonl").write_text(text)
    log = TrafficLog(tmp_path)
    assert log.read("events").num_rows == 10
    (warning,) = log.warnings
    assert warning.code == "truncated-line" and warning.examples[0].row == 11


def test_truncated_gzip_is_an_error_after_the_rows_before_it(tmp_path: Path) -> None:
    rows = [_event(i, prompt="x" * 200 + str(i)) for i in range(4_000)]
    raw = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode(), compresslevel=1)
    (tmp_path / "events.jsonl.gz").write_bytes(raw[: len(raw) // 2])
    n, err = _delivered(TrafficLog(tmp_path), batch_size=1000)
    assert "truncated" in str(err) and err.file == str(tmp_path / "events.jsonl.gz")
    assert 0 < n < 4_000 and err.row is not None and err.row > n


def test_truncated_and_empty_parquet(tmp_path: Path, make: Callable[..., pa.Table]) -> None:
    path = write_table(tmp_path, "events", make("events", n=100))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(LogFormatError, match="truncated") as info:
        read_table(tmp_path, "events")
    assert info.value.file == str(path)
    path.write_bytes(b"")
    with pytest.raises(LogFormatError, match="empty"):
        read_table(tmp_path, "events")


def test_empty_jsonl_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_bytes(b"")
    log = TrafficLog(tmp_path)
    assert log.read("events").num_rows == 0
    assert [w.code for w in log.warnings] == ["empty-file"]


def test_bad_part_does_not_lose_good_parts(tmp_path: Path, make: Callable[..., pa.Table]) -> None:
    events = make("events", n=60)
    d = tmp_path / "events"
    d.mkdir()
    pq.write_table(events.slice(0, 30), d / "part-00000.parquet")
    (d / "part-00001.parquet").write_bytes(b"PAR1 not really")
    n, err = _delivered(TrafficLog(tmp_path), batch_size=7)
    assert n == 30 and err.file == str(d / "part-00001.parquet")
    report = validate_log(tmp_path)
    assert report.table("events") is not None and report.table("events").rows == 30  # type: ignore[union-attr]
    assert report.exit_code == 2


def test_duplicate_event_ids_and_unknown_accounts_are_counted_warnings(tmp_path: Path) -> None:
    rows = [_event(i) for i in range(100)]
    rows[40]["event_id"] = "e3"
    rows[90]["event_id"] = "e3"
    rows[77]["account_id"] = "ghost"
    rows[78]["account_id"] = "ghost"
    rows[79]["account_id"] = "spectre"
    _jsonl(tmp_path / "events.jsonl", rows)
    write_table(tmp_path, "accounts", pa.table({"account_id": [f"a{i}" for i in range(5)]}))
    write_table(tmp_path, "models", pa.table({"model": ["m"]}))
    report = validate_log(tmp_path)
    assert report.exit_code == 1 and not report.errors
    by_code = {p.code: p for p in report.warnings}
    dup = by_code["duplicate-event_id"]
    assert dup.count == 2 and [e.row for e in dup.examples] == [41, 91]
    unknown = by_code["unknown-account"]
    assert unknown.count == 3 and "2 account_id value(s)" in unknown.message
    assert [(e.row, e.column) for e in unknown.examples] == [
        (78, "account_id"),
        (79, "account_id"),
        (80, "account_id"),
    ]
    assert report.events == 100 and report.accounts == 7


def test_missing_log_directory(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="does not exist"):
        TrafficLog(tmp_path / "nope")
    with pytest.raises(LogFormatError, match="no 'events' table"):
        read_table(tmp_path, "events")


def test_duckdb_view_refuses_nulls_in_required_columns(tmp_path: Path) -> None:
    import duckdb

    n = 1000
    prompts: list[str | None] = ["p"] * n
    prompts[876] = None
    table = pa.table(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "ts": pa.array(range(n), pa.timestamp("us", tz="UTC")),
            "account_id": ["a"] * n,
            "model": ["m"] * n,
            "prompt": prompts,
        }
    )
    pq.write_table(table, tmp_path / "events.parquet", row_group_size=300)
    with pytest.raises(LogFormatError) as info:
        TrafficLog(tmp_path).duckdb_view(duckdb.connect(), "events")
    assert (info.value.row, info.value.column) == (877, "prompt")
    report = validate_log(tmp_path)
    assert [(e.row, e.column) for p in report.errors for e in p.examples] == [(877, "prompt")]
    assert report.table("events").rows == 876  # type: ignore[union-attr]


def test_writer_refuses_rows_that_break_the_format(tmp_path: Path) -> None:
    from distillguard.traffic import LogWriter

    with LogWriter(tmp_path) as w, pytest.raises(LogFormatError) as info:
        w.write(
            "events",
            pa.table(
                {
                    "event_id": ["e1", None],
                    "ts": ["2026-03-01T00:00:00Z"] * 2,
                    "account_id": ["a"] * 2,
                    "model": ["m"] * 2,
                    "prompt": ["p"] * 2,
                }
            ),
        )
    assert (info.value.row, info.value.column) == (2, "event_id")


def test_file_that_vanishes_while_reading_is_a_format_error(
    tmp_path: Path, make: Callable[..., pa.Table]
) -> None:
    events = make("events", n=20)
    write_table(tmp_path, "events", events.slice(0, 10))
    (tmp_path / "x").mkdir()
    moved = write_table(tmp_path / "x", "events", events.slice(10), fmt="jsonl")
    moved.rename(tmp_path / "events.jsonl")
    it = TrafficLog(tmp_path).batches("events")
    assert next(it).num_rows == 10
    (tmp_path / "events.jsonl").unlink()
    with pytest.raises(LogFormatError, match="cannot read the file") as info:
        next(it)
    assert info.value.file == str(tmp_path / "events.jsonl")
