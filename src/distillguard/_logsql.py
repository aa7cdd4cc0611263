"""Small helpers to put traffic-log tables in front of DuckDB (shared by `detect` and `report`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from distillguard._errors import LogFormatError
from distillguard.traffic import TrafficLog

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_ident(name: str) -> str:
    """Quote an SQL identifier after checking it is a plain name."""
    if not _IDENT.match(name):
        raise ValueError(f"{name!r} is not a plain SQL identifier.")
    return f'"{name}"'


def has_table(log_dir: Path, name: str) -> bool:
    """Whether the directory `log_dir` holds table `name` in any encoding of the format."""
    return log_dir.is_dir() and TrafficLog(log_dir).has(name)


def register_view(con: Any, log_dir: Path, name: str, view_name: str | None = None) -> str:
    """Register table `name` of the log in `log_dir` as a typed DuckDB view; return its name.

    Raises:
        LogFormatError: the directory or the table is missing, or a file breaks the format.
    """
    log = TrafficLog(log_dir)
    if not log.has(name):
        raise LogFormatError(
            f"the log has no {name} table (expected {name}.parquet, {name}-*.parquet, "
            f"{name}/*.parquet, {name}.jsonl or {name}.jsonl.gz); point at a traffic log directory",
            file=str(log_dir),
        )
    return log.duckdb_view(con, name, view_name)
