"""The ingest loop itself: exports, layering, column maps, --since on files, flat memory."""

from __future__ import annotations

import ast
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import distillguard.ingest as ingest_pkg
from distillguard._errors import ConfigError
from distillguard.ingest import ColumnMap, Record, Rejected, ingest, open_source
from distillguard.traffic import Location, read_table

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_all_names_resolve_and_nothing_else_is_public() -> None:
    assert len(set(ingest_pkg.__all__)) == len(ingest_pkg.__all__)
    for name in ingest_pkg.__all__:
        assert getattr(ingest_pkg, name) is not None
    public = {n for n in vars(ingest_pkg) if not n.startswith("_")}
    assert public - set(ingest_pkg.__all__) == set()


def test_ingest_imports_only_traffic_among_the_parts() -> None:
    root = Path(ingest_pkg.__file__).parent
    allowed = ("distillguard.traffic", "distillguard.ingest", "distillguard._errors")
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            for name in names:
                if name.startswith("distillguard"):
                    assert name.startswith(allowed), f"{path.name} imports {name}"


def test_column_map_reports_every_problem_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[source]\nkind = "xml"\n[columns]\nprompt = "q"\nnot_a_column = "x"\n'
                   '[extra]\n')
    with pytest.raises(ConfigError) as info:
        ColumnMap.load(bad)
    message = str(info.value)
    for needle in ("kind = 'xml'", "not_a_column", "[extra]", "'event_id'", "'ts'",
                   "'account_id'", "'model'"):
        assert needle in message


def test_since_keeps_later_rows_and_appends(tmp_path: Path) -> None:
    out = tmp_path / "log"
    kong, cmap = FIXTURES / "kong_http_log.jsonl", FIXTURES / "kong.toml"
    ingest(open_source("mapped", FIXTURES / "inhouse.csv", column_map=FIXTURES / "inhouse.toml"),
           out)
    # the Kong rows are 2026-11-05 17:33:20, :21, :22; keep the last two
    report = ingest(open_source("mapped", kong, column_map=cmap), out,
                    since=datetime(2026, 11, 5, 17, 33, 21, tzinfo=UTC))
    assert (report.written, report.skipped_since) == (2, 1)
    ids = set(read_table(out, "events").column("event_id").to_pylist())
    assert ids == {"req-0001", "req-0002", "req-0003", "6f1f0b2a3c01", "6f1f0b2a3c02"}


def test_without_since_the_events_are_replaced(tmp_path: Path) -> None:
    out = tmp_path / "log"
    inhouse = open_source("mapped", FIXTURES / "inhouse.csv", column_map=FIXTURES / "inhouse.toml")
    ingest(inhouse, out)
    ingest(inhouse, out)
    assert read_table(out, "events").num_rows == 3


class _Synthetic:
    """A large source made on the fly: long prompts, every 1000th row bad."""

    name = "synthetic"
    unit = "rows"

    def __init__(self, n: int) -> None:
        self.n = n
        self.total = n

    def __iter__(self) -> Iterator[Record | Rejected]:
        for i in range(self.n):
            loc = Location("synthetic", i + 1)
            if i % 1000 == 999:
                yield Rejected(loc, "bad on purpose")
                continue
            yield Record(loc, {
                "event_id": f"e{i}", "ts": T0 + timedelta(seconds=i), "account_id": f"a{i % 50}",
                "model": "m", "prompt": f"prompt {i} " + "x" * 400,
            })


def test_memory_stays_flat_as_the_source_grows(tmp_path: Path) -> None:
    peaks = []
    for n in (5_000, 40_000):
        tracemalloc.start()
        report = ingest(_Synthetic(n), tmp_path / f"log{n}", batch_rows=2_000)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert report.written == n - n // 1000 and report.rejected == n // 1000
    # Eight times the rows, not eight times the memory (a list of all rows would be ~8x).
    assert peaks[1] < 2 * peaks[0], peaks


def test_a_run_that_writes_nothing_keeps_the_existing_log(tmp_path: Path) -> None:
    out = tmp_path / "log"
    ingest(open_source("mapped", FIXTURES / "inhouse.csv", column_map=FIXTURES / "inhouse.toml"),
           out)
    # the wrong reader: every line is rejected, nothing is written
    report = ingest(open_source("openai", FIXTURES / "kong_http_log.jsonl"), out)
    assert (report.written, report.rejected, report.exit_code) == (0, 4, 2)
    assert read_table(out, "events").num_rows == 3
    empty = ingest(open_source("openai", FIXTURES / "kong_http_log.jsonl"), tmp_path / "new")
    assert empty.written == 0 and read_table(tmp_path / "new", "events").num_rows == 0


def test_usage_problems_exit_2_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from distillguard.cli import main

    monkeypatch.setattr("sys.argv", ["distillguard", "ingest", str(FIXTURES / "inhouse.csv"),
                                     "--from", "mapped", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    assert "--map" in capsys.readouterr().err
