"""Ingest: a provider's existing logs into the traffic log format.

Readers turn each source into rows (`Record`) or named failures (`Rejected`);
`ingest` streams them into a log directory with the traffic package's
`LogWriter`, keeping every good row and reporting every bad one by file, row and
column. `open_source` picks the reader for a `--from` format:

| format | source |
| --- | --- |
| `litellm` | LiteLLM's `LiteLLM_SpendLogs` table (`postgresql://...`) or an export of it |
| `openai` | JSONL of `{"request", "response", ...}` exchanges (proxy or in-house logs) |
| `openai-batch` | a Batch API output file, joined to its input file (`requests`) |
| `anthropic-batch` | a Message Batches results file, joined to its requests |
| `mapped` | any CSV/JSONL/Parquet log with a column map (TOML) |

    >>> report = ingest(open_source("litellm", "spend_logs.jsonl"), "log/")  # doctest: +SKIP
"""

from distillguard.ingest._anthropic import AnthropicBatch
from distillguard.ingest._batch import BatchInfo, read_batch_info
from distillguard.ingest._convert import END_USER_MAX_CHARS, RowError
from distillguard.ingest._litellm import DEFAULT_TABLE, LiteLLMDatabase, LiteLLMExport
from distillguard.ingest._mapped import ColumnMap, MappedFile
from distillguard.ingest._openai import OpenAIBatch, OpenAILog
from distillguard.ingest._run import (
    BATCH_ROWS,
    IngestReport,
    Record,
    Rejected,
    Source,
    ingest,
    last_ingested,
)
from distillguard.ingest._sources import SOURCE_FORMATS, SourceFormat, open_source

__all__ = [
    "BATCH_ROWS",
    "DEFAULT_TABLE",
    "END_USER_MAX_CHARS",
    "SOURCE_FORMATS",
    "AnthropicBatch",
    "BatchInfo",
    "ColumnMap",
    "IngestReport",
    "LiteLLMDatabase",
    "LiteLLMExport",
    "MappedFile",
    "OpenAIBatch",
    "OpenAILog",
    "Record",
    "Rejected",
    "RowError",
    "Source",
    "SourceFormat",
    "ingest",
    "last_ingested",
    "open_source",
    "read_batch_info",
]
