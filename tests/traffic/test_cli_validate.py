"""`distillguard validate` through typer's CliRunner: summary, problems, exit codes, no tracebacks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from typer.testing import CliRunner

from distillguard.cli import app
from distillguard.traffic import LogWriter, write_table


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["validate", *args], env={"COLUMNS": "240"})
    # typer.Exit surfaces as SystemExit; anything else would be a traceback for the user.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _clean_log(d: Path, make: Callable[..., pa.Table]) -> pa.Table:
    events = make("events", n=120)
    with LogWriter(d, part_rows=50) as w:
        w.write("events", events)
    write_table(
        d,
        "accounts",
        pa.table({"account_id": sorted(set(events.column("account_id").to_pylist()))}),
    )
    write_table(d, "models", pa.table({"model": ["model-a", "model-b"]}), fmt="jsonl.gz")
    return events


def test_clean_log_exits_0_with_summary(tmp_path: Path, make: Callable[..., pa.Table]) -> None:
    events = _clean_log(tmp_path, make)
    code, out = _invoke(str(tmp_path))
    assert code == 0, out
    assert "parquet (3 parts)" in out and "jsonl.gz" in out
    assert "events: 120" in out and "accounts: 7" in out and "model-a (60)" in out
    first = min(events.column("ts").to_pylist())
    assert f"{first:%Y-%m-%d %H:%M:%S}" in out
    assert "no problems" in out


def test_warnings_only_exit_1(tmp_path: Path, make: Callable[..., pa.Table]) -> None:
    _clean_log(tmp_path, make)
    write_table(tmp_path, "accounts", pa.table({"account_id": ["account_id-00000"]}))
    code, out = _invoke(str(tmp_path))
    assert code == 1, out
    assert "missing from the accounts table" in out and "warning" in out


def test_errors_exit_2_and_name_the_place(tmp_path: Path) -> None:
    row = {
        "event_id": "e1",
        "ts": "2026-03-01T00:00:00Z",
        "account_id": "a",
        "model": "m",
        "prompt": "p",
    }
    bad = dict(row, event_id="e2", ts="not a time")
    (tmp_path / "events.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(bad) + "\n")
    code, out = _invoke(str(tmp_path))
    assert code == 2
    assert "events.jsonl" in out and "row 2" in out and "'ts'" in out and "not a time" in out
    assert "events: 1" in out  # the good row before it still counts


def test_missing_directory_and_missing_events_exit_2(tmp_path: Path) -> None:
    code, out = _invoke(str(tmp_path / "absent"))
    assert code == 2 and "does not exist" in out
    code, out = _invoke(str(tmp_path))
    assert code == 2 and "no events table" in out


def test_truncated_parquet_is_reported_not_raised(
    tmp_path: Path, make: Callable[..., pa.Table]
) -> None:
    path = write_table(tmp_path, "events", make("events", n=30))
    path.write_bytes(path.read_bytes()[:200])
    code, out = _invoke(str(tmp_path))
    assert code == 2 and "truncated" in out and "Traceback" not in out


def test_console_script_exit_code_for_warnings(
    tmp_path: Path, make: Callable[..., pa.Table]
) -> None:
    """The real entry point (not CliRunner) passes the exit code on to the shell."""
    import subprocess
    import sys

    _clean_log(tmp_path, make)
    write_table(tmp_path, "accounts", pa.table({"account_id": ["account_id-00000"]}))
    code = "from distillguard.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
