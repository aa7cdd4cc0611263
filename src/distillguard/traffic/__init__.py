"""The traffic log: the one format every part of distillguard reads and writes."""

from distillguard.traffic._io import conform, iter_batches, read_table, write_table
from distillguard.traffic._schema import (
    ACCOUNTS,
    ACTIONS,
    CAMPAIGNS,
    EVENTS,
    FLAGGED_ACTIONS,
    LABELS,
    MODELS,
    TABLES,
    VERDICTS,
    Table,
)

__all__ = [
    "ACCOUNTS",
    "ACTIONS",
    "CAMPAIGNS",
    "EVENTS",
    "FLAGGED_ACTIONS",
    "LABELS",
    "MODELS",
    "TABLES",
    "VERDICTS",
    "Table",
    "conform",
    "iter_batches",
    "read_table",
    "write_table",
]
