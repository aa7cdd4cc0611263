"""Put a traffic-log table in front of DuckDB as a view (shared by `detect` and `report`).

`distillguard.traffic.TrafficLog.duckdb_view` is the real implementation (every encoding,
typed as the format says); until it is available this falls back to DuckDB's own Parquet
reader for `NAME.parquet`, `NAME-*.parquet` and `NAME/*.parquet`, and to the traffic reader
for JSONL.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from distillguard._errors import LogFormatError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_ident(name: str) -> str:
    """Quote an SQL identifier after checking it is a plain name."""
    if not _IDENT.match(name):
        raise ValueError(f"{name!r} is not a plain SQL identifier.")
    return f'"{name}"'


def table_files(log_dir: Path, name: str) -> list[Path]:
    """The Parquet files that hold table `name` in `log_dir` (empty when it has none)."""
    single = log_dir / f"{name}.parquet"
    if single.is_file():
        return [single]
    parts = sorted(log_dir.glob(f"{name}-*.parquet"))
    if (log_dir / name).is_dir():
        parts += sorted((log_dir / name).glob("*.parquet"))
    return parts


def has_table(log_dir: Path, name: str) -> bool:
    """Whether `log_dir` holds table `name` in any encoding the format lists."""
    if table_files(log_dir, name):
        return True
    return any((log_dir / f"{name}{ext}").is_file() for ext in (".jsonl", ".jsonl.gz"))


def register_view(con: Any, log_dir: Path, name: str, view_name: str | None = None) -> str:
    """Register table `name` of the log in `log_dir` as a DuckDB view; return the view's name.

    Raises:
        LogFormatError: the log has no such table.
    """
    view = view_name or name
    traffic = importlib.import_module("distillguard.traffic")
    traffic_log = getattr(traffic, "TrafficLog", None)
    if traffic_log is not None:
        result: str = traffic_log(log_dir).duckdb_view(con, name, view)
        return result
    files = table_files(log_dir, name)
    if files:
        listing = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
        con.execute(
            f"CREATE OR REPLACE VIEW {quote_ident(view)} AS "
            f"SELECT * FROM read_parquet([{listing}], union_by_name = true)"
        )
        return view
    if has_table(log_dir, name):
        table = traffic.read_table(log_dir, name)
        con.register(f"__dg_{view}", table)
        con.execute(
            f"CREATE OR REPLACE VIEW {quote_ident(view)} AS SELECT * FROM {quote_ident('__dg_' + view)}"
        )
        return view
    raise LogFormatError(
        f"the log has no {name} table (expected {name}.parquet, {name}-*.parquet, "
        f"{name}/*.parquet, {name}.jsonl or {name}.jsonl.gz); point at a traffic log directory",
        file=str(log_dir),
    )


def read_arrow(log_dir: Path, name: str, columns: list[str] | None = None) -> Any:
    """Read a (small) table of the log into an Arrow table, whatever its encoding."""
    import duckdb

    con = duckdb.connect()
    try:
        view = register_view(con, log_dir, name, f"__dg_read_{name}")
        cols = ", ".join(quote_ident(c) for c in columns) if columns else "*"
        return con.sql(f"SELECT {cols} FROM {quote_ident(view)}").to_arrow_table()
    finally:
        con.close()
