"""Spark Structured Streaming: follow a folder of Parquet parts, decide as the batch scan does.

A prototype of the online path on a stream processor. The file source picks up the parts of
`LOG/events/` as they land (at most `files_per_batch` per micro-batch, oldest modification
time first); the executors reduce each micro-batch's events to signals with the batch
engine's function (`mapInArrow`, `_spark._signals_of_batches`); the driver (`foreachBatch`)
collects those small rows and replays them through the same `OnlineDetector`, whole cadence
windows at a time, in time order, deciding after each window as the scan does (`WindowReplay`).
Where the parts carry `end_user` (format v1.1), the same windows feed the scan's second
detector of (account, end user) sub-principals (`_endusers.SubPrincipals`). At the end the
scan's tables (with `end_user_verdicts` when an event named an end user) are built by the
scan's own code.

Ordering across micro-batches: Spark guarantees none for event time. A part may hold events
older than a part before it (a replica's export that came late, parts written out of order).
So the driver holds events back until the stream's watermark (the newest event time seen,
less `lateness`) passes the end of their window, and replays each window once, when it
closes. An event older than the oldest open window is late: it is not dropped (that would let
a client hide traffic by delaying it) but folded into the oldest open window, its time moved
up to that window's start, and counted in `WindowReplay.late`. Verdicts equal the batch scan's
when no event arrives more than `lateness` behind the newest one already seen; a late event
changes nothing decided before it arrived.

State and restarts: the driver's replay (the detectors, the events held back, the watermark)
is saved after every micro-batch into the query's checkpoint folder (`detector/<batch id>.state`,
the `_checkpoint` format), before `foreachBatch` returns and so before Spark writes that batch
to its commit log. A restarted query loads the newest saved state and Spark resumes after its
last committed batch. A crash between the two (state saved, commit not written) makes Spark
run that batch again with the same files; the replay knows it has applied it (its batch id is
not above the saved one) and skips it, so no event is counted twice and none is lost.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from distillguard._errors import ConfigError
from distillguard.detect._checkpoint import decode, encode, snapshot
from distillguard.detect._config import DetectConfig, load_config
from distillguard.detect._endusers import SubPrincipals
from distillguard.detect._firstrequest import FirstRequestFlags
from distillguard.detect._interim import InterimFlags
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
#: the replay's saved states, inside the query's checkpoint folder
STATE_DIR = "detector"
STATE_SUFFIX = ".state"
#: what the replay saves after each micro-batch (everything it changes; the log's accounts,
#: overrides and partners are read again at a restart)
SAVED = ("det", "sub", "gate", "origin", "closed_until", "newest", "pending", "first_flag",
         "late", "batches", "batch_id")
# Saved too, but a state written before it was kept restores without it (it starts afresh).
SAVED_SINCE = ("interim",)


class WindowReplay:
    """The driver's side: signals in any order in, replayed window by window in time order.

    Args:
        log_dir: the log (its accounts, models and overrides; the scan's tables at the end).
        config: the detection config.
        lateness_us: how far behind the newest event seen an event may arrive (see the module).
        end_users: whether the signals carry their events' `end_user` (judged apart as the
            scan does; see `_endusers`).
    """

    def __init__(self, log_dir: Path, config: DetectConfig, lateness_us: int,
                 decisions_dir: Path | None = None, indicators: Path | None = None,
                 progress: Progress | None = None, end_users: bool = False) -> None:
        self.log_dir = log_dir
        self.config = config
        self.lateness_us = lateness_us
        self.progress = progress
        self.overrides = load_overrides(log_dir, *([decisions_dir] if decisions_dir else []))
        self.partners = partner_matches(log_dir, indicators)
        self.gate = FirstRequestFlags(config.first_request) if config.first_request.enabled else None
        self.interim = InterimFlags.of(config)
        self.det = log_detector(log_dir, config, self.overrides, self.partners)
        self.sub = (SubPrincipals.fresh(log_dir, config, self.overrides, self.partners)
                    if end_users and config.end_users.enabled else None)
        self.step = int(config.replay.cadence_minutes * 60_000_000)
        self.origin: int | None = None  # where the windows start, fixed at the first replay
        self.closed_until: int | None = None  # the end of the last window replayed
        self.newest = np.iinfo(np.int64).min
        self.pending: list[pl.DataFrame] = []
        self.first_flag = np.full(0, -1, np.int64)
        self.late = 0  # events that arrived after their window was replayed
        self.batches = 0
        self.batch_id = -1  # the last micro-batch applied (Spark's batch id)
        self.skipped = 0  # micro-batches Spark ran again that were already applied

    def add_batch(self, sig: pl.DataFrame, batch_id: int) -> bool:
        """`add` one micro-batch unless it was applied before (a batch Spark runs again after a
        crash between the state's save and its commit); whether it was applied."""
        if batch_id <= self.batch_id:
            self.skipped += 1
            return False
        self.add(sig)
        self.batch_id = batch_id
        return True

    def save(self, folder: Path) -> Path:
        """Write the replay's state as `<batch id>.state` in `folder` (atomically: a crash leaves
        the previous one) and remove the older ones."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.batch_id}{STATE_SUFFIX}"
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(encode(snapshot({k: getattr(self, k) for k in SAVED + SAVED_SINCE})))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for old, _ in _saved_states(folder)[1:]:
            old.unlink()
        return path

    def restore(self, folder: Path) -> bool:
        """Load the newest state saved in `folder`; whether there was one."""
        saved = _saved_states(folder)
        if not saved:
            return False
        state = decode(saved[0][0].read_bytes())
        missing = [k for k in SAVED if k not in state]
        if missing:
            raise ConfigError(f"{saved[0][0]} is not a streaming replay's state (no {', '.join(missing)}).")
        for k in SAVED:
            setattr(self, k, state[k])
        for k in SAVED_SINCE:
            if k in state:
                setattr(self, k, state[k])
        return True

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
        # as the scan: end users are judged (and reported) only where some event named one
        sub = self.sub if self.sub is not None and self.sub.named else None
        return scan_tables(self.log_dir, self.config, self.det, self.first_flag, self.overrides,
                           self.partners, self.gate, sub, interim=self.interim)

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
        if not ready.height:
            return
        users = ready["end_user"] if "end_user" in ready.columns else None
        ready = ready.drop("end_user", strict=False)
        # the order of the scan's replay (`_replay.replay`): both prepared, then both applied
        prep = self.det.state.prepare(ready, self.step, self.origin)
        young = (self.interim.prepare(self.det.state, ready, self.step, self.origin)
                 if self.interim is not None else None)
        sub_prep = None
        if self.sub is not None and users is not None:
            sub_prep = self.sub.prepare(ready, users, self.step, self.origin)
        self.det.state.admit(prep)
        if self.sub is not None and sub_prep is not None:
            self.sub.det.state.admit(sub_prep)
        self.first_flag = replay_chunk(self.det, prep, self.step, self.origin, self.first_flag,
                                       self.progress, self.gate, interim=self.interim,
                                       young=young)
        if self.sub is not None and sub_prep is not None:
            self.sub.first_flag = replay_chunk(self.sub.det, sub_prep, self.step, self.origin,
                                               self.sub.first_flag, None)


def _saved_states(folder: Path) -> list[tuple[Path, int]]:
    """The states saved in `folder`, newest (highest batch id) first."""
    if not folder.is_dir():
        return []
    found = [(p, int(p.name[: -len(STATE_SUFFIX)])) for p in folder.glob(f"*{STATE_SUFFIX}")
             if p.name[: -len(STATE_SUFFIX)].lstrip("-").isdigit()]
    return sorted(found, key=lambda pb: pb[1], reverse=True)


def _signals_with_end_users(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Executor side: `_spark._signals_of_batches` plus each event's `end_user` (null where the
    part has none), in the events' order."""
    from distillguard.detect._spark import _signals_of_batches

    for batch in batches:
        users = (batch.column("end_user") if "end_user" in batch.schema.names
                 else pa.nulls(batch.num_rows, pa.string()))
        sig = pa.Table.from_batches(list(_signals_of_batches(iter([batch]))))
        yield from sig.append_column("end_user", users.cast(pa.string())).to_batches()


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
                 trigger_seconds: float = TRIGGER_SECONDS,
                 checkpoint: Path | None = None) -> tuple[ScanResult, WindowReplay]:
    """Run the detector over `LOG/events/` as a Structured Streaming query.

    Without `follow`, the parts there now are read (`availableNow`, `files_per_batch` per
    micro-batch) and the query stops; with it, the query follows the folder (a micro-batch
    every `trigger_seconds`) until the event is set, then reads what is there and stops.
    `checkpoint` is the query's checkpoint folder (Spark's and the replay's state; see the
    module): a query started again on it resumes where the last one stopped or crashed.
    Without it, a temporary one (the query starts from the first part).
    Returns the scan's tables as of the end, and the driver's replay (its `late` count, the
    detector).
    """
    from distillguard.detect._spark import _HASHED, _SIGNAL_SCHEMA, _session

    folder = _events_folder(log_dir)
    spark = _session(master)
    reader = spark.read.option("recursiveFileLookup", "true").option("mergeSchema", "true")
    schema = reader.parquet(str(folder)).schema
    end_users = "end_user" in schema.fieldNames()
    replay = WindowReplay(log_dir, load_config(config), int(lateness_minutes * 60_000_000),
                          decisions_dir, indicators, progress, end_users=end_users)
    events = (spark.readStream.schema(schema).option("recursiveFileLookup", "true")
              .option("maxFilesPerTrigger", files_per_batch).parquet(str(folder)))
    present = [c for c in [*SIGNAL_COLUMNS, "end_user"] if c in events.columns]
    signals = events.select(*present).mapInArrow(_signals_with_end_users,
                                                 f"{_SIGNAL_SCHEMA}, end_user STRING")

    with tempfile.TemporaryDirectory(prefix="distillguard-stream-") as scratch:
        where = checkpoint if checkpoint is not None else Path(scratch)
        states = where / STATE_DIR
        replay.restore(states)

        def on_batch(frame: Any, batch_id: int) -> None:
            sig = pl.from_arrow(frame.toArrow())
            assert isinstance(sig, pl.DataFrame)
            # Spark carries the hash bits as signed (see `_spark`)
            sig = sig.with_columns([pl.col(k).reinterpret(signed=False) for k in _HASHED])
            if not end_users:
                sig = sig.drop("end_user")
            if replay.add_batch(sig, batch_id):
                replay.save(states)  # before Spark commits the batch (see the module)

        writer = signals.writeStream.foreachBatch(on_batch).option("checkpointLocation", str(where))
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
                                indicators: Path | None = None,
                                checkpoint: Path | None = None) -> ScanResult:
    """The default detector over the log's parts as a Spark Structured Streaming query
    (resuming from `checkpoint` when it holds one; see `spark_stream`)."""
    return spark_stream(log_dir, config, progress, decisions_dir, indicators, checkpoint=checkpoint)[0]
