"""Spark Structured Streaming: follow a folder of Parquet parts, decide as the batch scan does.

A prototype of the online path on a stream processor. The file source picks up the parts of
`LOG/events/` as they land (at most `files_per_batch` per micro-batch, oldest modification
time first); the executors reduce each micro-batch's events to signals with the batch
engine's function (`mapInArrow`, `_spark._signals_of_batches`); the driver (`foreachBatch`)
collects those small rows and replays them through the same `OnlineDetector`, whole cadence
windows at a time, in time order, deciding after each window as the scan does (`WindowReplay`).
At the end the scan's tables are built by the scan's own code.

Ordering across micro-batches: Spark guarantees none for event time. A part may hold events
older than a part before it (a replica's export that came late, parts written out of order).
So the driver holds events back until the stream's watermark (the newest event time seen,
less `lateness`) passes the end of their window, and replays each window once, when it
closes. An event older than the oldest open window is late: it is not dropped (that would let
a client hide traffic by delaying it) but folded into the oldest open window, its time moved
up to that window's start, and counted in `WindowReplay.late`. Verdicts equal the batch scan's
when no event arrives more than `lateness` behind the newest one already seen; a late event
changes nothing decided before it arrived.

The detector's state lives on the driver and is not part of Spark's checkpoint: a restarted
query replays the folder from the start (the fleet's detector service checkpoints its state;
see `gateway._detector`).
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from distillguard._errors import ConfigError
from distillguard.detect._config import DetectConfig, load_config
from distillguard.detect._firstrequest import FirstRequestFlags
from distillguard.detect._registry import ScanResult
from distillguard.detect._replay import (
    load_overrides,
    log_detector,
    partner_matches,
    replay_chunk,
    scan_tables,
)
from distillguard.detect._stream import SIGNAL_COLUMNS, Progress

#: how far behind the newest event seen an event may arrive and still be replayed in its own
#: window (minutes of event time)
LATENESS_MINUTES = 60.0
#: Parquet parts per micro-batch
FILES_PER_BATCH = 1
#: seconds between micro-batches when following a folder
TRIGGER_SECONDS = 5.0


class WindowReplay:
    """The driver's side: signals in any order in, replayed window by window in time order.

    Args:
        log_dir: the log (its accounts, models and overrides; the scan's tables at the end).
        config: the detection config.
        lateness_us: how far behind the newest event seen an event may arrive (see the module).
    """

    def __init__(self, log_dir: Path, config: DetectConfig, lateness_us: int,
                 decisions_dir: Path | None = None, indicators: Path | None = None,
                 progress: Progress | None = None) -> None:
        self.log_dir = log_dir
        self.config = config
        self.lateness_us = lateness_us
        self.progress = progress
        self.overrides = load_overrides(log_dir, *([decisions_dir] if decisions_dir else []))
        self.partners = partner_matches(log_dir, indicators)
        self.gate = FirstRequestFlags(config.first_request) if config.first_request.enabled else None
        self.det = log_detector(log_dir, config, self.overrides, self.partners)
        self.step = int(config.replay.cadence_minutes * 60_000_000)
        self.origin: int | None = None  # where the windows start, fixed at the first replay
        self.closed_until: int | None = None  # the end of the last window replayed
        self.newest = np.iinfo(np.int64).min
        self.pending: list[pl.DataFrame] = []
        self.first_flag = np.full(0, -1, np.int64)
        self.late = 0  # events that arrived after their window was replayed
        self.batches = 0

    def add(self, sig: pl.DataFrame) -> None:
        """One micro-batch's signals (any order); replays the windows the watermark closed."""
        self.batches += 1
        if not sig.height:
            return
        if self.closed_until is not None:
            late = sig["ts_us"] < self.closed_until
            self.late += int(late.sum())
            sig = sig.with_columns(
                pl.when(late).then(pl.lit(self.closed_until, pl.Int64)).otherwise(pl.col("ts_us")).alias("ts_us"))
        self.pending.append(sig)
        self.newest = max(self.newest, int(sig["ts_us"].max()))  # type: ignore[arg-type]
        self._replay_until(self.newest - self.lateness_us)

    def finish(self) -> ScanResult:
        """Replay every window still open and build the scan's tables."""
        self._replay_until(None)
        if self.origin is None:
            raise ConfigError(f"{self.log_dir} has no events to scan.")
        return scan_tables(self.log_dir, self.config, self.det, self.first_flag, self.overrides,
                           self.partners, self.gate)

    def _replay_until(self, watermark: int | None) -> None:
        """Replay the pending events of the windows that end at or before `watermark` (None:
        all of them)."""
        if not self.pending:
            return
        pool = pl.concat(self.pending, how="vertical_relaxed") if len(self.pending) > 1 else self.pending[0]
        if self.origin is None:
            self.origin = (int(pool["ts_us"].min()) // self.step) * self.step  # type: ignore[arg-type]
        if watermark is None:
            cut = self.origin + ((int(pool["ts_us"].max()) - self.origin) // self.step + 1) * self.step  # type: ignore[arg-type]
        else:
            cut = self.origin + ((watermark - self.origin) // self.step) * self.step
        if self.closed_until is not None and cut <= self.closed_until:
            self.pending = [pool]
            return
        ready = pool.filter(pl.col("ts_us") < cut).sort("ts_us", "event_id")
        self.pending = [pool.filter(pl.col("ts_us") >= cut)]
        self.closed_until = cut
        if ready.height:
            prep = self.det.state.prepare(ready, self.step, self.origin)
            self.det.state.admit(prep)
            self.first_flag = replay_chunk(self.det, prep, self.step, self.origin, self.first_flag,
                                           self.progress, self.gate)


def _events_folder(log_dir: Path) -> Path:
    folder = log_dir / "events"
    if not folder.is_dir() or not any(folder.rglob("*.parquet")):
        raise ConfigError(f"Spark streaming follows a folder of Parquet parts; {folder} has none "
                          "(a log with one events file is scanned by the batch engines).")
    return folder


def spark_stream(log_dir: Path, config: Path | None = None, progress: Progress | None = None,
                 decisions_dir: Path | None = None, indicators: Path | None = None, *,
                 master: str = "local[2]", files_per_batch: int = FILES_PER_BATCH,
                 lateness_minutes: float = LATENESS_MINUTES, follow: threading.Event | None = None,
                 trigger_seconds: float = TRIGGER_SECONDS) -> tuple[ScanResult, WindowReplay]:
    """Run the detector over `LOG/events/` as a Structured Streaming query.

    Without `follow`, the parts there now are read (`availableNow`, `files_per_batch` per
    micro-batch) and the query stops; with it, the query follows the folder (a micro-batch
    every `trigger_seconds`) until the event is set, then reads what is there and stops.
    Returns the scan's tables as of the end, and the driver's replay (its `late` count, the
    detector).
    """
    from distillguard.detect._spark import _HASHED, _SIGNAL_SCHEMA, _session, _signals_of_batches

    folder = _events_folder(log_dir)
    spark = _session(master)
    replay = WindowReplay(log_dir, load_config(config), int(lateness_minutes * 60_000_000),
                          decisions_dir, indicators, progress)
    reader = spark.read.option("recursiveFileLookup", "true").option("mergeSchema", "true")
    schema = reader.parquet(str(folder)).schema
    events = (spark.readStream.schema(schema).option("recursiveFileLookup", "true")
              .option("maxFilesPerTrigger", files_per_batch).parquet(str(folder)))
    present = [c for c in SIGNAL_COLUMNS if c in events.columns]
    signals = events.select(*present).mapInArrow(_signals_of_batches, _SIGNAL_SCHEMA)

    def on_batch(frame: Any, _batch_id: int) -> None:
        table = frame.toArrow()
        sig = pl.from_arrow(table)
        assert isinstance(sig, pl.DataFrame)
        # Spark carries the hash bits as signed (see `_spark`)
        replay.add(sig.with_columns([pl.col(k).reinterpret(signed=False) for k in _HASHED]))

    with tempfile.TemporaryDirectory(prefix="distillguard-stream-") as checkpoint:
        writer = signals.writeStream.foreachBatch(on_batch).option("checkpointLocation", checkpoint)
        if follow is None:
            query = writer.trigger(availableNow=True).start()
            query.awaitTermination()
        else:
            query = writer.trigger(processingTime=f"{trigger_seconds:g} seconds").start()
            while not follow.wait(trigger_seconds) and query.isActive:
                pass
            if query.isActive:
                query.processAllAvailable()  # the parts already there are part of the answer
            query.stop()
        if query.exception() is not None:
            raise RuntimeError(f"the streaming query failed: {query.exception()}")
    return replay.finish(), replay


def graph_detector_spark_stream(log_dir: Path, config: Path | None = None,
                                progress: Progress | None = None,
                                decisions_dir: Path | None = None,
                                indicators: Path | None = None) -> ScanResult:
    """The default detector over the log's parts as a Spark Structured Streaming query."""
    return spark_stream(log_dir, config, progress, decisions_dir, indicators)[0]
