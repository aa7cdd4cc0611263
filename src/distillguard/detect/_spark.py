"""The Spark engine: the per-event work distributed, the same replay on the driver.

Reducing events to signals is where the text is, and it is embarrassingly parallel: Spark runs
the very same `event_signals` function over Arrow batches on its executors (`mapInArrow`), sorts
the small signal rows by time, and streams them to the driver, which replays them through the
same `OnlineDetector` as the embedded engine. Same functions, same order: same verdicts.

Reads Parquet logs: `events.parquet`, parts, or date-partitioned folders
(`events/date=2026-02-01/part-0.parquet`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from distillguard._errors import ConfigError
from distillguard.detect._registry import ScanResult
from distillguard.detect._replay import finish_scan
from distillguard.detect._signatures import EDGE_KEYS, TEMPLATE_KEYS, event_signals
from distillguard.detect._stream import SIGNAL_COLUMNS, Progress

_SIGNAL_SCHEMA = (
    "ts_us LONG, event_id STRING, account_id STRING, ip STRING, model STRING, "
    "is_browser BOOLEAN, turns INT, tools INT, completion_tokens LONG, capped BOOLEAN, "
    "cot BOOLEAN, rubric BOOLEAN, datagen BOOLEAN, code BOOLEAN, math BOOLEAN, distill INT, sys LONG, "
    + ", ".join(f"{k} LONG" for k in (*TEMPLATE_KEYS, *EDGE_KEYS))
    + ", item LONG, topic INT"
)
# Spark has no unsigned integers: hashes and sketches travel as signed, bit for bit.
_HASHED = ("sys", *TEMPLATE_KEYS, *EDGE_KEYS, "item", "topic")


def _signals_of_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Executor side: Arrow batches of events in, Arrow batches of signals out."""
    from distillguard.traffic import conform

    for batch in batches:
        frame = pl.from_arrow(conform("events", pa.Table.from_batches([batch])))
        assert isinstance(frame, pl.DataFrame)
        sig = event_signals(frame).with_columns(
            # Spark has no unsigned integers: carry the hash bits as signed.
            [pl.col(k).reinterpret(signed=True) for k in _HASHED]
        ).with_columns(pl.col("distill").cast(pl.Int32))
        yield from sig.to_arrow().to_batches()


def _session(master: str) -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            "The Spark engine needs pyspark: pip install 'distillguard[spark]'."
        ) from exc
    # Stay on the loopback interface: a scan never needs the network.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Local workers must run this interpreter (the one with distillguard), not PATH's python3.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(master)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .appName("distillguard-scan")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )


def _event_paths(log_dir: Path) -> list[str]:
    from distillguard.traffic import TrafficLog

    log = TrafficLog(log_dir)
    files = log.files("events")
    if not files or any(not str(f).endswith(".parquet") for f in files):
        raise ConfigError(
            f"The Spark engine reads Parquet logs; {log_dir} stores events as "
            f"{log.encoding('events')}. Convert it first (distillguard validate shows the encoding)."
        )
    return [str(f) for f in files]


def spark_signals(log_dir: Path, master: str = "local[2]",
                  progress: Progress | None = None) -> pl.DataFrame:
    """Per-event signals computed by Spark, sorted by time, collected on the driver."""
    spark = _session(master)
    events = spark.read.option("mergeSchema", "true").parquet(*_event_paths(log_dir))
    present = [c for c in SIGNAL_COLUMNS if c in events.columns]
    sig = events.select(*present).mapInArrow(_signals_of_batches, _SIGNAL_SCHEMA)
    ordered = sig.orderBy("ts_us", "event_id")
    parts: list[pl.DataFrame] = []
    done = 0
    for batch in ordered.toArrow().to_batches():
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        parts.append(frame.with_columns([pl.col(k).reinterpret(signed=False) for k in _HASHED]))
        done += frame.height
        if progress:
            progress("signals", done)
    if not parts:
        raise ConfigError(f"{log_dir} has no events to scan.")
    return pl.concat(parts)


def graph_detector_spark(log_dir: Path, config: Path | None = None,
                         progress: Progress | None = None,
                         decisions_dir: Path | None = None,
                         indicators: Path | None = None) -> ScanResult:
    """The default detector with its per-event work on Apache Spark."""
    return finish_scan(log_dir, config, spark_signals(log_dir, progress=progress), progress,
                       decisions_dir, indicators)
