"""The traffic log: the one format every part of distillguard reads and writes.

`TrafficLog` reads any table in any encoding of the format (Parquet, Parquet
parts, JSONL, JSONL.gz) as typed Arrow batches or a DuckDB view; `LogWriter`
streams tables out; `validate_log` checks a whole log and summarises it.
"""

from distillguard.traffic._files import ENCODINGS, Encoding, TableFile
from distillguard.traffic._io import conform, iter_batches, read_table, write_table
from distillguard.traffic._log import TrafficLog
from distillguard.traffic._problems import Location, Problem
from distillguard.traffic._schema import (
    ACCOUNTS,
    ACTIONS,
    CAMPAIGNS,
    END_USER_VERDICTS,
    EVENTS,
    FLAGGED_ACTIONS,
    LABEL_VALUES,
    LABELS,
    MODELS,
    OVERRIDE_ACTIONS,
    OVERRIDES,
    TABLES,
    TS,
    VERDICTS,
    Table,
)
from distillguard.traffic._validate import TableSummary, ValidationReport, validate_log
from distillguard.traffic._writer import FORMATS, Format, LogWriter

__all__ = [
    "ACCOUNTS",
    "ACTIONS",
    "CAMPAIGNS",
    "ENCODINGS",
    "END_USER_VERDICTS",
    "EVENTS",
    "FLAGGED_ACTIONS",
    "FORMATS",
    "LABELS",
    "LABEL_VALUES",
    "MODELS",
    "OVERRIDES",
    "OVERRIDE_ACTIONS",
    "TABLES",
    "TS",
    "VERDICTS",
    "Encoding",
    "Format",
    "Location",
    "LogWriter",
    "Problem",
    "Table",
    "TableFile",
    "TableSummary",
    "TrafficLog",
    "ValidationReport",
    "conform",
    "iter_batches",
    "read_table",
    "validate_log",
    "write_table",
]
