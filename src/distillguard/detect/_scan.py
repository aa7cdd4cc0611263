"""The scan front door: run a registered detector over a log, write its verdicts and campaigns."""

from __future__ import annotations

import inspect
from pathlib import Path

from distillguard._errors import ConfigError, LogFormatError
from distillguard.detect import _registry
from distillguard.detect._registry import Engine, ScanResult
from distillguard.traffic import conform, write_table


def scan(
    log_dir: str | Path,
    out_dir: str | Path,
    detector: str | None = None,
    config: str | Path | None = None,
    engine: Engine = "duckdb",
    indicators: str | Path | None = None,
    checkpoint: str | Path | None = None,
) -> ScanResult:
    """Scan the traffic log in `log_dir` and write `verdicts` and `campaigns` to `out_dir`.

    Args:
        log_dir: a traffic log directory (at least an `events` table).
        out_dir: where the verdicts, campaigns and any extra tables go (created if needed).
        detector: a registered detector name; `DEFAULT_DETECTOR` when None.
        config: the detector's configuration file, or None for its defaults.
        engine: `duckdb` (embedded), `spark`, or `spark-streaming` (the parts of `events/` as a
            Structured Streaming source, one per micro-batch; see `_spark_stream`).
        indicators: partners' STIX indicators; accounts matching them count as linked.
        checkpoint: the streaming query's checkpoint folder (`spark-streaming` only): a scan
            started again on it resumes where the last one stopped or crashed.

    Returns:
        The verdicts and campaigns as written (conformed to the format's schemas).

    Raises:
        ConfigError: unknown detector or engine, a config file that does not exist, or a
            checkpoint for an engine that takes none.
        LogFormatError: `log_dir` is not a traffic log.

    Examples:
        >>> scan("log", "verdicts-volume", detector="volume")  # doctest: +SKIP
    """
    log_path = Path(log_dir)
    if not log_path.is_dir():
        raise LogFormatError(
            "this is not a directory; point at a traffic log directory", file=str(log_path)
        )
    config_path = Path(config) if config is not None else None
    if config_path is not None and not config_path.is_file():
        raise ConfigError(f"The detector config file {config_path} does not exist.")
    name = detector if detector is not None else _registry.DEFAULT_DETECTOR
    fn = _registry.get_detector(name, engine)
    out = Path(out_dir)
    # Analysts' decisions recorded next to the previous verdicts (the console writes
    # `overrides.jsonl` there) feed this scan, for detectors that take decisions.
    params = inspect.signature(fn).parameters
    extra: dict[str, object] = {}
    if "decisions_dir" in params:
        extra["decisions_dir"] = out
    if indicators is not None:
        if "indicators" not in params:
            raise ConfigError(f"Detector {name!r} does not use partners' indicators.")
        extra["indicators"] = Path(indicators)
    if checkpoint is not None:
        if "checkpoint" not in params:
            raise ConfigError(f"A checkpoint is for the spark-streaming engine; detector {name!r} on {engine} takes none.")
        extra["checkpoint"] = Path(checkpoint)
    result = fn(log_path, config_path, **extra)
    verdicts = conform("verdicts", result.verdicts)
    campaigns = conform("campaigns", result.campaigns)
    write_table(out, "verdicts", verdicts)
    write_table(out, "campaigns", campaigns)
    for table_name, table in result.tables.items():
        _write_extra(out, table_name, table)
    return ScanResult(verdicts=verdicts, campaigns=campaigns, tables=dict(result.tables))


def _write_extra(out: Path, name: str, table: object) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert isinstance(table, pa.Table)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / f"{name}.parquet")
