"""`open_source`: the reader for a `--from` format, with the options that format needs checked up front."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal, get_args

from distillguard._errors import ConfigError
from distillguard.ingest._anthropic import AnthropicBatch
from distillguard.ingest._batch import read_batch_info
from distillguard.ingest._litellm import DEFAULT_TABLE, litellm_source
from distillguard.ingest._mapped import ColumnMap, MappedFile
from distillguard.ingest._openai import OpenAIBatch, OpenAILog
from distillguard.ingest._run import Source

SourceFormat = Literal["litellm", "openai", "openai-batch", "anthropic-batch", "mapped"]
SOURCE_FORMATS: tuple[SourceFormat, ...] = get_args(SourceFormat)


def open_source(
    fmt: str,
    source: str | Path,
    *,
    requests: str | Path | None = None,
    batch: str | Path | None = None,
    account: str | None = None,
    column_map: str | Path | None = None,
    table: str = DEFAULT_TABLE,
    since: datetime | None = None,
) -> Source:
    """The reader of `source` in format `fmt`.

    Args:
        fmt: one of SOURCE_FORMATS.
        source: a file, or for `litellm` a `postgresql://` URL.
        requests: the batch's request file (`openai-batch`, `anthropic-batch`; required).
        batch: the batch object saved as JSON, for its id and creation time (required for
            `anthropic-batch`, whose results carry no time).
        account: the account of sources that name none (batch files; `openai` lines without
            `account_id`).
        column_map: the TOML column map (`mapped`; required).
        table: LiteLLM's table, `NAME` or `SCHEMA.NAME`.
        since: for `litellm` from PostgreSQL, read only rows from this time on.

    Raises:
        ConfigError: an unknown format or a missing option, with what to pass.
    """
    if fmt not in SOURCE_FORMATS:
        raise ConfigError(f"Unknown source format {fmt!r}; use one of {', '.join(SOURCE_FORMATS)}.")
    missing = []
    if fmt in ("openai-batch", "anthropic-batch") and requests is None:
        missing.append("--requests (the batch's request file: input JSONL or create body)")
    if fmt == "anthropic-batch" and batch is None:
        missing.append("--batch (the batch object JSON: its results carry no time)")
    if fmt in ("openai-batch", "anthropic-batch") and account is None:
        missing.append("--account (batch files do not name the account that sent them)")
    if fmt == "mapped" and column_map is None:
        missing.append("--map (the TOML column map)")
    if missing:
        raise ConfigError(f"--from {fmt} needs " + " and ".join(missing) + ".")
    if fmt == "litellm":
        return litellm_source(source, table=table, since=since)
    if fmt == "openai":
        return OpenAILog(Path(source), account)
    if fmt == "openai-batch":
        assert requests is not None
        return OpenAIBatch(Path(source), Path(requests), read_batch_info(batch), account)
    if fmt == "anthropic-batch":
        assert requests is not None
        return AnthropicBatch(Path(source), Path(requests), read_batch_info(batch), account)
    assert column_map is not None
    return MappedFile(Path(source), ColumnMap.load(column_map))
